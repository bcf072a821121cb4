//! What the benchmarks share: percentiles, and an in-process jitgate (real HTTP server,
//! dispatcher and SQLite) over an ARM simulator whose delays the caller sets.
#![allow(dead_code)]

use jitgate::arm::sim::seed::{self, VmSpec, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::Sim;
use jitgate::auth::dev::{DevKey, DevTokenSpec};
use jitgate::config::Settings;
use jitgate::rbac::Role;
use serde_json::{json, Value};
use std::time::Duration;

pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// An in-process jitgate over `sim` (its writes at the delay the caller sets), on SQLite.
pub struct InProcess {
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub alice: String,
    pub store: jitgate::store::DynStore,
    _dir: tempfile::TempDir,
}

pub async fn in_process(sim: &Sim) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = Settings {
        database_url: Some(format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )),
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        min_access_duration: Some("PT1S".into()),
        // One client, many requests: the per-caller limit is not what is measured.
        rate_limit: Some("0".into()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let store = jitgate::store::connect(&config.database).await.unwrap();
    let auth = jitgate::server::token_validator(&config).await.unwrap();
    let arm = jitgate::server::arm_for_sim(&config, sim.clone(), "bench")
        .await
        .unwrap();
    let dispatch = jitgate::server::dispatcher(&config, store.clone(), &arm).unwrap();
    tokio::spawn(dispatch.clone().run(std::future::pending()));
    jitgate::server::inventory(&config, store.clone(), &arm)
        .refresh_all()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key = DevKey::load_or_create(&config.data_dir).unwrap();
    let state = jitgate::server::app_state(config, store.clone(), auth, Some(dispatch));
    tokio::spawn(jitgate::server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    InProcess {
        base,
        http: reqwest::Client::new(),
        admin: key
            .mint(&DevTokenSpec::user("admin", &[Role::Admin]))
            .unwrap(),
        alice: key
            .mint(&DevTokenSpec::user("alice", &[Role::Requester]))
            .unwrap(),
        store,
        _dir: dir,
    }
}

impl InProcess {
    /// Puts a policy on every VM and waits until each is enforced.
    pub async fn protect(&self, names: &[String]) {
        for name in names {
            self.http
                .put(format!(
                    "{}/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{name}/policy",
                    self.base
                ))
                .bearer_auth(&self.admin)
                .json(&json!({ "ports": [{ "number": 22 }] }))
                .send()
                .await
                .unwrap();
        }
        loop {
            let list: Value = self
                .http
                .get(format!("{}/v1/policies?limit=1000", self.base))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = list["items"].as_array().unwrap();
            if items.len() >= names.len()
                && items.iter().all(|p| p["enforcement"]["state"] == "applied")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn ask(&self, name: &str, duration: &str, source: &str) -> String {
        let body = json!({ "virtualMachines": [{ "id": seed::vm_id(SUB, RG, name), "ports": [{ "number": 22, "duration": duration, "allowedSourceAddressPrefix": source }] }] });
        let created: Value = self
            .http
            .post(format!("{}/v1/access-requests", self.base))
            .bearer_auth(&self.alice)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_string()
    }

    pub async fn statuses(&self) -> Vec<String> {
        let list: Value = self
            .http
            .get(format!("{}/v1/access-requests?limit=1000", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `n` VMs in a subnet of their own: all behind the subnet's one NSG (`shared`), or each
/// behind an NSG of its own on its NIC.
pub fn add_vms(sim: &Sim, n: usize, shared: bool) -> Vec<String> {
    let subnet_nsg = shared.then(|| {
        sim.add_nsg(SUB, RG, "nsg-load", vec![]);
        "nsg-load"
    });
    sim.add_subnet(
        SUB,
        RG,
        "vnet-demo",
        "snet-load",
        "10.20.0.0/16",
        subnet_nsg,
    );
    (0..n)
        .map(|i| {
            let name = format!("vm-load-{i:04}");
            let nic_nsg = format!("nsg-{name}");
            if !shared {
                sim.add_nsg(SUB, RG, &nic_nsg, vec![]);
            }
            sim.add_vm(&VmSpec {
                subscription: SUB,
                resource_group: RG,
                name: &name,
                vnet: "vnet-demo",
                subnet: "snet-load",
                private_ip: &format!("10.20.{}.{}", i / 250, 1 + i % 250),
                public_ip: None,
                nic_nsg: (!shared).then_some(nic_nsg.as_str()),
            });
            name
        })
        .collect()
}
