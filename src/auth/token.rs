//! Bearer token validation: the same checks Entra ID access tokens get, whatever signed them.

use super::{AuthError, Caller, CallerKind, JwksCache, KeySet, KeySetStatus};
use crate::domain::{Principal, Scope};
use crate::rbac::{Role, RoleGrant};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The claims jitgate reads. `aud`, `iss`, `exp` and `nbf` are checked by `jsonwebtoken`
/// itself; everything else is read here.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    preferred_username: Option<String>,
    upn: Option<String>,
    unique_name: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    scp: Option<String>,
    idtyp: Option<String>,
    /// Dev tokens only: ARM scopes the token's roles are narrowed to.
    #[serde(default)]
    jitgate_scopes: Vec<String>,
    /// Entra's overage indicator: `{"groups": "src1"}` when the groups did not fit.
    #[serde(default, rename = "_claim_names")]
    claim_names: HashMap<String, serde_json::Value>,
}

/// Where the keys come from: fixed (the dev key), or the tenant's JWKS, refreshed as needed.
#[derive(Clone)]
pub enum KeySource {
    Static(Arc<KeySet>),
    Jwks(Arc<JwksCache>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Static(keys) => f.debug_tuple("Static").field(&keys.len()).finish(),
            KeySource::Jwks(_) => f.write_str("Jwks"),
        }
    }
}

/// Validates tokens: signature by a known key with its pinned algorithm, `exp`/`nbf` with a
/// small leeway, `aud` among the accepted audiences, `iss` among the tenant's issuers, and
/// `tid` equal to the tenant.
#[derive(Debug, Clone)]
pub struct TokenValidator {
    keys: KeySource,
    issuers: Vec<String>,
    audiences: Vec<String>,
    tenant_id: String,
    leeway_secs: u64,
    /// Only the dev key's tokens may narrow roles by the `jitgate_scopes` claim: an Entra
    /// tenant could be configured to emit any claim name, so there it means nothing.
    honour_scope_claim: bool,
}

impl TokenValidator {
    pub fn new(
        keys: KeySource,
        issuers: Vec<String>,
        audiences: Vec<String>,
        tenant_id: String,
    ) -> Self {
        TokenValidator {
            keys,
            issuers,
            audiences,
            tenant_id,
            leeway_secs: 60,
            honour_scope_claim: false,
        }
    }

    pub fn with_scope_claim(mut self) -> Self {
        self.honour_scope_claim = true;
        self
    }

    /// Accepts `exp`/`nbf` this far off, for clock skew between the IdP and us.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    /// The validator for an Entra tenant: v1 and v2 issuers of `tenant_id` under `authority`.
    pub fn entra(
        keys: Arc<JwksCache>,
        authority: &str,
        tenant_id: &str,
        audiences: Vec<String>,
    ) -> Self {
        let issuers = vec![
            format!("https://sts.windows.net/{tenant_id}/"),
            format!("{}/{tenant_id}/v2.0", authority.trim_end_matches('/')),
        ];
        Self::new(
            KeySource::Jwks(keys),
            issuers,
            audiences,
            tenant_id.to_string(),
        )
    }

    pub fn key_status(&self) -> KeySetStatus {
        match &self.keys {
            KeySource::Static(keys) => KeySetStatus {
                source: "dev".into(),
                keys: keys.len(),
                fetched_at: None,
                fetches: None,
                last_error: None,
            },
            KeySource::Jwks(cache) => cache.status(),
        }
    }

    pub fn key_source(&self) -> &KeySource {
        &self.keys
    }

    pub async fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let keys = match &self.keys {
            KeySource::Static(keys) => keys.clone(),
            KeySource::Jwks(cache) => {
                let keys = cache.keys();
                if keys.find(&kid).is_some() {
                    keys
                } else {
                    cache.refresh_for_unknown_kid(&kid).await
                }
            }
        };
        let key = keys.find(&kid).ok_or(AuthError::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_audience(&self.audiences);
        validation.set_issuer(&self.issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
                ErrorKind::MissingRequiredClaim(c) if c == "exp" => AuthError::MissingClaim("exp"),
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::MissingClaim("aud"),
                ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim("iss"),
                _ => AuthError::Malformed,
            })?
            .claims;
        if claims.tid.as_deref() != Some(self.tenant_id.as_str()) {
            return Err(AuthError::WrongTenant);
        }
        self.caller(claims)
    }

    fn caller(&self, claims: Claims) -> Result<Caller, AuthError> {
        let oid = claims.oid.ok_or(AuthError::MissingClaim("oid"))?;
        // Entra marks app-only tokens with `idtyp=app` when asked to; without it, an app token
        // is one with no delegated scopes whose subject is the app itself.
        let app_only = claims.idtyp.as_deref() == Some("app")
            || (claims.scp.is_none() && claims.sub.as_deref() == Some(oid.as_str()));
        let name = [
            claims.preferred_username,
            claims.upn,
            claims.unique_name,
            claims.name,
        ]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .unwrap_or_else(|| oid.clone());
        let scopes: Vec<Scope> = if self.honour_scope_claim && !claims.jitgate_scopes.is_empty() {
            claims
                .jitgate_scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|_| AuthError::Malformed)?
        } else {
            vec![Scope::Tenant]
        };
        // Roles of other applications may share the claim; only ours count.
        let roles = claims
            .roles
            .iter()
            .filter_map(|r| r.parse::<Role>().ok())
            .flat_map(|role| {
                scopes.iter().map(move |scope| RoleGrant {
                    role,
                    scope: scope.clone(),
                    assignment: None,
                })
            })
            .collect();
        Ok(Caller {
            principal: Principal { id: oid, name },
            kind: if app_only {
                CallerKind::ServicePrincipal
            } else {
                CallerKind::User
            },
            roles,
            groups: claims.groups,
            groups_overage: claims.claim_names.contains_key("groups"),
        })
    }
}
