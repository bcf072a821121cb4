//! The HTTP API: one module per resource, each exposing its routes; this module puts them
//! together with the layers every request passes through.

pub mod audit;
pub mod chatops;
pub mod error;
mod export;
pub mod extract;
pub(crate) mod flow;
pub mod grants;
pub mod limits;
pub mod me;
mod middleware;
pub mod ops;
pub mod policies;
pub mod requests;
pub mod role_assignments;
pub mod vms;
pub mod webhooks;

use crate::auth::TokenValidator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::DynStore;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::Router;
use chatops::ChatSignatures;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The largest request body accepted. Policies and requests are a few KiB at most.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long one request may take before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub auth: Arc<TokenValidator>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Woken after a write that queued ARM work; `None` where no dispatcher runs here.
    pub dispatch: Option<crate::dispatch::Dispatcher>,
    /// The per-caller token buckets; `None` when `JITGATE_RATE_LIMIT=0`.
    pub limiter: Option<Arc<limits::CallerLimiter>>,
}

impl AppState {
    /// Tells this replica's dispatcher that a committed change queued a job.
    pub fn wake_dispatch(&self) {
        if let Some(d) = &self.dispatch {
            d.wake();
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jitgate",
        description = "Just-in-time access to Azure VM management ports: policies, access requests, grants and their audit trail."
    ),
    modifiers(&BearerAuth, &ChatSignatures),
    components(schemas(error::Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description =
            Some("An Entra ID access token (or, in dev mode, one from `jitgate token`).".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(policies::router())
        .merge(me::router())
        .merge(role_assignments::router())
        .merge(vms::router())
        .merge(requests::router())
        .merge(grants::router())
        .merge(audit::router())
        .merge(webhooks::router())
        .merge(ops::router())
        .merge(chatops::router())
}

/// The OpenAPI document, generated from the handlers themselves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes().split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_limits(&mut doc);
    doc
}

/// Every `/v1/` operation may be answered 429 (the caller's rate limit) and 431 (headers too
/// large) by layers in front of its handler, and every one taking JSON 400, 413 and 415 by the
/// body extractor: say so in each, once, here.
fn document_limits(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{Ref, ResponseBuilder};
    let problem = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build()
    };
    let too_many = ResponseBuilder::new()
        .description("The caller's rate limit (JITGATE_RATE_LIMIT) is spent; retry after Retry-After seconds")
        .content(error::PROBLEM_JSON, problem())
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds until the caller may send again"))
                .build(),
        )
        .build();
    let headers_too_large = ResponseBuilder::new()
        .description("The request headers add up to more than 32 KiB")
        .content(error::PROBLEM_JSON, problem())
        .build();
    let bad_body = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(error::PROBLEM_JSON, problem())
            .build()
    };
    let body_problems = [
        ("400", bad_body("The body is not valid JSON of this shape")),
        ("413", bad_body("The body is larger than 64 KiB")),
        ("415", bad_body("The body is not application/json")),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            // Every JSON body passes the same extractor, which answers these before the handler.
            let takes_json = op
                .request_body
                .as_ref()
                .is_some_and(|b| b.content.contains_key("application/json"));
            let responses = &mut op.responses.responses;
            if takes_json {
                for (status, response) in &body_problems {
                    responses
                        .entry((*status).into())
                        .or_insert_with(|| response.clone().into());
                }
            }
            responses
                .entry("429".into())
                .or_insert_with(|| too_many.clone().into());
            responses
                .entry("431".into())
                .or_insert_with(|| headers_too_large.clone().into());
        }
    }
}

/// The document as `jitgate openapi` prints it and `openapi/openapi.json` holds it.
pub fn openapi_json() -> String {
    let mut text =
        serde_json::to_string_pretty(&openapi()).expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

/// The whole service as one axum router.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let request_id = HeaderName::from_static("x-request-id");
    api.fallback(|| async { error::Problem::for_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(
            middleware::problem_for_bare_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ))
        .layer(axum::middleware::from_fn(limits::limit_header_size))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::record_metrics,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(middleware::request_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(middleware::panic_response)),
        )
        .with_state(state)
}
