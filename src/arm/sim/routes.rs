//! The simulator's HTTP face: ARM's URL shapes, headers and error envelope.

use super::world::{Fault, SimError};
use super::Sim;
use crate::arm::evaluate::FlowProtocol;
use crate::arm::model::{ErrorDetail, ErrorResponse, NetworkSecurityGroup, RuleCollectionGroup};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

/// The api-version the simulator names in the URLs it makes (operation status, next pages).
const NETWORK_API_VERSION: &str = "2024-05-01";

pub(super) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/_sim/evaluate", post(evaluate))
        .route("/_sim/stats", axum::routing::get(stats))
        .fallback(handle)
        .with_state(sim)
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorResponse {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every ARM request: authentication, api-version, injected faults, then the resource.
async fn handle(
    State(sim): State<Sim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let client_request_id = headers.get("x-ms-client-request-id").cloned();
    let mut response = match serve(&sim, &method, &uri, &path, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let record = super::world::RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        api_version: query(&uri).get("api-version").cloned(),
        client_request_id: header("x-ms-client-request-id"),
        user_agent: header("user-agent"),
        if_match: header("if-match"),
        status: response.status().as_u16(),
    };
    sim.world().log.push(record);
    let h = response.headers_mut();
    h.insert(
        "x-ms-request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"),
    );
    if let Some(id) = client_request_id {
        h.insert("x-ms-client-request-id", id);
    }
    response
}

async fn serve(
    sim: &Sim,
    method: &Method,
    uri: &Uri,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, SimError> {
    check_token(sim, headers)?;
    let q = query(uri);
    if !q.contains_key("api-version") {
        return Err(SimError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    let fault = sim.world().draw_fault(method.as_str(), path);
    let lro_failure = match fault {
        Some(Fault::Error(e)) => return Err(e),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::LroFailed { code, message }) => Some(ErrorDetail { code, message }),
        None => None,
    };
    let segments: Vec<String> = path.split('/').map(|s| s.to_ascii_lowercase()).collect();
    let seg = |i: usize| segments.get(i).map(String::as_str).unwrap_or("");
    let mut world = sim.world();
    world.settle(Instant::now());
    match (method.as_str(), segments.len()) {
        // /subscriptions/{s}/providers/Microsoft.Network/locations/{loc}/operations/{id}
        ("GET", 9) if seg(5) == "locations" && seg(7) == "operations" => {
            let id = path.rsplit('/').next().unwrap_or_default();
            let op = world
                .operation(id)
                .ok_or_else(|| SimError::not_found(path))?;
            Ok(Json(op).into_response())
        }
        // /subscriptions/{s}/providers/Microsoft.Compute/virtualMachines
        ("GET", 6) if seg(3) == "providers" && seg(5) == "virtualmachines" => {
            let items = resources_under(&world, &format!("/subscriptions/{}/", seg(2)), is_vm);
            Ok(list_page(items, world.page_size, sim, path, &q))
        }
        // /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines
        ("GET", 8) if seg(5) == "providers" && seg(7) == "virtualmachines" => {
            let prefix = format!("/subscriptions/{}/resourcegroups/{}/", seg(2), seg(4));
            let items = resources_under(&world, &prefix, is_vm);
            Ok(list_page(items, world.page_size, sim, path, &q))
        }
        // /subscriptions/{s}/providers/Microsoft.Network/azureFirewalls
        ("GET", 6) if seg(3) == "providers" && seg(5) == "azurefirewalls" => {
            let items = resources_under(&world, &format!("/subscriptions/{}/", seg(2)), |id| {
                id.contains("/providers/microsoft.network/azurefirewalls/")
            });
            Ok(list_page(items, world.page_size, sim, path, &q))
        }
        // {firewall policy id}/ruleCollectionGroups
        ("GET", 10) if seg(7) == "firewallpolicies" && seg(9) == "rulecollectiongroups" => {
            let prefix = format!("{}/", path.to_ascii_lowercase());
            let items = world
                .rule_collection_groups
                .iter()
                .filter(|(id, _)| id.starts_with(&prefix))
                .map(|(_, g)| serde_json::to_value(g).unwrap_or_default())
                .collect();
            Ok(list_page(items, world.page_size, sim, path, &q))
        }
        ("GET", _) => {
            let key = path.to_ascii_lowercase();
            if let Some(group) = world.rule_collection_groups.get(&key) {
                return Ok(with_etag(
                    Json(group.clone()).into_response(),
                    group.etag.as_deref(),
                ));
            }
            if let Some(nsg) = world.nsgs.get(&key) {
                return Ok(with_etag(
                    Json(nsg.clone()).into_response(),
                    nsg.etag.as_deref(),
                ));
            }
            let resource = world
                .resources
                .get(&key)
                .ok_or_else(|| SimError::not_found(path))?;
            Ok(Json(resource.clone()).into_response())
        }
        ("PUT", 9) if seg(7) == "networksecuritygroups" => {
            let nsg: NetworkSecurityGroup = parse_body(body, path, &["location"])?;
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let (nsg, op_id, created) = world.put_nsg(
                path,
                nsg,
                header("if-match"),
                header("if-none-match"),
                lro_failure,
                Instant::now(),
            )?;
            let status_url = operation_url(sim, seg(2), &nsg.location, &op_id);
            Ok(accepted(
                status_url,
                nsg.etag.as_deref(),
                created,
                world.faults.lro_delay,
                &nsg,
            ))
        }
        ("PUT", 11) if seg(7) == "firewallpolicies" && seg(9) == "rulecollectiongroups" => {
            let group: RuleCollectionGroup = parse_body(body, path, &[])?;
            let if_match = headers.get("if-match").and_then(|v| v.to_str().ok());
            let (group, op_id, created) = world.put_rule_collection_group(
                path,
                group,
                if_match,
                lro_failure,
                Instant::now(),
            )?;
            let status_url = operation_url(sim, seg(2), "global", &op_id);
            Ok(accepted(
                status_url,
                group.etag.as_deref(),
                created,
                world.faults.lro_delay,
                &group,
            ))
        }
        ("PUT", _) | ("PATCH", _) | ("DELETE", _) | ("POST", _) => Err(SimError::new(
            405,
            "MethodNotAllowed",
            format!("The simulator does not support {method} on {path}."),
        )),
        _ => Err(SimError::not_found(path)),
    }
}

/// A body in ARM's shape; `id`, `name` (and the `extra` fields named) may be left out, as
/// ARM allows: the URL says what they are.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    path: &str,
    extra: &[&str],
) -> Result<T, SimError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| SimError::new(400, "InvalidRequestContent", e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("id").or_insert_with(|| json!(path));
        obj.entry("name").or_insert_with(|| json!(""));
        for field in extra {
            obj.entry(*field).or_insert_with(|| json!(""));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        SimError::new(
            400,
            "InvalidRequestFormat",
            format!("Cannot parse the request: {e}"),
        )
    })
}

fn check_token(sim: &Sim, headers: &HeaderMap) -> Result<(), SimError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            SimError::new(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        })?;
    match &sim.token {
        Some(expected) if !crate::auth::constant_time_eq(expected.as_bytes(), token.as_bytes()) => {
            Err(SimError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ))
        }
        _ => Ok(()),
    }
}

/// The read-only resources whose (lower-cased) id starts with `prefix` and is of `kind`.
fn resources_under(world: &super::World, prefix: &str, kind: impl Fn(&str) -> bool) -> Vec<Value> {
    world
        .resources
        .iter()
        .filter(|(id, _)| id.starts_with(prefix) && kind(id))
        .map(|(_, v)| v.clone())
        .collect()
}

fn is_vm(id: &str) -> bool {
    id.contains("/providers/microsoft.compute/virtualmachines/") && id.split('/').count() == 9
}

fn with_etag(mut response: Response, etag: Option<&str>) -> Response {
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        response.headers_mut().insert("etag", v);
    }
    response
}

/// One page of `all`, with a `nextLink` when more follow; `$skiptoken` is the offset.
fn list_page(
    all: Vec<Value>,
    page_size: usize,
    sim: &Sim,
    path: &str,
    q: &HashMap<String, String>,
) -> Response {
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(skip).take(page_size).collect();
    let next = skip + page.len();
    let mut body = json!({ "value": page });
    if next < total {
        let version = q.get("api-version").cloned().unwrap_or_default();
        body["nextLink"] = json!(format!(
            "{}{path}?api-version={version}&$skiptoken={next}",
            sim.base_url()
        ));
    }
    Json(body).into_response()
}

/// Where the long-running operation `op_id` is polled.
fn operation_url(sim: &Sim, subscription: &str, location: &str, op_id: &str) -> String {
    format!(
        "{}/subscriptions/{subscription}/providers/Microsoft.Network/locations/{}/operations/{op_id}?api-version={NETWORK_API_VERSION}",
        sim.base_url(),
        location.to_ascii_lowercase()
    )
}

/// ARM's answer to an accepted write: the resource, its ETag, and where to poll the
/// long-running operation (`Azure-AsyncOperation`) and when (`Retry-After`).
fn accepted<T: serde::Serialize>(
    status_url: String,
    etag: Option<&str>,
    created: bool,
    lro_delay: std::time::Duration,
    body: &T,
) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = with_etag((status, Json(body)).into_response(), etag);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        h.insert("azure-asyncoperation", v);
    }
    h.insert(
        "retry-after",
        HeaderValue::from(lro_delay.as_secs_f64().ceil() as u64),
    );
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EvaluateBody {
    vm_id: String,
    source: std::net::IpAddr,
    port: u16,
    #[serde(default)]
    protocol: Option<String>,
}

/// Not ARM: the simulator's answer to "would this flow reach the VM?".
async fn evaluate(State(sim): State<Sim>, Json(body): Json<EvaluateBody>) -> Response {
    let protocol = match body
        .protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("tcp") => FlowProtocol::Tcp,
        Some("udp") => FlowProtocol::Udp,
        Some(other) => {
            return SimError::new(
                400,
                "InvalidProtocol",
                format!("{other}: expected Tcp or Udp"),
            )
            .into_response()
        }
    };
    match sim.evaluate(&body.vm_id, body.source, body.port, protocol) {
        Ok(verdict) => Json(verdict).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Not ARM: how many requests the simulator answered, and accepted writes per resource.
async fn stats(State(sim): State<Sim>) -> Json<Value> {
    let world = sim.world();
    Json(json!({ "requests": world.requests, "writes": world.writes }))
}
