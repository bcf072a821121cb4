//! How fast access opens and how punctually it closes, in-process: SQLite, the ARM simulator
//! with zero operation delay, the real HTTP server and dispatcher. Figures are ratios to a bare
//! HTTP round trip (`GET /healthz`) measured in the same run, since these machines are shared.
//!
//! Run: `cargo bench --bench requests` (add `-- --requests N`, default 200).

use jitgate::arm::sim::seed::{self, VmSpec, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::{FaultPlan, Sim};
use jitgate::auth::dev::{DevKey, DevTokenSpec};
use jitgate::config::Settings;
use jitgate::rbac::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Polls a request until it reaches `status` (and never `failed`); returns it.
async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    status: &str,
    every: Duration,
) -> Value {
    loop {
        let r: Value = http
            .get(format!("{base}/v1/access-requests/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["status"] == status {
            return r;
        }
        assert_ne!(r["status"], "failed", "{r}");
        tokio::time::sleep(every).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let config = Settings {
        database_url: Some(format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )),
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        min_access_duration: Some("PT1S".into()),
        rate_limit: Some("0".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let sim = Sim::new(FaultPlan {
        lro_delay: Duration::ZERO,
        ..FaultPlan::default()
    })
    .with_token("bench");
    seed::demo(&sim);
    // One VM per request, so that requests do not supersede one another.
    for i in 0..n {
        sim.add_vm(&VmSpec {
            subscription: SUB,
            resource_group: RG,
            name: &format!("vm-bench-{i:04}"),
            vnet: "vnet-demo",
            subnet: "snet-web",
            private_ip: &format!("10.10.{}.{}", 100 + i / 250, 1 + i % 250),
            public_ip: None,
            nic_nsg: None,
        });
    }
    let store = jitgate::store::connect(&config.database).await.unwrap();
    let auth = jitgate::server::token_validator(&config).await.unwrap();
    let arm = jitgate::server::arm_for_sim(&config, sim.clone(), "bench")
        .await
        .unwrap();
    let dispatch = jitgate::server::dispatcher(&config, store.clone(), &arm).expect("dispatcher");
    tokio::spawn(dispatch.clone().run(std::future::pending()));
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key = DevKey::load_or_create(&config.data_dir).unwrap();
    let audit = store.clone();
    let state = jitgate::server::app_state(config, store, auth, Some(dispatch));
    tokio::spawn(jitgate::server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let admin = key
        .mint(&DevTokenSpec::user("admin", &[Role::Admin]))
        .unwrap();
    let alice = key
        .mint(&DevTokenSpec::user("alice", &[Role::Requester]))
        .unwrap();

    let names: Vec<String> = (0..n).map(|i| format!("vm-bench-{i:04}")).collect();
    for name in &names {
        let url = format!(
            "{base}/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{name}/policy"
        );
        http.put(&url)
            .bearer_auth(&admin)
            .json(&json!({ "ports": [{ "number": 22 }] }))
            .send()
            .await
            .unwrap();
    }
    // Wait for every policy's deny rules.
    loop {
        let list: Value = http
            .get(format!("{base}/v1/policies?limit=1000"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["enforcement"]["state"] == "applied")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut baseline = Vec::new();
    let mut to_active = Vec::new();
    let mut lateness = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for name in &names {
        let t = Instant::now();
        http.get(format!("{base}/healthz")).send().await.unwrap();
        baseline.push(t.elapsed());

        let body = json!({ "virtualMachines": [{ "id": seed::vm_id(SUB, RG, name), "ports": [{ "number": 22, "duration": "PT2S", "allowedSourceAddressPrefix": "203.0.113.7" }] }] });
        let started = Instant::now();
        let created: Value = http
            .post(format!("{base}/v1/access-requests"))
            .bearer_auth(&alice)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        wait_for(
            &http,
            &base,
            &alice,
            &id,
            "active",
            Duration::from_millis(2),
        )
        .await;
        to_active.push(started.elapsed());
        ids.push(id);
    }
    // Expiry lateness: from each port's endTimeUtc to the audit event recording its expiry,
    // which is written after ARM has confirmed the allow rule's removal.
    let mut ends = Vec::new();
    for id in &ids {
        let r = wait_for(
            &http,
            &base,
            &alice,
            id,
            "expired",
            Duration::from_millis(20),
        )
        .await;
        let end: chrono::DateTime<chrono::Utc> = r["virtualMachines"][0]["ports"][0]["endTimeUtc"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        ends.push((id.clone(), end));
    }
    let events = audit.audit_events_after(0, 1_000_000).await.unwrap();
    for (id, end) in ends {
        let closed = events
            .iter()
            .find(|e| {
                e.event_type == "request.expired" && e.request_id.as_deref() == Some(id.as_str())
            })
            .map(|e| e.at)
            .unwrap();
        lateness.push((closed - end).to_std().unwrap_or_default());
    }
    let b50 = percentile(&mut baseline, 0.5);
    let a50 = percentile(&mut to_active, 0.5);
    let a99 = percentile(&mut to_active, 0.99);
    println!("access requests, {n} sequential, in-process ARM simulator with zero operation delay");
    println!(
        "baseline GET /healthz round trip      p50 {:>8.2} ms",
        ms(b50)
    );
    println!("POST -> active (auto approval)        p50 {:>8.2} ms ({:.1}x baseline)   p99 {:>8.2} ms ({:.1}x)", ms(a50), ms(a50) / ms(b50), ms(a99), ms(a99) / ms(b50));
    let l50 = percentile(&mut lateness, 0.5);
    let l99 = percentile(&mut lateness, 0.99);
    println!(
        "expiry lateness (endTimeUtc -> rule removed and recorded) p50 {:>8.2} ms   p99 {:>8.2} ms",
        ms(l50),
        ms(l99)
    );
}
