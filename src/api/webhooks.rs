//! `/v1/webhooks`: subscriptions to lifecycle events, and each one's delivery log.
//!
//! Events cover every scope, so subscriptions are managed by a tenant-wide `Jit.Admin` (and
//! read by Admins and Auditors). The secret that signs deliveries is shown once, when it is
//! made; it is never read back.

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{encode_cursor, page_request, JsonBody, QueryParams};
use super::AppState;
use crate::auth::Caller;
use crate::domain::{FieldErrors, Scope};
use crate::notify::{self, Delivery, Webhook};
use crate::rbac::{self, Action};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, put_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

/// A subscription as written by its Admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDraft {
    /// The receiver: an absolute http(s) URL.
    pub url: String,
    /// CloudEvents types (`jitgate.request.pending`) or prefixes (`jitgate.request.*`);
    /// absent or empty: every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// The signing secret (at least 16 characters); absent: jitgate makes one (on creation),
    /// or keeps the current one (on replacement).
    pub secret: Option<String>,
}

/// A new subscription, with the secret its receiver checks signatures with (shown this once).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub items: Vec<Webhook>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct WebhookIdParam {
    /// The subscription's id.
    id: String,
}

fn authorize(caller: &Caller, action: Action) -> ApiResult<()> {
    rbac::authorize(caller, action, &Scope::Tenant).map_err(ApiError::from)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook subscription {id:?}"))
}

/// The checked settings of a draft, and its secret if it names one.
fn check(draft: WebhookDraft) -> ApiResult<(Webhook, Option<String>)> {
    let mut errors = FieldErrors::new();
    let url = errors.take("url", notify::check_url(&draft.url));
    errors.take("eventTypes", notify::check_event_types(&draft.event_types));
    if draft.description.as_ref().is_some_and(|d| d.len() > 500) {
        errors.push("description", "at most 500 characters");
    }
    if let Some(secret) = &draft.secret {
        if !(16..=256).contains(&secret.len()) {
            errors.push("secret", "from 16 to 256 characters");
        }
    }
    let now = Utc::now().trunc_subsecs(6);
    errors
        .finish(|| {
            (
                Webhook {
                    id: String::new(),
                    url: url.map(|u| u.to_string()).unwrap_or_default(),
                    event_types: draft.event_types,
                    description: draft.description,
                    enabled: draft.enabled.unwrap_or(true),
                    created_at: now,
                    updated_at: now,
                },
                draft.secret,
            )
        })
        .map_err(ApiError::from)
}

/// Subscribe a receiver to lifecycle events (tenant-wide Jit.Admin).
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body = WebhookDraft,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedWebhook),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Jit.Admin", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<Response> {
    authorize(&caller, Action::ManageWebhooks)?;
    let (mut webhook, secret) = check(body.parse()?)?;
    webhook.id = uuid::Uuid::now_v7().to_string();
    let secret = secret.unwrap_or_else(notify::new_secret);
    state
        .store
        .create_webhook(&webhook, &secret, &caller.principal)
        .await?;
    let location = HeaderValue::from_str(&format!("/v1/webhooks/{}", webhook.id))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedWebhook { webhook, secret }),
    )
        .into_response())
}

/// Every subscription (tenant-wide Jit.Admin or Jit.Auditor).
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The subscriptions", body = WebhookList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Jit.Admin or Jit.Auditor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WebhookList>> {
    authorize(&caller, Action::ReadWebhooks)?;
    Ok(Json(WebhookList {
        items: state.store.list_webhooks().await?,
    }))
}

/// One subscription.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(WebhookIdParam),
    responses(
        (status = 200, description = "The subscription", body = Webhook),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Jit.Admin or Jit.Auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    authorize(&caller, Action::ReadWebhooks)?;
    let (webhook, _) = state
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(webhook))
}

/// Replace a subscription's settings (and its secret, when the body names one).
#[utoipa::path(
    put,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(WebhookIdParam),
    request_body = WebhookDraft,
    responses(
        (status = 200, description = "Replaced", body = Webhook),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Jit.Admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn put_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Webhook>> {
    authorize(&caller, Action::ManageWebhooks)?;
    let (mut webhook, secret) = check(body.parse()?)?;
    let (current, _) = state
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    webhook.id = id.clone();
    webhook.created_at = current.created_at;
    if !state
        .store
        .update_webhook(&webhook, secret.as_deref(), &caller.principal)
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(webhook))
}

/// Unsubscribe; the delivery log goes with the subscription, and queued deliveries are dropped.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(WebhookIdParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Jit.Admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&caller, Action::ManageWebhooks)?;
    state
        .store
        .delete_webhook(&id, &caller.principal, Utc::now())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A subscription's deliveries, newest first: each event sent, how many tries it took, and
/// how the receiver answered.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(WebhookIdParam, PageQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryList),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Jit.Admin or Jit.Auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<DeliveryList>> {
    authorize(&caller, Action::ReadWebhooks)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    state
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let page = state.store.list_deliveries(&id, &page).await?;
    Ok(Json(DeliveryList {
        items: page.items,
        next_cursor: encode_cursor(page.next_after),
    }))
}
