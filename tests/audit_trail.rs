//! The audit trail as an auditor relies on it: every lifecycle path leaves exactly its events;
//! the database refuses edits; an edit, deletion or reordering made behind the service's back
//! (by someone who could drop the guards) is named by its seq, over HTTP and offline; retention
//! prunes behind a signed checkpoint and verification still holds.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::lifecycle::*;
use common::process::jitgate;
use common::{TestApp, TestDb};
use jitgate::arm::sim::{Fault, FaultMatch, FaultPlan};
use jitgate::audit::checkpoint::{prune, AuditSigner};
use jitgate::audit::verify::verify_chain;
use jitgate::audit::NewAuditEvent;
use jitgate::domain::Principal;
use jitgate::rbac::Role;
use jitgate::store::DynStore;
use reqwest::Method;
use serde_json::{json, Value};

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else {
                        eprintln!("JITGATE_TEST_POSTGRES_URL is not set: the PostgreSQL run of this test is skipped");
                        return;
                    };
                    super::$name(db).await;
                }
            )*
        }
    };
}

on_every_backend!(
    the_database_refuses_to_change_or_delete_events,
    an_edited_row_is_named_by_its_seq,
    a_deleted_row_is_named_by_its_seq,
    reordered_rows_are_named_by_the_first_seq_out_of_place,
    pruning_leaves_a_signed_checkpoint_that_verification_starts_from,
);

fn actor() -> Principal {
    Principal {
        id: "oid-admin".into(),
        name: "admin@example.com".into(),
    }
}

/// Appends `n` events, one a minute, the first at `start`.
async fn append(store: &DynStore, n: usize, start: DateTime<Utc>) {
    for i in 0..n {
        store
            .append_event(
                NewAuditEvent {
                    event_type: "policy.enforcementApplied",
                    actor: actor(),
                    resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-{i}"),
                    request_id: None,
                    data: json!({ "i": i, "note": "a, \"quoted\"\nline" }),
                },
                start + Duration::minutes(i as i64),
            )
            .await
            .unwrap();
    }
}

/// What an attacker with the database's owner credentials does first: switch the guards off.
async fn drop_guards(db: &TestDb) {
    let sql = if db.is_postgres() {
        "ALTER TABLE audit_events DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;"
    } else {
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete; \
         DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;"
    };
    db.exec(sql).await.unwrap();
}

/// `jitgate audit verify` against the database: its exit status, stdout report and stderr.
fn cli_verify(db: &TestDb, key: Option<&std::path::Path>) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = jitgate(dir.path());
    cmd.args(["audit", "verify", "--database-url", &db.url]);
    if let Some(key) = key {
        cmd.arg("--signing-key").arg(key);
    }
    let out = cmd.output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn broken_at(store: &DynStore) -> Option<i64> {
    verify_chain(store, None, None).await.unwrap().broken_at
}

async fn the_database_refuses_to_change_or_delete_events(db: TestDb) {
    let store = db.store().await;
    append(&store, 3, Utc::now()).await;
    for sql in [
        "UPDATE audit_events SET data = '{}' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 3",
        "DELETE FROM audit_events",
    ] {
        let refused = db.exec(sql).await;
        assert!(refused.is_err(), "{sql} was allowed");
        assert!(
            refused.unwrap_err().to_string().contains("append-only"),
            "refused for being append-only"
        );
    }
    if db.is_postgres() {
        assert!(db.exec("TRUNCATE audit_events").await.is_err());
    }
    let report = verify_chain(&store, None, None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, 3);
}

async fn an_edited_row_is_named_by_its_seq(db: TestDb) {
    let store = db.store().await;
    append(&store, 5, Utc::now()).await;
    assert_eq!(broken_at(&store).await, None);
    drop_guards(&db).await;
    db.exec("UPDATE audit_events SET actor_id = 'oid-someone-else' WHERE seq = 3")
        .await
        .unwrap();
    assert_eq!(broken_at(&store).await, Some(3));
    let (code, report, stderr) = cli_verify(&db, None);
    assert_eq!(code, Some(1), "a broken chain fails the command: {stderr}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["brokenAt"], 3);
    assert!(stderr.contains("broken at seq 3"), "{stderr}");
}

async fn a_deleted_row_is_named_by_its_seq(db: TestDb) {
    let store = db.store().await;
    append(&store, 5, Utc::now()).await;
    drop_guards(&db).await;
    db.exec("DELETE FROM audit_events WHERE seq = 5")
        .await
        .unwrap();
    assert_eq!(broken_at(&store).await, Some(5), "the newest, gone");
    db.exec("DELETE FROM audit_events WHERE seq = 2")
        .await
        .unwrap();
    assert_eq!(broken_at(&store).await, Some(2), "one in the middle, gone");
    let (code, report, _) = cli_verify(&db, None);
    assert_eq!(code, Some(1));
    assert_eq!(report["brokenAt"], 2);
}

async fn reordered_rows_are_named_by_the_first_seq_out_of_place(db: TestDb) {
    let store = db.store().await;
    append(&store, 5, Utc::now()).await;
    drop_guards(&db).await;
    db.exec(
        "UPDATE audit_events SET seq = -1 WHERE seq = 3; \
         UPDATE audit_events SET seq = 3 WHERE seq = 4; \
         UPDATE audit_events SET seq = 4 WHERE seq = -1;",
    )
    .await
    .unwrap();
    assert_eq!(broken_at(&store).await, Some(3));
    let (code, report, _) = cli_verify(&db, None);
    assert_eq!(code, Some(1));
    assert_eq!(report["brokenAt"], 3);
}

async fn pruning_leaves_a_signed_checkpoint_that_verification_starts_from(db: TestDb) {
    let store = db.store().await;
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("audit-signing-key.pem");
    let signer = AuditSigner::load_or_create(&key_path).unwrap();
    let now = Utc::now();
    // Five events a year old, then three recent ones.
    append(&store, 5, now - Duration::days(365)).await;
    append(&store, 3, now - Duration::minutes(10)).await;

    let pruned = prune(&store, &signer, now - Duration::days(30), now)
        .await
        .unwrap();
    assert_eq!(pruned.checkpoint_seq, Some(5));
    assert_eq!(pruned.deleted, 5);
    let left = store.audit_events_after(0, 100).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8]);
    // Pruning again finds nothing more to do.
    let again = prune(&store, &signer, now - Duration::days(30), now)
        .await
        .unwrap();
    assert_eq!(again.deleted, 0);

    let report = verify_chain(&store, Some(&signer.verifier()), None)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.events, 8,
        "counted from genesis, through the checkpoint"
    );
    // Offline, with the key: holds; without it the pruned part cannot be vouched for.
    let (code, cli_report, stderr) = cli_verify(&db, Some(&key_path));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(cli_report["ok"], true);
    assert_eq!(cli_report["events"], 8);
    let (code, _, stderr) = cli_verify(&db, None);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("signing key"), "{stderr}");
    // Another key did not sign it.
    let other = AuditSigner::load_or_create(&keys.path().join("other.pem")).unwrap();
    let report = verify_chain(&store, Some(&other.verifier()), None)
        .await
        .unwrap();
    assert_eq!(report.broken_at, Some(5));

    // New events still chain on; a forged checkpoint is caught.
    append(&store, 2, now).await;
    let report = verify_chain(&store, Some(&signer.verifier()), None)
        .await
        .unwrap();
    assert!(report.ok && report.events == 10, "{report:?}");
    drop_guards(&db).await;
    db.exec("UPDATE audit_checkpoints SET hash = '00' WHERE seq = 5")
        .await
        .unwrap();
    let report = verify_chain(&store, Some(&signer.verifier()), None)
        .await
        .unwrap();
    assert_eq!(report.broken_at, Some(5), "{report:?}");
}

// ---- over HTTP, through real lifecycles ----

/// The types of the request's events, as an auditor reads them over HTTP.
async fn events_of(app: &TestApp, auditor: &str, request: &str) -> Vec<String> {
    let page = app
        .get_json(
            &format!("/v1/audit/events?requestId={request}&limit=1000"),
            auditor,
        )
        .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            // Which job, and how its attempt ended.
            "dispatch.attempted" => format!(
                "dispatch.attempted {} {}",
                e["data"]["kind"].as_str().unwrap(),
                e["data"]["outcome"].as_str().unwrap()
            ),
            other => other.to_string(),
        })
        .collect()
}

async fn wait_for_status(app: &TestApp, token: &str, id: &str, status: &str) {
    wait_until(
        app,
        || async { status_of(app, token, id).await["status"] == status },
        status,
    )
    .await;
}

/// The request's events must become exactly `expected` (jobs finish after the API answers).
async fn assert_events(app: &TestApp, auditor: &str, request: &str, expected: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen = events_of(app, auditor, request).await;
        if seen == expected || std::time::Instant::now() > deadline {
            assert_eq!(seen, expected);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_lifecycle_path_leaves_exactly_the_events_expected() {
    let (app, sim) = app_with_policy(
        "vm-web-1",
        json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 1 } }),
    )
    .await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let bob = app.token("bob@example.com", &[Role::Approver]);
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let ask = |duration: &str| body("vm-web-1", duration, "203.0.113.7");
    let id_of = |v: Value| v["id"].as_str().unwrap().to_string();

    // Approved, opened, revoked.
    let revoked = id_of(
        submit(&app, &alice, &ask("PT1H"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &bob, &revoked, "approve", json!({}))
            .await
            .status(),
        200
    );
    wait_active(&app, &alice, &revoked).await;
    assert_eq!(
        act(
            &app,
            &alice,
            &revoked,
            "revoke",
            json!({ "reason": "done" })
        )
        .await
        .status(),
        200
    );
    assert_events(
        &app,
        &auditor,
        &revoked,
        &[
            "request.created",
            "request.approved",
            "request.activated",
            "grant.opened",
            "dispatch.attempted request.activate completed",
            "request.revoked",
            "grant.closed",
            "dispatch.attempted request.close completed",
        ],
    )
    .await;

    // Approved, opened, expired.
    let expired = id_of(
        submit(&app, &alice, &ask("PT1S"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &bob, &expired, "approve", json!({}))
            .await
            .status(),
        200
    );
    wait_for_status(&app, &alice, &expired, "expired").await;
    assert_events(
        &app,
        &auditor,
        &expired,
        &[
            "request.created",
            "request.approved",
            "request.activated",
            "grant.opened",
            "dispatch.attempted request.activate completed",
            "request.expired",
            "grant.closed",
            "dispatch.attempted request.close completed",
        ],
    )
    .await;

    // Denied; cancelled: nothing opened, nothing dispatched.
    let denied = id_of(
        submit(&app, &alice, &ask("PT1H"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &bob, &denied, "deny", json!({ "reason": "no" }))
            .await
            .status(),
        200
    );
    assert_events(
        &app,
        &auditor,
        &denied,
        &["request.created", "request.denied"],
    )
    .await;
    let cancelled = id_of(
        submit(&app, &alice, &ask("PT1H"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &alice, &cancelled, "cancel", json!({}))
            .await
            .status(),
        200
    );
    assert_events(
        &app,
        &auditor,
        &cancelled,
        &["request.created", "request.cancelled"],
    )
    .await;

    // ARM refuses the rule: the request fails, and its grant is recorded as failed.
    sim.set_faults(FaultPlan {
        script: vec![(
            FaultMatch {
                method: Some("PUT".into()),
                path_contains: Some("networkSecurityGroups".into()),
            },
            Fault::LroFailed {
                code: "NetworkSecurityGroupUpdateFailed".into(),
                message: "injected".into(),
            },
        )]
        .into(),
        ..FaultPlan::default()
    });
    let failed = id_of(
        submit(&app, &alice, &ask("PT1H"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &bob, &failed, "approve", json!({}))
            .await
            .status(),
        200
    );
    wait_for_status(&app, &alice, &failed, "failed").await;
    assert_events(
        &app,
        &auditor,
        &failed,
        &[
            "request.created",
            "request.approved",
            "request.failed",
            "grant.failed",
            "dispatch.attempted request.activate completed",
            // Taking back what the failed activation had written (here: nothing).
            "dispatch.attempted request.close completed",
        ],
    )
    .await;

    // Policy and role assignment changes, by resource.
    let vm = vm("vm-web-1");
    let assignment = app
        .request(Method::PUT, "/v1/role-assignments/ra-1", &app.admin())
        .json(&json!({ "principalId": "oid-carol", "principalType": "User", "role": "Jit.Approver", "scope": vm }))
        .send()
        .await
        .unwrap();
    assert_eq!(assignment.status(), 201);
    let policy_events = app
        .get_json(
            &format!("/v1/audit/events?resourceId={}&type=policy.created,policy.deleted,roleAssignment.created", vm.to_uppercase()),
            &auditor,
        )
        .await;
    let types: Vec<&str> = policy_events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["policy.created"],
        "filtered by resource, any case, and type"
    );
    let by_role = app
        .get_json("/v1/audit/events?type=roleAssignment.created", &auditor)
        .await;
    assert_eq!(by_role["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_role["items"][0]["resourceId"], "/roleAssignments/ra-1");

    // All of it one unbroken chain.
    let verdict = app.get_json("/v1/audit/verify", &auditor).await;
    let (head_seq, head_hash) = app.store.audit_head().await.unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["events"], head_seq);
    assert_eq!(verdict["head"], head_hash);
}

#[tokio::test]
async fn verify_over_http_names_a_tampered_seq_and_only_auditors_may_ask() {
    let app = TestApp::spawn().await;
    append(&app.store, 4, Utc::now()).await;
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let ok = app.get_json("/v1/audit/verify", &auditor).await;
    assert_eq!(
        ok,
        json!({ "ok": true, "events": 4, "head": app.store.audit_head().await.unwrap().1 })
    );

    drop_guards(&app.db).await;
    app.db
        .exec("UPDATE audit_events SET data = '{\"i\":99}' WHERE seq = 2")
        .await
        .unwrap();
    let broken = app.get_json("/v1/audit/verify", &auditor).await;
    assert_eq!(broken["ok"], false);
    assert_eq!(broken["brokenAt"], 2);

    let requester = app.token("alice@example.com", &[Role::Requester]);
    let scoped = app.scoped_token(
        "sam@example.com",
        &[Role::Auditor],
        &[&format!("/subscriptions/{}", common::SUB)],
    );
    for token in [&requester, &scoped] {
        for path in ["/v1/audit/verify", "/v1/audit/events"] {
            let refused = app.request(Method::GET, path, token).send().await.unwrap();
            common::problem(refused, 403).await;
        }
    }
}

#[tokio::test]
async fn audit_events_page_forward_in_order_and_export_whole() {
    let app = TestApp::spawn().await;
    let start = Utc::now() - Duration::hours(3);
    append(&app.store, 130, start).await;
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let mut seqs = vec![];
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(
                &format!("/v1/audit/events?limit=50&cursor={cursor}"),
                &auditor,
            )
            .await;
        seqs.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=130).collect::<Vec<_>>());

    // A window of time: events stamped in [from, to).
    let from = (start + Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let to = (start + Duration::minutes(20)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let window = app
        .request(Method::GET, "/v1/audit/events", &auditor)
        .query(&[("from", &from), ("to", &to)])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let in_window: Vec<i64> = window["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(in_window, (11..=20).collect::<Vec<_>>());

    // CSV: every event, with its JSON data intact through the quoting.
    let csv_text = app
        .request(Method::GET, "/v1/audit/events", &auditor)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "seq");
    let data_col = headers.iter().position(|h| h == "data").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 130);
    let data: Value = serde_json::from_str(&rows[7][data_col]).unwrap();
    assert_eq!(data, json!({ "i": 7, "note": "a, \"quoted\"\nline" }));
}
