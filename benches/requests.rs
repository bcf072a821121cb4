//! How fast access opens and how punctually it closes, in-process: SQLite, the ARM simulator
//! with zero operation delay, the real HTTP server and dispatcher. Figures are ratios to a bare
//! HTTP round trip (`GET /healthz`) measured in the same run, since these machines are shared.
//!
//! Run: `cargo bench --bench requests` (add `-- --requests N`, default 200).

mod support;

use jitgate::arm::sim::seed::{self, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::{FaultPlan, Sim};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{add_vms, in_process, ms, percentile};

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
    let sim = Sim::new(FaultPlan {
        lro_delay: Duration::ZERO,
        ..FaultPlan::default()
    })
    .with_token("bench");
    seed::demo(&sim);
    // One VM per request, so that requests do not supersede one another; all behind one NSG.
    let names = add_vms(&sim, n, true);
    let app = in_process(&sim).await;
    app.protect(&names).await;
    let (http, base, alice, audit) = (&app.http, app.base.as_str(), app.alice.as_str(), &app.store);

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
            .bearer_auth(alice)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        wait_for(http, base, alice, &id, "active", Duration::from_millis(2)).await;
        to_active.push(started.elapsed());
        ids.push(id);
    }
    // Expiry lateness: from each port's endTimeUtc to the audit event recording its expiry,
    // which is written after ARM has confirmed the allow rule's removal.
    let mut ends = Vec::new();
    for id in &ids {
        let r = wait_for(http, base, alice, id, "expired", Duration::from_millis(20)).await;
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
