//! The outbox's consumer: claims due jobs with a lease, runs them, and finishes or reschedules
//! them. Every replica runs one; leases keep two from doing the same job at once, and a job
//! whose replica died is taken again when its lease runs out.

pub mod enforce;
pub mod grants;
pub mod reconcile;

use crate::notify::deliver::Deliverer;
use crate::store::{
    DynStore, Job, JOB_ACTIVATE_REQUEST, JOB_CLOSE_REQUEST, JOB_DELIVER_WEBHOOK, JOB_ENFORCE_POLICY,
};
use chrono::Utc;
use enforce::Enforcer;
use grants::Grants;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How long a claimed job is ours before another dispatcher may take it.
/// Short, so that the jobs of a replica that died (a grant's close, say) are taken again
/// within seconds; a job that runs longer has its lease renewed while it runs.
const LEASE: Duration = Duration::from_secs(2);
/// How often a running job's lease is renewed.
const RENEW: Duration = Duration::from_millis(500);
/// How often to look for jobs other replicas queued (our own wake us at once).
const POLL: Duration = Duration::from_secs(1);
/// Jobs run at once on one replica. Each runs as its own task, so a slow one (an ARM
/// operation, a receiver that takes its time) never holds back the next due job (a grant's
/// expiry, say) as a batch would.
const CONCURRENCY: usize = 64;
/// After this many failed tries, a job's failure is final (recorded) rather than retried.
pub const MAX_ATTEMPTS: i32 = 12;

/// How a job went.
#[derive(Debug)]
pub enum JobOutcome {
    Done,
    /// Worth another try later (ARM throttled or unavailable): the reason. The wait grows
    /// with the job's attempts.
    Retry(String),
    /// Worth another try after this long (the job knows its own schedule).
    RetryAfter(Duration, String),
}

#[derive(Clone)]
pub struct Dispatcher {
    store: DynStore,
    enforcer: Arc<Enforcer>,
    grants: Arc<Grants>,
    webhooks: Arc<Deliverer>,
    owner: String,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    pub fn new(
        store: DynStore,
        enforcer: Enforcer,
        grants: Grants,
        webhooks: Deliverer,
    ) -> Dispatcher {
        Dispatcher {
            store,
            enforcer: Arc::new(enforcer),
            grants: Arc::new(grants),
            webhooks: Arc::new(webhooks),
            owner: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
            wake: Arc::new(Notify::new()),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
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
            // Checked before every claim, not only when idle: with jobs always due (a queue of
            // webhook deliveries to a receiver that times out, say) the loop never idles, and
            // a stop would otherwise wait for the queue to drain.
            let claimed = tokio::select! {
                biased;
                _ = &mut shutdown => return,
                claimed = self.run_due() => claimed,
            };
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

    /// Claims as many due jobs as there are free slots (waiting for one when all are busy)
    /// and starts each as a task of its own; returns how many it claimed.
    pub async fn run_due(&self) -> usize {
        let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::seconds(2));
        let Ok(first) = self.slots.clone().acquire_owned().await else {
            return 0;
        };
        let free = self.slots.available_permits() + 1;
        let jobs = match self
            .store
            .claim_jobs(&self.owner, Utc::now(), lease, free as u32)
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
        let mut first = Some(first);
        for job in jobs {
            // Slots were free when we claimed, and only this loop takes them.
            let slot = match first.take() {
                Some(slot) => slot,
                None => match self.slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.run_one(job).await;
                drop(slot);
            });
        }
        claimed
    }

    async fn run_one(&self, job: Job) {
        let work = async {
            match job.kind.as_str() {
                JOB_ENFORCE_POLICY => self.enforcer.enforce_job(&job).await,
                JOB_ACTIVATE_REQUEST => self.grants.activate_job(&job).await,
                JOB_CLOSE_REQUEST => self.grants.close_job(&job).await,
                JOB_DELIVER_WEBHOOK => self.webhooks.deliver_job(&job).await,
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
                // ARM's throttling and outages: 2 s, 4 s, 8 s ... at most 5 minutes.
                let wait = Duration::from_secs(1u64 << job.attempts.clamp(0, 8) as u32)
                    .min(Duration::from_secs(300));
                self.retry(&job, wait, &why).await
            }
            JobOutcome::RetryAfter(wait, why) => self.retry(&job, wait, &why).await,
        };
        if let Err(e) = result {
            // The lease runs out and the job is taken again: at worst it runs twice, and
            // every job is written to be idempotent.
            tracing::warn!(error = %e, id = job.id, "could not record the job's outcome");
        }
    }
}

impl Dispatcher {
    async fn retry(
        &self,
        job: &Job,
        wait: Duration,
        why: &str,
    ) -> Result<bool, crate::store::StoreError> {
        let at =
            Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(300));
        tracing::info!(id = job.id, kind = %job.kind, attempts = job.attempts, reason = %why, "job will be retried");
        self.store.retry_job(job.id, &self.owner, at, why).await
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "jitgate".into())
}
