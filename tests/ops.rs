//! Operations endpoints: health, readiness, metrics and the OpenAPI document, all without a token.

mod common;

use common::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "ready": true, "database": "ok", "signingKeys": { "source": "dev", "keys": 1 } })
    );
}

#[tokio::test]
async fn metrics_count_requests_per_route_template() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    app.put_policy(&admin, "vm1", json!({})).await;
    app.put_policy(&admin, "vm2", json!({})).await;
    app.get_policy(&admin, "vm3").await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("openmetrics-text"));
    let text = metrics.text().await.unwrap();
    let route = "/v1/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/virtualMachines/{vmName}/policy";
    let created =
        format!("jitgate_http_requests_total{{method=\"PUT\",route=\"{route}\",status=\"201\"}} 2");
    assert!(text.contains(&created), "{text}");
    let missing =
        format!("jitgate_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"404\"}} 1");
    assert!(text.contains(&missing), "{text}");
    assert!(
        text.contains("jitgate_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("vm1"), "raw paths never become labels");
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc, serde_json::to_value(jitgate::api::openapi()).unwrap());
}
