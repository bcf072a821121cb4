//! From a VM to what guards it: VM -> NICs -> the NIC's NSG, its IP configurations -> private
//! IPs, subnets (-> the subnet's NSG) and public IPs.

use super::client::{api_version, ArmClient, ArmError};
use super::model::{NetworkInterface, PublicIpAddress, Subnet, VirtualMachine};
pub use crate::domain::vm::{Attachment, NsgAttachment, VmNetwork};
use std::collections::HashMap;

/// Reads resources once per discovery run: VMs of one subnet share its GET.
#[derive(Default)]
pub struct Lookups {
    subnets: HashMap<String, Subnet>,
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
    let vm: VirtualMachine = client.get(vm_id, api_version::COMPUTE).await?;
    network_of(client, &vm, &mut Lookups::default()).await
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
    Ok(network)
}

fn push_unique(list: &mut Vec<NsgAttachment>, item: NsgAttachment) {
    if !list.iter().any(|n| n.id.eq_ignore_ascii_case(&item.id)) {
        list.push(item);
    }
}
