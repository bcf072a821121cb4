//! The one error type of the HTTP API, rendered as `application/problem+json` (RFC 9457).
//!
//! Expected failures carry their status and a detail written for the caller; unexpected ones
//! are logged once, with the cause, and rendered as a bare 500 that reveals nothing.

use crate::auth::AuthError;
use crate::domain::{FieldError, FieldErrors};
use crate::rbac::Denied;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, stable for clients to branch on.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Validation problems: one per offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &str,
        detail: impl Into<Option<String>>,
    ) -> Self {
        Problem {
            kind: format!("urn:jitgate:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: vec![],
        }
    }

    /// A problem for a status that some layer produced without a body (405, 408, 404 ...).
    pub fn for_status(status: StatusCode) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        let slug = title.to_ascii_lowercase().replace(' ', "-");
        Problem::new(status, &slug, title, None)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized: {0}")]
    Unauthorized(AuthError),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("payload too large")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The caller's rate limit is spent; a token is back in `retry_after` seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    /// The service is too busy to take on more work for now.
    #[error("overloaded: {detail}")]
    Overloaded { retry_after: u64, detail: String },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::Validation(e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e)
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError::Forbidden(d.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("no such resource".into()),
            StoreError::PreconditionFailed => ApiError::PreconditionFailed(
                "the resource's current ETag does not match If-Match / If-None-Match".into(),
            ),
            StoreError::Conflict(why) => ApiError::Conflict(why),
            StoreError::Unprocessable(why) => ApiError::Unprocessable(why),
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::InvalidInput(why) => ApiError::BadRequest(why),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let problem = match self {
            ApiError::Validation(errors) => Problem {
                detail: Some(errors.to_string()),
                errors: errors.0,
                ..Problem::new(
                    S::BAD_REQUEST,
                    "validation",
                    "The request is not valid",
                    None,
                )
            },
            ApiError::BadRequest(detail) => Problem::new(
                S::BAD_REQUEST,
                "bad-request",
                "The request is malformed",
                detail,
            ),
            ApiError::Unauthorized(reason) => {
                let mut response = Problem::new(
                    S::UNAUTHORIZED,
                    "unauthorized",
                    "A valid bearer token is required",
                    reason.to_string(),
                )
                .into_response();
                let challenge =
                    format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                return response;
            }
            ApiError::Forbidden(detail) => Problem::new(
                S::FORBIDDEN,
                "forbidden",
                "The caller lacks the role for this",
                detail,
            ),
            ApiError::NotFound(detail) => {
                Problem::new(S::NOT_FOUND, "not-found", "Not found", detail)
            }
            ApiError::PreconditionFailed(detail) => Problem::new(
                S::PRECONDITION_FAILED,
                "precondition-failed",
                "The resource has changed",
                detail,
            ),
            ApiError::Conflict(detail) => Problem::new(
                S::CONFLICT,
                "conflict",
                "The request conflicts with the resource's current state",
                detail,
            ),
            ApiError::Unprocessable(detail) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "The request contradicts an earlier one",
                detail,
            ),
            ApiError::PayloadTooLarge(detail) => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "The body is too large",
                detail,
            ),
            ApiError::UnsupportedMediaType(detail) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Send application/json",
                detail,
            ),
            ApiError::Unavailable(why) => {
                tracing::warn!(error = %why, "service unavailable");
                Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The service cannot answer now; try again",
                    None,
                )
            }
            ApiError::TooManyRequests { retry_after } => {
                return with_retry_after(
                    Problem::new(
                        S::TOO_MANY_REQUESTS,
                        "rate-limited",
                        "Too many requests",
                        format!(
                            "this caller's request rate is over its limit; retry in {retry_after}s"
                        ),
                    ),
                    retry_after,
                );
            }
            ApiError::Overloaded {
                retry_after,
                detail,
            } => {
                tracing::warn!(%detail, "overloaded: refusing new work");
                return with_retry_after(
                    Problem::new(
                        S::SERVICE_UNAVAILABLE,
                        "overloaded",
                        "The service is too busy to take this on now; try again",
                        detail,
                    ),
                    retry_after,
                );
            }
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "unexpected error");
                Problem::new(S::INTERNAL_SERVER_ERROR, "internal", "Internal error", None)
            }
        };
        problem.into_response()
    }
}

fn with_retry_after(problem: Problem, secs: u64) -> Response {
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}
