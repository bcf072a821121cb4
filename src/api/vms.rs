//! `/v1/vms` and a VM's own URLs: the inventory, the posture assessment, and what a person
//! needs to connect.

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{encode_cursor, page_request, QueryParams, VmPath};
use super::policies::{PolicyResource, VmParams};
use super::AppState;
use crate::auth::Caller;
use crate::domain::vm::assess;
use crate::domain::{Assessment, FieldErrors, PortRule};
use crate::rbac::{self, Action, Visibility};
use crate::store::{ListedVm, VmFilter};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_vms))
        .routes(routes!(get_vm))
        .routes(routes!(connect))
}

/// A VM of the inventory, with its posture.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmResource {
    /// The VM's ARM id.
    pub id: String,
    pub name: String,
    pub location: String,
    pub private_ip_addresses: Vec<String>,
    pub public_ip_addresses: Vec<String>,
    /// The ids of the NSGs on the VM's subnets and NICs.
    pub network_security_groups: Vec<String>,
    /// The ids of Azure Firewalls that forward traffic to the VM.
    pub firewalls: Vec<String>,
    pub jit_enabled: bool,
    pub assessment: Assessment,
    /// Why: each path from the Internet to a management port, or what makes it healthy.
    pub reasons: Vec<String>,
    /// When ARM was last read for this VM.
    pub refreshed_at: DateTime<Utc>,
}

impl From<ListedVm> for VmResource {
    fn from(v: ListedVm) -> Self {
        let (assessment, reasons) =
            assess(v.jit_enabled, v.vm.network.is_guarded(), &v.vm.exposures);
        let network = v.vm.network;
        VmResource {
            id: v.vm.vm.as_str().to_string(),
            name: network.name,
            location: network.location,
            private_ip_addresses: network
                .private_ip_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            public_ip_addresses: network.public_ip_addresses,
            network_security_groups: network
                .network_security_groups
                .into_iter()
                .map(|n| n.id)
                .collect(),
            firewalls: network.firewalls,
            jit_enabled: v.jit_enabled,
            assessment,
            reasons,
            refreshed_at: v.vm.refreshed_at,
        }
    }
}

/// One VM, with its policy.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmDetail {
    #[serde(flatten)]
    pub vm: VmResource,
    /// The VM's JIT policy, or null.
    pub policy: Option<PolicyResource>,
    /// Access open now: everyone's for those who may read others' requests here, else the
    /// caller's own.
    pub active_grants: Vec<ActiveGrant>,
}

/// One port open now, through an active request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveGrant {
    pub request_id: String,
    pub requestor: crate::domain::Principal,
    pub number: u16,
    pub protocol: String,
    pub allowed_source_address_prefix: String,
    pub end_time_utc: Option<DateTime<Utc>>,
}

/// The ports open now on `vm`, of everyone, or only of `only_for` (a principal id).
async fn active_grants(
    state: &AppState,
    vm: &crate::domain::VmId,
    only_for: Option<&str>,
) -> ApiResult<Vec<ActiveGrant>> {
    use crate::domain::request::{PortStatus, RequestStatus};
    use crate::store::{PageRequest, RequestFilter};
    let filter = RequestFilter {
        status: Some(RequestStatus::Active),
        vm_key: Some(vm.key().to_string()),
        involving: only_for.map(str::to_string),
        ..Default::default()
    };
    let page = state
        .store
        .list_requests(
            &filter,
            &PageRequest {
                limit: 1000,
                after: None,
            },
        )
        .await?;
    Ok(page
        .items
        .into_iter()
        .flat_map(|stored| {
            let request = stored.request;
            request
                .virtual_machines
                .into_iter()
                .filter(|v| v.vm == *vm)
                .flat_map(|v| v.ports)
                .filter(|p| p.status == PortStatus::Initiated)
                .map(|p| ActiveGrant {
                    request_id: request.id.clone(),
                    requestor: request.requestor.clone(),
                    number: p.number.get(),
                    protocol: p.protocol.to_string(),
                    allowed_source_address_prefix: p.source.to_string(),
                    end_time_utc: p.end_time_utc,
                })
                .collect::<Vec<_>>()
        })
        .collect())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmList {
    pub items: Vec<VmResource>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListVmsQuery {
    /// `healthy`, `unhealthy` or `notApplicable`.
    pub assessment: Option<String>,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// What connecting takes: for an unprotected VM, a warning; for a protected one, what may be
/// requested and where to connect once access is granted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectInfo {
    pub jit_enabled: bool,
    /// The caller's access open now on this VM.
    pub active_grants: Vec<ActiveGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The ports the policy lets you request, with their limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requestable: Vec<RequestablePort>,
    pub public_ip_addresses: Vec<String>,
    pub private_ip_addresses: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestablePort {
    pub number: u16,
    pub protocol: String,
    /// ISO 8601.
    pub max_request_access_duration: String,
    /// `*` when the request names its source (by default the caller's address).
    pub allowed_source_address_prefixes: Vec<String>,
}

impl From<&PortRule> for RequestablePort {
    fn from(rule: &PortRule) -> Self {
        let wire = crate::domain::policy::PortRuleWire::from(rule.clone());
        RequestablePort {
            number: wire.number,
            protocol: wire.protocol,
            max_request_access_duration: wire.max_request_access_duration,
            allowed_source_address_prefixes: wire
                .allowed_source_address_prefix
                .into_iter()
                .chain(wire.allowed_source_address_prefixes.unwrap_or_default())
                .collect(),
        }
    }
}

/// List the VMs of the inventory the caller may see, ordered by id.
#[utoipa::path(
    get,
    path = "/v1/vms",
    tag = "vms",
    params(ListVmsQuery),
    responses(
        (status = 200, description = "A page of VMs", body = VmList),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list_vms(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListVmsQuery>,
) -> ApiResult<Json<VmList>> {
    let assessment = q
        .assessment
        .as_deref()
        .map(Assessment::parse)
        .transpose()
        .map_err(|e| FieldErrors::single("assessment", e))?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = VmFilter {
        subscription: q.subscription_id,
        resource_group: q.resource_group,
        assessment,
        within: match rbac::visible_scopes(&caller, Action::ReadPolicy) {
            Visibility::Everywhere => None,
            Visibility::Within(scopes) => Some(scopes),
        },
    };
    let page = state.store.list_vms(&filter, &page).await?;
    Ok(Json(VmList {
        items: page.items.into_iter().map(VmResource::from).collect(),
        next_cursor: encode_cursor(page.next_after),
    }))
}

async fn inventory_vm(state: &AppState, vm: &crate::domain::VmId) -> ApiResult<ListedVm> {
    state.store.get_vm(vm).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{vm} is not in the inventory: it does not exist, or its subscription is not among JITGATE_SUBSCRIPTIONS, or the inventory has not been refreshed since it was created"
        ))
    })
}

/// One VM: its network, posture and policy.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/virtualMachines/{vmName}",
    tag = "vms",
    params(VmParams),
    responses(
        (status = 200, description = "The VM", body = VmDetail),
        (status = 400, description = "Invalid path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No role at the VM's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in the inventory", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn get_vm(
    State(state): State<AppState>,
    caller: Caller,
    VmPath(vm): VmPath,
) -> ApiResult<Json<VmDetail>> {
    rbac::authorize_vm(&caller, Action::ReadPolicy, &vm)?;
    let listed = inventory_vm(&state, &vm).await?;
    let policy = state.store.get_policy(&vm).await?.map(PolicyResource::from);
    let everyone = rbac::authorize_vm(&caller, Action::ReadAnyRequest, &vm).is_ok();
    let grants = active_grants(
        &state,
        &vm,
        (!everyone).then_some(caller.principal.id.as_str()),
    )
    .await?;
    Ok(Json(VmDetail {
        vm: listed.into(),
        policy,
        active_grants: grants,
    }))
}

/// How to connect to a VM: a warning when it is not protected by JIT, otherwise the ports
/// that may be requested and the addresses to connect to once access is granted.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/virtualMachines/{vmName}/connect",
    tag = "vms",
    params(VmParams),
    responses(
        (status = 200, description = "How to connect", body = ConnectInfo),
        (status = 400, description = "Invalid path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No role at the VM's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in the inventory", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    VmPath(vm): VmPath,
) -> ApiResult<Json<ConnectInfo>> {
    rbac::authorize_vm(&caller, Action::ReadPolicy, &vm)?;
    let listed = inventory_vm(&state, &vm).await?;
    let policy = state.store.get_policy(&vm).await?;
    let network = &listed.vm.network;
    let addresses = |ips: &[std::net::IpAddr]| ips.iter().map(ToString::to_string).collect();
    Ok(Json(match policy {
        None => ConnectInfo {
            jit_enabled: false,
            active_grants: vec![],
            warning: Some(format!(
                "{} is not protected by JIT: its management ports are as open as its NSGs leave them, to anyone they admit. Ask an admin to enable a JIT policy.",
                network.name
            )),
            requestable: vec![],
            public_ip_addresses: network.public_ip_addresses.clone(),
            private_ip_addresses: addresses(&network.private_ip_addresses),
        },
        Some(p) => ConnectInfo {
            jit_enabled: true,
            active_grants: active_grants(&state, &vm, Some(&caller.principal.id)).await?,
            warning: None,
            requestable: p.policy.ports.iter().map(RequestablePort::from).collect(),
            public_ip_addresses: network.public_ip_addresses.clone(),
            private_ip_addresses: addresses(&network.private_ip_addresses),
        },
    }))
}
