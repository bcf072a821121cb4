//! The authorization matrix: every role, granted at every scope level (and at scopes that
//! only look related), for user and app-only callers, against every action, compared with
//! API.md's role table as written out here by hand. Then the same table over HTTP for the
//! routes that exist, with the roles coming from stored role assignments.

mod common;

use common::{TestApp, SUB};
use jitgate::auth::dev::DevTokenSpec;
use jitgate::auth::{Caller, CallerKind};
use jitgate::domain::{Principal, Scope};
use jitgate::rbac::{authorize, Action, Role, RoleGrant};
use reqwest::Method;
use serde_json::json;

/// API.md's table, one line per action: the roles that may do it.
fn allowed(action: Action) -> &'static [Role] {
    use Role::*;
    match action {
        // Everyone with a role needs to see what may be requested on a VM.
        Action::ReadPolicy => &[Admin, Approver, Requester, Auditor, Bot],
        Action::WritePolicy => &[Admin],
        Action::SubmitRequest => &[Admin, Requester],
        Action::SubmitOnBehalfOf => &[Bot],
        Action::ReadAnyRequest => &[Admin, Approver, Auditor],
        Action::DecideRequest => &[Admin, Approver],
        Action::RevokeAnyGrant => &[Admin, Approver],
        Action::ReadGrants => &[Admin, Auditor],
        Action::ReadAudit => &[Admin, Auditor],
        Action::ReadRoleAssignments => &[Admin, Auditor],
        Action::WriteRoleAssignments => &[Admin],
        Action::ReadWebhooks => &[Admin, Auditor],
        Action::ManageWebhooks => &[Admin],
    }
}

const OTHER_SUB: &str = "00000000-0000-0000-0000-0000000000b2";

fn rg(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

fn vm(rg_name: &str, vm: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{vm}",
        rg(rg_name)
    )
}

/// Where a role may be granted, and which of the targets (VM `rg-web/vm1`, its resource
/// group, its subscription) each grant covers.
fn grant_scopes() -> Vec<(&'static str, String, [bool; 3])> {
    vec![
        ("tenant", "/".into(), [true, true, true]),
        (
            "subscription",
            format!("/subscriptions/{SUB}"),
            [true, true, true],
        ),
        (
            "subscription, upper case",
            format!("/subscriptions/{}", SUB.to_uppercase()),
            [true, true, true],
        ),
        ("resource group", rg("rg-web"), [true, true, false]),
        (
            "resource group, upper case",
            rg("RG-WEB"),
            [true, true, false],
        ),
        ("vm", vm("rg-web", "vm1"), [true, false, false]),
        (
            "another subscription",
            format!("/subscriptions/{OTHER_SUB}"),
            [false, false, false],
        ),
        // Prefix confusion: a string prefix that is not a whole path segment.
        (
            "subscription id prefix",
            format!("/subscriptions/{}", &SUB[..SUB.len() - 1]),
            [false, false, false],
        ),
        (
            "subscription id extended",
            format!("/subscriptions/{SUB}0"),
            [false, false, false],
        ),
        ("resource group prefix", rg("rg-we"), [false, false, false]),
        (
            "resource group extended",
            rg("rg-web2"),
            [false, false, false],
        ),
        ("vm name prefix", vm("rg-web", "vm"), [false, false, false]),
        ("another vm", vm("rg-web", "vm10"), [false, false, false]),
        (
            "same vm name, another group",
            vm("rg-db", "vm1"),
            [false, false, false],
        ),
    ]
}

fn targets() -> [Scope; 3] {
    [
        Scope::parse(&vm("rg-web", "vm1")).unwrap(),
        Scope::parse(&rg("rg-web")).unwrap(),
        Scope::parse(&format!("/subscriptions/{SUB}")).unwrap(),
    ]
}

fn caller(role: Role, scope: &str, kind: CallerKind) -> Caller {
    Caller {
        principal: Principal {
            id: "oid".into(),
            name: "someone".into(),
        },
        kind,
        roles: vec![RoleGrant {
            role,
            scope: Scope::parse(scope).unwrap(),
            assignment: None,
        }],
        groups: vec![],
        groups_overage: false,
    }
}

#[test]
fn every_role_scope_kind_and_action_decides_as_the_table_says() {
    let mut cases = 0;
    let mut failures = vec![];
    for role in Role::ALL {
        for (level, scope, covers) in grant_scopes() {
            for kind in [CallerKind::User, CallerKind::ServicePrincipal] {
                for (target, target_covered) in targets().iter().zip(covers) {
                    for action in Action::ALL {
                        // Acting on behalf of a user is for app-only tokens alone.
                        let kind_ok = action != Action::SubmitOnBehalfOf
                            || kind == CallerKind::ServicePrincipal;
                        let expected = allowed(action).contains(&role) && target_covered && kind_ok;
                        let got = authorize(&caller(role, &scope, kind), action, target).is_ok();
                        cases += 1;
                        if got != expected {
                            failures.push(format!(
                                "{role} at {level} ({kind:?}) {action:?} on {target}: expected {expected}, got {got}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cases, 5 * 14 * 2 * 3 * Action::ALL.len());
    println!("authorization matrix: {cases} cases");
}

#[test]
fn no_role_at_all_allows_nothing_anywhere() {
    let nobody = Caller {
        roles: vec![],
        ..caller(Role::Admin, "/", CallerKind::User)
    };
    for action in Action::ALL {
        for target in targets().iter().chain([&Scope::Tenant]) {
            assert!(
                authorize(&nobody, action, target).is_err(),
                "{action:?} on {target}"
            );
        }
    }
}

/// The same table over HTTP: each (role, scope) is a user holding only a stored role
/// assignment (or, for tenant-wide, the app role in its token), trying each route.
#[tokio::test]
async fn the_routes_decide_as_the_table_says() {
    let app = TestApp::spawn().await;
    let root = app.admin();
    let mut cases = 0;
    let mut failures = vec![];
    for role in Role::ALL {
        for (i, (level, scope, covers)) in grant_scopes().into_iter().enumerate() {
            let user = format!("{role}-{i}@example.com");
            let oid = format!("user-{role}-{i}");
            let mut spec = DevTokenSpec::user(&user, &[]);
            spec.oid = Some(oid.clone());
            if scope == "/" {
                spec.roles = vec![role];
            } else {
                let put = app
                    .assign(
                        &root,
                        &format!("m-{role}-{i}"),
                        (&oid, "User"),
                        role,
                        &scope,
                    )
                    .await;
                assert!(
                    put.status().is_success(),
                    "assigning {role} at {scope}: {}",
                    put.status()
                );
            }
            let token = app.key.mint(&spec).unwrap();
            // Every case starts from the same state: vm1 has a policy.
            assert!(app
                .put_policy(&root, "vm1", json!({}))
                .await
                .status()
                .is_success());
            let on_vm = covers[0];
            let may = |action: Action| allowed(action).contains(&role);

            let mut check = |what: &str, status: u16, expect_ok: bool, ok: &[u16]| {
                cases += 1;
                let got_ok = ok.contains(&status);
                let denied = status == 403;
                if got_ok != expect_ok || (!expect_ok && !denied) {
                    failures.push(format!(
                        "{role} at {level}: {what} answered {status}, expected {}",
                        if expect_ok { "success" } else { "403" }
                    ));
                }
            };
            let status = app.get_policy(&token, "vm1").await.status().as_u16();
            check(
                "GET policy",
                status,
                may(Action::ReadPolicy) && on_vm,
                &[200],
            );
            let status = app
                .put_policy(&token, "vm1", json!({}))
                .await
                .status()
                .as_u16();
            check(
                "PUT policy",
                status,
                may(Action::WritePolicy) && on_vm,
                &[200],
            );
            let status = app
                .request(Method::DELETE, &common::policy_path("vm1"), &token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            check(
                "DELETE policy",
                status,
                may(Action::WritePolicy) && on_vm,
                &[204],
            );
            let status = app
                .assign(
                    &token,
                    &format!("x-{role}-{i}"),
                    (&format!("delegate-{role}-{i}"), "User"),
                    Role::Requester,
                    &vm("rg-web", "vm1"),
                )
                .await
                .status()
                .as_u16();
            check(
                "PUT role assignment at the VM",
                status,
                may(Action::WriteRoleAssignments) && on_vm,
                &[201],
            );
            let status = app
                .request(Method::GET, "/v1/role-assignments", &token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            // Listing needs the role somewhere; what it shows is then limited to its scopes.
            check(
                "GET role assignments",
                status,
                may(Action::ReadRoleAssignments),
                &[200],
            );

            // The policy list shows vm1 exactly when the caller may read vm1's policy.
            assert!(app
                .put_policy(&root, "vm1", json!({}))
                .await
                .status()
                .is_success());
            let list = app.get_json("/v1/policies", &token).await;
            let shows_vm1 = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["vmId"] == common::vm_id("vm1"));
            cases += 1;
            if shows_vm1 != (may(Action::ReadPolicy) && on_vm) {
                failures.push(format!(
                    "{role} at {level}: the policy list shows vm1: {shows_vm1}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("authorization matrix over HTTP: {cases} cases");
}
