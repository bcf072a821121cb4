//! Opening and closing access in ARM: the allow rules of an approved request's ports (one per
//! port and source, above the VM's deny rule, in each of the VM's NSGs), and their removal
//! when each port's `endTimeUtc` passes. Both are outbox jobs, so a crash in between loses
//! nothing: the job is taken again, and every step is idempotent (rules are named for what they
//! grant, so writing one twice changes nothing).

use super::enforce::{deny_rule_name, system};
use super::{JobOutcome, MAX_ATTEMPTS};
use crate::arm::client::ArmClient;
use crate::arm::discovery::{self, Lookups};
use crate::arm::firewall_writer::{FirewallWriter, NatChange};
use crate::arm::nsg_writer::{NsgWriter, RuleChange, WriteError, RULE_PREFIX};
use crate::audit::NewAuditEvent;
use crate::domain::request::{AccessRequest, Event, MappedPort, RequestStatus, RequestedPort};
use crate::domain::{Protocol, VmId};
use crate::store::{
    DynStore, Job, NewJob, PageRequest, RequestFilter, RequestUpdate, JOB_CLOSE_REQUEST,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub struct Grants {
    store: DynStore,
    client: ArmClient,
    writer: NsgWriter,
    firewall_writer: FirewallWriter,
}

/// The allow rule of one port of one request: stable, so that a retried job finds its own
/// rule, and recognisably ours.
pub fn allow_rule_name(request_id: &str, vm: &VmId, port: &RequestedPort) -> String {
    let digest = Sha256::digest(
        format!("{request_id}|{}|{}|{}", vm.key(), port.number, port.source).as_bytes(),
    );
    format!(
        "{RULE_PREFIX}allow-{}-{}",
        port.number,
        &hex::encode(digest)[..16]
    )
}

fn arm_protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "Tcp",
        Protocol::Udp => "Udp",
        Protocol::Any => "*",
    }
}

/// The job that closes a request's ports whose end has come, at `at`.
pub fn close_job(request_id: &str, at: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: JOB_CLOSE_REQUEST,
        subject: request_id.to_string(),
        payload: serde_json::json!({ "requestId": request_id }),
        run_after: at,
    }
}

impl Grants {
    pub fn new(store: DynStore, client: ArmClient, writer: NsgWriter) -> Grants {
        Grants {
            firewall_writer: FirewallWriter::new(client.clone()),
            store,
            client,
            writer,
        }
    }

    /// Opens an approved request's ports, then marks it active (or failed, with ARM's reason).
    pub async fn activate_job(&self, job: &Job) -> JobOutcome {
        let Some(id) = job.payload["requestId"].as_str() else {
            return JobOutcome::Done;
        };
        let stored = match self.store.get_request(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return JobOutcome::Done,
            Err(e) => return JobOutcome::Retry(format!("reading the request: {e}")),
        };
        if stored.request.status != RequestStatus::Approved {
            return JobOutcome::Done; // activated already, or cancelled meanwhile
        }
        let mut mapped = Vec::new();
        let event = match self.open(&stored.request).await {
            Ok(m) => {
                mapped = m;
                Event::Activated { at: Utc::now() }
            }
            Err(Failure::Transient(why)) if job.attempts < MAX_ATTEMPTS => {
                return JobOutcome::Retry(why)
            }
            Err(Failure::Transient(why)) | Err(Failure::Final(why)) => {
                Event::ActivationFailed { reason: why }
            }
        };
        let Ok(mut next) = stored.request.apply(event) else {
            return JobOutcome::Done;
        };
        for vm in &mut next.virtual_machines {
            let key = vm.vm.key().to_string();
            for port in &mut vm.ports {
                let source = port.source.to_string();
                port.mapped = mapped
                    .iter()
                    .find(|(k, n, s, _)| *k == key && *n == port.number.get() && *s == source)
                    .map(|(_, _, _, m)| m.clone());
            }
        }
        let now = Utc::now();
        // Active: close at the first port's end. Failed: close now, since some rules may
        // have been written before the failure.
        let close = match next.status {
            RequestStatus::Failed => Some(close_job(&next.id, now)),
            _ => next
                .end_times()
                .iter()
                .map(|(_, _, end)| *end)
                .min()
                .map(|end| close_job(&next.id, end)),
        };
        let event_type = if next.status == RequestStatus::Active {
            "request.activated"
        } else {
            "request.failed"
        };
        let active = (next.status == RequestStatus::Active).then(|| next.clone());
        let outcome = self
            .write(next, stored.version, event_type, close, now)
            .await;
        if let (JobOutcome::Done, Some(newer)) = (&outcome, active) {
            self.supersede_older(&newer).await;
        }
        outcome
    }

    /// A newer active request for the same VM, port and source ends the older one (Azure's
    /// `NewerRequestInitiated`): the older one is revoked and its rules closed. Best effort: an
    /// older request this misses still ends at its own `endTimeUtc`.
    async fn supersede_older(&self, newer: &AccessRequest) {
        let same = |a: &AccessRequest| {
            a.virtual_machines.iter().any(|va| {
                newer.virtual_machines.iter().any(|vb| {
                    va.vm == vb.vm
                        && va.ports.iter().any(|pa| {
                            vb.ports
                                .iter()
                                .any(|pb| pa.number == pb.number && pa.source == pb.source)
                        })
                })
            })
        };
        for vm in &newer.virtual_machines {
            let filter = RequestFilter {
                status: Some(RequestStatus::Active),
                vm_key: Some(vm.vm.key().to_string()),
                ..Default::default()
            };
            let Ok(page) = self
                .store
                .list_requests(
                    &filter,
                    &PageRequest {
                        limit: 1000,
                        after: None,
                    },
                )
                .await
            else {
                continue;
            };
            for older in page
                .items
                .into_iter()
                .filter(|o| o.request.id < newer.id && same(&o.request))
            {
                let Ok(next) = older.request.apply(Event::Superseded) else {
                    continue;
                };
                let now = Utc::now();
                let close = Some(close_job(&next.id, now));
                if let JobOutcome::Retry(why) = self
                    .write(next, older.version, "request.superseded", close, now)
                    .await
                {
                    tracing::warn!(request = %older.request.id, reason = %why, "could not supersede an older request");
                }
            }
        }
    }

    /// Closes the ports of an active request whose end has come; the request expires with
    /// its last port. Queues itself again for the next port's end.
    pub async fn close_job(&self, job: &Job) -> JobOutcome {
        let Some(id) = job.payload["requestId"].as_str() else {
            return JobOutcome::Done;
        };
        let stored = match self.store.get_request(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return JobOutcome::Done,
            Err(e) => return JobOutcome::Retry(format!("reading the request: {e}")),
        };
        let request = &stored.request;
        let now = Utc::now();
        // Revoked requests close every port at once; active ones those whose time has come.
        let due: Vec<(VmId, RequestedPort)> = request
            .virtual_machines
            .iter()
            .flat_map(|vm| vm.ports.iter().map(move |p| (vm.vm.clone(), p.clone())))
            .filter(|(_, p)| {
                request.status != RequestStatus::Active
                    || p.end_time_utc.is_some_and(|end| end <= now)
            })
            .collect();
        if let Err(Failure::Transient(why) | Failure::Final(why)) = self.close(request, &due).await
        {
            return JobOutcome::Retry(why);
        }
        if request.status != RequestStatus::Active {
            return JobOutcome::Done;
        }
        let next = request.expire_ports_until(now);
        if next == *request {
            return JobOutcome::Done;
        }
        let later = next
            .end_times()
            .iter()
            .map(|(_, _, end)| *end)
            .filter(|end| *end > now)
            .min()
            .map(|end| close_job(&next.id, end));
        let event_type = if next.status == RequestStatus::Expired {
            "request.expired"
        } else {
            "request.portsExpired"
        };
        self.write(next, stored.version, event_type, later, now)
            .await
    }

    async fn write(
        &self,
        next: AccessRequest,
        version: i64,
        event_type: &'static str,
        job: Option<NewJob>,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        let event = NewAuditEvent {
            event_type,
            actor: system(),
            resource_id: next
                .virtual_machines
                .first()
                .map(|v| v.vm.as_str().to_string())
                .unwrap_or_default(),
            request_id: Some(next.id.clone()),
            data: serde_json::to_value(&next).unwrap_or_default(),
        };
        match self
            .store
            .update_request(RequestUpdate {
                request: next,
                expected_version: version,
                event,
                job,
                now,
            })
            .await
        {
            Ok(true) => JobOutcome::Done,
            // Someone changed the request meanwhile (a revoke): run again on what it is now.
            Ok(false) => JobOutcome::Retry("the request changed while its job ran".into()),
            Err(e) => JobOutcome::Retry(format!("recording the outcome: {e}")),
        }
    }

    /// Writes every port's allow rule into every NSG of its VM, and for a VM behind an Azure
    /// Firewall (one the VM's policy enforcement found) a DNAT rule from the port's source to a
    /// mapped firewall port, with an allow rule admitting the firewall's range in the NSGs.
    /// Returns where each port is mapped to, by (VM key, port, source).
    async fn open(
        &self,
        request: &AccessRequest,
    ) -> Result<Vec<(String, u16, String, MappedPort)>, Failure> {
        let mut mapped = Vec::new();
        for vm in &request.virtual_machines {
            let network = discovery::discover_vm(&self.client, vm.vm.as_str())
                .await
                .map_err(Failure::arm)?;
            if network.network_security_groups.is_empty() {
                return Err(Failure::Final(format!(
                    "{} has no NSG to open a port in",
                    vm.vm.name()
                )));
            }
            self.enforced(&vm.vm).await?;
            let firewalls = self.firewalls_of(&vm.vm).await?;
            for port in &vm.ports {
                let name = allow_rule_name(&request.id, &vm.vm, port);
                let allow = |name: String, sources: Vec<String>| RuleChange::Allow {
                    name,
                    port: port.number.get(),
                    protocol: arm_protocol(port.protocol).into(),
                    sources,
                    destinations: network.private_ip_addresses.clone(),
                    deny_rule: deny_rule_name(&vm.vm),
                    description: format!(
                        "jitgate access request {} for {}",
                        request.id, request.requestor.name
                    ),
                };
                let mut changes = vec![allow(name.clone(), vec![port.source.to_string()])];
                for (group, public_ip, firewall_range) in &firewalls {
                    let Some(translated) = network.private_ip_addresses.first() else {
                        continue;
                    };
                    let dnat = NatChange::Dnat {
                        name: name.clone(),
                        sources: vec![port.source.to_string()],
                        public_ip: public_ip.clone(),
                        translated: *translated,
                        port: port.number.get(),
                        protocol: nat_protocol(port.protocol).into(),
                    };
                    let outcome = self
                        .firewall_writer
                        .apply(group, dnat)
                        .await
                        .map_err(Failure::write)?;
                    if let Some(p) = outcome.mapped_port {
                        mapped.push((
                            vm.vm.key().to_string(),
                            port.number.get(),
                            port.source.to_string(),
                            MappedPort {
                                address: public_ip.clone(),
                                port: p,
                            },
                        ));
                    }
                    // After DNAT the VM sees the firewall, not the client: admit the firewall for
                    // this port while the grant lasts (the known flaw of Azure's own JIT).
                    changes.push(allow(
                        firewall_rule_name(&name),
                        vec![firewall_range.clone()],
                    ));
                }
                for nsg in &network.network_security_groups {
                    for change in &changes {
                        self.writer
                            .apply(&nsg.id, change.clone())
                            .await
                            .map_err(Failure::write)?;
                    }
                }
            }
        }
        Ok(mapped)
    }

    /// Access opens through the policy's deny rules, so they must be in place first: a policy
    /// written a moment ago is waited for; one whose enforcement failed fails the request.
    async fn enforced(&self, vm: &VmId) -> Result<(), Failure> {
        use crate::store::EnforcementState;
        match self.store.get_policy(vm).await {
            Ok(Some(p)) => match p.enforcement.state {
                EnforcementState::Applied => Ok(()),
                EnforcementState::Pending => Err(Failure::Transient(format!(
                    "waiting for the deny rules of {} to be in place",
                    vm.name()
                ))),
                EnforcementState::Failed => Err(Failure::Final(format!(
                    "the policy of {} is not enforced: {}",
                    vm.name(),
                    p.enforcement.detail
                ))),
            },
            Ok(None) => Err(Failure::Final(format!(
                "{} has no JIT policy any more",
                vm.name()
            ))),
            Err(e) => Err(Failure::Transient(format!("reading the policy: {e}"))),
        }
    }

    /// The firewalls the VM's policy enforcement found in front of it: for each, the rule
    /// collection group jitgate writes DNAT rules to, its public address and its range.
    async fn firewalls_of(&self, vm: &VmId) -> Result<Vec<(String, String, String)>, Failure> {
        let ids = match self.store.get_policy(vm).await {
            Ok(Some(p)) => p.enforcement.firewalls,
            Ok(None) => return Ok(vec![]),
            Err(e) => return Err(Failure::Transient(format!("reading the policy: {e}"))),
        };
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut lookups = Lookups::default();
        let views = lookups
            .firewalls(&self.client, vm.subscription())
            .await
            .map_err(Failure::arm)?
            .to_vec();
        let mut found = Vec::new();
        for view in views
            .iter()
            .filter(|v| ids.iter().any(|id| id.eq_ignore_ascii_case(&v.firewall.id)))
        {
            let Some(group) = view.groups.iter().min_by_key(|g| g.properties.priority) else {
                continue;
            };
            if let (Some(public), Some(range)) =
                view.addresses(&self.client).await.map_err(Failure::arm)?
            {
                found.push((group.id.clone(), public, range));
            }
        }
        Ok(found)
    }

    /// Removes the rules of `ports`: allow rules in the VM's NSGs, DNAT rules on its firewalls.
    async fn close(
        &self,
        request: &AccessRequest,
        ports: &[(VmId, RequestedPort)],
    ) -> Result<(), Failure> {
        // One read of each VM's network (and firewalls), however many of its ports close.
        let mut by_vm: Vec<(&VmId, Vec<&RequestedPort>)> = Vec::new();
        for (vm, port) in ports {
            match by_vm.iter_mut().find(|(v, _)| *v == vm) {
                Some((_, list)) => list.push(port),
                None => by_vm.push((vm, vec![port])),
            }
        }
        for (vm, ports) in by_vm {
            let network = match discovery::discover_vm(&self.client, vm.as_str()).await {
                Ok(n) => n,
                Err(e) if e.is_not_found() => continue, // the VM is gone, and its rules' purpose with it
                Err(e) => return Err(Failure::arm(e)),
            };
            let firewalls = if ports.iter().any(|p| p.mapped.is_some()) {
                self.firewalls_of(vm).await?
            } else {
                vec![]
            };
            for port in ports {
                let name = allow_rule_name(&request.id, vm, port);
                if port.mapped.is_some() {
                    for (group, _, _) in &firewalls {
                        self.firewall_writer
                            .apply(group, NatChange::Remove { name: name.clone() })
                            .await
                            .map_err(Failure::write)?;
                    }
                }
                for nsg in &network.network_security_groups {
                    for rule in [name.clone(), firewall_rule_name(&name)] {
                        self.writer
                            .apply(&nsg.id, RuleChange::Remove { name: rule })
                            .await
                            .map_err(Failure::write)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The NSG rule that admits a firewall's range for a grant through that firewall.
fn firewall_rule_name(allow_rule: &str) -> String {
    format!("{allow_rule}-fw")
}

fn nat_protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Any => "Any",
    }
}

enum Failure {
    Transient(String),
    Final(String),
}

impl Failure {
    fn arm(e: crate::arm::client::ArmError) -> Failure {
        if e.is_transient() {
            Failure::Transient(e.to_string())
        } else {
            Failure::Final(e.to_string())
        }
    }

    fn write(e: WriteError) -> Failure {
        match e {
            WriteError::Arm(e) => Failure::arm(e),
            WriteError::TooManyConflicts(_) => Failure::Transient(e.to_string()),
            other => Failure::Final(other.to_string()),
        }
    }
}
