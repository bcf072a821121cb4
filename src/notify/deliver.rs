//! The `webhook.deliver` job: POST one event to one subscription, signed, and record how it
//! went. A receiver that is down or answers other than 2xx is tried again with exponential
//! backoff; after [`MAX_DELIVERY_ATTEMPTS`] the delivery is marked failed (the log says why).

use super::{cloud_event, cloud_event_type, signature, DeliveryStatus, SIGNATURE_HEADER};
use crate::dispatch::JobOutcome;
use crate::store::{DeliveryAttempt, DynStore, Job};
use chrono::Utc;
use std::time::Duration;

/// Tries before a delivery is given up (with a 10 s base, the last comes about 3.4 hours
/// after the first).
pub const MAX_DELIVERY_ATTEMPTS: i32 = 12;
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Deliverer {
    store: DynStore,
    http: reqwest::Client,
    retry_base: Duration,
}

impl Deliverer {
    pub fn new(store: DynStore, retry_base: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            // A receiver's redirect is not followed: the signature was made for this URL's
            // owner, and a redirect could point anywhere (the metadata service, say).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer {
            store,
            http,
            retry_base,
        })
    }

    fn backoff(&self, attempt: i32) -> Duration {
        backoff(self.retry_base, attempt)
    }

    pub async fn deliver_job(&self, job: &Job) -> JobOutcome {
        match self.deliver(job).await {
            Ok(outcome) => outcome,
            // The store failed: the delivery is as it was; try the whole job again.
            Err(e) => JobOutcome::RetryAfter(self.backoff(job.attempts), format!("{e:#}")),
        }
    }

    async fn deliver(&self, job: &Job) -> anyhow::Result<JobOutcome> {
        let Some(delivery) = self.store.get_delivery(&job.subject).await? else {
            return Ok(JobOutcome::Done);
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(JobOutcome::Done);
        }
        let now = Utc::now();
        let give_up = |why: String| DeliveryAttempt {
            status: DeliveryStatus::Failed,
            status_code: None,
            error: Some(why),
            at: now,
        };
        let Some((webhook, secret)) = self.store.get_webhook(&delivery.webhook_id).await? else {
            self.store
                .record_delivery(
                    &delivery.id,
                    &give_up("the subscription was deleted".into()),
                )
                .await?;
            return Ok(JobOutcome::Done);
        };
        let event = self
            .store
            .audit_events_after(delivery.event_seq - 1, 1)
            .await?
            .into_iter()
            .find(|e| e.seq == delivery.event_seq);
        let Some(event) = event else {
            self.store
                .record_delivery(
                    &delivery.id,
                    &give_up("the event was pruned before it could be delivered".into()),
                )
                .await?;
            return Ok(JobOutcome::Done);
        };
        let ce_type = cloud_event_type(&event).unwrap_or_else(|| delivery.event_type.clone());
        let body = serde_json::to_vec(&cloud_event(&event, &ce_type))?;
        let timestamp = now.timestamp();
        let sent = self
            .http
            .post(&webhook.url)
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", &delivery.id)
            .header(SIGNATURE_HEADER, signature(&secret, timestamp, &body))
            .body(body)
            .send()
            .await;
        let (status_code, error) = match sent {
            Ok(response) if response.status().is_success() => {
                let code = response.status().as_u16();
                self.store
                    .record_delivery(
                        &delivery.id,
                        &DeliveryAttempt {
                            status: DeliveryStatus::Delivered,
                            status_code: Some(code),
                            error: None,
                            at: now,
                        },
                    )
                    .await?;
                return Ok(JobOutcome::Done);
            }
            Ok(response) => (
                Some(response.status().as_u16()),
                format!("the receiver answered {}", response.status()),
            ),
            // Said without the URL: reqwest's errors name it, and a URL may carry a token.
            Err(e) => (None, describe(&e)),
        };
        let attempts = delivery.attempts + 1;
        let last = attempts >= MAX_DELIVERY_ATTEMPTS;
        self.store
            .record_delivery(
                &delivery.id,
                &DeliveryAttempt {
                    status: if last {
                        DeliveryStatus::Failed
                    } else {
                        DeliveryStatus::Pending
                    },
                    status_code,
                    error: Some(error.clone()),
                    at: now,
                },
            )
            .await?;
        Ok(if last {
            JobOutcome::Done
        } else {
            JobOutcome::RetryAfter(self.backoff(attempts), error)
        })
    }
}

/// The wait after the `attempt`-th failed try: base, 2 x base, 4 x base ... at most an hour.
pub fn backoff(base: Duration, attempt: i32) -> Duration {
    let factor = 1u32 << attempt.clamp(1, 16).saturating_sub(1);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the receiver did not answer in time".into()
    } else if e.is_connect() {
        "could not connect to the receiver".into()
    } else {
        "the request to the receiver failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_an_hour() {
        let d = |attempt| backoff(Duration::from_secs(10), attempt);
        assert_eq!(d(1), Duration::from_secs(10));
        assert_eq!(d(2), Duration::from_secs(20));
        assert_eq!(d(4), Duration::from_secs(80));
        assert_eq!(d(12), MAX_BACKOFF);
    }
}
