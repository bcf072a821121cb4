//! Scoped role assignments: a role granted to a user, group or service principal at an ARM
//! scope, kept by the service (Entra app roles, by contrast, hold tenant-wide).

use super::Role;
use crate::domain::{FieldErrors, Scope};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PrincipalType {
    User,
    Group,
    ServicePrincipal,
}

impl FromStr for PrincipalType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "User" => Ok(PrincipalType::User),
            "Group" => Ok(PrincipalType::Group),
            "ServicePrincipal" => Ok(PrincipalType::ServicePrincipal),
            _ => Err(format!(
                "unknown principal type {s:?}: expected User, Group or ServicePrincipal"
            )),
        }
    }
}

impl fmt::Display for PrincipalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
            PrincipalType::ServicePrincipal => "ServicePrincipal",
        })
    }
}

/// A validated assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignment {
    pub id: String,
    pub principal_id: String,
    pub principal_type: PrincipalType,
    pub role: Role,
    pub scope: Scope,
}

/// The body of `PUT /v1/role-assignments/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentDraft {
    /// The Entra object id of the user, group or service principal.
    pub principal_id: Option<String>,
    /// `User`, `Group` or `ServicePrincipal`.
    pub principal_type: Option<String>,
    /// `Jit.Admin`, `Jit.Approver`, `Jit.Requester`, `Jit.Auditor` or `Jit.Bot`.
    pub role: Option<String>,
    /// `/subscriptions/{s}`, `/subscriptions/{s}/resourceGroups/{rg}` or a VM id.
    pub scope: Option<String>,
}

/// Entra object ids are GUIDs, which compare case-insensitively; tokens carry them in lower
/// case, so a GUID is stored that way. Anything else (a dev user name) is kept as given.
pub fn normalize_principal_id(id: &str) -> String {
    match uuid::Uuid::parse_str(id) {
        Ok(guid) => guid.hyphenated().to_string(),
        Err(_) => id.to_string(),
    }
}

/// Assignment ids are chosen by the client, as ARM's are (a GUID is customary).
pub fn check_assignment_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid role assignment id {id:?}: expected 1 to 64 letters, digits, '-', '_' or '.' (a GUID is customary)"))
    }
}

impl RoleAssignment {
    pub fn parse(id: &str, draft: RoleAssignmentDraft) -> Result<RoleAssignment, FieldErrors> {
        let mut errors = FieldErrors::new();
        if let Err(e) = check_assignment_id(id) {
            errors.push("id", e);
        }
        let mut required = |field: &str, value: Option<String>| {
            let value = value.filter(|v| !v.is_empty());
            if value.is_none() {
                errors.push(field, "is required");
            }
            value
        };
        let principal_id = required("principalId", draft.principal_id);
        let principal_type = required("principalType", draft.principal_type);
        let role = required("role", draft.role);
        let scope = required("scope", draft.scope);
        if principal_id.as_ref().is_some_and(|p| p.len() > 128) {
            errors.push("principalId", "at most 128 characters");
        }
        let principal_id = principal_id.map(|p| normalize_principal_id(&p));
        let principal_type = principal_type.and_then(|t| errors.take("principalType", t.parse()));
        let role = role.and_then(|r| errors.take("role", r.parse()));
        // Tenant-wide roles come from Entra app roles; a stored assignment names an ARM scope.
        let scope = scope.and_then(|s| match Scope::parse(&s) {
            Ok(Scope::Tenant) => {
                errors.push("scope", "tenant-wide roles are Entra app roles: assign a subscription, resource group or VM scope");
                None
            }
            other => errors.take("scope", other),
        });
        let (Some(principal_id), Some(principal_type), Some(role), Some(scope)) =
            (principal_id, principal_type, role, scope)
        else {
            return Err(errors);
        };
        errors.finish(|| RoleAssignment {
            id: id.to_string(),
            principal_id,
            principal_type,
            role,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(id: &str, v: serde_json::Value) -> Result<RoleAssignment, Vec<String>> {
        RoleAssignment::parse(id, serde_json::from_value(v).unwrap())
            .map_err(|e| e.0.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn a_complete_assignment_parses() {
        let a = parse(
            "5f1c",
            json!({ "principalId": "oid-1", "principalType": "Group", "role": "Jit.Approver", "scope": "/subscriptions/s1" }),
        )
        .unwrap();
        assert_eq!(a.role, Role::Approver);
        assert_eq!(a.principal_type, PrincipalType::Group);
        assert_eq!(a.scope.to_string(), "/subscriptions/s1");
    }

    #[test]
    fn every_missing_or_bad_field_is_named() {
        assert_eq!(
            parse("a b", json!({})).unwrap_err(),
            ["id", "principalId", "principalType", "role", "scope"]
        );
        assert_eq!(
            parse("x", json!({ "principalId": "o", "principalType": "Robot", "role": "Jit.God", "scope": "/" })).unwrap_err(),
            ["principalType", "role", "scope"]
        );
    }
}
