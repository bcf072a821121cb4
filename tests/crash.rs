//! Crashes: a `jitgate serve` process killed with SIGKILL at random points while it opens and
//! closes access, restarted each time, against a standalone `jitgate arm-sim` that outlives it.
//! Nothing acknowledged is lost or done twice, and no allow rule outlives its end by 5 s.

mod common;

use common::process::{kill9, start_arm_sim, token, DEMO};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SIM_TOKEN: &str = "crash-sim-token";
const CYCLES: usize = 20;

/// The jitgate allow rules in the NSG now, as (request id from the description).
async fn allow_rules(http: &reqwest::Client, endpoint: &str) -> Vec<String> {
    let nsg = format!("/subscriptions/{DEMO}/resourceGroups/rg-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-web-subnet");
    let Ok(r) = http
        .get(format!("{endpoint}{nsg}?api-version=2024-05-01"))
        .bearer_auth(SIM_TOKEN)
        .send()
        .await
    else {
        return vec![];
    };
    let body: Value = r.json().await.unwrap_or_default();
    body["properties"]["securityRules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter(|r| {
                    r["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("jitgate-allow-"))
                })
                .filter_map(|r| r["properties"]["description"].as_str())
                .filter_map(|d| {
                    d.strip_prefix("jitgate access request ")
                        .and_then(|rest| rest.split(' ').next())
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_leaves_no_rule_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, endpoint) = start_arm_sim(dir.path(), SIM_TOKEN);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let admin = token(dir.path(), "crash-admin", "Jit.Admin");
    let requester = token(dir.path(), "crash-tester", "Jit.Requester");

    // Sample the NSG all along: when was each request's rule seen last?
    let last_seen: Arc<Mutex<BTreeMap<String, chrono::DateTime<chrono::Utc>>>> = Arc::default();
    let sampler = {
        let (http, endpoint, last_seen) = (http.clone(), endpoint.clone(), last_seen.clone());
        tokio::spawn(async move {
            loop {
                let now = chrono::Utc::now();
                for id in allow_rules(&http, &endpoint).await {
                    last_seen.lock().unwrap().insert(id, now);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let (mut serve, mut base) = common::process::start_serve(dir.path(), &endpoint, SIM_TOKEN, &[]);
    let vm = format!("/subscriptions/{DEMO}/resourceGroups/rg-demo/providers/Microsoft.Compute/virtualMachines/vm-web-1");
    let policy = format!(
        "{base}/v1/subscriptions/{DEMO}/resourceGroups/rg-demo/virtualMachines/vm-web-1/policy"
    );
    assert!(http
        .put(&policy)
        .bearer_auth(&admin)
        .json(&json!({ "ports": [{ "number": 22 }] }))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut acknowledged = BTreeSet::new();
    for cycle in 0..CYCLES {
        for k in 0..2 {
            let body = json!({ "virtualMachines": [{ "id": vm, "ports": [{ "number": 22, "duration": "PT2S",
                "allowedSourceAddressPrefix": format!("203.0.113.{}", 10 + cycle * 2 + k) }] }] });
            if let Ok(r) = http
                .post(format!("{base}/v1/access-requests"))
                .bearer_auth(&requester)
                .json(&body)
                .send()
                .await
            {
                if r.status().as_u16() == 201 {
                    acknowledged.insert(
                        r.json::<Value>().await.unwrap()["id"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    );
                }
            }
        }
        // Kill it somewhere in activation, in the 2 s of access, or in expiry.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..2500))).await;
        kill9(&mut serve);
        (serve, base) = common::process::start_serve(dir.path(), &endpoint, SIM_TOKEN, &[]);
    }

    // Let the last restart finish everything.
    let deadline = Instant::now() + Duration::from_secs(90);
    let requests: Vec<Value> = loop {
        let list: Value = http
            .get(format!("{base}/v1/access-requests?limit=1000"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = list["items"].as_array().unwrap().clone();
        if items
            .iter()
            .all(|r| r["status"] == "expired" || r["status"] == "failed")
            && allow_rules(&http, &endpoint).await.is_empty()
        {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {:?}",
            items
                .iter()
                .map(|r| r["status"].clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    sampler.abort();

    // Nothing acknowledged is lost, nothing is there twice.
    let ids: Vec<String> = requests
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a request appears twice");
    assert!(
        acknowledged.is_subset(&unique),
        "acknowledged requests were lost: {:?}",
        acknowledged.difference(&unique).collect::<Vec<_>>()
    );
    assert!(
        acknowledged.len() >= CYCLES,
        "most submissions were acknowledged: {}",
        acknowledged.len()
    );
    // No rule outlived its end by more than 5 s.
    let seen = last_seen.lock().unwrap().clone();
    let mut worst = chrono::Duration::zero();
    for r in &requests {
        let id = r["id"].as_str().unwrap();
        if let (Some(last), Some(end)) = (
            seen.get(id),
            r["virtualMachines"][0]["ports"][0]["endTimeUtc"].as_str(),
        ) {
            let end: chrono::DateTime<chrono::Utc> = end.parse().unwrap();
            worst = worst.max(*last - end);
        }
    }
    let expired = requests.iter().filter(|r| r["status"] == "expired").count();
    println!("{CYCLES} SIGKILL cycles: {} requests, {expired} opened and expired, worst rule overstay {} ms", requests.len(), worst.num_milliseconds());
    assert!(
        worst < chrono::Duration::seconds(5),
        "an allow rule outlived its end by {} ms",
        worst.num_milliseconds()
    );
    assert!(expired > 0);
    kill9(&mut serve);
    kill9(&mut sim);
}
