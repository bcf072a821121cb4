//! `/v1/subscriptions/{sub}/resourceGroups/{rg}/virtualMachines/{vm}/policy` and `/v1/policies`.

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{encode_cursor, page_request, precondition, JsonBody, QueryParams, VmPath};
use super::AppState;
use crate::auth::Caller;
use crate::domain::{Policy, PolicyDraft, Principal};
use crate::rbac::{self, Action, Visibility};
use crate::store::{Enforcement, PolicyFilter, PolicyPut, StoredPolicy};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_policy, get_policy, delete_policy))
        .routes(routes!(list_policies))
}

/// A VM's policy as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResource {
    /// The VM's ARM id, as first written.
    pub vm_id: String,
    #[serde(flatten)]
    pub policy: Policy,
    pub etag: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Principal,
    pub enforcement: Enforcement,
}

impl From<StoredPolicy> for PolicyResource {
    fn from(p: StoredPolicy) -> Self {
        PolicyResource {
            vm_id: p.vm.as_str().to_string(),
            policy: p.policy,
            etag: p.etag,
            created_at: p.created_at,
            updated_at: p.updated_at,
            updated_by: p.updated_by,
            enforcement: p.enforcement,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyList {
    pub items: Vec<PolicyResource>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListPoliciesQuery {
    /// Only policies of VMs in this subscription.
    pub subscription_id: Option<String>,
    /// Only policies of VMs in resource groups of this name.
    pub resource_group: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The path parameters of a VM-scoped URL (documentation only; [`VmPath`] reads them).
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct VmParams {
    /// Subscription id.
    subscription_id: String,
    /// Resource group name.
    resource_group_name: String,
    /// Virtual machine name.
    vm_name: String,
}

fn with_etag(status: StatusCode, policy: StoredPolicy) -> Response {
    let etag = HeaderValue::from_str(&policy.etag).ok();
    let mut response = (status, Json(PolicyResource::from(policy))).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// A new strong ETag for every write.
fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4().simple())
}

/// Create or replace a VM's JIT policy.
///
/// Enabling a policy imposes deny rules for its ports on the VM's NSGs and firewalls
/// (`enforcement` reports progress). Send `If-Match` with the ETag you read to avoid
/// overwriting someone else's change, or `If-None-Match: *` to create only.
#[utoipa::path(
    put,
    path = "/v1/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/virtualMachines/{vmName}/policy",
    tag = "policies",
    params(VmParams,
        ("If-Match" = Option<String>, Header, description = "ETag the policy must still have, or *"),
        ("If-None-Match" = Option<String>, Header, description = "* to create only")),
    request_body = PolicyDraft,
    responses(
        (status = 200, description = "Replaced", body = PolicyResource, headers(("ETag" = String))),
        (status = 201, description = "Created", body = PolicyResource, headers(("ETag" = String))),
        (status = 400, description = "Invalid policy or path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not Jit.Admin at the VM's scope", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "ETag mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    VmPath(vm): VmPath,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    rbac::authorize_vm(&caller, Action::WritePolicy, &vm)?;
    let precondition = precondition(&headers)?;
    let policy = Policy::parse(body.parse::<PolicyDraft>()?, &state.config.durations)?;
    let written = state
        .store
        .put_policy(PolicyPut {
            vm,
            policy,
            etag: new_etag(),
            precondition,
            by: caller.principal,
            now: Utc::now(),
        })
        .await?;
    state.wake_dispatch();
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(status, written.policy))
}

/// Read a VM's JIT policy.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/virtualMachines/{vmName}/policy",
    tag = "policies",
    params(VmParams),
    responses(
        (status = 200, description = "The policy", body = PolicyResource, headers(("ETag" = String))),
        (status = 400, description = "Invalid path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No role at the VM's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The VM has no policy", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    VmPath(vm): VmPath,
) -> ApiResult<Response> {
    rbac::authorize_vm(&caller, Action::ReadPolicy, &vm)?;
    match state.store.get_policy(&vm).await? {
        Some(policy) => Ok(with_etag(StatusCode::OK, policy)),
        None => Err(ApiError::NotFound(format!("{vm} has no JIT policy"))),
    }
}

/// Remove a VM's JIT policy: its deny rules are removed and its active grants revoked.
#[utoipa::path(
    delete,
    path = "/v1/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/virtualMachines/{vmName}/policy",
    tag = "policies",
    params(VmParams, ("If-Match" = Option<String>, Header, description = "ETag the policy must still have, or *")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not Jit.Admin at the VM's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The VM has no policy", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "ETag mismatch", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    VmPath(vm): VmPath,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    rbac::authorize_vm(&caller, Action::WritePolicy, &vm)?;
    let precondition = precondition(&headers)?;
    match state
        .store
        .delete_policy(&vm, &precondition, &caller.principal, Utc::now())
        .await
    {
        Ok(_) => {
            state.wake_dispatch();
            Ok(StatusCode::NO_CONTENT)
        }
        Err(crate::store::StoreError::NotFound) => {
            Err(ApiError::NotFound(format!("{vm} has no JIT policy")))
        }
        Err(e) => Err(e.into()),
    }
}

/// List the policies the caller may read, ordered by VM id, one keyset page at a time.
#[utoipa::path(
    get,
    path = "/v1/policies",
    tag = "policies",
    params(ListPoliciesQuery),
    responses(
        (status = 200, description = "A page of policies", body = PolicyList),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListPoliciesQuery>,
) -> ApiResult<Json<PolicyList>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = PolicyFilter {
        subscription: q.subscription_id,
        resource_group: q.resource_group,
        within: match rbac::visible_scopes(&caller, Action::ReadPolicy) {
            Visibility::Everywhere => None,
            Visibility::Within(scopes) => Some(scopes),
        },
    };
    let page = state.store.list_policies(&filter, &page).await?;
    Ok(Json(PolicyList {
        items: page.items.into_iter().map(PolicyResource::from).collect(),
        next_cursor: encode_cursor(page.next_after),
    }))
}
