//! Access requests: what someone asks for, checked against the VMs' policies, and the state
//! machine a request lives by. Pure: no I/O, no clock (times are passed in).
//!
//! pending -> approved -> active -> expired | revoked; pending -> denied | cancelled;
//! approved -> failed. Approval is automatic when every VM's policy says `auto`; otherwise the
//! largest `requiredApprovals` among the VMs' policies, from distinct approvers, never the
//! requestor nor the bot that submitted for them; one deny ends it.

use super::{AccessDuration, DurationLimits, FieldErrors, Policy, Port, Principal, Protocol, SourcePrefix, VmId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
            RequestStatus::Expired | RequestStatus::Revoked | RequestStatus::Denied | RequestStatus::Cancelled | RequestStatus::Failed
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
    Approve { by: Principal, comment: Option<String>, at: DateTime<Utc> },
    Deny { by: Principal, reason: Option<String>, at: DateTime<Utc> },
    Cancel { at: DateTime<Utc> },
    /// ARM opened every port at `at`.
    Activated { at: DateTime<Utc> },
    /// ARM could not open it: the reason (ARM's code and message).
    ActivationFailed { reason: String },
    /// Every port's `endTimeUtc` has passed and its rules are gone.
    Expired,
    Revoke { by: Principal, reason: Option<String> },
    /// A newer active request for the same VM, port and source took over.
    Superseded,
}

/// Why an event does not apply; the API answers 409 (or 403 for self-approval).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the request is {status}, so it cannot be {action}")]
    WrongState { status: &'static str, action: &'static str },
    #[error("{0}")]
    NotAllowed(String),
}
