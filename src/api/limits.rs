//! Protection from callers who ask too much: a token bucket per caller, a cap on the size of
//! request headers, and (in `requests.rs`) backpressure when the outbox is too deep.

use super::error::{ApiError, Problem};
use super::extract::client_address;
use super::AppState;
use crate::auth::Caller;
use crate::config::RateLimit;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The most header bytes (names, values and their separators) one request may send.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How often buckets that have refilled completely are forgotten.
const FORGET_FULL_BUCKETS_EVERY: Duration = Duration::from_secs(60);

/// Paths that probes and scrapers call, never limited.
const UNLIMITED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// A caller with a valid token: its object id.
    Principal(String),
    /// Anyone else: the client address (an IPv6 address by its /64, which one host holds).
    Address(IpAddr),
}

impl CallerKey {
    pub fn address(ip: IpAddr) -> CallerKey {
        match ip {
            IpAddr::V4(_) => CallerKey::Address(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => CallerKey::Address(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    CallerKey::Address(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

/// One token bucket per caller.
pub struct CallerLimiter {
    limiter: DefaultKeyedRateLimiter<CallerKey>,
    clock: DefaultClock,
}

impl CallerLimiter {
    pub fn new(limit: RateLimit) -> CallerLimiter {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        CallerLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until there is one.
    pub fn check(&self, key: &CallerKey) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets the buckets that are full again: a caller gone quiet costs no memory.
    pub fn forget_full_buckets(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many buckets are held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Forgets full buckets every minute until the limiter is dropped.
    pub fn spawn_housekeeping(limiter: Weak<CallerLimiter>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_FULL_BUCKETS_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.forget_full_buckets();
            }
        });
    }
}

/// A caller whose token the rate limiter already validated, so that the `Caller` extractor
/// need not check the signature twice.
#[derive(Clone)]
pub struct ValidatedCaller(pub Caller);

/// Answers 429 with `Retry-After` to a caller whose bucket is empty.
pub async fn rate_limit(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = state.limiter.clone() else {
        return next.run(request).await;
    };
    if UNLIMITED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let mut key = None;
    if let Some(token) = token {
        if let Ok(caller) = state.auth.validate(&token).await {
            key = Some(CallerKey::Principal(caller.principal.id.clone()));
            request.extensions_mut().insert(ValidatedCaller(caller));
        }
    }
    let key = key.unwrap_or_else(|| {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        CallerKey::address(client_address(
            peer,
            request.headers(),
            &state.config.trusted_proxies,
        ))
    });
    match limiter.check(&key) {
        Ok(()) => next.run(request).await,
        Err(wait) => ApiError::TooManyRequests {
            retry_after: retry_after_secs(wait),
        }
        .into_response(),
    }
}

/// Whole seconds to wait, rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Answers 431 to a request whose headers add up to more than [`MAX_HEADER_BYTES`].
pub async fn limit_header_size(request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "The request headers are too large",
            format!("at most {MAX_HEADER_BYTES} bytes of headers are accepted"),
        )
        .into_response();
    }
    next.run(request).await
}

/// The limiter `config` asks for, if any.
pub fn limiter(limit: Option<RateLimit>) -> Option<Arc<CallerLimiter>> {
    limit.map(|l| Arc::new(CallerLimiter::new(l)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(CallerKey::address(a), CallerKey::address(b));
        assert_ne!(CallerKey::address(a), CallerKey::address(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            CallerKey::address(mapped),
            CallerKey::Address("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn a_bucket_empties_and_full_ones_are_forgotten() {
        let limiter = CallerLimiter::new(RateLimit {
            per_second: NonZeroU32::new(1000).unwrap(),
            burst: NonZeroU32::new(2).unwrap(),
        });
        let key = CallerKey::Principal("a".into());
        assert!(limiter.check(&key).is_ok());
        assert!(limiter.check(&key).is_ok());
        let wait = limiter.check(&key).unwrap_err();
        assert!(wait <= Duration::from_millis(1));
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(limiter.len(), 1);
        std::thread::sleep(Duration::from_millis(10));
        limiter.forget_full_buckets();
        assert!(limiter.is_empty());
    }
}
