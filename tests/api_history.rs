//! Grant history as auditors query it over HTTP: grants recorded by real lifecycles, every
//! filter, the period semantics, stable keyset pages, scoped visibility, and whole exports
//! (CSV read back by a real CSV parser, NDJSON) across many store pages.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::lifecycle::*;
use common::TestApp;
use jitgate::domain::grant::{Grant, GrantStatus};
use jitgate::domain::Principal;
use jitgate::rbac::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn who(n: u32) -> Principal {
    Principal {
        id: format!("oid-user-{n}"),
        name: format!("user{n}@example.com"),
    }
}

fn history_vm(rg: &str, n: u32) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/vm-{n}",
        common::SUB
    )
}

/// A closed grant of `minutes` from `start`.
fn grant(i: u32, vm: String, port: u16, start: DateTime<Utc>, minutes: i64) -> Grant {
    let end = start + Duration::minutes(minutes);
    Grant {
        id: format!("00000000-0000-4000-8000-{i:012}"),
        request_id: format!("req-{i}"),
        vm_id: vm,
        port,
        protocol: "TCP".into(),
        source_address_prefix: "203.0.113.7".into(),
        requestor: who(i % 3),
        submitted_by: who(i % 3),
        approvers: vec![who(9)],
        justification: Some(format!("ticket {i}")),
        granted_at: start,
        end_time_utc: Some(end),
        closed_at: Some(end),
        status: GrantStatus::Expired,
        status_reason: "Expired".into(),
    }
}

/// Every page of `/v1/grants?{query}`, following `nextCursor`: the grant ids in order.
async fn all_pages(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut ids = vec![];
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(&format!("/v1/grants?{query}&cursor={cursor}"), token)
            .await;
        let items = page["items"].as_array().unwrap_or_else(|| panic!("{page}"));
        ids.extend(items.iter().map(|g| g["id"].as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return ids,
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .replace('+', "%2B")
}

#[tokio::test]
async fn real_lifecycles_leave_grants_that_say_who_had_what_open_and_why() {
    let (app, _sim) = app_with_policy(
        "vm-web-1",
        json!({ "ports": [{ "number": 22 }], "approval": { "mode": "manual", "requiredApprovals": 1 } }),
    )
    .await;
    let alice = app.token("alice@example.com", &[Role::Requester]);
    let bob = app.token("bob@example.com", &[Role::Approver]);
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let id_of = |v: Value| v["id"].as_str().unwrap().to_string();

    let open = id_of(
        submit(&app, &alice, &body("vm-web-1", "PT1H", "203.0.113.7"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &bob, &open, "approve", json!({ "comment": "ok" }))
            .await
            .status(),
        200
    );
    wait_active(&app, &alice, &open).await;
    let revoked = id_of(
        submit(&app, &alice, &body("vm-web-1", "PT1H", "198.51.100.0/24"))
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
        act(&app, &bob, &revoked, "revoke", json!({ "reason": "done" }))
            .await
            .status(),
        200
    );
    // Denied: never opened, so no grant.
    let denied = id_of(
        submit(&app, &alice, &body("vm-web-1", "PT1H", "203.0.113.7"))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        act(&app, &bob, &denied, "deny", json!({})).await.status(),
        200
    );

    let page = app.get_json("/v1/grants", &auditor).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    let (newest, older) = (&items[0], &items[1]);
    assert_eq!(newest["requestId"], revoked.as_str());
    assert_eq!(newest["status"], "revoked");
    assert_eq!(newest["sourceAddressPrefix"], "198.51.100.0/24");
    assert!(newest["closedAt"].is_string());
    assert_eq!(older["requestId"], open.as_str());
    assert_eq!(older["status"], "active");
    assert_eq!(older["closedAt"], Value::Null);
    assert_eq!(older["vmId"], vm("vm-web-1"));
    assert_eq!(older["port"], 22);
    assert_eq!(older["sourceAddressPrefix"], "203.0.113.7");
    assert_eq!(older["requestor"]["name"], "alice@example.com");
    assert_eq!(older["approvers"][0]["name"], "bob@example.com");
    assert_eq!(older["justification"], "INC-1234: patch openssl");
    let granted: DateTime<Utc> = older["grantedAt"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = older["endTimeUtc"].as_str().unwrap().parse().unwrap();
    assert_eq!((end - granted).num_minutes(), 60);

    let active = app.get_json("/v1/grants?status=active", &auditor).await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    assert_eq!(active["items"][0]["requestId"], open.as_str());
}

#[tokio::test]
async fn filters_periods_and_pages_answer_exactly_what_was_asked() {
    let app = TestApp::spawn().await;
    // 260 grants, one every 10 minutes, 30 minutes long: VMs in two resource groups, two ports.
    let grants: Vec<Grant> = (0..260)
        .map(|i| {
            let rg = if i % 2 == 0 { "rg-a" } else { "rg-b" };
            let port = if i % 4 < 2 { 22 } else { 3389 };
            grant(
                i,
                history_vm(rg, i % 5),
                port,
                t0() + Duration::minutes(10 * i as i64),
                30,
            )
        })
        .collect();
    app.store.import_grants(&grants).await.unwrap();
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let expect = |keep: &dyn Fn(&Grant) -> bool| -> Vec<String> {
        let mut v: Vec<&Grant> = grants.iter().filter(|g| keep(g)).collect();
        v.sort_by(|a, b| (b.granted_at, &b.id).cmp(&(a.granted_at, &a.id)));
        v.into_iter().map(|g| g.id.clone()).collect()
    };

    assert_eq!(
        all_pages(&app, &auditor, "limit=100").await,
        expect(&|_| true)
    );
    let vm3 = history_vm("rg-b", 3);
    assert_eq!(
        all_pages(
            &app,
            &auditor,
            &format!("limit=7&vmId={}", vm3.to_uppercase())
        )
        .await,
        expect(&|g| g.vm_id == vm3),
        "by VM, compared case-insensitively"
    );
    assert_eq!(
        all_pages(&app, &auditor, "limit=50&requestor=oid-user-1&port=3389").await,
        expect(&|g| g.requestor.id == "oid-user-1" && g.port == 3389)
    );
    assert!(all_pages(&app, &auditor, "status=active").await.is_empty());

    // A period holds the grants open at any moment in it: grant i runs from 12:00 + 10i min
    // for 30 min, so [12:55, 13:15) meets grants 3 (12:30 to 13:00) to 7 (13:10 to 13:40).
    let from = t0() + Duration::minutes(55);
    let to = t0() + Duration::minutes(75);
    let in_period = all_pages(&app, &auditor, &format!("from={}&to={}", ts(from), ts(to))).await;
    assert_eq!(
        in_period,
        expect(&|g| g.granted_at < to && g.closed_at.unwrap() >= from),
    );
    assert_eq!(
        in_period.len(),
        5,
        "grants 3 to 7: open into the period, or opened within it"
    );
    assert!(all_pages(&app, &auditor, &format!("to={}", ts(t0())))
        .await
        .is_empty());

    // A page is stable while rows are added: a grant newer than all shows on no later page.
    let first = app.get_json("/v1/grants?limit=100", &auditor).await;
    app.store
        .import_grants(&[grant(
            999,
            history_vm("rg-a", 0),
            22,
            t0() + Duration::days(30),
            30,
        )])
        .await
        .unwrap();
    let second = app
        .get_json(
            &format!(
                "/v1/grants?limit=100&cursor={}",
                first["nextCursor"].as_str().unwrap()
            ),
            &auditor,
        )
        .await;
    let ids: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        expect(&|_| true)[100..200]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    // Bad filters are a 400 naming the parameter, never a 500.
    for (query, field) in [
        ("status=open", "status"),
        ("vmId=vm-1", "vmId"),
        ("port=0", "port"),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "to"),
        ("cursor=bogus", "cursor"),
        ("limit=0", "limit"),
    ] {
        let response = app
            .request(Method::GET, &format!("/v1/grants?{query}"), &auditor)
            .send()
            .await
            .unwrap();
        let problem = common::problem(response, 400).await;
        assert!(
            common::error_fields(&problem).contains(&field.to_string()),
            "{query}: {problem}"
        );
    }
    for query in ["port=70000", "from=yesterday"] {
        let response = app
            .request(Method::GET, &format!("/v1/grants?{query}"), &auditor)
            .send()
            .await
            .unwrap();
        common::problem(response, 400).await;
    }
}

#[tokio::test]
async fn scoped_auditors_see_their_scope_and_requesters_see_none() {
    let app = TestApp::spawn().await;
    let grants: Vec<Grant> = (0..10)
        .map(|i| {
            let rg = if i < 4 { "rg-a" } else { "rg-b" };
            grant(
                i,
                history_vm(rg, i),
                22,
                t0() + Duration::minutes(i as i64),
                30,
            )
        })
        .collect();
    app.store.import_grants(&grants).await.unwrap();
    let scoped = app.scoped_token(
        "sam@example.com",
        &[Role::Auditor],
        &[&format!(
            "/subscriptions/{}/resourceGroups/rg-a",
            common::SUB
        )],
    );
    let seen = all_pages(&app, &scoped, "limit=100").await;
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|id| grants
        .iter()
        .any(|g| &g.id == id && g.vm_id.contains("/rg-a/"))));
    let requester = app.token("alice@example.com", &[Role::Requester]);
    let refused = app
        .request(Method::GET, "/v1/grants", &requester)
        .send()
        .await
        .unwrap();
    common::problem(refused, 403).await;
}

#[tokio::test]
async fn exports_stream_every_row_and_hostile_justifications_survive_a_csv_parser() {
    let app = TestApp::spawn().await;
    let hostile = [
        "plain",
        "commas, in, it",
        "\"quoted\" and \"\"doubled\"\"",
        "line one\nline two\r\nline three",
        "=HYPERLINK(\"http://evil.example\",\"click\")",
        "+1+1",
        "-2+3",
        "@SUM(A1:A2)",
        "\tleading tab",
        "unicode: żółw 🐢, ok",
        "",
    ];
    // More rows than one store page (1,000), so the export crosses page boundaries.
    let grants: Vec<Grant> = (0..2_345u32)
        .map(|i| {
            let mut g = grant(
                i,
                history_vm("rg-a", i % 7),
                22,
                t0() + Duration::seconds(i as i64),
                30,
            );
            g.justification = Some(hostile[i as usize % hostile.len()].to_string());
            g
        })
        .collect();
    app.store.import_grants(&grants).await.unwrap();
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);

    let response = app
        .request(Method::GET, "/v1/grants?limit=5", &auditor)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("grants.csv"));
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), grants.len(), "every row, whatever the limit");
    let ids: BTreeSet<&str> = rows.iter().map(|r| &r[col("id")]).collect();
    assert_eq!(ids.len(), grants.len(), "no row twice");
    for row in &rows {
        let original = grants.iter().find(|g| g.id == row[col("id")]).unwrap();
        let justification = original.justification.as_deref().unwrap();
        // Spreadsheet formulas are defused with a leading apostrophe; everything else is exact.
        let expected = if justification.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{justification}")
        } else {
            justification.to_string()
        };
        assert_eq!(&row[col("justification")], expected);
        assert_eq!(&row[col("vmId")], original.vm_id);
        assert_eq!(&row[col("approvers")], "user9@example.com (oid-user-9)");
        assert_eq!(&row[col("status")], "expired");
    }

    // NDJSON: one JSON grant a line, the same rows, newest first.
    let ndjson = app
        .request(Method::GET, "/v1/grants?port=22", &auditor)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Grant> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), grants.len());
    assert_eq!(
        lines[0],
        grants[grants.len() - 1],
        "newest first, every field intact"
    );
    assert!(lines.windows(2).all(|w| w[0].granted_at >= w[1].granted_at));

    // A filtered export holds just the matching rows.
    let vm = history_vm("rg-a", 3);
    let filtered = app
        .request(Method::GET, "/v1/grants", &auditor)
        .query(&[("vmId", vm.as_str())])
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        filtered.lines().count(),
        grants.iter().filter(|g| g.vm_id == vm).count()
    );
}
