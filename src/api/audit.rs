//! `/v1/audit`: the audit log, page by page or exported whole, and a check of its hash chain.
//!
//! The log spans every scope (role assignments, dispatch attempts, policies of all VMs), so
//! reading it takes Auditor or Admin tenant-wide; a scoped auditor reads grant history instead.

use super::error::{ApiError, ApiResult, Problem};
use super::export::{self, CsvRecord, Format};
use super::extract::{encode_cursor, page_request, QueryParams};
use super::AppState;
use crate::audit::checkpoint::AuditVerifier;
use crate::audit::verify::verify_chain;
use crate::audit::{AuditEvent, ChainReport};
use crate::auth::Caller;
use crate::domain::{FieldErrors, Scope};
use crate::rbac::{self, Action};
use crate::store::AuditFilter;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(verify))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventList {
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// Events at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Event types, comma-separated (`request.approved,grant.opened`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// The actor's object id.
    pub actor: Option<String>,
    /// The resource's id (a VM's ARM id compares case-insensitively).
    pub resource_id: Option<String>,
    /// Events about one access request.
    pub request_id: Option<String>,
    /// Page size, 1 to 1000 (default 100); exports ignore it.
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The log covers every scope: only a tenant-wide Auditor or Admin may read it.
fn authorize(caller: &Caller) -> ApiResult<()> {
    rbac::authorize(caller, Action::ReadAudit, &Scope::Tenant).map_err(ApiError::from)
}

fn filter_of(q: &ListEventsQuery) -> ApiResult<AuditFilter> {
    let mut errors = FieldErrors::new();
    let types: Vec<String> = q
        .event_type
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if types.len() > 50 {
        errors.push("type", "at most 50 event types");
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            errors.push("to", "must be after from");
        }
    }
    errors.finish(|| ())?;
    Ok(AuditFilter {
        from: q.from,
        to: q.to,
        types,
        actor: q.actor.clone(),
        resource_id: q.resource_id.clone(),
        request_id: q.request_id.clone(),
    })
}

/// Audit events, oldest first. `Accept: text/csv` or `application/x-ndjson` streams every
/// matching event.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    params(ListEventsQuery),
    responses(
        (status = 200, description = "A page of events (JSON), or every matching event (CSV, NDJSON)", content(
            (AuditEventList = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Auditor or Admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<ListEventsQuery>,
) -> ApiResult<Response> {
    authorize(&caller)?;
    let filter = filter_of(&q)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    match export::negotiate(&headers) {
        Format::Json => {
            let page = state.store.list_audit_events(&filter, &page).await?;
            Ok(Json(AuditEventList {
                items: page.items,
                next_cursor: encode_cursor(page.next_after),
            })
            .into_response())
        }
        format => {
            let store = state.store.clone();
            Ok(export::stream(
                format,
                "audit-events",
                page.after,
                move |page| {
                    let store = store.clone();
                    let filter = filter.clone();
                    Box::pin(async move { store.list_audit_events(&filter, &page).await })
                },
            ))
        }
    }
}

/// How often a long verification sends a space, so that proxies keep the connection open.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Walks the whole hash chain (from the latest retention checkpoint, whose signature is
/// checked) and reports the first broken sequence number. The walk reads a batch at a time;
/// the answer starts at once and, on a long chain, is preceded by spaces (JSON allows them)
/// until the result is known, so no timeout cuts it short.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "The chain holds, or where it breaks", body = ChainReport),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a tenant-wide Auditor or Admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    authorize(&caller)?;
    let store = state.store.clone();
    let key_path = state.config.audit_signing_key.clone();
    let walk = tokio::spawn(async move {
        // Only needed once events were pruned; a missing key is then said in the report.
        let key = AuditVerifier::load(&key_path).ok();
        verify_chain(&store, key.as_ref(), None).await
    });
    let body = futures_util::stream::unfold(Some(walk), |walk| async move {
        let mut walk = walk?;
        tokio::select! {
            outcome = &mut walk => {
                let chunk = match outcome {
                    Ok(Ok(report)) => Ok(Bytes::from(serde_json::to_vec(&report).unwrap_or_default())),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "audit verification failed to read the chain");
                        Err(std::io::Error::other("verification failed"))
                    }
                    Err(e) => Err(std::io::Error::other(e)),
                };
                Some((chunk, None))
            }
            () = tokio::time::sleep(KEEPALIVE) => Some((Ok(Bytes::from_static(b" ")), Some(walk))),
        }
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(body),
    )
        .into_response())
}

impl CsvRecord for AuditEvent {
    const HEADER: &'static [&'static str] = &[
        "seq",
        "at",
        "type",
        "actorId",
        "actorName",
        "resourceId",
        "requestId",
        "data",
        "prevHash",
        "hash",
    ];

    fn fields(&self) -> Vec<String> {
        vec![
            self.seq.to_string(),
            export::time_cell(self.at),
            self.event_type.clone(),
            self.actor.id.clone(),
            self.actor.name.clone(),
            self.resource_id.clone(),
            self.request_id.clone().unwrap_or_default(),
            self.data.to_string(),
            self.prev_hash.clone(),
            self.hash.clone(),
        ]
    }
}
