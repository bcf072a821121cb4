//! The steps of a request's life over HTTP, on the demo subscription of a simulated ARM:
//! a policy enforced, a request submitted, acted on and waited for.

use super::{TestApp, SIM_TOKEN};
use jitgate::arm::sim::seed::{self, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::Sim;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub fn vm(name: &str) -> String {
    seed::vm_id(SUB, RG, name)
}

/// A demo app with a policy on `name`, enforced.
pub async fn app_with_policy(name: &str, policy: Value) -> (TestApp, Sim) {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let url = format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{name}/policy");
    let put = app
        .request(Method::PUT, &url, &app.admin())
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    wait_until(
        &app,
        || async { app.get_json(&url, &app.admin()).await["enforcement"]["state"] == "applied" },
        "enforcement",
    )
    .await;
    (app, sim)
}

pub async fn wait_until<F, Fut>(_app: &TestApp, mut ok: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn body(name: &str, duration: &str, source: &str) -> Value {
    json!({
        "virtualMachines": [{ "id": vm(name), "ports": [{ "number": 22, "duration": duration, "allowedSourceAddressPrefix": source }] }],
        "justification": "INC-1234: patch openssl",
    })
}

pub async fn submit(app: &TestApp, token: &str, body: &Value) -> Response {
    app.request(Method::POST, "/v1/access-requests", token)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn status_of(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_json(&format!("/v1/access-requests/{id}"), token)
        .await
}

/// Waits until the request is `active` (its allow rules written and confirmed).
pub async fn wait_active(app: &TestApp, token: &str, id: &str) {
    wait_until(
        app,
        || async { status_of(app, token, id).await["status"] == "active" },
        "activation",
    )
    .await;
}

pub async fn act(app: &TestApp, token: &str, id: &str, action: &str, body: Value) -> Response {
    app.request(
        Method::POST,
        &format!("/v1/access-requests/{id}/{action}"),
        token,
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}
