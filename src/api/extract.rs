//! Request extractors that fail as problem+json: the caller, VM path segments, JSON bodies,
//! query strings, conditional headers and page parameters.

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::auth::{AuthError, Caller};
use crate::domain::{FieldErrors, VmId};
use crate::rbac;
use crate::store::{PageRequest, Precondition};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let validated = parts
            .extensions
            .remove::<super::limits::ValidatedCaller>()
            .map(|v| v.0);
        let mut caller = match validated {
            Some(caller) => caller,
            None => validate_bearer(parts, state).await?,
        };
        // The service's own role assignments that name this caller or one of its groups.
        let mut principals = Vec::with_capacity(1 + caller.groups.len());
        principals.push(caller.principal.id.clone());
        principals.extend(caller.groups.iter().cloned());
        let assignments = state.store.role_assignments_for(&principals).await?;
        rbac::add_assigned_roles(&mut caller, assignments);
        Ok(caller)
    }
}

/// The caller the `Authorization: Bearer` header names, with the token's own roles only.
async fn validate_bearer(parts: &Parts, state: &AppState) -> ApiResult<Caller> {
    {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing.into());
        }
        Ok(state.auth.validate(token.trim()).await?)
    }
}

/// The VM a `/v1/subscriptions/{sub}/resourceGroups/{rg}/virtualMachines/{vm}/...` URL names.
pub struct VmPath(pub VmId);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmSegments {
    subscription_id: String,
    resource_group_name: String,
    vm_name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for VmPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<VmPath> {
        let Path(seg) = Path::<VmSegments>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| ApiError::BadRequest(e.body_text()))?;
        VmId::from_parts(&seg.subscription_id, &seg.resource_group_name, &seg.vm_name)
            .map(VmPath)
            .map_err(|e| FieldErrors::single("path", e).into())
    }
}

/// The address a request comes from: the TCP peer, unless the peer is one of our trusted
/// proxies, in which case the right-most `X-Forwarded-For` entry that is not itself a trusted
/// proxy (entries further left are whatever the client chose to send).
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// A JSON body, checked for content type and size but not yet parsed, so that a handler can
/// authorise the caller before telling them what is wrong with their input.
pub struct JsonBody(Bytes);

/// An optional JSON body (`POST .../approve` with or without `{ "comment": ... }`): absent when
/// the request has no body and no content type.
impl<S: Send + Sync> axum::extract::OptionalFromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Option<JsonBody>> {
        let no_type = req.headers().get(header::CONTENT_TYPE).is_none();
        let no_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == "0");
        if no_type && no_length {
            return Ok(None);
        }
        <JsonBody as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

impl JsonBody {
    /// The body as sent (for hashing it under an idempotency key).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<JsonBody> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {:?}",
                content_type
            )));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "the body exceeds {} bytes",
                        super::MAX_BODY_BYTES
                    ))
                } else {
                    ApiError::BadRequest(e.body_text())
                }
            })?;
        Ok(JsonBody(bytes))
    }
}

impl JsonBody {
    /// Parses the body; a type error or unknown field is reported at its JSON path.
    pub fn parse<T: DeserializeOwned>(&self) -> ApiResult<T> {
        let mut de = serde_json::Deserializer::from_slice(&self.0);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            ApiError::Validation(FieldErrors::single(field, e.inner().to_string()))
        })?;
        de.end().map_err(|e| {
            ApiError::Validation(FieldErrors::single(
                "body",
                format!("unexpected data after the JSON value: {e}"),
            ))
        })?;
        Ok(value)
    }
}

/// A query string, whose errors are problem+json.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))?;
        Ok(QueryParams(value))
    }
}

/// `If-Match` / `If-None-Match`, as a store precondition.
pub fn precondition(headers: &HeaderMap) -> ApiResult<Precondition> {
    let read = |name: header::HeaderName| -> ApiResult<Option<String>> {
        headers
            .get(&name)
            .map(|v| v.to_str().map(str::trim).map(String::from))
            .transpose()
            .map_err(|_| ApiError::BadRequest(format!("{name} is not valid ASCII")))
    };
    match (read(header::IF_MATCH)?, read(header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "send If-Match or If-None-Match, not both".into(),
        )),
        (Some(m), None) if m == "*" => Ok(Precondition::Exists),
        (Some(m), None) => {
            let tags: Vec<String> = m
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if tags.is_empty() || tags.iter().any(|t| !is_entity_tag(t)) {
                return Err(ApiError::BadRequest(format!(
                    "If-Match must be * or quoted ETags such as \"abc\", got {m:?}"
                )));
            }
            Ok(Precondition::EtagIn(tags))
        }
        (None, Some(m)) if m == "*" => Ok(Precondition::Absent),
        (None, Some(m)) => Err(ApiError::BadRequest(format!(
            "only If-None-Match: * is supported on writes, got {m:?}"
        ))),
        (None, None) => Ok(Precondition::None),
    }
}

fn is_entity_tag(t: &str) -> bool {
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.len() >= 2 && t.starts_with('"') && t.ends_with('"')
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// `?limit=&cursor=`. The cursor is opaque to clients: the last key of the previous page,
/// base64url-encoded with a version tag so its form can change without breaking old links.
pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> ApiResult<PageRequest> {
    let mut errors = FieldErrors::new();
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push("limit", format!("expected 1 to {MAX_LIMIT}"));
    }
    let after = match cursor {
        None | Some("") => None,
        Some(c) => {
            let decoded = URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("v1:").map(String::from));
            if decoded.is_none() {
                errors.push("cursor", "not a cursor this service issued");
            }
            decoded
        }
    };
    errors
        .finish(|| PageRequest { limit, after })
        .map_err(ApiError::from)
}

pub fn encode_cursor(after: Option<String>) -> Option<String> {
    after.map(|key| URL_SAFE_NO_PAD.encode(format!("v1:{key}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn conditional_headers_become_preconditions() {
        assert_eq!(precondition(&headers(&[])).unwrap(), Precondition::None);
        assert_eq!(
            precondition(&headers(&[("if-match", "*")])).unwrap(),
            Precondition::Exists
        );
        assert_eq!(
            precondition(&headers(&[("if-match", "\"a\", \"b\"")])).unwrap(),
            Precondition::EtagIn(vec!["\"a\"".into(), "\"b\"".into()])
        );
        assert_eq!(
            precondition(&headers(&[("if-none-match", "*")])).unwrap(),
            Precondition::Absent
        );
        assert!(precondition(&headers(&[("if-match", "abc")])).is_err());
    }

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let cursor = encode_cursor(Some("/subscriptions/s/x".into())).unwrap();
        assert_eq!(
            page_request(None, Some(&cursor)).unwrap().after.as_deref(),
            Some("/subscriptions/s/x")
        );
        assert!(page_request(None, Some("garbage!")).is_err());
        assert!(page_request(Some(0), None).is_err());
        assert!(page_request(Some(1001), None).is_err());
        assert_eq!(page_request(None, None).unwrap().limit, 100);
    }
}

#[cfg(test)]
mod client_address_tests {
    use super::client_address;
    use axum::http::HeaderMap;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let trusted = vec!["10.0.0.0/24".parse().unwrap()];
        let spoofed = headers("198.51.100.1");
        assert_eq!(
            client_address("203.0.113.9".parse().unwrap(), &spoofed, &trusted),
            "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            client_address("10.0.0.5".parse().unwrap(), &spoofed, &trusted),
            "198.51.100.1".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_wins_over_what_the_client_prepended() {
        let trusted = vec!["10.0.0.0/24".parse().unwrap()];
        let chain = headers("6.6.6.6, 203.0.113.7, 10.0.0.9");
        assert_eq!(
            client_address("10.0.0.5".parse().unwrap(), &chain, &trusted),
            "203.0.113.7".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            client_address("10.0.0.5".parse().unwrap(), &HeaderMap::new(), &trusted),
            "10.0.0.5".parse::<std::net::IpAddr>().unwrap()
        );
    }
}
