//! The simulator's state and ARM's rules for it, with no HTTP: resources by id, NSGs with
//! ETags and one long-running operation at a time, and the faults a test asks for.

use crate::arm::model::{AsyncOperation, ErrorDetail, NetworkSecurityGroup, SecurityRule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// ARM's answer to a request the simulator refuses: status, error code and message, and the
/// `Retry-After` seconds to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl SimError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> SimError {
        SimError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found(id: &str) -> SimError {
        SimError::new(
            404,
            "ResourceNotFound",
            format!("The Resource '{id}' was not found."),
        )
    }

    pub fn throttled(retry_after: u64) -> SimError {
        SimError {
            retry_after: Some(retry_after),
            ..SimError::new(
                429,
                "TooManyRequests",
                "The request is being throttled. Retry after the time in Retry-After.",
            )
        }
    }

    pub fn another_operation(nsg: &str) -> SimError {
        SimError::new(
            409,
            "AnotherOperationInProgress",
            format!("Another operation on this or dependent resource is in progress. To retry later, wait for the operation on {nsg} to complete."),
        )
    }
}

/// What a request looked like, for tests that check what the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub api_version: Option<String>,
    pub client_request_id: Option<String>,
    pub user_agent: Option<String>,
    pub if_match: Option<String>,
    pub status: u16,
}

/// A fault to inject into one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this error instead of doing the work.
    Error(SimError),
    /// Accept a write, then fail its long-running operation with this code and message.
    LroFailed { code: String, message: String },
    /// Answer only after this long (a client timeout to provoke).
    Delay(Duration),
}

/// Which requests a scripted fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultMatch {
    /// `GET`, `PUT`...; `None` for any.
    pub method: Option<String>,
    /// A case-insensitive substring of the path; `None` for any.
    pub path_contains: Option<String>,
}

impl FaultMatch {
    pub fn any() -> FaultMatch {
        FaultMatch {
            method: None,
            path_contains: None,
        }
    }

    pub fn puts() -> FaultMatch {
        FaultMatch {
            method: Some("PUT".into()),
            path_contains: None,
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    }
}

/// How the simulated ARM misbehaves. Scripted faults apply first, in order, each once; the
/// rates then apply to every request (writes, for the LRO failure rate) with a seeded RNG, so
/// a run can be repeated.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// How long a write's long-running operation takes.
    pub lro_delay: Duration,
    pub throttle_rate: f64,
    /// `Retry-After` seconds on a throttled answer.
    pub throttle_retry_after: u64,
    pub server_error_rate: f64,
    pub lro_failure_rate: f64,
    /// A 409 `AnotherOperationInProgress` on writes, as ARM gives when something else (the
    /// portal, a policy) is changing the NSG.
    pub conflict_rate: f64,
    pub script: VecDeque<(FaultMatch, Fault)>,
    pub seed: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            lro_delay: Duration::from_millis(20),
            throttle_rate: 0.0,
            throttle_retry_after: 1,
            server_error_rate: 0.0,
            lro_failure_rate: 0.0,
            conflict_rate: 0.0,
            script: VecDeque::new(),
            seed: 7,
        }
    }
}

#[derive(Debug, Clone)]
struct Operation {
    nsg_key: String,
    done_at: Instant,
    /// The NSG as it stood before the write, restored if the operation fails.
    before: Option<NetworkSecurityGroup>,
    failure: Option<ErrorDetail>,
    status: &'static str,
}

/// Every resource the simulator holds, and what has happened to it.
pub struct World {
    /// Read-only resources (VMs, NICs, subnets, VNets, public IPs), by lower-cased id.
    pub resources: BTreeMap<String, Value>,
    /// NSGs by lower-cased id: the document (with `etag` and `provisioningState`).
    pub nsgs: BTreeMap<String, NetworkSecurityGroup>,
    /// The NSG as it last stood after a successful write: what the network enforces.
    pub effective_nsgs: BTreeMap<String, NetworkSecurityGroup>,
    operations: HashMap<String, Operation>,
    /// Accepted writes per NSG key.
    pub writes: HashMap<String, u64>,
    pub requests: u64,
    /// Every request, in order, as the simulator received it.
    pub log: Vec<RequestRecord>,
    pub faults: FaultPlan,
    rng: StdRng,
    pub page_size: usize,
}

impl World {
    pub fn new(faults: FaultPlan) -> World {
        World {
            resources: BTreeMap::new(),
            nsgs: BTreeMap::new(),
            effective_nsgs: BTreeMap::new(),
            operations: HashMap::new(),
            writes: HashMap::new(),
            requests: 0,
            log: Vec::new(),
            rng: StdRng::seed_from_u64(faults.seed),
            faults,
            page_size: 100,
        }
    }

    pub fn set_faults(&mut self, faults: FaultPlan) {
        self.rng = StdRng::seed_from_u64(faults.seed);
        self.faults = faults;
    }

    /// The fault (if any) for this request: scripted first, then by rate.
    pub fn draw_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        self.requests += 1;
        if let Some(i) = self
            .faults
            .script
            .iter()
            .position(|(m, _)| m.matches(method, path))
        {
            return self.faults.script.remove(i).map(|(_, f)| f);
        }
        let is_write = method.eq_ignore_ascii_case("PUT");
        let roll: f64 = self.rng.gen();
        let mut edge = self.faults.throttle_rate;
        if roll < edge {
            return Some(Fault::Error(SimError::throttled(
                self.faults.throttle_retry_after,
            )));
        }
        edge += self.faults.server_error_rate;
        if roll < edge {
            let status = if self.rng.gen_bool(0.5) { 500 } else { 503 };
            return Some(Fault::Error(SimError::new(
                status,
                "InternalServerError",
                "An internal error occurred (injected).",
            )));
        }
        if is_write {
            edge += self.faults.conflict_rate;
            if roll < edge {
                return Some(Fault::Error(SimError::another_operation(path)));
            }
            edge += self.faults.lro_failure_rate;
            if roll < edge {
                return Some(Fault::LroFailed {
                    code: "InternalServerError".into(),
                    message: "The operation failed (injected).".into(),
                });
            }
        }
        None
    }

    /// Completes the operations whose time has come.
    pub fn settle(&mut self, now: Instant) {
        let due: Vec<String> = self
            .operations
            .iter()
            .filter(|(_, op)| op.status == "InProgress" && op.done_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(op) = self.operations.get_mut(&id) else {
                continue;
            };
            let Some(nsg) = self.nsgs.get_mut(&op.nsg_key) else {
                continue;
            };
            if op.failure.is_some() {
                op.status = "Failed";
                match op.before.take() {
                    Some(before) => *nsg = before,
                    None => {
                        self.nsgs.remove(&op.nsg_key);
                    }
                }
            } else {
                op.status = "Succeeded";
                nsg.properties.provisioning_state = Some("Succeeded".into());
                for rule in &mut nsg.properties.security_rules {
                    rule.properties.provisioning_state = Some("Succeeded".into());
                }
                self.effective_nsgs.insert(op.nsg_key.clone(), nsg.clone());
            }
        }
    }

    pub fn operation(&self, id: &str) -> Option<AsyncOperation> {
        self.operations.get(id).map(|op| AsyncOperation {
            status: op.status.into(),
            error: if op.status == "Failed" {
                op.failure.clone()
            } else {
                None
            },
        })
    }

    fn busy(&self, nsg_key: &str) -> bool {
        self.operations
            .values()
            .any(|op| op.nsg_key == nsg_key && op.status == "InProgress")
    }

    /// A PUT of an NSG, as ARM takes it: refused while another operation runs on it (409) or
    /// when `If-Match` is stale (412); otherwise accepted with a new ETag, completed by a
    /// long-running operation whose id is returned.
    pub fn put_nsg(
        &mut self,
        id: &str,
        body: NetworkSecurityGroup,
        if_match: Option<&str>,
        if_none_match: Option<&str>,
        fail_with: Option<ErrorDetail>,
        now: Instant,
    ) -> Result<(NetworkSecurityGroup, String, bool), SimError> {
        let key = id.to_ascii_lowercase();
        let current = self.nsgs.get(&key).cloned();
        if self.busy(&key) {
            return Err(SimError::another_operation(id));
        }
        match (if_match, &current) {
            (Some("*"), Some(_)) | (None, _) => {}
            (Some(tag), Some(nsg)) if nsg.etag.as_deref() == Some(tag) => {}
            (Some(_), _) => {
                return Err(SimError::new(
                    412,
                    "PreconditionFailed",
                    "The condition specified using HTTP conditional header(s) is not met.",
                ))
            }
        }
        if if_none_match == Some("*") && current.is_some() {
            return Err(SimError::new(
                412,
                "PreconditionFailed",
                "The resource already exists.",
            ));
        }
        check_rules(&body.properties.security_rules)?;
        let (name, rg_id) = split_id(id)?;
        let mut nsg = body;
        nsg.id = current
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_else(|| id.to_string());
        nsg.name = name;
        if let Some(c) = &current {
            nsg.location = c.location.clone();
            nsg.properties.default_security_rules = c.properties.default_security_rules.clone();
        } else {
            nsg.properties.default_security_rules = crate::arm::model::default_inbound_rules();
        }
        let etag = format!("W/\"{}\"", uuid::Uuid::new_v4());
        nsg.etag = Some(etag.clone());
        nsg.properties.provisioning_state = Some("Updating".into());
        for rule in &mut nsg.properties.security_rules {
            rule.id = Some(format!("{}/securityRules/{}", nsg.id, rule.name));
            rule.etag = Some(etag.clone());
            rule.properties.provisioning_state = Some("Updating".into());
        }
        let _ = rg_id;
        let op_id = uuid::Uuid::new_v4().to_string();
        self.operations.insert(
            op_id.clone(),
            Operation {
                nsg_key: key.clone(),
                done_at: now + self.faults.lro_delay,
                before: current.clone(),
                failure: fail_with,
                status: "InProgress",
            },
        );
        *self.writes.entry(key.clone()).or_default() += 1;
        self.nsgs.insert(key, nsg.clone());
        Ok((nsg, op_id, current.is_none()))
    }

    /// Adds or replaces an NSG outside the API, effective at once (seeding, or a test playing
    /// an administrator who edits it in the portal: its ETag changes).
    pub fn upsert_nsg(&mut self, mut nsg: NetworkSecurityGroup) {
        nsg.etag = Some(format!("W/\"{}\"", uuid::Uuid::new_v4()));
        if nsg.properties.default_security_rules.is_empty() {
            nsg.properties.default_security_rules = crate::arm::model::default_inbound_rules();
        }
        nsg.properties.provisioning_state = Some("Succeeded".into());
        let key = nsg.id.to_ascii_lowercase();
        self.effective_nsgs.insert(key.clone(), nsg.clone());
        self.nsgs.insert(key, nsg);
    }
}

/// ARM's validation of a rule set: priorities in range and unique per direction, names unique.
fn check_rules(rules: &[SecurityRule]) -> Result<(), SimError> {
    if rules.len() > 1000 {
        return Err(SimError::new(
            400,
            "SecurityRulesLimitReached",
            "A network security group can hold at most 1000 rules.",
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut slots = HashMap::new();
    for rule in rules {
        let p = &rule.properties;
        if !names.insert(rule.name.to_ascii_lowercase()) {
            return Err(SimError::new(
                400,
                "InvalidRequestFormat",
                format!("Security rule name {} is used more than once.", rule.name),
            ));
        }
        if !(100..=4096).contains(&p.priority) {
            return Err(SimError::new(
                400,
                "SecurityRuleInvalidPriority",
                format!("Security rule {} has invalid Priority {}. Value provided: {}. Allowed range 100-4096.", rule.name, p.priority, p.priority),
            ));
        }
        if let Some(other) = slots.insert((p.priority, p.direction), rule.name.clone()) {
            return Err(SimError::new(
                400,
                "SecurityRuleConflict",
                format!("Security rule {} conflicts with rule {other}. Rules cannot have the same Priority and Direction.", rule.name),
            ));
        }
        if p.destination_port_range.is_some() && !p.destination_port_ranges.is_empty() {
            return Err(SimError::new(
                400,
                "SecurityRuleParameterContainsUnsupportedValue",
                format!(
                    "Security rule {} has both destinationPortRange and destinationPortRanges.",
                    rule.name
                ),
            ));
        }
    }
    Ok(())
}

/// The last segment of an id, and the id without it.
fn split_id(id: &str) -> Result<(String, String), SimError> {
    id.rsplit_once('/')
        .filter(|(parent, name)| !parent.is_empty() && !name.is_empty())
        .map(|(parent, name)| (name.to_string(), parent.to_string()))
        .ok_or_else(|| {
            SimError::new(
                400,
                "InvalidResourceId",
                format!("'{id}' is not a valid resource id."),
            )
        })
}
