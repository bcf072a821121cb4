-- Outbound webhooks: subscriptions an Admin manages, and one delivery row per (subscription,
-- audit event) it matches, written in the transaction that appends the event, beside the
-- outbox job that delivers it. The rows are the delivery log.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    url         TEXT NOT NULL,
    -- JSON array of CloudEvents types or prefixes ending in '*'; empty means every type.
    event_types TEXT NOT NULL,
    -- Signs deliveries (HMAC-SHA256); the receiver holds the same secret.
    secret      TEXT NOT NULL,
    description TEXT,
    enabled     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    webhook_id       TEXT NOT NULL,
    event_seq        INTEGER NOT NULL,
    event_type       TEXT NOT NULL,
    -- pending, delivered or failed (gave up, or the subscription was deleted)
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    last_attempt_at  TEXT,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at, id);
