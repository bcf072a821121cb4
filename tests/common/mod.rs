//! Test harness: a real server on 127.0.0.1:0 over a real database (a fresh SQLite file, or a
//! fresh PostgreSQL schema when `JITGATE_TEST_POSTGRES_URL` is set), with real signed tokens.
#![allow(dead_code)]

pub mod idp;
pub mod lifecycle;
pub mod process;
pub mod receiver;

use jitgate::auth::dev::{DevKey, DevTokenSpec};
use jitgate::config::{Config, Settings};
use jitgate::domain::Scope;
use jitgate::rbac::Role;
use jitgate::store::{self, DynStore};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::Connection;
use std::net::SocketAddr;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000a1";
/// The bearer token the test ARM simulators accept.
pub const SIM_TOKEN: &str = "sim-test-token";

/// A database of the test's own, removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        TestDb {
            url: format!("sqlite://{}", dir.path().join("jitgate.db").display()),
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// Another handle on a database that something else owns (a second replica).
    pub fn shared(url: &str) -> TestDb {
        TestDb {
            url: url.to_string(),
            _dir: None,
            pg_schema: None,
        }
    }

    /// A fresh schema in the test Postgres, or `None` when `JITGATE_TEST_POSTGRES_URL` is unset.
    pub async fn postgres() -> Option<TestDb> {
        let base = std::env::var("JITGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let schema = format!("jt_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to JITGATE_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create schema");
        conn.close().await.ok();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            _dir: None,
            pg_schema: Some((base, schema)),
        })
    }

    /// Runs `sql` on the database directly, as someone with the database's credentials could:
    /// `Ok` with the rows it touched, or the database's refusal.
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
            let done = sqlx::raw_sql(sql).execute(&mut conn).await;
            conn.close().await.ok();
            Ok(done?.rows_affected())
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await?;
            let done = sqlx::raw_sql(sql).execute(&mut conn).await;
            conn.close().await.ok();
            Ok(done?.rows_affected())
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_schema.is_some()
    }

    pub async fn store(&self) -> DynStore {
        store::connect(&jitgate::config::DatabaseUrl::parse(&self.url).unwrap())
            .await
            .expect("open store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg_schema.take() {
            // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut conn)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// A running jitgate.
pub struct TestApp {
    /// The ARM simulator, when the app was started with one and its dispatcher.
    pub sim: Option<jitgate::arm::sim::Sim>,
    /// The inventory over `sim`, to refresh on demand.
    pub inventory: Option<jitgate::inventory::Inventory>,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub key: DevKey,
    pub store: DynStore,
    pub db: TestDb,
    _data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    stop_dispatch: tokio::sync::watch::Sender<bool>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_on(TestDb::sqlite(), Settings::default()).await
    }

    pub async fn spawn_with_min_duration(min: &str) -> TestApp {
        let settings = Settings {
            min_access_duration: Some(min.into()),
            ..Default::default()
        };
        Self::spawn_on(TestDb::sqlite(), settings).await
    }

    /// Starts a server on `db`; `settings` win over the harness's defaults
    /// (an ephemeral port, a temp data dir, `JITGATE_MIN_ACCESS_DURATION=PT1S`, a rate limit
    /// of 100000 a second).
    pub async fn spawn_on(db: TestDb, settings: Settings) -> TestApp {
        Self::start(db, settings, None).await
    }

    /// A server whose writes reach `sim` through a running dispatcher, as `serve` runs it.
    pub async fn spawn_with_arm(sim: jitgate::arm::sim::Sim) -> TestApp {
        Self::start(TestDb::sqlite(), Settings::default(), Some(sim)).await
    }

    pub async fn spawn_on_with_arm(
        db: TestDb,
        settings: Settings,
        sim: jitgate::arm::sim::Sim,
    ) -> TestApp {
        Self::start(db, settings, Some(sim)).await
    }

    async fn start(db: TestDb, settings: Settings, sim: Option<jitgate::arm::sim::Sim>) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let settings = settings.or(Settings {
            database_url: Some(db.url.clone()),
            data_dir: Some(data_dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            min_access_duration: Some("PT1S".into()),
            // Tests make many requests quickly as one caller; the limit's own tests set theirs.
            rate_limit: Some("100000".into()),
            rate_limit_burst: Some("100000".into()),
            ..Default::default()
        });
        let config: Config = settings.resolve().expect("test config");
        let key = DevKey::load_or_create(&config.data_dir).unwrap();
        let store = db.store().await;
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let validator = jitgate::server::token_validator(&config)
            .await
            .expect("token validator");
        let (tx, rx) = oneshot::channel::<()>();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut inventory_handle = None;
        let dispatch = match &sim {
            Some(sim) => {
                let arm = jitgate::server::arm_for_sim(&config, sim.clone(), SIM_TOKEN)
                    .await
                    .expect("ARM simulator");
                let dispatch =
                    jitgate::server::dispatcher(&config, store.clone(), &arm).expect("dispatcher");
                // The inventory as `serve` reads it at start, but before the first request.
                let inventory = jitgate::server::inventory(&config, store.clone(), &arm);
                inventory.refresh_all().await.expect("inventory");
                inventory_handle = Some(inventory);
                let mut stop = stop_rx.clone();
                tokio::spawn(dispatch.clone().run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                }));
                Some(dispatch)
            }
            None => None,
        };
        let state = jitgate::server::app_state(config, store.clone(), validator, dispatch);
        tokio::spawn(jitgate::server::serve(listener, state, async {
            let _ = rx.await;
        }));
        TestApp {
            sim,
            inventory: inventory_handle,
            stop_dispatch: stop_tx,
            addr,
            client: reqwest::Client::new(),
            key,
            store,
            db,
            _data_dir: data_dir,
            shutdown: Some(tx),
        }
    }

    /// A server that accepts the Entra-style tokens of `idp` (and no dev tokens).
    pub async fn spawn_entra(idp: &idp::TestIdp) -> TestApp {
        Self::spawn_on(TestDb::sqlite(), idp.settings()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A token for `user` with `roles`, tenant-wide.
    pub fn token(&self, user: &str, roles: &[Role]) -> String {
        self.key.mint(&DevTokenSpec::user(user, roles)).unwrap()
    }

    /// A token for `user` with `roles` narrowed to `scopes`.
    pub fn scoped_token(&self, user: &str, roles: &[Role], scopes: &[&str]) -> String {
        let mut spec = DevTokenSpec::user(user, roles);
        spec.scopes = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
        self.key.mint(&spec).unwrap()
    }

    pub fn admin(&self) -> String {
        self.token("admin@example.com", &[Role::Admin])
    }

    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn put_policy(&self, token: &str, vm: &str, body: Value) -> Response {
        self.request(Method::PUT, &policy_path(vm), token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` and returns the JSON body, asserting a 200.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let response = self.request(Method::GET, path, token).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// PUTs a role assignment `id` of `role` at `scope` to a principal.
    pub async fn assign(
        &self,
        token: &str,
        id: &str,
        principal: (&str, &str),
        role: Role,
        scope: &str,
    ) -> Response {
        self.request(Method::PUT, &format!("/v1/role-assignments/{id}"), token)
            .json(&serde_json::json!({
                "principalId": principal.0,
                "principalType": principal.1,
                "role": role.as_str(),
                "scope": scope,
            }))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_policy(&self, token: &str, vm: &str) -> Response {
        self.request(Method::GET, &policy_path(vm), token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.stop_dispatch.send(true);
    }
}

/// The policy URL of VM `name` in resource group `rg-web` of [`SUB`]; `name` may be
/// `rg/vm` to pick another resource group.
pub fn policy_path(vm: &str) -> String {
    format!("/v1{}/policy", vm_path(vm))
}

pub fn vm_path(vm: &str) -> String {
    let (rg, name) = vm.split_once('/').unwrap_or(("rg-web", vm));
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/virtualMachines/{name}")
}

pub fn vm_id(vm: &str) -> String {
    let (rg, name) = vm.split_once('/').unwrap_or(("rg-web", vm));
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}")
}

/// Asserts a problem+json response with `status`, returning its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:jitgate:problem:"));
    assert!(body["title"].is_string());
    body
}

/// Asserts that `events` form one unbroken hash chain from the first event on.
pub fn assert_chain_ok(events: &[jitgate::audit::AuditEvent]) {
    let mut verifier = jitgate::audit::ChainVerifier::default();
    for e in events {
        assert!(verifier.push(e), "chain broken at seq {}", e.seq);
    }
    assert!(verifier.report().ok);
}

/// The `field`s of a validation problem.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}
