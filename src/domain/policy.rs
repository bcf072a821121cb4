//! A VM's JIT policy: which ports may be opened, from where, for how long, and who must agree.
//! Names and defaults follow Azure's `jitNetworkAccessPolicies` (api-version 2020-01-01).

use super::{AccessDuration, DurationLimits, FieldErrors, Port, Protocol, SourcePrefix};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

/// The management ports a policy covers when it names none (SSH, RDP, WinRM HTTP/HTTPS).
pub const DEFAULT_PORTS: [u16; 4] = [22, 3389, 5985, 5986];
/// Azure's default `maxRequestAccessDuration`.
pub const DEFAULT_MAX_DURATION: AccessDuration = AccessDuration::from_secs(3 * 3600);
const MAX_PORTS: usize = 100;
const MAX_PREFIXES: usize = 100;
const MAX_REQUIRED_APPROVALS: i64 = 5;

/// A validated policy. Built only by [`Policy::parse`] (or read back from the store), so its
/// ports are distinct, durations in range and approval settings coherent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[schema(value_type = Vec<PortRuleWire>)]
    pub ports: Vec<PortRule>,
    pub approval: ApprovalMode,
    pub justification_required: bool,
}

/// One port a policy lets people request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "PortRuleWire", try_from = "PortRuleWire")]
pub struct PortRule {
    pub number: Port,
    pub protocol: Protocol,
    pub sources: AllowedSources,
    pub max_duration: AccessDuration,
}

/// Where a request for a port may come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedSources {
    /// `"*"`: the request names its source (by default the caller's address).
    PerRequest,
    /// The requested source must lie wholly inside one of these blocks.
    Within(Vec<SourcePrefix>),
}

/// Who must agree before a request opens a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum ApprovalMode {
    /// The RBAC check is the approval, as in Azure.
    Auto,
    /// `requiredApprovals` distinct approvers, none of them the requestor.
    Manual {
        #[serde(rename = "requiredApprovals")]
        required_approvals: u8,
    },
}

/// A port as it appears on the wire: Azure's shape, with exactly one of the two source fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRuleWire {
    #[schema(minimum = 1, maximum = 65535)]
    pub number: u16,
    /// `TCP`, `UDP` or `*`.
    pub protocol: String,
    /// `*` (the request names its source) or one address or CIDR block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefix: Option<String>,
    /// Several addresses or CIDR blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    /// ISO 8601 duration, `PT5M` to `PT24H`.
    pub max_request_access_duration: String,
}

impl From<PortRule> for PortRuleWire {
    fn from(rule: PortRule) -> Self {
        let (one, many) = match rule.sources {
            AllowedSources::PerRequest => (Some("*".to_string()), None),
            AllowedSources::Within(prefixes) if prefixes.len() == 1 => {
                (Some(prefixes[0].to_string()), None)
            }
            AllowedSources::Within(prefixes) => (
                None,
                Some(prefixes.iter().map(ToString::to_string).collect()),
            ),
        };
        PortRuleWire {
            number: rule.number.get(),
            protocol: rule.protocol.to_string(),
            allowed_source_address_prefix: one,
            allowed_source_address_prefixes: many,
            max_request_access_duration: rule.max_duration.to_string(),
        }
    }
}

/// Reading back what we stored: the stored form was validated when written, so only its
/// syntax is checked here (a later, stricter minimum duration must not make old rows unreadable).
impl TryFrom<PortRuleWire> for PortRule {
    type Error = String;
    fn try_from(w: PortRuleWire) -> Result<Self, String> {
        Ok(PortRule {
            number: Port::try_from(i64::from(w.number))?,
            protocol: w.protocol.parse()?,
            sources: parse_sources(
                w.allowed_source_address_prefix,
                w.allowed_source_address_prefixes,
            )
            .map_err(|(_, message)| message)?,
            max_duration: w.max_request_access_duration.parse()?,
        })
    }
}

/// The body of `PUT .../policy`: every field optional, types loose, so that validation can
/// report each problem with its path instead of failing on the first.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDraft {
    /// Omitted: 22, 3389, 5985 and 5986, each `*` protocol, per-request source, `PT3H`.
    pub ports: Option<Vec<PortDraft>>,
    /// Omitted: `{"mode": "auto"}`.
    pub approval: Option<ApprovalDraft>,
    /// Omitted: false.
    pub justification_required: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortDraft {
    pub number: Option<i64>,
    /// `TCP`, `UDP` or `*` (default).
    pub protocol: Option<String>,
    /// `*` (default: per request) or one address or CIDR block.
    pub allowed_source_address_prefix: Option<String>,
    /// Several addresses or CIDR blocks; not together with `allowedSourceAddressPrefix`.
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    /// ISO 8601 duration; default `PT3H`.
    pub max_request_access_duration: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalDraft {
    /// `auto` (default) or `manual`.
    pub mode: Option<String>,
    /// Manual mode only: 1 to 5 distinct approvers (default 1).
    pub required_approvals: Option<i64>,
}

impl Policy {
    /// Validates a draft against the deployment's duration limits, reporting every problem.
    pub fn parse(draft: PolicyDraft, limits: &DurationLimits) -> Result<Policy, FieldErrors> {
        let mut errors = FieldErrors::new();
        let ports = match draft.ports {
            None => DEFAULT_PORTS
                .iter()
                .map(|&n| PortRule {
                    number: Port::try_from(i64::from(n)).expect("default ports are valid"),
                    protocol: Protocol::Any,
                    sources: AllowedSources::PerRequest,
                    max_duration: DEFAULT_MAX_DURATION.clamp(limits.min, limits.max),
                })
                .collect(),
            Some(drafts) => parse_ports(drafts, limits, &mut errors),
        };
        let approval = parse_approval(draft.approval.unwrap_or_default(), &mut errors);
        errors.finish(|| Policy {
            ports,
            approval: approval.unwrap_or(ApprovalMode::Auto),
            justification_required: draft.justification_required.unwrap_or(false),
        })
    }

    /// The rule for `port`, if the policy lets anyone request it.
    pub fn port(&self, port: Port) -> Option<&PortRule> {
        self.ports.iter().find(|rule| rule.number == port)
    }
}

fn parse_ports(
    drafts: Vec<PortDraft>,
    limits: &DurationLimits,
    errors: &mut FieldErrors,
) -> Vec<PortRule> {
    if drafts.is_empty() {
        errors.push(
            "ports",
            "at least one port is required (omit `ports` for the defaults)",
        );
    }
    if drafts.len() > MAX_PORTS {
        errors.push("ports", format!("at most {MAX_PORTS} ports per policy"));
    }
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for (i, d) in drafts.into_iter().enumerate() {
        let at = |field: &str| format!("ports[{i}].{field}");
        let number = match d.number {
            None => {
                errors.push(at("number"), "is required");
                None
            }
            Some(n) => errors.take(at("number"), Port::try_from(n)),
        };
        if let Some(n) = number {
            if !seen.insert(n) {
                errors.push(at("number"), format!("port {n} appears more than once"));
            }
        }
        let protocol = errors.take(at("protocol"), d.protocol.as_deref().unwrap_or("*").parse());
        let sources = match parse_sources(
            d.allowed_source_address_prefix,
            d.allowed_source_address_prefixes,
        ) {
            Ok(s) => Some(s),
            Err((field, message)) => {
                errors.push(
                    if field.is_empty() {
                        format!("ports[{i}]")
                    } else {
                        at(&field)
                    },
                    message,
                );
                None
            }
        };
        let duration = match d.max_request_access_duration {
            None => Some(DEFAULT_MAX_DURATION.clamp(limits.min, limits.max)),
            Some(s) => errors.take(
                at("maxRequestAccessDuration"),
                s.parse::<AccessDuration>().and_then(|d| limits.check(d)),
            ),
        };
        if let (Some(number), Some(protocol), Some(sources), Some(max_duration)) =
            (number, protocol, sources, duration)
        {
            rules.push(PortRule {
                number,
                protocol,
                sources,
                max_duration,
            });
        }
    }
    rules
}

/// Parses the two source fields; an error names the field (relative to the port) and why.
fn parse_sources(
    one: Option<String>,
    many: Option<Vec<String>>,
) -> Result<AllowedSources, (String, String)> {
    match (one, many) {
        (Some(_), Some(_)) => Err((
            String::new(),
            "give allowedSourceAddressPrefix or allowedSourceAddressPrefixes, not both".into(),
        )),
        (None, None) => Ok(AllowedSources::PerRequest),
        (Some(s), None) if s == "*" => Ok(AllowedSources::PerRequest),
        (Some(s), None) => s
            .parse()
            .map(|p| AllowedSources::Within(vec![p]))
            .map_err(|e| ("allowedSourceAddressPrefix".into(), e)),
        (None, Some(list)) => {
            let field = "allowedSourceAddressPrefixes";
            if list.is_empty() || list.len() > MAX_PREFIXES {
                return Err((
                    field.into(),
                    format!("expected 1 to {MAX_PREFIXES} prefixes"),
                ));
            }
            let mut prefixes: Vec<SourcePrefix> = Vec::with_capacity(list.len());
            for (j, s) in list.iter().enumerate() {
                if s == "*" {
                    return Err((
                        format!("{field}[{j}]"),
                        "\"*\" (any source, chosen per request) goes alone in allowedSourceAddressPrefix".into(),
                    ));
                }
                let p: SourcePrefix = s.parse().map_err(|e| (format!("{field}[{j}]"), e))?;
                if !prefixes.contains(&p) {
                    prefixes.push(p);
                }
            }
            Ok(AllowedSources::Within(prefixes))
        }
    }
}

fn parse_approval(draft: ApprovalDraft, errors: &mut FieldErrors) -> Option<ApprovalMode> {
    match draft.mode.as_deref().unwrap_or("auto") {
        "auto" => {
            if draft.required_approvals.is_some() {
                errors.push(
                    "approval.requiredApprovals",
                    "applies to manual approval only",
                );
                return None;
            }
            Some(ApprovalMode::Auto)
        }
        "manual" => match draft.required_approvals.unwrap_or(1) {
            n @ 1..=MAX_REQUIRED_APPROVALS => Some(ApprovalMode::Manual {
                required_approvals: n as u8,
            }),
            n => {
                errors.push(
                    "approval.requiredApprovals",
                    format!("{n} is out of range: expected 1 to {MAX_REQUIRED_APPROVALS} distinct approvers"),
                );
                None
            }
        },
        other => {
            errors.push(
                "approval.mode",
                format!("unknown mode {other:?}: expected \"auto\" or \"manual\""),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> DurationLimits {
        DurationLimits::with_min("PT5M".parse().unwrap())
    }

    fn parse(v: serde_json::Value) -> Result<Policy, FieldErrors> {
        Policy::parse(serde_json::from_value(v).unwrap(), &limits())
    }

    fn fields(e: FieldErrors) -> Vec<String> {
        e.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn an_empty_body_gets_azures_defaults() {
        let p = parse(json!({})).unwrap();
        let numbers: Vec<u16> = p.ports.iter().map(|r| r.number.get()).collect();
        assert_eq!(numbers, DEFAULT_PORTS);
        assert!(p.ports.iter().all(|r| r.protocol == Protocol::Any
            && r.sources == AllowedSources::PerRequest
            && r.max_duration.to_string() == "PT3H"));
        assert_eq!(p.approval, ApprovalMode::Auto);
        assert!(!p.justification_required);
    }

    #[test]
    fn the_api_example_round_trips_in_azures_shape() {
        let p = parse(json!({
            "ports": [
                { "number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H" },
                { "number": 3389, "protocol": "*", "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.168.1.0/24"], "maxRequestAccessDuration": "PT1H" }
            ],
            "approval": { "mode": "manual", "requiredApprovals": 1 },
            "justificationRequired": true
        }))
        .unwrap();
        let wire = serde_json::to_value(&p).unwrap();
        assert_eq!(
            wire["ports"][1]["allowedSourceAddressPrefixes"],
            json!(["10.0.0.0/8", "192.168.1.0/24"])
        );
        assert_eq!(wire["ports"][0]["allowedSourceAddressPrefix"], "*");
        assert_eq!(
            wire["approval"],
            json!({ "mode": "manual", "requiredApprovals": 1 })
        );
        let back: Policy = serde_json::from_value(wire).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errors = parse(json!({
            "ports": [
                { "number": 22 },
                { "number": 22, "protocol": "icmp" },
                { "number": 70000, "maxRequestAccessDuration": "PT25H" },
                { "allowedSourceAddressPrefix": "10.0.0.1/8" },
                { "number": 80, "allowedSourceAddressPrefix": "*", "allowedSourceAddressPrefixes": ["10.0.0.0/8"] },
                { "number": 81, "allowedSourceAddressPrefixes": ["10.0.0.0/8", "*"], "maxRequestAccessDuration": "PT1M" }
            ],
            "approval": { "mode": "manual", "requiredApprovals": 6 }
        }))
        .unwrap_err();
        assert_eq!(
            fields(errors),
            vec![
                "ports[1].number",
                "ports[1].protocol",
                "ports[2].number",
                "ports[2].maxRequestAccessDuration",
                "ports[3].number",
                "ports[3].allowedSourceAddressPrefix",
                "ports[4]",
                "ports[5].allowedSourceAddressPrefixes[1]",
                "ports[5].maxRequestAccessDuration",
                "approval.requiredApprovals",
            ]
        );
    }

    #[test]
    fn approval_settings_must_be_coherent() {
        assert_eq!(
            fields(
                parse(json!({ "approval": { "mode": "auto", "requiredApprovals": 2 } }))
                    .unwrap_err()
            ),
            ["approval.requiredApprovals"]
        );
        assert_eq!(
            fields(parse(json!({ "approval": { "mode": "sometimes" } })).unwrap_err()),
            ["approval.mode"]
        );
        assert_eq!(
            fields(
                parse(json!({ "approval": { "mode": "manual", "requiredApprovals": 0 } }))
                    .unwrap_err()
            ),
            ["approval.requiredApprovals"]
        );
        assert_eq!(
            parse(json!({ "approval": { "mode": "manual" } }))
                .unwrap()
                .approval,
            ApprovalMode::Manual {
                required_approvals: 1
            }
        );
    }

    #[test]
    fn an_empty_port_list_is_refused() {
        assert_eq!(
            fields(parse(json!({ "ports": [] })).unwrap_err()),
            ["ports"]
        );
    }

    #[test]
    fn the_minimum_duration_follows_the_deployment_setting() {
        let draft: PolicyDraft = serde_json::from_value(
            json!({ "ports": [{ "number": 22, "maxRequestAccessDuration": "PT2S" }] }),
        )
        .unwrap();
        assert!(Policy::parse(draft.clone(), &limits()).is_err());
        let test_limits = DurationLimits::with_min("PT1S".parse().unwrap());
        assert_eq!(
            Policy::parse(draft, &test_limits).unwrap().ports[0]
                .max_duration
                .as_secs(),
            2
        );
    }
}
