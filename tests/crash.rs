//! Crashes: a `jitgate serve` process killed with SIGKILL at random points while it opens and
//! closes access, restarted each time, against a standalone `jitgate arm-sim` that outlives it.
//! Nothing acknowledged is lost or done twice, and no allow rule outlives its end by 5 s.

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");
const DEMO: &str = "5b1e0000-0000-4000-8000-00000000de30";
const SIM_TOKEN: &str = "crash-sim-token";
const CYCLES: usize = 20;

fn jitgate(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("JITGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd` and returns it with the first stderr line `pick` accepts, mapped.
fn spawn_reading(mut cmd: Command, pick: fn(&str) -> Option<String>) -> (Child, String) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(found) = pick(&line) {
                let _ = tx.send(found);
            }
        }
    });
    let found = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the process started");
    (child, found)
}

fn start_serve(dir: &std::path::Path, endpoint: &str) -> (Child, String) {
    let mut cmd = jitgate(dir);
    cmd.arg("serve").envs([
        ("JITGATE_LISTEN", "127.0.0.1:0"),
        ("JITGATE_ARM_MODE", "azure"),
        ("JITGATE_ARM_ENDPOINT", endpoint),
        ("JITGATE_ARM_CREDENTIAL", "static"),
        ("JITGATE_ARM_STATIC_TOKEN", SIM_TOKEN),
        ("JITGATE_SUBSCRIPTIONS", DEMO),
        ("JITGATE_MIN_ACCESS_DURATION", "PT1S"),
    ]);
    let (child, addr) = spawn_reading(cmd, |line| {
        line.split("http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/v1/me"))
            .map(|a| format!("http://{a}"))
    });
    (child, addr)
}

fn token(dir: &std::path::Path, role: &str) -> String {
    let out = jitgate(dir)
        .args(["token", "--user", "crash-tester", "--role", role])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

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
    let mut sim_cmd = jitgate(dir.path());
    sim_cmd.args([
        "arm-sim",
        "--listen",
        "127.0.0.1:0",
        "--token",
        SIM_TOKEN,
        "--lro-delay",
        "PT0S",
    ]);
    let (mut sim, endpoint) = spawn_reading(sim_cmd, |line| {
        line.strip_prefix("ARM simulator on ")
            .map(|rest| rest.split(':').take(3).collect::<Vec<_>>().join(":"))
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let admin = token(dir.path(), "Jit.Admin");
    let requester = token(dir.path(), "Jit.Requester");

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

    let (mut serve, mut base) = start_serve(dir.path(), &endpoint);
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
        (serve, base) = start_serve(dir.path(), &endpoint);
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
    let _ = sim.kill();
    let _ = sim.wait();
}
