//! The one way jitgate changes an ARM resource that others change too (NSGs, firewall rule
//! collection groups): read it with its ETag, merge jitgate's changes into what is there, PUT
//! it back with `If-Match`, and follow the long-running operation. A 412 means someone else
//! changed it meanwhile: read and merge again. At most one write is in flight per resource;
//! changes that queue up behind it go out together in the next write, so fifty policies on
//! one subnet's NSG cost a handful of writes.

use super::client::{api_version, ArmClient, ArmError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Re-reads after a 412 before giving up on a batch.
const MAX_MERGES: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// A deny rule cannot be placed without leaving a gap; nothing was written for it.
    #[error("{0}")]
    NoPriority(String),
    #[error("the resource kept changing under us: {0} conflicting writes in a row")]
    TooManyConflicts(u32),
}

/// What a kind of resource needs from the writer's read-merge-write loop.
pub trait Target: Send + Sync + 'static {
    type Resource: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync;
    type Change: Clone + Send + Sync + 'static;
    type Outcome: Send + 'static;

    fn etag(resource: &Self::Resource) -> Option<String>;

    /// Applies one change to the resource in memory.
    fn merge(
        &self,
        resource: &mut Self::Resource,
        change: &Self::Change,
    ) -> Result<Self::Outcome, WriteError>;

    /// Strips what ARM fills in and ignores on PUT.
    fn for_put(resource: &mut Self::Resource);
}

type Reply<T> = oneshot::Sender<Result<<T as Target>::Outcome, WriteError>>;

struct Queue<T: Target> {
    pending: Vec<(T::Change, Reply<T>)>,
    writing: bool,
}

impl<T: Target> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            pending: Vec::new(),
            writing: false,
        }
    }
}

/// Serialises and batches the changes to each resource of one kind.
pub struct Writer<T: Target> {
    inner: Arc<Inner<T>>,
}

impl<T: Target> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T: Target> {
    client: ArmClient,
    target: T,
    queues: Mutex<HashMap<String, Queue<T>>>,
    writes: AtomicU64,
}

impl<T: Target> Writer<T> {
    pub fn with_target(client: ArmClient, target: T) -> Writer<T> {
        Writer {
            inner: Arc::new(Inner {
                client,
                target,
                queues: Mutex::new(HashMap::new()),
                writes: AtomicU64::new(0),
            }),
        }
    }

    /// Writes (PUTs) made so far.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Applies `change` to the resource `id`, together with whatever else is queued for it.
    pub async fn apply(&self, id: &str, change: T::Change) -> Result<T::Outcome, WriteError> {
        let (tx, rx) = oneshot::channel();
        let key = id.to_ascii_lowercase();
        let start_writer = {
            let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            let queue = queues.entry(key.clone()).or_default();
            queue.pending.push((change, tx));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let inner = self.inner.clone();
            let id = id.to_string();
            tokio::spawn(async move { inner.drain(&key, &id).await });
        }
        rx.await.unwrap_or_else(|_| {
            Err(WriteError::Arm(ArmError {
                status: None,
                code: "WriterStopped".into(),
                message: "the writer stopped".into(),
            }))
        })
    }
}

impl<T: Target> Inner<T> {
    /// Writes batches for one resource until its queue is empty.
    async fn drain(&self, key: &str, id: &str) {
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
            let changes: Vec<T::Change> = batch.iter().map(|(c, _)| c.clone()).collect();
            match self.write_batch(id, &changes).await {
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
        id: &str,
        changes: &[T::Change],
    ) -> Result<Vec<Result<T::Outcome, WriteError>>, WriteError> {
        for _ in 0..MAX_MERGES {
            let mut resource: T::Resource = self.client.get(id, api_version::NETWORK).await?;
            let etag = T::etag(&resource);
            let before = resource.clone();
            let outcomes: Vec<_> = changes
                .iter()
                .map(|c| self.target.merge(&mut resource, c))
                .collect();
            if resource == before {
                return Ok(outcomes); // already as wanted: no write
            }
            T::for_put(&mut resource);
            self.writes.fetch_add(1, Ordering::Relaxed);
            let written: Result<T::Resource, ArmError> = self
                .client
                .put_and_wait(id, api_version::NETWORK, &resource, etag.as_deref())
                .await;
            match written {
                Ok(_) => return Ok(outcomes),
                Err(e) if e.is_precondition_failed() => {
                    tracing::info!(resource = id, "changed since we read it; merging again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::TooManyConflicts(MAX_MERGES))
    }
}
