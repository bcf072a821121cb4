//! The outbox's consumer: claims due jobs with a lease, runs them, and finishes or reschedules
//! them. Every replica runs one; leases keep two from doing the same job at once, and a job
//! whose replica died is taken again when its lease runs out.

pub mod enforce;
pub mod grants;
pub mod reconcile;

use crate::store::{DynStore, Job, JOB_ACTIVATE_REQUEST, JOB_CLOSE_REQUEST, JOB_ENFORCE_POLICY};
use chrono::Utc;
use enforce::Enforcer;
use grants::Grants;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a claimed job is ours before another dispatcher may take it.
/// Short, so that the jobs of a replica that died (a grant's close, say) are taken again
/// within seconds; a job that runs longer has its lease renewed while it runs.
const LEASE: Duration = Duration::from_secs(2);
/// How often a running job's lease is renewed.
const RENEW: Duration = Duration::from_millis(500);
/// How often to look for jobs other replicas queued (our own wake us at once).
const POLL: Duration = Duration::from_secs(1);
const BATCH: u32 = 32;
/// After this many failed tries, a job's failure is final (recorded) rather than retried.
pub const MAX_ATTEMPTS: i32 = 12;

/// How a job went.
#[derive(Debug)]
pub enum JobOutcome {
    Done,
    /// Worth another try later (ARM throttled or unavailable): the reason.
    Retry(String),
}

#[derive(Clone)]
pub struct Dispatcher {
    store: DynStore,
    enforcer: Arc<Enforcer>,
    grants: Arc<Grants>,
    owner: String,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(store: DynStore, enforcer: Enforcer, grants: Grants) -> Dispatcher {
        Dispatcher {
            store,
            enforcer: Arc::new(enforcer),
            grants: Arc::new(grants),
            owner: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Tells the dispatcher that a job was just queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// Runs until `shutdown` resolves; jobs in flight then finish or keep their lease.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let claimed = self.run_due().await;
            if claimed == 0 {
                // Sleep until the next job falls due (a grant's end, say), or a new one is
                // queued here, or POLL has passed (other replicas queue jobs too).
                let pause = match self.store.next_job_due().await {
                    Ok(Some(at)) => (at - Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(POLL),
                    _ => POLL,
                };
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Claims and runs one batch of due jobs, concurrently; returns how many it claimed.
    pub async fn run_due(&self) -> usize {
        let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::seconds(2));
        let jobs = match self
            .store
            .claim_jobs(&self.owner, Utc::now(), lease, BATCH)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim jobs; trying again shortly");
                tokio::time::sleep(POLL).await;
                return 0;
            }
        };
        let claimed = jobs.len();
        let mut running = tokio::task::JoinSet::new();
        for job in jobs {
            let this = self.clone();
            running.spawn(async move { this.run_one(job).await });
        }
        while running.join_next().await.is_some() {}
        claimed
    }

    async fn run_one(&self, job: Job) {
        let work = async {
            match job.kind.as_str() {
                JOB_ENFORCE_POLICY => self.enforcer.enforce_job(&job).await,
                JOB_ACTIVATE_REQUEST => self.grants.activate_job(&job).await,
                JOB_CLOSE_REQUEST => self.grants.close_job(&job).await,
                other => {
                    tracing::error!(kind = other, id = job.id, "unknown job kind; dropping it");
                    JobOutcome::Done
                }
            }
        };
        // Keep the lease while the work runs (an ARM operation can take minutes). The renewal
        // runs as its own task: awaited inside the work's task, a renewal waiting for a pool
        // connection would stop the work from being polled while it holds a transaction open
        // (and with it the audit chain's head row that the pool's other connections wait on).
        let renewal = {
            let (store, owner, id) = (self.store.clone(), self.owner.clone(), job.id);
            tokio::spawn(async move {
                let mut renew = tokio::time::interval(RENEW);
                renew.tick().await;
                loop {
                    renew.tick().await;
                    let until = Utc::now()
                        + chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::seconds(2));
                    if let Err(e) = store.renew_lease(id, &owner, until).await {
                        tracing::warn!(error = %e, id, "could not renew a job's lease");
                    }
                }
            })
        };
        let outcome = work.await;
        renewal.abort();
        let result = match outcome {
            JobOutcome::Done => self.store.finish_job(job.id, &self.owner).await,
            JobOutcome::Retry(why) => {
                let backoff = Duration::from_secs(1u64 << job.attempts.clamp(0, 8) as u32)
                    .min(Duration::from_secs(300));
                let at = Utc::now()
                    + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::seconds(300));
                tracing::info!(id = job.id, kind = %job.kind, attempts = job.attempts, reason = %why, "job will be retried");
                self.store.retry_job(job.id, &self.owner, at, &why).await
            }
        };
        if let Err(e) = result {
            // The lease runs out and the job is taken again: at worst it runs twice, and
            // every job is written to be idempotent.
            tracing::warn!(error = %e, id = job.id, "could not record the job's outcome");
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "jitgate".into())
}
