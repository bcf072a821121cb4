//! Bearer token validation: the same checks Entra ID access tokens get, whatever signed them.

use super::{AuthError, Caller, CallerKind, KeySet};
use crate::domain::{Principal, Scope};
use crate::rbac::{Role, RoleGrant};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;

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
}

/// Validates tokens: signature by a known key with its pinned algorithm, `exp`/`nbf` with a
/// small leeway, `aud` among the accepted audiences, `iss` among the tenant's issuers, and
/// `tid` equal to the tenant.
#[derive(Debug, Clone)]
pub struct TokenValidator {
    keys: KeySet,
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
        keys: KeySet,
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

    pub fn keys_loaded(&self) -> usize {
        self.keys.len()
    }

    pub fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.keys.find(&kid).ok_or(AuthError::UnknownKey)?;
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
        })
    }
}
