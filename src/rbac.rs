//! Who may do what, where. One decision function, [`authorize`], serves every handler.
//!
//! Roles come from the token (Entra app roles hold tenant-wide; dev tokens may narrow them to
//! scopes). Stored scoped role assignments join them with the RBAC issue.

use crate::auth::Caller;
use crate::domain::{Scope, VmId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Role {
    #[serde(rename = "Jit.Admin")]
    Admin,
    #[serde(rename = "Jit.Approver")]
    Approver,
    #[serde(rename = "Jit.Requester")]
    Requester,
    #[serde(rename = "Jit.Auditor")]
    Auditor,
    #[serde(rename = "Jit.Bot")]
    Bot,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Approver,
        Role::Requester,
        Role::Auditor,
        Role::Bot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "Jit.Admin",
            Role::Approver => "Jit.Approver",
            Role::Requester => "Jit.Requester",
            Role::Auditor => "Jit.Auditor",
            Role::Bot => "Jit.Bot",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: expected one of Jit.Admin, Jit.Approver, Jit.Requester, Jit.Auditor, Jit.Bot"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role that holds at a scope (and everything under it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    pub role: Role,
    pub scope: Scope,
}

/// Everything a caller may ask to do. Each action names the roles that allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadPolicy,
    WritePolicy,
}

impl Action {
    fn allowed_roles(self) -> &'static [Role] {
        match self {
            // Everybody who works with a VM needs to see what may be requested on it.
            Action::ReadPolicy => &Role::ALL,
            Action::WritePolicy => &[Role::Admin],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::ReadPolicy => "read the JIT policy",
            Action::WritePolicy => "write the JIT policy",
        }
    }
}

/// Why a caller was refused: said in the 403 so that people can ask for the right role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// May `caller` do `action` on `vm`? Allowed when one of the caller's roles that permits the
/// action holds at a scope covering the VM.
pub fn authorize(caller: &Caller, action: Action, vm: &VmId) -> Result<(), Denied> {
    let allowed = action.allowed_roles();
    if caller
        .roles
        .iter()
        .any(|grant| allowed.contains(&grant.role) && grant.scope.covers(vm))
    {
        return Ok(());
    }
    let roles: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(Denied(format!(
        "{} may not {} of {vm}: that needs {} at a scope covering it",
        caller.principal.name,
        action.describe(),
        roles.join(" or ")
    )))
}

/// Where a caller may do `action`, for filtering lists in the store rather than after it
/// (so that keyset pages stay full and stable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    Everywhere,
    Within(Vec<Scope>),
}

pub fn visible_scopes(caller: &Caller, action: Action) -> Visibility {
    let allowed = action.allowed_roles();
    let scopes: Vec<Scope> = caller
        .roles
        .iter()
        .filter(|g| allowed.contains(&g.role))
        .map(|g| g.scope.clone())
        .collect();
    if scopes.contains(&Scope::Tenant) {
        Visibility::Everywhere
    } else {
        Visibility::Within(scopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Caller, CallerKind};
    use crate::domain::Principal;

    fn caller(roles: &[(Role, &str)]) -> Caller {
        Caller {
            principal: Principal {
                id: "oid".into(),
                name: "alice".into(),
            },
            kind: CallerKind::User,
            roles: roles
                .iter()
                .map(|(role, scope)| RoleGrant {
                    role: *role,
                    scope: Scope::parse(scope).unwrap(),
                })
                .collect(),
            groups: vec![],
        }
    }

    fn vm(sub: &str, rg: &str) -> VmId {
        VmId::from_parts(sub, rg, "vm1").unwrap()
    }

    #[test]
    fn only_admins_write_policies() {
        assert!(authorize(
            &caller(&[(Role::Admin, "/")]),
            Action::WritePolicy,
            &vm("s1", "rg")
        )
        .is_ok());
        for role in [Role::Approver, Role::Requester, Role::Auditor, Role::Bot] {
            assert!(authorize(
                &caller(&[(role, "/")]),
                Action::WritePolicy,
                &vm("s1", "rg")
            )
            .is_err());
        }
    }

    #[test]
    fn a_role_holds_only_under_its_scope() {
        let c = caller(&[(Role::Admin, "/subscriptions/s1/resourceGroups/rg")]);
        assert!(authorize(&c, Action::WritePolicy, &vm("s1", "RG")).is_ok());
        assert!(authorize(&c, Action::WritePolicy, &vm("s1", "rg2")).is_err());
        assert!(authorize(&c, Action::WritePolicy, &vm("s2", "rg")).is_err());
    }

    #[test]
    fn visibility_is_everywhere_only_for_tenant_wide_roles() {
        assert_eq!(
            visible_scopes(&caller(&[(Role::Auditor, "/")]), Action::ReadPolicy),
            Visibility::Everywhere
        );
        assert_eq!(
            visible_scopes(
                &caller(&[(Role::Requester, "/subscriptions/s1")]),
                Action::ReadPolicy
            ),
            Visibility::Within(vec![Scope::parse("/subscriptions/s1").unwrap()])
        );
        assert_eq!(
            visible_scopes(&caller(&[]), Action::ReadPolicy),
            Visibility::Within(vec![])
        );
    }
}
