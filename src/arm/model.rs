//! The slice of ARM's resource shapes jitgate reads and writes (Microsoft.Compute and
//! Microsoft.Network, api-versions in [`super::api_version`]). Every struct keeps the fields it
//! does not model in `extra`, so a read-modify-write PUT of an NSG or a rule collection group
//! sends back everything ARM gave us: dropping a property we do not know would change it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A reference to another resource: `{ "id": "/subscriptions/..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubResource {
    pub id: String,
}

/// One page of a list: ARM pages with `nextLink`, an absolute URL to GET as it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<T> {
    pub value: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// ARM's error envelope: `{ "error": { "code": "...", "message": "..." } }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The body of an `Azure-AsyncOperation` status URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AsyncOperation {
    /// `InProgress`, `Succeeded`, `Failed` or `Canceled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

// ---- Microsoft.Compute ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualMachine {
    pub id: String,
    pub name: String,
    pub location: String,
    pub properties: VirtualMachineProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    pub network_profile: NetworkProfile,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    #[serde(default)]
    pub network_interfaces: Vec<SubResource>,
}

// ---- Microsoft.Network: NICs, subnets, public IPs ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub id: String,
    pub name: String,
    pub properties: NetworkInterfaceProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(default)]
    pub ip_configurations: Vec<IpConfiguration>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpConfiguration {
    pub name: String,
    pub properties: IpConfigurationProperties,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpConfigurationProperties {
    #[serde(
        rename = "privateIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(
        rename = "publicIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address: Option<SubResource>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub properties: SubnetProperties,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicIpAddress {
    pub id: String,
    pub name: String,
    pub properties: PublicIpAddressProperties,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpAddressProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

// ---- Microsoft.Network: network security groups ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSecurityGroup {
    pub id: String,
    pub name: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub properties: NetworkSecurityGroupProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSecurityGroupProperties {
    #[serde(default)]
    pub security_rules: Vec<SecurityRule>,
    /// Read-only; ARM fills them in and ignores them on PUT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_security_rules: Vec<SecurityRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub properties: SecurityRuleProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A rule as ARM writes it. Single and plural forms (`destinationPortRange` and
/// `destinationPortRanges`) are both allowed by ARM, never both set on one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Tcp`, `Udp`, `Icmp`, `Esp`, `Ah` or `*`.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_port_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_port_ranges: Vec<String>,
    /// An address, a CIDR, `*`, or a service tag (`Internet`, `VirtualNetwork`, `AzureLoadBalancer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_address_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_address_prefixes: Vec<String>,
    pub access: Access,
    /// 100 (first) to 4096 (last) for custom rules; 65000+ for the default rules.
    pub priority: u32,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SecurityRuleProperties {
    /// The destination port ranges, whichever form the rule uses.
    pub fn destination_ports(&self) -> Vec<&str> {
        self.destination_port_range
            .iter()
            .map(String::as_str)
            .chain(self.destination_port_ranges.iter().map(String::as_str))
            .collect()
    }

    pub fn source_prefixes(&self) -> Vec<&str> {
        self.source_address_prefix
            .iter()
            .map(String::as_str)
            .chain(self.source_address_prefixes.iter().map(String::as_str))
            .collect()
    }

    pub fn destination_prefixes(&self) -> Vec<&str> {
        self.destination_address_prefix
            .iter()
            .map(String::as_str)
            .chain(self.destination_address_prefixes.iter().map(String::as_str))
            .collect()
    }
}

/// The three inbound rules every NSG has and no one can remove.
pub fn default_inbound_rules() -> Vec<SecurityRule> {
    let rule =
        |name: &str, priority: u32, source: &str, access: Access, description: &str| SecurityRule {
            name: name.into(),
            id: None,
            etag: None,
            properties: SecurityRuleProperties {
                description: Some(description.into()),
                protocol: "*".into(),
                source_port_range: Some("*".into()),
                source_port_ranges: vec![],
                destination_port_range: Some("*".into()),
                destination_port_ranges: vec![],
                source_address_prefix: Some(source.into()),
                source_address_prefixes: vec![],
                destination_address_prefix: Some(
                    if source == "VirtualNetwork" {
                        "VirtualNetwork"
                    } else {
                        "*"
                    }
                    .into(),
                ),
                destination_address_prefixes: vec![],
                access,
                priority,
                direction: Direction::Inbound,
                provisioning_state: Some("Succeeded".into()),
                extra: Map::new(),
            },
            extra: Map::new(),
        };
    vec![
        rule(
            "AllowVnetInBound",
            65000,
            "VirtualNetwork",
            Access::Allow,
            "Allow inbound traffic from all VMs in VNET",
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            "AzureLoadBalancer",
            Access::Allow,
            "Allow inbound traffic from azure load balancer",
        ),
        rule(
            "DenyAllInBound",
            65500,
            "*",
            Access::Deny,
            "Deny all inbound traffic",
        ),
    ]
}

// ---- Microsoft.Network: Azure Firewall and firewall policies ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AzureFirewall {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub location: String,
    pub properties: AzureFirewallProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureFirewallProperties {
    #[serde(default)]
    pub ip_configurations: Vec<IpConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_policy: Option<SubResource>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCollectionGroup {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub properties: RuleCollectionGroupProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCollectionGroupProperties {
    pub priority: u32,
    #[serde(default)]
    pub rule_collections: Vec<RuleCollection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A collection of rules: `FirewallPolicyNatRuleCollection` (action DNAT) or
/// `FirewallPolicyFilterRuleCollection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCollection {
    pub rule_collection_type: String,
    pub name: String,
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Value>,
    #[serde(default)]
    pub rules: Vec<FirewallRule>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RuleCollection {
    pub fn is_nat(&self) -> bool {
        self.rule_collection_type == "FirewallPolicyNatRuleCollection"
    }
}

/// A firewall policy rule; for a `NatRule`, traffic to `destinationAddresses`:`destinationPorts`
/// from `sourceAddresses` is forwarded to `translatedAddress`:`translatedPort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallRule {
    pub rule_type: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_protocols: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_port: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
