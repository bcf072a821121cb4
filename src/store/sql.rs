//! The SQL both backends run, written once.
//!
//! sqlx's generic bounds for "any database" are notoriously hard to satisfy in async code, so
//! instead of a generic impl this macro stamps the same method bodies onto each concrete
//! store. Both dialects accept `$N` placeholders, `RETURNING`, `ON CONFLICT` and the same
//! types; what differs (pool set-up, claiming rows) lives in `sqlite.rs` / `postgres.rs`.
//! A store type must provide `fn writer(&self) -> &Pool<DB>` and `fn reader(&self) -> &Pool<DB>`.

use super::{Precondition, StoreError};
use crate::audit::NewAuditEvent;
use crate::domain::{Principal, VmId};
use crate::rbac::RoleAssignment;
use serde_json::json;

/// The grants table's secondary indexes as migration 0006 creates them (name, columns), which
/// a bulk load drops and rebuilds; a test checks both migrations still say the same.
pub(super) const GRANT_INDEXES: &[(&str, &str)] = &[
    ("grants_by_time", "granted_at, id"),
    ("grants_by_vm", "vm_key, granted_at, id"),
    ("grants_by_requestor", "requestor_id, granted_at, id"),
    ("grants_by_port", "port, granted_at, id"),
    ("grants_by_status", "status, granted_at, id"),
    ("grants_by_request", "request_id"),
    (
        "grants_by_resource_group",
        "subscription_key, resource_group_key, granted_at, id",
    ),
];

/// The audit event for a policy change.
pub(super) fn policy_event(
    event_type: &'static str,
    vm: &VmId,
    spec: serde_json::Value,
    etag: &str,
    by: &Principal,
) -> NewAuditEvent {
    NewAuditEvent {
        event_type,
        actor: by.clone(),
        resource_id: vm.as_str().to_string(),
        request_id: None,
        data: json!({ "policy": spec, "etag": etag }),
    }
}

/// The audit event for a webhook subscription change (never its secret).
pub(super) fn webhook_event(
    event_type: &'static str,
    webhook: &crate::notify::Webhook,
    by: &Principal,
) -> NewAuditEvent {
    NewAuditEvent {
        event_type,
        actor: by.clone(),
        resource_id: format!("/webhooks/{}", webhook.id),
        request_id: None,
        data: serde_json::to_value(webhook).unwrap_or_default(),
    }
}

/// The audit event for a role assignment change.
pub(super) fn assignment_event(
    event_type: &'static str,
    a: &RoleAssignment,
    by: &Principal,
) -> NewAuditEvent {
    NewAuditEvent {
        event_type,
        actor: by.clone(),
        resource_id: format!("/roleAssignments/{}", a.id),
        request_id: None,
        data: json!({
            "id": a.id,
            "principalId": a.principal_id,
            "principalType": a.principal_type.to_string(),
            "role": a.role.as_str(),
            "scope": a.scope.to_string(),
        }),
    }
}

pub(super) fn assignment_exists(twin: &str) -> StoreError {
    StoreError::Conflict(format!(
        "role assignment {twin:?} already grants this role to this principal at this scope"
    ))
}

/// A unique-index violation means a twin won a race with us: `conflict` says which.
pub(super) fn unique_violation_as(
    e: sqlx::Error,
    conflict: impl FnOnce() -> StoreError,
) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => conflict(),
        _ => StoreError::from_sqlx(e),
    }
}

/// A unique-index violation on a role assignment write means a twin won a race with us.
pub(super) fn unique_violation_as_conflict(e: sqlx::Error, id: &str) -> StoreError {
    unique_violation_as(e, || {
        StoreError::Conflict(format!(
            "another role assignment grants the same role to the same principal at the same scope as {id:?}"
        ))
    })
}

/// The SQL condition a precondition adds to an UPDATE or DELETE of an existing row.
pub(super) fn etag_condition(precondition: &Precondition) -> (&'static str, Vec<String>) {
    match precondition {
        Precondition::None | Precondition::Exists => ("", vec![]),
        Precondition::EtagIn(tags) => (" AND etag IN (", tags.clone()),
        Precondition::Absent => (" AND 1 = 0", vec![]),
    }
}

macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Appends `event` to the audit chain inside `tx`. Bumping the chain head's row first
            /// locks it until commit, so concurrent writers queue here and the chain cannot fork.
            async fn append_audit(
                tx: &mut sqlx::Transaction<'_, $db>,
                event: $crate::audit::NewAuditEvent,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::audit::AuditEvent, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let (prev_seq, prev_hash): (i64, String) =
                    sqlx::query_as("UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq - 1, head_hash")
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                let event = event.chain(prev_seq, &prev_hash, at);
                sqlx::query("UPDATE audit_chain SET head_hash = $1 WHERE id = 1")
                    .bind(&event.hash)
                    .execute(&mut **tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO audit_events (seq, at, event_type, actor_id, actor_name, resource_id, request_id, data, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(event.seq)
                .bind(event.at)
                .bind(&event.event_type)
                .bind(&event.actor.id)
                .bind(&event.actor.name)
                .bind(&event.resource_id)
                .bind(&event.request_id)
                .bind(event.data.to_string())
                .bind(&event.prev_hash)
                .bind(&event.hash)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                Self::enqueue_deliveries(tx, &event).await?;
                Ok(event)
            }

            /// Queues the event for every subscription that wants it: a delivery row and its
            /// outbox job, in the event's own transaction.
            async fn enqueue_deliveries(
                tx: &mut sqlx::Transaction<'_, $db>,
                event: &$crate::audit::AuditEvent,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let Some(ce_type) = $crate::notify::cloud_event_type(event) else {
                    return Ok(());
                };
                let hooks: Vec<(String, String)> =
                    sqlx::query_as("SELECT id, event_types FROM webhooks WHERE enabled = $1")
                        .bind(true)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                for (webhook_id, types) in hooks {
                    let types: Vec<String> = serde_json::from_str(&types).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if !$crate::notify::matches(&types, &ce_type) {
                        continue;
                    }
                    let delivery_id = uuid::Uuid::now_v7().to_string();
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, event_type, status, attempts, created_at) \
                         VALUES ($1, $2, $3, $4, 'pending', 0, $5)",
                    )
                    .bind(&delivery_id)
                    .bind(&webhook_id)
                    .bind(event.seq)
                    .bind(&ce_type)
                    .bind(event.at)
                    .execute(&mut **tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                    Self::insert_job(tx, &$crate::store::NewJob {
                        kind: $crate::store::JOB_DELIVER_WEBHOOK,
                        subject: delivery_id.clone(),
                        payload: serde_json::json!({ "deliveryId": delivery_id }),
                        run_after: event.at,
                    })
                    .await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1")
                    .execute(self.reader())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn put_policy(
                &self,
                put: $crate::store::PolicyPut,
            ) -> Result<$crate::store::PolicyWritten, $crate::store::StoreError> {
                use $crate::store::rows::{PolicyRow, POLICY_COLUMNS};
                use $crate::store::{Enforcement, PolicyWritten, Precondition, StoreError};
                use chrono::SubsecRound;
                let now = put.now.trunc_subsecs(6);
                let spec_json = serde_json::to_value(&put.policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let spec = spec_json.to_string();
                let pending = Enforcement::pending();
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;

                let insert = || {
                    sqlx::query_as::<_, PolicyRow>(&*INSERT_POLICY)
                        .bind(put.vm.key().to_string())
                        .bind(put.vm.as_str().to_string())
                        .bind(put.vm.subscription().to_ascii_lowercase())
                        .bind(put.vm.resource_group().to_ascii_lowercase())
                        .bind(spec.clone())
                        .bind(put.etag.clone())
                        .bind(now)
                        .bind(put.by.id.clone())
                        .bind(put.by.name.clone())
                        .bind(pending.state.as_str())
                        .bind(pending.detail.clone())
                };
                static INSERT_POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                    format!(
                        "INSERT INTO policies (vm_key, vm_id, subscription_key, resource_group_key, spec, etag, created_at, updated_at, \
                         updated_by_id, updated_by_name, enforcement_state, enforcement_detail, enforcement_nsgs, enforcement_firewalls) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, '[]', '[]') \
                         ON CONFLICT (vm_key) DO NOTHING RETURNING {}",
                        $crate::store::rows::POLICY_COLUMNS
                    )
                });

                let inserted = match put.precondition {
                    Precondition::None | Precondition::Absent => {
                        insert().fetch_optional(&mut *tx).await.map_err(StoreError::from_sqlx)?
                    }
                    _ => None,
                };
                let (row, created) = match inserted {
                    Some(row) => (row, true),
                    None if put.precondition == Precondition::Absent => return Err(StoreError::PreconditionFailed),
                    None => {
                        // The row exists (or the precondition says it must): replace it, keeping
                        // its creation time, and re-arm enforcement for the new spec.
                        let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE policies SET spec = ");
                        q.push_bind(spec.clone())
                            .push(", etag = ")
                            .push_bind(put.etag.clone())
                            .push(", updated_at = ")
                            .push_bind(now)
                            .push(", updated_by_id = ")
                            .push_bind(put.by.id.clone())
                            .push(", updated_by_name = ")
                            .push_bind(put.by.name.clone())
                            .push(", enforcement_state = ")
                            .push_bind(pending.state.as_str())
                            .push(", enforcement_detail = ")
                            .push_bind(pending.detail.clone())
                            .push(" WHERE vm_key = ")
                            .push_bind(put.vm.key().to_string());
                        Self::push_etag_condition(&mut q, &put.precondition);
                        q.push(" RETURNING ").push(POLICY_COLUMNS);
                        let row = q
                            .build_query_as::<PolicyRow>()
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(StoreError::from_sqlx)?;
                        match row {
                            Some(row) => (row, false),
                            None if put.precondition == Precondition::None => {
                                // Deleted between our insert and update: a create again is right.
                                let row = insert()
                                    .fetch_optional(&mut *tx)
                                    .await
                                    .map_err(StoreError::from_sqlx)?
                                    .ok_or(StoreError::PreconditionFailed)?;
                                (row, true)
                            }
                            None => return Err(StoreError::PreconditionFailed),
                        }
                    }
                };
                let event_type = if created { "policy.created" } else { "policy.updated" };
                let event = $crate::store::sql::policy_event(event_type, &put.vm, spec_json, &put.etag, &put.by);
                Self::enqueue_enforcement(&mut tx, &put.vm, now).await?;
                Self::append_audit(&mut tx, event, now).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(PolicyWritten {
                    policy: row.try_into()?,
                    created,
                })
            }

            async fn get_policy(
                &self,
                vm: &$crate::domain::VmId,
            ) -> Result<Option<$crate::store::StoredPolicy>, $crate::store::StoreError> {
                use $crate::store::rows::{PolicyRow, POLICY_COLUMNS};
                let row: Option<PolicyRow> = sqlx::query_as(&format!("SELECT {POLICY_COLUMNS} FROM policies WHERE vm_key = $1"))
                    .bind(vm.key().to_string())
                    .fetch_optional(self.reader())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_policy(
                &self,
                vm: &$crate::domain::VmId,
                precondition: &$crate::store::Precondition,
                by: &$crate::domain::Principal,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::StoredPolicy, $crate::store::StoreError> {
                use $crate::store::rows::{PolicyRow, POLICY_COLUMNS};
                use $crate::store::{Precondition, StoreError, StoredPolicy};
                use chrono::SubsecRound;
                let now = now.trunc_subsecs(6);
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM policies WHERE vm_key = ");
                q.push_bind(vm.key().to_string());
                Self::push_etag_condition(&mut q, precondition);
                q.push(" RETURNING ").push(POLICY_COLUMNS);
                let row: Option<PolicyRow> = q.build_query_as().fetch_optional(&mut *tx).await.map_err(StoreError::from_sqlx)?;
                let deleted: StoredPolicy = match row {
                    Some(row) => row.try_into()?,
                    // RFC 9110: a failed If-Match is 412 whether or not the resource exists.
                    None if *precondition != Precondition::None => return Err(StoreError::PreconditionFailed),
                    None => return Err(StoreError::NotFound),
                };
                let spec = serde_json::to_value(&deleted.policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let event = $crate::store::sql::policy_event("policy.deleted", vm, spec, &deleted.etag, by);
                Self::enqueue_enforcement(&mut tx, vm, now).await?;
                Self::append_audit(&mut tx, event, now).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(deleted)
            }

            async fn list_policies(
                &self,
                filter: &$crate::store::PolicyFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::store::StoredPolicy>, $crate::store::StoreError> {
                use $crate::store::rows::{PolicyRow, POLICY_COLUMNS};
                use $crate::store::{Page, StoreError, StoredPolicy};
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {POLICY_COLUMNS} FROM policies WHERE 1 = 1"));
                Self::push_place(&mut q, "", filter.subscription.as_deref(), filter.resource_group.as_deref());
                if let Some(after) = &page.after {
                    q.push(" AND vm_key > ").push_bind(after.clone());
                }
                if let Some(scopes) = &filter.within {
                    Self::push_within(&mut q, "", scopes);
                }
                // One row more than asked tells whether another page follows.
                q.push(" ORDER BY vm_key LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<PolicyRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(StoredPolicy::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_overfetch(items, page.limit, |p| p.vm.key().to_string()))
            }

            async fn put_role_assignment(
                &self,
                put: $crate::store::RoleAssignmentPut,
            ) -> Result<$crate::store::RoleAssignmentWritten, $crate::store::StoreError> {
                use $crate::store::rows::{RoleAssignmentRow, ROLE_ASSIGNMENT_COLUMNS};
                use $crate::store::{RoleAssignmentWritten, StoreError};
                use chrono::SubsecRound;
                let now = put.now.trunc_subsecs(6);
                let a = &put.assignment;
                let scope_key = a.scope.key();
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let twin: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM role_assignments WHERE principal_id = $1 AND role = $2 AND scope_key = $3 AND id <> $4",
                )
                .bind(&a.principal_id)
                .bind(a.role.as_str())
                .bind(&scope_key)
                .bind(&a.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                if let Some((twin,)) = twin {
                    return Err($crate::store::sql::assignment_exists(&twin));
                }
                let existing: Option<RoleAssignmentRow> = Self::row_by_id(&mut *tx, "role_assignments", ROLE_ASSIGNMENT_COLUMNS, &a.id).await?;
                // A retried PUT changes nothing, so it records nothing either.
                let unchanged = |row: &RoleAssignmentRow| {
                    row.principal_id == a.principal_id
                        && row.principal_type == a.principal_type.to_string()
                        && row.role == a.role.as_str()
                        && row.scope == a.scope.to_string()
                };
                let existed = match existing {
                    Some(row) if unchanged(&row) => {
                        return Ok(RoleAssignmentWritten { assignment: row.try_into()?, created: false });
                    }
                    other => other.is_some(),
                };
                let sql = format!(
                    "INSERT INTO role_assignments (id, principal_id, principal_type, role, scope, scope_key, created_at, updated_at, \
                     updated_by_id, updated_by_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) \
                     ON CONFLICT (id) DO UPDATE SET principal_id = excluded.principal_id, principal_type = excluded.principal_type, \
                     role = excluded.role, scope = excluded.scope, scope_key = excluded.scope_key, updated_at = excluded.updated_at, \
                     updated_by_id = excluded.updated_by_id, updated_by_name = excluded.updated_by_name \
                     RETURNING {ROLE_ASSIGNMENT_COLUMNS}"
                );
                let row: RoleAssignmentRow = sqlx::query_as(&sql)
                    .bind(&a.id)
                    .bind(&a.principal_id)
                    .bind(a.principal_type.to_string())
                    .bind(a.role.as_str())
                    .bind(a.scope.to_string())
                    .bind(&scope_key)
                    .bind(now)
                    .bind(&put.by.id)
                    .bind(&put.by.name)
                    .fetch_one(&mut *tx)
                    .await
                    // A concurrent twin that committed after our check trips the unique index.
                    .map_err(|e| $crate::store::sql::unique_violation_as_conflict(e, &a.id))?;
                let created = !existed;
                let event_type = if created { "roleAssignment.created" } else { "roleAssignment.updated" };
                Self::append_audit(&mut tx, $crate::store::sql::assignment_event(event_type, a, &put.by), now).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(RoleAssignmentWritten {
                    assignment: row.try_into()?,
                    created,
                })
            }

            async fn get_role_assignment(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::StoredRoleAssignment>, $crate::store::StoreError> {
                use $crate::store::rows::{RoleAssignmentRow, ROLE_ASSIGNMENT_COLUMNS};
                let row: Option<RoleAssignmentRow> = Self::row_by_id(self.reader(), "role_assignments", ROLE_ASSIGNMENT_COLUMNS, id).await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_role_assignment(
                &self,
                id: &str,
                by: &$crate::domain::Principal,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::StoredRoleAssignment, $crate::store::StoreError> {
                use $crate::store::rows::{RoleAssignmentRow, ROLE_ASSIGNMENT_COLUMNS};
                use $crate::store::{StoreError, StoredRoleAssignment};
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let deleted = Self::delete_audited::<RoleAssignmentRow, StoredRoleAssignment>(
                    &mut tx, "role_assignments", ROLE_ASSIGNMENT_COLUMNS, id, now,
                    |d| $crate::store::sql::assignment_event("roleAssignment.deleted", &d.assignment, by),
                )
                .await?
                .ok_or(StoreError::NotFound)?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(deleted)
            }

            async fn list_role_assignments(
                &self,
                filter: &$crate::store::RoleAssignmentFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::store::StoredRoleAssignment>, $crate::store::StoreError> {
                use $crate::store::rows::{RoleAssignmentRow, ROLE_ASSIGNMENT_COLUMNS};
                use $crate::store::{StoreError, StoredRoleAssignment};
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {ROLE_ASSIGNMENT_COLUMNS} FROM role_assignments WHERE 1 = 1"));
                if let Some(p) = &filter.principal_id {
                    q.push(" AND principal_id = ").push_bind(p.clone());
                }
                if let Some(role) = filter.role {
                    q.push(" AND role = ").push_bind(role.as_str());
                }
                if let Some(scopes) = &filter.within {
                    // At a scope or under it, on whole path segments: compare the prefix with
                    // its trailing '/', never a LIKE pattern ('_' is a wildcard there).
                    q.push(" AND (1 = 0");
                    for scope in scopes {
                        if *scope == $crate::domain::Scope::Tenant {
                            q.push(" OR 1 = 1");
                            continue;
                        }
                        let key = scope.key();
                        let under = format!("{key}/");
                        let len = i32::try_from(under.chars().count()).unwrap_or(i32::MAX);
                        q.push(" OR scope_key = ").push_bind(key);
                        q.push(" OR substr(scope_key, 1, ").push_bind(len).push(") = ").push_bind(under);
                    }
                    q.push(")");
                }
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.clone());
                }
                q.push(" ORDER BY id LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<RoleAssignmentRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(StoredRoleAssignment::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok($crate::store::Page::from_overfetch(items, page.limit, |a| a.assignment.id.clone()))
            }

            async fn role_assignments_for(
                &self,
                principal_ids: &[String],
            ) -> Result<Vec<$crate::rbac::RoleAssignment>, $crate::store::StoreError> {
                use $crate::store::rows::{RoleAssignmentRow, ROLE_ASSIGNMENT_COLUMNS};
                use $crate::store::{StoreError, StoredRoleAssignment};
                if principal_ids.is_empty() {
                    return Ok(vec![]);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {ROLE_ASSIGNMENT_COLUMNS} FROM role_assignments WHERE principal_id IN ("));
                let mut ids = q.separated(", ");
                for id in principal_ids {
                    ids.push_bind(id.clone());
                }
                q.push(") ORDER BY id");
                let rows: Vec<RoleAssignmentRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                rows.into_iter().map(|r| StoredRoleAssignment::try_from(r).map(|s| s.assignment)).collect()
            }

            async fn append_event(
                &self,
                event: $crate::audit::NewAuditEvent,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::audit::AuditEvent, $crate::store::StoreError> {
                use chrono::SubsecRound;
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let event = Self::append_audit(&mut tx, event, now.trunc_subsecs(6)).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(event)
            }

            async fn record_enforcement(
                &self,
                vm: &$crate::domain::VmId,
                etag: &str,
                enforcement: &$crate::store::Enforcement,
                event: $crate::audit::NewAuditEvent,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                use chrono::SubsecRound;
                use $crate::store::StoreError;
                let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let updated = sqlx::query(
                    "UPDATE policies SET enforcement_state = $1, enforcement_detail = $2, enforcement_nsgs = $3, \
                     enforcement_firewalls = $4 WHERE vm_key = $5 AND etag = $6",
                )
                .bind(enforcement.state.as_str())
                .bind(&enforcement.detail)
                .bind(serde_json::to_string(&enforcement.network_security_groups).map_err(corrupt)?)
                .bind(serde_json::to_string(&enforcement.firewalls).map_err(corrupt)?)
                .bind(vm.key())
                .bind(etag)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::append_audit(&mut tx, event, now.trunc_subsecs(6)).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(true)
            }

            async fn claim_jobs(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease: chrono::Duration,
                limit: u32,
            ) -> Result<Vec<$crate::store::Job>, $crate::store::StoreError> {
                use $crate::store::rows::{JobRow, JOB_COLUMNS};
                use $crate::store::{Job, StoreError};
                let sql = format!(
                    "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 WHERE id IN (\
                     SELECT id FROM jobs WHERE run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) \
                     ORDER BY run_after, id LIMIT $4{}) RETURNING {JOB_COLUMNS}",
                    Self::SKIP_LOCKED
                );
                let rows: Vec<JobRow> = sqlx::query_as(&sql)
                    .bind(owner)
                    .bind(now + lease)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(self.writer())
                    .await
                    .map_err(StoreError::from_sqlx)?;
                let mut jobs = rows.into_iter().map(Job::try_from).collect::<Result<Vec<_>, _>>()?;
                jobs.sort_by_key(|j| j.id);
                Ok(jobs)
            }

            async fn requeue_enforcement(&self, vm: &$crate::domain::VmId, now: chrono::DateTime<chrono::Utc>) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.writer().begin().await.map_err($crate::store::StoreError::from_sqlx)?;
                Self::enqueue_enforcement(&mut tx, vm, now).await?;
                tx.commit().await.map_err($crate::store::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn renew_lease(&self, id: i64, owner: &str, until: chrono::DateTime<chrono::Utc>) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3")
                    .bind(until)
                    .bind(id)
                    .bind(owner)
                    .execute(self.writer())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_job(&self, id: i64, owner: &str) -> Result<bool, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let done: Option<(String, String, i32)> =
                    sqlx::query_as("DELETE FROM jobs WHERE id = $1 AND lease_owner = $2 RETURNING kind, subject, attempts")
                        .bind(id)
                        .bind(owner)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                let Some((kind, subject, attempts)) = done else {
                    return Ok(false);
                };
                if let Some(event) = $crate::audit::dispatch_event(id, &kind, &subject, attempts, None) {
                    Self::append_audit(&mut tx, event, chrono::Utc::now()).await?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(true)
            }

            async fn retry_job(
                &self,
                id: i64,
                owner: &str,
                run_after: chrono::DateTime<chrono::Utc>,
                error: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let done: Option<(String, String, i32)> = sqlx::query_as(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_after = $1, last_error = $2 \
                     WHERE id = $3 AND lease_owner = $4 RETURNING kind, subject, attempts",
                )
                .bind(run_after)
                .bind(error)
                .bind(id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                let Some((kind, subject, attempts)) = done else {
                    return Ok(false);
                };
                if let Some(event) = $crate::audit::dispatch_event(id, &kind, &subject, attempts, Some((error, run_after))) {
                    Self::append_audit(&mut tx, event, chrono::Utc::now()).await?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(true)
            }

            async fn next_job_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let next: Option<(chrono::DateTime<chrono::Utc>,)> =
                    sqlx::query_as("SELECT run_after FROM jobs WHERE lease_owner IS NULL ORDER BY run_after LIMIT 1")
                        .fetch_optional(self.reader())
                        .await
                        .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(next.map(|(at,)| at))
            }

            async fn pending_jobs(&self) -> Result<Vec<$crate::store::Job>, $crate::store::StoreError> {
                use $crate::store::rows::{JobRow, JOB_COLUMNS};
                let rows: Vec<JobRow> = sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn put_vm(&self, vm: &$crate::store::InventoryVm) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
                sqlx::query(
                    "INSERT INTO vms (vm_key, vm_id, subscription_key, resource_group_key, name, location, network, exposures, guarded, exposed, refreshed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (vm_key) DO UPDATE SET vm_id = excluded.vm_id, name = excluded.name, location = excluded.location, \
                     network = excluded.network, exposures = excluded.exposures, guarded = excluded.guarded, exposed = excluded.exposed, \
                     refreshed_at = excluded.refreshed_at",
                )
                .bind(vm.vm.key())
                .bind(vm.vm.as_str())
                .bind(vm.vm.subscription().to_ascii_lowercase())
                .bind(vm.vm.resource_group().to_ascii_lowercase())
                .bind(&vm.network.name)
                .bind(&vm.network.location)
                .bind(serde_json::to_string(&vm.network).map_err(corrupt)?)
                .bind(serde_json::to_string(&vm.exposures).map_err(corrupt)?)
                .bind(vm.network.is_guarded())
                .bind(!vm.exposures.is_empty())
                .bind(vm.refreshed_at)
                .execute(self.writer())
                .await
                .map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn get_vm(&self, vm: &$crate::domain::VmId) -> Result<Option<$crate::store::ListedVm>, $crate::store::StoreError> {
                use $crate::store::rows::{VmRow, VM_COLUMNS};
                let row: Option<VmRow> = sqlx::query_as(&format!(
                    "SELECT {VM_COLUMNS} FROM vms v LEFT JOIN policies p ON p.vm_key = v.vm_key WHERE v.vm_key = $1"
                ))
                .bind(vm.key())
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_vms(
                &self,
                filter: &$crate::store::VmFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::store::ListedVm>, $crate::store::StoreError> {
                use $crate::domain::Assessment;
                use $crate::store::rows::{VmRow, VM_COLUMNS};
                use $crate::store::{ListedVm, Page, StoreError};
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {VM_COLUMNS} FROM vms v LEFT JOIN policies p ON p.vm_key = v.vm_key WHERE 1 = 1"
                ));
                Self::push_place(&mut q, "v.", filter.subscription.as_deref(), filter.resource_group.as_deref());
                if let Some(scopes) = &filter.within {
                    Self::push_within(&mut q, "v.", scopes);
                }
                // The assessment of domain::vm::assess, as SQL, so pages stay full.
                match filter.assessment {
                    Some(Assessment::Healthy) => {
                        q.push(" AND (p.vm_key IS NOT NULL OR (v.guarded = ").push_bind(true).push(" AND v.exposed = ").push_bind(false).push("))");
                    }
                    Some(Assessment::Unhealthy) => {
                        q.push(" AND p.vm_key IS NULL AND v.guarded = ").push_bind(true).push(" AND v.exposed = ").push_bind(true);
                    }
                    Some(Assessment::NotApplicable) => {
                        q.push(" AND p.vm_key IS NULL AND v.guarded = ").push_bind(false);
                    }
                    None => {}
                }
                if let Some(after) = &page.after {
                    q.push(" AND v.vm_key > ").push_bind(after.clone());
                }
                q.push(" ORDER BY v.vm_key LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<VmRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(ListedVm::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_overfetch(items, page.limit, |v| v.vm.vm.key().to_string()))
            }

            async fn forget_vms(&self, subscription: &str, since: chrono::DateTime<chrono::Utc>) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query("DELETE FROM vms WHERE subscription_key = $1 AND refreshed_at < $2")
                    .bind(subscription.to_ascii_lowercase())
                    .bind(since)
                    .execute(self.writer())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(done.rows_affected())
            }

            async fn create_request(&self, new: $crate::store::NewRequest) -> Result<$crate::store::RequestCreated, $crate::store::StoreError> {
                use chrono::SubsecRound;
                use $crate::store::rows::{RequestRow, REQUEST_COLUMNS};
                use $crate::store::{RequestCreated, StoreError, StoredRequest};
                let now = new.now.trunc_subsecs(6);
                let r = &new.request;
                let body = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                if let Some(idem) = &new.idempotency {
                    let earlier: Option<RequestRow> = sqlx::query_as(&format!(
                        "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE submitted_by_id = $1 AND idempotency_key = $2"
                    ))
                    .bind(&r.submitted_by.id)
                    .bind(&idem.key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                    if let Some(row) = earlier {
                        if row.idempotency_hash.as_deref() != Some(idem.body_hash.as_str()) {
                            return Err(StoreError::Unprocessable(format!(
                                "Idempotency-Key {:?} was used before with another body: use a new key for a new request",
                                idem.key
                            )));
                        }
                        return Ok(RequestCreated::Replayed(StoredRequest::try_from(row)?));
                    }
                }
                sqlx::query(
                    "INSERT INTO access_requests (id, status, requestor_id, submitted_by_id, body, version, idempotency_key, idempotency_hash, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $8)",
                )
                .bind(&r.id)
                .bind(r.status.as_str())
                .bind(&r.requestor.id)
                .bind(&r.submitted_by.id)
                .bind(&body)
                .bind(new.idempotency.as_ref().map(|i| i.key.clone()))
                .bind(new.idempotency.as_ref().map(|i| i.body_hash.clone()))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::sql::unique_violation_as(e, || StoreError::Conflict("a request with this Idempotency-Key is being created right now; retry".into())))?;
                for vm in &r.virtual_machines {
                    sqlx::query(
                        "INSERT INTO access_request_vms (request_id, vm_key, subscription_key, resource_group_key) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.id)
                    .bind(vm.vm.key())
                    .bind(vm.vm.subscription().to_ascii_lowercase())
                    .bind(vm.vm.resource_group().to_ascii_lowercase())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                }
                if let Some(job) = &new.job {
                    Self::insert_job(&mut tx, job).await?;
                }
                let actor = new.event.actor.clone();
                Self::append_audit(&mut tx, new.event, now).await?;
                for event in Self::write_grants(&mut tx, r, &actor, now).await? {
                    Self::append_audit(&mut tx, event, now).await?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(RequestCreated::Created(StoredRequest { request: new.request, version: 1 }))
            }

            async fn get_request(&self, id: &str) -> Result<Option<$crate::store::StoredRequest>, $crate::store::StoreError> {
                use $crate::store::rows::{RequestRow, REQUEST_COLUMNS};
                let row: Option<RequestRow> = Self::row_by_id(self.reader(), "access_requests", REQUEST_COLUMNS, id).await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn update_request(&self, update: $crate::store::RequestUpdate) -> Result<bool, $crate::store::StoreError> {
                use chrono::SubsecRound;
                use $crate::store::StoreError;
                let now = update.now.trunc_subsecs(6);
                let r = &update.request;
                let body = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let done = sqlx::query(
                    "UPDATE access_requests SET status = $1, body = $2, version = version + 1, updated_at = $3 WHERE id = $4 AND version = $5",
                )
                .bind(r.status.as_str())
                .bind(&body)
                .bind(now)
                .bind(&r.id)
                .bind(update.expected_version)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
                if done == 0 {
                    return Ok(false);
                }
                if let Some(job) = &update.job {
                    Self::insert_job(&mut tx, job).await?;
                }
                let actor = update.event.actor.clone();
                Self::append_audit(&mut tx, update.event, now).await?;
                for event in Self::write_grants(&mut tx, r, &actor, now).await? {
                    Self::append_audit(&mut tx, event, now).await?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(true)
            }

            async fn list_requests(
                &self,
                filter: &$crate::store::RequestFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::store::StoredRequest>, $crate::store::StoreError> {
                use $crate::store::rows::RequestRow;
                use $crate::store::{Page, StoreError, StoredRequest};
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT r.body, r.version, r.idempotency_hash FROM access_requests r WHERE 1 = 1");
                if let Some(status) = filter.status {
                    q.push(" AND r.status = ").push_bind(status.as_str());
                }
                if let Some(requestor) = &filter.requestor {
                    q.push(" AND r.requestor_id = ").push_bind(requestor.clone());
                }
                if let Some(who) = &filter.involving {
                    q.push(" AND (r.requestor_id = ").push_bind(who.clone()).push(" OR r.submitted_by_id = ").push_bind(who.clone()).push(")");
                }
                if let Some(vm_key) = &filter.vm_key {
                    q.push(" AND EXISTS (SELECT 1 FROM access_request_vms x WHERE x.request_id = r.id AND x.vm_key = ").push_bind(vm_key.clone()).push(")");
                }
                if let Some((who, scopes)) = &filter.visible_to {
                    q.push(" AND (r.requestor_id = ").push_bind(who.clone()).push(" OR r.submitted_by_id = ").push_bind(who.clone());
                    q.push(" OR EXISTS (SELECT 1 FROM access_request_vms v WHERE v.request_id = r.id");
                    Self::push_within(&mut q, "v.", scopes);
                    q.push("))");
                }
                // Newest first: ids are UUIDv7, ordered by creation time.
                if let Some(after) = &page.after {
                    q.push(" AND r.id < ").push_bind(after.clone());
                }
                q.push(" ORDER BY r.id DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<RequestRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(StoredRequest::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_overfetch(items, page.limit, |r| r.request.id.clone()))
            }

            async fn audit_events_after(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::audit::AuditEvent>, $crate::store::StoreError> {
                use $crate::store::rows::{AuditRow, AUDIT_COLUMNS};
                let rows: Vec<AuditRow> =
                    sqlx::query_as(&format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"))
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err($crate::store::StoreError::from_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn list_grants(
                &self,
                filter: &$crate::store::GrantFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::domain::grant::Grant>, $crate::store::StoreError> {
                use $crate::domain::grant::{Grant, GrantStatus};
                use $crate::store::rows::{parse_time_key, time_key, GrantRow, GRANT_COLUMNS};
                use $crate::store::{Page, StoreError};
                // SQLite's planner, without statistics, may pick the index of a filter that
                // matches millions of rows over one that matches a few: a unary `+` keeps a
                // column from being used as an index, so only the most selective filter leads.
                let lead = if filter.vm_key.is_some() {
                    "vm"
                } else if filter.requestor.is_some() {
                    "requestor"
                } else if filter.status == Some(GrantStatus::Active) {
                    "status"
                } else if filter.port.is_some() {
                    "port"
                } else {
                    "time"
                };
                let col = |name: &str, column: &str| -> String {
                    if name == lead || Self::BACKEND != "sqlite" { format!("g.{column}") } else { format!("+g.{column}") }
                };
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE 1 = 1"));
                if let Some(vm) = &filter.vm_key {
                    q.push(format!(" AND {} = ", col("vm", "vm_key"))).push_bind(vm.clone());
                }
                if let Some(who) = &filter.requestor {
                    q.push(format!(" AND {} = ", col("requestor", "requestor_id"))).push_bind(who.clone());
                }
                if let Some(status) = filter.status {
                    q.push(format!(" AND {} = ", col("status", "status"))).push_bind(status.as_str());
                }
                if let Some(port) = filter.port {
                    q.push(format!(" AND {} = ", col("port", "port"))).push_bind(i32::from(port));
                }
                if let Some(scopes) = &filter.within {
                    Self::push_within(&mut q, "g.", scopes);
                }
                if let Some(to) = filter.to {
                    q.push(" AND g.granted_at < ").push_bind(to);
                }
                if let Some(from) = filter.from {
                    // Open at `from` or later: it ended (or is to end) at `from` or after, and so
                    // began no earlier than the longest grant ever lasted before it.
                    let (max_span,): (i64,) = sqlx::query_as("SELECT max_span FROM grant_window WHERE id = 1")
                        .fetch_one(self.reader())
                        .await
                        .map_err(StoreError::from_sqlx)?;
                    q.push(" AND g.granted_at >= ").push_bind(from - chrono::Duration::seconds(max_span));
                    q.push(" AND COALESCE(g.closed_at, g.end_time, g.granted_at) >= ").push_bind(from);
                }
                if let Some(after) = &page.after {
                    let (at, id) = parse_time_key(after)?;
                    // The first condition alone is an index range on both databases.
                    q.push(" AND g.granted_at <= ").push_bind(at);
                    q.push(" AND (g.granted_at < ").push_bind(at).push(" OR g.id < ").push_bind(id).push(")");
                }
                q.push(" ORDER BY g.granted_at DESC, g.id DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<GrantRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(Grant::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_overfetch(items, page.limit, |g| time_key(g.granted_at, &g.id)))
            }

            async fn list_audit_events(
                &self,
                filter: &$crate::store::AuditFilter,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::audit::AuditEvent>, $crate::store::StoreError> {
                use $crate::audit::AuditEvent;
                use $crate::store::rows::{parse_time_key, time_key, AuditRow, AUDIT_COLUMNS};
                use $crate::store::{Page, StoreError};
                let lead = if filter.request_id.is_some() {
                    "request"
                } else if filter.resource_id.is_some() {
                    "resource"
                } else if filter.actor.is_some() {
                    "actor"
                } else if !filter.types.is_empty() {
                    "type"
                } else {
                    "time"
                };
                let col = |name: &str, column: &str| -> String {
                    if name == lead || Self::BACKEND != "sqlite" { column.to_string() } else { format!("+{column}") }
                };
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"));
                if let Some(id) = &filter.request_id {
                    q.push(format!(" AND {} = ", col("request", "request_id"))).push_bind(id.clone());
                }
                if let Some(id) = &filter.resource_id {
                    q.push(format!(" AND {} = ", col("resource", "lower(resource_id)"))).push_bind(id.to_ascii_lowercase());
                }
                if let Some(actor) = &filter.actor {
                    q.push(format!(" AND {} = ", col("actor", "actor_id"))).push_bind(actor.clone());
                }
                if !filter.types.is_empty() {
                    q.push(format!(" AND {} IN (", col("type", "event_type")));
                    let mut list = q.separated(", ");
                    for t in &filter.types {
                        list.push_bind(t.clone());
                    }
                    q.push(")");
                }
                if let Some(from) = filter.from {
                    q.push(" AND at >= ").push_bind(from);
                }
                if let Some(to) = filter.to {
                    q.push(" AND at < ").push_bind(to);
                }
                if let Some(after) = &page.after {
                    let (at, seq) = parse_time_key(after)?;
                    let seq: i64 = seq.parse().map_err(|_| StoreError::InvalidInput("cursor: not a cursor this service issued".into()))?;
                    q.push(" AND at >= ").push_bind(at);
                    q.push(" AND (at > ").push_bind(at).push(" OR seq > ").push_bind(seq).push(")");
                }
                q.push(" ORDER BY at, seq LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<AuditRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(AuditEvent::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_overfetch(items, page.limit, |e| time_key(e.at, &e.seq.to_string())))
            }

            async fn audit_head(&self) -> Result<(i64, String), $crate::store::StoreError> {
                sqlx::query_as("SELECT seq, head_hash FROM audit_chain WHERE id = 1")
                    .fetch_one(self.reader())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)
            }

            async fn latest_checkpoint(&self) -> Result<Option<$crate::store::Checkpoint>, $crate::store::StoreError> {
                let row: Option<(i64, String, i64, chrono::DateTime<chrono::Utc>, String, String)> = sqlx::query_as(
                    "SELECT seq, hash, events, created_at, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(row.map(|(seq, hash, events, created_at, key_id, signature)| $crate::store::Checkpoint {
                    seq, hash, events, created_at, key_id, signature,
                }))
            }

            async fn last_event_before(&self, at: chrono::DateTime<chrono::Utc>) -> Result<Option<$crate::audit::AuditEvent>, $crate::store::StoreError> {
                use $crate::store::rows::{AuditRow, AUDIT_COLUMNS};
                let row: Option<AuditRow> = sqlx::query_as(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE at < $1 ORDER BY at DESC, seq DESC LIMIT 1"
                ))
                .bind(at)
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn prune_audit(&self, checkpoint: &$crate::store::Checkpoint, batch: u32) -> Result<u64, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, events, created_at, key_id, signature) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(checkpoint.seq)
                .bind(&checkpoint.hash)
                .bind(checkpoint.events)
                .bind(checkpoint.created_at)
                .bind(&checkpoint.key_id)
                .bind(&checkpoint.signature)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                let deleted = sqlx::query(
                    "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events WHERE seq <= $1 ORDER BY seq LIMIT $2)",
                )
                .bind(checkpoint.seq)
                .bind(i64::from(batch))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(deleted)
            }

            async fn import_grants(&self, grants: &[$crate::domain::grant::Grant]) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                for chunk in grants.chunks(500) {
                    let mut q = Self::grant_insert(chunk)?;
                    q.push(" ON CONFLICT (id) DO NOTHING");
                    q.build().execute(&mut *tx).await.map_err(StoreError::from_sqlx)?;
                }
                let span = grants.iter().map(|g| g.span_seconds()).max().unwrap_or(0);
                Self::widen_grant_window(&mut tx, span).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn begin_grant_bulk_load(&self) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                for (name, _) in $crate::store::sql::GRANT_INDEXES {
                    sqlx::query(&format!("DROP INDEX IF EXISTS {name}"))
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn end_grant_bulk_load(&self) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                if Self::BACKEND == "postgres" {
                    // Sorting ten million keys in the default 64 MB spills to disk many times.
                    sqlx::query("SET LOCAL maintenance_work_mem = '512MB'")
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                for (name, columns) in $crate::store::sql::GRANT_INDEXES {
                    sqlx::query(&format!("CREATE INDEX IF NOT EXISTS {name} ON grants ({columns})"))
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                if Self::BACKEND == "postgres" {
                    // Fresh statistics at once rather than at autovacuum's next pass. (SQLite
                    // is left without them, as a served database is: see `list_grants`.)
                    sqlx::query("ANALYZE grants")
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                if Self::BACKEND == "sqlite" {
                    // The rebuilt indexes are gigabytes of WAL; copy them into the database
                    // now, or the next process to close it last does, holding the write lock
                    // long enough for a `serve` starting meanwhile to fail on "database is locked".
                    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .execute(self.writer())
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Ok(())
            }

            // ---- webhooks ----

            async fn create_webhook(
                &self,
                webhook: &$crate::notify::Webhook,
                secret: &str,
                by: &$crate::domain::Principal,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO webhooks (id, url, event_types, secret, description, enabled, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&webhook.id)
                .bind(&webhook.url)
                .bind(serde_json::to_string(&webhook.event_types).unwrap_or_default())
                .bind(secret)
                .bind(&webhook.description)
                .bind(webhook.enabled)
                .bind(webhook.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                Self::append_audit(&mut tx, $crate::store::sql::webhook_event("webhook.created", webhook, by), webhook.created_at).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn update_webhook(
                &self,
                webhook: &$crate::notify::Webhook,
                secret: Option<&str>,
                by: &$crate::domain::Principal,
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let updated = sqlx::query(
                    "UPDATE webhooks SET url = $2, event_types = $3, description = $4, enabled = $5, updated_at = $6, \
                     secret = COALESCE($7, secret) WHERE id = $1",
                )
                .bind(&webhook.id)
                .bind(&webhook.url)
                .bind(serde_json::to_string(&webhook.event_types).unwrap_or_default())
                .bind(&webhook.description)
                .bind(webhook.enabled)
                .bind(webhook.updated_at)
                .bind(secret)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::append_audit(&mut tx, $crate::store::sql::webhook_event("webhook.updated", webhook, by), webhook.updated_at).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(true)
            }

            async fn delete_webhook(
                &self,
                id: &str,
                by: &$crate::domain::Principal,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<$crate::notify::Webhook>, $crate::store::StoreError> {
                use $crate::store::rows::{WebhookRow, WEBHOOK_COLUMNS};
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let deleted = Self::delete_audited::<WebhookRow, ($crate::notify::Webhook, String)>(
                    &mut tx, "webhooks", WEBHOOK_COLUMNS, id, now,
                    |(w, _)| $crate::store::sql::webhook_event("webhook.deleted", w, by),
                )
                .await?;
                let Some((webhook, _)) = deleted else { return Ok(None) };
                // Its log goes with it; queued deliveries find nothing to do.
                sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(Some(webhook))
            }

            async fn get_webhook(&self, id: &str) -> Result<Option<($crate::notify::Webhook, String)>, $crate::store::StoreError> {
                use $crate::store::rows::{WebhookRow, WEBHOOK_COLUMNS};
                let row: Option<WebhookRow> = Self::row_by_id(self.reader(), "webhooks", WEBHOOK_COLUMNS, id).await?;
                row.map(TryFrom::try_from).transpose()
            }

            async fn list_webhooks(&self) -> Result<Vec<$crate::notify::Webhook>, $crate::store::StoreError> {
                use $crate::store::rows::{WebhookRow, WEBHOOK_COLUMNS};
                let rows: Vec<WebhookRow> = sqlx::query_as(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id"))
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                rows.into_iter()
                    .map(|r| <($crate::notify::Webhook, String)>::try_from(r).map(|(w, _)| w))
                    .collect()
            }

            async fn list_deliveries(
                &self,
                webhook_id: &str,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::notify::Delivery>, $crate::store::StoreError> {
                use $crate::notify::Delivery;
                use $crate::store::rows::{parse_time_key, time_key, DeliveryRow, DELIVERY_COLUMNS};
                use $crate::store::{Page, StoreError};
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = "));
                q.push_bind(webhook_id.to_string());
                if let Some(after) = &page.after {
                    let (at, id) = parse_time_key(after)?;
                    q.push(" AND created_at <= ").push_bind(at);
                    q.push(" AND (created_at < ").push_bind(at).push(" OR id < ").push_bind(id).push(")");
                }
                q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<DeliveryRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok(Page::from_overfetch(items, page.limit, |d| time_key(d.created_at, &d.id)))
            }

            async fn get_delivery(&self, id: &str) -> Result<Option<$crate::notify::Delivery>, $crate::store::StoreError> {
                use $crate::store::rows::{DeliveryRow, DELIVERY_COLUMNS};
                let row: Option<DeliveryRow> = Self::row_by_id(self.reader(), "webhook_deliveries", DELIVERY_COLUMNS, id).await?;
                row.map(TryFrom::try_from).transpose()
            }

            async fn record_delivery(
                &self,
                id: &str,
                attempt: &$crate::store::DeliveryAttempt,
            ) -> Result<(), $crate::store::StoreError> {
                let delivered = (attempt.status == $crate::notify::DeliveryStatus::Delivered).then_some(attempt.at);
                // A status code alone (no error) records a success; a failure without an answer
                // has neither, and must not keep the code of an earlier answer.
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_status_code = $3, \
                     last_error = $4, last_attempt_at = $5, delivered_at = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(attempt.status.as_str())
                .bind(attempt.status_code.map(i32::from))
                .bind(&attempt.error)
                .bind(attempt.at)
                .bind(delivered)
                .execute(self.writer())
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(())
            }

            // ---- chatops ----

            async fn put_chat_identity(
                &self,
                put: $crate::store::ChatIdentityPut,
            ) -> Result<$crate::store::ChatIdentityWritten, $crate::store::StoreError> {
                use $crate::store::rows::{ChatIdentityRow, CHAT_IDENTITY_COLUMNS};
                use $crate::store::{ChatIdentityWritten, StoreError};
                use chrono::SubsecRound;
                let now = put.now.trunc_subsecs(6);
                let i = &put.identity;
                let taken = || {
                    StoreError::Conflict(format!(
                        "this {} account is already mapped by another identity than {:?}",
                        i.platform, i.id
                    ))
                };
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let twin: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM chatops_identities WHERE platform = $1 AND workspace_id = $2 AND chat_user_id = $3 AND id <> $4",
                )
                .bind(i.platform.as_str())
                .bind(&i.workspace_id)
                .bind(&i.chat_user_id)
                .bind(&i.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                if let Some((twin,)) = twin {
                    return Err(StoreError::Conflict(format!(
                        "this {} account is already mapped by identity {twin:?}", i.platform
                    )));
                }
                let existing: Option<ChatIdentityRow> = Self::row_by_id(&mut *tx, "chatops_identities", CHAT_IDENTITY_COLUMNS, &i.id).await?;
                let existed = match existing {
                    Some(row) => {
                        let current: $crate::store::StoredChatIdentity = row.try_into()?;
                        // A retried PUT changes nothing, so it records nothing either.
                        if current.identity == *i {
                            return Ok(ChatIdentityWritten { identity: current, created: false });
                        }
                        true
                    }
                    None => false,
                };
                let sql = format!(
                    "INSERT INTO chatops_identities (id, platform, workspace_id, chat_user_id, user_id, user_name, created_at, updated_at, \
                     updated_by_id, updated_by_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) \
                     ON CONFLICT (id) DO UPDATE SET platform = excluded.platform, workspace_id = excluded.workspace_id, \
                     chat_user_id = excluded.chat_user_id, user_id = excluded.user_id, user_name = excluded.user_name, \
                     updated_at = excluded.updated_at, updated_by_id = excluded.updated_by_id, updated_by_name = excluded.updated_by_name \
                     RETURNING {CHAT_IDENTITY_COLUMNS}"
                );
                let row: ChatIdentityRow = sqlx::query_as(&sql)
                    .bind(&i.id)
                    .bind(i.platform.as_str())
                    .bind(&i.workspace_id)
                    .bind(&i.chat_user_id)
                    .bind(&i.user.id)
                    .bind(&i.user.name)
                    .bind(now)
                    .bind(&put.by.id)
                    .bind(&put.by.name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| $crate::store::sql::unique_violation_as(e, taken))?;
                let created = !existed;
                let event_type = if created { "chatopsIdentity.created" } else { "chatopsIdentity.updated" };
                Self::append_audit(&mut tx, $crate::store::sql::chat_identity_event(event_type, i, &put.by), now).await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(ChatIdentityWritten { identity: row.try_into()?, created })
            }

            async fn get_chat_identity(&self, id: &str) -> Result<Option<$crate::store::StoredChatIdentity>, $crate::store::StoreError> {
                use $crate::store::rows::{ChatIdentityRow, CHAT_IDENTITY_COLUMNS};
                let row: Option<ChatIdentityRow> = Self::row_by_id(self.reader(), "chatops_identities", CHAT_IDENTITY_COLUMNS, id).await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_chat_identity(
                &self,
                id: &str,
                by: &$crate::domain::Principal,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::StoredChatIdentity, $crate::store::StoreError> {
                use $crate::store::rows::{ChatIdentityRow, CHAT_IDENTITY_COLUMNS};
                use $crate::store::{StoreError, StoredChatIdentity};
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                let deleted = Self::delete_audited::<ChatIdentityRow, StoredChatIdentity>(
                    &mut tx, "chatops_identities", CHAT_IDENTITY_COLUMNS, id, now,
                    |d| $crate::store::sql::chat_identity_event("chatopsIdentity.deleted", &d.identity, by),
                )
                .await?
                .ok_or(StoreError::NotFound)?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(deleted)
            }

            async fn list_chat_identities(
                &self,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::store::StoredChatIdentity>, $crate::store::StoreError> {
                use $crate::store::rows::{ChatIdentityRow, CHAT_IDENTITY_COLUMNS};
                use $crate::store::{StoreError, StoredChatIdentity};
                let mut q = sqlx::QueryBuilder::<$db>::new(format!("SELECT {CHAT_IDENTITY_COLUMNS} FROM chatops_identities WHERE 1 = 1"));
                if let Some(after) = &page.after {
                    q.push(" AND id > ").push_bind(after.clone());
                }
                q.push(" ORDER BY id LIMIT ").push_bind(i64::from(page.limit) + 1);
                let rows: Vec<ChatIdentityRow> = q.build_query_as().fetch_all(self.reader()).await.map_err(StoreError::from_sqlx)?;
                let items = rows.into_iter().map(StoredChatIdentity::try_from).collect::<Result<Vec<_>, _>>()?;
                Ok($crate::store::Page::from_overfetch(items, page.limit, |i| i.identity.id.clone()))
            }

            async fn find_chat_identity(
                &self,
                platform: $crate::chatops::Platform,
                workspace_id: &str,
                chat_user_id: &str,
            ) -> Result<Option<$crate::store::StoredChatIdentity>, $crate::store::StoreError> {
                use $crate::store::rows::{ChatIdentityRow, CHAT_IDENTITY_COLUMNS};
                let row: Option<ChatIdentityRow> = sqlx::query_as(&format!(
                    "SELECT {CHAT_IDENTITY_COLUMNS} FROM chatops_identities WHERE platform = $1 AND workspace_id = $2 AND chat_user_id = $3"
                ))
                .bind(platform.as_str())
                .bind(workspace_id)
                .bind(chat_user_id)
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn find_vms_by_name(&self, name: &str, limit: u32) -> Result<Vec<$crate::store::ListedVm>, $crate::store::StoreError> {
                use $crate::store::rows::{VmRow, VM_COLUMNS};
                use $crate::store::{ListedVm, StoreError};
                // lower() matches the vms_by_name index; Azure VM names are ASCII.
                let rows: Vec<VmRow> = sqlx::query_as(&format!(
                    "SELECT {VM_COLUMNS} FROM vms v LEFT JOIN policies p ON p.vm_key = v.vm_key WHERE lower(v.name) = $1 ORDER BY v.vm_key LIMIT $2"
                ))
                .bind(name.to_ascii_lowercase())
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await
                .map_err(StoreError::from_sqlx)?;
                rows.into_iter().map(ListedVm::try_from).collect()
            }

            async fn remember_chat_message(
                &self,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
                forget_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut tx = self.writer().begin().await.map_err(StoreError::from_sqlx)?;
                sqlx::query("DELETE FROM chatops_seen_messages WHERE seen_at < $1")
                    .bind(forget_before)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                let inserted = sqlx::query("INSERT INTO chatops_seen_messages (message_key, seen_at) VALUES ($1, $2) ON CONFLICT (message_key) DO NOTHING")
                    .bind(key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .rows_affected();
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(inserted == 1)
            }

            // ---- backpressure ----

            async fn count_due_jobs(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                at_most: u32,
            ) -> Result<u32, $crate::store::StoreError> {
                // A range scan of the jobs_due index that stops after `at_most` rows, so the
                // cost is bounded however deep the backlog is.
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE run_after <= $1 ORDER BY run_after LIMIT $2) AS due",
                )
                .bind(now)
                .bind(i64::from(at_most))
                .fetch_one(self.reader())
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(u32::try_from(count).unwrap_or(at_most))
            }
        }

        impl $store {
            /// `INSERT INTO grants ... VALUES` the given grants (no conflict clause yet).
            fn grant_insert(grants: &[$crate::domain::grant::Grant]) -> Result<sqlx::QueryBuilder<'static, $db>, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO grants (id, request_id, vm_id, vm_key, subscription_key, resource_group_key, port, protocol, \
                     source_prefix, requestor_id, requestor_name, submitted_by_id, submitted_by_name, approvers, justification, \
                     granted_at, end_time, closed_at, status, status_reason) ",
                );
                let mut approvers = Vec::with_capacity(grants.len());
                for g in grants {
                    approvers.push(serde_json::to_string(&g.approvers).map_err(|e| StoreError::Corrupt(e.to_string()))?);
                }
                q.push_values(grants.iter().zip(approvers), |mut b, (g, approvers)| {
                    let (vm_key, subscription, resource_group) = g.vm_place();
                    b.push_bind(g.id.clone())
                        .push_bind(g.request_id.clone())
                        .push_bind(g.vm_id.clone())
                        .push_bind(vm_key)
                        .push_bind(subscription)
                        .push_bind(resource_group)
                        .push_bind(i32::from(g.port))
                        .push_bind(g.protocol.clone())
                        .push_bind(g.source_address_prefix.clone())
                        .push_bind(g.requestor.id.clone())
                        .push_bind(g.requestor.name.clone())
                        .push_bind(g.submitted_by.id.clone())
                        .push_bind(g.submitted_by.name.clone())
                        .push_bind(approvers)
                        .push_bind(g.justification.clone())
                        .push_bind(g.granted_at)
                        .push_bind(g.end_time_utc)
                        .push_bind(g.closed_at)
                        .push_bind(g.status.as_str())
                        .push_bind(g.status_reason.clone());
                });
                Ok(q)
            }

            /// Keeps `grant_window.max_span` at least `span` seconds (written only when it grows).
            async fn widen_grant_window(tx: &mut sqlx::Transaction<'_, $db>, span: i64) -> Result<(), $crate::store::StoreError> {
                sqlx::query("UPDATE grant_window SET max_span = $1 WHERE id = 1 AND max_span < $1")
                    .bind(span)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(())
            }

            /// Brings the grants table in line with `request` (new and changed grants only) and
            /// returns the audit events of what opened, closed or failed, for the caller to
            /// append after the request's own event.
            async fn write_grants(
                tx: &mut sqlx::Transaction<'_, $db>,
                request: &$crate::domain::request::AccessRequest,
                actor: &$crate::domain::Principal,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::audit::NewAuditEvent>, $crate::store::StoreError> {
                use $crate::domain::grant::{grant_changes, grants_of, GrantStatus};
                use $crate::store::StoreError;
                let grants = grants_of(request, now);
                if grants.is_empty() {
                    return Ok(vec![]);
                }
                let stored: Vec<(String, String)> = sqlx::query_as("SELECT id, status FROM grants WHERE request_id = $1")
                    .bind(&request.id)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                let before = stored
                    .into_iter()
                    .map(|(id, status)| GrantStatus::parse(&status).map(|s| (id, s)).map_err(StoreError::Corrupt))
                    .collect::<Result<Vec<_>, _>>()?;
                let changed: Vec<_> = grants
                    .iter()
                    .filter(|g| !before.iter().any(|(id, s)| *id == g.id && *s == g.status))
                    .cloned()
                    .collect();
                if !changed.is_empty() {
                    let mut q = Self::grant_insert(&changed)?;
                    // The first closing time seen stays: a later rewrite never moves it.
                    q.push(
                        " ON CONFLICT (id) DO UPDATE SET end_time = excluded.end_time, \
                         closed_at = COALESCE(grants.closed_at, excluded.closed_at), status = excluded.status, \
                         status_reason = excluded.status_reason, approvers = excluded.approvers",
                    );
                    q.build().execute(&mut **tx).await.map_err(StoreError::from_sqlx)?;
                    let span = changed.iter().map(|g| g.span_seconds()).max().unwrap_or(0);
                    Self::widen_grant_window(tx, span).await?;
                }
                Ok(grant_changes(&before, &grants)
                    .into_iter()
                    .map(|(change, grant)| $crate::audit::NewAuditEvent {
                        event_type: change.event_type(),
                        actor: actor.clone(),
                        resource_id: grant.vm_id.clone(),
                        request_id: Some(grant.request_id.clone()),
                        data: serde_json::to_value(grant).unwrap_or_default(),
                    })
                    .collect())
            }

            /// Queues "make the VM's deny rules match its policy", unless such a job is already
            /// waiting unclaimed (it will read the policy as it is when it runs).
            ///
            /// The waiting job is locked, not merely seen: otherwise (on PostgreSQL) a claim
            /// committing while this transaction is open takes the job, which then reads the
            /// policy before this change commits, and the change is never enforced. Locked, the
            /// job is skipped by claims until we commit; and if a claim holds it, we wait, find
            /// it claimed, and queue a job of our own.
            async fn enqueue_enforcement(
                tx: &mut sqlx::Transaction<'_, $db>,
                vm: &$crate::domain::VmId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::JOB_ENFORCE_POLICY;
                // Locking the waiting job (an UPDATE, not a read) keeps a dispatcher from
                // claiming it before this write commits and enforcing the old policy; a job
                // backed off after a failure is brought forward, as this is a new change.
                let waiting = sqlx::query(
                    "UPDATE jobs SET run_after = CASE WHEN run_after > $3 THEN $3 ELSE run_after END \
                     WHERE kind = $1 AND subject = $2 AND lease_owner IS NULL",
                )
                .bind(JOB_ENFORCE_POLICY)
                .bind(vm.key())
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::StoreError::from_sqlx)?
                .rows_affected();
                if waiting > 0 {
                    return Ok(());
                }
                sqlx::query("INSERT INTO jobs (kind, subject, payload, run_after, created_at) VALUES ($1, $2, $3, $4, $4)")
                .bind(JOB_ENFORCE_POLICY)
                .bind(vm.key())
                .bind(serde_json::json!({ "vmId": vm.as_str() }).to_string())
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(())
            }

            /// The row of `table` whose id is `id` (the columns `columns`), if there is one.
            async fn row_by_id<'e, R, E>(executor: E, table: &str, columns: &str, id: &str) -> Result<Option<R>, $crate::store::StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                sqlx::query_as(&format!("SELECT {columns} FROM {table} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(executor)
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)
            }

            /// Deletes the row of `table` whose id is `id` and appends the audit event `event`
            /// makes of it, in `tx`; what was deleted, or `None` when there was no such row.
            async fn delete_audited<R, T>(
                tx: &mut sqlx::Transaction<'_, $db>,
                table: &str,
                columns: &str,
                id: &str,
                now: chrono::DateTime<chrono::Utc>,
                event: impl FnOnce(&T) -> $crate::audit::NewAuditEvent,
            ) -> Result<Option<T>, $crate::store::StoreError>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
                T: TryFrom<R, Error = $crate::store::StoreError>,
            {
                let row: Option<R> = Self::delete_by_id(&mut **tx, table, columns, id).await?;
                let Some(row) = row else { return Ok(None) };
                let deleted = T::try_from(row)?;
                Self::append_audit(tx, event(&deleted), chrono::SubsecRound::trunc_subsecs(now, 6)).await?;
                Ok(Some(deleted))
            }

            /// Deletes the row of `table` whose id is `id`, returning it (the columns `columns`).
            async fn delete_by_id<'e, R, E>(executor: E, table: &str, columns: &str, id: &str) -> Result<Option<R>, $crate::store::StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                sqlx::query_as(&format!("DELETE FROM {table} WHERE id = $1 RETURNING {columns}"))
                    .bind(id)
                    .fetch_optional(executor)
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)
            }

            async fn insert_job(tx: &mut sqlx::Transaction<'_, $db>, job: &$crate::store::NewJob) -> Result<(), $crate::store::StoreError> {
                sqlx::query("INSERT INTO jobs (kind, subject, payload, run_after, created_at) VALUES ($1, $2, $3, $4, $4)")
                    .bind(job.kind)
                    .bind(&job.subject)
                    .bind(job.payload.to_string())
                    .bind(job.run_after)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::store::StoreError::from_sqlx)?;
                Ok(())
            }

            /// `AND` the rows under one of `scopes` (columns of the table aliased `alias`).
            fn push_within(q: &mut sqlx::QueryBuilder<'_, $db>, alias: &str, scopes: &[$crate::domain::Scope]) {
                use $crate::domain::Scope;
                q.push(" AND (1 = 0");
                for scope in scopes {
                    match scope {
                        Scope::Tenant => {
                            q.push(" OR 1 = 1");
                        }
                        Scope::Subscription { subscription } => {
                            q.push(format!(" OR {alias}subscription_key = ")).push_bind(subscription.to_ascii_lowercase());
                        }
                        Scope::ResourceGroup { subscription, resource_group } => {
                            q.push(format!(" OR ({alias}subscription_key = "))
                                .push_bind(subscription.to_ascii_lowercase())
                                .push(format!(" AND {alias}resource_group_key = "))
                                .push_bind(resource_group.to_ascii_lowercase())
                                .push(")");
                        }
                        Scope::Vm(vm) => {
                            q.push(format!(" OR {alias}vm_key = ")).push_bind(vm.key().to_string());
                        }
                    }
                }
                q.push(")");
            }

            /// `AND` the subscription and resource group filters of a list.
            fn push_place(q: &mut sqlx::QueryBuilder<'_, $db>, alias: &str, subscription: Option<&str>, resource_group: Option<&str>) {
                if let Some(s) = subscription {
                    q.push(format!(" AND {alias}subscription_key = ")).push_bind(s.to_ascii_lowercase());
                }
                if let Some(rg) = resource_group {
                    q.push(format!(" AND {alias}resource_group_key = ")).push_bind(rg.to_ascii_lowercase());
                }
            }

            fn push_etag_condition(q: &mut sqlx::QueryBuilder<'_, $db>, precondition: &$crate::store::Precondition) {
                let (sql, tags) = $crate::store::sql::etag_condition(precondition);
                q.push(sql);
                if !tags.is_empty() {
                    let mut list = q.separated(", ");
                    for tag in tags {
                        list.push_bind(tag);
                    }
                    q.push(")");
                }
            }
        }
    };
}

pub(crate) use impl_sql_store;

// ---- chatops ----

/// The audit event for a chat identity mapping change.
pub(super) fn chat_identity_event(
    event_type: &'static str,
    i: &crate::chatops::ChatIdentity,
    by: &Principal,
) -> NewAuditEvent {
    NewAuditEvent {
        event_type,
        actor: by.clone(),
        resource_id: format!("/chatops/identities/{}", i.id),
        request_id: None,
        data: json!({
            "id": i.id,
            "platform": i.platform.as_str(),
            "workspaceId": i.workspace_id,
            "chatUserId": i.chat_user_id,
            "userId": i.user.id,
            "userName": i.user.name,
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bulk_load_rebuilds_the_indexes_migrations_create() {
        for migration in [
            include_str!("../../migrations/sqlite/0006_history.sql"),
            include_str!("../../migrations/postgres/0006_history.sql"),
        ] {
            let created = migration
                .lines()
                .filter(|l| l.starts_with("CREATE INDEX grants_"))
                .count();
            assert_eq!(created, super::GRANT_INDEXES.len());
            for (name, columns) in super::GRANT_INDEXES {
                let ddl = format!("CREATE INDEX {name} ON grants ({columns});");
                assert!(migration.contains(&ddl), "{ddl}");
            }
        }
    }
}
