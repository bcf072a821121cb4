//! A local OpenID Connect provider standing in for Entra ID: discovery and JWKS over HTTP,
//! tokens signed with the test's own RSA keys (`tests/fixtures`), and a count of JWKS fetches.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use jitgate::config::Settings;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub const TENANT: &str = "7c1e2b3a-0000-4000-8000-00000000a11e";
pub const OTHER_TENANT: &str = "9d9d9d9d-0000-4000-8000-0000000000bb";
/// The application (client) id of the jitgate app registration.
pub const CLIENT_ID: &str = "3f2a8c10-0000-4000-8000-000000000c1d";
pub const APP_ID_URI: &str = "api://jitgate-test";

pub const KEY_1: &str = "idp-key-1";
pub const KEY_2: &str = "idp-key-2";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct IdpState {
    tenant: String,
    base: String,
    /// The kids the JWKS publishes now.
    published: RwLock<Vec<&'static str>>,
    jwks_fetches: AtomicUsize,
    public: Value,
}

pub struct TestIdp {
    pub authority: String,
    state: Arc<IdpState>,
}

async fn discovery(State(s): State<Arc<IdpState>>, Path(tenant): Path<String>) -> Json<Value> {
    assert_eq!(tenant, s.tenant, "discovery asked for another tenant");
    Json(json!({
        "issuer": format!("{}/{}/v2.0", s.base, s.tenant),
        "jwks_uri": format!("{}/{}/discovery/v2.0/keys", s.base, s.tenant),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(s): State<Arc<IdpState>>) -> Json<Value> {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = s
        .published
        .read()
        .unwrap()
        .iter()
        .map(|kid| {
            json!({
                "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid,
                "n": s.public[kid]["n"], "e": s.public[kid]["e"],
            })
        })
        .collect();
    Json(json!({ "keys": keys }))
}

impl TestIdp {
    /// Starts the provider publishing [`KEY_1`].
    pub async fn start() -> TestIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState {
            tenant: TENANT.into(),
            base: base.clone(),
            published: RwLock::new(vec![KEY_1]),
            jwks_fetches: AtomicUsize::new(0),
            public: serde_json::from_slice(&fixture("idp-keys.json")).unwrap(),
        });
        let app = Router::new()
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/{tenant}/discovery/v2.0/keys", get(jwks))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestIdp {
            authority: base,
            state,
        }
    }

    /// The jitgate settings that trust this provider.
    pub fn settings(&self) -> Settings {
        Settings {
            auth_mode: Some("entra".into()),
            entra_tenant_id: Some(TENANT.into()),
            entra_audience: Some(format!("{APP_ID_URI},{CLIENT_ID}")),
            entra_authority: Some(self.authority.clone()),
            ..Default::default()
        }
    }

    /// Publishes exactly these keys from now on (a rotation).
    pub fn publish(&self, kids: &[&'static str]) {
        *self.state.published.write().unwrap() = kids.to_vec();
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn v2_issuer(&self) -> String {
        format!("{}/{TENANT}/v2.0", self.authority)
    }

    /// The claims of a v2 delegated (user) access token for `oid`.
    pub fn user_claims(&self, oid: &str, upn: &str, roles: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "aud": APP_ID_URI, "iss": self.v2_issuer(), "tid": TENANT, "ver": "2.0",
            "iat": now, "nbf": now, "exp": now + 3600,
            "oid": oid, "sub": format!("pairwise-{oid}"), "scp": "access_as_user",
            "preferred_username": upn, "name": "Test User", "roles": roles,
        })
    }

    /// The claims of a v1 delegated access token for `oid`, as Entra issues them to apps whose
    /// manifest asks for v1 tokens (the audience is then often the client id).
    pub fn v1_user_claims(&self, oid: &str, upn: &str, roles: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "aud": CLIENT_ID, "iss": format!("https://sts.windows.net/{TENANT}/"), "tid": TENANT, "ver": "1.0",
            "iat": now, "nbf": now, "exp": now + 3600,
            "oid": oid, "sub": format!("pairwise-{oid}"), "scp": "access_as_user",
            "upn": upn, "unique_name": upn, "roles": roles,
        })
    }

    /// The claims of an app-only token for a service principal `oid`.
    pub fn app_claims(&self, oid: &str, roles: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "aud": APP_ID_URI, "iss": self.v2_issuer(), "tid": TENANT, "ver": "2.0",
            "iat": now, "nbf": now, "exp": now + 3600,
            "oid": oid, "sub": oid, "idtyp": "app", "azp": "chatops-bot-client", "roles": roles,
        })
    }

    /// Signs `claims` with fixture key `kid` (RS256).
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(&fixture(&format!("{kid}.pem"))).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// Signs `claims` with the current key.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(KEY_1, claims)
    }

    /// The public key of `kid` in PEM, as an attacker can fetch it from the JWKS.
    pub fn public_pem(&self, kid: &str) -> Vec<u8> {
        fixture(&format!("{kid}.pub.pem"))
    }
}
