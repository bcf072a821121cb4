//! Chatops, the pure part: checking Slack's and Teams' signatures, parsing `/jit` commands,
//! and building the messages sent back. No I/O lives here; the endpoints are in
//! `api::chatops`.

pub mod command;
pub mod identity;
pub mod signature;
pub mod slack;
pub mod teams;

pub use command::Command;
pub use identity::{ChatIdentity, ChatIdentityDraft, Platform};

use crate::domain::request::{AccessRequest, Verdict};

/// The lines that describe a request in chat, with user-given text passed through `escape`
/// (each platform's markup differs). Code spans are marked with backticks.
pub fn summary_lines(r: &AccessRequest, escape: impl Fn(&str) -> String) -> Vec<String> {
    let mut lines = vec![format!(
        "Request `{}`: *{}*, for {}",
        r.id,
        r.status.as_str(),
        escape(&r.requestor.name)
    )];
    for vm in &r.virtual_machines {
        for p in &vm.ports {
            let until = p
                .end_time_utc
                .map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            lines.push(format!(
                "• {} port {} from {} for {}{until}",
                escape(vm.vm.name()),
                p.number,
                p.source,
                p.duration
            ));
        }
    }
    if let Some(j) = &r.justification {
        lines.push(format!("Justification: {}", escape(j)));
    }
    if r.required_approvals > 0 {
        let approvals = r
            .approvals
            .iter()
            .filter(|d| d.decision == Verdict::Approve)
            .count();
        lines.push(format!(
            "Approvals: {approvals} of {}",
            r.required_approvals
        ));
    }
    for d in &r.approvals {
        let verb = match d.decision {
            Verdict::Approve => "approved",
            Verdict::Deny => "denied",
        };
        let note = d
            .comment
            .as_deref()
            .map(|c| format!(": {}", escape(c)))
            .unwrap_or_default();
        lines.push(format!(
            "{} by {}{note}",
            capitalise(verb),
            escape(&d.approver.name)
        ));
    }
    lines
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
