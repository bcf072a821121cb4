//! Walking the stored chain: a batch of events at a time (constant memory), from genesis or
//! from the latest retention checkpoint, then comparing the end with the head the database
//! recorded, so that deleting the newest events is caught as surely as editing old ones.

use super::checkpoint::AuditVerifier;
use super::{ChainReport, ChainVerifier};
use crate::store::DynStore;

const BATCH: u32 = 1000;

/// Verifies the chain (up to `upto`, or all of it). With events pruned, the checkpoint's
/// signature must hold under `key`.
pub async fn verify_chain(
    store: &DynStore,
    key: Option<&AuditVerifier>,
    upto: Option<i64>,
) -> anyhow::Result<ChainReport> {
    let mut verifier = match store.latest_checkpoint().await? {
        None => ChainVerifier::default(),
        Some(checkpoint) => {
            let mut verifier = ChainVerifier::after(checkpoint.seq, &checkpoint.hash);
            let checked = match key {
                Some(key) => key.check(&checkpoint),
                None => Err(format!(
                    "events up to seq {} were pruned, and without the audit signing key their checkpoint cannot be checked",
                    checkpoint.seq
                )),
            };
            if let Err(why) = checked {
                verifier.break_at(checkpoint.seq, why);
                return Ok(verifier.report());
            }
            verifier
        }
    };
    let mut after = verifier.expected_seq() - 1;
    'walk: loop {
        let events = store.audit_events_after(after, BATCH).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        for event in &events {
            if upto.is_some_and(|u| event.seq > u) {
                break 'walk;
            }
            if !verifier.push(event) {
                break 'walk;
            }
        }
    }
    if upto.is_none() {
        let (head_seq, head_hash) = store.audit_head().await?;
        let last_seen = verifier.expected_seq() - 1;
        if head_seq > last_seen {
            verifier.break_at(
                last_seen + 1,
                format!(
                    "the chain's head is seq {head_seq}, but events after {last_seen} are missing"
                ),
            );
        } else if head_seq == last_seen && head_hash != verifier.head() {
            verifier.break_at(
                head_seq,
                format!("seq {head_seq} is not the head the database recorded"),
            );
        }
    }
    Ok(verifier.report())
}
