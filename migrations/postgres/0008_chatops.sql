-- Chatops: which Entra user a Slack or Teams account acts as (kept by admins, audited), the
-- ids of recent chat messages (replay protection for Teams, whose outgoing webhooks carry no
-- timestamp), and VM lookup by name for `/jit request vm1 ...`.
CREATE TABLE chatops_identities (
    id              TEXT PRIMARY KEY,
    platform        TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    chat_user_id    TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    updated_by_id   TEXT NOT NULL,
    updated_by_name TEXT NOT NULL
);
CREATE UNIQUE INDEX chatops_identities_once ON chatops_identities (platform, workspace_id, chat_user_id);

CREATE TABLE chatops_seen_messages (
    message_key TEXT PRIMARY KEY,
    seen_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX chatops_seen_messages_by_age ON chatops_seen_messages (seen_at);

CREATE INDEX vms_by_name ON vms (lower(name));
