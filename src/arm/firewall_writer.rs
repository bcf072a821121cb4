//! jitgate's changes to Azure Firewall policies: DNAT rules in a rule collection group,
//! written through [`Writer`]. Enabling a policy removes the standing DNAT rules that forward
//! a protected port to the VM (access then only comes through grants); a grant's access is a
//! DNAT rule of jitgate's (named `jitgate-`, in the collection [`NAT_COLLECTION`]) from the
//! granted source to a mapped port of the firewall.

use super::client::ArmClient;
use super::model::{FirewallRule, RuleCollection, RuleCollectionGroup};
use super::nsg_writer::RULE_PREFIX;
use super::writer::{Target, WriteError, Writer};
use serde_json::Map;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The collection jitgate keeps its DNAT rules in, in each group it writes to.
pub const NAT_COLLECTION: &str = "jitgate-dnat";
/// The firewall ports jitgate maps granted access to.
pub const MAPPED_PORTS: std::ops::RangeInclusive<u16> = 50000..=59999;

/// A change jitgate wants in one rule collection group.
#[derive(Debug, Clone, PartialEq)]
pub enum NatChange {
    /// Remove every DNAT rule not of jitgate's that forwards one of `ports` to one of
    /// `destinations`.
    RemoveStanding {
        ports: Vec<u16>,
        destinations: Vec<IpAddr>,
    },
    /// A grant's way in: traffic from `sources` to the firewall's `public_ip` on a mapped
    /// port (chosen here, reported back) is forwarded to `translated`:`port`.
    Dnat {
        name: String,
        sources: Vec<String>,
        public_ip: String,
        translated: IpAddr,
        port: u16,
        /// `TCP`, `UDP` or `Any`.
        protocol: String,
    },
    /// Remove jitgate's rule of this name, if it is there.
    Remove { name: String },
}

/// What a change came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatOutcome {
    /// Rules removed, as "collection/rule (forwarded 50022 to 10.0.0.4:22)".
    pub removed: Vec<String>,
    /// For a DNAT rule: the firewall port the access is mapped to.
    pub mapped_port: Option<u16>,
}

pub type FirewallWriter = Writer<FirewallRules>;

impl Writer<FirewallRules> {
    pub fn new(client: ArmClient) -> FirewallWriter {
        Writer::with_target(client, FirewallRules)
    }
}

pub struct FirewallRules;

impl Target for FirewallRules {
    type Resource = RuleCollectionGroup;
    type Change = NatChange;
    type Outcome = NatOutcome;

    fn etag(group: &RuleCollectionGroup) -> Option<String> {
        group.etag.clone()
    }

    fn merge(
        &self,
        group: &mut RuleCollectionGroup,
        change: &NatChange,
    ) -> Result<NatOutcome, WriteError> {
        match change {
            NatChange::RemoveStanding {
                ports,
                destinations,
            } => Ok(NatOutcome {
                removed: remove_rules(group, |rule| {
                    !rule.name.starts_with(RULE_PREFIX)
                        && forwards_to(
                            rule.translated_address.as_deref(),
                            rule.translated_port.as_deref(),
                            ports,
                            destinations,
                        )
                }),
                mapped_port: None,
            }),
            NatChange::Remove { name } => Ok(NatOutcome {
                removed: remove_rules(group, |rule| rule.name.eq_ignore_ascii_case(name)),
                mapped_port: None,
            }),
            NatChange::Dnat {
                name,
                sources,
                public_ip,
                translated,
                port,
                protocol,
            } => {
                let mapped = mapped_port(group, name, public_ip)?;
                let rule = FirewallRule {
                    rule_type: "NatRule".into(),
                    name: name.clone(),
                    ip_protocols: vec![protocol.clone()],
                    source_addresses: sources.clone(),
                    destination_addresses: vec![public_ip.clone()],
                    destination_ports: vec![mapped.to_string()],
                    translated_address: Some(translated.to_string()),
                    translated_port: Some(port.to_string()),
                    extra: Map::new(),
                };
                let collection = nat_collection(group)?;
                match collection
                    .rules
                    .iter_mut()
                    .find(|r| r.name.eq_ignore_ascii_case(name))
                {
                    Some(existing) if *existing == rule => {}
                    Some(existing) => *existing = rule,
                    None => collection.rules.push(rule),
                }
                Ok(NatOutcome {
                    removed: vec![],
                    mapped_port: Some(mapped),
                })
            }
        }
    }

    fn for_put(group: &mut RuleCollectionGroup) {
        group.properties.provisioning_state = None;
    }
}

/// Whether a NAT rule's translation lands on one of `ports` of one of `destinations`.
pub fn forwards_to(
    address: Option<&str>,
    port: Option<&str>,
    ports: &[u16],
    destinations: &[IpAddr],
) -> bool {
    let address = address.and_then(|a| a.parse::<IpAddr>().ok());
    let port = port.and_then(|p| p.trim().parse::<u16>().ok());
    matches!((address, port), (Some(a), Some(p)) if destinations.contains(&a) && ports.contains(&p))
}

/// Removes the NAT rules `doomed` picks, and jitgate's collection if it ends up empty.
fn remove_rules(
    group: &mut RuleCollectionGroup,
    doomed: impl Fn(&FirewallRule) -> bool,
) -> Vec<String> {
    let mut removed = Vec::new();
    for collection in group
        .properties
        .rule_collections
        .iter_mut()
        .filter(|c| c.is_nat())
    {
        let name = collection.name.clone();
        collection.rules.retain(|rule| {
            let remove = doomed(rule);
            if remove {
                removed.push(format!(
                    "{name}/{} (forwarded {} to {}:{})",
                    rule.name,
                    rule.destination_ports.join(","),
                    rule.translated_address.as_deref().unwrap_or("?"),
                    rule.translated_port.as_deref().unwrap_or("?")
                ));
            }
            !remove
        });
    }
    group
        .properties
        .rule_collections
        .retain(|c| c.name != NAT_COLLECTION || !c.rules.is_empty());
    removed
}

/// The firewall port for a grant's DNAT rule: the one it has, or the lowest of
/// [`MAPPED_PORTS`] that no NAT rule to `public_ip` uses.
fn mapped_port(
    group: &RuleCollectionGroup,
    name: &str,
    public_ip: &str,
) -> Result<u16, WriteError> {
    let rules = || {
        group
            .properties
            .rule_collections
            .iter()
            .filter(|c| c.is_nat())
            .flat_map(|c| c.rules.iter())
    };
    if let Some(port) = rules()
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .and_then(|r| r.destination_ports.first())
        .and_then(|p| p.parse().ok())
    {
        return Ok(port);
    }
    let used: BTreeSet<u16> = rules()
        .filter(|r| r.destination_addresses.iter().any(|a| a == public_ip))
        .flat_map(|r| r.destination_ports.iter().filter_map(|p| p.parse().ok()))
        .collect();
    MAPPED_PORTS
        .into_iter()
        .find(|p| !used.contains(p))
        .ok_or_else(|| {
            WriteError::NoPriority(format!(
                "no free port in {MAPPED_PORTS:?} on {public_ip} in {}",
                group.name
            ))
        })
}

/// jitgate's NAT collection in the group, created (at a free priority) when missing.
fn nat_collection(group: &mut RuleCollectionGroup) -> Result<&mut RuleCollection, WriteError> {
    let collections = &mut group.properties.rule_collections;
    if let Some(i) = collections.iter().position(|c| c.name == NAT_COLLECTION) {
        return Ok(&mut collections[i]);
    }
    let taken: BTreeSet<u32> = collections.iter().map(|c| c.priority).collect();
    let priority = (100..=65000).find(|p| !taken.contains(p)).ok_or_else(|| {
        WriteError::NoPriority(format!(
            "no free rule collection priority in {}",
            group.name
        ))
    })?;
    collections.push(RuleCollection {
        rule_collection_type: "FirewallPolicyNatRuleCollection".into(),
        name: NAT_COLLECTION.into(),
        priority,
        action: Some(serde_json::json!({ "type": "DNAT" })),
        rules: vec![],
        extra: Map::new(),
    });
    let last = collections.len() - 1;
    Ok(&mut collections[last])
}
