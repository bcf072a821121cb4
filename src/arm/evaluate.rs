//! Pure evaluation of network security group (NSG) rules, as Azure documents it. No I/O.
//!
//! - The rules of one direction, custom (priority 100..4096) and default (65000+), form one list
//!   evaluated lowest priority number first; the first rule that matches decides, Allow or Deny.
//!   An NSG without `defaultSecurityRules` for the direction (one we built ourselves) gets
//!   Azure's built-in defaults ([`model::default_inbound_rules`], and the three outbound ones).
//! - A VM's inbound traffic passes its subnet's NSG, then its NIC's NSG, and gets through only if
//!   every NSG present allows it ([`evaluate_inbound`]). No NSG at all lets everything through.
//! - Protocol `*` or `Any` matches every flow, otherwise `Tcp` / `Udp` compare case-insensitively
//!   (`Icmp`, `Esp`, `Ah` never match a [`Flow`], which is TCP or UDP).
//! - Destination ports: `*`, `22`, or an inclusive range `1000-2000`; any element of a list
//!   matching is enough.
//! - Address prefixes: `*`/`Any`, an address, a CIDR (IPv4 or IPv6), or a service tag compared
//!   case-insensitively: `Internet`, `VirtualNetwork` ([`NetworkContext::virtual_network`]),
//!   `AzureLoadBalancer` (168.63.129.16). See [`AddressPrefix`].
//!
//! Approximations, all stated where they apply:
//! - Source ports are not evaluated: a [`Flow`] has none, so a rule restricting source ports is
//!   taken to match (the flow could come from any source port).
//! - Service tags other than the three above (`Storage`, `AzureCloud.westeurope`, ...) stand for
//!   address lists we do not have: in [`rule_matches`] they match no address ([`is_unknown_tag`]
//!   tells them apart). Application security groups likewise: a side of a rule given only by
//!   ASGs matches nothing in [`rule_matches`].
//! - `Internet` is every address outside [`NetworkContext::virtual_network`] and outside the
//!   private and special ranges of [`NOT_INTERNET`]; `VirtualNetwork` is only the context's
//!   prefixes (Azure's tag also covers peered networks and on-premises ranges: put those in the
//!   context).
//! - A CIDR of one family never matches an address of the other: `0.0.0.0/0` is every IPv4
//!   address, `::/0` every IPv6 address, `*` both. IPv4-mapped IPv6 addresses
//!   (`::ffff:a.b.c.d`) in flows and bare addresses are compared as the IPv4 address.
//! - Malformed values (port `abc`, prefix `10.0.0.300/8`, an empty list) match nothing and never
//!   panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{
    self, Access, Direction, NetworkSecurityGroup, SecurityRule, SecurityRuleProperties,
};

/// The transport protocol of a [`Flow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowProtocol {
    Tcp,
    Udp,
}

impl FlowProtocol {
    /// The name ARM uses in a rule's `protocol`.
    pub fn arm_name(self) -> &'static str {
        match self {
            FlowProtocol::Tcp => "Tcp",
            FlowProtocol::Udp => "Udp",
        }
    }
}

/// One connection attempt: from `source` to `destination`'s `port`. For inbound evaluation
/// `destination` is the VM's private address (NSGs see traffic after the public IP's NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub port: u16,
    pub protocol: FlowProtocol,
}

/// What `VirtualNetwork` means here. Default: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.
#[derive(Debug, Clone)]
pub struct NetworkContext {
    pub virtual_network: Vec<IpNet>,
}

impl Default for NetworkContext {
    fn default() -> Self {
        NetworkContext {
            virtual_network: NOT_INTERNET[..3].to_vec(),
        }
    }
}

/// The rule that decided a flow in one NSG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// The NSG's name.
    pub nsg: String,
    pub nsg_id: String,
    pub rule: String,
    pub priority: u32,
    pub access: Access,
}

/// Whether a flow gets through, and the deciding rule of each NSG evaluated, in order. An NSG
/// after one that denied is not evaluated (the traffic never reaches it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub allowed: bool,
    pub decided_by: Vec<RuleMatch>,
}

/// The address of Azure's load balancer health probes and platform services (`AzureLoadBalancer`).
pub const AZURE_LOAD_BALANCER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// Ranges that are never `Internet`, whatever the virtual network: RFC 1918 (first three, also
/// [`NetworkContext`]'s default), shared address space, loopback, link-local, unique-local IPv6;
/// and, beyond what Azure lists, addresses no Internet host can send from: "this network"
/// (0.0.0.0/8), multicast and reserved IPv4 (224.0.0.0/3), `::`, and IPv6 multicast.
pub const NOT_INTERNET: [IpNet; 14] = [
    v4(10, 0, 0, 0, 8),
    v4(172, 16, 0, 0, 12),
    v4(192, 168, 0, 0, 16),
    v4(100, 64, 0, 0, 10),
    v4(127, 0, 0, 0, 8),
    v4(169, 254, 0, 0, 16),
    v4(0, 0, 0, 0, 8),
    v4(224, 0, 0, 0, 4),
    v4(240, 0, 0, 0, 4),
    v6(0, 0, 128),
    v6(0, 1, 128),
    v6(0xfc00, 0, 7),
    v6(0xfe80, 0, 10),
    v6(0xff00, 0, 8),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

/// An IPv6 prefix whose address is `first` (the first group) followed by zeros, and `last` as the
/// last group.
const fn v6(first: u16, last: u16, len: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, last),
        len,
    ))
}

// ---- address prefixes ----

/// What a rule's address prefix string denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPrefix<'a> {
    /// `*` or `Any`: every address of both families.
    Any,
    /// A CIDR, or a bare address as a host prefix (/32, /128).
    Net(IpNet),
    /// The `Internet` service tag.
    Internet,
    /// The `VirtualNetwork` service tag.
    VirtualNetwork,
    /// The `AzureLoadBalancer` service tag.
    AzureLoadBalancer,
    /// Any other service tag (`Storage`, `AzureCloud.westeurope`, ...): addresses unknown here.
    UnknownTag(&'a str),
    /// None of the above (`10.0.0.300/8`, `10.0.0.0/33`, empty).
    Malformed,
}

/// Classifies an address prefix as a rule carries it. Never fails: what is not an address, a
/// CIDR or something shaped like a tag is [`AddressPrefix::Malformed`].
pub fn parse_prefix(prefix: &str) -> AddressPrefix<'_> {
    let p = prefix.trim();
    if p == "*" || p.eq_ignore_ascii_case("any") {
        return AddressPrefix::Any;
    }
    if let Ok(address) = p.parse::<IpAddr>() {
        return AddressPrefix::Net(IpNet::from(address.to_canonical()));
    }
    if p.contains('/') {
        return p
            .parse::<IpNet>()
            .map_or(AddressPrefix::Malformed, AddressPrefix::Net);
    }
    let tag_shaped = p.starts_with(|c: char| c.is_ascii_alphabetic())
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !tag_shaped {
        AddressPrefix::Malformed
    } else if p.eq_ignore_ascii_case("Internet") {
        AddressPrefix::Internet
    } else if p.eq_ignore_ascii_case("VirtualNetwork") {
        AddressPrefix::VirtualNetwork
    } else if p.eq_ignore_ascii_case("AzureLoadBalancer") {
        AddressPrefix::AzureLoadBalancer
    } else {
        AddressPrefix::UnknownTag(p)
    }
}

/// Whether `prefix` is a service tag whose addresses we cannot know (anything but `Internet`,
/// `VirtualNetwork` and `AzureLoadBalancer`). Such a prefix matches no address in evaluation.
pub fn is_unknown_tag(prefix: &str) -> bool {
    matches!(parse_prefix(prefix), AddressPrefix::UnknownTag(_))
}

/// Whether `address` is an Internet address: outside the virtual network and [`NOT_INTERNET`].
pub fn is_internet_address(address: IpAddr, ctx: &NetworkContext) -> bool {
    let address = address.to_canonical();
    !NOT_INTERNET
        .iter()
        .chain(&ctx.virtual_network)
        .any(|net| net.contains(&address))
}

/// Whether a prefix string (address, CIDR, `*`, or tag) contains some Internet (public) address.
///
/// `*`, `Internet` and CIDRs not wholly inside private, special or virtual-network ranges do.
/// `VirtualNetwork` does not, by definition. `AzureLoadBalancer` does not either: its one
/// address is the platform's, which no Internet host can send from. Other service tags do: they
/// are lists of public Azure ranges (`AzureCloud` is anyone with an Azure VM), though which ones
/// is unknown here. Malformed prefixes do not.
pub fn prefix_reaches_internet(prefix: &str, ctx: &NetworkContext) -> bool {
    match parse_prefix(prefix) {
        AddressPrefix::Any | AddressPrefix::Internet | AddressPrefix::UnknownTag(_) => true,
        AddressPrefix::VirtualNetwork
        | AddressPrefix::AzureLoadBalancer
        | AddressPrefix::Malformed => false,
        AddressPrefix::Net(net) => !covered(Span::of(&net), &not_internet_spans(ctx)),
    }
}

/// Whether `prefix` contains `address` (already canonical).
fn prefix_contains(prefix: AddressPrefix<'_>, address: IpAddr, ctx: &NetworkContext) -> bool {
    match prefix {
        AddressPrefix::Any => true,
        AddressPrefix::Net(net) => net.contains(&address),
        AddressPrefix::Internet => is_internet_address(address, ctx),
        AddressPrefix::VirtualNetwork => ctx.virtual_network.iter().any(|n| n.contains(&address)),
        AddressPrefix::AzureLoadBalancer => address == IpAddr::V4(AZURE_LOAD_BALANCER),
        AddressPrefix::UnknownTag(_) | AddressPrefix::Malformed => false,
    }
}

/// Whether some prefix of one side of a rule contains `address`. An empty side (a rule given by
/// application security groups, or a malformed one) matches nothing.
fn side_contains(prefixes: &[&str], address: IpAddr, ctx: &NetworkContext) -> bool {
    prefixes
        .iter()
        .any(|p| prefix_contains(parse_prefix(p), address, ctx))
}

/// A contiguous range of addresses of one family, as integers (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    v6: bool,
    start: u128,
    end: u128,
}

impl Span {
    const ALL_V4: Span = Span {
        v6: false,
        start: 0,
        end: u32::MAX as u128,
    };
    const ALL_V6: Span = Span {
        v6: true,
        start: 0,
        end: u128::MAX,
    };

    fn of(net: &IpNet) -> Span {
        match net {
            IpNet::V4(n) => Span {
                v6: false,
                start: u32::from(n.network()).into(),
                end: u32::from(n.broadcast()).into(),
            },
            IpNet::V6(n) => Span {
                v6: true,
                start: u128::from(n.network()),
                end: u128::from(n.broadcast()),
            },
        }
    }
}

/// Whether `target` lies wholly inside the union of `cover`.
fn covered(target: Span, cover: &[Span]) -> bool {
    let mut spans: Vec<Span> = cover
        .iter()
        .copied()
        .filter(|s| s.v6 == target.v6 && s.end >= target.start && s.start <= target.end)
        .collect();
    spans.sort_by_key(|s| s.start);
    // `next` is the first address of `target` not yet known to be covered.
    let mut next = target.start;
    for s in spans {
        if s.start > next {
            return false;
        }
        if s.end >= target.end {
            return true;
        }
        // s.end < target.end <= u128::MAX: no overflow.
        next = next.max(s.end + 1);
    }
    false
}

fn not_internet_spans(ctx: &NetworkContext) -> Vec<Span> {
    NOT_INTERNET
        .iter()
        .chain(&ctx.virtual_network)
        .map(Span::of)
        .collect()
}

/// The addresses of a prefix as spans, where they are known (`Internet` and unknown tags: not).
fn known_spans(prefix: AddressPrefix<'_>, ctx: &NetworkContext) -> Vec<Span> {
    match prefix {
        AddressPrefix::Any => vec![Span::ALL_V4, Span::ALL_V6],
        AddressPrefix::Net(net) => vec![Span::of(&net)],
        AddressPrefix::VirtualNetwork => ctx.virtual_network.iter().map(Span::of).collect(),
        AddressPrefix::AzureLoadBalancer => {
            vec![Span::of(&IpNet::from(IpAddr::V4(AZURE_LOAD_BALANCER)))]
        }
        AddressPrefix::Internet | AddressPrefix::UnknownTag(_) | AddressPrefix::Malformed => {
            vec![]
        }
    }
}

/// Same tag, case-insensitively (the parsed tags already compare by variant).
fn same_tag(a: AddressPrefix<'_>, b: AddressPrefix<'_>) -> bool {
    match (a, b) {
        (AddressPrefix::UnknownTag(x), AddressPrefix::UnknownTag(y)) => x.eq_ignore_ascii_case(y),
        (AddressPrefix::Internet, AddressPrefix::Internet)
        | (AddressPrefix::VirtualNetwork, AddressPrefix::VirtualNetwork)
        | (AddressPrefix::AzureLoadBalancer, AddressPrefix::AzureLoadBalancer) => true,
        _ => false,
    }
}

// ---- protocols and ports ----

fn protocol_matches(rule_protocol: &str, protocol: FlowProtocol) -> bool {
    let p = rule_protocol.trim();
    p == "*" || p.eq_ignore_ascii_case("any") || p.eq_ignore_ascii_case(protocol.arm_name())
}

/// Whether `port` is in one of `ranges`: `*`, a port (`22`) or an inclusive range
/// (`1000-2000`). Malformed elements (`abc`, `70000`, `2000-1000`) match nothing.
pub fn port_in_ranges(port: u16, ranges: &[&str]) -> bool {
    ranges.iter().any(|range| port_in_range(port, range))
}

fn port_in_range(port: u16, range: &str) -> bool {
    let range = range.trim();
    if range == "*" {
        return true;
    }
    match range.split_once('-') {
        Some((low, high)) => match (parse_port(low), parse_port(high)) {
            (Some(low), Some(high)) => low <= port && port <= high,
            _ => false,
        },
        None => parse_port(range) == Some(port),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

// ---- application security groups ----

const DESTINATION_ASGS: &str = "destinationApplicationSecurityGroups";

/// The ids of the application security groups on one side of a rule (`""` for an entry without
/// an id). Empty when the rule uses none.
fn asg_ids<'r>(rule: &'r SecurityRuleProperties, key: &str) -> Vec<&'r str> {
    rule.extra
        .get(key)
        .and_then(Value::as_array)
        .map(|groups| {
            groups
                .iter()
                .map(|g| g.get("id").and_then(Value::as_str).unwrap_or(""))
                .collect()
        })
        .unwrap_or_default()
}

// ---- rules and NSGs ----

/// Whether `rule` matches `flow` travelling in `direction`. Source ports are not evaluated (a
/// flow has none): a rule restricting them is taken to match. A side given only by application
/// security groups, or by unknown service tags, matches nothing.
pub fn rule_matches(
    rule: &SecurityRuleProperties,
    direction: Direction,
    flow: &Flow,
    ctx: &NetworkContext,
) -> bool {
    rule.direction == direction
        && protocol_matches(&rule.protocol, flow.protocol)
        && port_in_ranges(flow.port, &rule.destination_ports())
        && side_contains(&rule.source_prefixes(), flow.source.to_canonical(), ctx)
        && side_contains(
            &rule.destination_prefixes(),
            flow.destination.to_canonical(),
            ctx,
        )
}

/// The deciding rule of `nsg` for `flow`: its custom rules and its default rules of `direction`
/// (Azure's built-in ones when it has none for that direction), lowest priority first, first
/// match wins. Should nothing match (only possible with odd default rules from ARM), the implicit
/// `DenyAllInBound` / `DenyAllOutBound` at 65500 decides.
pub fn evaluate_nsg(
    nsg: &NetworkSecurityGroup,
    direction: Direction,
    flow: &Flow,
    ctx: &NetworkContext,
) -> RuleMatch {
    let builtin;
    let given = &nsg.properties.default_security_rules;
    let defaults: &[SecurityRule] = if given.iter().any(|r| r.properties.direction == direction) {
        given
    } else {
        builtin = builtin_default_rules(direction);
        &builtin
    };
    let mut rules: Vec<&SecurityRule> = nsg
        .properties
        .security_rules
        .iter()
        .chain(defaults)
        .filter(|r| r.properties.direction == direction)
        .collect();
    rules.sort_by_key(|r| r.properties.priority);
    let decided = |rule: &str, priority: u32, access: Access| RuleMatch {
        nsg: nsg.name.clone(),
        nsg_id: nsg.id.clone(),
        rule: rule.to_string(),
        priority,
        access,
    };
    match rules
        .into_iter()
        .find(|r| rule_matches(&r.properties, direction, flow, ctx))
    {
        Some(r) => decided(&r.name, r.properties.priority, r.properties.access),
        None => decided(
            match direction {
                Direction::Inbound => "DenyAllInBound",
                Direction::Outbound => "DenyAllOutBound",
            },
            65500,
            Access::Deny,
        ),
    }
}

fn builtin_default_rules(direction: Direction) -> Vec<SecurityRule> {
    match direction {
        Direction::Inbound => model::default_inbound_rules(),
        Direction::Outbound => default_outbound_rules(),
    }
}

/// Azure's three default outbound rules.
fn default_outbound_rules() -> Vec<SecurityRule> {
    let rule =
        |name: &str, priority: u32, source: &str, destination: &str, access: Access| SecurityRule {
            name: name.into(),
            id: None,
            etag: None,
            properties: SecurityRuleProperties {
                description: None,
                protocol: "*".into(),
                source_port_range: Some("*".into()),
                source_port_ranges: vec![],
                destination_port_range: Some("*".into()),
                destination_port_ranges: vec![],
                source_address_prefix: Some(source.into()),
                source_address_prefixes: vec![],
                destination_address_prefix: Some(destination.into()),
                destination_address_prefixes: vec![],
                access,
                priority,
                direction: Direction::Outbound,
                provisioning_state: Some("Succeeded".into()),
                extra: Map::new(),
            },
            extra: Map::new(),
        };
    vec![
        rule(
            "AllowVnetOutBound",
            65000,
            "VirtualNetwork",
            "VirtualNetwork",
            Access::Allow,
        ),
        rule(
            "AllowInternetOutBound",
            65001,
            "*",
            "Internet",
            Access::Allow,
        ),
        rule("DenyAllOutBound", 65500, "*", "*", Access::Deny),
    ]
}

/// Whether inbound `flow` reaches a VM whose subnet has `subnet_nsg` and whose NIC has
/// `nic_nsg`: the subnet's NSG first, then the NIC's; every NSG present must allow. Evaluation
/// stops at the first deny. No NSG at all: allowed (Azure's behaviour).
pub fn evaluate_inbound(
    subnet_nsg: Option<&NetworkSecurityGroup>,
    nic_nsg: Option<&NetworkSecurityGroup>,
    flow: &Flow,
    ctx: &NetworkContext,
) -> Verdict {
    let mut decided_by = Vec::new();
    for nsg in [subnet_nsg, nic_nsg].into_iter().flatten() {
        let decision = evaluate_nsg(nsg, Direction::Inbound, flow, ctx);
        let denied = decision.access == Access::Deny;
        decided_by.push(decision);
        if denied {
            return Verdict {
                allowed: false,
                decided_by,
            };
        }
    }
    Verdict {
        allowed: true,
        decided_by,
    }
}

// ---- exposure to the Internet ----

/// Custom inbound Allow rules of `nsg` that admit TCP `port` from some Internet address to
/// `destination` (any destination when None), in priority order, and that are not wholly
/// shadowed by a higher-priority Deny rule covering that port from every source ("*"/Internet)
/// to that destination.
/// Used for the posture assessment ("NSG nsg-a allows 22 from Internet (rule allow-ssh, priority
/// 300)") and to place jitgate's deny rules above every such allow rule.
///
/// "From some Internet address" is [`prefix_reaches_internet`] on a source prefix (so unknown
/// service tags count). This errs towards reporting a rule, never towards missing one:
/// - a destination given only by application security groups may contain `destination`, so the
///   rule is kept; a deny whose destination is only ASGs shadows nothing when `destination` is
///   given (when it is None, it shadows an allow whose ASGs it all names);
/// - an allow is shadowed when the union of the sources of the higher-priority denies that cover
///   the port and the destination takes in every Internet address of every source of the allow
///   (`*` or `Internet` in a deny does; `0.0.0.0/0` alone does not cover IPv6, so it shadows an
///   allow from `0.0.0.0/0` but not one from `*`); with `destination` None, each such deny must
///   itself cover every destination of the allow.
pub fn allows_from_internet<'a>(
    nsg: &'a NetworkSecurityGroup,
    port: u16,
    destination: Option<IpAddr>,
    ctx: &NetworkContext,
) -> Vec<&'a SecurityRule> {
    let destination = destination.map(|d| d.to_canonical());
    let mut inbound: Vec<&SecurityRule> = nsg
        .properties
        .security_rules
        .iter()
        .filter(|r| r.properties.direction == Direction::Inbound)
        .collect();
    inbound.sort_by_key(|r| r.properties.priority);
    inbound
        .iter()
        .copied()
        .filter(|rule| {
            let allow = &rule.properties;
            allow.access == Access::Allow
                && admits_tcp_port(allow, port)
                && allow
                    .source_prefixes()
                    .iter()
                    .any(|s| prefix_reaches_internet(s, ctx))
                && destination_may_match(allow, destination, ctx)
                && !shadowed(allow, &inbound, port, destination, ctx)
        })
        .collect()
}

fn admits_tcp_port(rule: &SecurityRuleProperties, port: u16) -> bool {
    protocol_matches(&rule.protocol, FlowProtocol::Tcp)
        && port_in_ranges(port, &rule.destination_ports())
}

/// Whether an allow rule's destination may contain `destination` (may contain anything at all
/// when None). ASG destinations may.
fn destination_may_match(
    rule: &SecurityRuleProperties,
    destination: Option<IpAddr>,
    ctx: &NetworkContext,
) -> bool {
    if !asg_ids(rule, DESTINATION_ASGS).is_empty() {
        return true;
    }
    let prefixes = rule.destination_prefixes();
    match destination {
        Some(d) => side_contains(&prefixes, d, ctx),
        None => prefixes
            .iter()
            .any(|p| parse_prefix(p) != AddressPrefix::Malformed),
    }
}

/// Whether the higher-priority deny rules of `inbound` together block everything `allow` admits
/// on TCP `port` from the Internet to `destination`.
fn shadowed(
    allow: &SecurityRuleProperties,
    inbound: &[&SecurityRule],
    port: u16,
    destination: Option<IpAddr>,
    ctx: &NetworkContext,
) -> bool {
    let deny_sources: Vec<AddressPrefix<'_>> = inbound
        .iter()
        .map(|r| &r.properties)
        .filter(|deny| {
            deny.priority < allow.priority
                && deny.access == Access::Deny
                && admits_tcp_port(deny, port)
                && destination_covered(allow, deny, destination, ctx)
        })
        .flat_map(|deny| deny.source_prefixes())
        .map(parse_prefix)
        .collect();
    if deny_sources.is_empty() {
        return false;
    }
    if deny_sources
        .iter()
        .any(|d| matches!(d, AddressPrefix::Any | AddressPrefix::Internet))
    {
        return true;
    }
    let mut cover: Vec<Span> = deny_sources
        .iter()
        .flat_map(|d| known_spans(*d, ctx))
        .collect();
    cover.extend(not_internet_spans(ctx));
    allow
        .source_prefixes()
        .iter()
        .all(|source| match parse_prefix(source) {
            AddressPrefix::Net(net) => covered(Span::of(&net), &cover),
            AddressPrefix::Any | AddressPrefix::Internet => {
                covered(Span::ALL_V4, &cover) && covered(Span::ALL_V6, &cover)
            }
            tag @ AddressPrefix::UnknownTag(_) => deny_sources.iter().any(|d| same_tag(*d, tag)),
            // No Internet address to block.
            AddressPrefix::VirtualNetwork
            | AddressPrefix::AzureLoadBalancer
            | AddressPrefix::Malformed => true,
        })
}

/// Whether `deny`'s destination covers `destination`, or, when None, every destination of
/// `allow`.
fn destination_covered(
    allow: &SecurityRuleProperties,
    deny: &SecurityRuleProperties,
    destination: Option<IpAddr>,
    ctx: &NetworkContext,
) -> bool {
    let deny_prefixes: Vec<AddressPrefix<'_>> = deny
        .destination_prefixes()
        .into_iter()
        .map(parse_prefix)
        .collect();
    if let Some(d) = destination {
        return deny_prefixes.iter().any(|p| prefix_contains(*p, d, ctx));
    }
    if deny_prefixes.contains(&AddressPrefix::Any) {
        return true;
    }
    let cover: Vec<Span> = deny_prefixes
        .iter()
        .flat_map(|p| known_spans(*p, ctx))
        .collect();
    let prefixes_covered = allow.destination_prefixes().iter().all(|p| {
        let p = parse_prefix(p);
        match p {
            AddressPrefix::Malformed => true,
            AddressPrefix::Internet | AddressPrefix::UnknownTag(_) => {
                deny_prefixes.iter().any(|d| same_tag(*d, p))
            }
            _ => {
                deny_prefixes.iter().any(|d| same_tag(*d, p))
                    || known_spans(p, ctx).iter().all(|s| covered(*s, &cover))
            }
        }
    });
    let deny_groups = asg_ids(deny, DESTINATION_ASGS);
    let groups_covered = asg_ids(allow, DESTINATION_ASGS)
        .iter()
        .all(|id| !id.is_empty() && deny_groups.iter().any(|d| d.eq_ignore_ascii_case(id)));
    prefixes_covered && groups_covered
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SOURCE_ASGS: &str = "sourceApplicationSecurityGroups";

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network";

    /// An NSG as ARM returns it, custom rules given, no `defaultSecurityRules`.
    fn nsg(name: &str, rules: Value) -> NetworkSecurityGroup {
        serde_json::from_value(json!({
            "id": format!("{SUB}/networkSecurityGroups/{name}"),
            "name": name,
            "type": "Microsoft.Network/networkSecurityGroups",
            "location": "westeurope",
            "etag": "W/\"00000000-0000-0000-0000-000000000001\"",
            "properties": {
                "provisioningState": "Succeeded",
                "resourceGuid": "00000000-0000-0000-0000-000000000002",
                "securityRules": rules
            }
        }))
        .expect("NSG in ARM's JSON shape")
    }

    /// An inbound rule in ARM's JSON shape to any destination, from one source prefix.
    fn inbound(
        name: &str,
        priority: u32,
        access: &str,
        protocol: &str,
        source: &str,
        port: &str,
    ) -> Value {
        json!({
            "name": name,
            "id": format!("{SUB}/networkSecurityGroups/x/securityRules/{name}"),
            "etag": "W/\"1\"",
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "properties": {
                "provisioningState": "Succeeded",
                "protocol": protocol,
                "sourcePortRange": "*",
                "destinationPortRange": port,
                "sourceAddressPrefix": source,
                "destinationAddressPrefix": "*",
                "access": access,
                "priority": priority,
                "direction": "Inbound",
                "sourcePortRanges": [],
                "destinationPortRanges": [],
                "sourceAddressPrefixes": [],
                "destinationAddressPrefixes": []
            }
        })
    }

    fn props(rule: Value) -> SecurityRuleProperties {
        serde_json::from_value::<SecurityRule>(rule)
            .expect("rule in ARM's JSON shape")
            .properties
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn tcp(source: &str, destination: &str, port: u16) -> Flow {
        Flow {
            source: ip(source),
            destination: ip(destination),
            port,
            protocol: FlowProtocol::Tcp,
        }
    }

    fn udp(source: &str, destination: &str, port: u16) -> Flow {
        Flow {
            protocol: FlowProtocol::Udp,
            ..tcp(source, destination, port)
        }
    }

    fn ctx() -> NetworkContext {
        NetworkContext::default()
    }

    fn decide(nsg: &NetworkSecurityGroup, flow: Flow) -> RuleMatch {
        evaluate_nsg(nsg, Direction::Inbound, &flow, &ctx())
    }

    fn names(rules: &[&SecurityRule]) -> Vec<String> {
        rules.iter().map(|r| r.name.clone()).collect()
    }

    const VM: &str = "10.0.0.4";
    const PUBLIC: &str = "203.0.113.7";

    #[test]
    fn first_match_by_priority_wins_even_if_a_later_rule_would_allow() {
        let g = nsg(
            "nsg-a",
            json!([
                inbound("allow-ssh", 200, "Allow", "Tcp", "*", "22"),
                inbound("deny-ssh", 100, "Deny", "Tcp", "*", "22"),
            ]),
        );
        let m = decide(&g, tcp(PUBLIC, VM, 22));
        assert_eq!(m.rule, "deny-ssh");
        assert_eq!(m.priority, 100);
        assert_eq!(m.access, Access::Deny);
    }

    #[test]
    fn rules_are_ordered_by_priority_not_by_position_in_the_list() {
        let g = nsg(
            "nsg-a",
            json!([
                inbound("deny-ssh", 4000, "Deny", "*", "*", "22"),
                inbound("allow-ssh", 300, "Allow", "Tcp", "Internet", "22"),
            ]),
        );
        let m = decide(&g, tcp(PUBLIC, VM, 22));
        assert_eq!((m.rule.as_str(), m.access), ("allow-ssh", Access::Allow));
    }

    #[test]
    fn rule_match_names_the_nsg_its_id_the_rule_and_its_priority() {
        let g = nsg(
            "nsg-a",
            json!([inbound("allow-rdp", 310, "Allow", "Tcp", "*", "3389")]),
        );
        assert_eq!(
            decide(&g, tcp(PUBLIC, VM, 3389)),
            RuleMatch {
                nsg: "nsg-a".into(),
                nsg_id: format!("{SUB}/networkSecurityGroups/nsg-a"),
                rule: "allow-rdp".into(),
                priority: 310,
                access: Access::Allow,
            }
        );
    }

    #[test]
    fn default_deny_all_inbound_denies_internet_traffic_with_no_custom_rules() {
        let g = nsg("empty", json!([]));
        for port in [22, 80, 3389, 65535] {
            let m = decide(&g, tcp(PUBLIC, VM, port));
            assert_eq!(
                (m.rule.as_str(), m.priority, m.access),
                ("DenyAllInBound", 65500, Access::Deny)
            );
        }
        let m = decide(&g, udp("2001:db8::1", "fd00::4", 53));
        assert_eq!(m.rule, "DenyAllInBound");
    }

    #[test]
    fn allow_vnet_inbound_admits_a_10_x_source() {
        let g = nsg("empty", json!([]));
        let m = decide(&g, tcp("10.1.2.3", VM, 22));
        assert_eq!(
            (m.rule.as_str(), m.priority, m.access),
            ("AllowVnetInBound", 65000, Access::Allow)
        );
        let m = decide(&g, udp("192.168.1.1", "172.16.0.5", 5000));
        assert_eq!(m.rule, "AllowVnetInBound");
    }

    #[test]
    fn virtual_network_tag_follows_the_context() {
        let g = nsg("empty", json!([]));
        let ctx = NetworkContext {
            virtual_network: vec!["20.50.0.0/16".parse().unwrap()],
        };
        let m = evaluate_nsg(
            &g,
            Direction::Inbound,
            &tcp("20.50.1.1", "20.50.0.4", 22),
            &ctx,
        );
        assert_eq!(m.rule, "AllowVnetInBound");
        // 10.x is not this context's virtual network (and not Internet either).
        let m = evaluate_nsg(
            &g,
            Direction::Inbound,
            &tcp("10.0.0.9", "20.50.0.4", 22),
            &ctx,
        );
        assert_eq!(m.rule, "DenyAllInBound");
        // A public-range virtual network is not Internet.
        assert!(!is_internet_address(ip("20.50.9.9"), &ctx));
        assert!(is_internet_address(ip("20.51.0.1"), &ctx));
    }

    #[test]
    fn azure_load_balancer_tag_matches_only_168_63_129_16() {
        let g = nsg("empty", json!([]));
        let m = decide(&g, tcp("168.63.129.16", VM, 80));
        assert_eq!(
            (m.rule.as_str(), m.priority, m.access),
            ("AllowAzureLoadBalancerInBound", 65001, Access::Allow)
        );
        assert_eq!(
            decide(&g, tcp("168.63.129.17", VM, 80)).rule,
            "DenyAllInBound"
        );
        let rule = props(inbound(
            "deny-lb",
            100,
            "Deny",
            "*",
            "azureloadbalancer",
            "*",
        ));
        let c = ctx();
        assert!(rule_matches(
            &rule,
            Direction::Inbound,
            &tcp("168.63.129.16", VM, 1),
            &c
        ));
        assert!(!rule_matches(
            &rule,
            Direction::Inbound,
            &tcp(PUBLIC, VM, 1),
            &c
        ));
    }

    #[test]
    fn default_security_rules_from_arm_are_used_when_present() {
        let mut value = json!({
            "id": format!("{SUB}/networkSecurityGroups/from-arm"),
            "name": "from-arm",
            "location": "westeurope",
            "properties": {
                "securityRules": [],
                "defaultSecurityRules": [
                    {
                        "name": "AllowVnetInBound",
                        "properties": {
                            "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                            "sourceAddressPrefix": "VirtualNetwork",
                            "destinationAddressPrefix": "VirtualNetwork",
                            "access": "Allow", "priority": 65000, "direction": "Inbound"
                        }
                    },
                    {
                        "name": "DenyAllInBoundFromArm",
                        "properties": {
                            "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                            "sourceAddressPrefix": "*", "destinationAddressPrefix": "*",
                            "access": "Deny", "priority": 65500, "direction": "Inbound"
                        }
                    }
                ]
            }
        });
        let g: NetworkSecurityGroup = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            decide(&g, tcp(PUBLIC, VM, 22)).rule,
            "DenyAllInBoundFromArm"
        );
        // ARM's list has no AllowAzureLoadBalancerInBound here, so the probe address is denied.
        assert_eq!(
            decide(&g, tcp("168.63.129.16", VM, 80)).rule,
            "DenyAllInBoundFromArm"
        );
        // Without outbound defaults in the list, Azure's built-in outbound ones apply.
        let m = evaluate_nsg(&g, Direction::Outbound, &tcp(VM, PUBLIC, 443), &ctx());
        assert_eq!(
            (m.rule.as_str(), m.access),
            ("AllowInternetOutBound", Access::Allow)
        );
        // With no defaults at all, Azure's built-in inbound ones apply.
        value["properties"]["defaultSecurityRules"] = json!([]);
        let g: NetworkSecurityGroup = serde_json::from_value(value).unwrap();
        assert_eq!(decide(&g, tcp(PUBLIC, VM, 22)).rule, "DenyAllInBound");
    }

    #[test]
    fn outbound_built_in_defaults() {
        let g = nsg("empty", json!([]));
        let out = |flow: Flow| evaluate_nsg(&g, Direction::Outbound, &flow, &ctx()).rule;
        assert_eq!(out(tcp(VM, "10.0.1.5", 22)), "AllowVnetOutBound");
        assert_eq!(out(tcp(VM, PUBLIC, 443)), "AllowInternetOutBound");
        assert_eq!(out(tcp(VM, "100.64.0.1", 443)), "DenyAllOutBound");
    }

    #[test]
    fn rules_of_the_other_direction_do_not_apply() {
        let mut rule = inbound("deny-out", 100, "Deny", "*", "*", "*");
        rule["properties"]["direction"] = json!("Outbound");
        let g = nsg(
            "nsg-a",
            json!([rule, inbound("allow-ssh", 200, "Allow", "Tcp", "*", "22")]),
        );
        assert_eq!(decide(&g, tcp(PUBLIC, VM, 22)).rule, "allow-ssh");
        let m = evaluate_nsg(&g, Direction::Outbound, &tcp(VM, PUBLIC, 22), &ctx());
        assert_eq!(m.rule, "deny-out");
    }

    #[test]
    fn port_single_values_ranges_star_and_lists() {
        assert!(port_in_ranges(22, &["22"]));
        assert!(!port_in_ranges(23, &["22"]));
        assert!(port_in_ranges(1000, &["1000-2000"]));
        assert!(port_in_ranges(1500, &["1000-2000"]));
        assert!(port_in_ranges(2000, &["1000-2000"]));
        assert!(!port_in_ranges(999, &["1000-2000"]));
        assert!(!port_in_ranges(2001, &["1000-2000"]));
        assert!(port_in_ranges(0, &["*"]));
        assert!(port_in_ranges(65535, &["*"]));
        assert!(port_in_ranges(65535, &["0-65535"]));
        assert!(port_in_ranges(3389, &["22", "3389", "5985-5986"]));
        assert!(port_in_ranges(5986, &["22", "3389", "5985-5986"]));
        assert!(!port_in_ranges(80, &["22", "3389", "5985-5986"]));
        assert!(port_in_ranges(22, &[" 22 ", " 20 - 30 "]));
        assert!(!port_in_ranges(22, &[]));
    }

    #[test]
    fn destination_port_ranges_list_in_a_rule() {
        let mut rule = inbound("mgmt", 100, "Allow", "Tcp", "*", "");
        rule["properties"]
            .as_object_mut()
            .unwrap()
            .remove("destinationPortRange");
        rule["properties"]["destinationPortRanges"] = json!(["22", "3389", "5985-5986"]);
        let g = nsg("nsg-a", json!([rule]));
        for port in [22, 3389, 5985, 5986] {
            assert_eq!(decide(&g, tcp(PUBLIC, VM, port)).rule, "mgmt", "{port}");
        }
        for port in [21, 23, 80, 5984, 5987] {
            assert_eq!(
                decide(&g, tcp(PUBLIC, VM, port)).rule,
                "DenyAllInBound",
                "{port}"
            );
        }
    }

    #[test]
    fn protocol_star_matches_both_tcp_and_udp_only_their_own() {
        let c = ctx();
        let matches = |protocol: &str, flow: Flow| {
            rule_matches(
                &props(inbound("r", 100, "Allow", protocol, "*", "*")),
                Direction::Inbound,
                &flow,
                &c,
            )
        };
        let (t, u) = (tcp(PUBLIC, VM, 53), udp(PUBLIC, VM, 53));
        assert!(matches("*", t) && matches("*", u));
        assert!(matches("Any", t) && matches("any", u));
        assert!(matches("Tcp", t) && !matches("Tcp", u));
        assert!(matches("Udp", u) && !matches("Udp", t));
        assert!(matches("TCP", t) && matches("udp", u));
        for other in ["Icmp", "Esp", "Ah"] {
            assert!(!matches(other, t) && !matches(other, u), "{other}");
        }
    }

    #[test]
    fn ipv6_cidr_matches_ipv6_addresses_only() {
        let c = ctx();
        let rule = props(inbound(
            "v6",
            100,
            "Allow",
            "Tcp",
            "2001:db8:abcd::/48",
            "22",
        ));
        let m = |source: &str, destination: &str| {
            rule_matches(&rule, Direction::Inbound, &tcp(source, destination, 22), &c)
        };
        assert!(m("2001:db8:abcd:12::1", "fd00::4"));
        assert!(!m("2001:db8:abce::1", "fd00::4"));
        assert!(!m("203.0.113.7", VM));
        // 0.0.0.0/0 is every IPv4 address, ::/0 every IPv6 address, `*` both.
        let any4 = props(inbound("any4", 100, "Allow", "Tcp", "0.0.0.0/0", "22"));
        let any6 = props(inbound("any6", 100, "Allow", "Tcp", "::/0", "22"));
        let v4_flow = tcp(PUBLIC, VM, 22);
        let v6_flow = tcp("2001:db8::1", "fd00::4", 22);
        assert!(rule_matches(&any4, Direction::Inbound, &v4_flow, &c));
        assert!(!rule_matches(&any4, Direction::Inbound, &v6_flow, &c));
        assert!(rule_matches(&any6, Direction::Inbound, &v6_flow, &c));
        assert!(!rule_matches(&any6, Direction::Inbound, &v4_flow, &c));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_compare_as_ipv4() {
        let c = ctx();
        let rule = props(inbound("r", 100, "Allow", "Tcp", "203.0.113.0/24", "22"));
        let flow = tcp("::ffff:203.0.113.7", "::ffff:10.0.0.4", 22);
        assert!(rule_matches(&rule, Direction::Inbound, &flow, &c));
        assert!(!is_internet_address(ip("::ffff:10.0.0.4"), &c));
        assert!(!prefix_reaches_internet("::ffff:192.168.0.1", &c));
    }

    #[test]
    fn bare_address_and_cidr_prefixes() {
        let c = ctx();
        let m = |prefix: &str, source: &str| {
            rule_matches(
                &props(inbound("r", 100, "Allow", "Tcp", prefix, "22")),
                Direction::Inbound,
                &tcp(source, VM, 22),
                &c,
            )
        };
        assert!(m("198.51.100.10", "198.51.100.10"));
        assert!(!m("198.51.100.10", "198.51.100.11"));
        assert!(m("198.51.100.0/24", "198.51.100.200"));
        assert!(!m("198.51.100.0/24", "198.51.101.1"));
        assert!(m("198.51.100.10/32", "198.51.100.10"));
        // Host bits set: the network is what counts.
        assert!(m("198.51.100.77/24", "198.51.100.1"));
    }

    #[test]
    fn source_and_destination_prefix_lists_any_element_matching_counts() {
        let c = ctx();
        let rule = props(json!({
            "name": "lists",
            "properties": {
                "protocol": "Tcp",
                "sourcePortRange": "*",
                "destinationPortRange": "22",
                "sourceAddressPrefixes": ["198.51.100.0/24", "203.0.113.7"],
                "destinationAddressPrefixes": ["10.0.1.0/24", "10.0.0.4"],
                "access": "Allow", "priority": 100, "direction": "Inbound"
            }
        }));
        let m = |s: &str, d: &str| rule_matches(&rule, Direction::Inbound, &tcp(s, d, 22), &c);
        assert!(m("203.0.113.7", "10.0.0.4"));
        assert!(m("198.51.100.3", "10.0.1.9"));
        assert!(!m("203.0.113.8", "10.0.0.4"));
        assert!(!m("203.0.113.7", "10.0.0.5"));
    }

    #[test]
    fn internet_tag_excludes_private_special_and_vnet_addresses() {
        let c = ctx();
        let rule = props(inbound("r", 100, "Allow", "*", "Internet", "*"));
        let from = |s: &str, d: &str| rule_matches(&rule, Direction::Inbound, &tcp(s, d, 22), &c);
        for public in ["203.0.113.7", "8.8.8.8", "20.1.2.3", "168.63.129.16"] {
            assert!(from(public, VM), "{public}");
        }
        assert!(from("2001:db8::1", "fd00::4"));
        for private in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!from(private, VM), "{private}");
            assert!(!is_internet_address(ip(private), &c), "{private}");
        }
        // Just outside the private ranges.
        assert!(from("172.32.0.1", VM));
        assert!(from("100.128.0.1", VM));
        assert!(from("11.0.0.1", VM));
        // A virtual network in public space is not Internet.
        let vnet = NetworkContext {
            virtual_network: vec!["20.1.0.0/16".parse().unwrap()],
        };
        assert!(!rule_matches(
            &rule,
            Direction::Inbound,
            &tcp("20.1.2.3", VM, 22),
            &vnet
        ));
    }

    #[test]
    fn service_tags_compare_case_insensitively() {
        let c = ctx();
        for (tag, source, expected) in [
            ("internet", PUBLIC, true),
            ("INTERNET", PUBLIC, true),
            ("virtualnetwork", "10.9.9.9", true),
            ("VIRTUALNETWORK", PUBLIC, false),
            ("AZURELOADBALANCER", "168.63.129.16", true),
            ("any", PUBLIC, true),
        ] {
            let rule = props(inbound("r", 100, "Allow", "Tcp", tag, "22"));
            assert_eq!(
                rule_matches(&rule, Direction::Inbound, &tcp(source, VM, 22), &c),
                expected,
                "{tag} {source}"
            );
        }
        assert_eq!(parse_prefix("Internet"), AddressPrefix::Internet);
        assert_eq!(
            parse_prefix(" virtualNetwork "),
            AddressPrefix::VirtualNetwork
        );
    }

    #[test]
    fn unknown_service_tags_match_nothing_and_can_be_told_apart() {
        let c = ctx();
        for tag in [
            "Storage",
            "AzureCloud.westeurope",
            "Sql.WestEurope",
            "GatewayManager",
        ] {
            assert!(is_unknown_tag(tag), "{tag}");
            let rule = props(inbound("r", 100, "Allow", "*", tag, "*"));
            for source in [PUBLIC, "10.0.0.9", "168.63.129.16"] {
                assert!(
                    !rule_matches(&rule, Direction::Inbound, &tcp(source, VM, 443), &c),
                    "{tag} {source}"
                );
            }
        }
        for known in [
            "Internet",
            "virtualnetwork",
            "AzureLoadBalancer",
            "*",
            "Any",
            "10.0.0.0/8",
            "1.2.3.4",
            "::/0",
            "10.0.0.300/8",
            "",
        ] {
            assert!(!is_unknown_tag(known), "{known}");
        }
        assert_eq!(
            parse_prefix("Storage.WestEurope"),
            AddressPrefix::UnknownTag("Storage.WestEurope")
        );
    }

    #[test]
    fn application_security_group_rules_without_prefixes_do_not_match() {
        let asg = format!("{SUB}/applicationSecurityGroups/web");
        let g = nsg(
            "nsg-a",
            json!([
                {
                    "name": "deny-to-asg",
                    "properties": {
                        "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                        "sourceAddressPrefix": "*",
                        "destinationApplicationSecurityGroups": [{ "id": asg }],
                        "access": "Deny", "priority": 100, "direction": "Inbound"
                    }
                },
                {
                    "name": "deny-from-asg",
                    "properties": {
                        "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                        "sourceApplicationSecurityGroups": [{ "id": asg }],
                        "destinationAddressPrefix": "*",
                        "access": "Deny", "priority": 110, "direction": "Inbound"
                    }
                },
                inbound("allow-ssh", 200, "Allow", "Tcp", "*", "22"),
            ]),
        );
        // The ASG lists survive in `extra`, so a PUT sends them back.
        let first = &g.properties.security_rules[0].properties;
        assert_eq!(asg_ids(first, DESTINATION_ASGS), vec![asg.as_str()]);
        let second = &g.properties.security_rules[1].properties;
        assert_eq!(asg_ids(second, SOURCE_ASGS), vec![asg.as_str()]);
        assert_eq!(decide(&g, tcp(PUBLIC, VM, 22)).rule, "allow-ssh");
        assert_eq!(decide(&g, tcp("10.0.0.5", VM, 22)).rule, "allow-ssh");
    }

    #[test]
    fn source_port_restrictions_are_ignored_and_the_rule_still_matches() {
        let c = ctx();
        let mut rule = inbound("r", 100, "Deny", "Tcp", "*", "22");
        rule["properties"]["sourcePortRange"] = json!("1024-2048");
        assert!(rule_matches(
            &props(rule.clone()),
            Direction::Inbound,
            &tcp(PUBLIC, VM, 22),
            &c
        ));
        rule["properties"]
            .as_object_mut()
            .unwrap()
            .remove("sourcePortRange");
        rule["properties"]["sourcePortRanges"] = json!(["80", "443"]);
        assert!(rule_matches(
            &props(rule),
            Direction::Inbound,
            &tcp(PUBLIC, VM, 22),
            &c
        ));
    }

    #[test]
    fn destination_prefix_restricts_the_rule() {
        let mut rule = inbound("to-other-vm", 100, "Allow", "Tcp", "*", "22");
        rule["properties"]["destinationAddressPrefix"] = json!("10.0.1.0/24");
        let g = nsg("nsg-a", json!([rule]));
        assert_eq!(decide(&g, tcp(PUBLIC, "10.0.1.4", 22)).rule, "to-other-vm");
        assert_eq!(decide(&g, tcp(PUBLIC, VM, 22)).rule, "DenyAllInBound");
    }

    fn allow_ssh() -> NetworkSecurityGroup {
        nsg(
            "allow-ssh",
            json!([inbound("allow-ssh", 300, "Allow", "Tcp", "*", "22")]),
        )
    }

    fn deny_ssh() -> NetworkSecurityGroup {
        nsg(
            "deny-ssh",
            json!([inbound("deny-ssh", 100, "Deny", "Tcp", "Internet", "22")]),
        )
    }

    #[test]
    fn subnet_nsg_deny_beats_nic_allow() {
        let (subnet, nic) = (deny_ssh(), allow_ssh());
        let v = evaluate_inbound(Some(&subnet), Some(&nic), &tcp(PUBLIC, VM, 22), &ctx());
        assert!(!v.allowed);
        // The NIC's NSG is never reached.
        assert_eq!(v.decided_by.len(), 1);
        assert_eq!(v.decided_by[0].nsg, "deny-ssh");
        assert_eq!(v.decided_by[0].rule, "deny-ssh");
    }

    #[test]
    fn nic_nsg_deny_blocks_what_the_subnet_nsg_allows() {
        let (subnet, nic) = (allow_ssh(), deny_ssh());
        let v = evaluate_inbound(Some(&subnet), Some(&nic), &tcp(PUBLIC, VM, 22), &ctx());
        assert!(!v.allowed);
        let decided: Vec<(&str, Access)> = v
            .decided_by
            .iter()
            .map(|m| (m.rule.as_str(), m.access))
            .collect();
        assert_eq!(
            decided,
            vec![("allow-ssh", Access::Allow), ("deny-ssh", Access::Deny)]
        );
    }

    #[test]
    fn both_nsgs_must_allow() {
        let (a, b) = (allow_ssh(), allow_ssh());
        let v = evaluate_inbound(Some(&a), Some(&b), &tcp(PUBLIC, VM, 22), &ctx());
        assert!(v.allowed);
        assert_eq!(v.decided_by.len(), 2);
        // An empty NIC NSG still denies through its DenyAllInBound.
        let empty = nsg("empty", json!([]));
        let v = evaluate_inbound(Some(&a), Some(&empty), &tcp(PUBLIC, VM, 22), &ctx());
        assert!(!v.allowed);
        assert_eq!(v.decided_by[1].rule, "DenyAllInBound");
        assert_eq!(v.decided_by[1].nsg, "empty");
    }

    #[test]
    fn a_single_nsg_on_either_level_decides_alone() {
        let (allow, deny) = (allow_ssh(), deny_ssh());
        let flow = tcp(PUBLIC, VM, 22);
        assert!(evaluate_inbound(Some(&allow), None, &flow, &ctx()).allowed);
        assert!(evaluate_inbound(None, Some(&allow), &flow, &ctx()).allowed);
        assert!(!evaluate_inbound(Some(&deny), None, &flow, &ctx()).allowed);
        let v = evaluate_inbound(None, Some(&deny), &flow, &ctx());
        assert!(!v.allowed);
        assert_eq!(v.decided_by.len(), 1);
    }

    #[test]
    fn no_nsg_means_allowed() {
        let v = evaluate_inbound(None, None, &tcp(PUBLIC, VM, 22), &ctx());
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                decided_by: vec![]
            }
        );
    }

    #[test]
    fn verdict_serializes_in_camel_case() {
        let subnet = deny_ssh();
        let v = evaluate_inbound(Some(&subnet), None, &tcp(PUBLIC, VM, 22), &ctx());
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json!({
                "allowed": false,
                "decidedBy": [{
                    "nsg": "deny-ssh",
                    "nsgId": format!("{SUB}/networkSecurityGroups/deny-ssh"),
                    "rule": "deny-ssh",
                    "priority": 100,
                    "access": "Deny"
                }]
            })
        );
    }

    #[test]
    fn allows_from_internet_finds_internet_star_any_and_public_cidr_rules() {
        let g = nsg(
            "nsg-a",
            json!([
                inbound("public-cidr", 400, "Allow", "Tcp", "198.51.100.0/24", "22"),
                inbound("internet", 300, "Allow", "Tcp", "Internet", "22"),
                inbound("star", 310, "Allow", "*", "*", "22"),
                inbound("zero", 320, "Allow", "Tcp", "0.0.0.0/0", "20-30"),
                inbound("v6-any", 330, "Allow", "Tcp", "::/0", "22"),
                inbound("any", 340, "Allow", "Any", "Any", "*"),
                inbound("one-host", 350, "Allow", "Tcp", "203.0.113.7", "22"),
                inbound("wide", 360, "Allow", "Tcp", "8.0.0.0/5", "22"),
            ]),
        );
        let found = allows_from_internet(&g, 22, Some(ip(VM)), &ctx());
        assert_eq!(
            names(&found),
            vec![
                "internet",
                "star",
                "zero",
                "v6-any",
                "any",
                "one-host",
                "wide",
                "public-cidr"
            ]
        );
        assert_eq!(found[0].properties.priority, 300);
        assert_eq!(names(&allows_from_internet(&g, 22, None, &ctx())).len(), 8);
    }

    #[test]
    fn allows_from_internet_ignores_private_sources_other_ports_udp_and_denies() {
        let g = nsg(
            "nsg-a",
            json!([
                inbound("from-10", 100, "Allow", "Tcp", "10.0.0.0/8", "22"),
                inbound("from-vnet", 110, "Allow", "Tcp", "VirtualNetwork", "22"),
                inbound("from-lb", 120, "Allow", "Tcp", "AzureLoadBalancer", "22"),
                inbound("from-cgnat", 130, "Allow", "Tcp", "100.64.0.0/10", "22"),
                inbound("from-private-v6", 140, "Allow", "Tcp", "fd00::/8", "22"),
                inbound("rdp", 150, "Allow", "Tcp", "*", "3389"),
                inbound("range-without-22", 160, "Allow", "Tcp", "*", "23-1024"),
                inbound("udp-only", 170, "Allow", "Udp", "*", "22"),
                inbound("icmp", 180, "Allow", "Icmp", "*", "*"),
                inbound("deny", 190, "Deny", "Tcp", "10.9.9.9", "22"),
            ]),
        );
        assert!(allows_from_internet(&g, 22, Some(ip(VM)), &ctx()).is_empty());
        assert!(allows_from_internet(&g, 22, None, &ctx()).is_empty());
        assert_eq!(
            names(&allows_from_internet(&g, 3389, None, &ctx())),
            vec!["rdp"]
        );
    }

    #[test]
    fn allows_from_internet_counts_a_source_list_with_one_public_element() {
        let mut rule = inbound("mixed", 200, "Allow", "Tcp", "", "22");
        rule["properties"]
            .as_object_mut()
            .unwrap()
            .remove("sourceAddressPrefix");
        rule["properties"]["sourceAddressPrefixes"] = json!(["10.0.0.0/8", "203.0.113.0/24"]);
        let g = nsg("nsg-a", json!([rule]));
        assert_eq!(
            names(&allows_from_internet(&g, 22, None, &ctx())),
            vec!["mixed"]
        );
    }

    #[test]
    fn allows_from_internet_ignores_rules_shadowed_by_a_higher_priority_deny_from_star() {
        let g = nsg(
            "nsg-a",
            json!([
                inbound("deny-all-ssh", 100, "Deny", "*", "*", "22"),
                inbound("allow-ssh", 300, "Allow", "Tcp", "Internet", "22"),
                inbound("allow-many", 310, "Allow", "Tcp", "*", "20-3389"),
            ]),
        );
        assert!(allows_from_internet(&g, 22, Some(ip(VM)), &ctx()).is_empty());
        assert!(allows_from_internet(&g, 22, None, &ctx()).is_empty());
        // The deny covers 22 only: 3389 is still open.
        assert_eq!(
            names(&allows_from_internet(&g, 3389, None, &ctx())),
            vec!["allow-many"]
        );
        // A deny from the Internet tag (jitgate's own kind of rule) shadows as well.
        let g = nsg(
            "nsg-b",
            json!([
                inbound("jit-deny", 150, "Deny", "Tcp", "Internet", "22"),
                inbound("allow-ssh", 300, "Allow", "Tcp", "*", "22"),
            ]),
        );
        assert!(allows_from_internet(&g, 22, Some(ip(VM)), &ctx()).is_empty());
    }

    #[test]
    fn allows_from_internet_keeps_rules_a_deny_does_not_wholly_shadow() {
        let check = |deny: Value, allow_source: &str| -> Vec<String> {
            let g = nsg(
                "nsg-a",
                json!([
                    deny,
                    inbound("allow", 300, "Allow", "Tcp", allow_source, "22")
                ]),
            );
            names(&allows_from_internet(&g, 22, Some(ip(VM)), &ctx()))
        };
        let kept = vec!["allow".to_string()];
        // Lower priority (higher number): the allow decides first.
        assert_eq!(check(inbound("d", 400, "Deny", "*", "*", "22"), "*"), kept);
        // Another port, UDP only, or an allow rather than a deny.
        assert_eq!(check(inbound("d", 100, "Deny", "*", "*", "23"), "*"), kept);
        assert_eq!(
            check(inbound("d", 100, "Deny", "Udp", "*", "22"), "*"),
            kept
        );
        assert_eq!(
            check(inbound("d", 100, "Allow", "Tcp", "*", "22"), "*"),
            vec!["d", "allow"]
        );
        // Part of the Internet only.
        assert_eq!(
            check(inbound("d", 100, "Deny", "*", "198.51.100.0/24", "22"), "*"),
            kept
        );
        // 0.0.0.0/0 leaves IPv6 open for an allow from `*`, but covers an allow from 0.0.0.0/0
        // and from a public IPv4 CIDR.
        assert_eq!(
            check(inbound("d", 100, "Deny", "*", "0.0.0.0/0", "22"), "*"),
            kept
        );
        assert!(check(
            inbound("d", 100, "Deny", "*", "0.0.0.0/0", "22"),
            "0.0.0.0/0"
        )
        .is_empty());
        assert!(check(
            inbound("d", 100, "Deny", "*", "0.0.0.0/0", "22"),
            "1.2.3.0/24"
        )
        .is_empty());
        // A deny from a covering CIDR shadows an allow from inside it.
        assert!(check(
            inbound("d", 100, "Deny", "*", "198.51.100.0/24", "22"),
            "198.51.100.128/25"
        )
        .is_empty());
        // A deny from an unknown tag shadows an allow from the same tag, nothing else.
        assert!(check(inbound("d", 100, "Deny", "*", "storage", "22"), "Storage").is_empty());
        assert_eq!(
            check(inbound("d", 100, "Deny", "*", "Storage", "22"), "*"),
            kept
        );
        // A deny for another destination.
        let mut elsewhere = inbound("d", 100, "Deny", "*", "*", "22");
        elsewhere["properties"]["destinationAddressPrefix"] = json!("10.0.1.0/24");
        assert_eq!(check(elsewhere, "*"), kept);
    }

    #[test]
    fn allows_from_internet_unions_the_sources_of_several_denies() {
        let g = nsg(
            "nsg-a",
            json!([
                inbound("deny-v4", 100, "Deny", "Tcp", "0.0.0.0/0", "22"),
                inbound("deny-v6", 110, "Deny", "Tcp", "::/0", "22"),
                inbound("allow-ssh", 300, "Allow", "Tcp", "*", "22"),
            ]),
        );
        assert!(allows_from_internet(&g, 22, Some(ip(VM)), &ctx()).is_empty());
        // Two halves of the public part of 0.0.0.0/1 (with private space around them).
        let g = nsg(
            "nsg-b",
            json!([
                inbound("deny-low", 100, "Deny", "Tcp", "0.0.0.0/2", "22"),
                inbound("deny-high", 110, "Deny", "Tcp", "64.0.0.0/2", "22"),
                inbound("allow", 300, "Allow", "Tcp", "0.0.0.0/1", "22"),
                inbound("allow-more", 310, "Allow", "Tcp", "0.0.0.0/0", "22"),
            ]),
        );
        assert_eq!(
            names(&allows_from_internet(&g, 22, None, &ctx())),
            vec!["allow-more"]
        );
        // The private gap (10.0.0.0/8) between the denies needs no covering.
        let g = nsg(
            "nsg-c",
            json!([
                inbound("deny-8-9", 100, "Deny", "Tcp", "8.0.0.0/7", "22"),
                inbound("deny-above", 110, "Deny", "Tcp", "11.0.0.0/8", "22"),
                inbound("allow", 300, "Allow", "Tcp", "8.0.0.0/6", "22"),
            ]),
        );
        assert!(allows_from_internet(&g, 22, None, &ctx()).is_empty());
    }

    #[test]
    fn allows_from_internet_filters_and_shadows_by_destination() {
        let asg = format!("{SUB}/applicationSecurityGroups/web");
        let to = |name: &str, priority: u32, access: &str, destination: &str| {
            let mut rule = inbound(name, priority, access, "Tcp", "*", "22");
            rule["properties"]["destinationAddressPrefix"] = json!(destination);
            rule
        };
        let mut to_asg = inbound("to-asg", 330, "Allow", "Tcp", "*", "22");
        to_asg["properties"]
            .as_object_mut()
            .unwrap()
            .remove("destinationAddressPrefix");
        to_asg["properties"]["destinationApplicationSecurityGroups"] = json!([{ "id": asg }]);
        let g = nsg(
            "nsg-a",
            json!([
                to("to-other-subnet", 300, "Allow", "10.0.1.0/24"),
                to("to-vnet", 310, "Allow", "VirtualNetwork"),
                to("to-this-vm", 320, "Allow", "10.0.0.4/32"),
                to_asg,
                to("to-storage", 340, "Allow", "Storage"),
            ]),
        );
        let c = ctx();
        // An ASG destination may contain the VM: kept, erring towards reporting.
        assert_eq!(
            names(&allows_from_internet(&g, 22, Some(ip(VM)), &c)),
            vec!["to-vnet", "to-this-vm", "to-asg"]
        );
        assert_eq!(
            names(&allows_from_internet(&g, 22, None, &c)),
            vec![
                "to-other-subnet",
                "to-vnet",
                "to-this-vm",
                "to-asg",
                "to-storage"
            ]
        );

        // With no destination given, a deny must cover every destination of the allow.
        let g = nsg(
            "nsg-b",
            json!([
                to("deny-vm", 100, "Deny", "10.0.0.4"),
                to("deny-subnet", 110, "Deny", "10.0.1.0/24"),
                to("allow-vm", 300, "Allow", "10.0.0.4"),
                to("allow-subnet-part", 310, "Allow", "10.0.1.128/25"),
                to("allow-vnet", 320, "Allow", "VirtualNetwork"),
                to("allow-any", 330, "Allow", "*"),
            ]),
        );
        assert_eq!(
            names(&allows_from_internet(&g, 22, None, &c)),
            vec!["allow-vnet", "allow-any"]
        );
        // For the VM itself, deny-vm covers all of them.
        assert!(allows_from_internet(&g, 22, Some(ip(VM)), &c).is_empty());

        // A deny to an ASG shadows an allow to the same ASG when no destination is given, but
        // not for a given address (membership unknown).
        let mut deny_asg = inbound("deny-asg", 100, "Deny", "Tcp", "*", "22");
        deny_asg["properties"]
            .as_object_mut()
            .unwrap()
            .remove("destinationAddressPrefix");
        deny_asg["properties"]["destinationApplicationSecurityGroups"] =
            json!([{ "id": asg.to_uppercase() }]);
        let mut allow_asg = deny_asg.clone();
        allow_asg["name"] = json!("allow-asg");
        allow_asg["properties"]["access"] = json!("Allow");
        allow_asg["properties"]["priority"] = json!(300);
        allow_asg["properties"]["destinationApplicationSecurityGroups"] = json!([{ "id": asg }]);
        let g = nsg("nsg-c", json!([deny_asg, allow_asg]));
        assert!(allows_from_internet(&g, 22, None, &c).is_empty());
        assert_eq!(
            names(&allows_from_internet(&g, 22, Some(ip(VM)), &c)),
            vec!["allow-asg"]
        );
    }

    #[test]
    fn allows_from_internet_looks_at_custom_rules_only() {
        let mut value = serde_json::to_value(nsg("nsg-a", json!([]))).unwrap();
        value["properties"]["defaultSecurityRules"] = json!([inbound(
            "AllowEverythingOddly",
            65000,
            "Allow",
            "*",
            "*",
            "*"
        )]);
        let g: NetworkSecurityGroup = serde_json::from_value(value).unwrap();
        assert!(allows_from_internet(&g, 22, None, &ctx()).is_empty());
    }

    #[test]
    fn prefix_reaches_internet_by_kind() {
        let c = ctx();
        for yes in [
            "*",
            "Any",
            "Internet",
            "internet",
            "0.0.0.0/0",
            "::/0",
            "203.0.113.7",
            "198.51.100.0/24",
            "2001:db8::/32",
            "8.0.0.0/7",
            // Contains 11.0.0.0/8 beside 10.0.0.0/8.
            "10.0.0.0/7",
            // Contains 172.32.0.0 onwards.
            "172.16.0.0/11",
            "Storage",
            "AzureCloud.westeurope",
        ] {
            assert!(prefix_reaches_internet(yes, &c), "{yes}");
        }
        for no in [
            "10.0.0.0/8",
            "10.1.2.3",
            "172.16.0.0/12",
            "172.20.0.0/16",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.169.254",
            "fd00::/8",
            "fe80::/10",
            "::1",
            "224.0.0.0/3",
            "VirtualNetwork",
            "AzureLoadBalancer",
            "10.0.0.300/8",
            "",
            "not a prefix",
        ] {
            assert!(!prefix_reaches_internet(no, &c), "{no}");
        }
        // Public space made virtual network is not Internet.
        let vnet = NetworkContext {
            virtual_network: vec!["20.0.0.0/8".parse().unwrap()],
        };
        assert!(!prefix_reaches_internet("20.1.0.0/16", &vnet));
        assert!(prefix_reaches_internet("16.0.0.0/4", &vnet));
        // RFC 1918 space stays non-Internet even outside the virtual network.
        assert!(!prefix_reaches_internet("10.0.0.0/8", &vnet));
    }

    #[test]
    fn malformed_values_never_panic_and_never_match() {
        let c = ctx();
        for port in [
            "abc",
            "",
            "-",
            "22-",
            "-22",
            "2000-1000",
            "70000",
            "1-70000",
            "+22",
            "22-23-24",
            "2 2",
            "*22",
        ] {
            assert!(!port_in_ranges(22, &[port]), "{port:?}");
            assert!(!port_in_ranges(2000, &[port]), "{port:?}");
        }
        for prefix in [
            "10.0.0.300/8",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/",
            "/8",
            "",
            "10.0.0",
            "1.2.3.4/-1",
            "*/*",
            "Internet/8",
            "10.0.0.0/8,11.0.0.0/8",
            "gggg::1",
        ] {
            assert_eq!(parse_prefix(prefix), AddressPrefix::Malformed, "{prefix:?}");
            assert!(!prefix_reaches_internet(prefix, &c), "{prefix:?}");
        }
        let mut rules = Vec::new();
        for (i, (protocol, source, destination, port)) in [
            ("Tcp", "*", "*", "abc"),
            ("Tcp", "10.0.0.300/8", "*", "22"),
            ("Tcp", "*", "10.0.0.300/8", "22"),
            ("", "*", "*", "22"),
            ("Tcp", "", "", "22"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut rule = inbound(
                &format!("bad-{i}"),
                100 + i as u32,
                "Allow",
                protocol,
                source,
                port,
            );
            rule["properties"]["destinationAddressPrefix"] = json!(destination);
            rules.push(rule);
        }
        // A rule with no port, no prefixes at all.
        rules.push(json!({
            "name": "bare",
            "properties": { "protocol": "*", "access": "Allow", "priority": 200, "direction": "Inbound" }
        }));
        let g = nsg("bad", Value::Array(rules));
        assert_eq!(decide(&g, tcp(PUBLIC, VM, 22)).rule, "DenyAllInBound");
        assert_eq!(decide(&g, tcp("10.0.0.1", VM, 22)).rule, "AllowVnetInBound");
        assert!(allows_from_internet(&g, 22, None, &c).is_empty());
        assert!(allows_from_internet(&g, 22, Some(ip(VM)), &c).is_empty());
    }

    #[test]
    fn not_internet_ranges_are_what_the_docs_list() {
        let listed: Vec<String> = NOT_INTERNET.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            listed,
            vec![
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "0.0.0.0/8",
                "224.0.0.0/4",
                "240.0.0.0/4",
                "::/128",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
                "ff00::/8",
            ]
        );
        let default: Vec<String> = ctx()
            .virtual_network
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            default,
            vec!["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        );
    }

    #[test]
    fn coverage_of_spans_handles_gaps_overlaps_and_the_ends() {
        let s = |net: &str| Span::of(&net.parse().unwrap());
        assert!(covered(
            s("10.0.0.0/8"),
            &[s("10.0.0.0/9"), s("10.128.0.0/9")]
        ));
        assert!(covered(
            s("10.0.0.0/8"),
            &[s("10.0.0.0/9"), s("10.64.0.0/10"), s("10.0.0.0/8")]
        ));
        assert!(!covered(
            s("10.0.0.0/8"),
            &[s("10.0.0.0/9"), s("10.128.0.0/10")]
        ));
        assert!(!covered(
            s("10.0.0.0/8"),
            &[s("10.0.0.1/32"), s("10.0.0.0/9"), s("10.192.0.0/10")]
        ));
        assert!(covered(Span::ALL_V6, &[s("::/1"), s("8000::/1")]));
        assert!(!covered(Span::ALL_V6, &[Span::ALL_V4]));
        assert!(covered(Span::ALL_V4, &[s("0.0.0.0/1"), s("128.0.0.0/1")]));
        assert!(!covered(s("255.255.255.255/32"), &[s("0.0.0.0/1")]));
        assert!(!covered(s("1.2.3.4/32"), &[]));
    }
}
