//! Putting the service together and running it until SIGTERM or Ctrl-C.

use crate::api::{self, AppState};
use crate::arm::client::{ArmClient, RetryPolicy};
use crate::arm::credential::{ArmCredential, AzureEnv};
use crate::arm::nsg_writer::NsgWriter;
use crate::arm::sim::Sim;
use crate::audit::checkpoint::{run_retention, AuditSigner};
use crate::auth::dev::DevKey;
use crate::auth::{jwks, JwksCache, TokenValidator};
use crate::config::{redact_url, ArmCredentialKind, ArmMode, AuthConfig, Config, DatabaseUrl};
use crate::dispatch::enforce::Enforcer;
use crate::dispatch::grants::Grants;
use crate::dispatch::reconcile::Reconciler;
use crate::dispatch::Dispatcher;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::notify::deliver::Deliverer;
use crate::store::{self, DynStore};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The token validator the configuration calls for. In Entra mode this discovers the
/// tenant's keys now, so that a wrong authority or tenant stops start-up with a clear error
/// instead of failing every request later, and keeps them fresh in the background.
pub async fn token_validator(config: &Config) -> anyhow::Result<TokenValidator> {
    let validator = match &config.auth {
        AuthConfig::Dev => DevKey::load_or_create(&config.data_dir)?.validator(),
        AuthConfig::Entra {
            tenant_id,
            audiences,
            authority,
        } => {
            let cache = JwksCache::discover(authority, tenant_id, jwks::DEFAULT_MIN_REFRESH_INTERVAL)
                .await
                .context("Entra ID sign-in keys are unavailable (check JITGATE_ENTRA_AUTHORITY and JITGATE_ENTRA_TENANT_ID)")?;
            let cache = Arc::new(cache);
            spawn_key_refresh(Arc::downgrade(&cache));
            TokenValidator::entra(cache, authority.as_str(), tenant_id, audiences.clone())
        }
    };
    Ok(validator.with_leeway(config.token_leeway))
}

/// Refreshes the tenant's keys every hour, so that a key Entra retires stops being accepted
/// and a new one is there before its first token. Ends when the validator is dropped.
fn spawn_key_refresh(cache: std::sync::Weak<JwksCache>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(jwks::BACKGROUND_REFRESH_INTERVAL);
        tick.tick().await; // the first tick is immediate; discovery just fetched
        loop {
            tick.tick().await;
            let Some(cache) = cache.upgrade() else { return };
            // A failure is logged and kept in /readyz; the previous keys stay in use.
            let _ = cache.refresh().await;
        }
    });
}

pub fn app_state(
    config: Config,
    store: DynStore,
    auth: TokenValidator,
    dispatch: Option<Dispatcher>,
) -> AppState {
    AppState {
        limiter: api::limits::limiter(config.rate_limit),
        store,
        auth: Arc::new(auth),
        config: Arc::new(config),
        metrics: Arc::new(Metrics::default()),
        dispatch,
    }
}

/// The ARM side: the client, and the in-process simulator it talks to in `sim` mode.
pub struct Arm {
    pub client: ArmClient,
    pub sim: Option<Sim>,
}

/// Connects to ARM as configured. In `sim` mode this starts the seeded simulator on a
/// loopback port, guarded by a random token that only this process knows.
pub async fn arm(config: &Config) -> anyhow::Result<Arm> {
    match config.arm.mode {
        ArmMode::Sim => {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let sim = Sim::seeded().with_token(token.clone());
            arm_for_sim(config, sim, &token).await
        }
        ArmMode::Azure => {
            let credential = ArmCredential::new(&config.arm, &AzureEnv::from_env())?;
            let client = ArmClient::new(
                config.arm.endpoint.clone(),
                credential,
                RetryPolicy::default(),
            )?;
            Ok(Arm { client, sim: None })
        }
    }
}

/// Serves `sim` on a loopback port and returns a client for it that presents `token`.
pub async fn arm_for_sim(config: &Config, sim: Sim, token: &str) -> anyhow::Result<Arm> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the ARM simulator")?;
    let base = sim.spawn(listener)?;
    let mut arm_config = config.arm.clone();
    arm_config.credential = ArmCredentialKind::Static;
    arm_config.static_token = Some(token.to_string().into());
    let credential = ArmCredential::new(&arm_config, &AzureEnv::default())?;
    let client = ArmClient::new(base.parse()?, credential, RetryPolicy::quick())?;
    Ok(Arm {
        client,
        sim: Some(sim),
    })
}

/// The reconciler that repairs drift in the NSGs of applied policies.
pub fn reconciler(config: &Config, store: DynStore, arm: &Arm) -> Reconciler {
    Reconciler::new(
        store,
        arm.client.clone(),
        NsgWriter::new(arm.client.clone(), config.rule_priority_base),
    )
}

/// The dispatcher that carries out queued work: ARM writes through `arm`, and webhook deliveries.
pub fn dispatcher(config: &Config, store: DynStore, arm: &Arm) -> anyhow::Result<Dispatcher> {
    let writer = NsgWriter::new(arm.client.clone(), config.rule_priority_base);
    let inventory = inventory(config, store.clone(), arm);
    let enforcer = Enforcer::new(store.clone(), arm.client.clone(), writer.clone(), inventory);
    let grants = Grants::new(store.clone(), arm.client.clone(), writer);
    let webhooks = Deliverer::new(store.clone(), config.webhook_retry_base)?;
    Ok(Dispatcher::new(store, enforcer, grants, webhooks))
}

/// The inventory of the configured subscriptions (in `sim` mode, by default, the demo one).
pub fn inventory(config: &Config, store: DynStore, arm: &Arm) -> Inventory {
    let mut subscriptions = config.subscriptions.clone();
    if subscriptions.is_empty() && arm.sim.is_some() {
        subscriptions.push(crate::arm::sim::seed::DEMO_SUBSCRIPTION.to_string());
    }
    Inventory::new(arm.client.clone(), store, subscriptions)
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(limiter) = &state.limiter {
        api::limits::CallerLimiter::spawn_housekeeping(Arc::downgrade(limiter));
    }
    let app = api::router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// `jitgate serve`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = store::connect(&config.database).await.with_context(|| {
        format!(
            "opening the database {}",
            redact_url(database_url(&config.database))
        )
    })?;
    let auth = token_validator(&config).await?;
    let arm = arm(&config).await?;
    let dispatch = dispatcher(&config, store.clone(), &arm)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    announce(&config, addr);
    let state = app_state(config, store, auth, Some(dispatch.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let worker = tokio::spawn(dispatch.run(stopped(stop_rx.clone())));
    let refresher = tokio::spawn(
        inventory(state.config.as_ref(), state.store.clone(), &arm).run(stopped(stop_rx.clone())),
    );
    let repairer = tokio::spawn(
        reconciler(state.config.as_ref(), state.store.clone(), &arm).run(stopped(stop_rx.clone())),
    );
    let retention = match state.config.audit_retention {
        Some(retention) => {
            let signer = AuditSigner::load_or_create(&state.config.audit_signing_key)
                .context("loading the audit signing key (JITGATE_AUDIT_SIGNING_KEY)")?;
            Some(tokio::spawn(run_retention(
                state.store.clone(),
                signer,
                retention,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    serve(listener, state, shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = refresher.await;
    let _ = repairer.await;
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn database_url(db: &DatabaseUrl) -> &str {
    match db {
        DatabaseUrl::Sqlite(u) | DatabaseUrl::Postgres(u) => u,
    }
}

/// Says, loudly, what the service runs with, and in dev mode how to get a token.
fn announce(config: &Config, addr: SocketAddr) {
    tracing::info!(%addr, database = %redact_url(database_url(&config.database)), "jitgate {} listening", env!("CARGO_PKG_VERSION"));
    match config.arm.mode {
        ArmMode::Sim => tracing::warn!(
            "ARM: the built-in simulator, seeded with demo VMs in subscription {}",
            crate::arm::sim::seed::DEMO_SUBSCRIPTION
        ),
        ArmMode::Azure => tracing::info!(endpoint = %config.arm.endpoint, "ARM: Azure"),
    }
    if let AuthConfig::Entra {
        tenant_id,
        audiences,
        authority,
    } = &config.auth
    {
        tracing::info!(tenant = %tenant_id, audiences = ?audiences, authority = %authority, "Entra ID tokens accepted");
    }
    let arm_line = match config.arm.mode {
        ArmMode::Sim => format!(
            "ARM is the built-in simulator: demo VMs in subscription {}, resource group {}.",
            crate::arm::sim::seed::DEMO_SUBSCRIPTION,
            crate::arm::sim::seed::DEMO_RESOURCE_GROUP
        ),
        ArmMode::Azure => format!("ARM is {}.", config.arm.endpoint),
    };
    if let AuthConfig::Dev = config.auth {
        let key = DevKey::path(&config.data_dir);
        tracing::warn!(key = %key.display(), "DEV AUTH: tokens are signed by a local key; never expose this mode to a network");
        eprintln!(
            "\n  ==============================================================================\n  \
             jitgate is running in DEV AUTH mode. {arm_line}\n  \
             Tokens are signed by the local key {key}.\n  \
             Get one:   cargo run --release -- token --user alice --role Jit.Admin\n  \
             (or, from a built binary: jitgate token --user alice --role Jit.Admin)\n  \
             Try it:    curl -H \"Authorization: Bearer $TOKEN\" http://{addr}/v1/me\n  \
             ==============================================================================\n",
            key = key.display()
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing requests in flight");
}
