//! Who may do what, where. One decision function, [`authorize`], serves every handler.
//!
//! A caller's roles are the Entra app roles in its token (tenant-wide, or narrowed by a dev
//! token's scopes) plus the stored [`RoleAssignment`]s that name its object id or one of its
//! groups. A role at a scope holds for everything under it.

pub mod assignment;

pub use assignment::{check_assignment_id, PrincipalType, RoleAssignment, RoleAssignmentDraft};

use crate::auth::{Caller, CallerKind};
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

/// A role that holds at a scope (and everything under it), and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    pub role: Role,
    pub scope: Scope,
    /// The stored assignment that grants it; `None` for a role from the token.
    pub assignment: Option<String>,
}

/// Everything a caller may ask to do, as API.md's role table lists it. Each action names the
/// roles that allow it; rules about whose request it is are decided with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadPolicy,
    WritePolicy,
    SubmitRequest,
    SubmitOnBehalfOf,
    ReadAnyRequest,
    DecideRequest,
    RevokeAnyGrant,
    ReadGrants,
    ReadAudit,
    ReadRoleAssignments,
    WriteRoleAssignments,
    ReadWebhooks,
    ManageWebhooks,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::ReadPolicy,
        Action::WritePolicy,
        Action::SubmitRequest,
        Action::SubmitOnBehalfOf,
        Action::ReadAnyRequest,
        Action::DecideRequest,
        Action::RevokeAnyGrant,
        Action::ReadGrants,
        Action::ReadAudit,
        Action::ReadRoleAssignments,
        Action::WriteRoleAssignments,
        Action::ReadWebhooks,
        Action::ManageWebhooks,
    ];

    /// API.md's table: Admin may do everything the others may, except act for someone else
    /// (that is what a bot's own identity and `Jit.Bot` are for).
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            // Everybody who works with a VM needs to see what may be requested on it.
            Action::ReadPolicy => &[Admin, Approver, Requester, Auditor, Bot],
            Action::WritePolicy | Action::WriteRoleAssignments | Action::ManageWebhooks => &[Admin],
            Action::SubmitRequest => &[Admin, Requester],
            Action::SubmitOnBehalfOf => &[Bot],
            Action::ReadAnyRequest => &[Admin, Approver, Auditor],
            Action::DecideRequest | Action::RevokeAnyGrant => &[Admin, Approver],
            Action::ReadGrants
            | Action::ReadAudit
            | Action::ReadRoleAssignments
            | Action::ReadWebhooks => &[Admin, Auditor],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::ReadPolicy => "read the JIT policy",
            Action::WritePolicy => "write the JIT policy",
            Action::SubmitRequest => "request access",
            Action::SubmitOnBehalfOf => "request access on behalf of a user",
            Action::ReadAnyRequest => "read other people's access requests",
            Action::DecideRequest => "approve or deny access requests",
            Action::RevokeAnyGrant => "revoke other people's access",
            Action::ReadGrants => "read grant history",
            Action::ReadAudit => "read the audit log",
            Action::ReadRoleAssignments => "read role assignments",
            Action::WriteRoleAssignments => "write role assignments",
            Action::ReadWebhooks => "read webhook subscriptions",
            Action::ManageWebhooks => "manage webhook subscriptions",
        }
    }
}

/// Why a caller was refused: said in the 403 so that people can ask for the right role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// May `caller` do `action` at `target`? Allowed when one of the caller's roles that permits
/// the action holds at a scope containing the target.
pub fn authorize(caller: &Caller, action: Action, target: &Scope) -> Result<(), Denied> {
    let allowed = action.allowed_roles();
    // Acting for someone else is for an application acting as itself, never a user's token.
    let kind_ok = action != Action::SubmitOnBehalfOf || caller.kind == CallerKind::ServicePrincipal;
    if kind_ok
        && caller
            .roles
            .iter()
            .any(|g| allowed.contains(&g.role) && g.scope.contains(target))
    {
        return Ok(());
    }
    Err(refusal(caller, action, target))
}

/// Why `caller` may not do `action` at `target`, in words a person can act on.
pub fn refusal(caller: &Caller, action: Action, target: &Scope) -> Denied {
    let allowed = action.allowed_roles();
    let kind_ok = action != Action::SubmitOnBehalfOf || caller.kind == CallerKind::ServicePrincipal;
    let roles: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    let mut why = format!(
        "{} may not {} at {target}: that needs {} at a scope containing it",
        caller.principal.name,
        action.describe(),
        roles.join(" or ")
    );
    if !kind_ok {
        why.push_str(
            ", in an app-only token (a user's token can never act on behalf of another user)",
        );
    }
    if caller.groups_overage {
        why.push_str(
            ". Your token carries the groups overage claim instead of your groups (you are in too many \
             groups to fit in a token), so role assignments to your groups could not be counted: \
             ask an admin to assign the role to you directly, or to limit the app's group claims \
             to groups assigned to the application",
        );
    }
    Denied(why)
}

/// [`authorize`] for a VM.
pub fn authorize_vm(caller: &Caller, action: Action, vm: &VmId) -> Result<(), Denied> {
    authorize(caller, action, &Scope::Vm(vm.clone()))
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

/// Adds the roles of the stored assignments that name the caller: users and service
/// principals by object id (and kind), groups by the token's `groups` claim.
pub fn add_assigned_roles(caller: &mut Caller, assignments: Vec<RoleAssignment>) {
    for a in assignments {
        let applies = match a.principal_type {
            PrincipalType::User => {
                caller.kind == CallerKind::User && a.principal_id == caller.principal.id
            }
            PrincipalType::ServicePrincipal => {
                caller.kind == CallerKind::ServicePrincipal && a.principal_id == caller.principal.id
            }
            PrincipalType::Group => caller.groups.contains(&a.principal_id),
        };
        if applies {
            caller.roles.push(RoleGrant {
                role: a.role,
                scope: a.scope,
                assignment: Some(a.id),
            });
        }
    }
}

/// The user a bot acts for, as far as the service can know them without their token: their
/// object id and the roles of the stored assignments made to them directly. (A token would also
/// carry their app roles and groups; a bot's request cannot.)
pub fn absent_user(oid: &str, assignments: Vec<RoleAssignment>) -> Caller {
    let mut user = Caller {
        principal: crate::domain::Principal {
            id: oid.to_string(),
            name: oid.to_string(),
        },
        kind: CallerKind::User,
        roles: vec![],
        groups: vec![],
        groups_overage: false,
    };
    add_assigned_roles(&mut user, assignments);
    user
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
                    assignment: None,
                })
                .collect(),
            groups: vec!["group-1".into()],
            groups_overage: false,
        }
    }

    fn vm(sub: &str, rg: &str) -> VmId {
        VmId::from_parts(sub, rg, "vm1").unwrap()
    }

    #[test]
    fn only_admins_write_policies() {
        assert!(authorize_vm(
            &caller(&[(Role::Admin, "/")]),
            Action::WritePolicy,
            &vm("s1", "rg")
        )
        .is_ok());
        for role in [Role::Approver, Role::Requester, Role::Auditor, Role::Bot] {
            assert!(authorize_vm(
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
        assert!(authorize_vm(&c, Action::WritePolicy, &vm("s1", "RG")).is_ok());
        assert!(authorize_vm(&c, Action::WritePolicy, &vm("s1", "rg2")).is_err());
        assert!(authorize_vm(&c, Action::WritePolicy, &vm("s2", "rg")).is_err());
    }

    #[test]
    fn assignments_apply_by_object_id_kind_and_group() {
        let assignment = |id: &str, principal: &str, kind: PrincipalType| RoleAssignment {
            id: id.into(),
            principal_id: principal.into(),
            principal_type: kind,
            role: Role::Approver,
            scope: Scope::parse("/subscriptions/s1").unwrap(),
        };
        let mut c = caller(&[]);
        add_assigned_roles(
            &mut c,
            vec![
                assignment("direct", "oid", PrincipalType::User),
                assignment("as-app", "oid", PrincipalType::ServicePrincipal),
                assignment("group", "group-1", PrincipalType::Group),
                assignment("other-group", "group-2", PrincipalType::Group),
            ],
        );
        let via: Vec<_> = c
            .roles
            .iter()
            .map(|g| g.assignment.clone().unwrap())
            .collect();
        assert_eq!(via, ["direct", "group"]);
        assert!(authorize_vm(&c, Action::DecideRequest, &vm("s1", "rg")).is_ok());
        assert!(authorize_vm(&c, Action::DecideRequest, &vm("s2", "rg")).is_err());
    }

    #[test]
    fn only_app_only_bot_tokens_act_on_behalf_of_users() {
        let mut bot = caller(&[(Role::Bot, "/")]);
        assert!(
            authorize_vm(&bot, Action::SubmitOnBehalfOf, &vm("s1", "rg")).is_err(),
            "a user with Jit.Bot"
        );
        bot.kind = CallerKind::ServicePrincipal;
        assert!(authorize_vm(&bot, Action::SubmitOnBehalfOf, &vm("s1", "rg")).is_ok());
        let mut admin_app = caller(&[(Role::Admin, "/")]);
        admin_app.kind = CallerKind::ServicePrincipal;
        assert!(
            authorize_vm(&admin_app, Action::SubmitOnBehalfOf, &vm("s1", "rg")).is_err(),
            "needs Jit.Bot"
        );
    }

    #[test]
    fn a_refusal_explains_the_groups_overage() {
        let mut c = caller(&[]);
        c.groups_overage = true;
        let Denied(why) = authorize_vm(&c, Action::WritePolicy, &vm("s1", "rg")).unwrap_err();
        assert!(why.contains("groups overage"), "{why}");
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
