//! Access requests: what someone asks for, checked against the VMs' policies, and the state
//! machine a request lives by. Pure: no I/O, no clock (times are passed in).
//!
//! pending -> approved -> active -> expired | revoked; pending -> denied | cancelled;
//! approved -> failed. Approval is automatic when every VM's policy says `auto`; otherwise the
//! largest `requiredApprovals` among the VMs' policies, from distinct approvers, never the
//! requestor nor the bot that submitted for them; one deny ends it.

use super::policy::AllowedSources;
use super::{
    AccessDuration, ApprovalMode, DurationLimits, FieldErrors, Policy, Port, PortRule, Principal,
    Protocol, SourcePrefix, VmId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum RequestStatus {
    Pending,
    Approved,
    Active,
    Expired,
    Revoked,
    Denied,
    Cancelled,
    Failed,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Active => "active",
            RequestStatus::Expired => "expired",
            RequestStatus::Revoked => "revoked",
            RequestStatus::Denied => "denied",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<RequestStatus, String> {
        [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Active,
            RequestStatus::Expired,
            RequestStatus::Revoked,
            RequestStatus::Denied,
            RequestStatus::Cancelled,
            RequestStatus::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown status {s:?}: expected pending, approved, active, expired, revoked, denied, cancelled or failed"))
    }

    /// No event moves a request on from here.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestStatus::Expired
                | RequestStatus::Revoked
                | RequestStatus::Denied
                | RequestStatus::Cancelled
                | RequestStatus::Failed
        )
    }
}

/// A port's state, in Azure's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PortStatus {
    Pending,
    Initiated,
    Revoked,
    Failed,
}

/// Why a port is in its state, in Azure's words (or ARM's error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum StatusReason {
    UserRequested,
    Expired,
    NewerRequestInitiated,
    Revoked,
    Denied,
    Cancelled,
    /// ARM's error code and message.
    #[serde(untagged)]
    Arm(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Approve,
    Deny,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub approver: Principal,
    pub decision: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// One port asked for on one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedPort {
    pub number: Port,
    pub protocol: Protocol,
    /// The address or block access is opened for.
    pub source: SourcePrefix,
    pub duration: AccessDuration,
    pub status: PortStatus,
    pub status_reason: StatusReason,
    /// Set when the port opens: activation time + duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<DateTime<Utc>>,
    /// For a VM behind an Azure Firewall: the firewall's public address and port that
    /// forward to this port, set when it opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped: Option<MappedPort>,
}

/// Where to connect through a firewall: `address`:`port` reaches the VM's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappedPort {
    pub address: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedVm {
    pub vm: VmId,
    pub ports: Vec<RequestedPort>,
}

/// A request as checked and kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequest {
    pub id: String,
    pub status: RequestStatus,
    /// Whose access it is.
    pub requestor: Principal,
    /// Who sent it: the requestor, or the bot acting for them.
    pub submitted_by: Principal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When access opened (status `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<DateTime<Utc>>,
    pub required_approvals: u8,
    pub approvals: Vec<Decision>,
    pub virtual_machines: Vec<RequestedVm>,
}

// ---- the body of POST /v1/access-requests ----

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestDraft {
    #[serde(default)]
    pub virtual_machines: Vec<VmDraft>,
    pub justification: Option<String>,
    /// The user object id a bot asks for (bots only).
    pub on_behalf_of: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmDraft {
    /// The VM's ARM id.
    pub id: String,
    #[serde(default)]
    pub ports: Vec<PortRequestDraft>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRequestDraft {
    pub number: i64,
    /// ISO 8601; default: the policy's maximum for the port.
    pub duration: Option<String>,
    /// Instead of `duration`: when access should end.
    pub end_time_utc: Option<DateTime<Utc>>,
    /// One address or block; default: the caller's address.
    pub allowed_source_address_prefix: Option<String>,
    /// Several addresses or blocks (one grant each).
    pub allowed_source_address_prefixes: Option<Vec<String>>,
}

/// What checking a draft needs to know besides the draft.
pub struct RequestContext<'a> {
    /// The policy of each VM named, by [`VmId::key`]; a VM without one cannot be requested.
    pub policies: &'a HashMap<String, Policy>,
    /// The caller's address, for ports whose source is left out; `None` when it must be given
    /// (a bot acting for someone).
    pub caller_address: Option<IpAddr>,
    pub limits: &'a DurationLimits,
    pub now: DateTime<Utc>,
}

/// Something that happens to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Approve {
        by: Principal,
        comment: Option<String>,
        at: DateTime<Utc>,
    },
    Deny {
        by: Principal,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    Cancel {
        at: DateTime<Utc>,
    },
    /// ARM opened every port at `at`.
    Activated {
        at: DateTime<Utc>,
    },
    /// ARM could not open it: the reason (ARM's code and message).
    ActivationFailed {
        reason: String,
    },
    /// Every port's `endTimeUtc` has passed and its rules are gone.
    Expired,
    Revoke {
        by: Principal,
        reason: Option<String>,
    },
    /// A newer active request for the same VM, port and source took over.
    Superseded,
}

/// Why an event does not apply; the API answers 409 (or 403 for self-approval).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the request is {status}, so it cannot be {action}")]
    WrongState {
        status: &'static str,
        action: &'static str,
    },
    #[error("{0}")]
    NotAllowed(String),
}

// ---- checking a draft ----

const MAX_JUSTIFICATION_CHARS: usize = 1000;

/// One source a port is asked for from, with the path of the field it came from.
struct SourceInput {
    field: String,
    source: Result<SourcePrefix, String>,
}

impl AccessRequest {
    /// Checks a draft against the VMs' policies and builds the request in its first state.
    /// `id` is given (the store's), `requestor` / `submitted_by` are the principals.
    /// Every problem is reported at once, each with the JSON path of its field.
    pub fn new(
        id: String,
        draft: RequestDraft,
        requestor: Principal,
        submitted_by: Principal,
        ctx: &RequestContext<'_>,
    ) -> Result<AccessRequest, FieldErrors> {
        let mut errors = FieldErrors::new();
        if draft.virtual_machines.is_empty() {
            errors.push(
                "virtualMachines",
                "at least one virtual machine is required",
            );
        }
        let mut seen_vms: HashSet<String> = HashSet::new();
        let mut policies: Vec<(VmId, &Policy)> = Vec::new();
        let mut vms = Vec::with_capacity(draft.virtual_machines.len());
        for (i, vm_draft) in draft.virtual_machines.into_iter().enumerate() {
            let at = format!("virtualMachines[{i}]");
            let vm = errors.take(format!("{at}.id"), VmId::parse(&vm_draft.id));
            let policy = match &vm {
                None => None,
                Some(vm) => {
                    if !seen_vms.insert(vm.key().to_string()) {
                        errors.push(
                            format!("{at}.id"),
                            format!("{vm} appears more than once: list each virtual machine once, with all its ports"),
                        );
                    }
                    match ctx.policies.get(vm.key()) {
                        Some(policy) => {
                            policies.push((vm.clone(), policy));
                            Some(policy)
                        }
                        None => {
                            errors.push(
                                format!("{at}.id"),
                                format!("{vm} has no JIT policy: it cannot be requested"),
                            );
                            None
                        }
                    }
                }
            };
            if vm_draft.ports.is_empty() {
                errors.push(format!("{at}.ports"), "at least one port is required");
            }
            let mut seen_ports: HashSet<(Port, SourcePrefix)> = HashSet::new();
            let mut ports = Vec::new();
            for (j, port_draft) in vm_draft.ports.into_iter().enumerate() {
                let at = format!("{at}.ports[{j}]");
                for port in check_port(&at, port_draft, policy, ctx, &mut errors) {
                    if !seen_ports.insert((port.number, port.source)) {
                        errors.push(
                            at.clone(),
                            format!(
                                "port {} from {} is asked for more than once on this virtual machine",
                                port.number, port.source
                            ),
                        );
                    }
                    ports.push(port);
                }
            }
            if let Some(vm) = vm {
                vms.push(RequestedVm { vm, ports });
            }
        }

        let justification = draft
            .justification
            .map(|j| j.trim().to_string())
            .filter(|j| !j.is_empty());
        match &justification {
            None => {
                if let Some((vm, _)) = policies.iter().find(|(_, p)| p.justification_required) {
                    errors.push(
                        "justification",
                        format!("is required: the JIT policy of {vm} asks for one"),
                    );
                }
            }
            Some(j) if j.chars().count() > MAX_JUSTIFICATION_CHARS => errors.push(
                "justification",
                format!("is too long: at most {MAX_JUSTIFICATION_CHARS} characters"),
            ),
            Some(_) => {}
        }

        let required_approvals = policies
            .iter()
            .map(|(_, p)| match p.approval {
                ApprovalMode::Auto => 0,
                ApprovalMode::Manual { required_approvals } => required_approvals,
            })
            .max()
            .unwrap_or(0);

        errors.finish(|| AccessRequest {
            id,
            // With auto approval the RBAC check already made is the approval.
            status: if required_approvals == 0 {
                RequestStatus::Approved
            } else {
                RequestStatus::Pending
            },
            requestor,
            submitted_by,
            justification,
            created_at: ctx.now,
            start_time_utc: None,
            required_approvals,
            approvals: Vec::new(),
            virtual_machines: vms,
        })
    }
}

/// Checks one port of a draft; returns one requested port per source (none on error).
/// `policy` is `None` when the VM itself was refused: the port's own syntax is still checked.
fn check_port(
    at: &str,
    draft: PortRequestDraft,
    policy: Option<&Policy>,
    ctx: &RequestContext<'_>,
    errors: &mut FieldErrors,
) -> Vec<RequestedPort> {
    let field = |name: &str| format!("{at}.{name}");
    let before = errors.0.len();

    let number = errors.take(field("number"), Port::try_from(draft.number));
    let rule = match (number, policy) {
        (Some(number), Some(policy)) => {
            let rule = policy.port(number);
            if rule.is_none() {
                let allowed: Vec<String> =
                    policy.ports.iter().map(|r| r.number.to_string()).collect();
                errors.push(
                    field("number"),
                    format!(
                        "port {number} is not in the virtual machine's JIT policy, which allows {}",
                        allowed.join(", ")
                    ),
                );
            }
            rule
        }
        _ => None,
    };

    let duration = check_duration(at, &draft, rule, ctx, errors);
    let sources = source_inputs(
        at,
        draft.allowed_source_address_prefix,
        draft.allowed_source_address_prefixes,
        ctx,
        errors,
    );
    let mut checked = Vec::with_capacity(sources.len());
    for SourceInput {
        field: path,
        source,
    } in sources
    {
        let Some(source) = errors.take(path.as_str(), source.and_then(refuse_the_internet)) else {
            continue;
        };
        if let Some(PortRule {
            number,
            sources: AllowedSources::Within(blocks),
            ..
        }) = rule
        {
            if !blocks.iter().any(|b| b.contains(&source)) {
                let blocks: Vec<String> = blocks.iter().map(ToString::to_string).collect();
                errors.push(
                    path,
                    format!(
                        "{source} is not inside the sources the policy allows for port {number}: {}",
                        blocks.join(", ")
                    ),
                );
                continue;
            }
        }
        checked.push(source);
    }

    match (rule, duration) {
        (Some(rule), Some(duration)) if errors.0.len() == before => checked
            .into_iter()
            .map(|source| RequestedPort {
                number: rule.number,
                protocol: rule.protocol,
                source,
                duration,
                status: PortStatus::Pending,
                status_reason: StatusReason::UserRequested,
                end_time_utc: None,
                mapped: None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The port's duration: `duration`, or `endTimeUtc` less now (rounded up to a whole second),
/// or the policy's maximum for the port; within the deployment's limits and the policy's max.
fn check_duration(
    at: &str,
    draft: &PortRequestDraft,
    rule: Option<&PortRule>,
    ctx: &RequestContext<'_>,
    errors: &mut FieldErrors,
) -> Option<AccessDuration> {
    let (field, duration) = match (&draft.duration, draft.end_time_utc) {
        (Some(_), Some(_)) => {
            errors.push(at, "give duration or endTimeUtc, not both");
            return None;
        }
        (Some(text), None) => {
            let field = format!("{at}.duration");
            let d = errors.take(
                field.as_str(),
                text.parse::<AccessDuration>()
                    .and_then(|d| ctx.limits.check(d)),
            )?;
            (field, d)
        }
        (None, Some(end)) => {
            let field = format!("{at}.endTimeUtc");
            let d = errors.take(field.as_str(), duration_until(end, ctx))?;
            (field, d)
        }
        (None, None) => return rule.map(|r| r.max_duration),
    };
    if let Some(rule) = rule {
        if duration > rule.max_duration {
            errors.push(
                field,
                format!(
                    "{duration} is longer than the policy's maximum of {} for port {}",
                    rule.max_duration, rule.number
                ),
            );
            return None;
        }
    }
    Some(duration)
}

fn duration_until(end: DateTime<Utc>, ctx: &RequestContext<'_>) -> Result<AccessDuration, String> {
    if end <= ctx.now {
        return Err(format!("{} is not in the future", end.to_rfc3339()));
    }
    let left = end - ctx.now;
    let secs = left.num_seconds() + i64::from(left.subsec_nanos() > 0);
    let d = AccessDuration::from_secs(u32::try_from(secs).unwrap_or(u32::MAX));
    ctx.limits
        .check(d)
        .map_err(|e| format!("{} is {d} from now: {e}", end.to_rfc3339()))
}

/// The sources a port is asked from, each with the field it came from; the caller's address
/// when none is named.
fn source_inputs(
    at: &str,
    one: Option<String>,
    many: Option<Vec<String>>,
    ctx: &RequestContext<'_>,
    errors: &mut FieldErrors,
) -> Vec<SourceInput> {
    let parse = |s: &str| {
        if s.trim() == "*" {
            Err(whole_internet(s))
        } else {
            s.parse::<SourcePrefix>()
        }
    };
    match (one, many) {
        (Some(_), Some(_)) => {
            errors.push(
                at,
                "give allowedSourceAddressPrefix or allowedSourceAddressPrefixes, not both",
            );
            Vec::new()
        }
        (Some(s), None) => vec![SourceInput {
            field: format!("{at}.allowedSourceAddressPrefix"),
            source: parse(&s),
        }],
        (None, Some(list)) => {
            if list.is_empty() {
                errors.push(
                    format!("{at}.allowedSourceAddressPrefixes"),
                    "at least one address or block is required (or leave the field out for your own address)",
                );
            }
            list.iter()
                .enumerate()
                .map(|(k, s)| SourceInput {
                    field: format!("{at}.allowedSourceAddressPrefixes[{k}]"),
                    source: parse(s),
                })
                .collect()
        }
        (None, None) => match ctx.caller_address {
            Some(addr) => vec![SourceInput {
                field: at.to_string(),
                source: Ok(SourcePrefix::from_addr(addr)),
            }],
            None => {
                errors.push(
                    format!("{at}.allowedSourceAddressPrefix"),
                    "the source address is required when a bot requests on behalf of a user",
                );
                Vec::new()
            }
        },
    }
}

fn whole_internet(s: &str) -> String {
    format!("{s:?} is the whole Internet: name the address or block access is for")
}

fn refuse_the_internet(p: SourcePrefix) -> Result<SourcePrefix, String> {
    if p.net().prefix_len() == 0 {
        Err(whole_internet(&p.to_string()))
    } else {
        Ok(p)
    }
}

// ---- the state machine ----

impl Event {
    /// The event as a past participle, for "the request is X, so it cannot be ...".
    fn action(&self) -> &'static str {
        match self {
            Event::Approve { .. } => "approved",
            Event::Deny { .. } => "denied",
            Event::Cancel { .. } => "cancelled",
            Event::Activated { .. } => "activated",
            Event::ActivationFailed { .. } => "marked failed",
            Event::Expired => "expired",
            Event::Revoke { .. } => "revoked",
            Event::Superseded => "superseded",
        }
    }
}

impl AccessRequest {
    /// The one place where (state, event) decides what happens: returns the request after the
    /// event, or why the event does not apply.
    pub fn apply(&self, event: Event) -> Result<AccessRequest, TransitionError> {
        use RequestStatus as S;
        let mut next = self.clone();
        match (self.status, event) {
            (S::Pending, Event::Approve { by, comment, at }) => {
                self.refuse_own(&by, "approve")?;
                if self
                    .approvals
                    .iter()
                    .any(|d| d.decision == Verdict::Approve && d.approver.id == by.id)
                {
                    return Err(TransitionError::NotAllowed(format!(
                        "{} has already approved this request: it needs {} distinct approvers",
                        by.name, self.required_approvals
                    )));
                }
                next.approvals.push(Decision {
                    approver: by,
                    decision: Verdict::Approve,
                    comment,
                    at,
                });
                if next.approval_count() >= usize::from(next.required_approvals) {
                    next.status = S::Approved;
                }
            }
            (S::Pending, Event::Deny { by, reason, at }) => {
                self.refuse_own(&by, "deny")?;
                next.approvals.push(Decision {
                    approver: by,
                    decision: Verdict::Deny,
                    comment: reason,
                    at,
                });
                next.close(S::Denied, PortStatus::Revoked, StatusReason::Denied);
            }
            (S::Pending, Event::Cancel { .. }) => {
                next.close(S::Cancelled, PortStatus::Revoked, StatusReason::Cancelled);
            }
            (S::Approved, Event::Activated { at }) => {
                next.status = S::Active;
                next.start_time_utc = Some(at);
                for port in next.ports_mut() {
                    port.status = PortStatus::Initiated;
                    port.end_time_utc = Some(at + port.duration.as_chrono());
                }
            }
            (S::Approved, Event::ActivationFailed { reason }) => {
                next.close(S::Failed, PortStatus::Failed, StatusReason::Arm(reason));
            }
            (S::Active, Event::Expired) => {
                next.close(S::Expired, PortStatus::Revoked, StatusReason::Expired);
            }
            (S::Active, Event::Revoke { .. }) => {
                next.close(S::Revoked, PortStatus::Revoked, StatusReason::Revoked);
            }
            (S::Active, Event::Superseded) => {
                next.close(
                    S::Revoked,
                    PortStatus::Revoked,
                    StatusReason::NewerRequestInitiated,
                );
            }
            (status, event) => {
                return Err(TransitionError::WrongState {
                    status: status.as_str(),
                    action: event.action(),
                });
            }
        }
        Ok(next)
    }

    /// Every (vm, port) pair's end time, once active: one entry per pair, in request order,
    /// with the latest end time when the port is asked from several sources.
    /// Closes the ports of an active request whose end has come (`Revoked`, `Expired`); the
    /// request expires with its last port. Anything else is returned as it is.
    pub fn expire_ports_until(&self, now: DateTime<Utc>) -> AccessRequest {
        if self.status != RequestStatus::Active {
            return self.clone();
        }
        let mut next = self.clone();
        for port in next
            .virtual_machines
            .iter_mut()
            .flat_map(|vm| vm.ports.iter_mut())
        {
            if port.status == PortStatus::Initiated
                && port.end_time_utc.is_some_and(|end| end <= now)
            {
                port.status = PortStatus::Revoked;
                port.status_reason = StatusReason::Expired;
            }
        }
        let all_closed = next
            .virtual_machines
            .iter()
            .flat_map(|vm| vm.ports.iter())
            .all(|p| p.status != PortStatus::Initiated);
        if all_closed {
            return next.apply(Event::Expired).unwrap_or(next);
        }
        next
    }

    pub fn end_times(&self) -> Vec<(VmId, Port, DateTime<Utc>)> {
        let mut out: Vec<(VmId, Port, DateTime<Utc>)> = Vec::new();
        for vm in &self.virtual_machines {
            for port in &vm.ports {
                let Some(end) = port.end_time_utc else {
                    continue;
                };
                match out
                    .iter_mut()
                    .find(|(v, p, _)| *v == vm.vm && *p == port.number)
                {
                    Some((_, _, e)) => *e = (*e).max(end),
                    None => out.push((vm.vm.clone(), port.number, end)),
                }
            }
        }
        out
    }

    /// How many distinct approvers have approved.
    pub fn approval_count(&self) -> usize {
        self.approvals
            .iter()
            .filter(|d| d.decision == Verdict::Approve)
            .count()
    }

    /// The requestor and the bot that submitted for them may not decide on their own request.
    fn refuse_own(&self, by: &Principal, verb: &str) -> Result<(), TransitionError> {
        if by.id == self.requestor.id || by.id == self.submitted_by.id {
            let hint = if verb == "deny" {
                " (cancel it instead)"
            } else {
                ""
            };
            return Err(TransitionError::NotAllowed(format!(
                "{} cannot {verb} their own request{hint}",
                by.name
            )));
        }
        Ok(())
    }

    fn ports_mut(&mut self) -> impl Iterator<Item = &mut RequestedPort> {
        self.virtual_machines
            .iter_mut()
            .flat_map(|vm| vm.ports.iter_mut())
    }

    /// Moves to a final state, closing every port with `status` for `reason`.
    fn close(&mut self, status: RequestStatus, port_status: PortStatus, reason: StatusReason) {
        self.status = status;
        for port in self.ports_mut() {
            port.status = port_status;
            port.status_reason = reason.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyDraft;
    use serde_json::{json, Value};

    const VM1: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
    const VM2: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm2";
    const NO_POLICY: &str =
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/bare";
    const CALLER: &str = "203.0.113.7";

    fn limits() -> DurationLimits {
        DurationLimits::with_min("PT5M".parse().unwrap())
    }

    fn now() -> DateTime<Utc> {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn policy(v: Value) -> Policy {
        let draft: PolicyDraft = serde_json::from_value(v).unwrap();
        Policy::parse(draft, &limits()).unwrap()
    }

    /// VM1: 22 (TCP, any source, PT3H) and 3389 (inside 10.0.0.0/8 or 192.168.1.0/24, PT1H),
    /// automatic approval. VM2: the defaults, with the given approval and justification.
    fn policies(vm2_approval: Value, vm2_justification: bool) -> HashMap<String, Policy> {
        let vm1 = policy(json!({
            "ports": [
                { "number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H" },
                { "number": 3389, "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.168.1.0/24"], "maxRequestAccessDuration": "PT1H" }
            ]
        }));
        let vm2 =
            policy(json!({ "approval": vm2_approval, "justificationRequired": vm2_justification }));
        HashMap::from([
            (VmId::parse(VM1).unwrap().key().to_string(), vm1),
            (VmId::parse(VM2).unwrap().key().to_string(), vm2),
        ])
    }

    fn auto() -> HashMap<String, Policy> {
        policies(json!({ "mode": "auto" }), false)
    }

    fn manual(n: u8) -> HashMap<String, Policy> {
        policies(json!({ "mode": "manual", "requiredApprovals": n }), false)
    }

    fn alice() -> Principal {
        Principal {
            id: "oid-alice".into(),
            name: "alice@example.com".into(),
        }
    }
    fn bot() -> Principal {
        Principal {
            id: "oid-bot".into(),
            name: "chatops-bot".into(),
        }
    }
    fn bob() -> Principal {
        Principal {
            id: "oid-bob".into(),
            name: "bob@example.com".into(),
        }
    }
    fn carol() -> Principal {
        Principal {
            id: "oid-carol".into(),
            name: "carol@example.com".into(),
        }
    }

    fn build_with(
        policies: &HashMap<String, Policy>,
        caller: Option<&str>,
        body: Value,
    ) -> Result<AccessRequest, FieldErrors> {
        let limits = limits();
        let ctx = RequestContext {
            policies,
            caller_address: caller.map(|a| a.parse().unwrap()),
            limits: &limits,
            now: now(),
        };
        let draft: RequestDraft = serde_json::from_value(body).unwrap();
        let submitter = if caller.is_some() { alice() } else { bot() };
        AccessRequest::new("req-1".into(), draft, alice(), submitter, &ctx)
    }

    fn build(
        policies: &HashMap<String, Policy>,
        body: Value,
    ) -> Result<AccessRequest, FieldErrors> {
        build_with(policies, Some(CALLER), body)
    }

    fn fields(e: FieldErrors) -> Vec<String> {
        e.0.into_iter().map(|e| e.field).collect()
    }

    fn message(e: &FieldErrors, field: &str) -> String {
        e.0.iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("no error on {field}: {e}"))
            .message
            .clone()
    }

    fn one_port(vm: &str, port: Value) -> Value {
        json!({ "virtualMachines": [{ "id": vm, "ports": [port] }] })
    }

    fn ports(r: &AccessRequest) -> Vec<&RequestedPort> {
        r.virtual_machines.iter().flat_map(|v| &v.ports).collect()
    }

    fn pending_needing(n: u8) -> AccessRequest {
        let r = build(&manual(n), one_port(VM2, json!({ "number": 22 }))).unwrap();
        assert_eq!(r.status, RequestStatus::Pending);
        r
    }

    fn approve(by: Principal) -> Event {
        Event::Approve {
            by,
            comment: None,
            at: now(),
        }
    }

    fn approved() -> AccessRequest {
        build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "duration": "PT1H" })),
        )
        .unwrap()
    }

    fn active() -> AccessRequest {
        approved().apply(Event::Activated { at: now() }).unwrap()
    }

    fn wrong_state(
        status: &'static str,
        action: &'static str,
    ) -> Result<AccessRequest, TransitionError> {
        Err(TransitionError::WrongState { status, action })
    }

    // ---- new ----

    #[test]
    fn an_auto_policy_approves_at_once() {
        let r = approved();
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!(r.required_approvals, 0);
        assert!(r.approvals.is_empty());
        assert_eq!(r.created_at, now());
        assert_eq!(r.start_time_utc, None);
        let p = ports(&r)[0];
        assert_eq!(p.protocol, Protocol::Tcp);
        assert_eq!(p.duration.to_string(), "PT1H");
        assert_eq!(
            (p.status, &p.status_reason, p.end_time_utc),
            (PortStatus::Pending, &StatusReason::UserRequested, None)
        );
    }

    #[test]
    fn a_manual_policy_leaves_the_request_pending() {
        let r = pending_needing(1);
        assert_eq!(r.required_approvals, 1);
    }

    #[test]
    fn the_strictest_policy_sets_the_approvals_needed() {
        let r = build(
            &manual(3),
            json!({ "virtualMachines": [
                { "id": VM1, "ports": [{ "number": 22 }] },
                { "id": VM2, "ports": [{ "number": 22 }] }
            ] }),
        )
        .unwrap();
        assert_eq!(
            (r.status, r.required_approvals),
            (RequestStatus::Pending, 3)
        );
    }

    #[test]
    fn the_policy_max_is_the_default_duration_and_its_protocol_is_used() {
        let r = build(
            &auto(),
            one_port(
                VM1,
                json!({ "number": 3389, "allowedSourceAddressPrefix": "10.1.2.3" }),
            ),
        )
        .unwrap();
        let p = ports(&r)[0];
        assert_eq!(p.duration.to_string(), "PT1H");
        assert_eq!(p.protocol, Protocol::Any);
    }

    #[test]
    fn a_port_not_in_the_policy_is_refused() {
        let e = build(&auto(), one_port(VM1, json!({ "number": 80 }))).unwrap_err();
        assert_eq!(fields(e.clone()), ["virtualMachines[0].ports[0].number"]);
        assert!(message(&e, "virtualMachines[0].ports[0].number").contains("22, 3389"));
    }

    #[test]
    fn a_vm_without_a_policy_cannot_be_requested() {
        let e = build(&auto(), one_port(NO_POLICY, json!({ "number": 22 }))).unwrap_err();
        assert!(message(&e, "virtualMachines[0].id")
            .contains("has no JIT policy: it cannot be requested"));
    }

    #[test]
    fn a_duration_over_the_max_is_refused_naming_both() {
        let e = build(&auto(), one_port(VM1, json!({ "number": 3389, "duration": "PT2H", "allowedSourceAddressPrefix": "10.0.0.1" }))).unwrap_err();
        let m = message(&e, "virtualMachines[0].ports[0].duration");
        assert!(m.contains("PT2H") && m.contains("PT1H"), "{m}");
    }

    #[test]
    fn a_duration_outside_the_deployment_limits_is_refused() {
        let e = build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "duration": "PT1M" })),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["virtualMachines[0].ports[0].duration"]);
        let e = build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "duration": "soon" })),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["virtualMachines[0].ports[0].duration"]);
    }

    #[test]
    fn end_time_utc_instead_of_duration() {
        let end = now() + chrono::Duration::minutes(30) + chrono::Duration::milliseconds(500);
        let r = build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "endTimeUtc": end })),
        )
        .unwrap();
        assert_eq!(
            ports(&r)[0].duration.to_string(),
            "PT30M1S",
            "rounded up to whole seconds"
        );

        let past = now() - chrono::Duration::minutes(1);
        let e = build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "endTimeUtc": past })),
        )
        .unwrap_err();
        assert!(message(&e, "virtualMachines[0].ports[0].endTimeUtc").contains("not in the future"));

        let too_late = now() + chrono::Duration::hours(4);
        let e = build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "endTimeUtc": too_late })),
        )
        .unwrap_err();
        let m = message(&e, "virtualMachines[0].ports[0].endTimeUtc");
        assert!(m.contains("PT4H") && m.contains("PT3H"), "{m}");
    }

    #[test]
    fn duration_and_end_time_together_are_refused() {
        let end = now() + chrono::Duration::minutes(30);
        let e = build(
            &auto(),
            one_port(
                VM1,
                json!({ "number": 22, "duration": "PT30M", "endTimeUtc": end }),
            ),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["virtualMachines[0].ports[0]"]);
    }

    #[test]
    fn a_source_outside_the_allowed_blocks_is_refused() {
        let e = build(
            &auto(),
            one_port(
                VM1,
                json!({ "number": 3389, "allowedSourceAddressPrefix": "172.16.0.1" }),
            ),
        )
        .unwrap_err();
        let m = message(&e, "virtualMachines[0].ports[0].allowedSourceAddressPrefix");
        assert!(
            m.contains("10.0.0.0/8") && m.contains("192.168.1.0/24"),
            "{m}"
        );
        // A block straddling an allowed one is not inside it.
        let e = build(
            &auto(),
            one_port(
                VM1,
                json!({ "number": 3389, "allowedSourceAddressPrefix": "192.168.0.0/23" }),
            ),
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            ["virtualMachines[0].ports[0].allowedSourceAddressPrefix"]
        );
    }

    #[test]
    fn the_caller_address_must_lie_inside_the_allowed_blocks_too() {
        let e = build(&auto(), one_port(VM1, json!({ "number": 3389 }))).unwrap_err();
        assert!(message(&e, "virtualMachines[0].ports[0]").contains(CALLER));
    }

    #[test]
    fn a_sub_block_of_an_allowed_block_is_accepted() {
        let r = build(
            &auto(),
            one_port(
                VM1,
                json!({ "number": 3389, "allowedSourceAddressPrefix": "10.20.0.0/16" }),
            ),
        )
        .unwrap();
        assert_eq!(ports(&r)[0].source.to_string(), "10.20.0.0/16");
        let r = build(
            &auto(),
            one_port(
                VM1,
                json!({ "number": 3389, "allowedSourceAddressPrefix": "192.168.1.0/24" }),
            ),
        )
        .unwrap();
        assert_eq!(ports(&r)[0].source.to_string(), "192.168.1.0/24");
    }

    #[test]
    fn the_caller_address_is_the_default_source() {
        let r = build(&auto(), one_port(VM1, json!({ "number": 22 }))).unwrap();
        assert_eq!(ports(&r)[0].source.to_string(), CALLER);
    }

    #[test]
    fn a_bot_must_name_the_source() {
        let e = build_with(&auto(), None, one_port(VM1, json!({ "number": 22 }))).unwrap_err();
        assert_eq!(
            message(&e, "virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
            "the source address is required when a bot requests on behalf of a user"
        );
        let r = build_with(
            &auto(),
            None,
            one_port(
                VM1,
                json!({ "number": 22, "allowedSourceAddressPrefix": "198.51.100.4" }),
            ),
        )
        .unwrap();
        assert_eq!(r.submitted_by, bot());
        assert_eq!(ports(&r)[0].source.to_string(), "198.51.100.4");
    }

    #[test]
    fn the_whole_internet_is_refused_as_a_source() {
        for any in ["*", "0.0.0.0/0", "::/0"] {
            let e = build(
                &auto(),
                one_port(
                    VM1,
                    json!({ "number": 22, "allowedSourceAddressPrefix": any }),
                ),
            )
            .unwrap_err();
            let m = message(&e, "virtualMachines[0].ports[0].allowedSourceAddressPrefix");
            assert!(m.contains("whole Internet"), "{any}: {m}");
        }
    }

    #[test]
    fn several_prefixes_become_several_ports() {
        let r = build(
            &auto(),
            one_port(VM1, json!({ "number": 3389, "duration": "PT30M", "allowedSourceAddressPrefixes": ["10.0.0.1", "192.168.1.7"] })),
        )
        .unwrap();
        let ps = ports(&r);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].source.to_string(), "10.0.0.1");
        assert_eq!(ps[1].source.to_string(), "192.168.1.7");
        assert!(ps
            .iter()
            .all(|p| p.number.get() == 3389 && p.duration.to_string() == "PT30M"));
    }

    #[test]
    fn one_prefix_and_several_together_are_refused() {
        let e = build(
            &auto(),
            one_port(VM1, json!({ "number": 22, "allowedSourceAddressPrefix": "10.0.0.1", "allowedSourceAddressPrefixes": ["10.0.0.2"] })),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["virtualMachines[0].ports[0]"]);
    }

    #[test]
    fn the_same_port_and_source_twice_is_refused_but_other_sources_are_fine() {
        let e = build(
            &auto(),
            json!({ "virtualMachines": [{ "id": VM1, "ports": [
            { "number": 22 }, { "number": 22, "allowedSourceAddressPrefix": CALLER }
        ] }] }),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["virtualMachines[0].ports[1]"]);
        let r = build(
            &auto(),
            json!({ "virtualMachines": [{ "id": VM1, "ports": [
            { "number": 22 }, { "number": 22, "allowedSourceAddressPrefix": "198.51.100.4" }
        ] }] }),
        )
        .unwrap();
        assert_eq!(ports(&r).len(), 2);
    }

    #[test]
    fn a_vm_named_twice_is_refused() {
        let e = build(&auto(), json!({ "virtualMachines": [
            { "id": VM1, "ports": [{ "number": 22 }] },
            { "id": VM1.to_uppercase().replace("PROVIDERS", "providers"), "ports": [{ "number": 3389, "allowedSourceAddressPrefix": "10.0.0.1" }] }
        ] }))
        .unwrap_err();
        assert_eq!(fields(e), ["virtualMachines[1].id"]);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let e = build_with(
            &manual(1),
            None,
            json!({ "virtualMachines": [
                { "id": "vm1", "ports": [{ "number": 0 }] },
                { "id": NO_POLICY, "ports": [] },
                { "id": VM1, "ports": [
                    { "number": 80, "allowedSourceAddressPrefix": "10.0.0.1" },
                    { "number": 22, "duration": "PT4H", "allowedSourceAddressPrefix": "10.0.0.1/8" },
                    { "number": 3389 },
                    { "number": 3389, "allowedSourceAddressPrefixes": ["10.0.0.1", "8.8.8.8"] }
                ] },
                { "id": VM2, "ports": [{ "number": 22, "allowedSourceAddressPrefix": "10.0.0.1" }] }
            ], "justification": "x".repeat(1001) }),
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "virtualMachines[0].id",
                "virtualMachines[0].ports[0].number",
                "virtualMachines[0].ports[0].allowedSourceAddressPrefix",
                "virtualMachines[1].id",
                "virtualMachines[1].ports",
                "virtualMachines[2].ports[0].number",
                "virtualMachines[2].ports[1].duration",
                "virtualMachines[2].ports[1].allowedSourceAddressPrefix",
                "virtualMachines[2].ports[2].allowedSourceAddressPrefix",
                "virtualMachines[2].ports[3].allowedSourceAddressPrefixes[1]",
                "justification",
            ]
        );
    }

    #[test]
    fn at_least_one_vm_is_required() {
        assert_eq!(
            fields(build(&auto(), json!({})).unwrap_err()),
            ["virtualMachines"]
        );
    }

    #[test]
    fn justification_required_by_policy() {
        let strict = policies(json!({ "mode": "auto" }), true);
        let body = |j: Value| json!({ "virtualMachines": [{ "id": VM2, "ports": [{ "number": 22 }] }], "justification": j });
        for missing in [Value::Null, json!("   ")] {
            let e = build(&strict, body(missing)).unwrap_err();
            assert!(message(&e, "justification").contains(VM2));
        }
        let r = build(&strict, body(json!("  INC-1234: patch openssl \n"))).unwrap();
        assert_eq!(r.justification.as_deref(), Some("INC-1234: patch openssl"));
        // Not required for VM1 alone.
        assert_eq!(
            build(&strict, one_port(VM1, json!({ "number": 22 })))
                .unwrap()
                .justification,
            None
        );
    }

    #[test]
    fn a_justification_over_1000_characters_is_refused() {
        let body = |n: usize| json!({ "virtualMachines": [{ "id": VM1, "ports": [{ "number": 22 }] }], "justification": "é".repeat(n) });
        assert!(build(&auto(), body(1000)).is_ok());
        assert_eq!(
            fields(build(&auto(), body(1001)).unwrap_err()),
            ["justification"]
        );
    }

    // ---- apply ----

    #[test]
    fn one_approval_approves_a_request_needing_one() {
        let r = pending_needing(1)
            .apply(Event::Approve {
                by: bob(),
                comment: Some("ok".into()),
                at: now(),
            })
            .unwrap();
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!(
            r.approvals,
            [Decision {
                approver: bob(),
                decision: Verdict::Approve,
                comment: Some("ok".into()),
                at: now()
            }]
        );
    }

    #[test]
    fn two_distinct_approvals_approve_a_request_needing_two() {
        let r = pending_needing(2).apply(approve(bob())).unwrap();
        assert_eq!((r.status, r.approval_count()), (RequestStatus::Pending, 1));
        let r = r.apply(approve(carol())).unwrap();
        assert_eq!((r.status, r.approval_count()), (RequestStatus::Approved, 2));
    }

    #[test]
    fn the_same_approver_twice_counts_once() {
        let r = pending_needing(2).apply(approve(bob())).unwrap();
        match r.apply(approve(bob())) {
            Err(TransitionError::NotAllowed(m)) => {
                assert!(m.contains("has already approved"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_requestor_cannot_approve_their_own_request() {
        match pending_needing(1).apply(approve(alice())) {
            Err(TransitionError::NotAllowed(m)) => {
                assert!(m.contains("cannot approve their own request"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_submitting_bot_cannot_approve_nor_deny() {
        let r = build_with(
            &manual(1),
            None,
            one_port(
                VM2,
                json!({ "number": 22, "allowedSourceAddressPrefix": "198.51.100.4" }),
            ),
        )
        .unwrap();
        assert!(matches!(
            r.apply(approve(bot())),
            Err(TransitionError::NotAllowed(_))
        ));
        let deny = Event::Deny {
            by: bot(),
            reason: None,
            at: now(),
        };
        assert!(matches!(r.apply(deny), Err(TransitionError::NotAllowed(_))));
    }

    #[test]
    fn a_requestor_cannot_deny_their_own_request() {
        let deny = Event::Deny {
            by: alice(),
            reason: None,
            at: now(),
        };
        assert!(matches!(
            pending_needing(1).apply(deny),
            Err(TransitionError::NotAllowed(_))
        ));
    }

    #[test]
    fn one_deny_ends_a_pending_request() {
        let r = pending_needing(2).apply(approve(bob())).unwrap();
        let r = r
            .apply(Event::Deny {
                by: carol(),
                reason: Some("not during the freeze".into()),
                at: now(),
            })
            .unwrap();
        assert_eq!(r.status, RequestStatus::Denied);
        assert_eq!(r.approvals[1].decision, Verdict::Deny);
        assert_eq!(
            r.approvals[1].comment.as_deref(),
            Some("not during the freeze")
        );
        assert!(ports(&r)
            .iter()
            .all(|p| p.status == PortStatus::Revoked && p.status_reason == StatusReason::Denied));
    }

    #[test]
    fn a_pending_request_can_be_cancelled() {
        let r = pending_needing(1)
            .apply(Event::Cancel { at: now() })
            .unwrap();
        assert_eq!(r.status, RequestStatus::Cancelled);
        assert!(
            ports(&r)
                .iter()
                .all(|p| p.status == PortStatus::Revoked
                    && p.status_reason == StatusReason::Cancelled)
        );
    }

    #[test]
    fn an_approved_request_cannot_be_cancelled_nor_approved_again() {
        assert_eq!(
            approved().apply(Event::Cancel { at: now() }),
            wrong_state("approved", "cancelled")
        );
        let e = approved().apply(approve(bob())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the request is approved, so it cannot be approved"
        );
    }

    #[test]
    fn activation_sets_end_times_from_activation() {
        let r = build(
            &auto(),
            json!({ "virtualMachines": [
                { "id": VM1, "ports": [{ "number": 22, "duration": "PT1H" }, { "number": 3389, "duration": "PT30M", "allowedSourceAddressPrefixes": ["10.0.0.1", "10.0.0.2"] }] },
                { "id": VM2, "ports": [{ "number": 5985, "duration": "PT2H" }] }
            ] }),
        )
        .unwrap();
        assert!(r.end_times().is_empty(), "no end time before activation");
        let at = now() + chrono::Duration::seconds(7);
        let r = r.apply(Event::Activated { at }).unwrap();
        assert_eq!(r.status, RequestStatus::Active);
        assert_eq!(r.start_time_utc, Some(at));
        assert!(ports(&r).iter().all(|p| p.status == PortStatus::Initiated
            && p.end_time_utc == Some(at + p.duration.as_chrono())));
        let ends: Vec<(String, u16, DateTime<Utc>)> = r
            .end_times()
            .into_iter()
            .map(|(vm, port, end)| (vm.name().to_string(), port.get(), end))
            .collect();
        assert_eq!(
            ends,
            [
                ("vm1".to_string(), 22, at + chrono::Duration::hours(1)),
                ("vm1".to_string(), 3389, at + chrono::Duration::minutes(30)),
                ("vm2".to_string(), 5985, at + chrono::Duration::hours(2)),
            ]
        );
    }

    #[test]
    fn a_pending_request_cannot_be_activated() {
        assert_eq!(
            pending_needing(1).apply(Event::Activated { at: now() }),
            wrong_state("pending", "activated")
        );
    }

    #[test]
    fn a_failed_activation_keeps_arms_reason() {
        let r = approved()
            .apply(Event::ActivationFailed {
                reason: "AuthorizationFailed: no write on the NSG".into(),
            })
            .unwrap();
        assert_eq!(r.status, RequestStatus::Failed);
        assert!(ports(&r).iter().all(|p| p.status == PortStatus::Failed
            && p.status_reason
                == StatusReason::Arm("AuthorizationFailed: no write on the NSG".into())));
    }

    #[test]
    fn an_active_request_expires() {
        let r = active().apply(Event::Expired).unwrap();
        assert_eq!(r.status, RequestStatus::Expired);
        assert!(ports(&r)
            .iter()
            .all(|p| p.status == PortStatus::Revoked && p.status_reason == StatusReason::Expired));
        assert!(!r.end_times().is_empty(), "end times stay on record");
    }

    #[test]
    fn an_active_request_can_be_revoked() {
        let r = active()
            .apply(Event::Revoke {
                by: bob(),
                reason: Some("done".into()),
            })
            .unwrap();
        assert_eq!(r.status, RequestStatus::Revoked);
        assert!(ports(&r)
            .iter()
            .all(|p| p.status == PortStatus::Revoked && p.status_reason == StatusReason::Revoked));
    }

    #[test]
    fn a_newer_request_supersedes_an_active_one() {
        let r = active().apply(Event::Superseded).unwrap();
        assert_eq!(r.status, RequestStatus::Revoked);
        assert!(ports(&r)
            .iter()
            .all(|p| p.status_reason == StatusReason::NewerRequestInitiated));
    }

    #[test]
    fn only_active_requests_expire_or_are_revoked() {
        assert_eq!(
            approved().apply(Event::Expired),
            wrong_state("approved", "expired")
        );
        assert_eq!(
            pending_needing(1).apply(Event::Revoke {
                by: bob(),
                reason: None
            }),
            wrong_state("pending", "revoked")
        );
        assert_eq!(
            approved().apply(Event::Superseded),
            wrong_state("approved", "superseded")
        );
        assert_eq!(
            active().apply(Event::Cancel { at: now() }),
            wrong_state("active", "cancelled")
        );
    }

    #[test]
    fn final_states_accept_no_event() {
        let finals = [
            active().apply(Event::Expired).unwrap(),
            active()
                .apply(Event::Revoke {
                    by: bob(),
                    reason: None,
                })
                .unwrap(),
            pending_needing(1)
                .apply(Event::Deny {
                    by: bob(),
                    reason: None,
                    at: now(),
                })
                .unwrap(),
            pending_needing(1)
                .apply(Event::Cancel { at: now() })
                .unwrap(),
            approved()
                .apply(Event::ActivationFailed { reason: "x".into() })
                .unwrap(),
        ];
        let events = [
            approve(bob()),
            Event::Deny {
                by: bob(),
                reason: None,
                at: now(),
            },
            Event::Cancel { at: now() },
            Event::Activated { at: now() },
            Event::ActivationFailed { reason: "x".into() },
            Event::Expired,
            Event::Revoke {
                by: bob(),
                reason: None,
            },
            Event::Superseded,
        ];
        for r in &finals {
            assert!(r.status.is_final());
            for event in &events {
                assert!(
                    matches!(r.apply(event.clone()), Err(TransitionError::WrongState { status, .. }) if status == r.status.as_str()),
                    "{:?} accepted {event:?}",
                    r.status
                );
            }
        }
    }

    #[test]
    fn apply_leaves_the_original_untouched() {
        let r = pending_needing(1);
        let before = r.clone();
        let _ = r.apply(approve(bob())).unwrap();
        assert_eq!(r, before);
    }
}
