//! `GET /v1/me`: who the service thinks the caller is.

use super::error::{ApiResult, Problem};
use super::AppState;
use crate::auth::{Caller, CallerKind};
use crate::rbac::Role;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: String,
    pub name: String,
    pub kind: CallerKind,
    pub roles: Vec<EffectiveRole>,
    /// The Entra groups the token names (role assignments to them apply).
    pub groups: Vec<String>,
    /// The token carried the groups overage claim instead of the groups: assignments to
    /// groups cannot be counted for this caller.
    pub groups_overage: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveRole {
    pub role: Role,
    /// `/` for tenant-wide, else an ARM scope.
    pub scope: String,
    /// `token` (an Entra app role) or `assignment` (a role assignment of this service).
    pub source: String,
    /// The role assignment that grants it, when `source` is `assignment`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
}

/// The caller and its effective roles with their scopes.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "role assignments",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn me(caller: Caller) -> ApiResult<Json<Me>> {
    Ok(Json(Me {
        id: caller.principal.id,
        name: caller.principal.name,
        kind: caller.kind,
        roles: caller
            .roles
            .into_iter()
            .map(|g| EffectiveRole {
                role: g.role,
                scope: g.scope.to_string(),
                source: if g.assignment.is_some() {
                    "assignment"
                } else {
                    "token"
                }
                .into(),
                assignment_id: g.assignment,
            })
            .collect(),
        groups: caller.groups,
        groups_overage: caller.groups_overage,
    }))
}
