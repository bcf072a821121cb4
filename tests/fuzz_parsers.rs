//! Property tests of the parsers that see untrusted text: whatever the input, they answer
//! `Ok` or `Err` and never panic, and what they accept prints back to something they read
//! the same way.

use chrono::Utc;
use jitgate::domain::policy::{ApprovalDraft, PortDraft};
use jitgate::domain::request::{PortRequestDraft, RequestContext, RequestDraft, VmDraft};
use jitgate::domain::{
    AccessDuration, DurationLimits, Policy, PolicyDraft, Principal, Protocol, Scope, SourcePrefix,
    VmId,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::str::FromStr;

const SUB: &str = "00000000-0000-0000-0000-0000000000a1";

/// Text that is mostly the right shape, with anything mixed in.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "P(T?[0-9]{0,22}[YMWDHS.,]){0,4}",
        "-?P[0-9]{0,3}D?T[0-9]{0,20}(\\.[0-9]{0,12})?[HMS]",
    ]
}

fn prefix_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{1,4}(\\.[0-9]{1,4}){0,4}(/[0-9]{1,4})?",
        "[0-9a-fA-F:]{0,40}(/[0-9]{1,4})?",
        Just("*".to_string()),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9._()\\-]{0,100}",
        "[A-Za-z0-9.\\-/ ]{0,10}"
    ]
}

fn limits() -> DurationLimits {
    DurationLimits::with_min(AccessDuration::from_secs(1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn durations_never_panic_and_round_trip(text in duration_text()) {
        if let Ok(d) = AccessDuration::from_str(&text) {
            let shown = d.to_string();
            let again = AccessDuration::from_str(&shown).expect("a printed duration parses");
            prop_assert_eq!(again, d, "{} -> {}", text, shown);
            let _ = limits().check(d);
        }
    }

    #[test]
    fn source_prefixes_never_panic_and_round_trip(text in prefix_text()) {
        if let Ok(p) = SourcePrefix::from_str(&text) {
            let shown = p.to_string();
            prop_assert_eq!(SourcePrefix::from_str(&shown).expect("a printed prefix parses"), p);
        }
    }

    #[test]
    fn protocols_never_panic_and_round_trip(text in any::<String>()) {
        if let Ok(p) = Protocol::from_str(&text) {
            prop_assert_eq!(Protocol::from_str(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn vm_ids_never_panic_and_round_trip(
        sub in prop_oneof![Just(SUB.to_string()), segment()],
        rg in segment(),
        name in segment(),
        raw in any::<String>(),
    ) {
        let _ = VmId::parse(&raw);
        let _ = Scope::parse(&raw);
        if let Ok(id) = VmId::from_parts(&sub, &rg, &name) {
            let parsed = VmId::parse(&id.to_string()).expect("a printed VM id parses");
            prop_assert_eq!(parsed.key(), id.key());
            let scope = Scope::parse(&id.to_string()).expect("a VM id is a scope");
            prop_assert_eq!(Scope::parse(&scope.to_string()).unwrap(), scope);
        }
        let joined = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
        if let Ok(id) = VmId::parse(&joined) {
            let again = VmId::parse(&id.to_string()).expect("a printed VM id parses");
            prop_assert_eq!(again.key(), id.key());
        }
    }

    #[test]
    fn policy_validation_never_panics(
        ports in proptest::option::of(proptest::collection::vec(
            (
                proptest::option::of(any::<i64>()),
                proptest::option::of(prop_oneof![any::<String>(), Just("TCP".to_string()), Just("*".to_string())]),
                proptest::option::of(prefix_text()),
                proptest::option::of(proptest::collection::vec(prefix_text(), 0..4)),
                proptest::option::of(duration_text()),
            ),
            0..6,
        )),
        mode in proptest::option::of(prop_oneof![any::<String>(), Just("manual".to_string())]),
        required in proptest::option::of(any::<i64>()),
        justification in proptest::option::of(any::<bool>()),
    ) {
        let draft = PolicyDraft {
            ports: ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|(number, protocol, prefix, prefixes, duration)| PortDraft {
                        number,
                        protocol,
                        allowed_source_address_prefix: prefix,
                        allowed_source_address_prefixes: prefixes,
                        max_request_access_duration: duration,
                    })
                    .collect()
            }),
            approval: Some(ApprovalDraft { mode, required_approvals: required }),
            justification_required: justification,
        };
        let _ = Policy::parse(draft, &limits());
    }

    #[test]
    fn request_validation_never_panics(
        vms in proptest::collection::vec(
            (
                prop_oneof![any::<String>(), Just(format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"))],
                proptest::collection::vec(
                    (
                        any::<i64>(),
                        proptest::option::of(duration_text()),
                        proptest::option::of(prefix_text()),
                    ),
                    0..4,
                ),
            ),
            0..4,
        ),
        justification in proptest::option::of(any::<String>()),
        body in any::<String>(),
    ) {
        // Whatever arrives as a body is read, or refused, without a panic.
        let _ = serde_json::from_str::<RequestDraft>(&body);
        let vm = VmId::from_parts(SUB, "rg", "vm1").unwrap();
        let policy = Policy::parse(PolicyDraft::default(), &limits()).unwrap();
        let policies = HashMap::from([(vm.key().to_string(), policy)]);
        let mut draft_json = serde_json::json!({
            "virtualMachines": vms.iter().map(|(id, ports)| serde_json::json!({
                "id": id,
                "ports": ports.iter().map(|(number, duration, prefix)| serde_json::json!({
                    "number": number,
                    "duration": duration,
                    "allowedSourceAddressPrefix": prefix,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        if let Some(j) = &justification {
            draft_json["justification"] = j.clone().into();
        }
        let draft: RequestDraft = match serde_json::from_value(draft_json) {
            Ok(d) => d,
            Err(_) => RequestDraft {
                virtual_machines: vms
                    .into_iter()
                    .map(|(id, ports)| VmDraft {
                        id,
                        ports: ports
                            .into_iter()
                            .map(|(number, duration, _)| PortRequestDraft {
                                number,
                                duration,
                                ..Default::default()
                            })
                            .collect(),
                    })
                    .collect(),
                justification,
                on_behalf_of: None,
            },
        };
        let who = Principal { id: "u1".into(), name: "u1".into() };
        let ctx = RequestContext {
            policies: &policies,
            caller_address: Some("203.0.113.7".parse().unwrap()),
            limits: &limits(),
            now: Utc::now(),
        };
        let _ = jitgate::domain::request::AccessRequest::new("r1".into(), draft, who.clone(), who, &ctx);
    }
}
