//! From a VM to what guards it: VM -> NICs -> the NIC's NSG, its IP configurations -> private
//! IPs, subnets (-> the subnet's NSG) and public IPs.

use super::client::{api_version, ArmClient, ArmError};
use super::model::{
    AzureFirewall, FirewallRule, NetworkInterface, PublicIpAddress, RuleCollectionGroup, Subnet,
    VirtualMachine,
};
pub use crate::domain::vm::{Attachment, NsgAttachment, VmNetwork};
use std::collections::HashMap;
use std::net::IpAddr;

/// Reads resources once per discovery run: VMs of one subnet share its GET, VMs of one
/// subscription its firewalls.
#[derive(Default)]
pub struct Lookups {
    subnets: HashMap<String, Subnet>,
    firewalls: HashMap<String, Vec<FirewallView>>,
}

/// An Azure Firewall with the rule collection groups of its policy.
#[derive(Debug, Clone)]
pub struct FirewallView {
    pub firewall: AzureFirewall,
    pub groups: Vec<RuleCollectionGroup>,
}

impl FirewallView {
    /// The NAT rules that forward traffic to one of `ips`, with the group and collection
    /// they are in.
    pub fn nat_rules_into<'a>(
        &'a self,
        ips: &'a [IpAddr],
    ) -> impl Iterator<Item = (&'a RuleCollectionGroup, &'a str, &'a FirewallRule)> + 'a {
        self.groups.iter().flat_map(move |group| {
            group
                .properties
                .rule_collections
                .iter()
                .filter(|c| c.is_nat())
                .flat_map(move |collection| {
                    collection
                        .rules
                        .iter()
                        .filter(move |rule| {
                            rule.translated_address
                                .as_deref()
                                .and_then(|a| a.parse::<IpAddr>().ok())
                                .is_some_and(|a| ips.contains(&a))
                        })
                        .map(move |rule| (group, collection.name.as_str(), rule))
                })
        })
    }
}

impl FirewallView {
    /// The firewall's public address (what clients connect to) and the private range its
    /// traffic reaches VMs from (its subnet, else its private address).
    pub async fn addresses(
        &self,
        client: &ArmClient,
    ) -> Result<(Option<String>, Option<String>), ArmError> {
        let Some(ipc) = self.firewall.properties.ip_configurations.first() else {
            return Ok((None, None));
        };
        let public = match &ipc.properties.public_ip_address {
            Some(r) => {
                client
                    .get::<PublicIpAddress>(&r.id, api_version::NETWORK)
                    .await?
                    .properties
                    .ip_address
            }
            None => None,
        };
        let private = match &ipc.properties.subnet {
            Some(s) => client
                .get::<Subnet>(&s.id, api_version::NETWORK)
                .await
                .ok()
                .and_then(|s| s.properties.address_prefix),
            None => None,
        }
        .or_else(|| ipc.properties.private_ip_address.clone());
        Ok((public, private))
    }
}

impl Lookups {
    /// The firewalls of a subscription, each with its policy's rule collection groups.
    pub async fn firewalls(
        &mut self,
        client: &ArmClient,
        subscription: &str,
    ) -> Result<&[FirewallView], ArmError> {
        let key = subscription.to_ascii_lowercase();
        if !self.firewalls.contains_key(&key) {
            let path =
                format!("/subscriptions/{subscription}/providers/Microsoft.Network/azureFirewalls");
            let mut views = Vec::new();
            for firewall in client
                .list::<AzureFirewall>(&path, api_version::NETWORK)
                .await?
            {
                let groups = match &firewall.properties.firewall_policy {
                    Some(policy) => {
                        client
                            .list(
                                &format!("{}/ruleCollectionGroups", policy.id),
                                api_version::NETWORK,
                            )
                            .await?
                    }
                    None => vec![],
                };
                views.push(FirewallView { firewall, groups });
            }
            self.firewalls.insert(key.clone(), views);
        }
        Ok(self
            .firewalls
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default())
    }
}

/// The VMs of a subscription, every page.
pub async fn list_vms(
    client: &ArmClient,
    subscription: &str,
) -> Result<Vec<VirtualMachine>, ArmError> {
    client
        .list(
            &format!("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines"),
            api_version::COMPUTE,
        )
        .await
}

/// Discovers one VM by id.
pub async fn discover_vm(client: &ArmClient, vm_id: &str) -> Result<VmNetwork, ArmError> {
    discover_vm_with(client, vm_id, &mut Lookups::default()).await
}

/// Discovers one VM by id, keeping what it read in `lookups`.
pub async fn discover_vm_with(
    client: &ArmClient,
    vm_id: &str,
    lookups: &mut Lookups,
) -> Result<VmNetwork, ArmError> {
    let vm: VirtualMachine = client.get(vm_id, api_version::COMPUTE).await?;
    network_of(client, &vm, lookups).await
}

/// The network of a VM already read.
pub async fn network_of(
    client: &ArmClient,
    vm: &VirtualMachine,
    lookups: &mut Lookups,
) -> Result<VmNetwork, ArmError> {
    let mut network = VmNetwork {
        vm_id: vm.id.clone(),
        name: vm.name.clone(),
        location: vm.location.clone(),
        private_ip_addresses: vec![],
        public_ip_addresses: vec![],
        network_security_groups: vec![],
        firewalls: vec![],
    };
    let mut nic_nsgs = Vec::new();
    for nic_ref in &vm.properties.network_profile.network_interfaces {
        let nic: NetworkInterface = client.get(&nic_ref.id, api_version::NETWORK).await?;
        if let Some(nsg) = &nic.properties.network_security_group {
            nic_nsgs.push(NsgAttachment {
                id: nsg.id.clone(),
                attached_to: Attachment::NetworkInterface,
            });
        }
        for ipc in &nic.properties.ip_configurations {
            if let Some(ip) = ipc
                .properties
                .private_ip_address
                .as_deref()
                .and_then(|a| a.parse().ok())
            {
                network.private_ip_addresses.push(ip);
            }
            if let Some(pip) = &ipc.properties.public_ip_address {
                let pip: PublicIpAddress = client.get(&pip.id, api_version::NETWORK).await?;
                network
                    .public_ip_addresses
                    .extend(pip.properties.ip_address);
            }
            if let Some(subnet_ref) = &ipc.properties.subnet {
                let key = subnet_ref.id.to_ascii_lowercase();
                if !lookups.subnets.contains_key(&key) {
                    let subnet: Subnet = client.get(&subnet_ref.id, api_version::NETWORK).await?;
                    lookups.subnets.insert(key.clone(), subnet);
                }
                if let Some(nsg) = lookups
                    .subnets
                    .get(&key)
                    .and_then(|s| s.properties.network_security_group.as_ref())
                {
                    push_unique(
                        &mut network.network_security_groups,
                        NsgAttachment {
                            id: nsg.id.clone(),
                            attached_to: Attachment::Subnet,
                        },
                    );
                }
            }
        }
    }
    for nsg in nic_nsgs {
        push_unique(&mut network.network_security_groups, nsg);
    }
    // A firewall fronts the VM when one of its DNAT rules forwards to the VM's address.
    if let Some(subscription) = subscription_of(&vm.id) {
        for view in lookups.firewalls(client, subscription).await? {
            if view
                .nat_rules_into(&network.private_ip_addresses)
                .next()
                .is_some()
            {
                network.firewalls.push(view.firewall.id.clone());
            }
        }
    }
    Ok(network)
}

fn subscription_of(id: &str) -> Option<&str> {
    let mut segments = id.split('/');
    (segments.nth(1)?.eq_ignore_ascii_case("subscriptions"))
        .then(|| segments.next())
        .flatten()
}

fn push_unique(list: &mut Vec<NsgAttachment>, item: NsgAttachment) {
    if !list.iter().any(|n| n.id.eq_ignore_ascii_case(&item.id)) {
        list.push(item);
    }
}
