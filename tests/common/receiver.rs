//! A webhook receiver on 127.0.0.1:0 that records what it is sent, and can be told to fail
//! (answer 503) a number of times.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::{Arc, Mutex};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether it was answered 2xx (else 503).
    pub accepted: bool,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

#[derive(Default)]
struct Inner {
    /// Every request, the refused ones too.
    seen: Vec<Received>,
    /// How many more requests to refuse with 503.
    failures_left: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inner = inner.lock().unwrap();
    let accepted = inner.failures_left == 0;
    inner.failures_left = inner.failures_left.saturating_sub(1);
    inner.seen.push(Received {
        headers,
        body,
        accepted,
    });
    if accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl Receiver {
    /// A receiver that refuses the first `failures` requests with 503.
    pub async fn start(failures: usize) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            failures_left: failures,
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, inner }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Received> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// The requests it accepted (answered 2xx).
    pub fn accepted(&self) -> Vec<Received> {
        self.seen().into_iter().filter(|r| r.accepted).collect()
    }

    /// Waits until `n` requests arrived, or panics after `secs` seconds.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver got {} requests, not {n}",
                seen.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Refuses the next `n` requests (0: accepts from now on).
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().failures_left = n;
    }
}
