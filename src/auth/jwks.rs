//! The Entra tenant's signing keys: found by OIDC discovery, fetched from `jwks_uri`, cached,
//! and refreshed when a token names a key we do not have (Entra rotates keys without notice).
//!
//! An unknown `kid` may be a rotation or an attacker's invention, so such refreshes are rate
//! limited: at most one per `min_refresh_interval`, and concurrent requests share one fetch.
//! A failed refresh keeps the keys we have.

use super::{KeySet, VerifyingKey};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// How often an unknown `kid` may trigger a fetch.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// How often keys are refreshed in the background regardless.
pub const BACKGROUND_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct OpenIdConfiguration {
    jwks_uri: String,
}

/// What `/readyz` says about the key set.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySetStatus {
    /// `dev` (the local key) or `entra` (the tenant's JWKS).
    pub source: String,
    pub keys: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetches: Option<u64>,
    /// The last refresh's error, if it failed (the previous keys stay in use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub struct JwksCache {
    http: reqwest::Client,
    jwks_uri: Url,
    keys: RwLock<Arc<KeySet>>,
    fetched_at: RwLock<Option<DateTime<Utc>>>,
    last_error: RwLock<Option<String>>,
    /// Held while fetching; remembers when an unknown kid last caused a fetch.
    refresh_gate: tokio::sync::Mutex<Option<Instant>>,
    min_refresh_interval: Duration,
    fetches: AtomicU64,
}

impl JwksCache {
    /// Discovers `jwks_uri` at `{authority}/{tenant}/v2.0/.well-known/openid-configuration`
    /// and fetches the keys; fails when either step fails or no usable key is published.
    pub async fn discover(
        authority: &Url,
        tenant: &str,
        min_refresh_interval: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10).min(FETCH_TIMEOUT))
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let discovery = format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            authority.as_str().trim_end_matches('/')
        );
        let config: OpenIdConfiguration = fetch_json(&http, &discovery)
            .await
            .with_context(|| format!("OIDC discovery at {discovery} failed"))?;
        let jwks_uri = Url::parse(&config.jwks_uri)
            .with_context(|| format!("{discovery} names an invalid jwks_uri"))?;
        let cache = JwksCache {
            http,
            jwks_uri,
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetched_at: RwLock::new(None),
            last_error: RwLock::new(None),
            refresh_gate: tokio::sync::Mutex::new(None),
            min_refresh_interval,
            fetches: AtomicU64::new(0),
        };
        cache
            .refresh()
            .await
            .with_context(|| format!("fetching the signing keys from {}", cache.jwks_uri))?;
        Ok(cache)
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().expect("key set lock").clone()
    }

    /// Fetches the key set now, replacing the cached one on success.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(keys) => {
                *self.keys.write().expect("key set lock") = Arc::new(keys);
                *self.fetched_at.write().expect("lock") = Some(Utc::now());
                *self.last_error.write().expect("lock") = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), jwks_uri = %self.jwks_uri, "signing key refresh failed; keeping the previous keys");
                *self.last_error.write().expect("lock") = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Called for a token whose `kid` is not cached: refreshes once, unless a refresh for an
    /// unknown kid happened within the rate limit or another request just did it.
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> Arc<KeySet> {
        let mut last = self.refresh_gate.lock().await;
        let current = self.keys();
        if current.find(kid).is_some() {
            return current; // someone refreshed while we waited
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            return current;
        }
        *last = Some(Instant::now());
        let _ = self.refresh().await;
        self.keys()
    }

    pub fn status(&self) -> KeySetStatus {
        KeySetStatus {
            source: "entra".into(),
            keys: self.keys().len(),
            fetched_at: *self.fetched_at.read().expect("lock"),
            fetches: Some(self.fetches.load(Ordering::Relaxed)),
            last_error: self.last_error.read().expect("lock").clone(),
        }
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        // Parsed key by key, so that one key of a kind we do not know cannot hide the others.
        let set: RawKeySet = fetch_json(&self.http, self.jwks_uri.as_str()).await?;
        let keys: Vec<VerifyingKey> = set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .filter_map(|k| verifying_key(&k))
            .collect();
        if keys.is_empty() {
            bail!("the key set has no usable RS256 or ES256 signing key");
        }
        Ok(KeySet::new(keys))
    }
}

/// Turns a published JWK into a key pinned to one algorithm: RSA keys verify RS256 only and
/// P-256 keys ES256 only, whatever a token's header claims. Encryption keys are skipped.
fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kid = jwk.common.key_id.clone()?;
    let (algorithm, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?,
        ),
        AlgorithmParameters::EllipticCurve(ec)
            if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
        {
            (
                Algorithm::ES256,
                DecodingKey::from_ec_components(&ec.x, &ec.y).ok()?,
            )
        }
        _ => return None,
    };
    if let Some(declared) = jwk.common.key_algorithm {
        if format!("{declared:?}") != format!("{algorithm:?}") {
            return None;
        }
    }
    Some(VerifyingKey {
        kid,
        algorithm,
        key,
    })
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    response
        .json()
        .await
        .map_err(|e| anyhow!("{url}: not the expected JSON: {e}"))
}
