//! Several replicas on one PostgreSQL database: three `jitgate serve` processes share the work
//! of 200 requests while one of them is killed half-way. Every request ends as it should, and
//! no change is written to ARM twice. Runs when `JITGATE_TEST_POSTGRES_URL` is set (`.ci/run`
//! sets it).

mod common;

use common::process::{start_arm_sim, start_serve, token, Children, DEMO};
use common::TestDb;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SIM_TOKEN: &str = "replica-sim-token";
const REQUESTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_do_every_request_once_while_one_dies() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("JITGATE_TEST_POSTGRES_URL is not set: the multi-replica test is skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The dev key first, so that the replicas starting together all load the same one.
    let admin = token(dir.path(), "replica-admin", "Jit.Admin");
    let requester = token(dir.path(), "replica-tester", "Jit.Requester");
    let mut children = Children::default();
    let (sim, endpoint) = start_arm_sim(dir.path(), SIM_TOKEN);
    children.add(sim);
    let settings = [("JITGATE_DATABASE_URL", db.url.as_str())];
    let mut bases = Vec::new();
    let mut first = 0;
    for i in 0..3 {
        let (child, base) = start_serve(dir.path(), &endpoint, SIM_TOKEN, &settings);
        let index = children.add(child);
        if i == 0 {
            first = index;
        }
        bases.push(base);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = |i: usize| bases[i].clone();

    // vm-app's NSG has room for hundreds of allow rules above its deny rule.
    let policy = format!(
        "{}/v1/subscriptions/{DEMO}/resourceGroups/rg-demo/virtualMachines/vm-app/policy",
        base(0)
    );
    assert_eq!(
        http.put(&policy)
            .bearer_auth(&admin)
            .json(&json!({ "ports": [{ "number": 22 }] }))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let vm = format!("/subscriptions/{DEMO}/resourceGroups/rg-demo/providers/Microsoft.Compute/virtualMachines/vm-app");

    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        if i == REQUESTS / 2 {
            children.kill(first); // mid-way, with work of its own in flight
        }
        let target = if i >= REQUESTS / 2 { 1 + i % 2 } else { i % 3 };
        let body = json!({ "virtualMachines": [{ "id": vm, "ports": [{ "number": 22, "duration": "PT3S",
            "allowedSourceAddressPrefix": format!("10.{}.{}.{}", 100 + i / 250, i % 250, 7) }] }] });
        let created = http
            .post(format!("{}/v1/access-requests", base(target)))
            .bearer_auth(&requester)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        ids.push(
            created.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let requests: Vec<Value> = loop {
        let list: Value = http
            .get(format!("{}/v1/access-requests?limit=1000", base(1)))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = list["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .clone();
        if items.len() == REQUESTS && items.iter().all(|r| r["status"] == "expired") {
            break items;
        }
        let stuck: Vec<Value> = items
            .iter()
            .filter(|r| r["status"] != "expired")
            .map(|r| r["status"].clone())
            .collect();
        assert!(
            Instant::now() < deadline,
            "{} of {} not expired: {stuck:?}",
            stuck.len(),
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut seen: Vec<String> = requests
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every request, once");

    // Each request's rule was added once and removed once: batched, never repeated.
    let stats: Value = http
        .get(format!("{endpoint}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nsg = format!("/subscriptions/{DEMO}/resourceGroups/rg-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-app").to_ascii_lowercase();
    let writes = stats["writes"][&nsg]
        .as_u64()
        .unwrap_or_else(|| panic!("no writes to {nsg}: {stats}"));
    println!("3 replicas, one killed: {REQUESTS} requests opened and expired with {writes} writes to their NSG (at most {} changes)", 2 * REQUESTS + 1);
    assert!(
        writes <= (2 * REQUESTS + 1) as u64,
        "{writes} NSG writes for {REQUESTS} requests: some change was written twice"
    );
    let rules: Value = http
        .get(format!("{endpoint}{nsg}?api-version=2024-05-01"))
        .bearer_auth(SIM_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let left = rules["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().unwrap().starts_with("jitgate-allow-"))
        .count();
    assert_eq!(left, 0, "allow rules left behind");
}
