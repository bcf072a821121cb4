//! Outbound webhooks with a real local receiver: subscriptions get exactly the CloudEvents
//! they asked for, signed as documented; a receiver that fails gets the event once it is up,
//! and a restart of jitgate loses nothing; only tenant-wide Admins manage subscriptions.

mod common;

use common::lifecycle::*;
use common::receiver::{Received, Receiver};
use common::{TestApp, TestDb, SIM_TOKEN};
use jitgate::arm::sim::Sim;
use jitgate::config::Settings;
use jitgate::rbac::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn subscribe(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let created = app
        .request(Method::POST, "/v1/webhooks", &app.admin())
        .json(&json!({ "url": url, "eventTypes": types, "description": "test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_string(),
        body["secret"].as_str().unwrap().to_string(),
    )
}

/// The receiver's check, as README's Python example does it.
fn assert_signed(received: &Received, secret: &str) {
    let header = received.header("jitgate-signature");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        jitgate::notify::verify_signature(secret, header, &received.body, now, 300),
        Ok(()),
        "{header}"
    );
    assert!(jitgate::notify::verify_signature(
        "another secret!!",
        header,
        &received.body,
        now,
        300
    )
    .is_err());
    assert_eq!(
        received.header("content-type"),
        "application/cloudevents+json"
    );
}

fn types(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect()
}

/// The delivery log once `settled` holds of it (outcomes are recorded a moment after the
/// receiver answers), or as it is after 10 s.
async fn log_when(app: &TestApp, webhook: &str, settled: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = deliveries(app, webhook).await;
        if settled(&log) || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    app.get_json(&format!("/v1/webhooks/{webhook}/deliveries"), &app.admin())
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn approvers_and_requestors_get_the_signed_events_they_subscribed_to() {
    let (app, _sim) = app_with_policy(
        "vm-web-1",
        json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 1 } }),
    )
    .await;
    let approvers = Receiver::start(0).await;
    let requestors = Receiver::start(0).await;
    let (approvers_hook, approvers_secret) =
        subscribe(&app, &approvers.url, &["jitgate.request.pending"]).await;
    let (_, requestors_secret) = subscribe(
        &app,
        &requestors.url,
        &[
            "jitgate.request.active",
            "jitgate.request.expired",
            "jitgate.request.denied",
        ],
    )
    .await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let bob = app.token("bob@example.com", &[Role::Approver]);

    let request: Value = submit(&app, &alice, &body("vm-web-1", "PT1S", "203.0.113.7"))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    let pending = approvers.wait_for(1, 20).await;
    let event = pending[0].json();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "jitgate.request.pending");
    assert_eq!(event["source"], "/jitgate");
    assert_eq!(event["subject"], vm("vm-web-1"));
    assert_eq!(event["data"]["requestId"], id.as_str());
    assert_eq!(
        event["data"]["resource"]["requestor"]["name"],
        "alice@example.com"
    );
    assert_eq!(
        event["data"]["resource"]["justification"],
        "INC-1234: patch openssl"
    );
    assert!(event["time"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .is_ok());
    assert_signed(&pending[0], &approvers_secret);

    assert_eq!(
        act(&app, &bob, &id, "approve", json!({})).await.status(),
        200
    );
    let told = requestors.wait_for(2, 30).await;
    assert_eq!(
        types(&told),
        ["jitgate.request.active", "jitgate.request.expired"]
    );
    for r in &told {
        assert_signed(r, &requestors_secret);
        assert_eq!(r.json()["data"]["requestId"], id.as_str());
    }
    // A denial reaches the requestors; approvers hear of each new pending request only.
    let second: Value = submit(&app, &alice, &body("vm-web-1", "PT1H", "203.0.113.7"))
        .await
        .json()
        .await
        .unwrap();
    let second = second["id"].as_str().unwrap();
    assert_eq!(
        act(&app, &bob, second, "deny", json!({ "reason": "no" }))
            .await
            .status(),
        200
    );
    let told = requestors.wait_for(3, 20).await;
    assert_eq!(types(&told)[2], "jitgate.request.denied");
    let pending = approvers.wait_for(2, 20).await;
    assert_eq!(
        types(&pending),
        ["jitgate.request.pending", "jitgate.request.pending"]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(approvers.seen().len(), 2, "nothing else, and nothing twice");
    assert_eq!(requestors.seen().len(), 3);

    let log = log_when(&app, &approvers_hook, |log| {
        log.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(log.len(), 2);
    for d in &log {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["lastStatusCode"], 204);
        assert_eq!(d["eventType"], "jitgate.request.pending");
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_once_up_and_a_restart_loses_nothing() {
    let db = TestDb::sqlite();
    let settings = || Settings {
        webhook_retry_base: Some("PT1S".into()),
        ..Default::default()
    };
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_on_with_arm(TestDb::shared(&db.url), settings(), sim.clone()).await;
    // Down for the first three tries.
    let receiver = Receiver::start(3).await;
    let (hook, secret) = subscribe(&app, &receiver.url, &["jitgate.policy.created"]).await;
    assert_eq!(
        app.put_policy(&app.admin(), "vm-web-1", json!({}))
            .await
            .status(),
        201
    );

    let seen = receiver.wait_for(4, 30).await;
    assert_eq!(seen.iter().filter(|r| r.accepted).count(), 1);
    assert!(seen[3].accepted, "refused three times, then taken");
    let ids: Vec<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "the same event, the same id, every try"
    );
    for r in &seen {
        assert_signed(r, &secret);
    }
    let log = log_when(&app, &hook, |log| log[0]["status"] == "delivered").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 4);

    // Down again; an event is queued; jitgate stops before it gets through.
    receiver.fail_next(usize::MAX);
    assert_eq!(
        app.put_policy(&app.admin(), "vm-web-2", json!({}))
            .await
            .status(),
        201
    );
    receiver.wait_for(5, 20).await;
    let pending = log_when(&app, &hook, |log| log[0]["attempts"] == 1).await;
    assert_eq!(pending[0]["status"], "pending");
    assert_eq!(pending[0]["lastStatusCode"], 503);
    drop(app);

    // Up again, and a new jitgate on the same database: the queued delivery arrives.
    receiver.fail_next(0);
    let app = TestApp::spawn_on_with_arm(TestDb::shared(&db.url), settings(), sim).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.accepted().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the queued delivery never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = receiver.accepted();
    assert_eq!(accepted[1].json()["type"], "jitgate.policy.created");
    assert_eq!(accepted[1].json()["subject"], common::vm_id("vm-web-2"));
    let log = log_when(&app, &hook, |log| log[0]["status"] == "delivered").await;
    assert_eq!(log[0]["status"], "delivered");
}

#[tokio::test]
async fn only_tenant_wide_admins_manage_subscriptions_and_secrets_stay_secret() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let scoped_admin = app.scoped_token(
        "sam@example.com",
        &[Role::Admin],
        &[&format!("/subscriptions/{}", common::SUB)],
    );
    let body =
        json!({ "url": "https://hooks.example.com/jit", "eventTypes": ["jitgate.request.*"] });
    for token in [&auditor, &scoped_admin] {
        let refused = app
            .request(Method::POST, "/v1/webhooks", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        common::problem(refused, 403).await;
    }
    for (bad, field) in [
        (
            json!({ "url": "http://169.254.169.254/metadata/identity/oauth2/token" }),
            "url",
        ),
        (json!({ "url": "ftp://example.com/" }), "url"),
        (
            json!({ "url": "https://ok.example.com/", "eventTypes": ["request.created"] }),
            "eventTypes",
        ),
        (
            json!({ "url": "https://ok.example.com/", "secret": "short" }),
            "secret",
        ),
    ] {
        let refused = app
            .request(Method::POST, "/v1/webhooks", &admin)
            .json(&bad)
            .send()
            .await
            .unwrap();
        let problem = common::problem(refused, 400).await;
        assert!(
            common::error_fields(&problem).contains(&field.to_string()),
            "{problem}"
        );
    }

    let created = app
        .request(Method::POST, "/v1/webhooks", &admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let created: Value = created.json().await.unwrap();
    assert!(created["secret"].as_str().unwrap().len() >= 32);
    let read = app.get_json(&location, &auditor).await;
    assert_eq!(read["url"], "https://hooks.example.com/jit");
    assert_eq!(read["enabled"], true);
    assert!(read.get("secret").is_none(), "never read back: {read}");
    let list = app.get_json("/v1/webhooks", &auditor).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list
        .to_string()
        .contains(created["secret"].as_str().unwrap()));

    let replaced = app
        .request(Method::PUT, &location, &admin)
        .json(&json!({ "url": "https://hooks.example.com/v2", "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    assert_eq!(app.get_json(&location, &auditor).await["enabled"], false);
    let deleted = app
        .request(Method::DELETE, &location, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app
        .request(Method::GET, &location, &admin)
        .send()
        .await
        .unwrap();
    common::problem(gone, 404).await;

    // Each change is audited, and the secret is in none of it.
    let events = app.store.audit_events_after(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        ["webhook.created", "webhook.updated", "webhook.deleted"]
    );
    assert!(!format!("{events:?}").contains(created["secret"].as_str().unwrap()));
}

#[tokio::test]
async fn a_stop_is_not_held_up_by_a_queue_of_slow_deliveries() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    // A receiver that accepts connections and never answers: each try waits out its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    subscribe(&app, &url, &[]).await;
    for i in 0..200 {
        app.store
            .append_event(
                jitgate::audit::NewAuditEvent {
                    event_type: "policy.created",
                    actor: jitgate::domain::Principal {
                        id: "oid".into(),
                        name: "admin".into(),
                    },
                    resource_id: format!("/vm/{i}"),
                    request_id: None,
                    data: json!({}),
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }
    // A dispatcher of our own on the same database, stopped while every slot is taken.
    let dir = tempfile::tempdir().unwrap();
    let config = Settings {
        database_url: Some(app.db.url.clone()),
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let arm = jitgate::server::arm_for_sim(&config, sim, SIM_TOKEN)
        .await
        .unwrap();
    let dispatcher = jitgate::server::dispatcher(&config, app.store.clone(), &arm).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the dispatcher stopped")
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
}
