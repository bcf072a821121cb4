//! The policies API over HTTP, as portals and admins use it.

mod common;

use common::{error_fields, policy_path, problem, vm_id, TestApp, SUB};
use jitgate::rbac::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn api_example() -> Value {
    json!({
        "ports": [
            { "number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H" },
            { "number": 3389, "protocol": "*", "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.168.1.0/24"], "maxRequestAccessDuration": "PT1H" }
        ],
        "approval": { "mode": "manual", "requiredApprovals": 1 },
        "justificationRequired": true
    })
}

#[tokio::test]
async fn admin_creates_a_policy_and_reads_it_back_with_its_etag() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let created = app.put_policy(&admin, "vm1", api_example()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag = created.headers()["etag"].to_str().unwrap().to_string();
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["vmId"], vm_id("vm1"));
    assert_eq!(body["etag"], etag);
    assert_eq!(body["ports"], api_example()["ports"]);
    assert_eq!(
        body["approval"],
        json!({ "mode": "manual", "requiredApprovals": 1 })
    );
    assert_eq!(body["justificationRequired"], true);
    assert_eq!(body["updatedBy"]["name"], "admin@example.com");
    assert_eq!(body["enforcement"]["state"], "pending");
    assert_eq!(body["enforcement"]["networkSecurityGroups"], json!([]));

    let read = app.get_policy(&admin, "vm1").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(read.json::<Value>().await.unwrap(), body);
}

#[tokio::test]
async fn an_empty_policy_gets_azures_default_ports() {
    let app = TestApp::spawn().await;
    let body: Value = app
        .put_policy(&app.admin(), "vm1", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let ports = body["ports"].as_array().unwrap();
    let numbers: Vec<u64> = ports
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [22, 3389, 5985, 5986]);
    for p in ports {
        assert_eq!(p["protocol"], "*");
        assert_eq!(p["allowedSourceAddressPrefix"], "*");
        assert_eq!(p["maxRequestAccessDuration"], "PT3H");
    }
    assert_eq!(body["approval"], json!({ "mode": "auto" }));
    assert_eq!(body["justificationRequired"], false);
}

#[tokio::test]
async fn replacing_is_200_and_keeps_the_creation_time() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let first: Value = app
        .put_policy(&admin, "vm1", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let second = app.put_policy(&admin, "vm1", api_example()).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["createdAt"], first["createdAt"]);
    assert_ne!(second["etag"], first["etag"]);
    assert_eq!(second["ports"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn vm_ids_in_urls_are_case_insensitive() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    app.put_policy(&admin, "rg-Web/VM-One", json!({})).await;
    let read = app.get_policy(&admin, "RG-WEB/vm-one").await;
    assert_eq!(read.status(), StatusCode::OK);
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["vmId"], vm_id("rg-Web/VM-One"), "returned as stored");
}

#[tokio::test]
async fn if_match_guards_against_lost_updates() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let created = app.put_policy(&admin, "vm1", json!({})).await;
    let etag = created.headers()["etag"].to_str().unwrap().to_string();

    let stale = app
        .request(Method::PUT, &policy_path("vm1"), &admin)
        .header("If-Match", "\"not-the-etag\"")
        .json(&api_example())
        .send()
        .await
        .unwrap();
    problem(stale, 412).await;
    let unchanged: Value = app.get_policy(&admin, "vm1").await.json().await.unwrap();
    assert_eq!(unchanged["etag"], etag);

    let fresh = app
        .request(Method::PUT, &policy_path("vm1"), &admin)
        .header("If-Match", &etag)
        .json(&api_example())
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);

    let create_only = app
        .request(Method::PUT, &policy_path("vm1"), &admin)
        .header("If-None-Match", "*")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(create_only, 412).await;

    let stale_delete = app
        .request(Method::DELETE, &policy_path("vm1"), &admin)
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    problem(stale_delete, 412).await;
}

#[tokio::test]
async fn delete_removes_the_policy() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    app.put_policy(&admin, "vm1", json!({})).await;
    let deleted = app
        .request(Method::DELETE, &policy_path("vm1"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(app.get_policy(&admin, "vm1").await, 404).await;
    problem(
        app.request(Method::DELETE, &policy_path("vm1"), &admin)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn invalid_policies_get_every_field_error_at_once() {
    let app = TestApp::spawn().await;
    let response = app
        .put_policy(
            &app.admin(),
            "vm1",
            json!({
                "ports": [
                    { "number": 22, "protocol": "TCP" },
                    { "number": 22 },
                    { "number": 0, "allowedSourceAddressPrefix": "10.0.0.0/33" },
                    { "number": 3389, "allowedSourceAddressPrefixes": ["2001:db8::/32", "nope"], "maxRequestAccessDuration": "PT25H" }
                ],
                "approval": { "mode": "manual", "requiredApprovals": 9 }
            }),
        )
        .await;
    let body = problem(response, 400).await;
    assert_eq!(
        error_fields(&body),
        [
            "ports[1].number",
            "ports[2].number",
            "ports[2].allowedSourceAddressPrefix",
            "ports[3].allowedSourceAddressPrefixes[1]",
            "ports[3].maxRequestAccessDuration",
            "approval.requiredApprovals",
        ]
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("more than once"));
    problem(app.get_policy(&app.admin(), "vm1").await, 404).await;
}

#[tokio::test]
async fn ipv6_sources_are_accepted() {
    let app = TestApp::spawn().await;
    let response = app
        .put_policy(&app.admin(), "vm1", json!({ "ports": [{ "number": 22, "allowedSourceAddressPrefixes": ["2001:db8::/48", "203.0.113.7"] }] }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["ports"][0]["allowedSourceAddressPrefixes"],
        json!(["2001:db8::/48", "203.0.113.7"])
    );
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_named_by_path() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let unknown = problem(
        app.put_policy(
            &admin,
            "vm1",
            json!({ "ports": [{ "number": 22, "colour": "red" }] }),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error_fields(&unknown), ["ports[0].colour"]);
    assert!(unknown["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let top = problem(
        app.put_policy(&admin, "vm1", json!({ "enabled": true }))
            .await,
        400,
    )
    .await;
    assert!(top["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("enabled"));
    let wrong_type = problem(
        app.put_policy(&admin, "vm1", json!({ "ports": [{ "number": "22" }] }))
            .await,
        400,
    )
    .await;
    assert_eq!(error_fields(&wrong_type), ["ports[0].number"]);
}

#[tokio::test]
async fn the_minimum_duration_is_the_deployments_setting() {
    let body = json!({ "ports": [{ "number": 22, "maxRequestAccessDuration": "PT2S" }] });
    let lenient = TestApp::spawn().await; // tests run with JITGATE_MIN_ACCESS_DURATION=PT1S
    assert_eq!(
        lenient
            .put_policy(&lenient.admin(), "vm1", body.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let strict = TestApp::spawn_with_min_duration("PT5M").await;
    let refused = problem(strict.put_policy(&strict.admin(), "vm1", body).await, 400).await;
    assert_eq!(
        error_fields(&refused),
        ["ports[0].maxRequestAccessDuration"]
    );
}

#[tokio::test]
async fn requesters_read_but_cannot_write_policies() {
    let app = TestApp::spawn().await;
    app.put_policy(&app.admin(), "vm1", json!({})).await;
    let requester = app.token("bob@example.com", &[Role::Requester]);
    let denied = problem(app.put_policy(&requester, "vm1", json!({})).await, 403).await;
    assert!(denied["detail"].as_str().unwrap().contains("Jit.Admin"));
    problem(
        app.request(Method::DELETE, &policy_path("vm1"), &requester)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_eq!(
        app.get_policy(&requester, "vm1").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_caller_without_any_role_is_refused() {
    let app = TestApp::spawn().await;
    app.put_policy(&app.admin(), "vm1", json!({})).await;
    let nobody = app.token("eve@example.com", &[]);
    problem(app.get_policy(&nobody, "vm1").await, 403).await;
    let list = app.get_json("/v1/policies", &nobody).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn a_scoped_admin_writes_only_inside_its_scope() {
    let app = TestApp::spawn().await;
    let scoped = app.scoped_token(
        "carol@example.com",
        &[Role::Admin],
        &[&format!("/subscriptions/{SUB}/resourceGroups/rg-web")],
    );
    assert_eq!(
        app.put_policy(&scoped, "rg-WEB/vm1", json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    problem(app.put_policy(&scoped, "rg-db/vm1", json!({})).await, 403).await;
    // A scope that merely starts with the same characters does not count.
    let prefix = app.scoped_token(
        "dan@example.com",
        &[Role::Admin],
        &[&format!("/subscriptions/{SUB}/resourceGroups/rg-we")],
    );
    problem(app.put_policy(&prefix, "vm2", json!({})).await, 403).await;
}

#[tokio::test]
async fn lists_page_with_an_opaque_cursor_and_filter() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    for vm in [
        "rg-web/vm1",
        "rg-web/vm2",
        "rg-web/vm3",
        "rg-db/vm4",
        "rg-db/vm5",
    ] {
        assert_eq!(
            app.put_policy(&admin, vm, json!({})).await.status(),
            StatusCode::CREATED
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/policies?limit=2&cursor={c}"),
            None => "/v1/policies?limit=2".to_string(),
        };
        let page = app.get_json(&path, &admin).await;
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["vmId"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|s| s.to_lowercase());
    assert_eq!(seen, sorted);

    let filtered: Value = app
        .request(
            Method::GET,
            &format!("/v1/policies?subscriptionId={SUB}&resourceGroup=RG-DB"),
            &admin,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["vmId"].as_str().unwrap())
        .collect();
    assert_eq!(names, [vm_id("rg-db/vm4"), vm_id("rg-db/vm5")]);
    assert!(filtered["nextCursor"].is_null());

    for bad in [
        "/v1/policies?limit=0",
        "/v1/policies?limit=1001",
        "/v1/policies?limit=ten",
        "/v1/policies?cursor=forged",
    ] {
        problem(
            app.request(Method::GET, bad, &admin).send().await.unwrap(),
            400,
        )
        .await;
    }
}

#[tokio::test]
async fn a_scoped_reader_lists_only_what_it_may_read() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    for vm in ["rg-web/vm1", "rg-db/vm2"] {
        app.put_policy(&admin, vm, json!({})).await;
    }
    let reader = app.scoped_token(
        "bob@example.com",
        &[Role::Requester],
        &[&format!("/subscriptions/{SUB}/resourceGroups/rg-db")],
    );
    let list = app.get_json("/v1/policies", &reader).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["vmId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [vm_id("rg-db/vm2")]);
    problem(app.get_policy(&reader, "rg-web/vm1").await, 403).await;
}

#[tokio::test]
async fn every_policy_change_is_audited_in_one_chain() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    app.put_policy(&admin, "vm1", json!({})).await;
    app.put_policy(&admin, "vm1", api_example()).await;
    // A refused write leaves no trace.
    app.put_policy(&admin, "vm1", json!({ "ports": [] })).await;
    app.request(Method::DELETE, &policy_path("vm1"), &admin)
        .send()
        .await
        .unwrap();
    let events = app.store.audit_events_after(0, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["policy.created", "policy.updated", "policy.deleted"]
    );
    assert!(events
        .iter()
        .all(|e| e.actor.name == "admin@example.com" && e.resource_id == vm_id("vm1")));
    common::assert_chain_ok(&events);
}

#[tokio::test]
async fn me_shows_the_caller_and_its_roles() {
    let app = TestApp::spawn().await;
    let token = app.scoped_token(
        "carol@example.com",
        &[Role::Approver],
        &[&format!("/subscriptions/{SUB}")],
    );
    let me = app.get_json("/v1/me", &token).await;
    assert_eq!(me["name"], "carol@example.com");
    assert_eq!(me["kind"], "User");
    assert_eq!(
        me["roles"],
        json!([{ "role": "Jit.Approver", "scope": format!("/subscriptions/{SUB}"), "source": "token" }])
    );
}
