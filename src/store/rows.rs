//! Rows as both databases return them, and their conversion into domain values.

use super::{Enforcement, EnforcementState, StoreError, StoredPolicy, StoredRoleAssignment};
use crate::audit::AuditEvent;
use crate::domain::{Principal, VmId};
use crate::rbac::RoleAssignment;
use chrono::{DateTime, Utc};

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PolicyRow {
    pub vm_id: String,
    pub spec: String,
    pub etag: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by_id: String,
    pub updated_by_name: String,
    pub enforcement_state: String,
    pub enforcement_detail: String,
    pub enforcement_nsgs: String,
    pub enforcement_firewalls: String,
}

pub(super) const POLICY_COLUMNS: &str =
    "vm_id, spec, etag, created_at, updated_at, updated_by_id, updated_by_name, \
     enforcement_state, enforcement_detail, enforcement_nsgs, enforcement_firewalls";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl TryFrom<PolicyRow> for StoredPolicy {
    type Error = StoreError;
    fn try_from(row: PolicyRow) -> Result<Self, StoreError> {
        let state = match row.enforcement_state.as_str() {
            "pending" => EnforcementState::Pending,
            "applied" => EnforcementState::Applied,
            "failed" => EnforcementState::Failed,
            other => return Err(corrupt("enforcement_state", other)),
        };
        Ok(StoredPolicy {
            vm: VmId::parse(&row.vm_id).map_err(|e| corrupt("vm_id", e))?,
            policy: serde_json::from_str(&row.spec).map_err(|e| corrupt("policy spec", e))?,
            etag: row.etag,
            created_at: row.created_at,
            updated_at: row.updated_at,
            updated_by: Principal {
                id: row.updated_by_id,
                name: row.updated_by_name,
            },
            enforcement: Enforcement {
                state,
                detail: row.enforcement_detail,
                network_security_groups: serde_json::from_str(&row.enforcement_nsgs)
                    .map_err(|e| corrupt("enforcement_nsgs", e))?,
                firewalls: serde_json::from_str(&row.enforcement_firewalls)
                    .map_err(|e| corrupt("enforcement_firewalls", e))?,
            },
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub actor_id: String,
    pub actor_name: String,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, event_type, actor_id, actor_name, resource_id, request_id, data, prev_hash, hash";

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEvent {
            seq: row.seq,
            at: row.at,
            event_type: row.event_type,
            actor: Principal {
                id: row.actor_id,
                name: row.actor_name,
            },
            resource_id: row.resource_id,
            request_id: row.request_id,
            data: serde_json::from_str(&row.data).map_err(|e| corrupt("audit data", e))?,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct RoleAssignmentRow {
    pub id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub role: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by_id: String,
    pub updated_by_name: String,
}

pub(super) const ROLE_ASSIGNMENT_COLUMNS: &str =
    "id, principal_id, principal_type, role, scope, created_at, updated_at, updated_by_id, updated_by_name";

impl TryFrom<RoleAssignmentRow> for StoredRoleAssignment {
    type Error = StoreError;
    fn try_from(row: RoleAssignmentRow) -> Result<Self, StoreError> {
        Ok(StoredRoleAssignment {
            assignment: RoleAssignment {
                id: row.id,
                principal_id: row.principal_id,
                principal_type: row
                    .principal_type
                    .parse()
                    .map_err(|e| corrupt("principal_type", e))?,
                role: row.role.parse().map_err(|e| corrupt("role", e))?,
                scope: crate::domain::Scope::parse(&row.scope).map_err(|e| corrupt("scope", e))?,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
            updated_by: Principal {
                id: row.updated_by_id,
                name: row.updated_by_name,
            },
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct JobRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub payload: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub(super) const JOB_COLUMNS: &str = "id, kind, subject, payload, attempts, last_error, created_at";

impl TryFrom<JobRow> for super::Job {
    type Error = StoreError;
    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        Ok(super::Job {
            id: row.id,
            kind: row.kind,
            subject: row.subject,
            payload: serde_json::from_str(&row.payload).map_err(|e| corrupt("job payload", e))?,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct VmRow {
    pub vm_id: String,
    pub network: String,
    pub exposures: String,
    pub refreshed_at: DateTime<Utc>,
    pub jit_enabled: bool,
}

/// The inventory columns, with `jit_enabled` from a LEFT JOIN on policies aliased `p`.
pub(super) const VM_COLUMNS: &str =
    "v.vm_id, v.network, v.exposures, v.refreshed_at, (p.vm_key IS NOT NULL) AS jit_enabled";

impl TryFrom<VmRow> for super::ListedVm {
    type Error = StoreError;
    fn try_from(row: VmRow) -> Result<Self, StoreError> {
        Ok(super::ListedVm {
            vm: super::InventoryVm {
                vm: VmId::parse(&row.vm_id).map_err(|e| corrupt("vm_id", e))?,
                network: serde_json::from_str(&row.network)
                    .map_err(|e| corrupt("vm network", e))?,
                exposures: serde_json::from_str(&row.exposures)
                    .map_err(|e| corrupt("vm exposures", e))?,
                refreshed_at: row.refreshed_at,
            },
            jit_enabled: row.jit_enabled,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct RequestRow {
    pub body: String,
    pub version: i64,
    pub idempotency_hash: Option<String>,
}

pub(super) const REQUEST_COLUMNS: &str = "body, version, idempotency_hash";

impl TryFrom<RequestRow> for super::StoredRequest {
    type Error = StoreError;
    fn try_from(row: RequestRow) -> Result<Self, StoreError> {
        Ok(super::StoredRequest {
            request: serde_json::from_str(&row.body).map_err(|e| corrupt("request body", e))?,
            version: row.version,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct GrantRow {
    pub id: String,
    pub request_id: String,
    pub vm_id: String,
    pub port: i32,
    pub protocol: String,
    pub source_prefix: String,
    pub requestor_id: String,
    pub requestor_name: String,
    pub submitted_by_id: String,
    pub submitted_by_name: String,
    pub approvers: String,
    pub justification: Option<String>,
    pub granted_at: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub status: String,
    pub status_reason: String,
}

pub(super) const GRANT_COLUMNS: &str =
    "g.id, g.request_id, g.vm_id, g.port, g.protocol, g.source_prefix, g.requestor_id, \
     g.requestor_name, g.submitted_by_id, g.submitted_by_name, g.approvers, g.justification, \
     g.granted_at, g.end_time, g.closed_at, g.status, g.status_reason";

impl TryFrom<GrantRow> for crate::domain::grant::Grant {
    type Error = StoreError;
    fn try_from(row: GrantRow) -> Result<Self, StoreError> {
        use crate::domain::grant::{Grant, GrantStatus};
        Ok(Grant {
            id: row.id,
            request_id: row.request_id,
            vm_id: row.vm_id,
            port: u16::try_from(row.port).map_err(|e| corrupt("grant port", e))?,
            protocol: row.protocol,
            source_address_prefix: row.source_prefix,
            requestor: Principal {
                id: row.requestor_id,
                name: row.requestor_name,
            },
            submitted_by: Principal {
                id: row.submitted_by_id,
                name: row.submitted_by_name,
            },
            approvers: serde_json::from_str(&row.approvers)
                .map_err(|e| corrupt("grant approvers", e))?,
            justification: row.justification,
            granted_at: row.granted_at,
            end_time_utc: row.end_time,
            closed_at: row.closed_at,
            status: GrantStatus::parse(&row.status).map_err(|e| corrupt("grant status", e))?,
            status_reason: row.status_reason,
        })
    }
}

/// Keyset positions, as the opaque cursor carries them: a timestamp and a tie-breaker.
pub(super) fn time_key(at: DateTime<Utc>, tie: &str) -> String {
    format!(
        "{}|{tie}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

pub(super) fn parse_time_key(key: &str) -> Result<(DateTime<Utc>, String), StoreError> {
    let bad = || StoreError::InvalidInput("cursor: not a cursor this service issued".into());
    let (at, tie) = key.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    Ok((at.with_timezone(&Utc), tie.to_string()))
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct WebhookRow {
    pub id: String,
    pub url: String,
    pub event_types: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub secret: String,
}

pub(super) const WEBHOOK_COLUMNS: &str =
    "id, url, event_types, description, enabled, created_at, updated_at, secret";

impl TryFrom<WebhookRow> for (crate::notify::Webhook, String) {
    type Error = StoreError;
    fn try_from(row: WebhookRow) -> Result<Self, StoreError> {
        Ok((
            crate::notify::Webhook {
                id: row.id,
                url: row.url,
                event_types: serde_json::from_str(&row.event_types)
                    .map_err(|e| corrupt("webhook event types", e))?,
                description: row.description,
                enabled: row.enabled,
                created_at: row.created_at,
                updated_at: row.updated_at,
            },
            row.secret,
        ))
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_seq: i64,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

pub(super) const DELIVERY_COLUMNS: &str =
    "id, webhook_id, event_seq, event_type, status, attempts, \
     last_status_code, last_error, created_at, last_attempt_at, delivered_at";

impl TryFrom<DeliveryRow> for crate::notify::Delivery {
    type Error = StoreError;
    fn try_from(row: DeliveryRow) -> Result<Self, StoreError> {
        Ok(crate::notify::Delivery {
            id: row.id,
            webhook_id: row.webhook_id,
            event_seq: row.event_seq,
            event_type: row.event_type,
            status: crate::notify::DeliveryStatus::parse(&row.status)
                .ok_or_else(|| corrupt("delivery status", &row.status))?,
            attempts: row.attempts,
            last_status_code: row.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: row.last_error,
            created_at: row.created_at,
            last_attempt_at: row.last_attempt_at,
            delivered_at: row.delivered_at,
        })
    }
}

// ---- chatops ----

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ChatIdentityRow {
    pub id: String,
    pub platform: String,
    pub workspace_id: String,
    pub chat_user_id: String,
    pub user_id: String,
    pub user_name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by_id: String,
    pub updated_by_name: String,
}

pub(super) const CHAT_IDENTITY_COLUMNS: &str =
    "id, platform, workspace_id, chat_user_id, user_id, user_name, created_at, updated_at, \
     updated_by_id, updated_by_name";

impl TryFrom<ChatIdentityRow> for super::StoredChatIdentity {
    type Error = StoreError;
    fn try_from(row: ChatIdentityRow) -> Result<Self, StoreError> {
        Ok(super::StoredChatIdentity {
            identity: crate::chatops::ChatIdentity {
                id: row.id,
                platform: crate::chatops::Platform::parse(&row.platform)
                    .map_err(|e| corrupt("platform", e))?,
                workspace_id: row.workspace_id,
                chat_user_id: row.chat_user_id,
                user: Principal {
                    id: row.user_id,
                    name: row.user_name,
                },
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
            updated_by: Principal {
                id: row.updated_by_id,
                name: row.updated_by_name,
            },
        })
    }
}
