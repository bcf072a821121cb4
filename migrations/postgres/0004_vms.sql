-- The VM inventory: what ARM said about each VM of the configured subscriptions at the last
-- refresh, and what that means for its posture. Observed state, not ours: refreshed in place,
-- not audited.
CREATE TABLE vms (
    vm_key             TEXT PRIMARY KEY NOT NULL,
    vm_id              TEXT NOT NULL,
    subscription_key   TEXT NOT NULL,
    resource_group_key TEXT NOT NULL,
    name               TEXT NOT NULL,
    location           TEXT NOT NULL,
    network            TEXT NOT NULL,
    exposures          TEXT NOT NULL,
    guarded            BOOLEAN NOT NULL,
    exposed            BOOLEAN NOT NULL,
    refreshed_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX vms_by_resource_group ON vms (subscription_key, resource_group_key, vm_key);
