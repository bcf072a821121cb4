//! Outbound webhooks: what a subscription is, which audit events become which CloudEvents,
//! and how a delivery is signed. Pure; delivering is [`deliver`]'s.
//!
//! Every audit event that a subscription's types match is delivered to it, at least once,
//! through the outbox: the delivery row and its job are written in the transaction that
//! appends the event, so a change and its notifications commit (or vanish) together, and a
//! restart loses nothing.

pub mod deliver;

use crate::audit::AuditEvent;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use utoipa::ToSchema;

/// The CloudEvents `source` of every event jitgate sends.
pub const SOURCE: &str = "/jitgate";

/// The header that carries the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "jitgate-signature";

/// Every CloudEvents type jitgate sends; subscriptions name these, or a prefix and `*`.
pub const EVENT_TYPES: &[&str] = &[
    "jitgate.request.pending",
    "jitgate.request.approved",
    "jitgate.request.active",
    "jitgate.request.expired",
    "jitgate.request.revoked",
    "jitgate.request.denied",
    "jitgate.request.cancelled",
    "jitgate.request.failed",
    "jitgate.grant.opened",
    "jitgate.grant.closed",
    "jitgate.grant.failed",
    "jitgate.policy.created",
    "jitgate.policy.updated",
    "jitgate.policy.deleted",
    "jitgate.policy.enforcementApplied",
    "jitgate.policy.enforcementFailed",
    "jitgate.policy.enforcementRemoved",
    "jitgate.roleAssignment.created",
    "jitgate.roleAssignment.updated",
    "jitgate.roleAssignment.deleted",
    "jitgate.webhook.created",
    "jitgate.webhook.updated",
    "jitgate.webhook.deleted",
    "jitgate.chatopsIdentity.created",
    "jitgate.chatopsIdentity.updated",
    "jitgate.chatopsIdentity.deleted",
];

/// A subscription, as stored (its secret is kept apart: it is never read back out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// CloudEvents types (`jitgate.request.pending`) or prefixes (`jitgate.request.*`);
    /// empty: every type.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    /// Whether this subscription wants events of CloudEvents type `ce_type`.
    pub fn wants(&self, ce_type: &str) -> bool {
        self.enabled && matches(&self.event_types, ce_type)
    }
}

/// Whether `patterns` (types, or prefixes ending in `*`; none means all) match `ce_type`.
pub fn matches(patterns: &[String], ce_type: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => ce_type.starts_with(prefix),
            None => p == ce_type,
        })
}

/// Checks a subscription's event types: each a known type or a prefix of some.
pub fn check_event_types(patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        let known = match p.strip_suffix('*') {
            Some(prefix) => EVENT_TYPES.iter().any(|t| t.starts_with(prefix)),
            None => EVENT_TYPES.contains(&p.as_str()),
        };
        if !known {
            return Err(format!(
                "{p:?} is not an event type jitgate sends (such as jitgate.request.pending, or jitgate.request.*)"
            ));
        }
    }
    Ok(())
}

/// Checks a receiver URL: absolute http(s), and never the cloud metadata service (a
/// subscription must not turn jitgate into a way to read its own managed identity's tokens).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("expected an http:// or https:// URL".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials in the URL would be stored and shown: put them in the receiver's own check of the signature".into());
    }
    match parsed.host() {
        None => return Err("the URL has no host".into()),
        Some(url::Host::Ipv4(ip)) if ip.is_link_local() || ip.is_unspecified() => {
            return Err(format!(
                "{ip} is a link-local or unspecified address (such as the metadata service)"
            ));
        }
        Some(url::Host::Ipv6(ip))
            if ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80 =>
        {
            return Err(format!("{ip} is a link-local or unspecified address"));
        }
        _ => {}
    }
    Ok(parsed)
}

/// The CloudEvents type of an audit event, or `None` when it is not sent (dispatch attempts,
/// and the expiry of some ports of a request that stays active). Request events are named
/// for the status the request is left in, which is what a receiver routes on: approvers
/// watch `pending`, requestors `active`, `expired`, `denied`.
pub fn cloud_event_type(event: &AuditEvent) -> Option<String> {
    let (family, change) = event.event_type.split_once('.')?;
    match family {
        "request" if change == "portsExpired" => None,
        "request" => event.data["status"]
            .as_str()
            .map(|status| format!("jitgate.request.{status}")),
        "grant" | "policy" | "roleAssignment" | "webhook" | "chatopsIdentity" => {
            Some(format!("jitgate.{}", event.event_type))
        }
        _ => None,
    }
}

/// The CloudEvents 1.0 structured-mode document of an audit event. Its `id` is the event's
/// hash: the same event delivered again (at least once means sometimes twice) has the same
/// id, for receivers to deduplicate.
pub fn cloud_event(event: &AuditEvent, ce_type: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": event.hash,
        "source": SOURCE,
        "type": ce_type,
        "subject": event.resource_id,
        "time": event.at,
        "datacontenttype": "application/json",
        "data": {
            "auditSeq": event.seq,
            "auditType": event.event_type,
            "actor": event.actor,
            "resourceId": event.resource_id,
            "requestId": event.request_id,
            "resource": event.data,
        },
    })
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// What a receiver does: checks the header against the body in constant time, and that the
/// timestamp is within `tolerance` seconds of `now` (so a captured delivery cannot be
/// replayed later).
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = vec![];
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.extend(hex::decode(s).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("no timestamp")?;
    if (now - timestamp).abs() > tolerance {
        return Err("timestamp outside the tolerance");
    }
    let expected = mac(secret, timestamp, body);
    let ok = signatures
        .iter()
        .any(|s| subtle::ConstantTimeEq::ct_eq(s.as_slice(), expected.as_slice()).into());
    ok.then_some(()).ok_or("signature mismatch")
}

/// A new random secret: 32 bytes, base64url.
pub fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// One delivery of one event to one subscription, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    /// The audit event's seq.
    pub event_seq: i64,
    /// The CloudEvents type sent.
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The receiver's last HTTP status, if it answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Given up after the last retry, or its subscription was deleted.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Principal;

    fn event(event_type: &str, data: Value) -> AuditEvent {
        AuditEvent {
            seq: 7,
            at: Utc::now(),
            event_type: event_type.into(),
            actor: Principal {
                id: "oid".into(),
                name: "alice".into(),
            },
            resource_id:
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
                    .into(),
            request_id: Some("r1".into()),
            data,
            prev_hash: "p".into(),
            hash: "h".into(),
        }
    }

    #[test]
    fn request_events_are_named_for_the_status_they_leave() {
        let typed =
            |t: &str, status: &str| cloud_event_type(&event(t, json!({ "status": status })));
        assert_eq!(
            typed("request.created", "pending").as_deref(),
            Some("jitgate.request.pending")
        );
        assert_eq!(
            typed("request.created", "approved").as_deref(),
            Some("jitgate.request.approved")
        );
        assert_eq!(
            typed("request.activated", "active").as_deref(),
            Some("jitgate.request.active")
        );
        assert_eq!(
            typed("request.denied", "denied").as_deref(),
            Some("jitgate.request.denied")
        );
        assert_eq!(typed("request.portsExpired", "active"), None);
        assert_eq!(
            cloud_event_type(&event("dispatch.attempted", json!({}))),
            None
        );
        assert_eq!(
            cloud_event_type(&event("grant.opened", json!({}))).as_deref(),
            Some("jitgate.grant.opened")
        );
        for t in EVENT_TYPES {
            assert!(check_event_types(&[t.to_string()]).is_ok());
        }
    }

    #[test]
    fn patterns_match_types_and_prefixes() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches(&[], "jitgate.request.pending"));
        assert!(matches(
            &p(&["jitgate.request.*"]),
            "jitgate.request.pending"
        ));
        assert!(!matches(
            &p(&["jitgate.request.active"]),
            "jitgate.request.pending"
        ));
        assert!(check_event_types(&p(&["jitgate.request.*", "jitgate.*"])).is_ok());
        assert!(check_event_types(&p(&["jitgate.requests.*"])).is_err());
        assert!(check_event_types(&p(&["request.created"])).is_err());
    }

    #[test]
    fn signatures_verify_and_refuse_tampering_and_replay() {
        let body = br#"{"hello":"world"}"#;
        let header = signature("s3cret", 1_700_000_000, body);
        // As README's Python receiver computes it (hmac.new(secret, b"<t>." + body, sha256)).
        assert_eq!(
            header,
            "t=1700000000,v1=6f4351a15224248663bdabf854a428c6942e6be080ed368c1833e5d8a1d5e9a8"
        );
        assert_eq!(
            verify_signature("s3cret", &header, body, 1_700_000_100, 300),
            Ok(())
        );
        assert!(verify_signature(
            "s3cret",
            &header,
            b"{\"hello\":\"there\"}",
            1_700_000_100,
            300
        )
        .is_err());
        assert!(verify_signature("other", &header, body, 1_700_000_100, 300).is_err());
        assert!(verify_signature("s3cret", &header, body, 1_700_000_400, 300).is_err());
    }

    #[test]
    fn receiver_urls_are_http_and_never_the_metadata_service() {
        assert!(check_url("https://hooks.example.com/jit").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        for bad in [
            "ftp://example.com/x",
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://user:pw@example.com/",
            "http://[fe80::1]/",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
