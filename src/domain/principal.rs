use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who did something, as shown to people: the Entra object id and a readable name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    /// Entra object id (`oid`).
    pub id: String,
    /// User principal name or display name.
    pub name: String,
}
