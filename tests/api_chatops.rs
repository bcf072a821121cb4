//! Chatops over HTTP: Slack's slash command and buttons, and a Teams outgoing webhook, signed
//! as the platforms sign them, against a real server over the ARM simulator. Chat users act
//! as the Entra users an admin mapped them to, held to exactly the API's rules.

mod common;

use common::lifecycle::{vm, wait_active, wait_until};
use common::{problem, TestApp, TestDb, SIM_TOKEN};
use jitgate::arm::sim::seed::{DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::Sim;
use jitgate::chatops::signature::{slack_signature, teams_authorization};
use jitgate::config::Settings;
use jitgate::rbac::Role;
use reqwest::{Method, Response};
use serde_json::{json, Value};

const SLACK_SECRET: &str = "test-slack-signing-secret";
/// base64 of "test-teams-key".
const TEAMS_SECRET: &str = "dGVzdC10ZWFtcy1rZXk=";
const TEAM: &str = "T0JITGATE";
const TENANT: &str = "11111111-2222-4333-8444-555555555555";

const ALICE: &str = "aaaaaaaa-0000-4000-8000-00000000a11c";
const BOB: &str = "bbbbbbbb-0000-4000-8000-000000000b0b";
const CAROL: &str = "cccccccc-0000-4000-8000-0000000ca201";

const MANUAL: &str = "vm-web-1";
const AUTO: &str = "vm-web-2";

fn policy_url(name: &str) -> String {
    format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{name}/policy")
}

/// A server with chatops on, a manual-approval policy on `vm-web-1` and an automatic one on
/// `vm-web-2` (both enforced), and alice (requester and approver), bob (approver) and carol
/// (requester only) mapped to Slack accounts; alice to Teams as well.
async fn chat_app() -> TestApp {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let settings = Settings {
        slack_signing_secret: Some(SLACK_SECRET.parse().unwrap()),
        teams_outgoing_webhook_secret: Some(TEAMS_SECRET.parse().unwrap()),
        ..Default::default()
    };
    let app = TestApp::spawn_on_with_arm(TestDb::sqlite(), settings, sim).await;
    let admin = app.admin();
    for (name, approval) in [
        (MANUAL, json!({ "mode": "manual", "requiredApprovals": 1 })),
        (AUTO, json!({ "mode": "auto" })),
    ] {
        let put = app
            .request(Method::PUT, &policy_url(name), &admin)
            .json(&json!({
                "ports": [{ "number": 22, "maxRequestAccessDuration": "PT1H" }],
                "approval": approval,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        wait_until(
            &app,
            || async {
                app.get_json(&policy_url(name), &admin).await["enforcement"]["state"] == "applied"
            },
            "enforcement",
        )
        .await;
    }
    let scope = format!("/subscriptions/{SUB}");
    for (id, oid, role) in [
        ("alice-req", ALICE, Role::Requester),
        ("alice-appr", ALICE, Role::Approver),
        ("bob-appr", BOB, Role::Approver),
        ("carol-req", CAROL, Role::Requester),
    ] {
        let r = app.assign(&admin, id, (oid, "User"), role, &scope).await;
        assert_eq!(r.status(), 201);
    }
    for (id, user, oid, name) in [
        ("slack-alice", "UALICE", ALICE, "alice@example.com"),
        ("slack-bob", "UBOB", BOB, "bob@example.com"),
        ("slack-carol", "UCAROL", CAROL, "carol@example.com"),
    ] {
        let r = map(&app, id, json!({ "platform": "slack", "workspaceId": TEAM, "chatUserId": user, "userId": oid, "userName": name })).await;
        assert_eq!(r.status(), 201);
    }
    let r = map(&app, "teams-alice", json!({ "platform": "teams", "workspaceId": TENANT, "chatUserId": ALICE, "userId": ALICE, "userName": "alice@example.com" })).await;
    assert_eq!(r.status(), 201);
    app
}

async fn map(app: &TestApp, id: &str, body: Value) -> Response {
    app.request(
        Method::PUT,
        &format!("/v1/chatops/identities/{id}"),
        &app.admin(),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs `body` to a Slack endpoint, signed with `secret` at `ts`.
async fn slack_post(app: &TestApp, path: &str, body: &str, secret: &str, ts: i64) -> Response {
    let ts = ts.to_string();
    app.client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header(
            "x-slack-signature",
            slack_signature(secret.as_bytes(), &ts, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn command_form(user: &str, text: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "legacy-ignored"),
        ("team_id", TEAM),
        ("user_id", user),
        ("command", "/jit"),
        ("text", text),
        ("trigger_id", &uuid::Uuid::new_v4().to_string()),
    ])
    .unwrap()
}

/// Runs `/jit <text>` as Slack user `user`, correctly signed; returns Slack's JSON.
async fn jit(app: &TestApp, user: &str, text: &str) -> Value {
    let r = slack_post(
        app,
        "/v1/chatops/slack/commands",
        &command_form(user, text),
        SLACK_SECRET,
        now(),
    )
    .await;
    assert_eq!(r.status(), 200, "/jit {text}");
    r.json().await.unwrap()
}

/// Clicks a button of a pending request as Slack user `user`; returns the reply.
async fn click(app: &TestApp, user: &str, action: &str, id: &str) -> Value {
    let payload = json!({
        "type": "block_actions",
        "user": { "id": user, "team_id": TEAM },
        "team": { "id": TEAM },
        "actions": [{ "action_id": action, "value": id, "type": "button" }],
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let r = slack_post(
        app,
        "/v1/chatops/slack/interactions",
        &body,
        SLACK_SECRET,
        now(),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The request id on the Approve button of a pending request message.
fn button_request_id(reply: &Value) -> String {
    let buttons = &reply["blocks"][1]["elements"];
    assert_eq!(buttons[0]["action_id"], "jit_approve", "{reply}");
    assert_eq!(buttons[1]["action_id"], "jit_deny");
    assert_eq!(buttons[0]["value"], buttons[1]["value"]);
    buttons[0]["value"].as_str().unwrap().to_string()
}

async fn request_status(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/access-requests/{id}"), &app.admin())
        .await
}

#[tokio::test]
async fn a_signed_slash_command_from_a_mapped_requester_creates_the_request_as_the_api_would() {
    let app = chat_app().await;
    let reply = jit(
        &app,
        "UALICE",
        "request VM-WEB-1 22 1h from 203.0.113.7 INC-1234: patch <!channel> openssl",
    )
    .await;
    assert_eq!(reply["response_type"], "in_channel", "{reply}");
    let id = button_request_id(&reply);
    let text = reply["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt;"),
        "user text is escaped: {text}"
    );

    let r = request_status(&app, &id).await;
    assert_eq!(r["status"], "pending");
    assert_eq!(
        r["requestor"],
        json!({ "id": ALICE, "name": "alice@example.com" })
    );
    assert_eq!(r["submittedBy"], r["requestor"]);
    assert_eq!(r["justification"], "INC-1234: patch <!channel> openssl");
    assert_eq!(r["requiredApprovals"], 1);
    assert_eq!(r["virtualMachines"][0]["id"], vm(MANUAL));
    let port = &r["virtualMachines"][0]["ports"][0];
    assert_eq!(port["number"], 22);
    assert_eq!(port["duration"], "PT1H");
    assert_eq!(port["allowedSourceAddressPrefix"], "203.0.113.7");
    assert_eq!(port["status"], "Pending");

    // Audited as the REST API audits it: request.created, by alice.
    let events = app
        .get_json(&format!("/v1/audit/events?requestId={id}"), &app.admin())
        .await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["type"], "request.created");
    assert_eq!(items[0]["actor"]["id"], ALICE);

    // Mistakes are answered only to the typist, with help.
    for (text, expect) in [
        (
            "request vm-nowhere 22 1h from 203.0.113.7 x",
            "No VM named `vm-nowhere`",
        ),
        (
            "request vm-web-1 22 1h INC-1",
            "add `from <your public IP address>`",
        ),
        (
            "request vm-web-1 3389 1h from 203.0.113.7 x",
            "not in the virtual machine's JIT policy",
        ),
        ("request vm-web-1 22 2h from 203.0.113.7 x", "duration"),
        ("launch the missiles", "don't know the command"),
    ] {
        let reply = jit(&app, "UALICE", text).await;
        assert_eq!(reply["response_type"], "ephemeral", "{text}: {reply}");
        let said = reply["text"].as_str().unwrap();
        assert!(said.contains(expect), "{text}: {said}");
    }
    // An unmapped account, and one whose user may not request, get nothing.
    let reply = jit(&app, "UNOBODY", "request vm-web-1 22 1h from 203.0.113.7 x").await;
    assert!(
        reply["text"].as_str().unwrap().contains("not linked"),
        "{reply}"
    );
    let bob = jit(&app, "UBOB", "request vm-web-1 22 1h from 203.0.113.7 x").await;
    assert!(
        bob["text"].as_str().unwrap().starts_with("Not allowed:"),
        "{bob}"
    );
    let all = app.get_json("/v1/access-requests", &app.admin()).await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        1,
        "only alice's request"
    );
}

#[tokio::test]
async fn forged_and_stale_signatures_are_refused_and_change_nothing() {
    let app = chat_app().await;
    let head_before = app.store.audit_head().await.unwrap();
    let body = command_form("UALICE", "request vm-web-2 22 1h from 203.0.113.7 x");
    let forged = slack_post(
        &app,
        "/v1/chatops/slack/commands",
        &body,
        "not-the-secret",
        now(),
    )
    .await;
    let p = problem(forged, 401).await;
    assert_eq!(p["type"], "urn:jitgate:problem:invalid-signature");
    assert!(
        p["detail"].as_str().unwrap().contains("does not match"),
        "{p}"
    );

    let stale = slack_post(
        &app,
        "/v1/chatops/slack/commands",
        &body,
        SLACK_SECRET,
        now() - 6 * 60,
    )
    .await;
    let p = problem(stale, 401).await;
    assert!(p["detail"].as_str().unwrap().contains("5 minutes"), "{p}");

    let unsigned = app
        .client
        .post(app.url("/v1/chatops/slack/commands"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(unsigned, 401).await;

    let payload = json!({ "type": "block_actions", "user": { "id": "UBOB" }, "team": { "id": TEAM },
                          "actions": [{ "action_id": "jit_approve", "value": "x" }] });
    let click = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let forged = slack_post(
        &app,
        "/v1/chatops/slack/interactions",
        &click,
        "not-the-secret",
        now(),
    )
    .await;
    problem(forged, 401).await;

    let all = app.get_json("/v1/access-requests", &app.admin()).await;
    assert_eq!(all["items"], json!([]), "no request was made");
    assert_eq!(
        app.store.audit_head().await.unwrap(),
        head_before,
        "no audit event"
    );
}

#[tokio::test]
async fn approval_clicks_are_held_to_the_apis_rules() {
    let app = chat_app().await;
    let reply = jit(
        &app,
        "UALICE",
        "request vm-web-1 ssh 30m from 203.0.113.7 INC-7",
    )
    .await;
    let id = button_request_id(&reply);

    for (user, expect) in [
        ("UNOBODY", "not linked"),
        (
            "UCAROL",
            "Not allowed: carol@example.com may not approve or deny",
        ),
        ("UALICE", "Not allowed"),
    ] {
        let reply = click(&app, user, "jit_approve", &id).await;
        assert_eq!(reply["response_type"], "ephemeral", "{user}: {reply}");
        assert_eq!(reply["replace_original"], false);
        let said = reply["text"].as_str().unwrap();
        assert!(said.contains(expect), "{user}: {said}");
        assert_eq!(
            request_status(&app, &id).await["status"],
            "pending",
            "{user}"
        );
    }
    // The requestor is refused for being the requestor, not for lacking the role.
    let alice = click(&app, "UALICE", "jit_approve", &id).await;
    assert!(
        !alice["text"].as_str().unwrap().contains("needs Jit."),
        "{alice}"
    );

    let bob = click(&app, "UBOB", "jit_approve", &id).await;
    assert_eq!(bob["replace_original"], true, "{bob}");
    assert!(
        bob["text"]
            .as_str()
            .unwrap()
            .starts_with("Approved by bob@example.com"),
        "{bob}"
    );
    assert!(
        bob["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions"),
        "the buttons are gone once decided: {bob}"
    );
    let r = request_status(&app, &id).await;
    assert!(
        matches!(r["status"].as_str(), Some("approved" | "active")),
        "{r}"
    );
    assert_eq!(r["approvals"][0]["approver"]["id"], BOB);
    wait_active(&app, &app.admin(), &id).await;

    // A second click finds it decided.
    let again = click(&app, "UBOB", "jit_deny", &id).await;
    assert_eq!(again["response_type"], "ephemeral", "{again}");
}

#[tokio::test]
async fn status_lists_the_callers_requests_and_revoke_closes_access() {
    let app = chat_app().await;
    let empty = jit(&app, "UCAROL", "status").await;
    assert_eq!(empty["text"], "You have no access requests.");

    let reply = jit(
        &app,
        "UCAROL",
        "request vm-web-2 22 10m from 198.51.100.0/30 INC-9",
    )
    .await;
    assert_eq!(
        reply["response_type"], "ephemeral",
        "auto-approved: {reply}"
    );
    let id = request_status_ids(&app).await.pop().unwrap();
    wait_active(&app, &app.admin(), &id).await;

    let status = jit(&app, "UCAROL", "status").await;
    let text = status["text"].as_str().unwrap();
    assert!(text.contains(&id) && text.contains("active"), "{text}");
    let others = jit(&app, "UALICE", "status").await;
    assert!(!others["text"].as_str().unwrap().contains(&id), "{others}");

    let revoked = jit(&app, "UCAROL", &format!("revoke {id} done early")).await;
    assert!(
        revoked["text"]
            .as_str()
            .unwrap()
            .starts_with("Revoked by carol@example.com"),
        "{revoked}"
    );
    let r = request_status(&app, &id).await;
    assert_eq!(r["status"], "revoked");
    let again = jit(&app, "UCAROL", &format!("revoke {id}")).await;
    assert_eq!(again["response_type"], "ephemeral");
}

async fn request_status_ids(app: &TestApp) -> Vec<String> {
    let all = app.get_json("/v1/access-requests", &app.admin()).await;
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn teams_activity(id: &str, aad: &str, text: &str) -> String {
    json!({
        "type": "message",
        "id": id,
        "text": format!("<at>jitgate</at>&nbsp;{text}"),
        "from": { "id": "29:1abc", "name": "Alice", "aadObjectId": aad },
        "channelData": { "tenant": { "id": TENANT } },
    })
    .to_string()
}

async fn teams_post(app: &TestApp, body: &str, key: &[u8]) -> Response {
    app.client
        .post(app.url("/v1/chatops/teams/messages"))
        .header("content-type", "application/json")
        .header("authorization", teams_authorization(key, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn teams_messages_need_a_good_hmac_and_are_not_replayed() {
    let app = chat_app().await;
    let key = b"test-teams-key";
    let body = teams_activity(
        "1001",
        ALICE,
        "request vm-web-1 22 1h from 203.0.113.7 INC-42",
    );

    let forged = teams_post(&app, &body, b"wrong-key").await;
    let p = problem(forged, 401).await;
    assert_eq!(p["type"], "urn:jitgate:problem:invalid-signature");
    assert!(request_status_ids(&app).await.is_empty());

    let ok = teams_post(&app, &body, key).await;
    assert_eq!(ok.status(), 200);
    let reply: Value = ok.json().await.unwrap();
    assert_eq!(reply["type"], "message");
    let ids = request_status_ids(&app).await;
    assert_eq!(ids.len(), 1, "{reply}");
    assert!(reply["text"].as_str().unwrap().contains(&ids[0]), "{reply}");
    let r = request_status(&app, &ids[0]).await;
    assert_eq!(r["requestor"]["id"], ALICE);
    assert_eq!(r["status"], "pending");

    let replay = teams_post(&app, &body, key).await;
    assert_eq!(replay.status(), 200);
    let said: Value = replay.json().await.unwrap();
    assert!(
        said["text"].as_str().unwrap().contains("handled already"),
        "{said}"
    );
    assert_eq!(request_status_ids(&app).await.len(), 1, "nothing new");

    let stranger = teams_activity("1002", BOB, "status");
    let reply: Value = teams_post(&app, &stranger, key).await.json().await.unwrap();
    assert!(
        reply["text"].as_str().unwrap().contains("not linked"),
        "{reply}"
    );
}

#[tokio::test]
async fn chat_endpoints_are_off_without_their_secrets_and_mappings_are_admin_only() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/chatops/slack/commands",
        "/v1/chatops/slack/interactions",
        "/v1/chatops/teams/messages",
    ] {
        let r = app
            .client
            .post(app.url(path))
            .body("x")
            .send()
            .await
            .unwrap();
        let p = problem(r, 404).await;
        assert_eq!(p["type"], "urn:jitgate:problem:chatops-disabled", "{path}");
    }
    let body = json!({ "platform": "slack", "workspaceId": TEAM, "chatUserId": "U1", "userId": ALICE, "userName": "alice" });
    let approver = app.token("approver@example.com", &[Role::Approver]);
    let auditor = app.token("auditor@example.com", &[Role::Auditor]);
    let r = app
        .request(Method::PUT, "/v1/chatops/identities/m1", &approver)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    assert_eq!(map(&app, "m1", body.clone()).await.status(), 201);
    assert_eq!(map(&app, "m1", body.clone()).await.status(), 200);
    let twin = map(&app, "m2", body.clone()).await;
    problem(twin, 409).await;
    let list = app.get_json("/v1/chatops/identities", &auditor).await;
    assert_eq!(list["items"][0]["userId"], ALICE);
    let r = app
        .request(Method::GET, "/v1/chatops/identities", &approver)
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    let r = app
        .request(Method::DELETE, "/v1/chatops/identities/m1", &auditor)
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    let r = app
        .request(Method::DELETE, "/v1/chatops/identities/m1", &app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let events = app
        .get_json(
            "/v1/audit/events?type=chatopsIdentity.created,chatopsIdentity.deleted",
            &auditor,
        )
        .await;
    assert_eq!(events["items"].as_array().unwrap().len(), 2, "{events}");
}
