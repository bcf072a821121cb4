//! One suite, every backend: each test runs on SQLite always, and on PostgreSQL when
//! `JITGATE_TEST_POSTGRES_URL` is set (`.ci/run` sets it). Each test has its own database.

mod common;

use chrono::{Duration, Utc};
use common::{assert_chain_ok, TestDb};
use jitgate::audit::AuditEvent;
use jitgate::domain::{DurationLimits, Policy, PolicyDraft, Principal, Scope, VmId};
use jitgate::rbac::{PrincipalType, Role, RoleAssignment};
use jitgate::store::{
    DynStore, EnforcementState, PageRequest, PolicyFilter, PolicyPut, Precondition,
    RoleAssignmentFilter, RoleAssignmentPut, StoreError,
};
use serde_json::json;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::sqlite();
                    super::$name(db.store().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else {
                        eprintln!("JITGATE_TEST_POSTGRES_URL is not set: the PostgreSQL run of this test is skipped");
                        return;
                    };
                    super::$name(db.store().await).await;
                }
            )*
        }
    };
}

conformance!(
    answers_ping,
    creates_then_replaces_keeping_the_creation_time,
    finds_a_policy_whatever_the_case_of_its_id,
    a_stale_etag_changes_nothing,
    if_none_match_creates_only,
    delete_returns_what_it_removed,
    pages_are_keyset_stable_while_rows_are_added,
    lists_filter_by_subscription_resource_group_and_scope,
    every_write_appends_one_chained_audit_event,
    concurrent_writers_keep_one_unforked_chain,
    role_assignments_are_created_replaced_and_deleted_with_audit,
    a_second_assignment_of_the_same_grant_conflicts,
    role_assignments_list_within_scopes_on_whole_segments,
    role_assignments_for_finds_users_and_groups,
);

fn vm(sub: &str, rg: &str, name: &str) -> VmId {
    VmId::from_parts(sub, rg, name).unwrap()
}

fn alice() -> Principal {
    Principal {
        id: "oid-alice".into(),
        name: "alice@example.com".into(),
    }
}

fn policy(ports: &[u16]) -> Policy {
    let draft: PolicyDraft = serde_json::from_value(json!({
        "ports": ports.iter().map(|p| json!({ "number": p })).collect::<Vec<_>>()
    }))
    .unwrap();
    Policy::parse(draft, &DurationLimits::with_min("PT5M".parse().unwrap())).unwrap()
}

fn put(vm: &VmId, ports: &[u16], etag: &str, precondition: Precondition) -> PolicyPut {
    PolicyPut {
        vm: vm.clone(),
        policy: policy(ports),
        etag: format!("\"{etag}\""),
        precondition,
        by: alice(),
        now: Utc::now(),
    }
}

async fn all_events(store: &DynStore) -> Vec<AuditEvent> {
    store.audit_events_after(0, 10_000).await.unwrap()
}

async fn answers_ping(store: DynStore) {
    store.ping().await.unwrap();
}

async fn creates_then_replaces_keeping_the_creation_time(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    let first = store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.policy.enforcement.state, EnforcementState::Pending);
    let mut second_put = put(&id, &[22, 3389], "e2", Precondition::None);
    second_put.now = Utc::now() + Duration::seconds(5);
    let second = store.put_policy(second_put).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.policy.created_at, first.policy.created_at);
    assert!(second.policy.updated_at > first.policy.updated_at);
    let read = store.get_policy(&id).await.unwrap().unwrap();
    assert_eq!(read, second.policy);
    assert_eq!(read.policy.ports.len(), 2);
    assert_eq!(read.etag, "\"e2\"");
}

async fn finds_a_policy_whatever_the_case_of_its_id(store: DynStore) {
    let id = vm("S1", "RG-Web", "Vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let other_case = VmId::parse(&id.as_str().to_ascii_lowercase()).unwrap();
    let read = store.get_policy(&other_case).await.unwrap().unwrap();
    assert_eq!(read.vm.as_str(), id.as_str(), "returned as first stored");
    // Writing through the other spelling replaces the same policy.
    let again = store
        .put_policy(put(&other_case, &[22], "e2", Precondition::None))
        .await
        .unwrap();
    assert!(!again.created);
}

async fn a_stale_etag_changes_nothing(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let events_before = all_events(&store).await.len();
    let stale = store
        .put_policy(put(
            &id,
            &[3389],
            "e2",
            Precondition::EtagIn(vec!["\"nope\"".into()]),
        ))
        .await;
    assert!(matches!(stale, Err(StoreError::PreconditionFailed)));
    let missing = store
        .put_policy(put(
            &vm("s1", "rg", "absent"),
            &[22],
            "e3",
            Precondition::Exists,
        ))
        .await;
    assert!(matches!(missing, Err(StoreError::PreconditionFailed)));
    assert!(store
        .get_policy(&vm("s1", "rg", "absent"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.get_policy(&id).await.unwrap().unwrap().etag, "\"e1\"");
    assert_eq!(
        all_events(&store).await.len(),
        events_before,
        "a refused write leaves no audit event"
    );

    let current = store
        .put_policy(put(
            &id,
            &[3389],
            "e4",
            Precondition::EtagIn(vec!["\"x\"".into(), "\"e1\"".into()]),
        ))
        .await
        .unwrap();
    assert_eq!(current.policy.etag, "\"e4\"");
    let stale_delete = store
        .delete_policy(
            &id,
            &Precondition::EtagIn(vec!["\"e1\"".into()]),
            &alice(),
            Utc::now(),
        )
        .await;
    assert!(matches!(stale_delete, Err(StoreError::PreconditionFailed)));
    assert!(store.get_policy(&id).await.unwrap().is_some());
}

async fn if_none_match_creates_only(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    assert!(
        store
            .put_policy(put(&id, &[22], "e1", Precondition::Absent))
            .await
            .unwrap()
            .created
    );
    let again = store
        .put_policy(put(&id, &[3389], "e2", Precondition::Absent))
        .await;
    assert!(matches!(again, Err(StoreError::PreconditionFailed)));
    assert_eq!(store.get_policy(&id).await.unwrap().unwrap().etag, "\"e1\"");
}

async fn delete_returns_what_it_removed(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let deleted = store
        .delete_policy(&id, &Precondition::None, &alice(), Utc::now())
        .await
        .unwrap();
    assert_eq!(deleted.etag, "\"e1\"");
    assert!(store.get_policy(&id).await.unwrap().is_none());
    let again = store
        .delete_policy(&id, &Precondition::None, &alice(), Utc::now())
        .await;
    assert!(matches!(again, Err(StoreError::NotFound)));
    let events = all_events(&store).await;
    assert_eq!(events.last().unwrap().event_type, "policy.deleted");
}

async fn pages_are_keyset_stable_while_rows_are_added(store: DynStore) {
    for name in ["vm2", "vm4", "vm6", "vm8"] {
        store
            .put_policy(put(&vm("s1", "rg", name), &[22], name, Precondition::None))
            .await
            .unwrap();
    }
    let filter = PolicyFilter::default();
    let first = store
        .list_policies(
            &filter,
            &PageRequest {
                limit: 2,
                after: None,
            },
        )
        .await
        .unwrap();
    let names: Vec<&str> = first.items.iter().map(|p| p.vm.name()).collect();
    assert_eq!(names, ["vm2", "vm4"]);
    // Rows added before and after the cursor do not shift the next page.
    for name in ["vm1", "vm3", "vm9"] {
        store
            .put_policy(put(&vm("s1", "rg", name), &[22], name, Precondition::None))
            .await
            .unwrap();
    }
    let second = store
        .list_policies(
            &filter,
            &PageRequest {
                limit: 2,
                after: first.next_after.clone(),
            },
        )
        .await
        .unwrap();
    let names: Vec<&str> = second.items.iter().map(|p| p.vm.name()).collect();
    assert_eq!(names, ["vm6", "vm8"]);
    let last = store
        .list_policies(
            &filter,
            &PageRequest {
                limit: 2,
                after: second.next_after.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        last.items.iter().map(|p| p.vm.name()).collect::<Vec<_>>(),
        ["vm9"]
    );
    assert!(last.next_after.is_none());
}

async fn lists_filter_by_subscription_resource_group_and_scope(store: DynStore) {
    for (sub, rg, name) in [
        ("s1", "rg-a", "vm1"),
        ("s1", "rg-b", "vm2"),
        ("s2", "rg-a", "vm3"),
        ("s10", "rg-a", "vm4"),
    ] {
        store
            .put_policy(put(&vm(sub, rg, name), &[22], name, Precondition::None))
            .await
            .unwrap();
    }
    let page = PageRequest {
        limit: 100,
        after: None,
    };
    let names = |items: Vec<jitgate::store::StoredPolicy>| {
        items
            .iter()
            .map(|p| p.vm.name().to_string())
            .collect::<Vec<_>>()
    };

    let by_sub = PolicyFilter {
        subscription: Some("S1".into()),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_policies(&by_sub, &page).await.unwrap().items),
        ["vm1", "vm2"]
    );
    let by_rg = PolicyFilter {
        subscription: Some("s1".into()),
        resource_group: Some("RG-A".into()),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_policies(&by_rg, &page).await.unwrap().items),
        ["vm1"]
    );

    let scoped = PolicyFilter {
        within: Some(vec![
            Scope::parse("/subscriptions/s1/resourceGroups/rg-b").unwrap(),
            Scope::parse("/subscriptions/s2").unwrap(),
        ]),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_policies(&scoped, &page).await.unwrap().items),
        ["vm2", "vm3"]
    );
    let nothing = PolicyFilter {
        within: Some(vec![]),
        ..Default::default()
    };
    assert!(store
        .list_policies(&nothing, &page)
        .await
        .unwrap()
        .items
        .is_empty());
    let one_vm = PolicyFilter {
        within: Some(vec![Scope::Vm(vm("S10", "RG-A", "VM4"))]),
        ..Default::default()
    };
    assert_eq!(
        names(store.list_policies(&one_vm, &page).await.unwrap().items),
        ["vm4"]
    );
}

async fn every_write_appends_one_chained_audit_event(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    store
        .put_policy(put(&id, &[3389], "e2", Precondition::None))
        .await
        .unwrap();
    store
        .delete_policy(&id, &Precondition::None, &alice(), Utc::now())
        .await
        .unwrap();
    let events = all_events(&store).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["policy.created", "policy.updated", "policy.deleted"]
    );
    assert!(events
        .iter()
        .all(|e| e.actor == alice() && e.resource_id == id.as_str()));
    assert_eq!(events[1].data["policy"]["ports"][0]["number"], 3389);
    assert_eq!(events[1].data["etag"], "\"e2\"");
    assert_chain_ok(&events);
}

async fn concurrent_writers_keep_one_unforked_chain(store: DynStore) {
    let writers: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Three writers per VM, so that rows and the chain head are both contended.
                let id = vm("s1", "rg", &format!("vm{}", i % 8));
                store
                    .put_policy(put(&id, &[22], &format!("e{i}"), Precondition::None))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for w in writers {
        if w.await.unwrap().created {
            created += 1;
        }
    }
    assert_eq!(created, 8, "each VM's policy is created exactly once");
    let events = all_events(&store).await;
    assert_eq!(events.len(), 24);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "policy.created")
            .count(),
        8
    );
    assert_chain_ok(&events);
}

fn assignment(
    id: &str,
    principal: &str,
    kind: PrincipalType,
    role: Role,
    scope: &str,
) -> RoleAssignmentPut {
    RoleAssignmentPut {
        assignment: RoleAssignment {
            id: id.into(),
            principal_id: principal.into(),
            principal_type: kind,
            role,
            scope: Scope::parse(scope).unwrap(),
        },
        by: alice(),
        now: Utc::now(),
    }
}

async fn role_assignments_are_created_replaced_and_deleted_with_audit(store: DynStore) {
    let first = store
        .put_role_assignment(assignment(
            "a1",
            "oid-bob",
            PrincipalType::User,
            Role::Approver,
            "/subscriptions/s1",
        ))
        .await
        .unwrap();
    assert!(first.created);
    let again = store
        .put_role_assignment(assignment(
            "a1",
            "oid-bob",
            PrincipalType::User,
            Role::Admin,
            "/subscriptions/s1/resourceGroups/rg",
        ))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.assignment.created_at, first.assignment.created_at);
    let got = store.get_role_assignment("a1").await.unwrap().unwrap();
    assert_eq!(got.assignment.role, Role::Admin);
    assert_eq!(
        got.assignment.scope.to_string(),
        "/subscriptions/s1/resourceGroups/rg"
    );
    assert_eq!(got.updated_by, alice());

    let deleted = store
        .delete_role_assignment("a1", &alice(), Utc::now())
        .await
        .unwrap();
    assert_eq!(deleted.assignment.role, Role::Admin);
    assert!(store.get_role_assignment("a1").await.unwrap().is_none());
    assert!(matches!(
        store
            .delete_role_assignment("a1", &alice(), Utc::now())
            .await,
        Err(StoreError::NotFound)
    ));
    let events = store.audit_events_after(0, 100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "roleAssignment.created",
            "roleAssignment.updated",
            "roleAssignment.deleted"
        ]
    );
    assert_eq!(events[0].data["role"], "Jit.Approver");
    assert_eq!(events[2].resource_id, "/roleAssignments/a1");
    assert_chain_ok(&events);
}

async fn a_second_assignment_of_the_same_grant_conflicts(store: DynStore) {
    store
        .put_role_assignment(assignment(
            "a1",
            "oid-bob",
            PrincipalType::User,
            Role::Approver,
            "/subscriptions/S1",
        ))
        .await
        .unwrap();
    // Scopes compare case-insensitively, as ARM ids do.
    let twin = store
        .put_role_assignment(assignment(
            "a2",
            "oid-bob",
            PrincipalType::User,
            Role::Approver,
            "/subscriptions/s1",
        ))
        .await;
    assert!(
        matches!(twin, Err(StoreError::Conflict(ref why)) if why.contains("a1")),
        "{twin:?}"
    );
    assert!(store.get_role_assignment("a2").await.unwrap().is_none());
    // Nothing was written: one audit event only.
    assert_eq!(store.audit_events_after(0, 100).await.unwrap().len(), 1);
    // Another role, scope or principal is another grant.
    for (id, who, role, scope) in [
        ("a3", "oid-bob", Role::Auditor, "/subscriptions/s1"),
        ("a4", "oid-bob", Role::Approver, "/subscriptions/s2"),
        ("a5", "oid-carol", Role::Approver, "/subscriptions/s1"),
    ] {
        store
            .put_role_assignment(assignment(id, who, PrincipalType::User, role, scope))
            .await
            .unwrap();
    }
}

async fn role_assignments_list_within_scopes_on_whole_segments(store: DynStore) {
    let vm1 =
        "/subscriptions/abc/resourceGroups/rg_1/providers/Microsoft.Compute/virtualMachines/vm1";
    for (id, scope) in [
        ("r1", "/subscriptions/abc"),
        ("r2", "/subscriptions/ABC/resourceGroups/rg_1"),
        ("r3", vm1),
        ("r4", "/subscriptions/abcd"),
        ("r5", "/subscriptions/abc/resourceGroups/rgx1"),
        ("r6", "/subscriptions/abcd/resourceGroups/rg_1"),
    ] {
        store
            .put_role_assignment(assignment(
                id,
                &format!("oid-{id}"),
                PrincipalType::User,
                Role::Requester,
                scope,
            ))
            .await
            .unwrap();
    }
    let ids = |within: Option<Vec<&str>>| {
        let store = store.clone();
        let filter = RoleAssignmentFilter {
            within: within.map(|w| w.iter().map(|s| Scope::parse(s).unwrap()).collect()),
            ..Default::default()
        };
        async move {
            let page = store
                .list_role_assignments(
                    &filter,
                    &PageRequest {
                        limit: 100,
                        after: None,
                    },
                )
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|a| a.assignment.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(None).await, ["r1", "r2", "r3", "r4", "r5", "r6"]);
    assert_eq!(
        ids(Some(vec!["/subscriptions/abc"])).await,
        ["r1", "r2", "r3", "r5"]
    );
    // `rg_1` must not match `rgx1` (an '_' in a LIKE pattern would).
    assert_eq!(
        ids(Some(vec!["/subscriptions/abc/resourcegroups/RG_1"])).await,
        ["r2", "r3"]
    );
    assert_eq!(
        ids(Some(vec![vm1, "/subscriptions/abcd"])).await,
        ["r3", "r4", "r6"]
    );
    assert_eq!(ids(Some(vec![])).await, Vec::<String>::new());
    assert_eq!(ids(Some(vec!["/"])).await.len(), 6);

    // Keyset pages, filtered by principal and role.
    let first = store
        .list_role_assignments(
            &RoleAssignmentFilter::default(),
            &PageRequest {
                limit: 4,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 4);
    let rest = store
        .list_role_assignments(
            &RoleAssignmentFilter::default(),
            &PageRequest {
                limit: 4,
                after: first.next_after,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items
            .iter()
            .map(|a| a.assignment.id.as_str())
            .collect::<Vec<_>>(),
        ["r5", "r6"]
    );
    assert!(rest.next_after.is_none());
    let by_principal = RoleAssignmentFilter {
        principal_id: Some("oid-r4".into()),
        role: Some(Role::Requester),
        ..Default::default()
    };
    let page = store
        .list_role_assignments(
            &by_principal,
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let other_role = RoleAssignmentFilter {
        role: Some(Role::Admin),
        ..Default::default()
    };
    assert!(store
        .list_role_assignments(
            &other_role,
            &PageRequest {
                limit: 10,
                after: None
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn role_assignments_for_finds_users_and_groups(store: DynStore) {
    store
        .put_role_assignment(assignment(
            "u",
            "oid-bob",
            PrincipalType::User,
            Role::Approver,
            "/subscriptions/s1",
        ))
        .await
        .unwrap();
    store
        .put_role_assignment(assignment(
            "g",
            "grp-1",
            PrincipalType::Group,
            Role::Admin,
            "/subscriptions/s2",
        ))
        .await
        .unwrap();
    store
        .put_role_assignment(assignment(
            "x",
            "grp-2",
            PrincipalType::Group,
            Role::Admin,
            "/subscriptions/s3",
        ))
        .await
        .unwrap();
    let found = store
        .role_assignments_for(&["oid-bob".into(), "grp-1".into()])
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["g", "u"]
    );
    assert!(store.role_assignments_for(&[]).await.unwrap().is_empty());
}
