//! The ARM client and the NSG write path against the simulator over HTTP, with every fault
//! ARM documents: throttling, busy resources, stale ETags, server errors, failed operations.

mod common;

use common::SIM_TOKEN;
use jitgate::arm::client::{api_version, ArmClient, RetryPolicy};
use jitgate::arm::credential::{ArmCredential, AzureEnv};
use jitgate::arm::discovery;
use jitgate::arm::evaluate::FlowProtocol;
use jitgate::arm::model::{NetworkSecurityGroup, VirtualMachine};
use jitgate::arm::nsg_writer::{NsgWriter, RuleChange, WriteError};
use jitgate::arm::sim::seed::{
    self, allow_inbound, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB,
};
use jitgate::arm::sim::{Fault, FaultMatch, FaultPlan, Sim, SimError};
use jitgate::config::{ArmCredentialKind, Settings};
use std::net::IpAddr;

const INTERNET: &str = "203.0.113.7";

async fn client_for(sim: &Sim, token: &str) -> ArmClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = sim.spawn(listener).unwrap();
    let mut arm = Settings::default().resolve().unwrap().arm;
    arm.credential = ArmCredentialKind::Static;
    arm.static_token = Some(token.to_string().into());
    let credential = ArmCredential::new(&arm, &AzureEnv::default()).unwrap();
    ArmClient::new(base.parse().unwrap(), credential, RetryPolicy::quick()).unwrap()
}

async fn demo() -> (Sim, ArmClient) {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let client = client_for(&sim, SIM_TOKEN).await;
    (sim, client)
}

fn script(sim: &Sim, faults: Vec<(FaultMatch, Fault)>) {
    sim.set_faults(FaultPlan {
        script: faults.into(),
        ..FaultPlan::default()
    });
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn web_subnet_nsg() -> String {
    seed::nsg_id(SUB, RG, "nsg-web-subnet")
}

fn deny(name: &str, ports: &[u16], destination: &str) -> RuleChange {
    RuleChange::Deny {
        name: name.into(),
        ports: ports.to_vec(),
        destinations: vec![ip(destination)],
        description: "test".into(),
    }
}

fn open_from_internet(sim: &Sim, vm: &str, port: u16) -> bool {
    sim.evaluate(
        &seed::vm_id(SUB, RG, vm),
        ip(INTERNET),
        port,
        FlowProtocol::Tcp,
    )
    .unwrap()
    .allowed
}

#[tokio::test]
async fn lists_follow_next_link_and_every_call_names_itself() {
    let (sim, client) = demo().await;
    sim.world().page_size = 2;
    let vms = discovery::list_vms(&client, SUB).await.unwrap();
    let mut names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["vm-app", "vm-bare", "vm-rdp", "vm-spoke", "vm-web-1", "vm-web-2"]
    );
    let log = sim.world().log.clone();
    assert_eq!(log.len(), 3, "three pages of two");
    for r in &log {
        assert_eq!(r.api_version.as_deref(), Some(api_version::COMPUTE));
        assert!(r
            .client_request_id
            .as_deref()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
        assert!(r
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("jitgate/")));
    }
}

#[tokio::test]
async fn discovery_finds_nics_subnets_nsgs_and_addresses() {
    let (_sim, client) = demo().await;
    let web = discovery::discover_vm(&client, &seed::vm_id(SUB, RG, "vm-web-1"))
        .await
        .unwrap();
    assert_eq!(web.private_ip_addresses, [ip("10.10.1.4")]);
    assert_eq!(web.public_ip_addresses, ["20.50.0.4"]);
    assert_eq!(web.network_security_groups.len(), 1);
    assert!(web.network_security_groups[0]
        .id
        .ends_with("nsg-web-subnet"));
    let rdp = discovery::discover_vm(&client, &seed::vm_id(SUB, RG, "vm-rdp"))
        .await
        .unwrap();
    assert!(rdp.network_security_groups[0].id.ends_with("nsg-rdp"));
    let bare = discovery::discover_vm(&client, &seed::vm_id(SUB, RG, "vm-bare"))
        .await
        .unwrap();
    assert!(bare.network_security_groups.is_empty());
    assert!(bare.firewalls.is_empty() && web.firewalls.is_empty());
    // A firewall fronts a VM when one of its DNAT rules forwards to the VM's address.
    let spoke = discovery::discover_vm(&client, &seed::vm_id(SUB, RG, "vm-spoke"))
        .await
        .unwrap();
    assert_eq!(spoke.firewalls.len(), 1);
    assert!(spoke.firewalls[0].ends_with("/azureFirewalls/fw-hub"));
    let missing = discovery::discover_vm(&client, &seed::vm_id(SUB, RG, "vm-nope"))
        .await
        .unwrap_err();
    assert_eq!(
        (missing.status, missing.code.as_str()),
        (Some(404), "ResourceNotFound")
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_with_arms_code() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let client = client_for(&sim, "not-the-token").await;
    let err = client
        .get::<VirtualMachine>(&seed::vm_id(SUB, RG, "vm-app"), api_version::COMPUTE)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.code.as_str()),
        (Some(401), "InvalidAuthenticationToken")
    );
    assert_eq!(sim.world().log.len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn throttling_busy_resources_and_server_errors_are_retried() {
    let (sim, client) = demo().await;
    let get = || FaultMatch {
        method: Some("GET".into()),
        path_contains: Some("vm-app".into()),
    };
    script(
        &sim,
        vec![
            (get(), Fault::Error(SimError::throttled(0))),
            (
                get(),
                Fault::Error(SimError::new(503, "ServiceUnavailable", "try later")),
            ),
            (get(), Fault::Error(SimError::another_operation("vm-app"))),
            (
                get(),
                Fault::Error(SimError::new(500, "InternalServerError", "oops")),
            ),
        ],
    );
    let vm: VirtualMachine = client
        .get(&seed::vm_id(SUB, RG, "vm-app"), api_version::COMPUTE)
        .await
        .unwrap();
    assert_eq!(vm.name, "vm-app");
    let statuses: Vec<u16> = sim.world().log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 409, 500, 200]);
}

#[tokio::test]
async fn retries_are_bounded_and_the_failure_carries_arms_code() {
    let (sim, client) = demo().await;
    sim.set_faults(FaultPlan {
        server_error_rate: 1.0,
        ..FaultPlan::default()
    });
    let err = client
        .get::<VirtualMachine>(&seed::vm_id(SUB, RG, "vm-app"), api_version::COMPUTE)
        .await
        .unwrap_err();
    assert_eq!(err.code, "InternalServerError");
    assert!(matches!(err.status, Some(500) | Some(503)));
    assert_eq!(
        sim.world().log.len(),
        RetryPolicy::quick().max_attempts as usize
    );
    // Client errors are not retried.
    script(
        &sim,
        vec![(
            FaultMatch::any(),
            Fault::Error(SimError::new(400, "InvalidParameter", "bad")),
        )],
    );
    sim.world().log.clear();
    let err = client
        .get::<VirtualMachine>(&seed::vm_id(SUB, RG, "vm-app"), api_version::COMPUTE)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.code.as_str()),
        (Some(400), "InvalidParameter")
    );
    assert_eq!(sim.world().log.len(), 1);
}

#[tokio::test]
async fn a_deny_rule_goes_above_the_allow_rule_and_closes_the_port() {
    let (sim, client) = demo().await;
    assert!(
        open_from_internet(&sim, "vm-web-1", 22),
        "the demo VM starts exposed"
    );
    let writer = NsgWriter::new(client, 100);
    let outcome = writer
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[22, 3389], "10.10.1.4"),
        )
        .await
        .unwrap();
    let priority = outcome.priority.unwrap();
    assert!(
        priority < 300 && priority > 100,
        "above allow-ssh (300), room for grants: {priority}"
    );
    assert_eq!(outcome.overrides, ["allow-ssh (priority 300)"]);
    assert!(!open_from_internet(&sim, "vm-web-1", 22));
    assert!(
        open_from_internet(&sim, "vm-web-1", 443),
        "other ports are untouched"
    );
    assert!(
        open_from_internet(&sim, "vm-web-2", 22),
        "the deny rule names one VM's address"
    );
    // The PUT was conditional on the ETag read.
    let puts: Vec<_> = sim
        .world()
        .log
        .iter()
        .filter(|r| r.method == "PUT")
        .cloned()
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(puts[0]
        .if_match
        .as_deref()
        .is_some_and(|t| t.starts_with("W/\"")));

    // Applying the same change again writes nothing.
    writer
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[3389, 22], "10.10.1.4"),
        )
        .await
        .unwrap();
    assert_eq!(sim.nsg_writes(&web_subnet_nsg()), 1);

    writer
        .apply(
            &web_subnet_nsg(),
            RuleChange::Remove {
                name: "jitgate-deny-web-1".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        open_from_internet(&sim, "vm-web-1", 22),
        "removed: as before"
    );
    let nsg = sim.nsg(&web_subnet_nsg()).unwrap();
    let names: Vec<&str> = nsg
        .properties
        .security_rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["allow-ssh", "allow-https"],
        "the administrator's rules are left as they were"
    );
}

#[tokio::test]
async fn a_stale_etag_is_read_and_merged_again_keeping_the_other_writers_change() {
    let (sim, client) = demo().await;
    let writer = NsgWriter::new(client, 100);
    // Someone edits the NSG between our read and our write: ARM answers 412 to our PUT.
    script(
        &sim,
        vec![(
            FaultMatch::puts(),
            Fault::Error(SimError::new(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
            )),
        )],
    );
    let mut nsg = sim.nsg(&web_subnet_nsg()).unwrap();
    nsg.properties
        .security_rules
        .push(allow_inbound("allow-office", 250, "198.51.100.0/24", "22"));
    sim.world().upsert_nsg(nsg);
    writer
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[22], "10.10.1.4"),
        )
        .await
        .unwrap();
    let nsg = sim.nsg(&web_subnet_nsg()).unwrap();
    let names: Vec<&str> = nsg
        .properties
        .security_rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        names.contains(&"allow-office") && names.contains(&"jitgate-deny-web-1"),
        "{names:?}"
    );
    let deny_priority = nsg
        .properties
        .security_rules
        .iter()
        .find(|r| r.name == "jitgate-deny-web-1")
        .unwrap()
        .properties
        .priority;
    assert!(
        deny_priority < 250,
        "re-placed above the new allow rule too: {deny_priority}"
    );
    let puts: Vec<u16> = sim
        .world()
        .log
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [412, 200]);
}

#[tokio::test]
async fn a_busy_nsg_and_throttled_writes_are_waited_for() {
    let (sim, client) = demo().await;
    let writer = NsgWriter::new(client, 100);
    script(
        &sim,
        vec![
            (
                FaultMatch::puts(),
                Fault::Error(SimError::another_operation("nsg-web-subnet")),
            ),
            (FaultMatch::puts(), Fault::Error(SimError::throttled(0))),
        ],
    );
    writer
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[22], "10.10.1.4"),
        )
        .await
        .unwrap();
    assert!(!open_from_internet(&sim, "vm-web-1", 22));
    let puts: Vec<u16> = sim
        .world()
        .log
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [409, 429, 200]);
}

#[tokio::test]
async fn a_failed_operation_fails_the_write_with_arms_code_and_changes_nothing() {
    let (sim, client) = demo().await;
    let writer = NsgWriter::new(client, 100);
    script(
        &sim,
        vec![(
            FaultMatch::puts(),
            Fault::LroFailed {
                code: "NetworkSecurityGroupUpdateFailed".into(),
                message: "the update failed".into(),
            },
        )],
    );
    let err = writer
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[22], "10.10.1.4"),
        )
        .await
        .unwrap_err();
    match err {
        WriteError::Arm(e) => assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("NetworkSecurityGroupUpdateFailed", "the update failed")
        ),
        other => panic!("{other:?}"),
    }
    assert!(open_from_internet(&sim, "vm-web-1", 22));
    assert!(!sim
        .nsg(&web_subnet_nsg())
        .unwrap()
        .properties
        .security_rules
        .iter()
        .any(|r| r.name.starts_with("jitgate-")));
}

#[tokio::test]
async fn no_free_priority_fails_clearly_instead_of_leaving_a_gap() {
    let (sim, client) = demo().await;
    let nsg = sim.add_nsg(
        SUB,
        RG,
        "nsg-tight",
        vec![allow_inbound("allow-ssh-early", 101, "Internet", "22")],
    );
    let writer = NsgWriter::new(client, 100);
    let err = writer
        .apply(&nsg, deny("jitgate-deny-x", &[22], "10.10.1.4"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, WriteError::NoPriority(_)) && text.contains("allow-ssh-early (priority 101)"),
        "{text}"
    );
    assert_eq!(sim.nsg_writes(&nsg), 0);
}

#[tokio::test]
async fn changes_queued_for_one_nsg_go_out_together() {
    let (sim, client) = demo().await;
    let writer = NsgWriter::new(client, 100);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u8 {
        let writer = writer.clone();
        tasks.spawn(async move {
            writer
                .apply(
                    &web_subnet_nsg(),
                    deny(
                        &format!("jitgate-deny-{i}"),
                        &[22],
                        &format!("10.10.1.{}", 10 + i),
                    ),
                )
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let nsg = sim.nsg(&web_subnet_nsg()).unwrap();
    assert_eq!(
        nsg.properties
            .security_rules
            .iter()
            .filter(|r| r.name.starts_with("jitgate-deny-"))
            .count(),
        20
    );
    let writes = sim.nsg_writes(&web_subnet_nsg());
    assert!(writes <= 4, "20 changes, {writes} writes");
    println!("20 concurrent deny rules on one NSG: {writes} NSG writes");
}

#[tokio::test]
async fn properties_jitgate_does_not_model_survive_its_writes() {
    let (sim, client) = demo().await;
    let mut nsg: NetworkSecurityGroup = sim.nsg(&web_subnet_nsg()).unwrap();
    nsg.extra
        .insert("tags".into(), serde_json::json!({ "owner": "netops" }));
    nsg.properties
        .extra
        .insert("flushConnection".into(), serde_json::json!(true));
    sim.world().upsert_nsg(nsg);
    NsgWriter::new(client, 100)
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[22], "10.10.1.4"),
        )
        .await
        .unwrap();
    let nsg = sim.nsg(&web_subnet_nsg()).unwrap();
    assert_eq!(nsg.extra["tags"]["owner"], "netops");
    assert_eq!(nsg.properties.extra["flushConnection"], true);
}

#[tokio::test]
async fn standing_dnat_rules_are_removed_through_the_same_write_path() {
    use jitgate::arm::firewall_writer::{FirewallWriter, NatChange};
    let (sim, client) = demo().await;
    let internet = ip(INTERNET);
    assert_eq!(
        sim.forwards("20.50.0.100", 50022, internet),
        Some(("10.10.4.4".into(), 22))
    );
    let group = format!("{}/providers/Microsoft.Network/firewallPolicies/fw-hub-policy/ruleCollectionGroups/rcg-dnat", seed::rg_id(SUB, RG));
    // The firewall policy is busy once, and the first write meets a stale ETag.
    script(
        &sim,
        vec![
            (
                FaultMatch::puts(),
                Fault::Error(SimError::another_operation("fw-hub-policy")),
            ),
            (
                FaultMatch::puts(),
                Fault::Error(SimError::new(412, "PreconditionFailed", "stale")),
            ),
        ],
    );
    let writer = FirewallWriter::new(client);
    let removed = writer
        .apply(
            &group,
            NatChange::RemoveStanding {
                ports: vec![22, 3389],
                destinations: vec![ip("10.10.4.4")],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        removed.removed,
        ["dnat-inbound/dnat-ssh-vm-spoke (forwarded 50022 to 10.10.4.4:22)"]
    );
    assert_eq!(sim.forwards("20.50.0.100", 50022, internet), None);
    let puts: Vec<u16> = sim
        .world()
        .log
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [409, 412, 200]);
    // Nothing left to remove: no write.
    writer
        .apply(
            &group,
            NatChange::RemoveStanding {
                ports: vec![22],
                destinations: vec![ip("10.10.4.4")],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        sim.world().log.iter().filter(|r| r.method == "PUT").count(),
        3
    );
}

#[tokio::test]
async fn a_request_that_times_out_is_tried_again() {
    let sim = Sim::seeded().with_token(SIM_TOKEN);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = sim.spawn(listener).unwrap();
    let mut arm = Settings::default().resolve().unwrap().arm;
    arm.credential = ArmCredentialKind::Static;
    arm.static_token = Some(SIM_TOKEN.to_string().into());
    let retry = RetryPolicy {
        request_timeout: std::time::Duration::from_millis(300),
        ..RetryPolicy::quick()
    };
    let client = ArmClient::new(
        base.parse().unwrap(),
        ArmCredential::new(&arm, &AzureEnv::default()).unwrap(),
        retry,
    )
    .unwrap();
    script(
        &sim,
        vec![(
            FaultMatch::any(),
            Fault::Delay(std::time::Duration::from_secs(2)),
        )],
    );
    let started = std::time::Instant::now();
    let vm: VirtualMachine = client
        .get(&seed::vm_id(SUB, RG, "vm-app"), api_version::COMPUTE)
        .await
        .unwrap();
    assert_eq!(vm.name, "vm-app");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "did not wait for the stalled answer"
    );
    assert_eq!(
        sim.world().requests,
        2,
        "the stalled request, then the retry"
    );
}

#[tokio::test]
async fn a_grants_allow_rule_opens_the_port_for_its_source_only() {
    let (sim, client) = demo().await;
    let writer = NsgWriter::new(client, 100);
    let deny_priority = writer
        .apply(
            &web_subnet_nsg(),
            deny("jitgate-deny-web-1", &[22], "10.10.1.4"),
        )
        .await
        .unwrap()
        .priority
        .unwrap();
    let allow = |sources: Vec<&str>| RuleChange::Allow {
        name: "jitgate-allow-grant-1".into(),
        port: 22,
        protocol: "Tcp".into(),
        sources: sources.into_iter().map(String::from).collect(),
        destinations: vec![ip("10.10.1.4")],
        deny_rule: "jitgate-deny-web-1".into(),
        description: "grant 1".into(),
    };
    let outcome = writer
        .apply(&web_subnet_nsg(), allow(vec!["203.0.113.7/32"]))
        .await
        .unwrap();
    assert!(outcome.priority.unwrap() < deny_priority && outcome.priority.unwrap() >= 100);
    let from = |source: &str| {
        sim.evaluate(
            &seed::vm_id(SUB, RG, "vm-web-1"),
            ip(source),
            22,
            FlowProtocol::Tcp,
        )
        .unwrap()
        .allowed
    };
    assert!(from("203.0.113.7"), "open for the grant's address");
    assert!(!from("198.51.100.9"), "closed for everyone else");
    writer
        .apply(
            &web_subnet_nsg(),
            RuleChange::Remove {
                name: "jitgate-allow-grant-1".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        !from("203.0.113.7"),
        "closed again once the grant's rule is gone"
    );

    // Without the policy's deny rule there is nothing to open: refused, nothing written.
    let writes = sim.nsg_writes(&web_subnet_nsg());
    writer
        .apply(
            &web_subnet_nsg(),
            RuleChange::Remove {
                name: "jitgate-deny-web-1".into(),
            },
        )
        .await
        .unwrap();
    let err = writer
        .apply(&web_subnet_nsg(), allow(vec!["203.0.113.7"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, WriteError::NoPriority(ref why) if why.contains("must be in place")),
        "{err}"
    );
    assert_eq!(
        sim.nsg_writes(&web_subnet_nsg()),
        writes + 1,
        "only the removal was written"
    );
}

#[tokio::test]
async fn a_grant_through_a_firewall_is_a_dnat_rule_on_a_mapped_port() {
    use jitgate::arm::firewall_writer::{FirewallWriter, NatChange, NAT_COLLECTION};
    let (sim, client) = demo().await;
    let group = format!("{}/providers/Microsoft.Network/firewallPolicies/fw-hub-policy/ruleCollectionGroups/rcg-dnat", seed::rg_id(SUB, RG));
    let writer = FirewallWriter::new(client);
    let dnat = |name: &str, source: &str| NatChange::Dnat {
        name: name.into(),
        sources: vec![source.into()],
        public_ip: "20.50.0.100".into(),
        translated: ip("10.10.4.4"),
        port: 22,
        protocol: "TCP".into(),
    };
    let first = writer
        .apply(&group, dnat("jitgate-dnat-grant-1", "203.0.113.7"))
        .await
        .unwrap();
    assert_eq!(first.mapped_port, Some(50000));
    let second = writer
        .apply(&group, dnat("jitgate-dnat-grant-2", "198.51.100.9"))
        .await
        .unwrap();
    assert_eq!(second.mapped_port, Some(50001), "each grant its own port");
    assert_eq!(
        sim.forwards("20.50.0.100", 50000, ip("203.0.113.7")),
        Some(("10.10.4.4".into(), 22))
    );
    assert_eq!(
        sim.forwards("20.50.0.100", 50000, ip("198.51.100.9")),
        None,
        "not for another source"
    );
    // Applying the same grant again keeps its port and writes nothing.
    let writes = sim.world().log.iter().filter(|r| r.method == "PUT").count();
    assert_eq!(
        writer
            .apply(&group, dnat("jitgate-dnat-grant-1", "203.0.113.7"))
            .await
            .unwrap()
            .mapped_port,
        Some(50000)
    );
    assert_eq!(
        sim.world().log.iter().filter(|r| r.method == "PUT").count(),
        writes
    );

    writer
        .apply(
            &group,
            NatChange::Remove {
                name: "jitgate-dnat-grant-1".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(sim.forwards("20.50.0.100", 50000, ip("203.0.113.7")), None);
    writer
        .apply(
            &group,
            NatChange::Remove {
                name: "jitgate-dnat-grant-2".into(),
            },
        )
        .await
        .unwrap();
    let collections: Vec<String> = sim.world().rule_collection_groups[&group.to_ascii_lowercase()]
        .properties
        .rule_collections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        collections,
        ["dnat-inbound"],
        "jitgate's empty collection is removed, the administrator's stays"
    );
    assert!(!collections.contains(&NAT_COLLECTION.to_string()));
}
