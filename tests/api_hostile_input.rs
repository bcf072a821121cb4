//! Bad input of every kind gets a clear 4xx problem+json, never a 500 or a hang, and nothing
//! is written.

mod common;

use common::{policy_path, problem, TestApp};
use jitgate::auth::dev::{DevKey, DevTokenSpec};
use jitgate::rbac::Role;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

async fn put_raw(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = app
        .request(Method::PUT, &policy_path("vm1"), &app.admin())
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await;
    problem(put_raw(&app, Some("text/plain"), b"{}".to_vec()).await, 415).await;
    problem(put_raw(&app, None, b"{}".to_vec()).await, 415).await;
    problem(
        put_raw(
            &app,
            Some("application/x-www-form-urlencoded"),
            b"a=b".to_vec(),
        )
        .await,
        415,
    )
    .await;
    assert_eq!(
        put_raw(
            &app,
            Some("application/json; charset=utf-8"),
            b"{}".to_vec()
        )
        .await
        .status(),
        201
    );
}

#[tokio::test]
async fn a_huge_body_is_413() {
    let app = TestApp::spawn().await;
    let huge = format!(
        "{{\"ports\": [{}]}}",
        vec!["{\"number\": 22}"; 20_000].join(",")
    );
    assert!(huge.len() > 64 * 1024);
    problem(
        put_raw(&app, Some("application/json"), huge.into_bytes()).await,
        413,
    )
    .await;
    problem(app.get_policy(&app.admin(), "vm1").await, 404).await;
}

#[tokio::test]
async fn truncated_and_malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let full =
        serde_json::to_vec(&json!({ "ports": [{ "number": 22, "protocol": "TCP" }] })).unwrap();
    for cut in [1, full.len() / 2, full.len() - 1] {
        problem(
            put_raw(&app, Some("application/json"), full[..cut].to_vec()).await,
            400,
        )
        .await;
    }
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"42",
        b"{}garbage",
        b"{\"ports\": [22]}",
        b"\xff\xfe{}",
    ] {
        let p = problem(
            put_raw(&app, Some("application/json"), body.to_vec()).await,
            400,
        )
        .await;
        assert!(p["errors"].is_array() || p["detail"].is_string());
    }
}

#[tokio::test]
async fn random_bytes_never_cause_a_server_error() {
    let app = TestApp::spawn().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let seeds = [
        json!({ "ports": [{ "number": 22, "allowedSourceAddressPrefixes": ["10.0.0.0/8"] }], "approval": { "mode": "manual" } }).to_string(),
        json!({ "justificationRequired": true }).to_string(),
    ];
    for i in 0..200 {
        let mut body = seeds[i % 2].clone().into_bytes();
        // Flip, insert or delete a few bytes: mostly still JSON-ish, so the parser's deeper
        // paths are exercised and not just its first byte.
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(0..body.len());
            match rng.gen_range(0..3) {
                0 => body[at] = rng.gen(),
                1 => body.insert(at, rng.gen()),
                _ => {
                    body.remove(at);
                }
            }
        }
        let status = put_raw(&app, Some("application/json"), body.clone())
            .await
            .status()
            .as_u16();
        assert!(
            (200..500).contains(&status),
            "status {status} for body {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn bad_path_segments_are_400() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let long = "x".repeat(65);
    for path in [
        "/v1/subscriptions/s1/resourceGroups/rg/virtualMachines/vm%20one/policy".to_string(),
        "/v1/subscriptions/s1/resourceGroups/rg/virtualMachines/a%2Fb/policy".to_string(),
        "/v1/subscriptions/s%3B1/resourceGroups/rg/virtualMachines/vm/policy".to_string(),
        "/v1/subscriptions/s1/resourceGroups/rg./virtualMachines/vm/policy".to_string(),
        format!("/v1/subscriptions/s1/resourceGroups/rg/virtualMachines/{long}/policy"),
        "/v1/subscriptions/s1/resourceGroups/rg/virtualMachines/%ff/policy".to_string(),
    ] {
        let response = app
            .request(Method::GET, &path, &admin)
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    problem(
        app.request(Method::GET, "/v1/nothing-here", &app.admin())
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        app.request(Method::POST, &policy_path("vm1"), &app.admin())
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
}

#[tokio::test]
async fn a_missing_or_bad_token_is_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let url = app.url(&policy_path("vm1"));
    let other_key = DevKey::generate();
    let stranger = other_key
        .mint(&DevTokenSpec::user("mallory", &[Role::Admin]))
        .unwrap();
    let mut expired = DevTokenSpec::user("alice", &[Role::Admin]);
    expired.ttl = chrono::Duration::seconds(-3600);
    let expired = app.key.mint(&expired).unwrap();
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "no bearer token"),
        (Some("Basic YWxpY2U6cHc=".into()), "no bearer token"),
        (Some("Bearer not-a-jwt".into()), "not a well-formed JWT"),
        (
            Some(format!("Bearer {stranger}")),
            "signing key is not known",
        ),
        (Some(format!("Bearer {expired}")), "expired"),
    ];
    for (header, reason) in cases {
        let mut request = app.client.get(&url);
        if let Some(h) = &header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(
            challenge.contains(reason),
            "{challenge} should say {reason}"
        );
        let body: Value = problem(response, 401).await;
        let detail = body["detail"].as_str().unwrap();
        if let Some(h) = header {
            let token = h.split_once(' ').unwrap().1;
            assert!(
                !detail.contains(token) && !challenge.contains(token),
                "the token is never echoed"
            );
        }
    }
}

#[tokio::test]
async fn the_request_id_is_kept_or_made() {
    let app = TestApp::spawn().await;
    let given = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    let made = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let failing = app
        .client
        .get(app.url("/v1/me"))
        .header("x-request-id", "on-errors-too")
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), 401);
    assert_eq!(failing.headers()["x-request-id"], "on-errors-too");
}
