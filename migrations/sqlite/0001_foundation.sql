-- Policies, one per VM, keyed by the lower-cased ARM id (ARM ids compare case-insensitively).
CREATE TABLE policies (
    vm_key                TEXT PRIMARY KEY NOT NULL,
    vm_id                 TEXT NOT NULL,
    subscription_key      TEXT NOT NULL,
    resource_group_key    TEXT NOT NULL,
    spec                  TEXT NOT NULL,
    etag                  TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    updated_by_id         TEXT NOT NULL,
    updated_by_name       TEXT NOT NULL,
    enforcement_state     TEXT NOT NULL,
    enforcement_detail    TEXT NOT NULL,
    enforcement_nsgs      TEXT NOT NULL,
    enforcement_firewalls TEXT NOT NULL
);
CREATE INDEX policies_by_resource_group ON policies (subscription_key, resource_group_key, vm_key);

-- The head of the audit hash chain: one row, updated in every transaction that appends.
CREATE TABLE audit_chain (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, seq, head_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY NOT NULL,
    at          TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    request_id  TEXT,
    data        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
