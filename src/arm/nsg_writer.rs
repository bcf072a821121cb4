//! The one way jitgate changes an NSG, for policies' deny rules now and grants' allow rules
//! next: read the NSG with its ETag, merge jitgate's rules (and only jitgate's, known by the
//! `jitgate-` name prefix) into what is there, PUT it back with `If-Match`, and follow the
//! long-running operation. A 412 means someone else changed the NSG meanwhile: read and merge
//! again. At most one write is in flight per NSG; changes that queue up behind it go out
//! together in the next write, so fifty policies on one subnet's NSG cost a handful of writes.

use super::client::{api_version, ArmClient, ArmError};
use super::evaluate::{self, NetworkContext};
use super::model::{Access, Direction, NetworkSecurityGroup, SecurityRule, SecurityRuleProperties};
use serde_json::Map;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Every rule jitgate writes is named with this prefix; rules without it are never touched.
pub const RULE_PREFIX: &str = "jitgate-";
/// The highest custom-rule priority ARM allows.
pub const LOWEST_PRIORITY: u32 = 4096;
/// Re-reads after a 412 before giving up on a batch.
const MAX_MERGES: u32 = 8;

/// A change jitgate wants in one NSG.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleChange {
    /// Deny inbound traffic to `destinations` on `ports`, from anywhere, above every allow rule
    /// that admits one of those ports from the Internet.
    Deny {
        name: String,
        ports: Vec<u16>,
        destinations: Vec<IpAddr>,
        description: String,
    },
    /// Remove the rule of this name, if it is there.
    Remove { name: String },
}

impl RuleChange {
    pub fn name(&self) -> &str {
        match self {
            RuleChange::Deny { name, .. } | RuleChange::Remove { name } => name,
        }
    }
}

/// What a change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub name: String,
    /// The rule's priority, when it is in place.
    pub priority: Option<u32>,
    /// Pre-existing allow rules the deny rule had to go above ("allow-ssh (priority 300)").
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// The rule cannot be placed without leaving a gap; nothing was written for it.
    #[error("{0}")]
    NoPriority(String),
    #[error("the NSG kept changing under us: {0} conflicting writes in a row")]
    TooManyConflicts(u32),
}

type Reply = oneshot::Sender<Result<RuleOutcome, WriteError>>;

#[derive(Default)]
struct Queue {
    pending: Vec<(RuleChange, Reply)>,
    writing: bool,
}

/// Serialises and batches the changes to each NSG.
#[derive(Clone)]
pub struct NsgWriter {
    inner: Arc<Inner>,
}

struct Inner {
    client: ArmClient,
    priority_base: u32,
    queues: Mutex<HashMap<String, Queue>>,
    writes: AtomicU64,
    network: NetworkContext,
}

impl NsgWriter {
    pub fn new(client: ArmClient, priority_base: u16) -> NsgWriter {
        NsgWriter {
            inner: Arc::new(Inner {
                client,
                priority_base: u32::from(priority_base),
                queues: Mutex::new(HashMap::new()),
                writes: AtomicU64::new(0),
                network: NetworkContext::default(),
            }),
        }
    }

    /// NSG writes (PUTs) made so far.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Applies `change` to the NSG `nsg_id`, together with whatever else is queued for it.
    pub async fn apply(&self, nsg_id: &str, change: RuleChange) -> Result<RuleOutcome, WriteError> {
        let (tx, rx) = oneshot::channel();
        let key = nsg_id.to_ascii_lowercase();
        let start_writer = {
            let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            let queue = queues.entry(key.clone()).or_default();
            queue.pending.push((change, tx));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let inner = self.inner.clone();
            let id = nsg_id.to_string();
            tokio::spawn(async move { inner.drain(&key, &id).await });
        }
        rx.await.unwrap_or_else(|_| {
            Err(WriteError::Arm(ArmError {
                status: None,
                code: "WriterStopped".into(),
                message: "the NSG writer stopped".into(),
            }))
        })
    }
}

impl Inner {
    /// Writes batches for one NSG until its queue is empty.
    async fn drain(&self, key: &str, nsg_id: &str) {
        loop {
            let batch = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = queues.get_mut(key) else {
                    return;
                };
                if queue.pending.is_empty() {
                    queues.remove(key);
                    return;
                }
                std::mem::take(&mut queue.pending)
            };
            let changes: Vec<RuleChange> = batch.iter().map(|(c, _)| c.clone()).collect();
            match self.write_batch(nsg_id, &changes).await {
                Ok(outcomes) => {
                    for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(e) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Read, merge, PUT with If-Match, wait; again on 412. One outcome per change.
    async fn write_batch(
        &self,
        nsg_id: &str,
        changes: &[RuleChange],
    ) -> Result<Vec<Result<RuleOutcome, WriteError>>, WriteError> {
        for _ in 0..MAX_MERGES {
            let mut nsg: NetworkSecurityGroup =
                self.client.get(nsg_id, api_version::NETWORK).await?;
            let etag = nsg.etag.clone();
            let before = nsg.properties.security_rules.clone();
            let outcomes: Vec<_> = changes
                .iter()
                .map(|c| merge(&mut nsg, c, self.priority_base, &self.network))
                .collect();
            if nsg.properties.security_rules == before {
                return Ok(outcomes); // already as wanted: no write
            }
            // Read-only parts ARM fills in are not sent back.
            nsg.properties.default_security_rules.clear();
            nsg.properties.provisioning_state = None;
            self.writes.fetch_add(1, Ordering::Relaxed);
            let written: Result<NetworkSecurityGroup, ArmError> = self
                .client
                .put_and_wait(nsg_id, api_version::NETWORK, &nsg, etag.as_deref())
                .await;
            match written {
                Ok(_) => return Ok(outcomes),
                Err(e) if e.is_precondition_failed() => {
                    tracing::info!(nsg = nsg_id, "NSG changed since we read it; merging again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::TooManyConflicts(MAX_MERGES))
    }
}

/// Applies one change to the NSG in memory.
fn merge(
    nsg: &mut NetworkSecurityGroup,
    change: &RuleChange,
    base: u32,
    network: &NetworkContext,
) -> Result<RuleOutcome, WriteError> {
    let rules = &mut nsg.properties.security_rules;
    let position = rules
        .iter()
        .position(|r| r.name.eq_ignore_ascii_case(change.name()));
    match change {
        RuleChange::Remove { name } => {
            if let Some(i) = position {
                rules.remove(i);
            }
            Ok(RuleOutcome {
                name: name.clone(),
                priority: None,
                overrides: vec![],
            })
        }
        RuleChange::Deny {
            name,
            ports,
            destinations,
            description,
        } => {
            let (priority, overrides) =
                deny_priority(nsg, name, ports, destinations, base, network)?;
            let rule = deny_rule(name, ports, destinations, description, priority);
            let rules = &mut nsg.properties.security_rules;
            match position {
                // Unchanged when equal in what matters, so a repeated apply writes nothing.
                Some(i) if same_rule(&rules[i], &rule) => {}
                Some(i) => rules[i] = rule,
                None => rules.push(rule),
            }
            Ok(RuleOutcome {
                name: name.clone(),
                priority: Some(priority),
                overrides,
            })
        }
    }
}

/// Where a deny rule goes: above (a smaller number than) every allow rule that admits one of
/// its ports from the Internet to one of its destinations, as low as possible under that, so
/// that the numbers between the base and it stay free for the allow rules of grants. A rule
/// already in a valid place keeps it.
fn deny_priority(
    nsg: &NetworkSecurityGroup,
    name: &str,
    ports: &[u16],
    destinations: &[IpAddr],
    base: u32,
    network: &NetworkContext,
) -> Result<(u32, Vec<String>), WriteError> {
    let mut conflicting: Vec<&SecurityRule> = Vec::new();
    for &port in ports {
        for &destination in destinations {
            for rule in evaluate::allows_from_internet(nsg, port, Some(destination), network) {
                if !rule.name.starts_with(RULE_PREFIX)
                    && !conflicting.iter().any(|r| r.name == rule.name)
                {
                    conflicting.push(rule);
                }
            }
        }
    }
    conflicting.sort_by_key(|r| r.properties.priority);
    let ceiling = conflicting
        .first()
        .map(|r| r.properties.priority - 1)
        .unwrap_or(LOWEST_PRIORITY);
    let overrides = conflicting
        .iter()
        .map(|r| format!("{} (priority {})", r.name, r.properties.priority))
        .collect();
    let taken: BTreeSet<u32> = nsg
        .properties
        .security_rules
        .iter()
        .filter(|r| {
            r.properties.direction == Direction::Inbound && !r.name.eq_ignore_ascii_case(name)
        })
        .map(|r| r.properties.priority)
        .collect();
    let current = nsg
        .properties
        .security_rules
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .map(|r| r.properties.priority);
    // At least one number above the deny rule must stay free for a grant's allow rule.
    let lowest_allowed = base + 1;
    if let Some(p) = current.filter(|p| (lowest_allowed..=ceiling).contains(p)) {
        return Ok((p, overrides));
    }
    (lowest_allowed..=ceiling)
        .rev()
        .find(|p| !taken.contains(p))
        .map(|p| (p, overrides))
        .ok_or_else(|| {
            WriteError::NoPriority(format!(
                "no free priority between {lowest_allowed} and {ceiling} in {} for the deny rule {name}: it must go above {}, and keep room above it for access grants (JITGATE_RULE_PRIORITY_BASE is {base})",
                nsg.name,
                if overrides_text(&conflicting).is_empty() { "nothing".to_string() } else { overrides_text(&conflicting) },
            ))
        })
}

fn overrides_text(rules: &[&SecurityRule]) -> String {
    rules
        .iter()
        .map(|r| format!("{} (priority {})", r.name, r.properties.priority))
        .collect::<Vec<_>>()
        .join(", ")
}

fn deny_rule(
    name: &str,
    ports: &[u16],
    destinations: &[IpAddr],
    description: &str,
    priority: u32,
) -> SecurityRule {
    let mut ports: Vec<u16> = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    let mut destinations: Vec<String> = destinations.iter().map(ToString::to_string).collect();
    destinations.sort();
    SecurityRule {
        name: name.to_string(),
        id: None,
        etag: None,
        properties: SecurityRuleProperties {
            description: Some(description.chars().take(140).collect()),
            protocol: "*".into(),
            source_port_range: Some("*".into()),
            source_port_ranges: vec![],
            destination_port_range: None,
            destination_port_ranges: ports.iter().map(ToString::to_string).collect(),
            source_address_prefix: Some("*".into()),
            source_address_prefixes: vec![],
            destination_address_prefix: None,
            destination_address_prefixes: destinations,
            access: Access::Deny,
            priority,
            direction: Direction::Inbound,
            provisioning_state: None,
            extra: Map::new(),
        },
        extra: Map::new(),
    }
}

/// Equal in every field that ARM enforces (not ids, ETags or provisioning states).
fn same_rule(a: &SecurityRule, b: &SecurityRule) -> bool {
    let strip = |r: &SecurityRule| {
        let mut p = r.properties.clone();
        p.provisioning_state = None;
        p.extra.clear();
        p
    };
    strip(a) == strip(b)
}
