//! `jitgate seed-history`: fills a database with years of realistic grant history, for the
//! history benchmarks and for trying the auditor's queries on something the size of a real
//! estate. Deterministic for a given seed, written in time order in large transactions.

use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::Principal;
use crate::store::DynStore;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct HistorySpec {
    pub grants: u64,
    pub vms: u32,
    pub users: u32,
    /// History spans this many days before `now`.
    pub days: u32,
    pub seed: u64,
    pub now: DateTime<Utc>,
}

impl HistorySpec {
    pub fn new(grants: u64, seed: u64, now: DateTime<Utc>) -> Self {
        HistorySpec {
            grants,
            vms: 2_000,
            users: 1_000,
            days: 730,
            seed,
            now,
        }
    }

    /// The VM id of VM number `n` (how benchmarks pick one that has history).
    pub fn vm_id(n: u32) -> String {
        format!(
            "/subscriptions/{:08x}-0000-4000-8000-000000000000/resourceGroups/rg-{:02}/providers/Microsoft.Compute/virtualMachines/vm-{n:05}",
            n % 5,
            n % 10
        )
    }

    /// The object id of user number `n`.
    pub fn user_id(n: u32) -> String {
        format!("00000000-0000-4000-9000-{n:012}")
    }
}

const JUSTIFICATIONS: &[&str] = &[
    "Patching per change CHG{n}",
    "Incident INC{n}: investigating high CPU",
    "Deploying release {n}, see runbook",
    "Break-glass: \"prod is down\", pager {n}",
    "Rotate certs, ticket {n}; then verify, restart",
    "Log collection for support case {n}\nwith vendor",
];

const PORTS: &[(u16, u32)] = &[(22, 50), (3389, 35), (5985, 8), (5986, 7)];

fn pick_port(rng: &mut StdRng) -> u16 {
    let mut roll = rng.gen_range(0..100);
    for (port, weight) in PORTS {
        if roll < *weight {
            return *port;
        }
        roll -= weight;
    }
    22
}

fn person(kind: &str, n: u32) -> Principal {
    Principal {
        id: HistorySpec::user_id(n),
        name: format!("{kind}{n}@contoso.example"),
    }
}

/// The `i`-th grant of the history (of `spec.grants`, spread evenly over `spec.days`).
fn grant(spec: &HistorySpec, rng: &mut StdRng, i: u64) -> Grant {
    let span = Duration::days(i64::from(spec.days));
    let start = spec.now - span;
    let offset_ms = span.num_milliseconds() as f64 * (i as f64 / spec.grants.max(1) as f64);
    let granted_at = (start + Duration::milliseconds(offset_ms as i64 + rng.gen_range(0..1000)))
        .trunc_subsecs(6);
    let duration = Duration::minutes(
        *[15, 30, 60, 60, 60, 120, 180]
            .get(rng.gen_range(0..7))
            .unwrap_or(&60),
    );
    let end = granted_at + duration;
    let requestor = rng.gen_range(0..spec.users);
    let roll = rng.gen_range(0..100);
    let (status, closed_at, reason) = if end > spec.now {
        (GrantStatus::Active, None, String::new())
    } else if roll < 3 {
        (
            GrantStatus::Failed,
            Some(granted_at),
            "NetworkSecurityGroupNotFound".to_string(),
        )
    } else if roll < 15 {
        let early = granted_at + duration / 2;
        (GrantStatus::Revoked, Some(early), "Revoked".to_string())
    } else {
        (GrantStatus::Expired, Some(end), "Expired".to_string())
    };
    let approvers = (0..rng.gen_range(0..3))
        .map(|k| person("approver", (requestor + 1 + k) % 50))
        .collect();
    let template = JUSTIFICATIONS[rng.gen_range(0..JUSTIFICATIONS.len())];
    let vm = rng.gen_range(0..spec.vms);
    Grant {
        id: uuid::Uuid::from_u64_pair(spec.seed, i).to_string(),
        request_id: uuid::Uuid::from_u64_pair(spec.seed ^ 0x5eed, i).to_string(),
        vm_id: HistorySpec::vm_id(vm),
        port: pick_port(rng),
        protocol: "TCP".into(),
        source_address_prefix: format!(
            "10.{}.{}.{}",
            rng.gen::<u8>(),
            rng.gen::<u8>(),
            rng.gen_range(1..255u8)
        ),
        requestor: person("user", requestor),
        submitted_by: person("user", requestor),
        approvers,
        justification: Some(template.replace("{n}", &rng.gen_range(1000..99999).to_string())),
        granted_at,
        end_time_utc: Some(end),
        closed_at,
        status,
        status_reason: reason,
    }
}

/// Writes the history in batches, calling `progress(done)` after each.
pub async fn seed(
    store: &DynStore,
    spec: &HistorySpec,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<()> {
    const BATCH: u64 = 10_000;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut done = 0;
    // Rows go in without the secondary indexes, which are built once at the end (a sort
    // instead of millions of random B-tree inserts).
    store.begin_grant_bulk_load().await?;
    while done < spec.grants {
        let n = BATCH.min(spec.grants - done);
        let batch: Vec<Grant> = (done..done + n).map(|i| grant(spec, &mut rng, i)).collect();
        store.import_grants(&batch).await?;
        done += n;
        progress(done);
    }
    store.end_grant_bulk_load().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_deterministic_ordered_and_plausible() {
        let now = Utc::now();
        let spec = HistorySpec::new(1_000, 7, now);
        let make = || {
            let mut rng = StdRng::seed_from_u64(spec.seed);
            (0..1_000)
                .map(|i| grant(&spec, &mut rng, i))
                .collect::<Vec<_>>()
        };
        let a = make();
        assert_eq!(a, make(), "same seed, same history");
        assert!(a
            .windows(2)
            .all(|w| w[0].granted_at <= w[1].granted_at + Duration::seconds(1)));
        assert!(a
            .iter()
            .all(|g| g.granted_at <= now && g.granted_at > now - Duration::days(731)));
        for status in [
            GrantStatus::Expired,
            GrantStatus::Revoked,
            GrantStatus::Failed,
        ] {
            assert!(a.iter().any(|g| g.status == status), "{status:?} occurs");
        }
        assert!(a
            .iter()
            .all(|g| (g.status == GrantStatus::Active) == g.closed_at.is_none()));
    }
}
