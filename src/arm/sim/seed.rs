//! Building simulated networks: VNets, subnets, NICs, public IPs, NSGs and VMs in ARM's JSON
//! shape, and the demo subscription `jitgate serve` starts with, which covers every
//! assessment outcome.

use super::Sim;
use crate::arm::evaluate;
use crate::arm::model::{
    Access, Direction, FirewallRule, NetworkSecurityGroup, NetworkSecurityGroupProperties,
    RuleCollection, RuleCollectionGroup, RuleCollectionGroupProperties, SecurityRule,
    SecurityRuleProperties,
};
use serde_json::{json, Map};

pub const DEMO_SUBSCRIPTION: &str = "5b1e0000-0000-4000-8000-00000000de30";
pub const DEMO_RESOURCE_GROUP: &str = "rg-demo";
pub const DEMO_LOCATION: &str = "westeurope";

pub fn rg_id(subscription: &str, rg: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{rg}")
}

pub fn nsg_id(subscription: &str, rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/networkSecurityGroups/{name}",
        rg_id(subscription, rg)
    )
}

pub fn vm_id(subscription: &str, rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{name}",
        rg_id(subscription, rg)
    )
}

pub fn subnet_id(subscription: &str, rg: &str, vnet: &str, subnet: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}",
        rg_id(subscription, rg)
    )
}

/// An inbound TCP allow rule, as an administrator would have written it.
pub fn allow_inbound(name: &str, priority: u32, source: &str, port: &str) -> SecurityRule {
    SecurityRule {
        name: name.into(),
        id: None,
        etag: None,
        properties: SecurityRuleProperties {
            description: None,
            protocol: "Tcp".into(),
            source_port_range: Some("*".into()),
            source_port_ranges: vec![],
            destination_port_range: Some(port.into()),
            destination_port_ranges: vec![],
            source_address_prefix: Some(source.into()),
            source_address_prefixes: vec![],
            destination_address_prefix: Some("*".into()),
            destination_address_prefixes: vec![],
            access: Access::Allow,
            priority,
            direction: Direction::Inbound,
            provisioning_state: None,
            extra: Map::new(),
        },
        extra: Map::new(),
    }
}

/// Where a simulated VM sits.
pub struct VmSpec<'a> {
    pub subscription: &'a str,
    pub resource_group: &'a str,
    pub name: &'a str,
    pub vnet: &'a str,
    pub subnet: &'a str,
    pub private_ip: &'a str,
    pub public_ip: Option<&'a str>,
    /// The NSG on the VM's NIC, by name in the same resource group.
    pub nic_nsg: Option<&'a str>,
}

impl Sim {
    /// Adds an NSG with these custom rules (and the default ones).
    pub fn add_nsg(
        &self,
        subscription: &str,
        rg: &str,
        name: &str,
        rules: Vec<SecurityRule>,
    ) -> String {
        let id = nsg_id(subscription, rg, name);
        self.world().upsert_nsg(NetworkSecurityGroup {
            id: id.clone(),
            name: name.into(),
            location: DEMO_LOCATION.into(),
            etag: None,
            properties: NetworkSecurityGroupProperties {
                security_rules: rules,
                ..Default::default()
            },
            extra: Map::new(),
        });
        id
    }

    /// Adds a VNet with one subnet (or a subnet to an existing VNet), with an optional NSG.
    pub fn add_subnet(
        &self,
        subscription: &str,
        rg: &str,
        vnet: &str,
        subnet: &str,
        prefix: &str,
        nsg: Option<&str>,
    ) -> String {
        let id = subnet_id(subscription, rg, vnet, subnet);
        let mut properties = json!({ "addressPrefix": prefix });
        if let Some(nsg) = nsg {
            properties["networkSecurityGroup"] = json!({ "id": nsg_id(subscription, rg, nsg) });
        }
        self.world().resources.insert(
            id.to_ascii_lowercase(),
            json!({ "id": id, "name": subnet, "properties": properties }),
        );
        id
    }

    /// Adds a VM with one NIC (and a public IP if asked) in an existing subnet.
    pub fn add_vm(&self, spec: &VmSpec<'_>) -> String {
        let rg = rg_id(spec.subscription, spec.resource_group);
        let vm_id = vm_id(spec.subscription, spec.resource_group, spec.name);
        let nic_id = format!(
            "{rg}/providers/Microsoft.Network/networkInterfaces/{}-nic",
            spec.name
        );
        let mut ipc = json!({
            "privateIPAddress": spec.private_ip,
            "subnet": { "id": subnet_id(spec.subscription, spec.resource_group, spec.vnet, spec.subnet) },
        });
        let mut world = self.world();
        if let Some(address) = spec.public_ip {
            let pip_id = format!(
                "{rg}/providers/Microsoft.Network/publicIPAddresses/{}-ip",
                spec.name
            );
            ipc["publicIPAddress"] = json!({ "id": pip_id });
            world.resources.insert(
                pip_id.to_ascii_lowercase(),
                json!({ "id": pip_id, "name": format!("{}-ip", spec.name), "properties": { "ipAddress": address } }),
            );
        }
        let mut nic = json!({
            "id": nic_id, "name": format!("{}-nic", spec.name), "location": DEMO_LOCATION,
            "properties": { "ipConfigurations": [ { "name": "ipconfig1", "properties": ipc } ] },
        });
        if let Some(nsg) = spec.nic_nsg {
            nic["properties"]["networkSecurityGroup"] =
                json!({ "id": nsg_id(spec.subscription, spec.resource_group, nsg) });
        }
        world.resources.insert(nic_id.to_ascii_lowercase(), nic);
        world.resources.insert(
            vm_id.to_ascii_lowercase(),
            json!({
                "id": vm_id, "name": spec.name, "location": DEMO_LOCATION,
                "properties": {
                    "vmId": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, vm_id.to_ascii_lowercase().as_bytes()),
                    "hardwareProfile": { "vmSize": "Standard_B2s" },
                    "networkProfile": { "networkInterfaces": [ { "id": nic_id, "properties": { "primary": true } } ] },
                },
            }),
        );
        vm_id
    }
}

/// A DNAT rule: traffic to `public_ip`:`port` from `sources` goes to `to_ip`:`to_port`.
pub fn dnat_rule(
    name: &str,
    sources: &[&str],
    public_ip: &str,
    port: u16,
    to_ip: &str,
    to_port: u16,
) -> FirewallRule {
    FirewallRule {
        rule_type: "NatRule".into(),
        name: name.into(),
        ip_protocols: vec!["TCP".into()],
        source_addresses: sources.iter().map(|s| s.to_string()).collect(),
        destination_addresses: vec![public_ip.into()],
        destination_ports: vec![port.to_string()],
        translated_address: Some(to_ip.into()),
        translated_port: Some(to_port.to_string()),
        extra: Map::new(),
    }
}

impl Sim {
    /// Adds an Azure Firewall with a public IP, a firewall policy, and one rule collection
    /// group holding a DNAT collection with `nat_rules`. Returns the group's id.
    pub fn add_firewall(
        &self,
        subscription: &str,
        rg: &str,
        name: &str,
        private_ip: &str,
        public_ip: &str,
        nat_rules: Vec<FirewallRule>,
    ) -> String {
        let base = rg_id(subscription, rg);
        let fw_id = format!("{base}/providers/Microsoft.Network/azureFirewalls/{name}");
        let policy_id =
            format!("{base}/providers/Microsoft.Network/firewallPolicies/{name}-policy");
        let pip_id = format!("{base}/providers/Microsoft.Network/publicIPAddresses/{name}-ip");
        let group_id = format!("{policy_id}/ruleCollectionGroups/rcg-dnat");
        let mut world = self.world();
        world.resources.insert(pip_id.to_ascii_lowercase(), json!({ "id": pip_id, "name": format!("{name}-ip"), "properties": { "ipAddress": public_ip } }));
        world.resources.insert(policy_id.to_ascii_lowercase(), json!({ "id": policy_id, "name": format!("{name}-policy"), "location": DEMO_LOCATION, "properties": {} }));
        world.resources.insert(
            fw_id.to_ascii_lowercase(),
            json!({
                "id": fw_id, "name": name, "location": DEMO_LOCATION,
                "properties": {
                    "ipConfigurations": [ { "name": "ipconfig1", "properties": { "privateIPAddress": private_ip, "publicIPAddress": { "id": pip_id } } } ],
                    "firewallPolicy": { "id": policy_id },
                },
            }),
        );
        world.upsert_rule_collection_group(RuleCollectionGroup {
            id: group_id.clone(),
            name: "rcg-dnat".into(),
            etag: None,
            properties: RuleCollectionGroupProperties {
                priority: 100,
                rule_collections: vec![RuleCollection {
                    rule_collection_type: "FirewallPolicyNatRuleCollection".into(),
                    name: "dnat-inbound".into(),
                    priority: 100,
                    action: Some(json!({ "type": "DNAT" })),
                    rules: nat_rules,
                    extra: Map::new(),
                }],
                provisioning_state: None,
                extra: Map::new(),
            },
            extra: Map::new(),
        });
        group_id
    }

    /// Where the firewall with public address `public_ip` forwards TCP traffic from `source`
    /// to `port`, by the rules in force (the first matching DNAT rule), if anywhere.
    pub fn forwards(
        &self,
        public_ip: &str,
        port: u16,
        source: std::net::IpAddr,
    ) -> Option<(String, u16)> {
        let ctx = evaluate::NetworkContext::default();
        let mut world = self.world();
        world.settle(std::time::Instant::now());
        let mut groups: Vec<&RuleCollectionGroup> =
            world.effective_rule_collection_groups.values().collect();
        groups.sort_by_key(|g| g.properties.priority);
        for group in groups {
            let mut collections: Vec<&RuleCollection> = group
                .properties
                .rule_collections
                .iter()
                .filter(|c| c.is_nat())
                .collect();
            collections.sort_by_key(|c| c.priority);
            for rule in collections.iter().flat_map(|c| c.rules.iter()) {
                let to_us = rule.destination_addresses.iter().any(|d| d == public_ip);
                let on_port = evaluate::port_in_ranges(
                    port,
                    &rule
                        .destination_ports
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                );
                let from = rule.source_addresses.is_empty()
                    || rule
                        .source_addresses
                        .iter()
                        .any(|s| match evaluate::parse_prefix(s) {
                            evaluate::AddressPrefix::Any => true,
                            evaluate::AddressPrefix::Net(net) => net.contains(&source),
                            evaluate::AddressPrefix::Internet => {
                                evaluate::is_internet_address(source, &ctx)
                            }
                            _ => false,
                        });
                if to_us && on_port && from {
                    let port = rule
                        .translated_port
                        .as_deref()
                        .and_then(|p| p.parse().ok())?;
                    return Some((rule.translated_address.clone()?, port));
                }
            }
        }
        None
    }
}

/// The demo subscription: one VNet, and VMs that are exposed through a subnet NSG (`vm-web-1`,
/// `vm-web-2`: SSH from the Internet), through a NIC NSG (`vm-rdp`: RDP from anywhere), through
/// a firewall's DNAT rule (`vm-spoke`: SSH on the firewall's port 50022), guarded (`vm-app`:
/// only HTTPS), and without any NSG (`vm-bare`: not applicable).
pub fn demo(sim: &Sim) {
    let (s, rg, vnet) = (DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP, "vnet-demo");
    sim.add_nsg(
        s,
        rg,
        "nsg-web-subnet",
        vec![
            allow_inbound("allow-ssh", 300, "Internet", "22"),
            allow_inbound("allow-https", 310, "*", "443"),
        ],
    );
    sim.add_nsg(
        s,
        rg,
        "nsg-rdp",
        vec![allow_inbound("allow-rdp", 200, "*", "3389")],
    );
    sim.add_nsg(
        s,
        rg,
        "nsg-app",
        vec![allow_inbound("allow-https", 300, "Internet", "443")],
    );
    sim.add_subnet(
        s,
        rg,
        vnet,
        "snet-web",
        "10.10.1.0/24",
        Some("nsg-web-subnet"),
    );
    sim.add_subnet(s, rg, vnet, "snet-app", "10.10.2.0/24", None);
    sim.add_subnet(s, rg, vnet, "snet-bare", "10.10.3.0/24", None);
    let vm = |name, subnet, ip, public_ip, nic_nsg| VmSpec {
        subscription: s,
        resource_group: rg,
        name,
        vnet,
        subnet,
        private_ip: ip,
        public_ip,
        nic_nsg,
    };
    sim.add_vm(&vm(
        "vm-web-1",
        "snet-web",
        "10.10.1.4",
        Some("20.50.0.4"),
        None,
    ));
    sim.add_vm(&vm(
        "vm-web-2",
        "snet-web",
        "10.10.1.5",
        Some("20.50.0.5"),
        None,
    ));
    sim.add_vm(&vm(
        "vm-rdp",
        "snet-app",
        "10.10.2.4",
        Some("20.50.0.6"),
        Some("nsg-rdp"),
    ));
    sim.add_vm(&vm(
        "vm-app",
        "snet-app",
        "10.10.2.5",
        None,
        Some("nsg-app"),
    ));
    sim.add_vm(&vm(
        "vm-bare",
        "snet-bare",
        "10.10.3.4",
        Some("20.50.0.8"),
        None,
    ));
    // Behind the hub firewall: SSH reaches it through a standing DNAT rule, and its NSG
    // admits the firewall's subnet (after DNAT the VM sees the firewall, not the client).
    sim.add_nsg(
        s,
        rg,
        "nsg-spoke",
        vec![allow_inbound(
            "allow-ssh-from-firewall",
            300,
            "10.10.0.0/26",
            "22",
        )],
    );
    sim.add_subnet(s, rg, vnet, "AzureFirewallSubnet", "10.10.0.0/26", None);
    sim.add_subnet(s, rg, vnet, "snet-spoke", "10.10.4.0/24", Some("nsg-spoke"));
    sim.add_vm(&vm("vm-spoke", "snet-spoke", "10.10.4.4", None, None));
    sim.add_firewall(
        s,
        rg,
        "fw-hub",
        "10.10.0.4",
        "20.50.0.100",
        vec![dnat_rule(
            "dnat-ssh-vm-spoke",
            &["*"],
            "20.50.0.100",
            50022,
            "10.10.4.4",
            22,
        )],
    );
}
