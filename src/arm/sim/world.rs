//! The simulator's state and ARM's rules for it, with no HTTP: resources by id, NSGs with
//! ETags and one long-running operation at a time, and the faults a test asks for.

use crate::arm::model::{
    AsyncOperation, ErrorDetail, NetworkSecurityGroup, RuleCollectionGroup, SecurityRule,
};
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
    /// A 412 on writes, as when someone else changed the resource since it was read.
    pub stale_etag_rate: f64,
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
            stale_etag_rate: 0.0,
            script: VecDeque::new(),
            seed: 7,
        }
    }
}

/// A written resource as it stood before the write, restored if the operation fails.
#[derive(Debug, Clone)]
enum Before {
    Nsg(Option<NetworkSecurityGroup>),
    RuleCollectionGroup(Option<RuleCollectionGroup>),
}

#[derive(Debug, Clone)]
struct Operation {
    /// The written resource's key.
    key: String,
    /// What one operation at a time is counted on: the NSG, or the firewall policy.
    lock: String,
    done_at: Instant,
    before: Before,
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
    /// Firewall policies' rule collection groups by lower-cased id, as ARM returns them.
    pub rule_collection_groups: BTreeMap<String, RuleCollectionGroup>,
    /// The groups as they last stood after a successful write: what the firewalls enforce.
    pub effective_rule_collection_groups: BTreeMap<String, RuleCollectionGroup>,
    operations: HashMap<String, Operation>,
    /// Accepted writes per resource key (NSG or rule collection group).
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
            rule_collection_groups: BTreeMap::new(),
            effective_rule_collection_groups: BTreeMap::new(),
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
            edge += self.faults.stale_etag_rate;
            if roll < edge {
                return Some(Fault::Error(SimError::new(
                    412,
                    "PreconditionFailed",
                    "The condition specified using HTTP conditional header(s) is not met (injected).",
                )));
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

    /// Completes the operations whose time has come: a failed one puts the resource back as
    /// it was; a successful one makes the new state the one the network enforces.
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
            let failed = op.failure.is_some();
            op.status = if failed { "Failed" } else { "Succeeded" };
            let key = op.key.clone();
            match (&mut op.before, failed) {
                (Before::Nsg(before), true) => match before.take() {
                    Some(b) => {
                        self.nsgs.insert(key, b);
                    }
                    None => {
                        self.nsgs.remove(&key);
                    }
                },
                (Before::RuleCollectionGroup(before), true) => match before.take() {
                    Some(b) => {
                        self.rule_collection_groups.insert(key, b);
                    }
                    None => {
                        self.rule_collection_groups.remove(&key);
                    }
                },
                (Before::Nsg(_), false) => {
                    if let Some(nsg) = self.nsgs.get_mut(&key) {
                        nsg.properties.provisioning_state = Some("Succeeded".into());
                        for rule in &mut nsg.properties.security_rules {
                            rule.properties.provisioning_state = Some("Succeeded".into());
                        }
                        self.effective_nsgs.insert(key, nsg.clone());
                    }
                }
                (Before::RuleCollectionGroup(_), false) => {
                    if let Some(group) = self.rule_collection_groups.get_mut(&key) {
                        group.properties.provisioning_state = Some("Succeeded".into());
                        self.effective_rule_collection_groups
                            .insert(key, group.clone());
                    }
                }
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

    fn busy(&self, lock: &str) -> bool {
        self.operations
            .values()
            .any(|op| op.lock == lock && op.status == "InProgress")
    }

    /// ARM's checks before a write: one operation at a time (409), `If-Match` and
    /// `If-None-Match` against the current ETag (412).
    fn check_write(
        &self,
        id: &str,
        lock: &str,
        current_etag: Option<Option<&str>>,
        if_match: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<(), SimError> {
        if self.busy(lock) {
            return Err(SimError::another_operation(id));
        }
        let stale = || {
            SimError::new(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
            )
        };
        match (if_match, current_etag) {
            (None, _) | (Some("*"), Some(_)) => {}
            (Some(tag), Some(Some(current))) if current == tag => {}
            (Some(_), _) => return Err(stale()),
        }
        if if_none_match == Some("*") && current_etag.is_some() {
            return Err(stale());
        }
        Ok(())
    }

    /// Starts the long-running operation of an accepted write; returns its id.
    fn start_operation(
        &mut self,
        key: &str,
        lock: &str,
        before: Before,
        failure: Option<ErrorDetail>,
        now: Instant,
    ) -> String {
        let op_id = uuid::Uuid::new_v4().to_string();
        self.operations.insert(
            op_id.clone(),
            Operation {
                key: key.to_string(),
                lock: lock.to_string(),
                done_at: now + self.faults.lro_delay,
                before,
                failure,
                status: "InProgress",
            },
        );
        *self.writes.entry(key.to_string()).or_default() += 1;
        op_id
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
        self.check_write(
            id,
            &key,
            current.as_ref().map(|c| c.etag.as_deref()),
            if_match,
            if_none_match,
        )?;
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
        let op_id = self.start_operation(&key, &key, Before::Nsg(current.clone()), fail_with, now);
        self.nsgs.insert(key, nsg.clone());
        Ok((nsg, op_id, current.is_none()))
    }

    /// A PUT of a firewall policy's rule collection group: as for NSGs, one operation at a
    /// time (per firewall policy), ETags, and a long-running operation.
    pub fn put_rule_collection_group(
        &mut self,
        id: &str,
        body: RuleCollectionGroup,
        if_match: Option<&str>,
        fail_with: Option<ErrorDetail>,
        now: Instant,
    ) -> Result<(RuleCollectionGroup, String, bool), SimError> {
        let key = id.to_ascii_lowercase();
        let (policy_id, name) = split_id(id)?;
        let policy_key = policy_id.to_ascii_lowercase();
        let current = self.rule_collection_groups.get(&key).cloned();
        self.check_write(
            id,
            &policy_key,
            current.as_ref().map(|c| c.etag.as_deref()),
            if_match,
            None,
        )?;
        check_rule_collections(&body)?;
        let mut group = body;
        group.id = id.to_string();
        group.name = name;
        let etag = format!("W/\"{}\"", uuid::Uuid::new_v4());
        group.etag = Some(etag);
        group.properties.provisioning_state = Some("Updating".into());
        let op_id = self.start_operation(
            &key,
            &policy_key,
            Before::RuleCollectionGroup(current.clone()),
            fail_with,
            now,
        );
        self.rule_collection_groups.insert(key, group.clone());
        Ok((group, op_id, current.is_none()))
    }

    /// Adds or replaces a rule collection group outside the API, effective at once.
    pub fn upsert_rule_collection_group(&mut self, mut group: RuleCollectionGroup) {
        group.etag = Some(format!("W/\"{}\"", uuid::Uuid::new_v4()));
        group.properties.provisioning_state = Some("Succeeded".into());
        let key = group.id.to_ascii_lowercase();
        self.effective_rule_collection_groups
            .insert(key.clone(), group.clone());
        self.rule_collection_groups.insert(key, group);
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

/// ARM's validation of a rule collection group: collection priorities 100..65000 and unique,
/// rule names unique within a collection, NAT rules translating somewhere.
fn check_rule_collections(group: &RuleCollectionGroup) -> Result<(), SimError> {
    let mut priorities = std::collections::HashSet::new();
    for collection in &group.properties.rule_collections {
        if !(100..=65000).contains(&collection.priority) || !priorities.insert(collection.priority)
        {
            return Err(SimError::new(
                400,
                "FirewallPolicyRuleCollectionGroupInvalidPriority",
                format!(
                    "Rule collection {} has an invalid or duplicate priority {}.",
                    collection.name, collection.priority
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for rule in &collection.rules {
            if !names.insert(rule.name.to_ascii_lowercase()) {
                return Err(SimError::new(
                    400,
                    "FirewallPolicyRuleNameNotUnique",
                    format!(
                        "Rule name {} is used more than once in {}.",
                        rule.name, collection.name
                    ),
                ));
            }
            if rule.rule_type == "NatRule"
                && (rule.translated_address.is_none() || rule.translated_port.is_none())
            {
                return Err(SimError::new(
                    400,
                    "FirewallPolicyNatRuleInvalid",
                    format!(
                        "NAT rule {} needs translatedAddress and translatedPort.",
                        rule.name
                    ),
                ));
            }
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
