//! jitgate's rules in NSGs: a deny rule per VM that a policy protects, placed above every
//! allow rule that would admit its ports from the Internet; written through [`Writer`].

use super::client::ArmClient;
use super::evaluate::{self, NetworkContext};
use super::model::{Access, Direction, NetworkSecurityGroup, SecurityRule, SecurityRuleProperties};
pub use super::writer::WriteError;
use super::writer::{Target, Writer};
use serde_json::Map;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Every rule jitgate writes is named with this prefix; rules without it are never touched.
pub const RULE_PREFIX: &str = "jitgate-";
/// The highest custom-rule priority ARM allows.
pub const LOWEST_PRIORITY: u32 = 4096;

/// A change jitgate wants in one NSG.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleChange {
    /// Deny inbound traffic to `destinations` on `ports`, from anywhere, above every allow rule
    /// that admits one of those ports from the Internet.
    Deny {
        name: String,
        ports: Vec<u16>,
        destinations: Vec<IpAddr>,
        description: String,
    },
    /// Allow inbound `protocol` traffic from `sources` to `destinations` on `port`, above
    /// (a smaller number than) the deny rule `deny_rule`: a grant's way through it.
    Allow {
        name: String,
        port: u16,
        /// `Tcp`, `Udp` or `*`.
        protocol: String,
        sources: Vec<String>,
        destinations: Vec<IpAddr>,
        deny_rule: String,
        description: String,
    },
    /// Remove the rule of this name, if it is there.
    Remove { name: String },
}

impl RuleChange {
    pub fn name(&self) -> &str {
        match self {
            RuleChange::Deny { name, .. }
            | RuleChange::Allow { name, .. }
            | RuleChange::Remove { name } => name,
        }
    }
}

/// What a change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub name: String,
    /// The rule's priority, when it is in place.
    pub priority: Option<u32>,
    /// Pre-existing allow rules the deny rule had to go above ("allow-ssh (priority 300)").
    pub overrides: Vec<String>,
}

/// Writes jitgate's NSG rules.
pub type NsgWriter = Writer<NsgRules>;

impl Writer<NsgRules> {
    pub fn new(client: ArmClient, priority_base: u16) -> NsgWriter {
        Writer::with_target(
            client,
            NsgRules {
                priority_base: u32::from(priority_base),
                network: NetworkContext::default(),
            },
        )
    }
}

/// NSGs as a [`Target`]: where deny rules go is decided against the NSG as read.
pub struct NsgRules {
    priority_base: u32,
    network: NetworkContext,
}

impl Target for NsgRules {
    type Resource = NetworkSecurityGroup;
    type Change = RuleChange;
    type Outcome = RuleOutcome;

    fn etag(nsg: &NetworkSecurityGroup) -> Option<String> {
        nsg.etag.clone()
    }

    fn merge(
        &self,
        nsg: &mut NetworkSecurityGroup,
        change: &RuleChange,
    ) -> Result<RuleOutcome, WriteError> {
        merge(nsg, change, self.priority_base, &self.network)
    }

    fn for_put(nsg: &mut NetworkSecurityGroup) {
        nsg.properties.default_security_rules.clear();
        nsg.properties.provisioning_state = None;
    }
}

/// Applies one change to the NSG in memory.
fn merge(
    nsg: &mut NetworkSecurityGroup,
    change: &RuleChange,
    base: u32,
    network: &NetworkContext,
) -> Result<RuleOutcome, WriteError> {
    let rules = &mut nsg.properties.security_rules;
    let position = rules
        .iter()
        .position(|r| r.name.eq_ignore_ascii_case(change.name()));
    match change {
        RuleChange::Remove { name } => {
            if let Some(i) = position {
                rules.remove(i);
            }
            Ok(RuleOutcome {
                name: name.clone(),
                priority: None,
                overrides: vec![],
            })
        }
        RuleChange::Deny {
            name,
            ports,
            destinations,
            description,
        } => {
            let (priority, overrides) =
                deny_priority(nsg, name, ports, destinations, base, network)?;
            let sources = ["*".to_string()];
            let rule = jitgate_rule(
                name,
                Access::Deny,
                "*",
                &sources,
                ports,
                destinations,
                description,
                priority,
            );
            put_rule(nsg, position, rule);
            Ok(RuleOutcome {
                name: name.clone(),
                priority: Some(priority),
                overrides,
            })
        }
        RuleChange::Allow {
            name,
            port,
            protocol,
            sources,
            destinations,
            deny_rule,
            description,
        } => {
            let priority = allow_priority(nsg, name, deny_rule, base)?;
            let rule = jitgate_rule(
                name,
                Access::Allow,
                protocol,
                sources,
                &[*port],
                destinations,
                description,
                priority,
            );
            put_rule(nsg, position, rule);
            Ok(RuleOutcome {
                name: name.clone(),
                priority: Some(priority),
                overrides: vec![],
            })
        }
    }
}

/// Puts `rule` in place of the rule at `position` (or adds it), unchanged when equal in what
/// matters, so that a repeated apply writes nothing.
fn put_rule(nsg: &mut NetworkSecurityGroup, position: Option<usize>, rule: SecurityRule) {
    let rules = &mut nsg.properties.security_rules;
    match position {
        Some(i) if same_rule(&rules[i], &rule) => {}
        Some(i) => rules[i] = rule,
        None => rules.push(rule),
    }
}

/// Where a grant's allow rule goes: a free number between the base and its deny rule, as
/// close to the deny rule as possible (the numbers nearer the base stay free longest). A rule
/// already in a valid place keeps it.
fn allow_priority(
    nsg: &NetworkSecurityGroup,
    name: &str,
    deny_rule: &str,
    base: u32,
) -> Result<u32, WriteError> {
    let rules = &nsg.properties.security_rules;
    let Some(deny) = rules
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(deny_rule))
        .map(|r| r.properties.priority)
    else {
        return Err(WriteError::NoPriority(format!(
            "the deny rule {deny_rule} is not in {}: the policy's enforcement must be in place before access is granted",
            nsg.name
        )));
    };
    let current = rules
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .map(|r| r.properties.priority);
    if let Some(p) = current.filter(|p| (base..deny).contains(p)) {
        return Ok(p);
    }
    let taken: BTreeSet<u32> = rules
        .iter()
        .filter(|r| {
            r.properties.direction == Direction::Inbound && !r.name.eq_ignore_ascii_case(name)
        })
        .map(|r| r.properties.priority)
        .collect();
    (base..deny).rev().find(|p| !taken.contains(p)).ok_or_else(|| {
        WriteError::NoPriority(format!(
            "no free priority between {base} and {} in {} for the allow rule {name}: every number above the deny rule {deny_rule} is taken",
            deny.saturating_sub(1),
            nsg.name
        ))
    })
}

/// Where a deny rule goes: above (a smaller number than) every allow rule that admits one of
/// its ports from the Internet to one of its destinations, as low as possible under that, so
/// that the numbers between the base and it stay free for the allow rules of grants. A rule
/// already in a valid place keeps it.
fn deny_priority(
    nsg: &NetworkSecurityGroup,
    name: &str,
    ports: &[u16],
    destinations: &[IpAddr],
    base: u32,
    network: &NetworkContext,
) -> Result<(u32, Vec<String>), WriteError> {
    let mut conflicting: Vec<&SecurityRule> = Vec::new();
    for &port in ports {
        for &destination in destinations {
            for rule in evaluate::allows_from_internet(nsg, port, Some(destination), network) {
                if !rule.name.starts_with(RULE_PREFIX)
                    && !conflicting.iter().any(|r| r.name == rule.name)
                {
                    conflicting.push(rule);
                }
            }
        }
    }
    conflicting.sort_by_key(|r| r.properties.priority);
    let ceiling = conflicting
        .first()
        .map(|r| r.properties.priority - 1)
        .unwrap_or(LOWEST_PRIORITY);
    let overrides = conflicting
        .iter()
        .map(|r| format!("{} (priority {})", r.name, r.properties.priority))
        .collect();
    let taken: BTreeSet<u32> = nsg
        .properties
        .security_rules
        .iter()
        .filter(|r| {
            r.properties.direction == Direction::Inbound && !r.name.eq_ignore_ascii_case(name)
        })
        .map(|r| r.properties.priority)
        .collect();
    let current = nsg
        .properties
        .security_rules
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .map(|r| r.properties.priority);
    // At least one number above the deny rule must stay free for a grant's allow rule.
    let lowest_allowed = base + 1;
    if let Some(p) = current.filter(|p| (lowest_allowed..=ceiling).contains(p)) {
        return Ok((p, overrides));
    }
    (lowest_allowed..=ceiling)
        .rev()
        .find(|p| !taken.contains(p))
        .map(|p| (p, overrides))
        .ok_or_else(|| {
            WriteError::NoPriority(format!(
                "no free priority between {lowest_allowed} and {ceiling} in {} for the deny rule {name}: it must go above {}, and keep room above it for access grants (JITGATE_RULE_PRIORITY_BASE is {base})",
                nsg.name,
                if overrides_text(&conflicting).is_empty() { "nothing".to_string() } else { overrides_text(&conflicting) },
            ))
        })
}

fn overrides_text(rules: &[&SecurityRule]) -> String {
    rules
        .iter()
        .map(|r| format!("{} (priority {})", r.name, r.properties.priority))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule of jitgate's, in ARM's shape.
#[allow(clippy::too_many_arguments)]
fn jitgate_rule(
    name: &str,
    access: Access,
    protocol: &str,
    sources: &[String],
    ports: &[u16],
    destinations: &[IpAddr],
    description: &str,
    priority: u32,
) -> SecurityRule {
    let mut ports: Vec<u16> = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    let mut destinations: Vec<String> = destinations.iter().map(ToString::to_string).collect();
    destinations.sort();
    let (source, source_list) = match sources {
        [one] => (Some(one.clone()), vec![]),
        many => (None, many.to_vec()),
    };
    SecurityRule {
        name: name.to_string(),
        id: None,
        etag: None,
        properties: SecurityRuleProperties {
            description: Some(description.chars().take(140).collect()),
            protocol: protocol.to_string(),
            source_port_range: Some("*".into()),
            source_port_ranges: vec![],
            destination_port_range: None,
            destination_port_ranges: ports.iter().map(ToString::to_string).collect(),
            source_address_prefix: source,
            source_address_prefixes: source_list,
            destination_address_prefix: None,
            destination_address_prefixes: destinations,
            access,
            priority,
            direction: Direction::Inbound,
            provisioning_state: None,
            extra: Map::new(),
        },
        extra: Map::new(),
    }
}

/// Equal in every field that ARM enforces (not ids, ETags or provisioning states).
fn same_rule(a: &SecurityRule, b: &SecurityRule) -> bool {
    let strip = |r: &SecurityRule| {
        let mut p = r.properties.clone();
        p.provisioning_state = None;
        p.extra.clear();
        p
    };
    strip(a) == strip(b)
}
