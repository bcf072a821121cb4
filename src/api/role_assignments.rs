//! `/v1/role-assignments`: the service's own scoped role assignments.
//!
//! Writing needs `Jit.Admin` at a scope containing the assignment's scope (and, to move or
//! remove an assignment, at its current scope too): an admin of one subscription can delegate
//! there and nowhere else. Admins and auditors read the assignments within their scopes.

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{encode_cursor, page_request, JsonBody, QueryParams};
use super::AppState;
use crate::auth::Caller;
use crate::domain::Principal;
use crate::rbac::{self, Action, Role, RoleAssignment, RoleAssignmentDraft, Visibility};
use crate::store::{RoleAssignmentFilter, RoleAssignmentPut, StoredRoleAssignment};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_role_assignments))
        .routes(routes!(
            get_role_assignment,
            put_role_assignment,
            delete_role_assignment
        ))
}

/// A role granted to a user, group or service principal at an ARM scope.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentResource {
    pub id: String,
    /// The Entra object id of the user, group or service principal.
    pub principal_id: String,
    #[schema(value_type = String, example = "User")]
    pub principal_type: String,
    pub role: Role,
    /// `/subscriptions/{s}`, `/subscriptions/{s}/resourceGroups/{rg}` or a VM id.
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Principal,
}

impl From<StoredRoleAssignment> for RoleAssignmentResource {
    fn from(s: StoredRoleAssignment) -> Self {
        let a = s.assignment;
        RoleAssignmentResource {
            id: a.id,
            principal_id: a.principal_id,
            principal_type: a.principal_type.to_string(),
            role: a.role,
            scope: a.scope.to_string(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            updated_by: s.updated_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentList {
    pub items: Vec<RoleAssignmentResource>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListRoleAssignmentsQuery {
    /// Only assignments to this principal (object id).
    pub principal_id: Option<String>,
    /// Only assignments of this role.
    pub role: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct AssignmentIdParam {
    /// The assignment's id, chosen by the client (a GUID is customary).
    id: String,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no role assignment {id:?}"))
}

async fn stored(state: &AppState, id: &str) -> ApiResult<StoredRoleAssignment> {
    rbac::check_assignment_id(id).map_err(ApiError::BadRequest)?;
    state
        .store
        .get_role_assignment(id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// List the role assignments within the caller's scopes, ordered by id.
#[utoipa::path(
    get,
    path = "/v1/role-assignments",
    tag = "role assignments",
    params(ListRoleAssignmentsQuery),
    responses(
        (status = 200, description = "A page of role assignments", body = RoleAssignmentList),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither Jit.Admin nor Jit.Auditor anywhere", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_role_assignments(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListRoleAssignmentsQuery>,
) -> ApiResult<Json<RoleAssignmentList>> {
    let within = match rbac::visible_scopes(&caller, Action::ReadRoleAssignments) {
        Visibility::Everywhere => None,
        Visibility::Within(scopes) if scopes.is_empty() => {
            return Err(rbac::refusal(
                &caller,
                Action::ReadRoleAssignments,
                &crate::domain::Scope::Tenant,
            )
            .into())
        }
        Visibility::Within(scopes) => Some(scopes),
    };
    let role = q
        .role
        .map(|r| r.parse::<Role>())
        .transpose()
        .map_err(|e| crate::domain::FieldErrors::single("role", e))?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = RoleAssignmentFilter {
        principal_id: q
            .principal_id
            .map(|p| rbac::assignment::normalize_principal_id(&p)),
        role,
        within,
    };
    let page = state.store.list_role_assignments(&filter, &page).await?;
    Ok(Json(RoleAssignmentList {
        items: page
            .items
            .into_iter()
            .map(RoleAssignmentResource::from)
            .collect(),
        next_cursor: encode_cursor(page.next_after),
    }))
}

/// Read one role assignment.
#[utoipa::path(
    get,
    path = "/v1/role-assignments/{id}",
    tag = "role assignments",
    params(AssignmentIdParam),
    responses(
        (status = 200, description = "The role assignment", body = RoleAssignmentResource),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither Jit.Admin nor Jit.Auditor at the assignment's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such assignment", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn get_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RoleAssignmentResource>> {
    let current = stored(&state, &id).await?;
    rbac::authorize(
        &caller,
        Action::ReadRoleAssignments,
        &current.assignment.scope,
    )?;
    Ok(Json(current.into()))
}

/// Create or replace a role assignment.
///
/// The id is the client's (a GUID is customary), so a retried PUT cannot create a second
/// assignment. Assigning the same role to the same principal at the same scope under another
/// id is a 409.
#[utoipa::path(
    put,
    path = "/v1/role-assignments/{id}",
    tag = "role assignments",
    params(AssignmentIdParam),
    request_body = RoleAssignmentDraft,
    responses(
        (status = 200, description = "Replaced", body = RoleAssignmentResource),
        (status = 201, description = "Created", body = RoleAssignmentResource),
        (status = 400, description = "Invalid assignment", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not Jit.Admin at the assignment's scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same role is already assigned to the principal at the scope", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn put_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<RoleAssignmentResource>)> {
    let assignment = RoleAssignment::parse(&id, body.parse::<RoleAssignmentDraft>()?)?;
    rbac::authorize(&caller, Action::WriteRoleAssignments, &assignment.scope)?;
    // Moving an assignment takes it away from where it was: that needs the right there too.
    if let Some(current) = state.store.get_role_assignment(&id).await? {
        rbac::authorize(
            &caller,
            Action::WriteRoleAssignments,
            &current.assignment.scope,
        )?;
    }
    let written = state
        .store
        .put_role_assignment(RoleAssignmentPut {
            assignment,
            by: caller.principal,
            now: Utc::now(),
        })
        .await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(written.assignment.into())))
}

/// Delete a role assignment; the role stops holding at once.
#[utoipa::path(
    delete,
    path = "/v1/role-assignments/{id}",
    tag = "role assignments",
    params(AssignmentIdParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not Jit.Admin at the assignment's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such assignment", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn delete_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let current = stored(&state, &id).await?;
    rbac::authorize(
        &caller,
        Action::WriteRoleAssignments,
        &current.assignment.scope,
    )?;
    match state
        .store
        .delete_role_assignment(&id, &caller.principal, Utc::now())
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(crate::store::StoreError::NotFound) => Err(not_found(&id)),
        Err(e) => Err(e.into()),
    }
}
