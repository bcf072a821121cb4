//! `/v1/chatops/identities`: which Entra user a Slack or Teams account acts as.
//!
//! A mapping lets a chat account act as a user everywhere that user's stored role
//! assignments reach, so writing one needs `Jit.Admin` tenant-wide; admins and auditors
//! (tenant-wide) read them. Every change is audited.

use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{encode_cursor, page_request, JsonBody, QueryParams};
use crate::api::AppState;
use crate::auth::Caller;
use crate::chatops::{ChatIdentity, ChatIdentityDraft, Platform};
use crate::domain::{Principal, Scope};
use crate::rbac::{self, Action};
use crate::store::{ChatIdentityPut, StoredChatIdentity};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A chat account and the Entra user it acts as.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatIdentityResource {
    pub id: String,
    pub platform: Platform,
    /// Slack: the workspace's team id. Teams: the Entra tenant id.
    pub workspace_id: String,
    /// Slack: the member id. Teams: the user's Entra object id (`from.aadObjectId`).
    pub chat_user_id: String,
    /// The Entra object id of the user the account acts as.
    pub user_id: String,
    pub user_name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Principal,
}

impl From<StoredChatIdentity> for ChatIdentityResource {
    fn from(s: StoredChatIdentity) -> Self {
        let i = s.identity;
        ChatIdentityResource {
            id: i.id,
            platform: i.platform,
            workspace_id: i.workspace_id,
            chat_user_id: i.chat_user_id,
            user_id: i.user.id,
            user_name: i.user.name,
            created_at: s.created_at,
            updated_at: s.updated_at,
            updated_by: s.updated_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatIdentityList {
    pub items: Vec<ChatIdentityResource>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListChatIdentitiesQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct IdentityIdParam {
    /// The mapping's id, chosen by the client (1 to 64 letters, digits, '-', '_' or '.').
    id: String,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no chat identity {id:?}"))
}

fn check_id(id: &str) -> ApiResult<()> {
    rbac::check_assignment_id(id)
        .map_err(|e| ApiError::BadRequest(e.replace("role assignment id", "identity id")))
}

/// List the chat identity mappings, ordered by id.
#[utoipa::path(
    get,
    path = "/v1/chatops/identities",
    tag = "chatops",
    params(ListChatIdentitiesQuery),
    responses(
        (status = 200, description = "A page of mappings", body = ChatIdentityList),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither Jit.Admin nor Jit.Auditor tenant-wide", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_identities(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListChatIdentitiesQuery>,
) -> ApiResult<Json<ChatIdentityList>> {
    rbac::authorize(&caller, Action::ReadRoleAssignments, &Scope::Tenant)?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let page = state.store.list_chat_identities(&page).await?;
    Ok(Json(ChatIdentityList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: encode_cursor(page.next_after),
    }))
}

/// Read one chat identity mapping.
#[utoipa::path(
    get,
    path = "/v1/chatops/identities/{id}",
    tag = "chatops",
    params(IdentityIdParam),
    responses(
        (status = 200, description = "The mapping", body = ChatIdentityResource),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither Jit.Admin nor Jit.Auditor tenant-wide", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mapping", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ChatIdentityResource>> {
    rbac::authorize(&caller, Action::ReadRoleAssignments, &Scope::Tenant)?;
    check_id(&id)?;
    let stored = state
        .store
        .get_chat_identity(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(stored.into()))
}

/// Map a Slack or Teams account to an Entra user (create or replace).
///
/// What the account may then do through chat is what the user's stored role assignments
/// allow (not their token's app roles or groups, which chat cannot see). Mapping the same
/// chat account under another id is a 409.
#[utoipa::path(
    put,
    path = "/v1/chatops/identities/{id}",
    tag = "chatops",
    params(IdentityIdParam),
    request_body = ChatIdentityDraft,
    responses(
        (status = 200, description = "Replaced", body = ChatIdentityResource),
        (status = 201, description = "Created", body = ChatIdentityResource),
        (status = 400, description = "Invalid mapping", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not Jit.Admin tenant-wide", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The chat account is mapped by another id", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn put_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<ChatIdentityResource>)> {
    rbac::authorize(&caller, Action::WriteRoleAssignments, &Scope::Tenant)?;
    let identity = ChatIdentity::parse(&id, body.parse::<ChatIdentityDraft>()?)?;
    let written = state
        .store
        .put_chat_identity(ChatIdentityPut {
            identity,
            by: caller.principal,
            now: Utc::now(),
        })
        .await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(written.identity.into())))
}

/// Remove a chat identity mapping; the account can do nothing through chat from then on.
#[utoipa::path(
    delete,
    path = "/v1/chatops/identities/{id}",
    tag = "chatops",
    params(IdentityIdParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not Jit.Admin tenant-wide", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mapping", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn delete_identity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    rbac::authorize(&caller, Action::WriteRoleAssignments, &Scope::Tenant)?;
    check_id(&id)?;
    match state
        .store
        .delete_chat_identity(&id, &caller.principal, Utc::now())
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(crate::store::StoreError::NotFound) => Err(not_found(&id)),
        Err(e) => Err(e.into()),
    }
}
