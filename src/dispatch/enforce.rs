//! Enforcing a policy: making the deny rules in the VM's NSGs match the policy as it stands
//! when the job runs (in place for a policy, gone for a deleted one). Idempotent, so a job
//! that runs twice, or after a newer change, does no harm.

use super::{JobOutcome, MAX_ATTEMPTS};
use crate::arm::client::ArmClient;
use crate::arm::discovery::{self, Lookups, VmNetwork};
use crate::arm::firewall_writer::{self, FirewallWriter, NatChange};
use crate::arm::nsg_writer::{NsgWriter, RuleChange, RuleOutcome, WriteError, RULE_PREFIX};
use crate::audit::NewAuditEvent;
use crate::domain::{Principal, VmId};
use crate::inventory::Inventory;
use crate::store::{DynStore, Enforcement, EnforcementState, Job, StoredPolicy};
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};

pub struct Enforcer {
    store: DynStore,
    client: ArmClient,
    writer: NsgWriter,
    firewall_writer: FirewallWriter,
    inventory: Inventory,
}

/// The actor of the events jitgate records on its own account.
pub fn system() -> Principal {
    Principal {
        id: "jitgate".into(),
        name: "jitgate".into(),
    }
}

/// The name of the deny rule for a VM: stable, short (NSG rule names stop at 80 characters)
/// and recognisably ours.
pub fn deny_rule_name(vm: &VmId) -> String {
    let digest = Sha256::digest(vm.key().as_bytes());
    format!(
        "{RULE_PREFIX}deny-{}-{}",
        short(vm.name()),
        &hex::encode(digest)[..12]
    )
}

fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect()
}

impl Enforcer {
    pub fn new(
        store: DynStore,
        client: ArmClient,
        writer: NsgWriter,
        inventory: Inventory,
    ) -> Enforcer {
        Enforcer {
            firewall_writer: FirewallWriter::new(client.clone()),
            store,
            client,
            writer,
            inventory,
        }
    }

    pub fn writer(&self) -> &NsgWriter {
        &self.writer
    }

    pub async fn enforce_job(&self, job: &Job) -> JobOutcome {
        let Some(vm) = job.payload["vmId"]
            .as_str()
            .and_then(|id| VmId::parse(id).ok())
        else {
            tracing::error!(id = job.id, "policy job without a valid vmId; dropping it");
            return JobOutcome::Done;
        };
        let policy = match self.store.get_policy(&vm).await {
            Ok(p) => p,
            Err(e) => return JobOutcome::Retry(format!("reading the policy: {e}")),
        };
        let last_try = job.attempts >= MAX_ATTEMPTS;
        match self.enforce(&vm, policy.as_ref()).await {
            Ok(result) => {
                self.record(&vm, policy.as_ref(), result).await;
                JobOutcome::Done
            }
            Err(why) if !last_try => JobOutcome::Retry(why),
            Err(why) => {
                let failed = Enforcement {
                    state: EnforcementState::Failed,
                    detail: format!("gave up after {} attempts: {why}", job.attempts),
                    network_security_groups: vec![],
                    firewalls: vec![],
                };
                self.record(&vm, policy.as_ref(), failed).await;
                JobOutcome::Done
            }
        }
    }

    /// Applies or removes the VM's deny rules (and, on its firewalls, the standing DNAT
    /// rules into its protected ports). `Ok` carries the final state to record (applied, or
    /// failed for a reason retrying cannot mend); `Err` a transient reason.
    async fn enforce(
        &self,
        vm: &VmId,
        policy: Option<&StoredPolicy>,
    ) -> Result<Enforcement, String> {
        let mut lookups = Lookups::default();
        let network =
            match discovery::discover_vm_with(&self.client, vm.as_str(), &mut lookups).await {
                Ok(n) => n,
                Err(e) if e.is_transient() => return Err(format!("reading the VM's network: {e}")),
                Err(e) if e.is_not_found() && policy.is_none() => {
                    return Ok(Enforcement::removed(vec![], vec![]))
                }
                Err(e) => {
                    return Ok(Enforcement::failed(
                        format!("reading the VM's network from ARM failed: {e}"),
                        vec![],
                        vec![],
                    ))
                }
            };
        let nsgs: Vec<String> = network
            .network_security_groups
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let firewalls = network.firewalls.clone();
        let name = deny_rule_name(vm);
        let mut placed = Vec::new();
        let mut dnat_removed = Vec::new();
        let mut problems = Vec::new();
        match policy {
            Some(p) => {
                if !network.is_guarded() {
                    return Ok(Enforcement::failed(
                        "the VM has no network security group on its NIC or subnet and no firewall in front of it, so nothing can deny access: attach an NSG, then write the policy again".into(),
                        nsgs,
                        firewalls,
                    ));
                }
                if network.private_ip_addresses.is_empty() {
                    return Ok(Enforcement::failed(
                        "the VM has no private IP address to write deny rules for".into(),
                        nsgs,
                        firewalls,
                    ));
                }
                let ports: Vec<u16> = p
                    .policy
                    .ports
                    .iter()
                    .map(|port| port.number.get())
                    .collect();
                let deny = RuleChange::Deny {
                    name: name.clone(),
                    ports: ports.clone(),
                    destinations: network.private_ip_addresses.clone(),
                    description: format!("jitgate JIT policy for {}: management ports closed until access is granted", network.name),
                };
                // A VM has few NSGs (its subnet's and its NIC's): one after the other is
                // fine, and the writer batches each NSG's changes with other VMs' anyway.
                for nsg in &nsgs {
                    match self.writer.apply(nsg, deny.clone()).await {
                        Ok(outcome) => placed.push((nsg.clone(), outcome)),
                        Err(e) => problems.push(classify(nsg, e)?),
                    }
                }
                let subscription = vm.subscription().to_string();
                let views = lookups
                    .firewalls(&self.client, &subscription)
                    .await
                    .map_err(|e| format!("reading firewalls: {e}"))?;
                let groups: Vec<String> = views
                    .iter()
                    .flat_map(|v| v.nat_rules_into(&network.private_ip_addresses))
                    .filter(|(_, _, rule)| {
                        firewall_writer::forwards_to(
                            rule.translated_address.as_deref(),
                            rule.translated_port.as_deref(),
                            &ports,
                            &network.private_ip_addresses,
                        )
                    })
                    .map(|(group, _, _)| group.id.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let standing = NatChange::RemoveStanding {
                    ports,
                    destinations: network.private_ip_addresses.clone(),
                };
                for group in &groups {
                    match self.firewall_writer.apply(group, standing.clone()).await {
                        Ok(outcome) => dnat_removed.extend(outcome.removed),
                        Err(e) => problems.push(classify(group, e)?),
                    }
                }
            }
            None => {
                for nsg in &nsgs {
                    if let Err(e) = self
                        .writer
                        .apply(nsg, RuleChange::Remove { name: name.clone() })
                        .await
                    {
                        problems.push(classify(nsg, e)?);
                    }
                }
            }
        }
        // The VM's posture changed with its rules: show it in the inventory now, not at the
        // next refresh. A failure here is the inventory's, not the enforcement's.
        if let Err(e) = self.inventory.record(&network).await {
            tracing::warn!(error = %e, vm = %vm, "could not refresh the VM's inventory record");
        }
        if !problems.is_empty() {
            return Ok(Enforcement::failed(problems.join("; "), nsgs, firewalls));
        }
        if policy.is_none() {
            return Ok(Enforcement::removed(nsgs, firewalls));
        }
        Ok(Enforcement {
            state: EnforcementState::Applied,
            detail: applied_detail(&network, &placed, &dnat_removed),
            network_security_groups: nsgs,
            firewalls,
        })
    }

    async fn record(&self, vm: &VmId, policy: Option<&StoredPolicy>, enforcement: Enforcement) {
        let now = Utc::now();
        let (event_type, data) = match (policy, enforcement.state) {
            (None, _) => (
                "policy.enforcementRemoved",
                json!({ "detail": enforcement.detail, "networkSecurityGroups": enforcement.network_security_groups }),
            ),
            (Some(_), EnforcementState::Applied) => (
                "policy.enforcementApplied",
                serde_json::to_value(&enforcement).unwrap_or_default(),
            ),
            (Some(_), _) => (
                "policy.enforcementFailed",
                serde_json::to_value(&enforcement).unwrap_or_default(),
            ),
        };
        let event = NewAuditEvent {
            event_type,
            actor: system(),
            resource_id: vm.as_str().to_string(),
            request_id: None,
            data,
        };
        let result = match policy {
            Some(p) => self
                .store
                .record_enforcement(vm, &p.etag, &enforcement, event, now)
                .await
                .map(|_| ()),
            None => self.store.append_event(event, now).await.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, vm = %vm, "could not record the enforcement outcome");
        }
    }
}

fn nsg_name(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// A write's failure: `Err` (retry the job) when transient, else the words for the detail.
fn classify(resource: &str, e: WriteError) -> Result<String, String> {
    match e {
        WriteError::Arm(e) if e.is_transient() => Err(format!("writing {resource}: {e}")),
        WriteError::TooManyConflicts(n) => Err(format!(
            "writing {resource}: {n} conflicting writes in a row"
        )),
        e => Ok(format!("{}: {e}", nsg_name(resource))),
    }
}

impl Enforcement {
    fn failed(detail: String, nsgs: Vec<String>, firewalls: Vec<String>) -> Enforcement {
        Enforcement {
            state: EnforcementState::Failed,
            detail,
            network_security_groups: nsgs,
            firewalls,
        }
    }

    fn removed(nsgs: Vec<String>, firewalls: Vec<String>) -> Enforcement {
        Enforcement {
            state: EnforcementState::Applied,
            detail: "deny rules removed".into(),
            network_security_groups: nsgs,
            firewalls,
        }
    }
}

/// "deny rules for vm-web-1 in place: nsg-web-subnet (priority 299, above ...); standing DNAT
/// rules removed: ...".
fn applied_detail(
    network: &VmNetwork,
    placed: &[(String, RuleOutcome)],
    dnat_removed: &[String],
) -> String {
    let parts: Vec<String> = placed
        .iter()
        .map(|(nsg, o)| {
            let priority = o
                .priority
                .map(|p| format!("priority {p}"))
                .unwrap_or_default();
            if o.overrides.is_empty() {
                format!("{} ({priority})", nsg_name(nsg))
            } else {
                format!(
                    "{} ({priority}, above the allow rules {})",
                    nsg_name(nsg),
                    o.overrides.join(", ")
                )
            }
        })
        .collect();
    let mut detail = if parts.is_empty() {
        format!(
            "{} has no NSG: access is closed at its firewalls",
            network.name
        )
    } else {
        format!(
            "deny rules for {} in place: {}",
            network.name,
            parts.join("; ")
        )
    };
    if !dnat_removed.is_empty() {
        detail.push_str(&format!(
            "; standing DNAT rules removed: {}",
            dnat_removed.join(", ")
        ));
    }
    detail
}
