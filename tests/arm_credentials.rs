//! `ArmCredential` over real HTTP against a local token endpoint standing in for Entra ID,
//! IMDS and App Service's `IDENTITY_ENDPOINT`: what each flow sends, caching and refresh,
//! rotation of the federated token file, errors without secrets, and one fetch for many
//! concurrent callers.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use jitgate::arm::credential::{ArmCredential, AzureEnv, CredentialError};
use jitgate::config::{ArmConfig, ArmCredentialKind, ArmMode};
use reqwest::Url;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TENANT: &str = "7c1e2b3a-0000-4000-8000-00000000a11e";
const CLIENT_ID: &str = "3f2a8c10-0000-4000-8000-000000000c1d";
/// Holds characters that form encoding must escape.
const SECRET: &str = "s3cr+t/w=th&chars~";
const IDENTITY_HEADER: &str = "identity-header-value";
const SCOPE: &str = "https://management.azure.com/.default";
const RESOURCE: &str = "https://management.azure.com/";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

type Pairs = Vec<(String, String)>;

/// One request the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: Pairs,
    form: Pairs,
    headers: HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Given a request and its number (from 1), the status and JSON body to answer with.
type Responder = Box<dyn Fn(&Seen, usize) -> (StatusCode, Value) + Send + Sync>;

struct Endpoint {
    seen: Mutex<Vec<Seen>>,
    respond: Responder,
    /// How long each answer takes, so that concurrent callers overlap a fetch.
    delay: Duration,
}

impl Endpoint {
    async fn answer(&self, seen: Seen) -> (StatusCode, Json<Value>) {
        let n = {
            let mut all = self.seen.lock().unwrap();
            all.push(seen.clone());
            all.len()
        };
        tokio::time::sleep(self.delay).await;
        let (status, body) = (self.respond)(&seen, n);
        (status, Json(body))
    }
}

async fn entra(
    State(e): State<Arc<Endpoint>>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<Pairs>,
) -> (StatusCode, Json<Value>) {
    let path = uri.path().to_string();
    e.answer(Seen {
        path,
        query: vec![],
        form,
        headers,
    })
    .await
}

async fn managed(
    State(e): State<Arc<Endpoint>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<Pairs>,
) -> (StatusCode, Json<Value>) {
    let path = uri.path().to_string();
    e.answer(Seen {
        path,
        query,
        form: vec![],
        headers,
    })
    .await
}

struct TokenServer {
    base: String,
    endpoint: Arc<Endpoint>,
}

impl TokenServer {
    async fn start(respond: Responder) -> TokenServer {
        TokenServer::start_with_delay(respond, Duration::ZERO).await
    }

    async fn start_with_delay(respond: Responder, delay: Duration) -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let endpoint = Arc::new(Endpoint {
            seen: Mutex::new(vec![]),
            respond,
            delay,
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(entra))
            .route("/metadata/identity/oauth2/token", get(managed))
            .route("/msi/token", get(managed))
            .with_state(endpoint.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TokenServer { base, endpoint }
    }

    fn seen(&self) -> Vec<Seen> {
        self.endpoint.seen.lock().unwrap().clone()
    }
}

/// Entra's success shape: `expires_in` a number, tokens numbered by request.
fn entra_ok(expires_in: impl Fn(usize) -> i64 + Send + Sync + 'static) -> Responder {
    Box::new(move |_, n| {
        (
            StatusCode::OK,
            json!({
                "token_type": "Bearer",
                "expires_in": expires_in(n),
                "ext_expires_in": expires_in(n),
                "access_token": format!("token-{n}"),
            }),
        )
    })
}

/// IMDS: every number a string, and 400 without `Metadata: true`, as the real one does.
fn imds(expires_on_in: i64) -> Responder {
    Box::new(move |seen, n| {
        if seen.header("metadata") != Some("true") {
            return (
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "invalid_request",
                    "error_description": "Required metadata header not specified",
                }),
            );
        }
        let now = Utc::now().timestamp();
        (
            StatusCode::OK,
            json!({
                "access_token": format!("token-{n}"),
                "client_id": CLIENT_ID,
                "expires_in": "86399",
                "expires_on": (now + expires_on_in).to_string(),
                "ext_expires_in": "86399",
                "not_before": (now - 5).to_string(),
                "resource": RESOURCE,
                "token_type": "Bearer",
            }),
        )
    })
}

/// App Service 2019-08-01: `expires_on` only, 400 without the identity header.
fn app_service() -> Responder {
    Box::new(|seen, n| {
        if seen.header("x-identity-header") != Some(IDENTITY_HEADER) {
            return (
                StatusCode::BAD_REQUEST,
                json!({"statusCode": 400, "message": "missing X-IDENTITY-HEADER"}),
            );
        }
        (
            StatusCode::OK,
            json!({
                "access_token": format!("token-{n}"),
                "expires_on": Utc::now().timestamp() + 3600,
                "resource": RESOURCE,
                "token_type": "Bearer",
                "client_id": CLIENT_ID,
            }),
        )
    })
}

fn arm(kind: ArmCredentialKind, imds_endpoint: &str) -> ArmConfig {
    ArmConfig {
        mode: ArmMode::Azure,
        endpoint: Url::parse("https://management.azure.com").unwrap(),
        credential: kind,
        static_token: None,
        imds_endpoint: Url::parse(imds_endpoint).unwrap(),
    }
}

fn entra_env(server: &TokenServer) -> AzureEnv {
    AzureEnv {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SECRET.into()),
        authority_host: Some(server.base.clone()),
        ..Default::default()
    }
}

fn client_secret_credential(server: &TokenServer) -> ArmCredential {
    let config = arm(ArmCredentialKind::ClientSecret, "http://127.0.0.1:9");
    ArmCredential::new(&config, &entra_env(server)).unwrap()
}

fn pairs(items: &[(&str, &str)]) -> Pairs {
    let mut pairs: Pairs = items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.sort();
    pairs
}

fn sorted(mut pairs: Pairs) -> Pairs {
    pairs.sort();
    pairs
}

async fn token(credential: &ArmCredential) -> String {
    credential
        .token()
        .await
        .unwrap()
        .expose_secret()
        .to_string()
}

#[tokio::test]
async fn client_secret_posts_the_form_and_caches_the_token() {
    let server = TokenServer::start(entra_ok(|_| 3599)).await;
    let credential = client_secret_credential(&server);
    assert_eq!(credential.kind(), "client-secret");

    assert_eq!(token(&credential).await, "token-1");
    assert_eq!(token(&credential).await, "token-1");
    assert_eq!(credential.fetches(), 1);

    let seen = server.seen();
    assert_eq!(seen.len(), 1, "the second call is served from the cache");
    assert_eq!(seen[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen[0].header("user-agent"),
        Some(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        sorted(seen[0].form.clone()),
        pairs(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", SCOPE),
        ])
    );
}

#[tokio::test]
async fn a_token_within_the_refresh_margin_is_fetched_again() {
    // The first token has 4 minutes left, inside the 5-minute margin; the second an hour.
    let server = TokenServer::start(entra_ok(|n| if n == 1 { 240 } else { 3599 })).await;
    let credential = client_secret_credential(&server);

    assert_eq!(token(&credential).await, "token-1");
    assert_eq!(token(&credential).await, "token-2");
    assert_eq!(token(&credential).await, "token-2");
    assert_eq!(credential.fetches(), 2);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn imds_sends_the_metadata_header_and_reads_string_expiry() {
    let server = TokenServer::start(imds(3600)).await;
    let url = format!("{}/metadata/identity/oauth2/token", server.base);
    let bare = reqwest::get(&url).await.unwrap();
    assert_eq!(
        bare.status(),
        400,
        "the stand-in refuses a request without Metadata: true"
    );

    // That refused request was the endpoint's first, so the credential's token is token-2.
    let config = arm(ArmCredentialKind::ManagedIdentity, &server.base);
    let credential = ArmCredential::new(&config, &AzureEnv::default()).unwrap();
    assert_eq!(credential.kind(), "managed-identity");
    assert_eq!(token(&credential).await, "token-2");
    assert_eq!(
        token(&credential).await,
        "token-2",
        "expires_on, a string an hour away, keeps the token cached"
    );
    assert_eq!(credential.fetches(), 1);

    let seen = &server.seen()[1];
    assert_eq!(seen.path, "/metadata/identity/oauth2/token");
    assert_eq!(seen.header("metadata"), Some("true"));
    assert_eq!(
        sorted(seen.query.clone()),
        pairs(&[("api-version", "2018-02-01"), ("resource", RESOURCE)]),
        "no client_id for the system-assigned identity"
    );
}

#[tokio::test]
async fn imds_expires_on_wins_over_expires_in() {
    // expires_in says a day, expires_on two minutes: the token is inside the margin.
    let server = TokenServer::start(imds(120)).await;
    let config = arm(ArmCredentialKind::ManagedIdentity, &server.base);
    let credential = ArmCredential::new(&config, &AzureEnv::default()).unwrap();

    assert_eq!(token(&credential).await, "token-1");
    assert_eq!(token(&credential).await, "token-2");
    assert_eq!(credential.fetches(), 2);
}

#[tokio::test]
async fn imds_passes_the_user_assigned_client_id() {
    let server = TokenServer::start(imds(3600)).await;
    let config = arm(ArmCredentialKind::ManagedIdentity, &server.base);
    let env = AzureEnv {
        client_id: Some(CLIENT_ID.into()),
        ..Default::default()
    };
    let credential = ArmCredential::new(&config, &env).unwrap();
    assert_eq!(token(&credential).await, "token-1");

    assert_eq!(
        sorted(server.seen()[0].query.clone()),
        pairs(&[
            ("api-version", "2018-02-01"),
            ("client_id", CLIENT_ID),
            ("resource", RESOURCE),
        ])
    );
}

#[tokio::test]
async fn identity_endpoint_flow_sends_the_identity_header() {
    let server = TokenServer::start(app_service()).await;
    // IMDS is served too, so a request that went there would be seen.
    let config = arm(ArmCredentialKind::ManagedIdentity, &server.base);
    let env = AzureEnv {
        identity_endpoint: Some(format!("{}/msi/token", server.base)),
        identity_header: Some(IDENTITY_HEADER.into()),
        ..Default::default()
    };
    let credential = ArmCredential::new(&config, &env).unwrap();
    assert_eq!(credential.kind(), "managed-identity");

    assert_eq!(token(&credential).await, "token-1");
    assert_eq!(
        token(&credential).await,
        "token-1",
        "a numeric expires_on an hour away keeps the token cached"
    );
    assert_eq!(credential.fetches(), 1);

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/msi/token");
    assert_eq!(seen[0].header("x-identity-header"), Some(IDENTITY_HEADER));
    assert_eq!(seen[0].header("metadata"), None);
    assert_eq!(
        sorted(seen[0].query.clone()),
        pairs(&[("api-version", "2019-08-01"), ("resource", RESOURCE)])
    );
}

#[tokio::test]
async fn workload_identity_rereads_the_rotated_assertion() {
    // Each token has a minute left, so every call fetches and reads the file.
    let server = TokenServer::start(entra_ok(|_| 60)).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "assertion-one\n").unwrap();
    let env = AzureEnv {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT_ID.into()),
        federated_token_file: Some(token_file.clone()),
        authority_host: Some(server.base.clone()),
        ..Default::default()
    };
    let config = arm(ArmCredentialKind::WorkloadIdentity, "http://127.0.0.1:9");
    let credential = ArmCredential::new(&config, &env).unwrap();
    assert_eq!(credential.kind(), "workload-identity");

    assert_eq!(token(&credential).await, "token-1");
    std::fs::write(&token_file, "assertion-two").unwrap();
    assert_eq!(token(&credential).await, "token-2");

    let seen = server.seen();
    assert_eq!(seen[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        sorted(seen[0].form.clone()),
        pairs(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", "assertion-one"),
        ])
    );
    let assertion = |s: &Seen| {
        s.form
            .iter()
            .find(|(k, _)| k == "client_assertion")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(assertion(&seen[1]).as_deref(), Some("assertion-two"));
}

#[tokio::test]
async fn an_entra_error_surfaces_its_description_without_the_secret() {
    // This endpoint quotes the secret it was sent back in its description.
    let respond: Responder = Box::new(|seen, _| {
        let sent = seen
            .form
            .iter()
            .find(|(k, _)| k == "client_secret")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        (
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_client",
                "error_description": format!(
                    "AADSTS7000215: Invalid client secret provided ('{sent}'). Ensure the secret \
                     being sent in the request is the client secret value, not the client secret \
                     ID.\r\nTrace ID: 0c4d\r\nCorrelation ID: 9e1f\r\nTimestamp: 2025-01-01 00:00:00Z"
                ),
                "error_codes": [7000215],
            }),
        )
    });
    let server = TokenServer::start(respond).await;
    let credential = client_secret_credential(&server);

    let err = credential.token().await.unwrap_err();
    match &err {
        CredentialError::TokenEndpoint {
            status,
            error,
            description,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error, "invalid_client");
            assert!(description.starts_with("AADSTS7000215: Invalid client secret provided"));
            assert!(description.contains("Trace ID: 0c4d"), "{description}");
        }
        other => panic!("expected TokenEndpoint, got {other:?}"),
    }
    let display = format!("{err}");
    let debug = format!("{err:?}");
    assert!(!display.contains(SECRET), "{display}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!display.contains('\n'), "{display}");
    assert_eq!(credential.fetches(), 0);

    assert!(credential.token().await.is_err());
    assert_eq!(server.seen().len(), 2, "a failure is not cached");
}

#[tokio::test]
async fn client_secret_without_the_secret_fails_in_new_naming_the_variable() {
    let env = AzureEnv {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT_ID.into()),
        ..Default::default()
    };
    let config = arm(ArmCredentialKind::ClientSecret, "http://127.0.0.1:9");
    let err = ArmCredential::new(&config, &env).unwrap_err();
    assert!(matches!(err, CredentialError::Misconfigured(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("AZURE_CLIENT_SECRET"), "{message}");
    assert!(!message.contains("AZURE_TENANT_ID"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn concurrent_callers_on_a_cold_cache_share_one_fetch() {
    let server =
        TokenServer::start_with_delay(entra_ok(|_| 3599), Duration::from_millis(200)).await;
    let credential = client_secret_credential(&server);

    let callers: Vec<_> = (0..10)
        .map(|_| {
            let credential = credential.clone();
            tokio::spawn(async move { token(&credential).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), "token-1");
    }
    assert_eq!(credential.fetches(), 1);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = AzureEnv {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SECRET.into()),
        authority_host: Some(closed),
        ..Default::default()
    };
    let config = arm(ArmCredentialKind::ClientSecret, "http://127.0.0.1:9");
    let credential = ArmCredential::new(&config, &env).unwrap();

    let err = credential.token().await.unwrap_err();
    assert!(matches!(err, CredentialError::Unreachable(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET), "{err:?}");
}
