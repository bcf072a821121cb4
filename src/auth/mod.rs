//! Who is calling. Bearer tokens are validated by [`TokenValidator`], one path for every
//! source of keys (the local dev key now, the Entra tenant's JWKS next), and turned into a
//! [`Caller`] that the RBAC decision reads.

pub mod dev;
pub mod jwks;
pub mod keys;
pub mod token;

pub use jwks::{JwksCache, KeySetStatus};
pub use keys::{KeySet, VerifyingKey};
pub use token::{KeySource, TokenValidator};

use crate::domain::Principal;
use crate::rbac::RoleGrant;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub kind: CallerKind,
    pub roles: Vec<RoleGrant>,
    /// Entra group object ids from the `groups` claim.
    pub groups: Vec<String>,
    /// The token carried the groups overage claim instead of the groups (the user is in more
    /// groups than fit in a token), so group-based assignments could not be evaluated.
    pub groups_overage: bool,
}

/// A person (delegated token) or an application acting as itself (app-only token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum CallerKind {
    User,
    ServicePrincipal,
}

/// Why a token was refused. The text goes into `WWW-Authenticate` and the problem detail, so
/// it names the failed check and never repeats the token or any of its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signing key is not known")]
    UnknownKey,
    #[error("the token's algorithm is not the one its key is pinned to")]
    WrongAlgorithm,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is from another tenant")]
    WrongTenant,
    #[error("the token lacks a required claim: {0}")]
    MissingClaim(&'static str),
}

/// Compares secrets (tokens, signatures) in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
