//! The VM inventory: every VM of the configured subscriptions, its network and its posture,
//! read from ARM in the background and after each enforcement, kept in the store so that
//! `GET /v1/vms` answers from the database and pages like every other list.

use crate::arm::client::{api_version, ArmClient, ArmError};
use crate::arm::discovery::{self, FirewallView, Lookups};
use crate::arm::evaluate::{self, NetworkContext};
use crate::arm::model::NetworkSecurityGroup;
use crate::domain::vm::MANAGEMENT_PORTS;
use crate::domain::{VmId, VmNetwork};
use crate::store::{DynStore, InventoryVm};
use chrono::Utc;
use std::collections::HashMap;
use std::time::Duration;

/// How often the whole inventory is read again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Inventory {
    client: ArmClient,
    store: DynStore,
    subscriptions: Vec<String>,
}

/// What a full refresh saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    pub vms: usize,
    pub forgotten: u64,
    /// VMs that could not be read, with ARM's reason (they keep their last record).
    pub failures: Vec<String>,
}

impl Inventory {
    pub fn new(client: ArmClient, store: DynStore, subscriptions: Vec<String>) -> Inventory {
        Inventory {
            client,
            store,
            subscriptions,
        }
    }

    /// Reads every VM of every subscription, records it, and forgets VMs ARM no longer has.
    pub async fn refresh_all(&self) -> Result<RefreshReport, ArmError> {
        let mut report = RefreshReport::default();
        let mut lookups = Lookups::default();
        let mut nsgs = NsgCache::default();
        for subscription in &self.subscriptions {
            let started = Utc::now();
            let vms = discovery::list_vms(&self.client, subscription).await?;
            let mut complete = true;
            for vm in vms {
                match discovery::network_of(&self.client, &vm, &mut lookups).await {
                    Ok(network) => {
                        match self.record_with(&network, &mut nsgs, &mut lookups).await {
                            Ok(()) => report.vms += 1,
                            Err(e) => {
                                complete = false;
                                report.failures.push(format!("{}: {e}", vm.id));
                            }
                        }
                    }
                    Err(e) => {
                        complete = false;
                        report.failures.push(format!("{}: {e}", vm.id));
                    }
                }
            }
            // Only a complete pass may conclude that a VM is gone.
            if complete {
                report.forgotten += self
                    .store
                    .forget_vms(subscription, started)
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(report)
    }

    /// Records a VM whose network was just read (after an enforcement, say).
    pub async fn record(&self, network: &VmNetwork) -> Result<(), ArmError> {
        self.record_with(network, &mut NsgCache::default(), &mut Lookups::default())
            .await
    }

    async fn record_with(
        &self,
        network: &VmNetwork,
        nsgs: &mut NsgCache,
        lookups: &mut Lookups,
    ) -> Result<(), ArmError> {
        let Ok(vm) = VmId::parse(&network.vm_id) else {
            // ARM ids of VMs always parse; if one does not, it is not a VM we can protect.
            return Ok(());
        };
        let mut guards = Vec::new();
        for attachment in &network.network_security_groups {
            guards.push(nsgs.get(&self.client, &attachment.id).await?);
        }
        let ctx = NetworkContext::default();
        let mut found = exposures(network, &guards, &ctx);
        if !network.firewalls.is_empty() {
            let views = lookups.firewalls(&self.client, vm.subscription()).await?;
            found.extend(firewall_exposures(network, views, &ctx));
        }
        let record = InventoryVm {
            vm,
            exposures: found,
            network: network.clone(),
            refreshed_at: Utc::now(),
        };
        self.store.put_vm(&record).await.map_err(store_error)
    }

    /// Refreshes now and then every [`REFRESH_INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.refresh_all().await {
                Ok(report) => tracing::info!(
                    vms = report.vms,
                    forgotten = report.forgotten,
                    failures = report.failures.len(),
                    "inventory refreshed"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "inventory refresh failed; keeping the last one")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
        }
    }
}

fn store_error(e: crate::store::StoreError) -> ArmError {
    ArmError {
        status: None,
        code: "StoreUnavailable".into(),
        message: e.to_string(),
    }
}

/// NSGs read once per refresh: a subnet's NSG guards many VMs.
#[derive(Default)]
struct NsgCache(HashMap<String, NetworkSecurityGroup>);

impl NsgCache {
    async fn get(
        &mut self,
        client: &ArmClient,
        id: &str,
    ) -> Result<NetworkSecurityGroup, ArmError> {
        let key = id.to_ascii_lowercase();
        if let Some(nsg) = self.0.get(&key) {
            return Ok(nsg.clone());
        }
        let nsg: NetworkSecurityGroup = client.get(id, api_version::NETWORK).await?;
        self.0.insert(key, nsg.clone());
        Ok(nsg)
    }
}

/// Each path from the Internet to a management port of the VM: a port counts as open when
/// every NSG on the way (subnet and NIC) has an allow rule that admits it from the Internet
/// and is not hidden by a deny rule above it. Each such rule is named.
pub fn exposures(
    network: &VmNetwork,
    nsgs: &[NetworkSecurityGroup],
    ctx: &NetworkContext,
) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    if nsgs.is_empty() {
        return reasons;
    }
    for port in MANAGEMENT_PORTS {
        for &ip in &network.private_ip_addresses {
            let per_nsg: Vec<Vec<String>> = nsgs
                .iter()
                .map(|nsg| {
                    evaluate::allows_from_internet(nsg, port, Some(ip), ctx)
                        .into_iter()
                        .map(|rule| {
                            let sources = rule.properties.source_prefixes().join(", ");
                            let from = if sources.is_empty() {
                                "Internet".to_string()
                            } else {
                                sources
                            };
                            format!(
                                "NSG {} allows {port} from {from} (rule {}, priority {})",
                                nsg.name, rule.name, rule.properties.priority
                            )
                        })
                        .collect()
                })
                .collect();
            if per_nsg.iter().all(|rules| !rules.is_empty()) {
                for reason in per_nsg.into_iter().flatten() {
                    if !reasons.contains(&reason) {
                        reasons.push(reason);
                    }
                }
            }
        }
    }
    reasons
}

/// Each DNAT rule of a firewall that forwards a management port of the VM from the Internet.
pub fn firewall_exposures(
    network: &VmNetwork,
    firewalls: &[FirewallView],
    ctx: &NetworkContext,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for view in firewalls {
        for (group, collection, rule) in view.nat_rules_into(&network.private_ip_addresses) {
            let Some(port) = rule
                .translated_port
                .as_deref()
                .and_then(|p| p.trim().parse::<u16>().ok())
            else {
                continue;
            };
            let from_internet = rule.source_addresses.is_empty()
                || rule
                    .source_addresses
                    .iter()
                    .any(|s| evaluate::prefix_reaches_internet(s, ctx));
            if MANAGEMENT_PORTS.contains(&port) && from_internet {
                reasons.push(format!(
                    "Firewall {} forwards {} from {} to {port} (rule {} in {}/{collection})",
                    view.firewall.name,
                    rule.destination_ports.join(","),
                    if rule.source_addresses.is_empty() {
                        "*".to_string()
                    } else {
                        rule.source_addresses.join(", ")
                    },
                    rule.name,
                    group.name
                ));
            }
        }
    }
    reasons
}
