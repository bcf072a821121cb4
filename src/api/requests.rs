//! `/v1/access-requests`: asking for access, deciding on it, and following it.
//!
//! A bot (an app-only token with `Jit.Bot`) may submit and cancel for a user named by
//! `onBehalfOf`; whether the user may have the access is then decided by the user's stored
//! role assignments, and the request records both the user (requestor) and the bot
//! (submittedBy). The flow itself (authorisation, validation, state changes) lives in
//! [`super::flow`], shared with the chatops endpoints.

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{client_address, encode_cursor, page_request, JsonBody, QueryParams};
use super::{flow, AppState};
use crate::auth::Caller;
use crate::domain::request::{
    AccessRequest, Decision, PortStatus, RequestDraft, RequestStatus, StatusReason,
};
use crate::domain::{FieldErrors, Principal, VmId};
use crate::rbac::{self, Action, Visibility};
use crate::store::{Idempotency, RequestCreated, RequestFilter};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit, list))
        .routes(routes!(get_request))
        .routes(routes!(approve))
        .routes(routes!(deny))
        .routes(routes!(cancel))
        .routes(routes!(revoke))
}

// ---- the wire shape ----

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestResource {
    pub id: String,
    pub status: RequestStatus,
    pub requestor: Principal,
    pub submitted_by: Principal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    pub created_at: DateTime<Utc>,
    pub start_time_utc: Option<DateTime<Utc>>,
    pub required_approvals: u8,
    pub approvals: Vec<Decision>,
    pub virtual_machines: Vec<RequestedVmResource>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestedVmResource {
    pub id: String,
    pub ports: Vec<RequestedPortResource>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestedPortResource {
    pub number: u16,
    pub protocol: String,
    pub allowed_source_address_prefix: String,
    /// ISO 8601.
    pub duration: String,
    /// Counted from activation; null until then.
    pub end_time_utc: Option<DateTime<Utc>>,
    pub status: PortStatus,
    #[schema(value_type = String)]
    pub status_reason: StatusReason,
    /// For a VM behind an Azure Firewall, once open: connect to `mappedAddress`:`mappedPort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped_address: Option<String>,
}

impl From<AccessRequest> for AccessRequestResource {
    fn from(r: AccessRequest) -> Self {
        AccessRequestResource {
            id: r.id,
            status: r.status,
            requestor: r.requestor,
            submitted_by: r.submitted_by,
            justification: r.justification,
            created_at: r.created_at,
            start_time_utc: r.start_time_utc,
            required_approvals: r.required_approvals,
            approvals: r.approvals,
            virtual_machines: r
                .virtual_machines
                .into_iter()
                .map(|vm| RequestedVmResource {
                    id: vm.vm.as_str().to_string(),
                    ports: vm
                        .ports
                        .into_iter()
                        .map(|p| RequestedPortResource {
                            number: p.number.get(),
                            protocol: p.protocol.to_string(),
                            allowed_source_address_prefix: p.source.to_string(),
                            duration: p.duration.to_string(),
                            end_time_utc: p.end_time_utc,
                            status: p.status,
                            status_reason: p.status_reason,
                            mapped_port: p.mapped.as_ref().map(|m| m.port),
                            mapped_address: p.mapped.map(|m| m.address),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestList {
    pub items: Vec<AccessRequestResource>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListRequestsQuery {
    pub status: Option<String>,
    /// A VM's ARM id.
    pub vm_id: Option<String>,
    /// The requestor's object id.
    pub requestor: Option<String>,
    /// Only the caller's own requests (made, or submitted for someone).
    pub mine: Option<bool>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveBody {
    pub comment: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct RequestIdParam {
    /// The request's id.
    id: String,
}

// ---- handlers ----

/// Ask for access to ports of one or more VMs.
///
/// Each port must be in the VM's policy, the duration within its maximum (default: the
/// maximum), and the source inside the allowed prefixes (default: the caller's address). With
/// `Idempotency-Key`, a retry of the same body returns the request made first (200); the same
/// key with another body is a 422.
#[utoipa::path(
    post,
    path = "/v1/access-requests",
    tag = "access requests",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the request made first")),
    request_body = RequestDraft,
    responses(
        (status = 201, description = "Created", body = AccessRequestResource),
        (status = 200, description = "A retry with the same Idempotency-Key and body", body = AccessRequestResource),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No Jit.Requester at a VM's scope (or, with onBehalfOf, no Jit.Bot, or the user has none)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The outbox holds more due work than JITGATE_OUTBOX_MAX_BACKLOG; retry after Retry-After seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let body_hash = hex::encode(Sha256::digest(body.bytes()));
    let draft: RequestDraft = body.parse()?;
    let (requestor, caller_address) = match draft.on_behalf_of.as_deref().map(str::trim) {
        None => (
            caller.clone(),
            Some(client_address(
                peer.ip(),
                &headers,
                &state.config.trusted_proxies,
            )),
        ),
        Some("") => {
            return Err(FieldErrors::single("onBehalfOf", "must be a user's object id").into())
        }
        Some(oid) => {
            let oid = crate::rbac::assignment::normalize_principal_id(oid);
            let assignments = state
                .store
                .role_assignments_for(std::slice::from_ref(&oid))
                .await?;
            (rbac::absent_user(&oid, assignments), None)
        }
    };
    let idempotency = match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .map(|key| {
                Some(Idempotency {
                    key: key.to_string(),
                    body_hash,
                })
            })
            .ok_or_else(|| {
                ApiError::BadRequest("Idempotency-Key must be 1 to 200 visible characters".into())
            }),
    };
    refuse_when_backlogged(&state).await?;
    let on_behalf = draft.on_behalf_of.is_some();
    let created = flow::submit(
        &state,
        flow::Submission {
            submitted_by: &caller,
            requestor: &requestor,
            on_behalf,
            draft,
            caller_address,
            idempotency,
        },
    )
    .await?;
    let (status, stored) = match created {
        RequestCreated::Created(r) => (StatusCode::CREATED, r),
        RequestCreated::Replayed(r) => (StatusCode::OK, r),
    };
    let location =
        HeaderValue::from_str(&format!("/v1/access-requests/{}", stored.request.id)).ok();
    let mut response = (status, Json(AccessRequestResource::from(stored.request))).into_response();
    if let Some(l) = location {
        response.headers_mut().insert(header::LOCATION, l);
    }
    Ok(response)
}

/// How long a caller refused for backpressure is asked to wait.
const BACKLOG_RETRY_AFTER_SECS: u64 = 30;

/// Refuses new work while the outbox holds more due jobs than `JITGATE_OUTBOX_MAX_BACKLOG`:
/// better a 503 now than a request that waits behind thousands of jobs for its rule.
async fn refuse_when_backlogged(state: &AppState) -> ApiResult<()> {
    let Some(max) = state.config.outbox_max_backlog else {
        return Ok(());
    };
    let due = state
        .store
        .count_due_jobs(chrono::Utc::now(), max.saturating_add(1))
        .await?;
    if due > max {
        return Err(ApiError::Overloaded {
            retry_after: BACKLOG_RETRY_AFTER_SECS,
            detail: format!(
                "more than {max} jobs are waiting to be carried out; new requests are refused until they drain"
            ),
        });
    }
    Ok(())
}

/// Read one request: its requestor, its bot, and approvers and readers in scope may.
#[utoipa::path(
    get,
    path = "/v1/access-requests/{id}",
    tag = "access requests",
    params(RequestIdParam),
    responses(
        (status = 200, description = "The request", body = AccessRequestResource),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither involved nor a reader in scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccessRequestResource>> {
    let stored = flow::load(&state, &id).await?;
    if !flow::involved(&caller, &stored.request) {
        flow::authorize_all(&caller, Action::ReadAnyRequest, &stored.request)?;
    }
    Ok(Json(stored.request.into()))
}

/// List requests, newest first: your own, and those on VMs where you may read others'.
#[utoipa::path(
    get,
    path = "/v1/access-requests",
    tag = "access requests",
    params(ListRequestsQuery),
    responses(
        (status = 200, description = "A page of requests", body = AccessRequestList),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListRequestsQuery>,
) -> ApiResult<Json<AccessRequestList>> {
    let mut errors = FieldErrors::new();
    let status = q
        .status
        .as_deref()
        .and_then(|s| errors.take("status", RequestStatus::parse(s)));
    let vm_key = q
        .vm_id
        .as_deref()
        .and_then(|v| errors.take("vmId", VmId::parse(v)))
        .map(|v| v.key().to_string());
    errors.finish(|| ())?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = RequestFilter {
        status,
        vm_key,
        requestor: q.requestor,
        involving: q.mine.unwrap_or(false).then(|| caller.principal.id.clone()),
        visible_to: match rbac::visible_scopes(&caller, Action::ReadAnyRequest) {
            Visibility::Everywhere => None,
            Visibility::Within(scopes) => Some((caller.principal.id.clone(), scopes)),
        },
    };
    let page = state.store.list_requests(&filter, &page).await?;
    Ok(Json(AccessRequestList {
        items: page.items.into_iter().map(|s| s.request.into()).collect(),
        next_cursor: encode_cursor(page.next_after),
    }))
}

/// Approve a pending request (Jit.Approver at every VM of it; never your own).
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/approve",
    tag = "access requests",
    params(RequestIdParam),
    request_body = ApproveBody,
    responses(
        (status = 200, description = "The request after the approval", body = AccessRequestResource),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an approver in scope, or your own request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<JsonBody>,
) -> ApiResult<Json<AccessRequestResource>> {
    let body: ApproveBody = body.map(|b| b.parse()).transpose()?.unwrap_or_default();
    let next = flow::approve(&state, &id, &caller, body.comment).await?;
    Ok(Json(next.into()))
}

/// Deny a pending request (Jit.Approver at every VM of it).
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/deny",
    tag = "access requests",
    params(RequestIdParam),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The denied request", body = AccessRequestResource),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an approver in scope, or your own request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<JsonBody>,
) -> ApiResult<Json<AccessRequestResource>> {
    let body: ReasonBody = body.map(|b| b.parse()).transpose()?.unwrap_or_default();
    let next = flow::deny(&state, &id, &caller, body.reason).await?;
    Ok(Json(next.into()))
}

/// Cancel a pending request: its requestor, or the bot that submitted it.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/cancel",
    tag = "access requests",
    params(RequestIdParam),
    responses(
        (status = 200, description = "The cancelled request", body = AccessRequestResource),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the requestor nor its bot", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccessRequestResource>> {
    let next = flow::cancel(&state, &id, &caller).await?;
    Ok(Json(next.into()))
}

/// End active access early: its requestor, or an approver or admin at every VM of it. The
/// allow rules are removed at once.
#[utoipa::path(
    post,
    path = "/v1/access-requests/{id}/revoke",
    tag = "access requests",
    params(RequestIdParam),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The revoked request", body = AccessRequestResource),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the requestor, nor an approver in scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not active", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<JsonBody>,
) -> ApiResult<Json<AccessRequestResource>> {
    let body: ReasonBody = body.map(|b| b.parse()).transpose()?.unwrap_or_default();
    let next = flow::revoke(&state, &id, &caller, body.reason).await?;
    Ok(Json(next.into()))
}
