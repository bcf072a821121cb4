//! Policies reach the network: writing one puts deny rules in the VM's NSGs through the
//! outbox and the dispatcher, deleting it takes them out, and the simulator's evaluation of
//! the NSGs says what a packet from the Internet would meet.

mod common;

use common::{TestApp, TestDb, SIM_TOKEN};
use jitgate::arm::evaluate::FlowProtocol;
use jitgate::arm::sim::seed::{self, VmSpec, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::Sim;
use jitgate::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn policy_url(vm: &str) -> String {
    format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{vm}/policy")
}

fn open_from_internet(sim: &Sim, vm: &str, port: u16) -> bool {
    sim.evaluate(
        &seed::vm_id(SUB, RG, vm),
        "203.0.113.7".parse().unwrap(),
        port,
        FlowProtocol::Tcp,
    )
    .unwrap()
    .allowed
}

/// Waits until the policy's enforcement is no longer pending, and returns the policy.
async fn settled(app: &TestApp, token: &str, vm: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let policy = app.get_json(&policy_url(vm), token).await;
        if policy["enforcement"]["state"] != "pending" {
            return policy;
        }
        assert!(
            Instant::now() < deadline,
            "{vm}'s enforcement is still pending: {policy}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn put(app: &TestApp, token: &str, vm: &str, body: Value) -> u16 {
    app.request(Method::PUT, &policy_url(vm), token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn enabling_a_policy_closes_the_port_and_deleting_it_reopens_it() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let admin = app.admin();
    assert!(open_from_internet(&sim, "vm-web-1", 22), "exposed before");

    assert_eq!(
        put(
            &app,
            &admin,
            "vm-web-1",
            json!({ "ports": [{ "number": 22 }, { "number": 3389 }] })
        )
        .await,
        201
    );
    let policy = settled(&app, &admin, "vm-web-1").await;
    assert_eq!(policy["enforcement"]["state"], "applied", "{policy}");
    let detail = policy["enforcement"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("nsg-web-subnet") && detail.contains("allow-ssh (priority 300)"),
        "{detail}"
    );
    assert_eq!(
        policy["enforcement"]["networkSecurityGroups"],
        json!([seed::nsg_id(SUB, RG, "nsg-web-subnet")])
    );
    assert!(
        !open_from_internet(&sim, "vm-web-1", 22),
        "closed from the Internet"
    );
    assert!(
        open_from_internet(&sim, "vm-web-1", 443),
        "other ports untouched"
    );
    assert!(
        open_from_internet(&sim, "vm-web-2", 22),
        "its neighbour is not covered by its policy"
    );

    let deleted = app
        .request(Method::DELETE, &policy_url("vm-web-1"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // Done when the job is: its rule removal and its audit event are then both in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.store.pending_jobs().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the removal job did not finish");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        open_from_internet(&sim, "vm-web-1", 22),
        "open again, as before the policy"
    );
    let events = app.store.audit_events_after(0, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "policy.created",
            "policy.enforcementApplied",
            "dispatch.attempted",
            "policy.deleted",
            "policy.enforcementRemoved",
            "dispatch.attempted"
        ]
    );
    common::assert_chain_ok(&events);
    assert!(app.store.pending_jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_vm_without_any_nsg_cannot_be_enforced_and_says_why() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let admin = app.admin();
    assert_eq!(put(&app, &admin, "vm-bare", json!({})).await, 201);
    let policy = settled(&app, &admin, "vm-bare").await;
    assert_eq!(policy["enforcement"]["state"], "failed");
    assert!(
        policy["enforcement"]["detail"]
            .as_str()
            .unwrap()
            .contains("no network security group"),
        "{policy}"
    );
    // A VM ARM does not know fails with ARM's own words.
    assert_eq!(put(&app, &admin, "vm-ghost", json!({})).await, 201);
    let policy = settled(&app, &admin, "vm-ghost").await;
    assert_eq!(policy["enforcement"]["state"], "failed");
    assert!(
        policy["enforcement"]["detail"]
            .as_str()
            .unwrap()
            .contains("ResourceNotFound"),
        "{policy}"
    );
}

#[tokio::test]
async fn fifty_policies_on_one_subnet_nsg_take_far_fewer_writes() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let names: Vec<String> = (0..50).map(|i| format!("vm-fleet-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        sim.add_vm(&VmSpec {
            subscription: SUB,
            resource_group: RG,
            name,
            vnet: "vnet-demo",
            subnet: "snet-web",
            private_ip: &format!("10.10.1.{}", 100 + i),
            public_ip: None,
            nic_nsg: None,
        });
    }
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let admin = app.admin();
    let mut writes = tokio::task::JoinSet::new();
    for name in names.clone() {
        let request = app
            .request(Method::PUT, &policy_url(&name), &admin)
            .json(&json!({ "ports": [{ "number": 22 }] }));
        writes.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = writes.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    for name in &names {
        assert_eq!(
            settled(&app, &admin, name).await["enforcement"]["state"],
            "applied",
            "{name}"
        );
    }
    for name in &names {
        let verdict = sim
            .evaluate(
                &seed::vm_id(SUB, RG, name),
                "203.0.113.7".parse().unwrap(),
                22,
                FlowProtocol::Tcp,
            )
            .unwrap();
        assert!(!verdict.allowed, "{name} is still open");
    }
    let nsg_writes = sim.nsg_writes(&seed::nsg_id(SUB, RG, "nsg-web-subnet"));
    println!("50 policies on VMs sharing one subnet NSG: {nsg_writes} NSG writes");
    assert!(nsg_writes <= 10, "{nsg_writes} writes for 50 policies");
}

#[tokio::test]
async fn work_queued_before_a_restart_is_carried_out_after_it() {
    let db = TestDb::sqlite();
    let url = db.url.clone();
    // A replica without a dispatcher (think: one that died right after committing).
    let first = TestApp::spawn_on(db, Settings::default()).await;
    let admin = first.admin();
    assert_eq!(
        put(
            &first,
            &admin,
            "vm-rdp",
            json!({ "ports": [{ "number": 3389 }] })
        )
        .await,
        201
    );
    assert_eq!(
        first.store.pending_jobs().await.unwrap().len(),
        1,
        "the job is in the database"
    );

    let sim = Sim::seeded().with_token(SIM_TOKEN);
    assert!(open_from_internet(&sim, "vm-rdp", 3389));
    // Another replica on the same database, this one with a dispatcher, picks the job up.
    let second =
        TestApp::spawn_on_with_arm(TestDb::shared(&url), Settings::default(), sim.clone()).await;
    let policy = settled(&second, &second.admin(), "vm-rdp").await;
    assert_eq!(policy["enforcement"]["state"], "applied", "{policy}");
    assert!(!open_from_internet(&sim, "vm-rdp", 3389));
    drop(first);
}

#[tokio::test]
async fn enabling_a_policy_behind_a_firewall_removes_the_standing_dnat_rule() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let admin = app.admin();
    let internet = "203.0.113.7".parse().unwrap();
    assert_eq!(
        sim.forwards("20.50.0.100", 50022, internet),
        Some(("10.10.4.4".into(), 22))
    );
    assert_eq!(
        put(
            &app,
            &admin,
            "vm-spoke",
            json!({ "ports": [{ "number": 22 }] })
        )
        .await,
        201
    );
    let policy = settled(&app, &admin, "vm-spoke").await;
    assert_eq!(policy["enforcement"]["state"], "applied", "{policy}");
    let detail = policy["enforcement"]["detail"].as_str().unwrap();
    assert!(detail.contains("standing DNAT rules removed: dnat-inbound/dnat-ssh-vm-spoke (forwarded 50022 to 10.10.4.4:22)"), "{detail}");
    assert!(policy["enforcement"]["firewalls"][0]
        .as_str()
        .unwrap()
        .ends_with("/azureFirewalls/fw-hub"));
    assert_eq!(
        sim.forwards("20.50.0.100", 50022, internet),
        None,
        "no way in through the firewall"
    );
    assert!(!open_from_internet(&sim, "vm-spoke", 22));
}
