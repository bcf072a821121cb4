//! Retention: events older than `JITGATE_AUDIT_RETENTION` may be deleted, but only after a
//! checkpoint records the chain's hash where the cut falls, signed (ES256) with the audit
//! signing key. Verification then starts at the checkpoint: the signature vouches for
//! everything before it, the hashes for everything after.

use crate::store::{Checkpoint, DynStore};
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SubsecRound, Utc};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Signs checkpoints.
pub struct AuditSigner {
    key: SigningKey,
}

/// Checks checkpoint signatures.
#[derive(Clone)]
pub struct AuditVerifier {
    key: VerifyingKey,
}

fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.to_encoded_point(false).as_bytes())[..8])
}

impl AuditSigner {
    /// Reads the PKCS#8 key at `path`, creating it (owner-readable only) if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(pem) => Ok(AuditSigner {
                key: SigningKey::from_pkcs8_pem(&pem)
                    .with_context(|| format!("{} is not a PKCS#8 P-256 key", path.display()))?,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::random(&mut rand::rngs::OsRng);
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("encoding the audit signing key")?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                options
                    .open(path)
                    .and_then(|mut f| f.write_all(pem.as_bytes()).and_then(|()| f.sync_all()))
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(AuditSigner { key })
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn verifier(&self) -> AuditVerifier {
        AuditVerifier {
            key: *self.key.verifying_key(),
        }
    }

    /// A signed checkpoint of the chain at `seq` / `hash`.
    pub fn checkpoint(&self, seq: i64, hash: &str, now: DateTime<Utc>) -> Checkpoint {
        let created_at = now.trunc_subsecs(6);
        let text = Checkpoint::signed_text(seq, hash, seq, created_at);
        let signature: Signature = self.key.sign(text.as_bytes());
        Checkpoint {
            seq,
            hash: hash.to_string(),
            events: seq,
            created_at,
            key_id: key_id(self.key.verifying_key()),
            signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        }
    }
}

impl AuditVerifier {
    /// Reads a PKCS#8 private key or an SPKI public key (PEM) at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
            return Ok(AuditVerifier { key });
        }
        let signing = SigningKey::from_pkcs8_pem(&pem)
            .with_context(|| format!("{} is not a P-256 key", path.display()))?;
        Ok(AuditVerifier {
            key: *signing.verifying_key(),
        })
    }

    /// Whether `checkpoint` was signed by this key and says what it was signed saying.
    pub fn check(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        if checkpoint.key_id != key_id(&self.key) {
            return Err(format!(
                "checkpoint at seq {} is signed by key {}, not by the configured key {}",
                checkpoint.seq,
                checkpoint.key_id,
                key_id(&self.key)
            ));
        }
        let text = Checkpoint::signed_text(
            checkpoint.seq,
            &checkpoint.hash,
            checkpoint.events,
            checkpoint.created_at,
        );
        let signature = URL_SAFE_NO_PAD
            .decode(&checkpoint.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| {
                format!(
                    "checkpoint at seq {} has no readable signature",
                    checkpoint.seq
                )
            })?;
        self.key
            .verify(text.as_bytes(), &signature)
            .map_err(|_| format!("checkpoint at seq {} has a bad signature", checkpoint.seq))
    }
}

/// What one retention pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub checkpoint_seq: Option<i64>,
    pub deleted: u64,
}

/// Deletes events stamped before `cutoff`, after verifying the chain up to the cut and
/// recording a signed checkpoint there. A broken chain is never pruned: the evidence stays.
pub async fn prune(
    store: &DynStore,
    signer: &AuditSigner,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<Pruned> {
    let Some(last) = store.last_event_before(cutoff).await? else {
        return Ok(Pruned::default());
    };
    if store
        .latest_checkpoint()
        .await?
        .is_some_and(|c| c.seq >= last.seq)
    {
        return Ok(Pruned::default());
    }
    let report =
        super::verify::verify_chain(store, Some(&signer.verifier()), Some(last.seq)).await?;
    if !report.ok {
        anyhow::bail!(
            "the audit chain is broken at seq {:?} ({}); nothing pruned",
            report.broken_at,
            report.reason.unwrap_or_default()
        );
    }
    let checkpoint = signer.checkpoint(last.seq, &last.hash, now);
    let mut deleted = 0;
    loop {
        let n = store.prune_audit(&checkpoint, 5_000).await?;
        deleted += n;
        if n == 0 {
            break;
        }
    }
    Ok(Pruned {
        checkpoint_seq: Some(checkpoint.seq),
        deleted,
    })
}

/// How often retention runs: a quarter of the retention period, from a second to an hour.
pub fn retention_interval(retention: chrono::Duration) -> std::time::Duration {
    let quarter = (retention / 4).to_std().unwrap_or_default();
    quarter.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    )
}

/// Prunes events older than `retention`, now and then every [`retention_interval`], until
/// `stop` resolves. A failed pass is logged and tried again at the next tick.
pub async fn run_retention(
    store: DynStore,
    signer: AuditSigner,
    retention: chrono::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(retention_interval(retention));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        match prune(&store, &signer, now - retention, now).await {
            Ok(Pruned {
                checkpoint_seq: Some(seq),
                deleted,
            }) => {
                tracing::info!(
                    checkpoint_seq = seq,
                    deleted,
                    "audit retention: pruned events behind a signed checkpoint"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "audit retention failed"),
        }
    }
}
