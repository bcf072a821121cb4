//! The audit trail: an append-only, hash-chained log of every state change.
//!
//! Each event's `hash` is SHA-256 over the previous event's hash and a canonical encoding of
//! the event (JSON with object keys sorted at every depth, timestamps at microsecond
//! precision), so changing, removing or reordering any stored event breaks every hash after
//! it. The store appends events in the same transaction as the change they describe; this
//! module is the pure part: what an event is, how it is hashed and how a chain is verified.

pub mod checkpoint;
pub mod verify;

use crate::domain::Principal;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The `prevHash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before the store gives it a place in the chain.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub event_type: &'static str,
    pub actor: Principal,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub data: Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub actor: Principal,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl NewAuditEvent {
    /// Places the event after `(prev_seq, prev_hash)`, stamping it with `at` truncated to
    /// microseconds (what both databases store exactly, so the hash survives a round trip).
    pub fn chain(self, prev_seq: i64, prev_hash: &str, at: DateTime<Utc>) -> AuditEvent {
        let mut event = AuditEvent {
            seq: prev_seq + 1,
            at: at.trunc_subsecs(6),
            event_type: self.event_type.to_string(),
            actor: self.actor,
            resource_id: self.resource_id,
            request_id: self.request_id,
            data: self.data,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event
    }
}

impl AuditEvent {
    /// The hash this event should carry, from its content and `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let content = json!({
            "seq": self.seq,
            "at": self.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "type": self.event_type,
            "actor": { "id": self.actor.id, "name": self.actor.name },
            "resourceId": self.resource_id,
            "requestId": self.request_id,
            "data": self.data,
        });
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b"\n");
        write_canonical(&content, &mut hasher);
        hex::encode(hasher.finalize())
    }
}

/// Feeds `value` as JSON with object keys sorted, independent of serde_json's map ordering.
fn write_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(Value::String(key.clone()).to_string().as_bytes());
                hasher.update(b":");
                write_canonical(&map[key], hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                write_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// The outcome of walking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    pub ok: bool,
    pub events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<i64>,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The audit event of one attempt of an outbox job, with its outcome: completed, or failed
/// with `retry` (the error and when it runs again). Webhook deliveries are not audited: they
/// announce audit events, and auditing them would announce themselves without end.
pub fn dispatch_event(
    job: i64,
    kind: &str,
    subject: &str,
    attempt: i32,
    retry: Option<(&str, DateTime<Utc>)>,
) -> Option<NewAuditEvent> {
    if kind.starts_with("webhook.") {
        return None;
    }
    let mut data = json!({ "job": job, "kind": kind, "attempt": attempt });
    match retry {
        None => data["outcome"] = json!("completed"),
        Some((error, at)) => {
            data["outcome"] = json!("retrying");
            data["error"] = json!(error);
            data["retryAt"] = json!(at.trunc_subsecs(6));
        }
    }
    Some(NewAuditEvent {
        event_type: "dispatch.attempted",
        actor: Principal {
            id: "jitgate".into(),
            name: "jitgate".into(),
        },
        resource_id: subject.to_string(),
        // Request jobs are about one request: its id lets `?requestId=` find every attempt.
        request_id: kind.starts_with("request.").then(|| subject.to_string()),
        data,
    })
}

/// Walks events in `seq` order, one at a time (constant memory), and reports the first
/// event whose sequence, link or hash does not hold.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    head: String,
    events: u64,
    broken_at: Option<i64>,
    reason: Option<String>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_seq: 1,
            head: GENESIS_HASH.to_string(),
            events: 0,
            broken_at: None,
            reason: None,
        }
    }
}

impl ChainVerifier {
    /// A verifier for a chain whose events up to `seq` (with hash `hash`) were pruned.
    pub fn after(seq: i64, hash: &str) -> Self {
        ChainVerifier {
            expected_seq: seq + 1,
            head: hash.to_string(),
            events: u64::try_from(seq).unwrap_or(0),
            broken_at: None,
            reason: None,
        }
    }

    /// The seq the next event must carry.
    pub fn expected_seq(&self) -> i64 {
        self.expected_seq
    }

    /// Marks the chain broken at `seq` (events the database says exist are missing).
    pub fn break_at(&mut self, seq: i64, reason: String) {
        if self.broken_at.is_none() {
            self.broken_at = Some(seq);
            self.reason = Some(reason);
        }
    }

    /// The hash of the last good event.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Checks the next event; returns false once the chain is broken.
    pub fn push(&mut self, event: &AuditEvent) -> bool {
        if self.broken_at.is_some() {
            return false;
        }
        let why = if event.seq != self.expected_seq {
            Some(format!(
                "expected seq {} but found {}: events are missing or out of order",
                self.expected_seq, event.seq
            ))
        } else if event.prev_hash != self.head {
            Some(format!(
                "seq {} does not link to the event before it",
                event.seq
            ))
        } else if event.compute_hash() != event.hash {
            Some(format!(
                "seq {} does not match its hash: it was changed",
                event.seq
            ))
        } else {
            None
        };
        if let Some(why) = why {
            // A missing row shows up at the first seq after the gap: report the seq we expected.
            self.broken_at = Some(self.expected_seq.min(event.seq));
            self.reason = Some(why);
            return false;
        }
        self.expected_seq += 1;
        self.head = event.hash.clone();
        self.events += 1;
        true
    }

    pub fn report(self) -> ChainReport {
        match self.broken_at {
            Some(seq) => ChainReport {
                ok: false,
                events: self.events,
                head: None,
                broken_at: Some(seq),
                reason: self.reason,
            },
            None => ChainReport {
                ok: true,
                events: self.events,
                head: Some(self.head),
                broken_at: None,
                reason: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> NewAuditEvent {
        NewAuditEvent {
            event_type: "policy.created",
            actor: Principal {
                id: "oid-1".into(),
                name: "alice@example.com".into(),
            },
            resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{n}"),
            request_id: None,
            data: json!({ "b": n, "a": [1, { "z": true, "y": null }] }),
        }
    }

    fn chain(n: u32) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = Vec::new();
        for i in 0..n {
            let (seq, head) = out
                .last()
                .map(|e| (e.seq, e.hash.clone()))
                .unwrap_or((0, GENESIS_HASH.into()));
            out.push(event(i).chain(seq, &head, Utc::now()));
        }
        out
    }

    fn verify(events: &[AuditEvent]) -> ChainReport {
        let mut v = ChainVerifier::default();
        events.iter().for_each(|e| {
            v.push(e);
        });
        v.report()
    }

    #[test]
    fn an_untouched_chain_verifies_and_reports_its_head() {
        let events = chain(5);
        let report = verify(&events);
        assert!(report.ok);
        assert_eq!(report.events, 5);
        assert_eq!(report.head.as_deref(), Some(events[4].hash.as_str()));
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let e = event(1).chain(0, GENESIS_HASH, Utc::now());
        let mut reordered = e.clone();
        reordered.data = serde_json::from_str(r#"{"a":[1,{"y":null,"z":true}],"b":1}"#).unwrap();
        assert_eq!(e.compute_hash(), reordered.compute_hash());
    }

    #[test]
    fn an_edit_a_deletion_or_a_swap_names_the_first_bad_seq() {
        let mut edited = chain(5);
        edited[2].data = json!({ "b": 99 });
        assert_eq!(verify(&edited).broken_at, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).broken_at, Some(2));

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert_eq!(verify(&swapped).broken_at, Some(4));

        let mut rehashed = chain(5);
        rehashed[1].actor.name = "mallory".into();
        rehashed[1].hash = rehashed[1].compute_hash();
        assert_eq!(
            verify(&rehashed).broken_at,
            Some(3),
            "a recomputed hash still breaks the next link"
        );
    }
}
