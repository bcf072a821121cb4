//! Dev auth: a local ES256 key, created once in the data directory, that signs tokens shaped
//! like Entra ID v2 access tokens. `jitgate serve` validates them through the same
//! [`TokenValidator`] that Entra tokens go through; `jitgate token` mints them.

use super::{KeySet, KeySource, TokenValidator, VerifyingKey};
use crate::domain::Scope;
use crate::rbac::Role;
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The tenant dev tokens claim to come from.
pub const DEV_TENANT_ID: &str = "00000000-0000-4000-8000-000000000de7";
/// The audience dev tokens carry (an Entra app's Application ID URI looks the same).
pub const DEV_AUDIENCE: &str = "api://jitgate";
/// The key file, in the data directory.
pub const KEY_FILE: &str = "jitgate-dev-key.pem";

pub fn dev_issuer() -> String {
    format!("https://dev.jitgate.invalid/{DEV_TENANT_ID}/v2.0")
}

/// What a dev token says about its holder.
#[derive(Debug, Clone)]
pub struct DevTokenSpec {
    pub user: String,
    /// The object id; by default derived from the user name, so that every token minted for
    /// `alice` is the same principal.
    pub oid: Option<String>,
    pub roles: Vec<Role>,
    /// Narrow the roles to these scopes; none means tenant-wide, as Entra app roles are.
    pub scopes: Vec<Scope>,
    pub groups: Vec<String>,
    /// An app-only token (a bot's), rather than a user's.
    pub app: bool,
    pub ttl: chrono::Duration,
}

impl DevTokenSpec {
    pub fn user(name: &str, roles: &[Role]) -> Self {
        DevTokenSpec {
            user: name.to_string(),
            oid: None,
            roles: roles.to_vec(),
            scopes: vec![],
            groups: vec![],
            app: false,
            ttl: chrono::Duration::hours(8),
        }
    }

    pub fn object_id(&self) -> String {
        self.oid.clone().unwrap_or_else(|| {
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("jitgate-dev:{}", self.user).as_bytes(),
            )
            .to_string()
        })
    }
}

/// The local signing key.
pub struct DevKey {
    secret: SecretKey,
    kid: String,
}

impl DevKey {
    pub fn generate() -> Self {
        Self::from_secret(SecretKey::random(&mut rand::rngs::OsRng))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let point = secret.public_key().to_encoded_point(false);
        let kid = hex::encode(&Sha256::digest(point.as_bytes())[..8]);
        DevKey { secret, kid }
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    /// Reads the key from the data directory, creating it (readable by its owner only) the
    /// first time.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                let secret = SecretKey::from_pkcs8_pem(&pem)
                    .with_context(|| format!("{} is not a PKCS#8 EC key", path.display()))?;
                Ok(Self::from_secret(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("creating {}", data_dir.display()))?;
                let key = Self::generate();
                let pem = key
                    .secret
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("encoding the dev key")?;
                // Written whole to a file of our own, then linked into place: the key file
                // appears complete or not at all, so a replica starting alongside never reads a
                // half-written key, and whoever links first wins.
                let tmp = data_dir.join(format!(".{}.{}", KEY_FILE, uuid::Uuid::new_v4().simple()));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let written = options
                    .open(&tmp)
                    .and_then(|mut file| {
                        file.write_all(pem.as_bytes())
                            .and_then(|()| file.sync_all())
                    })
                    .with_context(|| format!("writing {}", tmp.display()));
                let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
                });
                let _ = std::fs::remove_file(&tmp);
                if linked? {
                    Ok(key)
                } else {
                    // Another process created it first: use theirs.
                    Self::load_or_create(data_dir)
                }
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK (what a JWKS endpoint would publish).
    pub fn public_jwk(&self) -> serde_json::Value {
        let point = self.secret.public_key().to_encoded_point(false);
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point")),
        })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        let jwk = self.public_jwk();
        let key = DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default(),
        )
        .expect("a P-256 public key converts to a decoding key");
        VerifyingKey {
            kid: self.kid.clone(),
            algorithm: Algorithm::ES256,
            key,
        }
    }

    /// The validator for dev mode: this key, the dev issuer, audience and tenant.
    pub fn validator(&self) -> TokenValidator {
        TokenValidator::new(
            KeySource::Static(std::sync::Arc::new(KeySet::new(vec![self.verifying_key()]))),
            vec![dev_issuer()],
            vec![DEV_AUDIENCE.to_string()],
            DEV_TENANT_ID.to_string(),
        )
        .with_scope_claim()
    }

    /// Signs a token carrying the claims an Entra v2 access token would.
    pub fn mint(&self, spec: &DevTokenSpec) -> anyhow::Result<String> {
        self.mint_claims(&self.claims(spec))
    }

    /// The claims [`mint`](Self::mint) signs, for tests that want to alter one.
    pub fn claims(&self, spec: &DevTokenSpec) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let oid = spec.object_id();
        let mut claims = json!({
            "iss": dev_issuer(), "aud": DEV_AUDIENCE, "tid": DEV_TENANT_ID,
            "sub": oid, "oid": oid, "iat": now, "nbf": now, "exp": now + spec.ttl.num_seconds(),
            "ver": "2.0", "name": spec.user, "preferred_username": spec.user,
            "roles": spec.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        });
        if spec.app {
            claims["idtyp"] = json!("app");
        } else {
            claims["scp"] = json!("access_as_user");
        }
        if !spec.groups.is_empty() {
            claims["groups"] = json!(spec.groups);
        }
        if !spec.scopes.is_empty() {
            claims["jitgate_scopes"] = json!(spec
                .scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>());
        }
        claims
    }

    pub fn mint_claims(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let der = self.secret.to_pkcs8_der().context("encoding the dev key")?;
        let key = EncodingKey::from_ec_der(der.as_bytes());
        Ok(jsonwebtoken::encode(&header, claims, &key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, CallerKind};

    #[tokio::test]
    async fn a_minted_token_validates_into_its_caller() {
        let key = DevKey::generate();
        let mut spec = DevTokenSpec::user("alice", &[Role::Admin, Role::Auditor]);
        spec.scopes = vec![Scope::parse("/subscriptions/s1").unwrap()];
        let caller = key
            .validator()
            .validate(&key.mint(&spec).unwrap())
            .await
            .unwrap();
        assert_eq!(caller.principal.name, "alice");
        assert_eq!(caller.principal.id, spec.object_id());
        assert_eq!(caller.kind, CallerKind::User);
        assert_eq!(caller.roles.len(), 2);
        assert!(caller
            .roles
            .iter()
            .all(|g| g.scope.to_string() == "/subscriptions/s1"));
    }

    #[test]
    fn processes_starting_together_all_get_the_same_whole_key() {
        let dir = tempfile::tempdir().unwrap();
        let kids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        DevKey::load_or_create(dir.path())
                            .unwrap()
                            .kid()
                            .to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the key file is left");
    }

    #[tokio::test]
    async fn the_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevKey::load_or_create(dir.path()).unwrap();
        let second = DevKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.kid(), second.kid());
        let token = first
            .mint(&DevTokenSpec::user("bob", &[Role::Requester]))
            .unwrap();
        assert!(second.validator().validate(&token).await.is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(DevKey::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn tokens_failing_any_check_are_refused_for_that_reason() {
        let key = DevKey::generate();
        let validator = key.validator();
        let spec = DevTokenSpec::user("alice", &[Role::Admin]);
        let altered = |field: &str, value: serde_json::Value| {
            let mut claims = key.claims(&spec);
            claims[field] = value;
            key.mint_claims(&claims).unwrap()
        };
        let now = chrono::Utc::now().timestamp();
        let cases = [
            ("exp", json!(now - 3600), AuthError::Expired),
            ("nbf", json!(now + 3600), AuthError::NotYetValid),
            ("aud", json!("api://other"), AuthError::WrongAudience),
            (
                "iss",
                json!("https://evil.example/v2.0"),
                AuthError::WrongIssuer,
            ),
            (
                "tid",
                json!("11111111-1111-1111-1111-111111111111"),
                AuthError::WrongTenant,
            ),
        ];
        for (field, value, expected) in cases {
            assert_eq!(
                validator
                    .validate(&altered(field, value))
                    .await
                    .unwrap_err(),
                expected,
                "{field}"
            );
        }

        let other = DevKey::generate();
        assert_eq!(
            validator
                .validate(&other.mint(&spec).unwrap())
                .await
                .unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(
            validator.validate("not.a.jwt").await.unwrap_err(),
            AuthError::Malformed
        );

        // alg: none, with our kid.
        let header = URL_SAFE_NO_PAD
            .encode(json!({ "alg": "none", "typ": "JWT", "kid": key.kid() }).to_string());
        let body = URL_SAFE_NO_PAD.encode(key.claims(&spec).to_string());
        assert!(validator
            .validate(&format!("{header}.{body}."))
            .await
            .is_err());

        // A signature from our key with the last byte changed.
        let mut token = key.mint(&spec).unwrap();
        let last = token.pop().unwrap();
        token.push(if last == 'A' { 'B' } else { 'A' });
        assert!(validator.validate(&token).await.is_err());
    }
}
