//! Building simulated networks: VNets, subnets, NICs, public IPs, NSGs and VMs in ARM's JSON
//! shape, and the demo subscription `jitgate serve` starts with, which covers every
//! assessment outcome.

use super::Sim;
use crate::arm::model::{
    Access, Direction, NetworkSecurityGroup, NetworkSecurityGroupProperties, SecurityRule,
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

/// The demo subscription: one VNet, and VMs that are exposed through a subnet NSG (`vm-web-1`,
/// `vm-web-2`: SSH from the Internet), through a NIC NSG (`vm-rdp`: RDP from anywhere), guarded
/// (`vm-app`: only HTTPS), and without any NSG (`vm-bare`: not applicable).
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
}
