//! Limits that keep one caller from starving the others: a token bucket per caller (429 with
//! Retry-After), a cap on header size (431), and backpressure when the outbox is too deep (503).

mod common;

use common::{problem, vm_id, TestApp, TestDb};
use jitgate::config::Settings;
use jitgate::rbac::Role;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

async fn limited(per_second: &str, burst: &str) -> TestApp {
    TestApp::spawn_on(
        TestDb::sqlite(),
        Settings {
            rate_limit: Some(per_second.into()),
            rate_limit_burst: Some(burst.into()),
            ..Default::default()
        },
    )
    .await
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn a_burst_over_the_limit_is_429_for_that_caller_only_and_recovers() {
    let app = limited("2", "3").await;
    let alice = app.token("alice", &[Role::Requester]);
    let bob = app.token("bob", &[Role::Requester]);
    for _ in 0..3 {
        let r = app
            .request(Method::GET, "/v1/me", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let refused = app
        .request(Method::GET, "/v1/me", &alice)
        .send()
        .await
        .unwrap();
    let wait = retry_after(&refused);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let body = problem(refused, 429).await;
    assert_eq!(body["type"], "urn:jitgate:problem:rate-limited");

    // Another caller, even from the same address, has a bucket of its own.
    let r = app
        .request(Method::GET, "/v1/me", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A new token for the same user draws from the same bucket.
    let alice_again = app.token("alice", &[Role::Requester]);
    problem(
        app.request(Method::GET, "/v1/me", &alice_again)
            .send()
            .await
            .unwrap(),
        429,
    )
    .await;
    // Probes and scrapers are never limited.
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..5 {
            let r = app.client.get(app.url(path)).send().await.unwrap();
            assert_ne!(r.status(), 429, "{path}");
        }
    }

    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = app
        .request(Method::GET, "/v1/me", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a token is back after 1/rate seconds");
}

#[tokio::test]
async fn unauthenticated_requests_are_limited_by_client_address() {
    let app = limited("1", "2").await;
    for _ in 0..2 {
        problem(app.client.get(app.url("/v1/me")).send().await.unwrap(), 401).await;
    }
    let forged = app.token("mallory", &[]) + "x";
    let r = app
        .request(Method::GET, "/v1/me", &forged)
        .send()
        .await
        .unwrap();
    assert!(retry_after(&r) >= 1);
    problem(r, 429).await;
    // A caller with a valid token is not held back by anonymous traffic from the same host.
    let r = app
        .request(Method::GET, "/v1/me", &app.token("alice", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let app = TestApp::spawn().await;
    let big = "a".repeat(33 * 1024);
    let r = app
        .request(Method::GET, "/v1/me", &app.admin())
        .header("x-padding", big)
        .send()
        .await
        .unwrap();
    let body = problem(r, 431).await;
    assert_eq!(body["type"], "urn:jitgate:problem:headers-too-large");
    let many = (0..20).fold(app.request(Method::GET, "/v1/me", &app.admin()), |r, i| {
        r.header(format!("x-pad-{i}"), "b".repeat(2 * 1024))
    });
    problem(many.send().await.unwrap(), 431).await;
    let fine = app
        .request(Method::GET, "/v1/me", &app.admin())
        .header("x-padding", "c".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
}

#[tokio::test]
async fn a_deep_outbox_refuses_new_requests_with_503() {
    let app = TestApp::spawn_on(
        TestDb::sqlite(),
        Settings {
            outbox_max_backlog: Some("2".into()),
            ..Default::default()
        },
    )
    .await;
    let admin = app.admin();
    let r = app
        .put_policy(&admin, "vm1", json!({ "ports": [{ "number": 22 }] }))
        .await;
    assert_eq!(r.status(), 201);
    let draft = json!({ "virtualMachines": [{ "id": vm_id("vm1"), "ports": [{ "number": 22, "allowedSourceAddressPrefix": "203.0.113.7" }] }] });
    let due = app
        .store
        .count_due_jobs(chrono::Utc::now(), 100)
        .await
        .unwrap();
    assert!(due <= 2, "{due} jobs due after one policy");
    // No dispatcher runs here: the queue only grows. Fill it past the limit.
    app.db
        .exec(
            "INSERT INTO jobs (kind, subject, payload, run_after, created_at) VALUES \
             ('test', 'a', '{}', '2000-01-01T00:00:00Z', '2000-01-01T00:00:00Z'), \
             ('test', 'b', '{}', '2000-01-01T00:00:00Z', '2000-01-01T00:00:00Z'), \
             ('test', 'c', '{}', '2000-01-01T00:00:00Z', '2000-01-01T00:00:00Z')",
        )
        .await
        .unwrap();
    let refused = app
        .request(Method::POST, "/v1/access-requests", &admin)
        .json(&draft)
        .send()
        .await
        .unwrap();
    assert_eq!(retry_after(&refused), 30);
    let body = problem(refused, 503).await;
    assert_eq!(body["type"], "urn:jitgate:problem:overloaded");
    let listed = app.get_json("/v1/access-requests", &admin).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    // Jobs due later do not count: only what is waiting now.
    app.db
        .exec("UPDATE jobs SET run_after = '2999-01-01T00:00:00Z' WHERE kind = 'test'")
        .await
        .unwrap();
    let accepted = app
        .request(Method::POST, "/v1/access-requests", &admin)
        .json(&draft)
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success(), "{}", accepted.status());
}
