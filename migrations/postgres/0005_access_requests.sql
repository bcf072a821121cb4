-- Access requests. The request itself (its VMs, ports, approvals and statuses) is one JSON
-- document changed by the domain's state machine; the columns beside it serve lookups, lists
-- and optimistic concurrency (`version`): two approvers at once cannot both win.
CREATE TABLE access_requests (
    id                TEXT PRIMARY KEY NOT NULL,
    status            TEXT NOT NULL,
    requestor_id      TEXT NOT NULL,
    submitted_by_id   TEXT NOT NULL,
    body              TEXT NOT NULL,
    version           BIGINT NOT NULL,
    idempotency_key   TEXT,
    idempotency_hash  TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
-- A client's retry with the same Idempotency-Key finds its request; NULL keys never clash.
CREATE UNIQUE INDEX access_requests_idempotency ON access_requests (submitted_by_id, idempotency_key);
CREATE INDEX access_requests_by_requestor ON access_requests (requestor_id, id);
CREATE INDEX access_requests_by_status ON access_requests (status, id);

-- The VMs of each request, for the vmId filter and for listing by the caller's scopes.
CREATE TABLE access_request_vms (
    request_id         TEXT NOT NULL,
    vm_key             TEXT NOT NULL,
    subscription_key   TEXT NOT NULL,
    resource_group_key TEXT NOT NULL,
    PRIMARY KEY (request_id, vm_key)
);
CREATE INDEX access_request_vms_by_vm ON access_request_vms (vm_key, request_id);
