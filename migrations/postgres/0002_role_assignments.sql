-- Scoped role assignments kept by the service. One assignment of a role to a principal at a
-- scope: a second with another id is refused (409), as ARM refuses RoleAssignmentExists.
CREATE TABLE role_assignments (
    id              TEXT PRIMARY KEY,
    principal_id    TEXT NOT NULL,
    principal_type  TEXT NOT NULL,
    role            TEXT NOT NULL,
    scope           TEXT NOT NULL,
    scope_key       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    updated_by_id   TEXT NOT NULL,
    updated_by_name TEXT NOT NULL
);
CREATE UNIQUE INDEX role_assignments_once ON role_assignments (principal_id, role, scope_key);
