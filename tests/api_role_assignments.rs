//! `/v1/role-assignments` over HTTP: who may read and write them, what they grant, and what a
//! bad one gets back.

mod common;

use common::{error_fields, problem, TestApp, SUB};
use jitgate::auth::dev::DevTokenSpec;
use jitgate::rbac::Role;
use reqwest::Method;
use serde_json::{json, Value};

const BOB: &str = "0b0b0000-0000-4000-8000-000000000002";

fn sub_scope() -> String {
    format!("/subscriptions/{SUB}")
}

fn rg_scope(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

/// A dev token for `user` whose object id is `oid`.
fn token_for(app: &TestApp, user: &str, oid: &str, roles: &[Role]) -> String {
    let mut spec = DevTokenSpec::user(user, roles);
    spec.oid = Some(oid.into());
    app.key.mint(&spec).unwrap()
}

#[tokio::test]
async fn an_admin_creates_replaces_reads_lists_and_deletes_assignments() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let created = app
        .assign(&admin, "a1", (BOB, "User"), Role::Approver, &sub_scope())
        .await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["id"], "a1");
    assert_eq!(body["principalId"], BOB);
    assert_eq!(body["principalType"], "User");
    assert_eq!(body["role"], "Jit.Approver");
    assert_eq!(body["scope"], sub_scope());
    assert_eq!(body["updatedBy"]["name"], "admin@example.com");

    // The same PUT again (a retry) changes nothing and answers 200.
    let again = app
        .assign(&admin, "a1", (BOB, "User"), Role::Approver, &sub_scope())
        .await;
    assert_eq!(again.status(), 200);
    // A PUT with another role replaces it.
    let replaced = app
        .assign(&admin, "a1", (BOB, "User"), Role::Auditor, &sub_scope())
        .await;
    assert_eq!(replaced.status(), 200);
    let got = app.get_json("/v1/role-assignments/a1", &admin).await;
    assert_eq!(got["role"], "Jit.Auditor");

    // Bob's token, which carries no app role, now has the role from the assignment.
    let bob = token_for(&app, "bob@example.com", BOB, &[]);
    let me = app.get_json("/v1/me", &bob).await;
    assert_eq!(
        me["roles"],
        json!([{ "role": "Jit.Auditor", "scope": sub_scope(), "source": "assignment", "assignmentId": "a1" }])
    );

    for i in 0..5 {
        let id = format!("b{i}");
        let r = app
            .assign(
                &admin,
                &id,
                (&format!("oid-{i}"), "Group"),
                Role::Requester,
                &rg_scope("rg-web"),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let first = app.get_json("/v1/role-assignments?limit=4", &admin).await;
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a1", "b0", "b1", "b2"]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let rest = app
        .get_json(
            &format!("/v1/role-assignments?limit=4&cursor={cursor}"),
            &admin,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["nextCursor"].is_null());
    let bobs = app
        .get_json(&format!("/v1/role-assignments?principalId={BOB}"), &admin)
        .await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 1);
    let requesters = app
        .get_json("/v1/role-assignments?role=Jit.Requester", &admin)
        .await;
    assert_eq!(requesters["items"].as_array().unwrap().len(), 5);

    let deleted = app
        .request(Method::DELETE, "/v1/role-assignments/a1", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    problem(
        app.request(Method::GET, "/v1/role-assignments/a1", &admin)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        app.request(Method::DELETE, "/v1/role-assignments/a1", &admin)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let me = app.get_json("/v1/me", &bob).await;
    assert_eq!(me["roles"], json!([]));

    let events = app.store.audit_events_after(0, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "roleAssignment.created")
            .count(),
        6
    );
    // The retried PUT changed nothing and recorded nothing; the replacement did.
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "roleAssignment.updated")
            .count(),
        1
    );
    assert_eq!(types.last(), Some(&"roleAssignment.deleted"));
    common::assert_chain_ok(&events);
}

#[tokio::test]
async fn the_same_grant_under_another_id_is_a_conflict() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    assert_eq!(
        app.assign(&admin, "first", (BOB, "User"), Role::Approver, &sub_scope())
            .await
            .status(),
        201
    );
    let upper = sub_scope()
        .to_uppercase()
        .replace("/SUBSCRIPTIONS/", "/subscriptions/");
    let twin = problem(
        app.assign(&admin, "second", (BOB, "User"), Role::Approver, &upper)
            .await,
        409,
    )
    .await;
    assert!(
        twin["detail"].as_str().unwrap().contains("\"first\""),
        "{twin}"
    );
}

#[tokio::test]
async fn bad_assignments_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let put = |id: &str, body: Value| {
        app.request(Method::PUT, &format!("/v1/role-assignments/{id}"), &admin)
            .json(&body)
            .send()
    };
    let p = problem(put("x", json!({})).await.unwrap(), 400).await;
    assert_eq!(
        error_fields(&p),
        ["principalId", "principalType", "role", "scope"]
    );
    let p = problem(
        put("x", json!({ "principalId": BOB, "principalType": "Robot", "role": "Jit.Root", "scope": "/subscriptions" }))
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(error_fields(&p), ["principalType", "role", "scope"]);
    // Tenant-wide roles are Entra app roles, not stored assignments.
    let p = problem(
        put("x", json!({ "principalId": BOB, "principalType": "User", "role": "Jit.Admin", "scope": "/" })).await.unwrap(),
        400,
    )
    .await;
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("app roles"));
    let p = problem(
        put("x", json!({ "principalId": BOB, "principalType": "User", "role": "Jit.Admin", "scope": sub_scope(), "extra": 1 }))
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("extra"), "{p}");
    let long = "a".repeat(65);
    let p = problem(
        put(&long, json!({ "principalId": BOB, "principalType": "User", "role": "Jit.Admin", "scope": sub_scope() }))
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(error_fields(&p), ["id"]);
    problem(
        app.request(Method::GET, "/v1/role-assignments?role=Jit.Root", &admin)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        app.request(Method::GET, "/v1/role-assignments?limit=0", &admin)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        app.request(Method::GET, "/v1/role-assignments/bad%20id", &admin)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    // Nothing was written.
    assert!(app
        .store
        .audit_events_after(0, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_scoped_admin_delegates_within_its_scope_only() {
    let app = TestApp::spawn().await;
    let root = app.admin();
    const CAROL: &str = "ca000000-0000-4000-8000-00000000ca01";
    assert_eq!(
        app.assign(
            &root,
            "carol-web",
            (CAROL, "User"),
            Role::Admin,
            &rg_scope("rg-web")
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        app.assign(
            &root,
            "bob-db",
            (BOB, "User"),
            Role::Approver,
            &rg_scope("rg-db")
        )
        .await
        .status(),
        201
    );
    let carol = token_for(&app, "carol@example.com", CAROL, &[]);

    // Inside her resource group, on a VM in it too: allowed.
    assert_eq!(
        app.assign(
            &carol,
            "bob-web",
            (BOB, "User"),
            Role::Approver,
            &rg_scope("rg-web")
        )
        .await
        .status(),
        201
    );
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1",
        rg_scope("rg-web")
    );
    assert_eq!(
        app.assign(&carol, "bob-vm", (BOB, "User"), Role::Requester, &vm)
            .await
            .status(),
        201
    );
    // Above it, beside it, or moving someone else's assignment into it: refused.
    problem(
        app.assign(
            &carol,
            "bob-sub",
            (BOB, "User"),
            Role::Approver,
            &sub_scope(),
        )
        .await,
        403,
    )
    .await;
    problem(
        app.assign(
            &carol,
            "bob-db2",
            (BOB, "User"),
            Role::Approver,
            &rg_scope("rg-db"),
        )
        .await,
        403,
    )
    .await;
    problem(
        app.assign(
            &carol,
            "bob-db",
            (BOB, "User"),
            Role::Approver,
            &rg_scope("rg-web"),
        )
        .await,
        403,
    )
    .await;
    problem(
        app.request(Method::DELETE, "/v1/role-assignments/bob-db", &carol)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    // A prefix of her group's name is another group.
    problem(
        app.assign(
            &carol,
            "bob-we",
            (BOB, "User"),
            Role::Approver,
            &rg_scope("rg-we"),
        )
        .await,
        403,
    )
    .await;

    // She reads the assignments within her scope, not the others.
    let list = app.get_json("/v1/role-assignments", &carol).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bob-vm", "bob-web", "carol-web"]);
    problem(
        app.request(Method::GET, "/v1/role-assignments/bob-db", &carol)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
}

#[tokio::test]
async fn auditors_read_and_nobody_else_without_admin_writes() {
    let app = TestApp::spawn().await;
    let root = app.admin();
    assert_eq!(
        app.assign(&root, "a1", (BOB, "User"), Role::Approver, &sub_scope())
            .await
            .status(),
        201
    );
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    assert_eq!(
        app.get_json("/v1/role-assignments", &auditor).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get_json("/v1/role-assignments/a1", &auditor).await["role"],
        "Jit.Approver"
    );
    for role in [Role::Auditor, Role::Approver, Role::Requester, Role::Bot] {
        let token = app.token("someone@example.com", &[role]);
        let refused = problem(
            app.assign(&token, "a2", (BOB, "User"), Role::Admin, &sub_scope())
                .await,
            403,
        )
        .await;
        assert!(refused["detail"].as_str().unwrap().contains("Jit.Admin"));
        problem(
            app.request(Method::DELETE, "/v1/role-assignments/a1", &token)
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
    }
    for role in [Role::Approver, Role::Requester, Role::Bot] {
        let token = app.token("someone@example.com", &[role]);
        problem(
            app.request(Method::GET, "/v1/role-assignments", &token)
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
    }
    assert!(app.store.get_role_assignment("a2").await.unwrap().is_none());
}
