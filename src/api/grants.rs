//! `GET /v1/grants`: the history of access, one row per port opened, for auditors.

use super::error::{ApiResult, Problem};
use super::export::{self, CsvRecord, Format};
use super::extract::{encode_cursor, page_request, QueryParams};
use super::AppState;
use crate::auth::Caller;
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::{FieldErrors, Principal, Scope, VmId};
use crate::rbac::{self, Action, Visibility};
use crate::store::GrantFilter;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantList {
    pub items: Vec<Grant>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListGrantsQuery {
    /// A VM's ARM id (compared case-insensitively).
    pub vm_id: Option<String>,
    /// The requestor's object id.
    pub requestor: Option<String>,
    /// A port number.
    pub port: Option<u16>,
    /// `active`, `expired`, `revoked` or `failed`.
    pub status: Option<String>,
    /// Grants open at any moment at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Grants opened before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100); exports ignore it.
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Validates the query into a store filter; a bad value is a 400 naming the parameter.
fn filter_of(q: &ListGrantsQuery, caller: &Caller) -> ApiResult<GrantFilter> {
    let mut errors = FieldErrors::new();
    let status = q
        .status
        .as_deref()
        .and_then(|s| errors.take("status", GrantStatus::parse(s)));
    let vm_key = q
        .vm_id
        .as_deref()
        .and_then(|v| errors.take("vmId", VmId::parse(v)))
        .map(|v| v.key().to_string());
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            errors.push("to", "must be after from");
        }
    }
    if q.port == Some(0) {
        errors.push("port", "expected 1 to 65535");
    }
    errors.finish(|| ())?;
    let within = match rbac::visible_scopes(caller, Action::ReadGrants) {
        Visibility::Everywhere => None,
        Visibility::Within(scopes) if scopes.is_empty() => {
            return Err(rbac::refusal(caller, Action::ReadGrants, &Scope::Tenant).into())
        }
        Visibility::Within(scopes) => Some(scopes),
    };
    Ok(GrantFilter {
        vm_key,
        requestor: q.requestor.clone(),
        port: q.port,
        status,
        from: q.from,
        to: q.to,
        within,
    })
}

/// Grant history, newest first: who had which port open on which VM, from where, approved by
/// whom, and why. `Accept: text/csv` or `application/x-ndjson` streams every matching row.
#[utoipa::path(
    get,
    path = "/v1/grants",
    tag = "audit",
    params(ListGrantsQuery),
    responses(
        (status = 200, description = "A page of grants (JSON), or every matching grant (CSV, NDJSON)", content(
            (GrantList = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an Auditor or Admin anywhere", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<ListGrantsQuery>,
) -> ApiResult<Response> {
    let filter = filter_of(&q, &caller)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    match export::negotiate(&headers) {
        Format::Json => {
            let page = state.store.list_grants(&filter, &page).await?;
            Ok(Json(GrantList {
                items: page.items,
                next_cursor: encode_cursor(page.next_after),
            })
            .into_response())
        }
        format => {
            let store = state.store.clone();
            Ok(export::stream(format, "grants", page.after, move |page| {
                let store = store.clone();
                let filter = filter.clone();
                Box::pin(async move { store.list_grants(&filter, &page).await })
            }))
        }
    }
}

fn principals(list: &[Principal]) -> String {
    list.iter()
        .map(|p| format!("{} ({})", p.name, p.id))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CsvRecord for Grant {
    const HEADER: &'static [&'static str] = &[
        "id",
        "requestId",
        "vmId",
        "port",
        "protocol",
        "sourceAddressPrefix",
        "requestorId",
        "requestorName",
        "submittedById",
        "submittedByName",
        "approvers",
        "justification",
        "grantedAt",
        "endTimeUtc",
        "closedAt",
        "status",
        "statusReason",
    ];

    fn fields(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.request_id.clone(),
            self.vm_id.clone(),
            self.port.to_string(),
            self.protocol.clone(),
            self.source_address_prefix.clone(),
            self.requestor.id.clone(),
            self.requestor.name.clone(),
            self.submitted_by.id.clone(),
            self.submitted_by.name.clone(),
            principals(&self.approvers),
            self.justification.clone().unwrap_or_default(),
            export::time_cell(self.granted_at),
            self.end_time_utc.map(export::time_cell).unwrap_or_default(),
            self.closed_at.map(export::time_cell).unwrap_or_default(),
            self.status.as_str().to_string(),
            self.status_reason.clone(),
        ]
    }
}
