-- The outbox: work on ARM that a committed change calls for, written in the change's own
-- transaction, claimed by dispatchers with a lease, deleted when done (the audit log keeps
-- the history). A job whose lease runs out is claimed again, so a crash loses nothing.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    run_after   TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until TEXT,
    last_error  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_after, id);
CREATE INDEX jobs_by_subject ON jobs (kind, subject);
