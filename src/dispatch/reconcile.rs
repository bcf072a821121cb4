//! Repairing drift between what jitgate believes and what ARM holds: someone deleted a deny
//! rule in the portal, or an allow rule of ours outlived its grant (a crash between the ARM
//! write and its record, an operator restoring an old NSG). Runs at start and then every
//! [`INTERVAL`] on every replica; every repair goes through the same idempotent write path, so
//! replicas running it together do no harm.

use super::enforce::{deny_rule_name, system};
use crate::arm::client::{api_version, ArmClient};
use crate::arm::model::NetworkSecurityGroup;
use crate::arm::nsg_writer::{NsgWriter, RuleChange};
use crate::audit::NewAuditEvent;
use crate::domain::request::{PortStatus, RequestStatus};
use crate::store::{DynStore, EnforcementState, PageRequest, PolicyFilter};
use chrono::Utc;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

pub const INTERVAL: Duration = Duration::from_secs(60);

/// What one pass repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repairs {
    /// Policies whose deny rule was missing from an NSG, queued for enforcement again.
    pub deny_rules_restored: Vec<String>,
    /// Allow rules of ours that no active grant explains, removed.
    pub allow_rules_removed: Vec<String>,
}

pub struct Reconciler {
    store: DynStore,
    client: ArmClient,
    writer: NsgWriter,
}

impl Reconciler {
    pub fn new(store: DynStore, client: ArmClient, writer: NsgWriter) -> Reconciler {
        Reconciler {
            store,
            client,
            writer,
        }
    }

    /// One pass over every applied policy's NSGs.
    pub async fn reconcile_once(&self) -> Result<Repairs, String> {
        let mut repairs = Repairs::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_policies(
                    &PolicyFilter::default(),
                    &PageRequest {
                        limit: 500,
                        after: after.clone(),
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            for policy in &page.items {
                if policy.enforcement.state != EnforcementState::Applied {
                    continue; // pending or failed: the enforcement job owns it
                }
                let deny = deny_rule_name(&policy.vm);
                for nsg_id in &policy.enforcement.network_security_groups {
                    let nsg: NetworkSecurityGroup = match self
                        .client
                        .get(nsg_id, api_version::NETWORK)
                        .await
                    {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(nsg = %nsg_id, error = %e, "reconciler cannot read an NSG");
                            continue;
                        }
                    };
                    let names: BTreeSet<&str> = nsg
                        .properties
                        .security_rules
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect();
                    if !names.contains(deny.as_str()) {
                        // Enforcing again puts it back (and says so in the policy's enforcement).
                        if self
                            .store
                            .requeue_enforcement(&policy.vm, Utc::now())
                            .await
                            .is_ok()
                        {
                            repairs
                                .deny_rules_restored
                                .push(format!("{} in {}", deny, nsg.name));
                        }
                    }
                    for rule in nsg
                        .properties
                        .security_rules
                        .iter()
                        .filter(|r| r.name.starts_with("jitgate-allow-"))
                    {
                        if !self
                            .explained(rule.properties.description.as_deref().unwrap_or_default())
                            .await?
                        {
                            let removed = self
                                .writer
                                .apply(
                                    nsg_id,
                                    RuleChange::Remove {
                                        name: rule.name.clone(),
                                    },
                                )
                                .await;
                            if removed.is_ok() {
                                repairs
                                    .allow_rules_removed
                                    .push(format!("{} in {}", rule.name, nsg.name));
                            }
                        }
                    }
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if repairs != Repairs::default() {
            let event = NewAuditEvent {
                event_type: "reconciler.repaired",
                actor: system(),
                resource_id: String::new(),
                request_id: None,
                data: json!({ "denyRulesRestored": repairs.deny_rules_restored, "allowRulesRemoved": repairs.allow_rules_removed }),
            };
            let _ = self.store.append_event(event, Utc::now()).await;
            tracing::warn!(?repairs, "reconciler repaired drift");
        }
        Ok(repairs)
    }

    /// Whether an allow rule (by the request id its description names) belongs to an
    /// active request with a port still open, or to one not yet recorded as active.
    async fn explained(&self, description: &str) -> Result<bool, String> {
        let Some(id) = description
            .strip_prefix("jitgate access request ")
            .and_then(|rest| rest.split(' ').next())
        else {
            return Ok(false);
        };
        let Some(stored) = self
            .store
            .get_request(id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        let request = stored.request;
        Ok(match request.status {
            // Activation writes rules before it records `active`: not drift.
            RequestStatus::Approved => true,
            RequestStatus::Active => request
                .virtual_machines
                .iter()
                .flat_map(|v| v.ports.iter())
                .any(|p| p.status == PortStatus::Initiated),
            _ => false,
        })
    }

    /// Reconciles now and every [`INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.reconcile_once().await {
                tracing::warn!(error = %e, "reconciler pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }
}
