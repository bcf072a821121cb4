//! A simulator of the ARM REST subset jitgate uses, over real HTTP: VMs, NICs, subnets, public
//! IPs and NSGs, with ETags (412 on a stale `If-Match`), long-running operations behind
//! `Azure-AsyncOperation`, one operation at a time per NSG (409
//! `AnotherOperationInProgress`), throttling (429 with `Retry-After`), injectable 5xx and LRO
//! failures, paging with `nextLink`, bearer-token checks, and the evaluation of NSG rules for a
//! flow, so that tests can ask "is port 22 of this VM open from that address?".
//!
//! `JITGATE_ARM_MODE=sim` runs it in-process, seeded by [`seed`]; `jitgate arm-sim` runs it alone.

mod routes;
pub mod seed;
pub mod world;

pub use world::{Fault, FaultMatch, FaultPlan, RequestRecord, SimError, World};

use crate::arm::evaluate::{self, Flow, FlowProtocol, NetworkContext, Verdict};
use crate::arm::model::{NetworkInterface, NetworkSecurityGroup, Subnet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The simulator: cheap to clone, shared by its HTTP server and the test or process holding it.
#[derive(Clone)]
pub struct Sim {
    world: Arc<Mutex<World>>,
    /// The bearer token callers must present; `None` accepts any non-empty token.
    token: Option<String>,
    base_url: Arc<OnceLock<String>>,
}

impl Sim {
    pub fn new(faults: FaultPlan) -> Sim {
        Sim {
            world: Arc::new(Mutex::new(World::new(faults))),
            token: None,
            base_url: Arc::new(OnceLock::new()),
        }
    }

    /// A simulator holding the demo subscription of [`seed::demo`].
    pub fn seeded() -> Sim {
        let sim = Sim::new(FaultPlan::default());
        seed::demo(&sim);
        sim
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Sim {
        self.token = Some(token.into());
        self
    }

    /// The world, to read or change directly. A plain mutex: never held across an await.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves the simulator on `listener` (in the background) and returns its base URL.
    pub fn spawn(&self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let addr: SocketAddr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let _ = self.base_url.set(base.clone());
        let app = routes::router(self.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "ARM simulator stopped");
            }
        });
        Ok(base)
    }

    pub fn base_url(&self) -> String {
        self.base_url.get().cloned().unwrap_or_default()
    }

    pub fn set_faults(&self, faults: FaultPlan) {
        self.world().set_faults(faults);
    }

    /// Accepted writes to one NSG.
    pub fn nsg_writes(&self, nsg_id: &str) -> u64 {
        self.world()
            .writes
            .get(&nsg_id.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// The NSG as ARM returns it now.
    pub fn nsg(&self, nsg_id: &str) -> Option<NetworkSecurityGroup> {
        self.world().nsgs.get(&nsg_id.to_ascii_lowercase()).cloned()
    }

    /// Would TCP/UDP traffic from `source` reach `port` of the VM, through the NSGs of its
    /// subnet and NIC as they stand after every completed write?
    pub fn evaluate(
        &self,
        vm_id: &str,
        source: IpAddr,
        port: u16,
        protocol: FlowProtocol,
    ) -> Result<Verdict, SimError> {
        let mut world = self.world();
        world.settle(std::time::Instant::now());
        let (ip, subnet_nsg, nic_nsg) = vm_network(&world, vm_id)?;
        let effective = |id: Option<String>| {
            id.and_then(|id| world.effective_nsgs.get(&id.to_ascii_lowercase()).cloned())
        };
        let (subnet_nsg, nic_nsg) = (effective(subnet_nsg), effective(nic_nsg));
        let flow = Flow {
            source,
            destination: ip,
            port,
            protocol,
        };
        Ok(evaluate::evaluate_inbound(
            subnet_nsg.as_ref(),
            nic_nsg.as_ref(),
            &flow,
            &NetworkContext::default(),
        ))
    }
}

/// The primary private IP of a VM's first NIC, and the ids of its subnet's and NIC's NSGs.
fn vm_network(
    world: &World,
    vm_id: &str,
) -> Result<(IpAddr, Option<String>, Option<String>), SimError> {
    let get = |id: &str| {
        world
            .resources
            .get(&id.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| SimError::not_found(id))
    };
    let vm = get(vm_id)?;
    let nic_id = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .ok_or_else(|| {
            SimError::new(
                400,
                "VmHasNoNic",
                format!("{vm_id} has no network interface"),
            )
        })?;
    let nic: NetworkInterface = serde_json::from_value(get(nic_id)?)
        .map_err(|e| SimError::new(500, "Corrupt", e.to_string()))?;
    let ipc = nic
        .properties
        .ip_configurations
        .first()
        .ok_or_else(|| SimError::new(400, "NicHasNoIpConfiguration", nic_id.to_string()))?;
    let ip = ipc
        .properties
        .private_ip_address
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| SimError::new(400, "NicHasNoPrivateIp", nic_id.to_string()))?;
    let subnet_nsg = match &ipc.properties.subnet {
        Some(s) => {
            let subnet: Subnet = serde_json::from_value(get(&s.id)?)
                .map_err(|e| SimError::new(500, "Corrupt", e.to_string()))?;
            subnet.properties.network_security_group.map(|n| n.id)
        }
        None => None,
    };
    Ok((
        ip,
        subnet_nsg,
        nic.properties.network_security_group.map(|n| n.id),
    ))
}
