//! jitgate's changes to Azure Firewall policies: DNAT rules in a rule collection group,
//! written through [`Writer`]. Enabling a policy removes the standing DNAT rules that forward
//! a protected port to the VM (access then only comes through grants); jitgate's own rules
//! carry the `jitgate-` name prefix and are left to the grants that made them.

use super::client::ArmClient;
use super::model::RuleCollectionGroup;
use super::nsg_writer::RULE_PREFIX;
use super::writer::{Target, WriteError, Writer};
use std::net::IpAddr;

/// A change jitgate wants in one rule collection group.
#[derive(Debug, Clone, PartialEq)]
pub enum NatChange {
    /// Remove every DNAT rule not of jitgate's that forwards one of `ports` to one of
    /// `destinations`.
    RemoveStanding {
        ports: Vec<u16>,
        destinations: Vec<IpAddr>,
    },
}

/// The rules a change removed, as "collection/rule (forwarded 50022 to 10.0.0.4:22)".
pub type NatOutcome = Vec<String>;

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
        let NatChange::RemoveStanding {
            ports,
            destinations,
        } = change;
        let mut removed = Vec::new();
        for collection in group
            .properties
            .rule_collections
            .iter_mut()
            .filter(|c| c.is_nat())
        {
            let name = collection.name.clone();
            collection.rules.retain(|rule| {
                let forwards = forwards_to(
                    rule.translated_address.as_deref(),
                    rule.translated_port.as_deref(),
                    ports,
                    destinations,
                );
                let standing = forwards && !rule.name.starts_with(RULE_PREFIX);
                if standing {
                    removed.push(format!(
                        "{name}/{} (forwarded {} to {}:{})",
                        rule.name,
                        rule.destination_ports.join(","),
                        rule.translated_address.as_deref().unwrap_or("?"),
                        rule.translated_port.as_deref().unwrap_or("?")
                    ));
                }
                !standing
            });
        }
        Ok(removed)
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
