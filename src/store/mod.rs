//! Persistence. The service sees only the [`Store`] trait; [`sqlite::SqliteStore`] (the
//! embedded default) and [`postgres::PgStore`] (scale-out) implement it with the same SQL,
//! written once in [`sql`], and pass the same conformance suite (`tests/store_conformance.rs`).
//!
//! Every write is one transaction holding the change and its audit event, appended last so
//! that all writers take locks in the same order (row first, then the chain head).

pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;

use crate::audit::{AuditEvent, NewAuditEvent};
use crate::config::DatabaseUrl;
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::request::{AccessRequest, RequestStatus};
use crate::domain::{Assessment, Policy, Principal, Scope, VmId, VmNetwork};
use crate::notify::{Delivery, DeliveryStatus, Webhook};
use crate::rbac::{Role, RoleAssignment};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

pub type DynStore = Arc<dyn Store>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates or replaces a VM's policy under `precondition`, with its audit event.
    async fn put_policy(&self, put: PolicyPut) -> Result<PolicyWritten, StoreError>;

    async fn get_policy(&self, vm: &VmId) -> Result<Option<StoredPolicy>, StoreError>;

    /// Deletes a VM's policy under `precondition`, with its audit event; returns what was deleted.
    async fn delete_policy(
        &self,
        vm: &VmId,
        precondition: &Precondition,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<StoredPolicy, StoreError>;

    /// One keyset page of policies, ordered by VM id.
    async fn list_policies(
        &self,
        filter: &PolicyFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredPolicy>, StoreError>;

    /// Creates or replaces the role assignment `put.assignment.id`, with its audit event.
    /// Another assignment of the same role to the same principal at the same scope is a
    /// [`StoreError::Conflict`].
    async fn put_role_assignment(
        &self,
        put: RoleAssignmentPut,
    ) -> Result<RoleAssignmentWritten, StoreError>;

    async fn get_role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<StoredRoleAssignment>, StoreError>;

    /// Deletes a role assignment, with its audit event; returns what was deleted.
    async fn delete_role_assignment(
        &self,
        id: &str,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<StoredRoleAssignment, StoreError>;

    /// One keyset page of role assignments, ordered by id.
    async fn list_role_assignments(
        &self,
        filter: &RoleAssignmentFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredRoleAssignment>, StoreError>;

    /// Every assignment naming one of these principal ids (a caller's object id and groups).
    async fn role_assignments_for(
        &self,
        principal_ids: &[String],
    ) -> Result<Vec<RoleAssignment>, StoreError>;

    /// Appends one audit event on its own (a change made outside the database, such as an ARM
    /// write).
    async fn append_event(
        &self,
        event: NewAuditEvent,
        now: DateTime<Utc>,
    ) -> Result<AuditEvent, StoreError>;

    /// Records how a policy's enforcement stands, with its audit event, if the policy still
    /// has `etag` (a newer version has a job of its own). Returns whether it did.
    async fn record_enforcement(
        &self,
        vm: &VmId,
        etag: &str,
        enforcement: &Enforcement,
        event: NewAuditEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Queues the enforcement of a VM's policy again (the reconciler found its rules drifted).
    async fn requeue_enforcement(&self, vm: &VmId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Leases up to `limit` due jobs to `owner` until `now + lease`.
    async fn claim_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError>;

    /// Extends `owner`'s lease on a running job to `until`; false if it lost the lease.
    async fn renew_lease(
        &self,
        id: i64,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes a finished job, if `owner` still holds its lease.
    async fn finish_job(&self, id: i64, owner: &str) -> Result<bool, StoreError>;

    /// Releases a job to run again at `run_after`, keeping why it failed.
    async fn retry_job(
        &self,
        id: i64,
        owner: &str,
        run_after: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError>;

    /// When the earliest unclaimed job falls due (one indexed row, not a scan).
    async fn next_job_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Jobs not yet finished (for operations and tests).
    async fn pending_jobs(&self) -> Result<Vec<Job>, StoreError>;

    /// Records what ARM says of a VM now (inventory: observed state, not audited).
    async fn put_vm(&self, vm: &InventoryVm) -> Result<(), StoreError>;

    /// A VM from the inventory, with whether it has a policy.
    async fn get_vm(&self, vm: &VmId) -> Result<Option<ListedVm>, StoreError>;

    /// One keyset page of the inventory, ordered by VM id.
    async fn list_vms(
        &self,
        filter: &VmFilter,
        page: &PageRequest,
    ) -> Result<Page<ListedVm>, StoreError>;

    /// Forgets the VMs of `subscription` that a refresh started at `since` did not see (they
    /// are gone from ARM); returns how many.
    async fn forget_vms(&self, subscription: &str, since: DateTime<Utc>)
        -> Result<u64, StoreError>;

    /// Records a new access request with its audit event (and its activation job, when it is
    /// approved at once). With an idempotency key the client used before: the request made
    /// then if the body is the same ([`RequestCreated::Replayed`]), else
    /// [`StoreError::Unprocessable`].
    async fn create_request(&self, new: NewRequest) -> Result<RequestCreated, StoreError>;

    async fn get_request(&self, id: &str) -> Result<Option<StoredRequest>, StoreError>;

    /// Writes a request's next state, with its audit event and job, if nobody changed it since
    /// `expected_version` was read; returns whether it did.
    async fn update_request(&self, update: RequestUpdate) -> Result<bool, StoreError>;

    /// One keyset page of requests, newest first.
    async fn list_requests(
        &self,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredRequest>, StoreError>;

    /// Audit events with `seq > after`, in chain order.
    async fn audit_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// One keyset page of grant history, newest first (by `grantedAt`, then id).
    async fn list_grants(
        &self,
        filter: &GrantFilter,
        page: &PageRequest,
    ) -> Result<Page<Grant>, StoreError>;

    /// One keyset page of audit events, oldest first (by `at`, then `seq`).
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError>;

    /// The chain's head as the database records it: the last seq and its hash.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;

    /// The newest retention checkpoint, if events were ever pruned.
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// The last event stamped before `at` (where retention may cut the chain).
    async fn last_event_before(&self, at: DateTime<Utc>) -> Result<Option<AuditEvent>, StoreError>;

    /// Records `checkpoint` (if it is not already), then deletes up to `batch` events it
    /// covers; returns how many were deleted (call again until 0).
    async fn prune_audit(&self, checkpoint: &Checkpoint, batch: u32) -> Result<u64, StoreError>;

    /// Bulk-loads history (benchmarks, imports): grants only, no audit events.
    async fn import_grants(&self, grants: &[Grant]) -> Result<(), StoreError>;

    /// Before a large [`Store::import_grants`] load: drops the grants table's secondary
    /// indexes, so rows go in at append speed instead of updating six B-trees each. Filters
    /// stay correct but slow until [`Store::end_grant_bulk_load`] rebuilds them; a load that
    /// died half-way is mended by calling that (it creates only the missing indexes).
    async fn begin_grant_bulk_load(&self) -> Result<(), StoreError>;

    /// Recreates the grants table's secondary indexes (those missing), as migrations define them.
    async fn end_grant_bulk_load(&self) -> Result<(), StoreError>;

    // ---- webhooks ----

    /// Adds a subscription (with its `webhook.created` event).
    async fn create_webhook(
        &self,
        webhook: &Webhook,
        secret: &str,
        by: &Principal,
    ) -> Result<(), StoreError>;

    /// Replaces a subscription's settings, and its secret when one is given; false when there
    /// is no such subscription.
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        secret: Option<&str>,
        by: &Principal,
    ) -> Result<bool, StoreError>;

    /// Removes a subscription and its delivery log; what it removed, if it was there.
    async fn delete_webhook(
        &self,
        id: &str,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<Option<Webhook>, StoreError>;

    /// A subscription and its secret.
    async fn get_webhook(&self, id: &str) -> Result<Option<(Webhook, String)>, StoreError>;

    /// Every subscription, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError>;

    /// A subscription's deliveries, newest first.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError>;

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;

    /// Records one attempt of a delivery and where it leaves it.
    async fn record_delivery(&self, id: &str, attempt: &DeliveryAttempt) -> Result<(), StoreError>;

    // ---- chatops ----

    /// Creates or replaces the chat identity mapping `put.identity.id`, with its audit event.
    /// Another mapping of the same chat account is a [`StoreError::Conflict`].
    async fn put_chat_identity(
        &self,
        put: ChatIdentityPut,
    ) -> Result<ChatIdentityWritten, StoreError>;

    async fn get_chat_identity(&self, id: &str) -> Result<Option<StoredChatIdentity>, StoreError>;

    /// Deletes a chat identity mapping, with its audit event; returns what was deleted.
    async fn delete_chat_identity(
        &self,
        id: &str,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<StoredChatIdentity, StoreError>;

    /// One keyset page of chat identity mappings, ordered by id.
    async fn list_chat_identities(
        &self,
        page: &PageRequest,
    ) -> Result<Page<StoredChatIdentity>, StoreError>;

    /// The mapping of one chat account, if an admin made one.
    async fn find_chat_identity(
        &self,
        platform: crate::chatops::Platform,
        workspace_id: &str,
        chat_user_id: &str,
    ) -> Result<Option<StoredChatIdentity>, StoreError>;

    /// Inventory VMs named `name` (case-insensitively), at most `limit`, ordered by id.
    async fn find_vms_by_name(&self, name: &str, limit: u32) -> Result<Vec<ListedVm>, StoreError>;

    /// Records that a chat message `key` was handled at `now`, forgetting those seen before
    /// `forget_before`; false if it was seen already (a replay).
    async fn remember_chat_message(
        &self,
        key: &str,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    // ---- backpressure ----

    /// How many jobs are due at `now` (claimed or not), counting no further than `at_most`:
    /// enough to tell whether the outbox is over its backlog limit without scanning all of it.
    async fn count_due_jobs(&self, now: DateTime<Utc>, at_most: u32) -> Result<u32, StoreError>;
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub struct DeliveryAttempt {
    pub status: DeliveryStatus,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Filters of `GET /v1/grants`.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub vm_key: Option<String>,
    pub requestor: Option<String>,
    pub port: Option<u16>,
    pub status: Option<GrantStatus>,
    /// Grants open at any moment in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only grants on VMs under these scopes; `None` means everywhere.
    pub within: Option<Vec<Scope>>,
}

/// Filters of `GET /v1/audit/events`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Any of these event types.
    pub types: Vec<String>,
    pub actor: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
}

/// A signed record of the chain at `seq`, kept when retention deletes the events up to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// Events in the chain up to and including `seq`.
    pub events: i64,
    pub created_at: DateTime<Utc>,
    pub key_id: String,
    /// ES256 over [`Checkpoint::signed_text`], base64url.
    pub signature: String,
}

impl Checkpoint {
    /// What the signature covers.
    pub fn signed_text(seq: i64, hash: &str, events: i64, created_at: DateTime<Utc>) -> String {
        format!(
            "jitgate-audit-checkpoint/v1\n{seq}\n{hash}\n{events}\n{}",
            created_at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        )
    }
}

/// Opens (and migrates) the store a database URL names.
pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<DynStore> {
    Ok(match url {
        DatabaseUrl::Sqlite(u) => Arc::new(sqlite::SqliteStore::connect(u).await?),
        DatabaseUrl::Postgres(u) => Arc::new(postgres::PgStore::connect(u).await?),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// An `If-Match` / `If-None-Match` condition did not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The write would break a uniqueness rule; the text says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Well-formed but contradicting what was asked before (an idempotency key reused with
    /// another body).
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A value from the client the store cannot use (a cursor that was tampered with).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

/// An HTTP conditional request, as it applies to a stored resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match: *`: the resource must exist.
    Exists,
    /// `If-Match: "a", "b"`: the current ETag must be one of these.
    EtagIn(Vec<String>),
    /// `If-None-Match: *`: the resource must not exist.
    Absent,
}

/// Who the policy's enforcement stands with ARM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EnforcementState {
    Pending,
    Applied,
    Failed,
}

impl EnforcementState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementState::Pending => "pending",
            EnforcementState::Applied => "applied",
            EnforcementState::Failed => "failed",
        }
    }
}

/// Whether the deny rules a policy calls for are in place, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enforcement {
    pub state: EnforcementState,
    pub detail: String,
    pub network_security_groups: Vec<String>,
    pub firewalls: Vec<String>,
}

impl Enforcement {
    /// What a freshly written policy reports until the dispatcher has applied it.
    pub fn pending() -> Self {
        Enforcement {
            state: EnforcementState::Pending,
            detail: "waiting for the deny rules to be written to ARM".into(),
            network_security_groups: vec![],
            firewalls: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    pub vm: VmId,
    pub policy: Policy,
    pub etag: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Principal,
    pub enforcement: Enforcement,
}

/// A policy write: the new policy, its new ETag, and who wrote it when.
#[derive(Debug, Clone)]
pub struct PolicyPut {
    pub vm: VmId,
    pub policy: Policy,
    pub etag: String,
    pub precondition: Precondition,
    pub by: Principal,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct PolicyWritten {
    pub policy: StoredPolicy,
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    /// Only policies under these scopes (the caller's visibility); `None` means everywhere.
    pub within: Option<Vec<Scope>>,
}

/// A page request: at most `limit` rows after the row whose key is `after`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key of the last row, when more rows follow.
    pub next_after: Option<String>,
}

/// A role assignment write.
#[derive(Debug, Clone)]
pub struct RoleAssignmentPut {
    pub assignment: RoleAssignment,
    pub by: Principal,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRoleAssignment {
    pub assignment: RoleAssignment,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Principal,
}

#[derive(Debug, Clone)]
pub struct RoleAssignmentWritten {
    pub assignment: StoredRoleAssignment,
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RoleAssignmentFilter {
    pub principal_id: Option<String>,
    pub role: Option<Role>,
    /// Only assignments at or under one of these scopes (the caller's visibility); `None`
    /// means everywhere.
    pub within: Option<Vec<Scope>>,
}

impl<T> Page<T> {
    /// A page from a query that fetched one row more than `limit`, to tell whether another
    /// page follows; `key` gives the keyset position of a row.
    pub(crate) fn from_overfetch(
        mut items: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> String,
    ) -> Page<T> {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_after = if more { items.last().map(key) } else { None };
        Page { items, next_after }
    }
}

/// Work on ARM that a committed change calls for (the outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    /// What to do: [`JOB_ENFORCE_POLICY`], ...
    pub kind: String,
    /// What it is about (a VM key): jobs for one subject are coalesced while unclaimed.
    pub subject: String,
    pub payload: serde_json::Value,
    /// Claims so far, this one included.
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Make the VM's deny rules match its policy (present: in place; deleted: removed).
pub const JOB_ENFORCE_POLICY: &str = "policy.enforce";

/// A VM as the last inventory refresh saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryVm {
    pub vm: VmId,
    pub network: VmNetwork,
    /// Paths from the Internet to management ports ("NSG nsg-a allows 22 from Internet ...").
    pub exposures: Vec<String>,
    pub refreshed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListedVm {
    pub vm: InventoryVm,
    /// The VM has a JIT policy.
    pub jit_enabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VmFilter {
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    pub assessment: Option<Assessment>,
    /// Only VMs under these scopes (the caller's visibility); `None` means everywhere.
    pub within: Option<Vec<Scope>>,
}

/// Bring a request's approved access into ARM (allow rules, DNAT rules).
pub const JOB_ACTIVATE_REQUEST: &str = "request.activate";

/// Take out the allow rules of a request's ports whose end has come (or of all its ports,
/// once revoked).
pub const JOB_CLOSE_REQUEST: &str = "request.close";
/// POST one audit event to one webhook subscription (its subject: the delivery's id).
pub const JOB_DELIVER_WEBHOOK: &str = "webhook.deliver";

/// A job to queue in the same transaction as a change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: &'static str,
    pub subject: String,
    pub payload: serde_json::Value,
    pub run_after: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub request: AccessRequest,
    /// Bumped by every write; an update names the version it read.
    pub version: i64,
}

/// A client's `Idempotency-Key` and a hash of the body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub body_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub request: AccessRequest,
    pub idempotency: Option<Idempotency>,
    pub event: NewAuditEvent,
    pub job: Option<NewJob>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestCreated {
    Created(StoredRequest),
    /// The same key and body came before: this is what was made then.
    Replayed(StoredRequest),
}

#[derive(Debug, Clone)]
pub struct RequestUpdate {
    pub request: AccessRequest,
    pub expected_version: i64,
    pub event: NewAuditEvent,
    pub job: Option<NewJob>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    /// Only requests naming this VM (by key).
    pub vm_key: Option<String>,
    pub requestor: Option<String>,
    /// Only requests this principal made or submitted (`mine=true`).
    pub involving: Option<String>,
    /// What the caller may see: requests it made or submitted, and those with a VM under
    /// one of these scopes; `None` means everything.
    pub visible_to: Option<(String, Vec<Scope>)>,
}

// ---- chatops ----

/// A chat identity mapping write.
#[derive(Debug, Clone)]
pub struct ChatIdentityPut {
    pub identity: crate::chatops::ChatIdentity,
    pub by: Principal,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredChatIdentity {
    pub identity: crate::chatops::ChatIdentity,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Principal,
}

#[derive(Debug, Clone)]
pub struct ChatIdentityWritten {
    pub identity: StoredChatIdentity,
    pub created: bool,
}
