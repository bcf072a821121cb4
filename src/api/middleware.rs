//! Layers every request passes through.

use super::error::Problem;
use super::AppState;
use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use std::any::Any;
use std::time::Instant;

/// Some layers (405 from the router, 408 from the timeout, a rejection we did not wrap) answer
/// with an empty body. Clients were promised problem+json for every error: give them one.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> axum::response::Response {
    let response = next.run(request).await;
    let status = response.status();
    let bare = response.headers().get(header::CONTENT_TYPE).is_none()
        || response.body().size_hint().exact() == Some(0);
    if (status.is_client_error() || status.is_server_error()) && bare {
        let (mut parts, _) = response.into_parts();
        let problem = Problem::for_status(status).into_response();
        parts.headers.extend(problem.headers().clone());
        parts.headers.remove(header::CONTENT_LENGTH);
        return axum::response::Response::from_parts(parts, problem.into_body());
    }
    response
}

/// Counts requests and times them per route template (never the raw path, whose VM names
/// would give every VM its own time series).
pub async fn record_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

pub fn request_span(request: &Request<Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %request_id)
}

pub fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a handler panicked");
    Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}
