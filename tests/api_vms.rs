//! `/v1/vms`, a VM's page and `connect`: the inventory read from ARM, the posture assessment
//! as Defender for Cloud makes it, and how it changes when JIT is enabled.

mod common;

use common::{problem, TestApp, SIM_TOKEN};
use jitgate::arm::sim::seed::{self, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::Sim;
use jitgate::rbac::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn vm_url(vm: &str) -> String {
    format!("/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{vm}")
}

async fn demo_app() -> TestApp {
    TestApp::spawn_with_arm(Sim::seeded().with_token(SIM_TOKEN)).await
}

fn by_name(list: &Value) -> BTreeMap<String, Value> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// Waits until the inventory shows `vm` with JIT enabled and its enforcement done.
async fn enforced(app: &TestApp, token: &str, vm: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = app.get_json(&vm_url(vm), token).await;
        if v["policy"]["enforcement"]["state"] != "pending"
            && app.store.pending_jobs().await.unwrap().is_empty()
        {
            return app.get_json(&vm_url(vm), token).await;
        }
        assert!(Instant::now() < deadline, "{vm} was not enforced: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_demo_vms_cover_every_assessment_with_reasons() {
    let app = demo_app().await;
    let auditor = app.token("audrey@example.com", &[Role::Auditor]);
    let vms = by_name(&app.get_json("/v1/vms", &auditor).await);
    let assessments: BTreeMap<&str, &str> = vms
        .iter()
        .map(|(n, v)| (n.as_str(), v["assessment"].as_str().unwrap()))
        .collect();
    assert_eq!(
        assessments,
        BTreeMap::from([
            ("vm-app", "healthy"),
            ("vm-bare", "notApplicable"),
            ("vm-rdp", "unhealthy"),
            ("vm-spoke", "unhealthy"),
            ("vm-web-1", "unhealthy"),
            ("vm-web-2", "unhealthy"),
        ])
    );
    assert_eq!(
        vms["vm-web-1"]["reasons"][0],
        "NSG nsg-web-subnet allows 22 from Internet (rule allow-ssh, priority 300)"
    );
    assert_eq!(
        vms["vm-rdp"]["reasons"][0],
        "NSG nsg-rdp allows 3389 from * (rule allow-rdp, priority 200)"
    );
    // Behind a firewall: its NSG admits only the firewall, but a DNAT rule forwards SSH.
    assert_eq!(vms["vm-spoke"]["reasons"][0], "Firewall fw-hub forwards 50022 from * to 22 (rule dnat-ssh-vm-spoke in rcg-dnat/dnat-inbound)");
    assert_eq!(
        vms["vm-spoke"]["reasons"].as_array().unwrap().len(),
        2,
        "the firewall path and the advice, nothing from its NSG"
    );
    assert!(vms["vm-spoke"]["firewalls"][0]
        .as_str()
        .unwrap()
        .ends_with("/azureFirewalls/fw-hub"));
    let web = &vms["vm-web-1"];
    assert_eq!(web["id"], seed::vm_id(SUB, RG, "vm-web-1"));
    assert_eq!(web["privateIpAddresses"], json!(["10.10.1.4"]));
    assert_eq!(web["publicIpAddresses"], json!(["20.50.0.4"]));
    assert_eq!(
        web["networkSecurityGroups"],
        json!([seed::nsg_id(SUB, RG, "nsg-web-subnet")])
    );
    assert_eq!(web["jitEnabled"], false);
    assert_eq!(web["location"], "westeurope");

    let names = |v: Value| by_name(&v).into_keys().collect::<Vec<_>>();
    assert_eq!(
        names(app.get_json("/v1/vms?assessment=unhealthy", &auditor).await),
        ["vm-rdp", "vm-spoke", "vm-web-1", "vm-web-2"]
    );
    assert_eq!(
        names(
            app.get_json("/v1/vms?assessment=notApplicable", &auditor)
                .await
        ),
        ["vm-bare"]
    );
    assert_eq!(
        names(app.get_json("/v1/vms?assessment=healthy", &auditor).await),
        ["vm-app"]
    );
    let bad = problem(
        app.request(Method::GET, "/v1/vms?assessment=sick", &auditor)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(common::error_fields(&bad), ["assessment"]);

    let first = app.get_json("/v1/vms?limit=2", &auditor).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = app
        .get_json(
            &format!(
                "/v1/vms?limit=10&cursor={}",
                first["nextCursor"].as_str().unwrap()
            ),
            &auditor,
        )
        .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn enabling_jit_makes_a_vm_healthy_and_closes_what_made_it_unhealthy() {
    let app = demo_app().await;
    let admin = app.admin();
    let put = app
        .request(
            Method::PUT,
            &format!("{}/policy", vm_url("vm-web-1")),
            &admin,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let vm = enforced(&app, &admin, "vm-web-1").await;
    assert_eq!(vm["jitEnabled"], true);
    assert_eq!(vm["assessment"], "healthy");
    assert_eq!(vm["policy"]["enforcement"]["state"], "applied");
    assert!(vm["reasons"][0]
        .as_str()
        .unwrap()
        .contains("JIT VM access is enabled"));

    // Its neighbour on the same NSG is still exposed; and after the policy goes, so is it.
    let neighbour = app.get_json(&vm_url("vm-web-2"), &admin).await;
    assert_eq!(neighbour["assessment"], "unhealthy");
    let deleted = app
        .request(
            Method::DELETE,
            &format!("{}/policy", vm_url("vm-web-1")),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.store.pending_jobs().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let vm = app.get_json(&vm_url("vm-web-1"), &admin).await;
    assert_eq!(vm["assessment"], "unhealthy");
    assert!(vm["policy"].is_null());
}

#[tokio::test]
async fn connect_warns_for_an_unprotected_vm_and_lists_what_may_be_requested() {
    let app = demo_app().await;
    let admin = app.admin();
    let requester = app.token("rita@example.com", &[Role::Requester]);
    let unprotected = app
        .get_json(&format!("{}/connect", vm_url("vm-rdp")), &requester)
        .await;
    assert_eq!(unprotected["jitEnabled"], false);
    assert!(unprotected["warning"]
        .as_str()
        .unwrap()
        .contains("not protected by JIT"));

    let policy = json!({ "ports": [
        { "number": 3389, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT2H" },
        { "number": 22, "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.168.1.0/24"], "maxRequestAccessDuration": "PT1H" },
    ]});
    let put = app
        .request(Method::PUT, &format!("{}/policy", vm_url("vm-rdp")), &admin)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let protected = app
        .get_json(&format!("{}/connect", vm_url("vm-rdp")), &requester)
        .await;
    assert_eq!(protected["jitEnabled"], true);
    assert!(protected.get("warning").is_none());
    assert_eq!(
        protected["requestable"],
        json!([
            { "number": 3389, "protocol": "TCP", "maxRequestAccessDuration": "PT2H", "allowedSourceAddressPrefixes": ["*"] },
            { "number": 22, "protocol": "*", "maxRequestAccessDuration": "PT1H", "allowedSourceAddressPrefixes": ["10.0.0.0/8", "192.168.1.0/24"] },
        ])
    );
    assert_eq!(protected["publicIpAddresses"], json!(["20.50.0.6"]));
}

#[tokio::test]
async fn callers_see_the_vms_of_their_scopes_only() {
    let app = demo_app().await;
    let elsewhere = app.scoped_token(
        "ed@example.com",
        &[Role::Requester],
        &["/subscriptions/00000000-0000-0000-0000-0000000000ff"],
    );
    assert_eq!(
        app.get_json("/v1/vms", &elsewhere).await["items"],
        json!([])
    );
    problem(
        app.request(Method::GET, &vm_url("vm-web-1"), &elsewhere)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    problem(
        app.request(
            Method::GET,
            &format!("{}/connect", vm_url("vm-web-1")),
            &elsewhere,
        )
        .send()
        .await
        .unwrap(),
        403,
    )
    .await;
    let one_vm = app.scoped_token(
        "vi@example.com",
        &[Role::Requester],
        &[&seed::vm_id(SUB, RG, "vm-app")],
    );
    let list = app.get_json("/v1/vms", &one_vm).await;
    assert_eq!(by_name(&list).into_keys().collect::<Vec<_>>(), ["vm-app"]);
    problem(
        app.request(Method::GET, "/v1/vms", "")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
}

#[tokio::test]
async fn a_vm_deleted_in_azure_leaves_the_inventory_at_the_next_refresh() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let app = TestApp::spawn_with_arm(sim.clone()).await;
    let admin = app.admin();
    assert_eq!(
        app.get_json(&vm_url("vm-app"), &admin).await["name"],
        "vm-app"
    );
    sim.world()
        .resources
        .remove(&seed::vm_id(SUB, RG, "vm-app").to_ascii_lowercase());
    let report = app.inventory.as_ref().unwrap().refresh_all().await.unwrap();
    assert_eq!((report.vms, report.forgotten), (5, 1));
    let gone = problem(
        app.request(Method::GET, &vm_url("vm-app"), &admin)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert!(gone["detail"]
        .as_str()
        .unwrap()
        .contains("not in the inventory"));
}
