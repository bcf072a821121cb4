//! Access requests end to end over HTTP, with the ARM simulator's evaluation of the NSGs as
//! the judge of whether a port is open: submit, approve, open, expire; deny, cancel,
//! self-approval, idempotent retries, and bots acting for users.

mod common;

use common::lifecycle::*;
use common::{problem, TestApp, SIM_TOKEN};
use jitgate::arm::evaluate::FlowProtocol;
use jitgate::arm::sim::seed::{self, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::Sim;
use jitgate::auth::dev::DevTokenSpec;
use jitgate::rbac::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ALICE_IP: &str = "203.0.113.7";
const MALLORY_IP: &str = "198.51.100.9";

fn open_from(sim: &Sim, name: &str, source: &str, port: u16) -> bool {
    sim.evaluate(&vm(name), source.parse().unwrap(), port, FlowProtocol::Tcp)
        .unwrap()
        .allowed
}

#[tokio::test]
async fn an_auto_approved_request_opens_the_port_for_its_source_only_until_it_expires() {
    let (app, sim) = app_with_policy(
        "vm-web-1",
        json!({ "ports": [{ "number": 22, "maxRequestAccessDuration": "PT1H" }] }),
    )
    .await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    assert!(
        !open_from(&sim, "vm-web-1", ALICE_IP, 22),
        "closed before the request"
    );

    let created = submit(&app, &alice, &body("vm-web-1", "PT2S", ALICE_IP)).await;
    assert_eq!(created.status(), 201);
    assert!(created.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/v1/access-requests/"));
    let request: Value = created.json().await.unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    assert_eq!(request["status"], "approved");
    assert_eq!(request["requestor"]["name"], "alice@example.com");
    assert_eq!(request["submittedBy"]["name"], "alice@example.com");
    assert_eq!(
        request["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"],
        ALICE_IP
    );
    assert_eq!(
        request["virtualMachines"][0]["ports"][0]["duration"],
        "PT2S"
    );

    wait_active(&app, &alice, &id).await;
    assert!(
        open_from(&sim, "vm-web-1", ALICE_IP, 22),
        "open for alice's address"
    );
    assert!(
        !open_from(&sim, "vm-web-1", MALLORY_IP, 22),
        "closed for anyone else"
    );
    let active = status_of(&app, &alice, &id).await;
    let port = &active["virtualMachines"][0]["ports"][0];
    assert_eq!(port["status"], "Initiated");
    let end: chrono::DateTime<chrono::Utc> = port["endTimeUtc"].as_str().unwrap().parse().unwrap();
    let start: chrono::DateTime<chrono::Utc> =
        active["startTimeUtc"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (end - start).num_seconds(),
        2,
        "endTimeUtc counts from activation"
    );

    wait_until(
        &app,
        || async { status_of(&app, &alice, &id).await["status"] == "expired" },
        "expiry",
    )
    .await;
    assert!(
        !open_from(&sim, "vm-web-1", ALICE_IP, 22),
        "closed again after expiry"
    );
    let expired = status_of(&app, &alice, &id).await;
    assert_eq!(
        expired["virtualMachines"][0]["ports"][0]["status"],
        "Revoked"
    );
    assert_eq!(
        expired["virtualMachines"][0]["ports"][0]["statusReason"],
        "Expired"
    );
    let late = (chrono::Utc::now() - end).num_milliseconds();
    assert!(late < 5_000, "closed {late} ms after its end");

    let events = app.store.audit_events_after(0, 100).await.unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.event_type.as_str())
        .filter(|t| t.starts_with("request."))
        .collect();
    assert_eq!(
        types,
        ["request.created", "request.activated", "request.expired"]
    );
    common::assert_chain_ok(&events);
}

#[tokio::test]
async fn manual_approval_takes_two_distinct_approvers_and_never_the_requestor() {
    let (app, sim) = app_with_policy(
        "vm-rdp",
        json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 2 }, "justificationRequired": true }),
    )
    .await;
    let alice = app.token("alice@example.com", &[Role::Requester, Role::Approver]);
    let bob = app.token("bob@example.com", &[Role::Approver]);
    let carol = app.token("carol@example.com", &[Role::Approver]);
    let requester_only = app.token("rita@example.com", &[Role::Requester]);

    let missing = problem(submit(&app, &alice, &json!({ "virtualMachines": [{ "id": vm("vm-rdp"), "ports": [{ "number": 22, "allowedSourceAddressPrefix": ALICE_IP }] }] })).await, 400).await;
    assert_eq!(common::error_fields(&missing), ["justification"]);

    let request: Value = submit(&app, &alice, &body("vm-rdp", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            request["status"].as_str(),
            request["requiredApprovals"].as_u64()
        ),
        (Some("pending"), Some(2))
    );

    problem(act(&app, &alice, &id, "approve", json!({})).await, 403).await;
    problem(
        act(&app, &requester_only, &id, "approve", json!({})).await,
        403,
    )
    .await;
    let one: Value = act(&app, &bob, &id, "approve", json!({ "comment": "ok" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["status"], "pending");
    assert_eq!(one["approvals"][0]["approver"]["name"], "bob@example.com");
    assert_eq!(one["approvals"][0]["comment"], "ok");
    problem(act(&app, &bob, &id, "approve", json!({})).await, 403).await;
    assert!(
        !open_from(&sim, "vm-rdp", ALICE_IP, 22),
        "nothing opens while pending"
    );
    let two: Value = act(&app, &carol, &id, "approve", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(two["status"], "approved");
    wait_active(&app, &alice, &id).await;
    assert!(open_from(&sim, "vm-rdp", ALICE_IP, 22));
    problem(act(&app, &carol, &id, "approve", json!({})).await, 409).await;
}

#[tokio::test]
async fn deny_and_cancel_end_a_pending_request() {
    let (app, _sim) = app_with_policy("vm-rdp", json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 1 } })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let bob = app.token("bob@example.com", &[Role::Approver]);
    let eve = app.token("eve@example.com", &[Role::Requester]);

    let first: Value = submit(&app, &alice, &body("vm-rdp", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let denied: Value = act(
        &app,
        &bob,
        first["id"].as_str().unwrap(),
        "deny",
        json!({ "reason": "not during the freeze" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["approvals"][0]["decision"], "deny");
    assert_eq!(
        denied["virtualMachines"][0]["ports"][0]["statusReason"],
        "Denied"
    );
    problem(
        act(
            &app,
            &bob,
            first["id"].as_str().unwrap(),
            "approve",
            json!({}),
        )
        .await,
        409,
    )
    .await;

    let second: Value = submit(&app, &alice, &body("vm-rdp", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = second["id"].as_str().unwrap();
    problem(
        app.request(
            Method::POST,
            &format!("/v1/access-requests/{id}/cancel"),
            &eve,
        )
        .send()
        .await
        .unwrap(),
        403,
    )
    .await;
    let cancelled = app
        .request(
            Method::POST,
            &format!("/v1/access-requests/{id}/cancel"),
            &alice,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    problem(
        app.request(
            Method::POST,
            &format!("/v1/access-requests/{id}/cancel"),
            &alice,
        )
        .send()
        .await
        .unwrap(),
        409,
    )
    .await;

    // Eve sees her own requests only; an auditor sees all; mine=true narrows to one's own.
    let eves = app.get_json("/v1/access-requests", &eve).await;
    assert_eq!(eves["items"], json!([]));
    problem(
        app.request(Method::GET, &format!("/v1/access-requests/{id}"), &eve)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let all = app.get_json("/v1/access-requests", &auditor).await;
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id, first["id"].as_str().unwrap()], "newest first");
    let denied_only = app
        .get_json("/v1/access-requests?status=denied", &auditor)
        .await;
    assert_eq!(denied_only["items"].as_array().unwrap().len(), 1);
    let by_vm = app
        .get_json(
            &format!("/v1/access-requests?vmId={}", vm("vm-web-1")),
            &auditor,
        )
        .await;
    assert_eq!(by_vm["items"], json!([]));
    assert_eq!(
        app.get_json("/v1/access-requests?mine=true", &alice).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_same_request() {
    let (app, _sim) = app_with_policy("vm-rdp", json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 1 } })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let send = |b: Value| {
        app.request(Method::POST, "/v1/access-requests", &alice)
            .header("Idempotency-Key", "retry-1")
            .json(&b)
            .send()
    };
    let first = send(body("vm-rdp", "PT1H", ALICE_IP)).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send(body("vm-rdp", "PT1H", ALICE_IP)).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    problem(send(body("vm-rdp", "PT2H", ALICE_IP)).await.unwrap(), 422).await;
    assert_eq!(
        app.get_json("/v1/access-requests?mine=true", &alice).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_requests_name_each_bad_field() {
    let (app, _sim) = app_with_policy("vm-web-1", json!({ "ports": [{ "number": 22, "maxRequestAccessDuration": "PT1H", "allowedSourceAddressPrefix": "203.0.113.0/24" }] })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let bad = json!({ "virtualMachines": [{ "id": vm("vm-web-1"), "ports": [
        { "number": 3389 },
        { "number": 22, "duration": "PT2H", "allowedSourceAddressPrefix": "198.51.100.0/24" },
    ] }] });
    let p = problem(submit(&app, &alice, &bad).await, 400).await;
    let fields = common::error_fields(&p);
    assert!(
        fields.contains(&"virtualMachines[0].ports[0].number".to_string()),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("virtualMachines[0].ports[1].")),
        "{fields:?}"
    );
    // A requester with no role at the VM's scope is refused before anything is checked.
    let elsewhere = app.scoped_token(
        "ed@example.com",
        &[Role::Requester],
        &["/subscriptions/00000000-0000-0000-0000-0000000000ff"],
    );
    problem(
        submit(&app, &elsewhere, &body("vm-web-1", "PT1H", ALICE_IP)).await,
        403,
    )
    .await;
    problem(
        app.request(Method::POST, "/v1/access-requests", &alice)
            .body("{")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
}

#[tokio::test]
async fn a_bot_asks_for_a_user_whose_own_assignments_decide() {
    let (app, sim) = app_with_policy("vm-web-1", json!({ "ports": [{ "number": 22 }] })).await;
    const USER: &str = "0a11ce00-0000-4000-8000-000000000001";
    let bot_token = |roles: &[Role]| {
        let mut spec = DevTokenSpec::user("chatops-bot", roles);
        spec.app = true;
        app.key.mint(&spec).unwrap()
    };
    let bot = bot_token(&[Role::Bot]);
    let mut for_user = body("vm-web-1", "PT1H", ALICE_IP);
    for_user["onBehalfOf"] = json!(USER);

    // The user holds no role yet: refused, and the refusal says whose role is missing.
    let refused = problem(submit(&app, &bot, &for_user).await, 403).await;
    assert!(
        refused["detail"].as_str().unwrap().contains(USER),
        "{refused}"
    );
    let assigned = app
        .assign(
            &app.admin(),
            "alice-requester",
            (USER, "User"),
            Role::Requester,
            &format!("/subscriptions/{SUB}"),
        )
        .await;
    assert_eq!(assigned.status(), 201);

    let created = submit(&app, &bot, &for_user).await;
    assert_eq!(created.status(), 201);
    let request: Value = created.json().await.unwrap();
    assert_eq!(request["requestor"]["id"], USER);
    assert_eq!(request["submittedBy"]["name"], "chatops-bot");
    let id = request["id"].as_str().unwrap().to_string();
    wait_active(&app, &bot, &id).await;
    assert!(open_from(&sim, "vm-web-1", ALICE_IP, 22));

    // The source must be named: the bot's address is not the user's.
    let mut no_source = for_user.clone();
    no_source["virtualMachines"][0]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("allowedSourceAddressPrefix");
    let p = problem(submit(&app, &bot, &no_source).await, 400).await;
    assert!(common::error_fields(&p)[0].ends_with("allowedSourceAddressPrefix"));
    // A user's token can never act for another user, nor can an app without Jit.Bot.
    let user_token = app.token("mallory@example.com", &[Role::Bot, Role::Requester]);
    problem(submit(&app, &user_token, &for_user).await, 403).await;
    problem(
        submit(&app, &bot_token(&[Role::Requester]), &for_user).await,
        403,
    )
    .await;

    // Where approval is manual, the bot may also cancel what it submitted.
    let url = format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/vm-rdp/policy");
    let manual = json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 1 } });
    assert_eq!(
        app.request(Method::PUT, &url, &app.admin())
            .json(&manual)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let mut for_user_rdp = body("vm-rdp", "PT1H", ALICE_IP);
    for_user_rdp["onBehalfOf"] = json!(USER);
    let pending: Value = submit(&app, &bot, &for_user_rdp)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().unwrap();
    let cancelled = app
        .request(
            Method::POST,
            &format!("/v1/access-requests/{id}/cancel"),
            &bot,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
}

#[tokio::test]
async fn revoking_closes_the_port_at_once_and_a_newer_request_supersedes_an_older_one() {
    let (app, sim) = app_with_policy("vm-web-1", json!({ "ports": [{ "number": 22 }] })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let eve = app.token("eve@example.com", &[Role::Requester]);
    let bob = app.token("bob@example.com", &[Role::Approver]);

    let first: Value = submit(&app, &alice, &body("vm-web-1", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let first_id = first["id"].as_str().unwrap().to_string();
    wait_active(&app, &alice, &first_id).await;

    // Asking again for the same port and source: the newer request takes over.
    let second: Value = submit(&app, &alice, &body("vm-web-1", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let second_id = second["id"].as_str().unwrap().to_string();
    wait_active(&app, &alice, &second_id).await;
    wait_until(
        &app,
        || async { status_of(&app, &alice, &first_id).await["status"] == "revoked" },
        "supersede",
    )
    .await;
    let older = status_of(&app, &alice, &first_id).await;
    assert_eq!(
        older["virtualMachines"][0]["ports"][0]["statusReason"],
        "NewerRequestInitiated"
    );
    // The older request's allow rule goes; the newer one's stays.
    let allow_rules = || {
        sim.nsg(&seed::nsg_id(SUB, RG, "nsg-web-subnet"))
            .unwrap()
            .properties
            .security_rules
            .iter()
            .filter(|r| r.name.starts_with("jitgate-allow-"))
            .count()
    };
    wait_until(&app, || async { allow_rules() == 1 }, "closing the older").await;
    assert!(
        open_from(&sim, "vm-web-1", ALICE_IP, 22),
        "still open: through the newer request's rule"
    );

    // Someone else's active access: not eve's to revoke; an approver's.
    problem(act(&app, &eve, &second_id, "revoke", json!({})).await, 403).await;
    let revoked = act(
        &app,
        &bob,
        &second_id,
        "revoke",
        json!({ "reason": "incident closed" }),
    )
    .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["status"], "revoked");
    // Closed at once (well within the wait's 20 s), long before its hour is up.
    wait_until(
        &app,
        || async { !open_from(&sim, "vm-web-1", ALICE_IP, 22) },
        "closing",
    )
    .await;
    wait_until(&app, || async { allow_rules() == 0 }, "the rule's removal").await;
    problem(act(&app, &bob, &second_id, "revoke", json!({})).await, 409).await;
}

#[tokio::test]
async fn a_vm_shows_its_active_grants_to_those_who_may_see_them() {
    let (app, _sim) = app_with_policy("vm-web-1", json!({ "ports": [{ "number": 22 }] })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let eve = app.token("eve@example.com", &[Role::Requester]);
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let request: Value = submit(&app, &alice, &body("vm-web-1", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    wait_active(&app, &alice, &id).await;

    let vm_url = format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/vm-web-1");
    let grants = |v: Value| v["activeGrants"].clone();
    let mine = grants(app.get_json(&vm_url, &alice).await);
    assert_eq!(mine[0]["requestId"], id.as_str());
    assert_eq!(mine[0]["allowedSourceAddressPrefix"], ALICE_IP);
    assert_eq!(mine[0]["number"], 22);
    assert_eq!(
        grants(app.get_json(&vm_url, &eve).await),
        json!([]),
        "not eve's to see"
    );
    assert_eq!(
        grants(app.get_json(&vm_url, &auditor).await)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let connect = app.get_json(&format!("{vm_url}/connect"), &alice).await;
    assert_eq!(connect["jitEnabled"], true);
    assert_eq!(connect["activeGrants"][0]["requestId"], id.as_str());
    assert_eq!(
        app.get_json(&format!("{vm_url}/connect"), &eve).await["activeGrants"],
        json!([])
    );
}

#[tokio::test]
async fn behind_a_firewall_access_is_a_dnat_rule_on_a_mapped_port_for_the_source_only() {
    let (app, sim) = app_with_policy("vm-spoke", json!({ "ports": [{ "number": 22 }] })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let internet_alice = ALICE_IP.parse().unwrap();
    let internet_mallory = MALLORY_IP.parse().unwrap();
    assert_eq!(
        sim.forwards("20.50.0.100", 50022, internet_alice),
        None,
        "the standing DNAT rule went with the policy"
    );

    let request: Value = submit(&app, &alice, &body("vm-spoke", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    wait_active(&app, &alice, &id).await;
    let port = status_of(&app, &alice, &id).await["virtualMachines"][0]["ports"][0].clone();
    assert_eq!(port["mappedAddress"], "20.50.0.100");
    let mapped = port["mappedPort"].as_u64().unwrap() as u16;
    assert_eq!(
        sim.forwards("20.50.0.100", mapped, internet_alice),
        Some(("10.10.4.4".into(), 22))
    );
    assert_eq!(
        sim.forwards("20.50.0.100", mapped, internet_mallory),
        None,
        "for alice's address only"
    );
    // After DNAT the VM sees the firewall: its NSG admits the firewall for the grant's port.
    let firewall_rules = || {
        sim.nsg(&seed::nsg_id(SUB, RG, "nsg-spoke"))
            .unwrap()
            .properties
            .security_rules
            .iter()
            .filter(|r| r.name.starts_with("jitgate-allow-") && r.name.ends_with("-fw"))
            .map(|r| {
                r.properties
                    .source_address_prefix
                    .clone()
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(firewall_rules(), ["10.10.0.4"]);
    assert!(open_from(&sim, "vm-spoke", "10.10.0.4", 22));

    let revoked = act(&app, &alice, &id, "revoke", json!({})).await;
    assert_eq!(revoked.status(), 200);
    wait_until(
        &app,
        || async {
            sim.forwards("20.50.0.100", mapped, internet_alice)
                .is_none()
        },
        "the DNAT rule's removal",
    )
    .await;
    wait_until(
        &app,
        || async { firewall_rules().is_empty() },
        "the NSG rule's removal",
    )
    .await;
}

#[tokio::test]
async fn a_request_made_before_the_policy_is_enforced_waits_for_its_deny_rules() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let url =
        format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/vm-web-2/policy");
    let put = app
        .request(Method::PUT, &url, &app.admin())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    // At once, before the dispatcher has written the deny rule.
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let request: Value = submit(&app, &alice, &body("vm-web-2", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    wait_until(
        &app,
        || async { status_of(&app, &alice, &id).await["status"] != "approved" },
        "activation",
    )
    .await;
    assert_eq!(status_of(&app, &alice, &id).await["status"], "active");
    assert!(open_from(&sim, "vm-web-2", ALICE_IP, 22));
    assert!(
        !open_from(&sim, "vm-web-2", MALLORY_IP, 22),
        "the deny rule is in place for everyone else"
    );
}

#[tokio::test]
async fn with_a_fifth_of_arm_calls_failing_every_request_ends_properly_and_every_removal_lands() {
    use jitgate::arm::sim::FaultPlan;
    let (app, sim) = app_with_policy("vm-web-1", json!({ "ports": [{ "number": 22 }] })).await;
    sim.set_faults(FaultPlan {
        throttle_rate: 0.05,
        throttle_retry_after: 0,
        server_error_rate: 0.04,
        conflict_rate: 0.04,
        stale_etag_rate: 0.04,
        lro_failure_rate: 0.03,
        seed: 20,
        ..FaultPlan::default()
    });
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let sources: Vec<String> = (10..22).map(|i| format!("203.0.113.{i}")).collect();
    let mut ids = Vec::new();
    for source in &sources {
        let created = submit(&app, &alice, &body("vm-web-1", "PT2S", source)).await;
        assert_eq!(created.status(), 201);
        ids.push(
            created.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Every request ends: expired after being active, or failed with ARM's reason.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut outcomes = Vec::new();
    for id in &ids {
        loop {
            let r = status_of(&app, &alice, id).await;
            let status = r["status"].as_str().unwrap().to_string();
            if status == "expired" || status == "failed" {
                if status == "failed" {
                    let reason = r["virtualMachines"][0]["ports"][0]["statusReason"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert!(
                        reason.contains(':'),
                        "a failure carries ARM's code and message: {reason}"
                    );
                }
                outcomes.push(status);
                break;
            }
            assert!(Instant::now() < deadline, "request {id} is still {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let expired = outcomes.iter().filter(|s| *s == "expired").count();
    println!("with 20% ARM faults: {expired} of {} requests opened and expired, the rest failed with a reason", ids.len());
    assert!(expired > 0, "faults are retried: most requests open");
    let (calls, faults) = {
        let world = sim.world();
        (
            world.log.len(),
            world.log.iter().filter(|r| r.status >= 400).count(),
        )
    };
    println!("ARM calls: {calls}, answered with a fault: {faults}");
    assert!(faults > 0, "faults were injected");
    // Every allow rule is gone, and nobody gets in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nsg = sim.nsg(&seed::nsg_id(SUB, RG, "nsg-web-subnet")).unwrap();
        if !nsg
            .properties
            .security_rules
            .iter()
            .any(|r| r.name.starts_with("jitgate-allow-"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "allow rules left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.set_faults(FaultPlan::default());
    for source in &sources {
        assert!(
            !open_from(&sim, "vm-web-1", source, 22),
            "{source} still gets in"
        );
    }
}

#[tokio::test]
async fn the_reconciler_restores_a_deleted_deny_rule_and_removes_stray_allow_rules() {
    use jitgate::arm::sim::seed::allow_inbound;
    let (app, sim) = app_with_policy("vm-web-1", json!({ "ports": [{ "number": 22 }] })).await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let request: Value = submit(&app, &alice, &body("vm-web-1", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    wait_active(&app, &alice, &id).await;

    // Drift: someone deletes the deny rule in the portal, and a stray allow rule of ours
    // (for a request that does not exist) lets mallory in.
    let nsg_id = seed::nsg_id(SUB, RG, "nsg-web-subnet");
    let mut nsg = sim.nsg(&nsg_id).unwrap();
    nsg.properties
        .security_rules
        .retain(|r| !r.name.starts_with("jitgate-deny-"));
    let mut stray = allow_inbound("jitgate-allow-22-0123456789abcdef", 150, MALLORY_IP, "22");
    stray.properties.description = Some("jitgate access request no-such-request for nobody".into());
    nsg.properties.security_rules.push(stray);
    sim.world().upsert_nsg(nsg);
    assert!(open_from(&sim, "vm-web-1", MALLORY_IP, 22));
    assert!(
        open_from(&sim, "vm-web-1", "198.51.100.77", 22),
        "the deny rule is gone"
    );

    let sim_arm = jitgate::server::arm_for_sim(
        &jitgate::config::Settings::default().resolve().unwrap(),
        sim.clone(),
        SIM_TOKEN,
    )
    .await
    .unwrap();
    let reconciler = jitgate::server::reconciler(
        &jitgate::config::Settings::default().resolve().unwrap(),
        app.store.clone(),
        &sim_arm,
    );
    let repairs = reconciler.reconcile_once().await.unwrap();
    assert_eq!(repairs.allow_rules_removed.len(), 1, "{repairs:?}");
    assert!(repairs.allow_rules_removed[0].starts_with("jitgate-allow-22-0123456789abcdef"));
    assert_eq!(repairs.deny_rules_restored.len(), 1, "{repairs:?}");
    wait_until(
        &app,
        || async { !open_from(&sim, "vm-web-1", "198.51.100.77", 22) },
        "the deny rule back",
    )
    .await;
    assert!(
        !open_from(&sim, "vm-web-1", MALLORY_IP, 22),
        "the stray rule is gone"
    );
    assert!(
        open_from(&sim, "vm-web-1", ALICE_IP, 22),
        "alice's active grant is explained and kept"
    );
    let again = reconciler.reconcile_once().await.unwrap();
    assert_eq!(again, Default::default(), "nothing left to repair");
}

#[tokio::test]
async fn a_failed_activation_takes_back_the_rules_it_had_written() {
    use jitgate::arm::sim::seed::VmSpec;
    use jitgate::arm::sim::{Fault, FaultMatch, FaultPlan};
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    // A VM behind two NSGs: its subnet's and its NIC's.
    sim.add_vm(&VmSpec {
        subscription: SUB,
        resource_group: RG,
        name: "vm-two-nsgs",
        vnet: "vnet-demo",
        subnet: "snet-web",
        private_ip: "10.10.1.50",
        public_ip: None,
        nic_nsg: Some("nsg-app"),
    });
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let url =
        format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/vm-two-nsgs/policy");
    assert_eq!(
        app.request(Method::PUT, &url, &app.admin())
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    wait_until(
        &app,
        || async { app.get_json(&url, &app.admin()).await["enforcement"]["state"] == "applied" },
        "enforcement",
    )
    .await;

    // The NIC's NSG refuses the grant's write; the subnet's has taken it by then.
    sim.set_faults(FaultPlan {
        script: vec![(
            FaultMatch {
                method: Some("PUT".into()),
                path_contains: Some("nsg-app".into()),
            },
            Fault::LroFailed {
                code: "NetworkSecurityGroupUpdateFailed".into(),
                message: "injected".into(),
            },
        )]
        .into(),
        ..FaultPlan::default()
    });
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let request: Value = submit(&app, &alice, &body("vm-two-nsgs", "PT1H", ALICE_IP))
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap().to_string();
    wait_until(
        &app,
        || async { status_of(&app, &alice, &id).await["status"] == "failed" },
        "failure",
    )
    .await;
    let failed = status_of(&app, &alice, &id).await;
    assert!(
        failed["virtualMachines"][0]["ports"][0]["statusReason"]
            .as_str()
            .unwrap()
            .contains("NetworkSecurityGroupUpdateFailed"),
        "{failed}"
    );
    let allow_rules = || {
        sim.nsg(&seed::nsg_id(SUB, RG, "nsg-web-subnet"))
            .unwrap()
            .properties
            .security_rules
            .iter()
            .filter(|r| r.name.starts_with("jitgate-allow-"))
            .count()
    };
    wait_until(
        &app,
        || async { allow_rules() == 0 },
        "the partial rule's removal",
    )
    .await;
}
