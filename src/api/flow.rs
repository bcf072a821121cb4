//! The access-request flow, shared by every front door: the REST handlers of
//! [`super::requests`] and the chatops endpoints of [`super::chatops`]. Each function takes
//! the caller as already authenticated (a token's, or a mapped chat user's) and applies the
//! same authorisation and state machine, so that no front door can grant what another would
//! not.

use super::error::{ApiError, ApiResult};
use super::requests::AccessRequestResource;
use super::AppState;
use crate::audit::NewAuditEvent;
use crate::auth::Caller;
use crate::domain::request::{
    AccessRequest, Event, RequestContext, RequestDraft, RequestStatus, TransitionError,
};
use crate::domain::{Principal, Scope, VmId};
use crate::rbac::{self, Action};
use crate::store::{
    Idempotency, NewJob, NewRequest, RequestCreated, RequestUpdate, StoredRequest,
    JOB_ACTIVATE_REQUEST,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;

pub(crate) fn request_event(
    event_type: &'static str,
    actor: &Principal,
    request: &AccessRequest,
) -> NewAuditEvent {
    NewAuditEvent {
        event_type,
        actor: actor.clone(),
        resource_id: request
            .virtual_machines
            .first()
            .map(|v| v.vm.as_str().to_string())
            .unwrap_or_default(),
        request_id: Some(request.id.clone()),
        data: serde_json::to_value(AccessRequestResource::from(request.clone()))
            .unwrap_or_default(),
    }
}

fn activation_job(request: &AccessRequest, now: DateTime<Utc>) -> Option<NewJob> {
    (request.status == RequestStatus::Approved).then(|| NewJob {
        kind: JOB_ACTIVATE_REQUEST,
        subject: request.id.clone(),
        payload: serde_json::json!({ "requestId": request.id }),
        run_after: now,
    })
}

/// The ARM work a change calls for: opening what was just approved, closing what was just
/// revoked.
fn follow_up(before: &AccessRequest, after: &AccessRequest, now: DateTime<Utc>) -> Option<NewJob> {
    match (before.status, after.status) {
        (RequestStatus::Pending, RequestStatus::Approved) => activation_job(after, now),
        (RequestStatus::Active, RequestStatus::Revoked) => {
            Some(crate::dispatch::grants::close_job(&after.id, now))
        }
        _ => None,
    }
}

fn scopes_of(request: &AccessRequest) -> Vec<Scope> {
    request
        .virtual_machines
        .iter()
        .map(|v| Scope::Vm(v.vm.clone()))
        .collect()
}

/// Whether `caller` made the request or submitted it for someone.
pub(crate) fn involved(caller: &Caller, request: &AccessRequest) -> bool {
    caller.principal.id == request.requestor.id || caller.principal.id == request.submitted_by.id
}

/// `action` must hold at every VM of the request.
pub(crate) fn authorize_all(
    caller: &Caller,
    action: Action,
    request: &AccessRequest,
) -> ApiResult<()> {
    for scope in scopes_of(request) {
        rbac::authorize(caller, action, &scope)?;
    }
    Ok(())
}

pub(crate) async fn load(state: &AppState, id: &str) -> ApiResult<StoredRequest> {
    state
        .store
        .get_request(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no access request {id:?}")))
}

fn transition_error(e: TransitionError) -> ApiError {
    match e {
        TransitionError::WrongState { .. } => ApiError::Conflict(e.to_string()),
        TransitionError::NotAllowed(why) => ApiError::Forbidden(why),
    }
}

/// Applies the event `decide` chooses to the request, as the caller, writing it with its
/// audit event and job; re-reads and tries again when someone else wrote it meanwhile.
async fn change(
    state: &AppState,
    id: &str,
    caller: &Caller,
    event_type: &'static str,
    decide: impl Fn(&AccessRequest) -> ApiResult<Event>,
) -> ApiResult<AccessRequest> {
    for _ in 0..5 {
        let stored = load(state, id).await?;
        let event = decide(&stored.request)?;
        let next = stored.request.apply(event).map_err(transition_error)?;
        let now = Utc::now();
        let job = follow_up(&stored.request, &next, now);
        let written = state
            .store
            .update_request(RequestUpdate {
                event: request_event(event_type, &caller.principal, &next),
                request: next.clone(),
                expected_version: stored.version,
                job: job.clone(),
                now,
            })
            .await?;
        if written {
            if job.is_some() {
                state.wake_dispatch();
            }
            return Ok(next);
        }
    }
    Err(ApiError::Conflict(format!(
        "access request {id:?} is being changed by others right now; try again"
    )))
}

/// A new request as a front door received it.
pub(crate) struct Submission<'a> {
    /// Who sent it (the token's caller; for chat, the mapped user).
    pub submitted_by: &'a Caller,
    /// Whose access it is: `submitted_by` itself, or the user a bot acts for.
    pub requestor: &'a Caller,
    /// A bot acting for `requestor` (it must hold `Jit.Bot`).
    pub on_behalf: bool,
    pub draft: RequestDraft,
    /// The source for ports that name none; `None` when it must be given.
    pub caller_address: Option<IpAddr>,
    /// The client's idempotency key, checked after the draft (an invalid key is reported
    /// only for an otherwise valid request).
    pub idempotency: ApiResult<Option<Idempotency>>,
}

/// Authorises, validates against the VMs' policies, and records a new request (with its
/// activation job when it needs no approval).
pub(crate) async fn submit(state: &AppState, s: Submission<'_>) -> ApiResult<RequestCreated> {
    let vms: Vec<VmId> = s
        .draft
        .virtual_machines
        .iter()
        .filter_map(|v| VmId::parse(&v.id).ok())
        .collect();
    for vm in &vms {
        if s.on_behalf {
            rbac::authorize_vm(s.submitted_by, Action::SubmitOnBehalfOf, vm)?;
        }
        rbac::authorize_vm(s.requestor, Action::SubmitRequest, vm)?;
    }
    let mut policies = HashMap::new();
    for vm in &vms {
        if let Some(p) = state.store.get_policy(vm).await? {
            policies.insert(vm.key().to_string(), p.policy);
        }
    }
    let now = Utc::now();
    let ctx = RequestContext {
        policies: &policies,
        caller_address: s.caller_address,
        limits: &state.config.durations,
        now,
    };
    let id = uuid::Uuid::now_v7().to_string();
    let request = AccessRequest::new(
        id,
        s.draft,
        s.requestor.principal.clone(),
        s.submitted_by.principal.clone(),
        &ctx,
    )?;
    let idempotency = s.idempotency?;
    let created = state
        .store
        .create_request(NewRequest {
            event: request_event("request.created", &s.submitted_by.principal, &request),
            job: activation_job(&request, now),
            request,
            idempotency,
            now,
        })
        .await?;
    let stored = match &created {
        RequestCreated::Created(r) | RequestCreated::Replayed(r) => r,
    };
    if stored.request.status == RequestStatus::Approved {
        state.wake_dispatch();
    }
    Ok(created)
}

/// Approves a pending request: `Jit.Approver` (or Admin) at every VM of it, never the
/// requestor.
pub(crate) async fn approve(
    state: &AppState,
    id: &str,
    caller: &Caller,
    comment: Option<String>,
) -> ApiResult<AccessRequest> {
    change(state, id, caller, "request.approved", |request| {
        authorize_all(caller, Action::DecideRequest, request)?;
        Ok(Event::Approve {
            by: caller.principal.clone(),
            comment: comment.clone(),
            at: Utc::now(),
        })
    })
    .await
}

/// Denies a pending request (`Jit.Approver` at every VM of it).
pub(crate) async fn deny(
    state: &AppState,
    id: &str,
    caller: &Caller,
    reason: Option<String>,
) -> ApiResult<AccessRequest> {
    change(state, id, caller, "request.denied", |request| {
        authorize_all(caller, Action::DecideRequest, request)?;
        Ok(Event::Deny {
            by: caller.principal.clone(),
            reason: reason.clone(),
            at: Utc::now(),
        })
    })
    .await
}

/// Cancels a pending request: its requestor, or the bot that submitted it.
pub(crate) async fn cancel(
    state: &AppState,
    id: &str,
    caller: &Caller,
) -> ApiResult<AccessRequest> {
    change(state, id, caller, "request.cancelled", |request| {
        if !involved(caller, request) {
            return Err(ApiError::Forbidden(format!(
                "{} may not cancel this request: only its requestor, or the bot that submitted it, may",
                caller.principal.name
            )));
        }
        Ok(Event::Cancel { at: Utc::now() })
    })
    .await
}

/// Ends active access early: its requestor, or an approver or admin at every VM of it.
pub(crate) async fn revoke(
    state: &AppState,
    id: &str,
    caller: &Caller,
    reason: Option<String>,
) -> ApiResult<AccessRequest> {
    change(state, id, caller, "request.revoked", |request| {
        if caller.principal.id != request.requestor.id {
            authorize_all(caller, Action::RevokeAnyGrant, request)?;
        }
        Ok(Event::Revoke {
            by: caller.principal.clone(),
            reason: reason.clone(),
        })
    })
    .await
}
