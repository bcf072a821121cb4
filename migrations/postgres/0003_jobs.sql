-- The outbox: work on ARM that a committed change calls for, written in the change's own
-- transaction, claimed by dispatchers with a lease (FOR UPDATE SKIP LOCKED), deleted when done
-- (the audit log keeps the history). A job whose lease runs out is claimed again.
CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    run_after   TIMESTAMPTZ NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_after, id);
CREATE INDEX jobs_by_subject ON jobs (kind, subject);
