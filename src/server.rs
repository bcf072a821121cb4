//! Putting the service together and running it until SIGTERM or Ctrl-C.

use crate::api::{self, AppState};
use crate::auth::dev::DevKey;
use crate::auth::{jwks, JwksCache, TokenValidator};
use crate::config::{redact_url, ArmMode, AuthConfig, Config, DatabaseUrl};
use crate::metrics::Metrics;
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

pub fn app_state(config: Config, store: DynStore, auth: TokenValidator) -> AppState {
    AppState {
        store,
        auth: Arc::new(auth),
        config: Arc::new(config),
        metrics: Arc::new(Metrics::default()),
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
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
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    announce(&config, addr);
    let state = app_state(config, store, auth);
    serve(listener, state, shutdown_signal()).await?;
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
    let arm = match config.arm.mode {
        ArmMode::Sim => "none: the built-in ARM simulator is not part of this build yet; policies stay `pending`",
        ArmMode::Azure => "none: the ARM client is not part of this build yet; policies stay `pending`",
    };
    tracing::warn!("ARM: {arm}");
    if let AuthConfig::Entra {
        tenant_id,
        audiences,
        authority,
    } = &config.auth
    {
        tracing::info!(tenant = %tenant_id, audiences = ?audiences, authority = %authority, "Entra ID tokens accepted");
    }
    if let AuthConfig::Dev = config.auth {
        let key = DevKey::path(&config.data_dir);
        tracing::warn!(key = %key.display(), "DEV AUTH: tokens are signed by a local key; never expose this mode to a network");
        eprintln!(
            "\n  ==============================================================================\n  \
             jitgate is running in DEV AUTH mode with ARM: none.\n  \
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
