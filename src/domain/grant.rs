//! Grants: the auditor's view of access. One grant per port a request opened (or failed to
//! open), derived from the request document by pure functions here; the store keeps them in
//! a table of their own, beside the request, so that years of history stay searchable.

use super::request::{AccessRequest, PortStatus, RequestStatus, StatusReason};
use super::Principal;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum GrantStatus {
    /// The allow rule is in place (or being taken out right now).
    Active,
    /// Closed at its end time.
    Expired,
    /// Closed early: revoked, or taken over by a newer request.
    Revoked,
    /// ARM could not open it.
    Failed,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<GrantStatus, String> {
        [
            GrantStatus::Active,
            GrantStatus::Expired,
            GrantStatus::Revoked,
            GrantStatus::Failed,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
        .ok_or_else(|| format!("unknown status {s:?}: expected active, expired, revoked or failed"))
    }
}

/// One port opened for one source on one VM, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub id: String,
    pub request_id: String,
    /// The VM's ARM id, as the request named it.
    pub vm_id: String,
    pub port: u16,
    pub protocol: String,
    pub source_address_prefix: String,
    pub requestor: Principal,
    pub submitted_by: Principal,
    /// Who approved the request (empty when the policy approves automatically).
    pub approvers: Vec<Principal>,
    pub justification: Option<String>,
    /// When access opened (for a failed grant: when opening it failed).
    pub granted_at: DateTime<Utc>,
    /// When access was to end.
    pub end_time_utc: Option<DateTime<Utc>>,
    /// When access ended: the allow rule was taken out (expiry) or the request was revoked.
    pub closed_at: Option<DateTime<Utc>>,
    pub status: GrantStatus,
    /// Azure's words (`Expired`, `Revoked`, `NewerRequestInitiated`) or ARM's error.
    pub status_reason: String,
}

impl Grant {
    /// The VM's key (lower-cased id), subscription and resource group, for lookups.
    pub fn vm_place(&self) -> (String, String, String) {
        match super::VmId::parse(&self.vm_id) {
            Ok(vm) => (
                vm.key().to_string(),
                vm.subscription().to_ascii_lowercase(),
                vm.resource_group().to_ascii_lowercase(),
            ),
            Err(_) => (
                self.vm_id.to_ascii_lowercase(),
                String::new(),
                String::new(),
            ),
        }
    }

    /// How long access stayed (or is to stay) open, in whole seconds.
    pub fn span_seconds(&self) -> i64 {
        let end = match (self.closed_at, self.end_time_utc) {
            (Some(closed), _) => closed,
            (None, Some(end)) => end,
            (None, None) => self.granted_at,
        };
        (end - self.granted_at).num_seconds().max(0)
    }
}

/// Stable grant ids: the same port of the same request always maps to the same id, so a
/// later write of the request updates its grants instead of adding new ones.
fn grant_id(request_id: &str, vm_index: usize, port_index: usize) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1f_57c1_9e2b_4d0e_8f3a_0c7d_51e2_9b44);
    uuid::Uuid::new_v5(
        &NAMESPACE,
        format!("{request_id}/{vm_index}/{port_index}").as_bytes(),
    )
    .to_string()
}

/// The grants a request stands for at `now`: none until it is activated (or fails to be),
/// then one per port. `now` stamps what closes in this write; the store keeps the first
/// `closedAt` it saw, so rewriting a closed grant never moves it.
pub fn grants_of(request: &AccessRequest, now: DateTime<Utc>) -> Vec<Grant> {
    let failed_before_opening =
        request.status == RequestStatus::Failed && request.start_time_utc.is_none();
    let Some(granted_at) = request
        .start_time_utc
        .or(failed_before_opening.then_some(now))
    else {
        return vec![];
    };
    let approvers: Vec<Principal> = request
        .approvals
        .iter()
        .filter(|d| d.decision == super::request::Verdict::Approve)
        .map(|d| d.approver.clone())
        .collect();
    let mut out = Vec::new();
    for (vi, vm) in request.virtual_machines.iter().enumerate() {
        for (pi, port) in vm.ports.iter().enumerate() {
            let status = match (port.status, &port.status_reason) {
                (PortStatus::Initiated, _) | (PortStatus::Pending, _) => GrantStatus::Active,
                (PortStatus::Failed, _) => GrantStatus::Failed,
                (PortStatus::Revoked, StatusReason::Expired) => GrantStatus::Expired,
                (PortStatus::Revoked, _) => GrantStatus::Revoked,
            };
            out.push(Grant {
                id: grant_id(&request.id, vi, pi),
                request_id: request.id.clone(),
                vm_id: vm.vm.as_str().to_string(),
                port: port.number.get(),
                protocol: port.protocol.to_string(),
                source_address_prefix: port.source.to_string(),
                requestor: request.requestor.clone(),
                submitted_by: request.submitted_by.clone(),
                approvers: approvers.clone(),
                justification: request.justification.clone(),
                granted_at,
                end_time_utc: port.end_time_utc,
                closed_at: (status != GrantStatus::Active).then_some(now),
                status,
                status_reason: reason_text(&port.status_reason),
            });
        }
    }
    out
}

fn reason_text(reason: &StatusReason) -> String {
    match reason {
        StatusReason::Arm(text) => text.clone(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
    }
}

/// What a write did to a grant, as an audit event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantChange {
    Opened,
    Closed,
    Failed,
}

impl GrantChange {
    pub fn event_type(self) -> &'static str {
        match self {
            GrantChange::Opened => "grant.opened",
            GrantChange::Closed => "grant.closed",
            GrantChange::Failed => "grant.failed",
        }
    }
}

/// The audit-worthy changes from the grants as stored (`before`: id and status) to `after`.
/// A grant seen for the first time already closed was opened and closed in one write.
pub fn grant_changes<'a>(
    before: &[(String, GrantStatus)],
    after: &'a [Grant],
) -> Vec<(GrantChange, &'a Grant)> {
    let mut out = Vec::new();
    for grant in after {
        let was = before
            .iter()
            .find(|(id, _)| *id == grant.id)
            .map(|(_, s)| *s);
        match (was, grant.status) {
            (_, GrantStatus::Failed) if was != Some(GrantStatus::Failed) => {
                out.push((GrantChange::Failed, grant));
            }
            (None, GrantStatus::Active) => out.push((GrantChange::Opened, grant)),
            (None, _) if grant.status != GrantStatus::Failed => {
                out.push((GrantChange::Opened, grant));
                out.push((GrantChange::Closed, grant));
            }
            (Some(GrantStatus::Active), GrantStatus::Expired | GrantStatus::Revoked) => {
                out.push((GrantChange::Closed, grant));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::request::{Decision, Event, RequestedPort, RequestedVm, Verdict};
    use crate::domain::{AccessDuration, Port, Protocol, SourcePrefix, VmId};
    use chrono::TimeZone;

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn person(n: &str) -> Principal {
        Principal {
            id: format!("oid-{n}"),
            name: format!("{n}@example.com"),
        }
    }

    fn approved_request() -> AccessRequest {
        let port = |n: u16| RequestedPort {
            number: Port::try_from(i64::from(n)).unwrap(),
            protocol: Protocol::Tcp,
            source: "203.0.113.7".parse::<SourcePrefix>().unwrap(),
            duration: AccessDuration::from_secs(3600),
            status: PortStatus::Pending,
            status_reason: StatusReason::UserRequested,
            end_time_utc: None,
            mapped: None,
        };
        AccessRequest {
            id: "req-1".into(),
            status: RequestStatus::Approved,
            requestor: person("alice"),
            submitted_by: person("alice"),
            justification: Some("INC-1, patch".into()),
            created_at: at(0),
            start_time_utc: None,
            required_approvals: 1,
            approvals: vec![Decision {
                approver: person("bob"),
                decision: Verdict::Approve,
                comment: None,
                at: at(1),
            }],
            virtual_machines: vec![RequestedVm {
                vm: VmId::parse("/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm1").unwrap(),
                ports: vec![port(22), port(3389)],
            }],
        }
    }

    #[test]
    fn a_request_has_no_grants_until_it_opens_then_one_per_port() {
        let approved = approved_request();
        assert!(grants_of(&approved, at(2)).is_empty());
        let active = approved.apply(Event::Activated { at: at(2) }).unwrap();
        let grants = grants_of(&active, at(2));
        assert_eq!(grants.len(), 2);
        assert!(grants.iter().all(|g| g.status == GrantStatus::Active
            && g.granted_at == at(2)
            && g.closed_at.is_none()
            && g.end_time_utc == Some(at(62))
            && g.approvers == vec![person("bob")]));
        assert_eq!(grants[1].port, 3389);
        assert_ne!(grants[0].id, grants[1].id);
        assert_eq!(
            grants_of(&active, at(9))[0].id,
            grants[0].id,
            "ids are stable"
        );
    }

    #[test]
    fn expiry_revocation_and_failure_close_grants_with_their_reason() {
        let active = approved_request()
            .apply(Event::Activated { at: at(2) })
            .unwrap();
        let expired = active.expire_ports_until(at(62));
        let grants = grants_of(&expired, at(62));
        assert!(grants.iter().all(|g| g.status == GrantStatus::Expired
            && g.status_reason == "Expired"
            && g.closed_at == Some(at(62))));

        let revoked = active
            .apply(Event::Revoke {
                by: person("carol"),
                reason: None,
            })
            .unwrap();
        assert!(grants_of(&revoked, at(5))
            .iter()
            .all(|g| g.status == GrantStatus::Revoked && g.status_reason == "Revoked"));

        let failed = approved_request()
            .apply(Event::ActivationFailed {
                reason: "Conflict: the NSG changed".into(),
            })
            .unwrap();
        let grants = grants_of(&failed, at(3));
        assert!(grants.iter().all(|g| g.status == GrantStatus::Failed
            && g.status_reason == "Conflict: the NSG changed"
            && g.granted_at == at(3)));
    }

    #[test]
    fn changes_name_each_opening_and_closing_once() {
        let active = approved_request()
            .apply(Event::Activated { at: at(2) })
            .unwrap();
        let opened = grants_of(&active, at(2));
        let changes = grant_changes(&[], &opened);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|(c, _)| *c == GrantChange::Opened));

        let stored: Vec<(String, GrantStatus)> =
            opened.iter().map(|g| (g.id.clone(), g.status)).collect();
        assert!(grant_changes(&stored, &opened).is_empty(), "nothing new");
        let closed = grants_of(&active.expire_ports_until(at(62)), at(62));
        let changes = grant_changes(&stored, &closed);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|(c, _)| *c == GrantChange::Closed));
    }
}
