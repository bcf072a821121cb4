-- Grant history: one row per port a request opened (or failed to open), written in the same
-- transaction as the request change that made it. Auditors ask "who had port P open on VM V,
-- from where, approved by whom, and why" for a period, over years of history: every filter of
-- GET /v1/grants has an index that serves its newest-first keyset page.
CREATE TABLE grants (
    id                 TEXT PRIMARY KEY,
    request_id         TEXT NOT NULL,
    vm_id              TEXT NOT NULL,
    vm_key             TEXT NOT NULL,
    subscription_key   TEXT NOT NULL,
    resource_group_key TEXT NOT NULL,
    port               INTEGER NOT NULL,
    protocol           TEXT NOT NULL,
    source_prefix      TEXT NOT NULL,
    requestor_id       TEXT NOT NULL,
    requestor_name     TEXT NOT NULL,
    submitted_by_id    TEXT NOT NULL,
    submitted_by_name  TEXT NOT NULL,
    approvers          TEXT NOT NULL,
    justification      TEXT,
    granted_at         TIMESTAMPTZ NOT NULL,
    end_time           TIMESTAMPTZ,
    closed_at          TIMESTAMPTZ,
    status             TEXT NOT NULL,
    status_reason      TEXT NOT NULL
);
CREATE INDEX grants_by_time ON grants (granted_at, id);
CREATE INDEX grants_by_vm ON grants (vm_key, granted_at, id);
CREATE INDEX grants_by_requestor ON grants (requestor_id, granted_at, id);
CREATE INDEX grants_by_port ON grants (port, granted_at, id);
CREATE INDEX grants_by_status ON grants (status, granted_at, id);
CREATE INDEX grants_by_request ON grants (request_id);
CREATE INDEX grants_by_resource_group ON grants (subscription_key, resource_group_key, granted_at, id);

-- The longest time any grant stayed open (seconds). A period filter ("open at any moment in
-- [from, to)") becomes an index range: a grant open at `from` began after `from - max_span`.
CREATE TABLE grant_window (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    max_span BIGINT NOT NULL
);
INSERT INTO grant_window (id, max_span) VALUES (1, 0);

-- The audit log's filters, each serving a chronological keyset page.
CREATE INDEX audit_events_by_time ON audit_events (at, seq);
CREATE INDEX audit_events_by_type ON audit_events (event_type, at, seq);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, at, seq);
-- ARM ids compare case-insensitively (as ARM does), so the resource filter matches lower-cased.
CREATE INDEX audit_events_by_resource ON audit_events (lower(resource_id), at, seq);
CREATE INDEX audit_events_by_request ON audit_events (request_id, at, seq);

-- Signed checkpoints: retention deletes events up to `seq` only after recording the chain's
-- hash there, signed, so verification can start from it.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    events     BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL
);

-- Append-only: no UPDATE or TRUNCATE, and DELETE only of events a checkpoint covers.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events'
       AND OLD.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
