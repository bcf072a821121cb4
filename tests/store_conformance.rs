//! One suite, every backend: each test runs on SQLite always, and on PostgreSQL when
//! `JITGATE_TEST_POSTGRES_URL` is set (`.ci/run` sets it). Each test has its own database.

mod common;

use chrono::{Duration, SubsecRound, Utc};
use common::{assert_chain_ok, TestDb};
use jitgate::audit::{AuditEvent, NewAuditEvent};
use jitgate::domain::grant::{Grant, GrantStatus};
use jitgate::domain::{DurationLimits, Policy, PolicyDraft, Principal, Scope, VmId};
use jitgate::rbac::{PrincipalType, Role, RoleAssignment};
use jitgate::store::{
    AuditFilter, DynStore, Enforcement, EnforcementState, GrantFilter, Job, PageRequest,
    PolicyFilter, PolicyPut, Precondition, RoleAssignmentFilter, RoleAssignmentPut, StoreError,
    JOB_ENFORCE_POLICY,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

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
    a_policy_write_queues_one_enforcement_job_coalesced_until_claimed,
    a_refused_write_queues_no_job,
    a_claimed_job_is_leased_until_its_lease_runs_out,
    a_renewed_lease_keeps_a_running_job_and_only_its_owner_renews,
    retry_releases_a_job_until_run_after_and_keeps_its_error,
    claims_honour_the_limit_and_take_the_oldest_due_jobs_first,
    concurrent_claimers_take_every_job_exactly_once,
    a_write_racing_a_claim_is_never_left_unenforced,
    record_enforcement_applies_only_to_the_etag_it_enforced,
    append_event_appends_a_chained_event,
    grant_history_filters_periods_scopes_and_pages,
    audit_events_filter_and_page_in_chain_order,
    webhook_deliveries_are_queued_with_the_event_that_they_announce,
    chat_identities_map_one_chat_account_to_one_user,
    due_jobs_are_counted_up_to_a_bound,
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

// The outbox: jobs queued by policy writes, claimed by dispatchers under a lease.

/// The lease dispatchers take (as `dispatch` does: two minutes).
fn lease() -> Duration {
    Duration::seconds(120)
}

async fn pending(store: &DynStore) -> Vec<Job> {
    store.pending_jobs().await.unwrap()
}

/// Claims what is due at `now` for `owner`, asserting that it is exactly one job.
async fn claim_one(store: &DynStore, owner: &str, now: chrono::DateTime<Utc>) -> Job {
    let mut jobs = store.claim_jobs(owner, now, lease(), 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{owner} claims exactly one job: {jobs:?}");
    jobs.pop().unwrap()
}

fn subjects(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter().map(|j| j.subject.clone()).collect()
}

async fn a_policy_write_queues_one_enforcement_job_coalesced_until_claimed(store: DynStore) {
    assert!(pending(&store).await.is_empty());
    // Mixed case: the subject is the VM's key, the payload its id as written.
    let id = vm("S1", "RG-Web", "Vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let jobs = pending(&store).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let first = jobs[0].clone();
    assert_eq!(first.kind, JOB_ENFORCE_POLICY);
    assert_eq!(first.subject, id.key());
    assert_eq!(first.payload, json!({ "vmId": id.as_str() }));
    assert_eq!(first.attempts, 0);
    assert_eq!(first.last_error, None);

    // Writes while the job waits unclaimed fold into it: it reads the policy when it runs.
    store
        .put_policy(put(&id, &[22, 3389], "e2", Precondition::None))
        .await
        .unwrap();
    assert_eq!(
        pending(&store).await,
        std::slice::from_ref(&first),
        "a rewrite is coalesced"
    );
    store
        .delete_policy(&id, &Precondition::None, &alice(), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        pending(&store).await,
        std::slice::from_ref(&first),
        "a delete is coalesced"
    );
    store
        .put_policy(put(&id, &[22], "e3", Precondition::Absent))
        .await
        .unwrap();
    assert_eq!(
        pending(&store).await,
        std::slice::from_ref(&first),
        "a re-create is coalesced"
    );

    // Another VM has a job of its own.
    let other = vm("s1", "rg-web", "vm2");
    store
        .put_policy(put(&other, &[22], "o1", Precondition::None))
        .await
        .unwrap();
    let jobs = pending(&store).await;
    assert_eq!(jobs.len(), 2);
    let other_job = jobs[1].clone();
    assert_eq!(other_job.subject, other.key());

    // Once claimed, the job may already have read the policy: a new write queues a new job.
    let claimed = store
        .claim_jobs("d1", Utc::now(), lease(), 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, first.id);
    assert_eq!(claimed[0].attempts, 1);
    store
        .put_policy(put(&id, &[3389], "e4", Precondition::None))
        .await
        .unwrap();
    let jobs = pending(&store).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let second = jobs
        .iter()
        .find(|j| j.subject == id.key() && j.id != first.id)
        .expect("a new job for the VM")
        .clone();
    assert!(second.id > first.id);
    assert_eq!(second.attempts, 0);
    assert_eq!(second.payload, json!({ "vmId": id.as_str() }));
    // ... and the new job coalesces the writes after it, deletes included.
    store
        .put_policy(put(&id, &[3389, 22], "e5", Precondition::None))
        .await
        .unwrap();
    store
        .delete_policy(&id, &Precondition::None, &alice(), Utc::now())
        .await
        .unwrap();
    assert_eq!(pending(&store).await.len(), 3);

    // The claimed job is leased: another dispatcher takes the waiting ones only.
    let rest = store
        .claim_jobs("d2", Utc::now(), lease(), 10)
        .await
        .unwrap();
    let ids: BTreeSet<i64> = rest.iter().map(|j| j.id).collect();
    assert_eq!(ids, BTreeSet::from([other_job.id, second.id]));
    assert!(store.finish_job(first.id, "d1").await.unwrap());
    for job in &rest {
        assert!(store.finish_job(job.id, "d2").await.unwrap());
    }
    assert!(pending(&store).await.is_empty());
}

async fn a_refused_write_queues_no_job(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    // Run the write's job, so that any job queued below would be a new one.
    let job = claim_one(&store, "d1", Utc::now()).await;
    assert!(store.finish_job(job.id, "d1").await.unwrap());
    assert!(pending(&store).await.is_empty());
    let events_before = all_events(&store).await.len();

    let refused = [
        store
            .put_policy(put(
                &id,
                &[3389],
                "e2",
                Precondition::EtagIn(vec!["\"stale\"".into()]),
            ))
            .await
            .map(|_| ()),
        store
            .put_policy(put(&id, &[3389], "e3", Precondition::Absent))
            .await
            .map(|_| ()),
        store
            .put_policy(put(
                &vm("s1", "rg", "absent"),
                &[22],
                "e4",
                Precondition::Exists,
            ))
            .await
            .map(|_| ()),
        store
            .delete_policy(
                &id,
                &Precondition::EtagIn(vec!["\"stale\"".into()]),
                &alice(),
                Utc::now(),
            )
            .await
            .map(|_| ()),
    ];
    for (i, outcome) in refused.iter().enumerate() {
        assert!(
            matches!(outcome, Err(StoreError::PreconditionFailed)),
            "write {i}: {outcome:?}"
        );
    }
    let missing = store
        .delete_policy(
            &vm("s1", "rg", "absent"),
            &Precondition::None,
            &alice(),
            Utc::now(),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    assert!(
        pending(&store).await.is_empty(),
        "a refused write rolls its job back with it"
    );
    assert_eq!(all_events(&store).await.len(), events_before);
    assert_eq!(store.get_policy(&id).await.unwrap().unwrap().etag, "\"e1\"");

    // A write that goes through still queues.
    store
        .put_policy(put(
            &id,
            &[3389],
            "e5",
            Precondition::EtagIn(vec!["\"e1\"".into()]),
        ))
        .await
        .unwrap();
    assert_eq!(pending(&store).await.len(), 1);
}

async fn a_claimed_job_is_leased_until_its_lease_runs_out(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let now = Utc::now();
    let first = claim_one(&store, "a", now).await;
    assert_eq!(first.attempts, 1);
    assert_eq!(first.subject, id.key());

    for later in [
        Duration::zero(),
        Duration::seconds(60),
        Duration::seconds(119),
    ] {
        assert!(
            store
                .claim_jobs("b", now + later, lease(), 10)
                .await
                .unwrap()
                .is_empty(),
            "leased to a for {later} more"
        );
    }
    // a never finished (it died, say): once the lease has run out, b takes the job over.
    let again = claim_one(&store, "b", now + Duration::seconds(121)).await;
    assert_eq!(again.id, first.id);
    assert_eq!(again.attempts, 2);
    // b's lease counts from its own claim.
    assert!(store
        .claim_jobs("c", now + Duration::seconds(200), lease(), 10)
        .await
        .unwrap()
        .is_empty());

    // a lost the lease: it can neither finish nor reschedule the job.
    assert!(!store.finish_job(first.id, "a").await.unwrap());
    assert!(!store.retry_job(first.id, "a", now, "late").await.unwrap());
    let jobs = pending(&store).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 2);
    assert_eq!(jobs[0].last_error, None);

    assert!(store.finish_job(first.id, "b").await.unwrap());
    assert!(pending(&store).await.is_empty());
    assert!(
        !store.finish_job(first.id, "b").await.unwrap(),
        "already gone"
    );
    assert!(store
        .claim_jobs("c", now + Duration::days(1), lease(), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn retry_releases_a_job_until_run_after_and_keeps_its_error(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let now = Utc::now();
    let job = claim_one(&store, "a", now).await;

    // Only the lease holder may reschedule or finish the job.
    assert!(!store.retry_job(job.id, "b", now, "not mine").await.unwrap());
    assert!(!store.finish_job(job.id, "b").await.unwrap());
    assert!(!store
        .retry_job(job.id + 1000, "a", now, "no such job")
        .await
        .unwrap());
    let untouched = pending(&store).await;
    assert_eq!(untouched.len(), 1);
    assert_eq!(untouched[0].last_error, None);
    assert_eq!(untouched[0].attempts, 1);
    assert!(
        store
            .claim_jobs("b", now, lease(), 10)
            .await
            .unwrap()
            .is_empty(),
        "still leased to a"
    );

    let run_after = now + Duration::seconds(30);
    assert!(store
        .retry_job(job.id, "a", run_after, "ARM throttled (429)")
        .await
        .unwrap());
    let waiting = pending(&store).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].last_error.as_deref(),
        Some("ARM throttled (429)")
    );
    assert_eq!(waiting[0].attempts, 1);

    // Released, but not due before run_after.
    for at in [now, now + Duration::seconds(29)] {
        assert!(store
            .claim_jobs("b", at, lease(), 10)
            .await
            .unwrap()
            .is_empty());
    }
    let again = claim_one(&store, "b", now + Duration::seconds(31)).await;
    assert_eq!(again.id, job.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.last_error.as_deref(), Some("ARM throttled (429)"));

    // a no longer holds the job.
    assert!(!store.retry_job(job.id, "a", now, "late").await.unwrap());
    assert_eq!(
        pending(&store).await[0].last_error.as_deref(),
        Some("ARM throttled (429)")
    );
    // A second failure replaces the reason.
    assert!(store
        .retry_job(job.id, "b", now + Duration::seconds(60), "ARM unavailable")
        .await
        .unwrap());
    let third = claim_one(&store, "c", now + Duration::seconds(61)).await;
    assert_eq!(third.attempts, 3);
    assert_eq!(third.last_error.as_deref(), Some("ARM unavailable"));
    assert!(store.finish_job(job.id, "c").await.unwrap());
    assert!(pending(&store).await.is_empty());
}

async fn claims_honour_the_limit_and_take_the_oldest_due_jobs_first(store: DynStore) {
    let base = Utc::now() - Duration::hours(1);
    let names = ["vm1", "vm2", "vm3", "vm4", "vm5"];
    for (i, name) in names.iter().enumerate() {
        let mut p = put(&vm("s1", "rg", name), &[22], name, Precondition::None);
        p.now = base + Duration::minutes(i as i64);
        store.put_policy(p).await.unwrap();
    }
    let key = |name: &str| vm("s1", "rg", name).key().to_string();
    let keys = |names: &[&str]| names.iter().map(|n| key(n)).collect::<BTreeSet<_>>();
    let now = Utc::now();

    assert!(
        store
            .claim_jobs("a", now, lease(), 0)
            .await
            .unwrap()
            .is_empty(),
        "a limit of 0 claims nothing"
    );
    let batch = store.claim_jobs("a", now, lease(), 2).await.unwrap();
    assert_eq!(subjects(&batch), keys(&["vm1", "vm2"]));
    let batch = store.claim_jobs("a", now, lease(), 2).await.unwrap();
    assert_eq!(subjects(&batch), keys(&["vm3", "vm4"]));
    let batch = store.claim_jobs("a", now, lease(), 2).await.unwrap();
    assert_eq!(subjects(&batch), keys(&["vm5"]));
    assert!(store
        .claim_jobs("a", now, lease(), 2)
        .await
        .unwrap()
        .is_empty());

    // Rescheduled jobs run in the order they are due, not in the order they were queued.
    let jobs = pending(&store).await;
    assert!(jobs.iter().all(|j| j.attempts == 1));
    for (i, job) in jobs.iter().enumerate() {
        // vm5 is due first, vm1 last.
        let at = now + Duration::seconds(10 - i as i64);
        assert!(store.retry_job(job.id, "a", at, "later").await.unwrap());
    }
    let later = now + Duration::minutes(1);
    let batch = store.claim_jobs("b", later, lease(), 2).await.unwrap();
    assert_eq!(subjects(&batch), keys(&["vm5", "vm4"]));
    let batch = store.claim_jobs("b", later, lease(), 1).await.unwrap();
    assert_eq!(subjects(&batch), keys(&["vm3"]));
    let batch = store.claim_jobs("b", later, lease(), 10).await.unwrap();
    assert_eq!(subjects(&batch), keys(&["vm1", "vm2"]));
    // A batch comes in id order.
    assert!(batch.windows(2).all(|w| w[0].id < w[1].id));
}

async fn concurrent_claimers_take_every_job_exactly_once(store: DynStore) {
    const JOBS: usize = 40;
    for i in 0..JOBS {
        store
            .put_policy(put(
                &vm("s1", "rg", &format!("vm{i:02}")),
                &[22],
                &format!("e{i}"),
                Precondition::None,
            ))
            .await
            .unwrap();
    }
    let queued: BTreeSet<i64> = pending(&store).await.iter().map(|j| j.id).collect();
    assert_eq!(queued.len(), JOBS);

    let now = Utc::now();
    let claimers: Vec<_> = (0..4)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let owner = format!("claimer-{c}");
                let mut mine = vec![];
                loop {
                    let batch = store.claim_jobs(&owner, now, lease(), 5).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    assert!(batch.len() <= 5, "{owner} got {} jobs", batch.len());
                    mine.extend(batch);
                }
                (owner, mine)
            })
        })
        .collect();
    let mut owner_of: BTreeMap<i64, String> = BTreeMap::new();
    for claimer in claimers {
        let (owner, jobs) = claimer.await.unwrap();
        for job in jobs {
            assert_eq!(job.attempts, 1, "job {} claimed twice", job.id);
            if let Some(other) = owner_of.insert(job.id, owner.clone()) {
                panic!("job {} claimed by both {other} and {owner}", job.id);
            }
        }
    }
    assert_eq!(
        owner_of.keys().copied().collect::<BTreeSet<_>>(),
        queued,
        "every job is claimed"
    );
    assert!(pending(&store).await.iter().all(|j| j.attempts == 1));
    for (id, owner) in &owner_of {
        assert!(store.finish_job(*id, owner).await.unwrap());
    }
    assert!(pending(&store).await.is_empty());
}

async fn a_write_racing_a_claim_is_never_left_unenforced(store: DynStore) {
    // A write coalesced into a waiting job relies on that job reading the policy after the
    // write commits. A claim committing in between must make the write queue a job of its
    // own instead. Each round races one write against one claim, the claim starting a
    // few round trips later each time to sweep the write's transaction.
    for round in 0..48u32 {
        let id = vm("s1", "rg", &format!("race{round}"));
        store
            .put_policy(put(&id, &[22], "old", Precondition::None))
            .await
            .unwrap();
        let owner = format!("d{round}");
        let claimer = {
            let (store, id, owner) = (store.clone(), id.clone(), owner.clone());
            tokio::spawn(async move {
                for _ in 0..round % 12 {
                    store.ping().await.unwrap();
                }
                let claimed = store
                    .claim_jobs(&owner, Utc::now(), lease(), 10)
                    .await
                    .unwrap();
                // What a dispatcher does next: read the policy it is to enforce.
                let seen = store.get_policy(&id).await.unwrap().map(|p| p.etag);
                (claimed, seen)
            })
        };
        let writer = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .put_policy(put(&id, &[3389], "new", Precondition::None))
                    .await
                    .unwrap()
            })
        };
        let (claimed, seen) = claimer.await.unwrap();
        writer.await.unwrap();
        let ran_it = !claimed.is_empty();
        let waiting = pending(&store)
            .await
            .iter()
            .filter(|j| j.subject == id.key() && claimed.iter().all(|c| c.id != j.id))
            .count();
        assert!(
            !ran_it || seen.as_deref() == Some("\"new\"") || waiting == 1,
            "round {round}: the claimed job read {seen:?} and no job waits for the write of \"new\""
        );
        // Drain, so the next round starts with an empty queue.
        for job in &claimed {
            assert!(store.finish_job(job.id, &owner).await.unwrap());
        }
        let later = Utc::now() + Duration::seconds(1);
        for job in store.claim_jobs("drain", later, lease(), 10).await.unwrap() {
            assert!(store.finish_job(job.id, "drain").await.unwrap());
        }
        assert!(pending(&store).await.is_empty());
    }
}

async fn record_enforcement_applies_only_to_the_etag_it_enforced(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let applied = Enforcement {
        state: EnforcementState::Applied,
        detail: "deny rules in place".into(),
        network_security_groups: vec![
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg1"
                .into(),
        ],
        firewalls: vec!["fw1".into()],
    };
    let event = |etag: &str| NewAuditEvent {
        event_type: "policy.enforced",
        actor: Principal {
            id: "jitgate".into(),
            name: "jitgate".into(),
        },
        resource_id: id.as_str().to_string(),
        request_id: None,
        data: json!({ "etag": etag }),
    };
    let before = all_events(&store).await.len();
    assert!(store
        .record_enforcement(&id, "\"e1\"", &applied, event("\"e1\""), Utc::now())
        .await
        .unwrap());
    let read = store.get_policy(&id).await.unwrap().unwrap();
    assert_eq!(read.enforcement, applied);
    assert_eq!(
        read.etag, "\"e1\"",
        "recording enforcement is no policy change"
    );
    let events = all_events(&store).await;
    assert_eq!(events.len(), before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "policy.enforced");
    assert_eq!(last.resource_id, id.as_str());
    assert_eq!(last.data["etag"], "\"e1\"");

    // A newer version is written while the job for e1 runs: e1's result must not land on it.
    store
        .put_policy(put(&id, &[3389], "e2", Precondition::None))
        .await
        .unwrap();
    let events_before = all_events(&store).await.len();
    let failed = Enforcement {
        state: EnforcementState::Failed,
        detail: "stale".into(),
        network_security_groups: vec![],
        firewalls: vec![],
    };
    assert!(!store
        .record_enforcement(&id, "\"e1\"", &failed, event("\"e1\""), Utc::now())
        .await
        .unwrap());
    let read = store.get_policy(&id).await.unwrap().unwrap();
    assert_eq!(read.etag, "\"e2\"");
    assert_eq!(read.enforcement.state, EnforcementState::Pending);
    assert_eq!(
        all_events(&store).await.len(),
        events_before,
        "no event for a stale etag"
    );

    // No policy at all: nothing recorded either.
    assert!(!store
        .record_enforcement(
            &vm("s1", "rg", "absent"),
            "\"e1\"",
            &failed,
            event("\"e1\""),
            Utc::now()
        )
        .await
        .unwrap());
    assert_eq!(all_events(&store).await.len(), events_before);

    // The current etag still records.
    assert!(store
        .record_enforcement(&id, "\"e2\"", &applied, event("\"e2\""), Utc::now())
        .await
        .unwrap());
    assert_eq!(
        store.get_policy(&id).await.unwrap().unwrap().enforcement,
        applied
    );
    let events = all_events(&store).await;
    assert_eq!(events.len(), events_before + 1);
    assert_chain_ok(&events);
}

async fn append_event_appends_a_chained_event(store: DynStore) {
    let id = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&id, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let head = all_events(&store).await.pop().unwrap();
    let now = Utc::now();
    let appended = store
        .append_event(
            NewAuditEvent {
                event_type: "nsg.ruleWritten",
                actor: Principal {
                    id: "jitgate".into(),
                    name: "jitgate".into(),
                },
                resource_id: id.as_str().to_string(),
                request_id: Some("req-1".into()),
                data: json!({ "rule": "jitgate-deny-vm1", "ports": [22] }),
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(appended.seq, head.seq + 1);
    assert_eq!(appended.prev_hash, head.hash);
    assert_eq!(appended.at, chrono::SubsecRound::trunc_subsecs(now, 6));
    let events = all_events(&store).await;
    assert_eq!(events.last().unwrap(), &appended, "stored as returned");
    assert_eq!(appended.request_id.as_deref(), Some("req-1"));
    assert_eq!(appended.data["ports"][0], 22);
    // It stands alone: no job is queued for it beyond the policy write's.
    assert_eq!(pending(&store).await.len(), 1);

    // The chain continues after it.
    store
        .put_policy(put(&id, &[3389], "e2", Precondition::None))
        .await
        .unwrap();
    let events = all_events(&store).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].prev_hash, appended.hash);
    assert_chain_ok(&events);
}

async fn a_renewed_lease_keeps_a_running_job_and_only_its_owner_renews(store: DynStore) {
    let vm = vm("s1", "rg", "vm1");
    store
        .put_policy(put(&vm, &[22], "e1", Precondition::None))
        .await
        .unwrap();
    let now = Utc::now();
    let job = claim_one(&store, "a", now).await;
    // Renewed to +300 s: still a's at +200 s, when the first lease (120 s) has run out.
    assert!(store
        .renew_lease(job.id, "a", now + Duration::seconds(300))
        .await
        .unwrap());
    assert!(!store
        .renew_lease(job.id, "b", now + Duration::seconds(900))
        .await
        .unwrap());
    assert!(store
        .claim_jobs("b", now + Duration::seconds(200), lease(), 10)
        .await
        .unwrap()
        .is_empty());
    // Not renewed again: taken by another owner once it runs out.
    let taken = claim_one(&store, "b", now + Duration::seconds(301)).await;
    assert_eq!(taken.id, job.id);
    assert!(
        !store
            .renew_lease(job.id, "a", now + Duration::seconds(400))
            .await
            .unwrap(),
        "a lost it"
    );
}

fn history_grant(i: u32, rg: &str, port: u16, start: chrono::DateTime<Utc>, minutes: i64) -> Grant {
    let end = start + Duration::minutes(minutes);
    Grant {
        id: format!("00000000-0000-4000-8000-{i:012}"),
        request_id: format!("req-{i}"),
        vm_id: vm("sub-1", rg, &format!("VM-{}", i % 4))
            .as_str()
            .to_string(),
        port,
        protocol: "TCP".into(),
        source_address_prefix: "10.0.0.1".into(),
        requestor: Principal {
            id: format!("oid-{}", i % 3),
            name: format!("user{}@example.com", i % 3),
        },
        submitted_by: alice(),
        approvers: vec![alice()],
        justification: Some(format!("why {i}, \"quoted\"")),
        granted_at: start,
        end_time_utc: Some(end),
        closed_at: (i % 5 != 0).then_some(end),
        status: if i % 5 == 0 {
            GrantStatus::Active
        } else {
            GrantStatus::Expired
        },
        status_reason: String::new(),
    }
}

async fn grant_history_filters_periods_scopes_and_pages(store: DynStore) {
    let t0 = (Utc::now() - Duration::days(10)).trunc_subsecs(6);
    let grants: Vec<Grant> = (0..120)
        .map(|i| {
            let rg = if i % 2 == 0 { "rg-a" } else { "rg-b" };
            // Grant 7 is a long one: it opens early and stays open 3 days.
            let minutes = if i == 7 { 3 * 24 * 60 } else { 30 };
            history_grant(
                i,
                rg,
                if i % 3 == 0 { 3389 } else { 22 },
                t0 + Duration::hours(i64::from(i)),
                minutes,
            )
        })
        .collect();
    store.import_grants(&grants).await.unwrap();
    let all_pages = |filter: GrantFilter| {
        let store = store.clone();
        async move {
            let mut out = vec![];
            let mut after = None;
            loop {
                let page = store
                    .list_grants(&filter, &PageRequest { limit: 13, after })
                    .await
                    .unwrap();
                out.extend(page.items);
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => return out,
                }
            }
        }
    };
    let expect = |keep: &dyn Fn(&Grant) -> bool| -> Vec<Grant> {
        let mut v: Vec<Grant> = grants.iter().filter(|g| keep(g)).cloned().collect();
        v.sort_by(|a, b| (b.granted_at, &b.id).cmp(&(a.granted_at, &a.id)));
        v
    };
    assert_eq!(
        all_pages(GrantFilter::default()).await,
        expect(&|_| true),
        "every field read back"
    );
    let vm1 = vm("sub-1", "rg-b", "vm-1");
    assert_eq!(
        all_pages(GrantFilter {
            vm_key: Some(vm1.key().to_string()),
            ..Default::default()
        })
        .await,
        expect(&|g| g.vm_id.eq_ignore_ascii_case(vm1.as_str()))
    );
    assert_eq!(
        all_pages(GrantFilter {
            requestor: Some("oid-1".into()),
            port: Some(22),
            status: Some(GrantStatus::Expired),
            ..Default::default()
        })
        .await,
        expect(&|g| g.requestor.id == "oid-1" && g.port == 22 && g.status == GrantStatus::Expired)
    );
    // Open at any moment in [from, to): the long grant 7 is found from a window days later.
    let (from, to) = (t0 + Duration::hours(50), t0 + Duration::hours(52));
    let in_window = all_pages(GrantFilter {
        from: Some(from),
        to: Some(to),
        ..Default::default()
    })
    .await;
    assert_eq!(
        in_window,
        expect(&|g| g.granted_at < to && g.closed_at.or(g.end_time_utc).unwrap() >= from)
    );
    assert!(in_window.iter().any(|g| g.request_id == "req-7"));
    let within = all_pages(GrantFilter {
        within: Some(vec![Scope::parse(
            "/subscriptions/SUB-1/resourceGroups/RG-A",
        )
        .unwrap()]),
        ..Default::default()
    })
    .await;
    assert_eq!(within, expect(&|g| g.vm_id.contains("/rg-a/")));
    let bad = store
        .list_grants(
            &GrantFilter::default(),
            &PageRequest {
                limit: 10,
                after: Some("not-a-key".into()),
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidInput(_))), "{bad:?}");
}

async fn audit_events_filter_and_page_in_chain_order(store: DynStore) {
    let t0 = (Utc::now() - Duration::hours(1)).trunc_subsecs(6);
    for i in 0..40i64 {
        store
            .append_event(
                NewAuditEvent {
                    event_type: if i % 2 == 0 { "request.created" } else { "grant.opened" },
                    actor: if i % 4 == 0 { alice() } else { Principal { id: "oid-bob".into(), name: "bob".into() } },
                    resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/VM-{}", i % 3),
                    request_id: Some(format!("req-{}", i % 5)),
                    data: json!({ "i": i }),
                },
                t0 + Duration::seconds(i),
            )
            .await
            .unwrap();
    }
    let all = store.audit_events_after(0, 100).await.unwrap();
    let pages = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            let mut out = vec![];
            let mut after = None;
            loop {
                let page = store
                    .list_audit_events(&filter, &PageRequest { limit: 7, after })
                    .await
                    .unwrap();
                out.extend(page.items.into_iter().map(|e| e.seq));
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => return out,
                }
            }
        }
    };
    let expect = |keep: &dyn Fn(&AuditEvent) -> bool| -> Vec<i64> {
        all.iter().filter(|e| keep(e)).map(|e| e.seq).collect()
    };
    assert_eq!(
        pages(AuditFilter::default()).await,
        (1..=40).collect::<Vec<_>>()
    );
    assert_eq!(
        pages(AuditFilter {
            types: vec!["grant.opened".into()],
            actor: Some("oid-bob".into()),
            ..Default::default()
        })
        .await,
        expect(&|e| e.event_type == "grant.opened" && e.actor.id == "oid-bob")
    );
    assert_eq!(
        pages(AuditFilter {
            resource_id: Some("/SUBSCRIPTIONS/S/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-2".into()),
            ..Default::default()
        })
        .await,
        expect(&|e| e.resource_id.ends_with("VM-2")),
        "resource ids compare case-insensitively"
    );
    assert_eq!(
        pages(AuditFilter {
            request_id: Some("req-3".into()),
            from: Some(t0 + Duration::seconds(10)),
            to: Some(t0 + Duration::seconds(30)),
            ..Default::default()
        })
        .await,
        expect(&|e| e.request_id.as_deref() == Some("req-3")
            && (10..30).contains(&(e.at - t0).num_seconds()))
    );
}

fn webhook(id: &str, types: &[&str]) -> jitgate::notify::Webhook {
    let now = Utc::now().trunc_subsecs(6);
    jitgate::notify::Webhook {
        id: id.into(),
        url: format!("https://hooks.example.com/{id}"),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        description: Some("test".into()),
        enabled: true,
        created_at: now,
        updated_at: now,
    }
}

async fn webhook_deliveries_are_queued_with_the_event_that_they_announce(store: DynStore) {
    use jitgate::notify::DeliveryStatus;
    use jitgate::store::{DeliveryAttempt, JOB_DELIVER_WEBHOOK};
    store
        .create_webhook(
            &webhook("wh-policies", &["jitgate.policy.*"]),
            "secret-1-abcdefgh",
            &alice(),
        )
        .await
        .unwrap();
    store
        .create_webhook(
            &webhook("wh-requests", &["jitgate.request.pending"]),
            "secret-2-abcdefgh",
            &alice(),
        )
        .await
        .unwrap();
    let (read, secret) = store.get_webhook("wh-policies").await.unwrap().unwrap();
    assert_eq!(
        (read.url.as_str(), read.event_types.clone(), read.enabled),
        (
            "https://hooks.example.com/wh-policies",
            vec!["jitgate.policy.*".to_string()],
            true
        )
    );
    assert_eq!(secret, "secret-1-abcdefgh");
    assert_eq!(store.list_webhooks().await.unwrap().len(), 2);

    // A policy event: one delivery, to the policies subscription, with its job.
    let event = store
        .append_event(
            NewAuditEvent {
                event_type: "policy.created",
                actor: alice(),
                resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm".into(),
                request_id: None,
                data: json!({}),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let page = store
        .list_deliveries(
            "wh-policies",
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let delivery = &page.items[0];
    assert_eq!(
        (delivery.event_seq, delivery.event_type.as_str()),
        (event.seq, "jitgate.policy.created")
    );
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert!(store
        .list_deliveries(
            "wh-requests",
            &PageRequest {
                limit: 10,
                after: None
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());
    let jobs = store.pending_jobs().await.unwrap();
    assert!(jobs
        .iter()
        .any(|j| j.kind == JOB_DELIVER_WEBHOOK && j.subject == delivery.id));

    store
        .record_delivery(
            &delivery.id,
            &DeliveryAttempt {
                status: DeliveryStatus::Pending,
                status_code: Some(503),
                error: Some("down".into()),
                at: Utc::now(),
            },
        )
        .await
        .unwrap();
    store
        .record_delivery(
            &delivery.id,
            &DeliveryAttempt {
                status: DeliveryStatus::Delivered,
                status_code: Some(200),
                error: None,
                at: Utc::now(),
            },
        )
        .await
        .unwrap();
    let done = store.get_delivery(&delivery.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.attempts, done.last_status_code),
        (DeliveryStatus::Delivered, 2, Some(200))
    );
    assert!(done.delivered_at.is_some() && done.last_error.is_none());

    // Disabled, it queues nothing; rotating the secret keeps the rest.
    let mut off = webhook("wh-policies", &["jitgate.policy.*"]);
    off.enabled = false;
    assert!(store
        .update_webhook(&off, Some("rotated-secret-0001"), &alice())
        .await
        .unwrap());
    assert_eq!(
        store.get_webhook("wh-policies").await.unwrap().unwrap().1,
        "rotated-secret-0001"
    );
    assert!(!store
        .update_webhook(&webhook("nope", &[]), None, &alice())
        .await
        .unwrap());
    let deleted = store
        .delete_webhook("wh-policies", &alice(), Utc::now())
        .await
        .unwrap();
    assert!(deleted.is_some());
    assert!(
        store.get_delivery(&delivery.id).await.unwrap().is_none(),
        "the log goes with it"
    );
    assert!(store
        .delete_webhook("wh-policies", &alice(), Utc::now())
        .await
        .unwrap()
        .is_none());
    let types: Vec<String> = store
        .audit_events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "webhook.created",
            "webhook.created",
            "policy.created",
            "webhook.updated",
            "webhook.deleted"
        ]
    );
}

async fn chat_identities_map_one_chat_account_to_one_user(store: DynStore) {
    use jitgate::chatops::{ChatIdentity, Platform};
    use jitgate::store::ChatIdentityPut;
    let identity = |id: &str, user: &str| ChatIdentity {
        id: id.into(),
        platform: Platform::Slack,
        workspace_id: "T0123".into(),
        chat_user_id: user.into(),
        user: alice(),
    };
    let put = |i: ChatIdentity| ChatIdentityPut {
        identity: i,
        by: alice(),
        now: Utc::now(),
    };
    assert!(
        store
            .put_chat_identity(put(identity("m1", "U1")))
            .await
            .unwrap()
            .created
    );
    assert!(
        !store
            .put_chat_identity(put(identity("m1", "U1")))
            .await
            .unwrap()
            .created
    );
    let found = store
        .find_chat_identity(Platform::Slack, "T0123", "U1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.identity.user, alice());
    assert!(store
        .find_chat_identity(Platform::Teams, "T0123", "U1")
        .await
        .unwrap()
        .is_none());
    let twice = store.put_chat_identity(put(identity("m2", "U1"))).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    store
        .put_chat_identity(put(identity("m3", "U3")))
        .await
        .unwrap();
    let page = store
        .list_chat_identities(&PageRequest {
            limit: 1,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_after.is_some());
    store
        .delete_chat_identity("m1", &alice(), Utc::now())
        .await
        .unwrap();
    assert!(store
        .find_chat_identity(Platform::Slack, "T0123", "U1")
        .await
        .unwrap()
        .is_none());
}

// ---- backpressure ----

async fn due_jobs_are_counted_up_to_a_bound(store: DynStore) {
    for name in ["vm1", "vm2", "vm3"] {
        store
            .put_policy(put(&vm("s1", "rg", name), &[22], "e1", Precondition::None))
            .await
            .unwrap();
    }
    let soon = Utc::now() + Duration::seconds(1);
    assert_eq!(store.count_due_jobs(soon, 100).await.unwrap(), 3);
    assert_eq!(
        store.count_due_jobs(soon, 2).await.unwrap(),
        2,
        "stops at the bound"
    );
    assert_eq!(
        store
            .count_due_jobs(soon - Duration::hours(1), 100)
            .await
            .unwrap(),
        0,
        "none was due an hour ago"
    );
    // A job put off until later no longer counts; a claimed one still does (it is not done).
    let claimed = store.claim_jobs("a", soon, lease(), 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(store
        .retry_job(claimed[0].id, "a", soon + Duration::hours(1), "later")
        .await
        .unwrap());
    assert_eq!(store.count_due_jobs(soon, 100).await.unwrap(), 2);
}
