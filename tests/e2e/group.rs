//! IamGroup end to end: the group, its policies and its ownership marker in moto;
//! drift, guardrails, claim and adoption, observe, deletion; AWS call counts.

use std::collections::BTreeMap;

use iamwright::api::{IamGroup, IamPolicy};
use iamwright::policy::{decode_aws_document, same_document};
use serde_json::{Value, json};

use crate::harness::*;
use crate::role::{T, aws_policy, doc, drift_count, gone, ready, ready_reason};

const ACCOUNT: &str = "123456789012";
const MARKER: &str = "iamwright-owner";

pub fn group_manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamGroup",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

pub async fn aws_group(name: &str) -> Option<(aws_sdk_iam::types::Group, Vec<String>)> {
    match iam().await.get_group().group_name(name).send().await {
        Ok(out) => Some((
            out.group.unwrap(),
            out.users.iter().map(|u| u.user_name.clone()).collect(),
        )),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetGroup: {e:?}"),
    }
}

pub async fn group_attached(name: &str) -> Vec<String> {
    let out = iam()
        .await
        .list_attached_group_policies()
        .group_name(name)
        .send()
        .await
        .unwrap();
    let mut arns: Vec<String> = out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn.clone())
        .collect();
    arns.sort();
    arns
}

/// Every inline policy of the group (the marker included), decoded.
pub async fn group_inline(name: &str) -> BTreeMap<String, Value> {
    let iam = iam().await;
    let names = iam
        .list_group_policies()
        .group_name(name)
        .send()
        .await
        .unwrap()
        .policy_names;
    let mut out = BTreeMap::new();
    for p in names {
        // Listed, then read: the operator may delete one in between (drift correction).
        let got = match iam
            .get_group_policy()
            .group_name(name)
            .policy_name(&p)
            .send()
            .await
        {
            Ok(got) => got,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                continue;
            }
            Err(e) => panic!("GetGroupPolicy: {e:?}"),
        };
        out.insert(p, decode_aws_document(&got.policy_document).unwrap());
    }
    out
}

/// The owner values the marker records, by tag key.
fn marker_owner(marker: &Value) -> BTreeMap<String, String> {
    marker["Statement"][0]["Condition"]["StringEquals"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.trim_start_matches("aws:PrincipalTag/").to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn attachment_count(arn: &str) -> i32 {
    iam()
        .await
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap()
        .attachment_count
        .unwrap_or(-1)
}

fn policy_manifest(name: &str, actions: &[&str]) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
           "metadata": {"name": name}, "spec": {"document": doc(actions)}})
    .to_string()
}

/// The whole life of a group: created with its marker and policies (counted writes),
/// quiet in sync, drift set back, and deleted after its members and policies.
#[tokio::test]
async fn a_group_is_created_kept_in_sync_corrected_and_deleted_after_its_members() {
    let ns = Namespace::new("group-life").await;
    let op = Operator::start(&ns.name, &[]).await;
    let n = format!("{}-admins", ns.name);
    let external = aws_policy(&format!("{}-ext", ns.name), &["s3:GetObject"]).await;
    apply(&ns.name, &policy_manifest("logs", &["logs:PutLogEvents"]));
    apply(
        &ns.name,
        &group_manifest(
            "admins",
            json!({"managedPolicyArns": [external], "policyRefs": [{"name": "logs"}],
                   "inlinePolicies": {"sqs": doc(&["sqs:SendMessage"])}}),
        ),
    );
    let own: IamPolicy = ready(&ns.name, "logs").await;
    let own = own.status.unwrap().arn.unwrap();
    let g: IamGroup = ready(&ns.name, "admins").await;
    let st = g.status.unwrap();
    let arn = format!("arn:aws:iam::{ACCOUNT}:group/{n}");
    assert_eq!(st.arn.as_deref(), Some(arn.as_str()));
    assert_eq!(st.account_id.as_deref(), Some(ACCOUNT));
    let (group, members) = aws_group(&n).await.expect("group created");
    assert_eq!(Some(group.group_id.clone()), st.group_id);
    assert_eq!(group.path, "/");
    assert!(members.is_empty());
    let mut want = vec![external.clone(), own.clone()];
    want.sort();
    assert_eq!(group_attached(&n).await, want);
    let inline = group_inline(&n).await;
    assert_eq!(inline.keys().collect::<Vec<_>>(), vec![MARKER, "sqs"]);
    assert!(same_document(&inline["sqs"], &doc(&["sqs:SendMessage"])));
    // The marker names this object: cluster, namespace, name and uid.
    let owner = marker_owner(&inline[MARKER]);
    assert_eq!(owner["iamwright.dev/cluster"], "e2e");
    assert_eq!(owner["iamwright.dev/namespace"], ns.name);
    assert_eq!(owner["iamwright.dev/name"], "admins");
    assert_eq!(Some(&owner["iamwright.dev/uid"]), g.metadata.uid.as_ref());
    // The converge's writes: the group, its marker, two attachments, one inline policy.
    let group_writes =
        |o: &str, outcome: &str| o.contains("Group") && !is_read(o) && outcome == "success";
    assert_eq!(op.aws_requests(group_writes).await, 5);
    for (o, n) in [
        ("CreateGroup", 1),
        ("PutGroupPolicy", 2),
        ("AttachGroupPolicy", 2),
    ] {
        assert_eq!(op.aws_requests(|x, _| x == o).await, n, "{o}");
    }
    let reads = op
        .aws_requests(|o, _| o.contains("Group") && is_read(o))
        .await;
    eprintln!("group converge: 5 writes, {reads} reads of its own");

    // In sync: no write, no read of its own across two resyncs (the snapshot covers it).
    let own_reads = |o: &str, _: &str| o.contains("Group") && is_read(o);
    let before = op.aws_requests(own_reads).await;
    assert_eq!(
        op.writes_across_resyncs("GetAccountAuthorizationDetails", 4)
            .await,
        0,
        "a group in sync caused AWS writes"
    );
    assert_eq!(
        op.aws_requests(own_reads).await - before,
        0,
        "a group in sync read AWS beyond the snapshot"
    );

    // Drift: a policy detached, an inline policy edited and one added, by hand.
    let iam = iam().await;
    iam.detach_group_policy()
        .group_name(&n)
        .policy_arn(&external)
        .send()
        .await
        .unwrap();
    iam.put_group_policy()
        .group_name(&n)
        .policy_name("stray")
        .policy_document(doc(&["ec2:*"]).to_string())
        .send()
        .await
        .unwrap();
    iam.put_group_policy()
        .group_name(&n)
        .policy_name("sqs")
        .policy_document(doc(&["sqs:*"]).to_string())
        .send()
        .await
        .unwrap();
    let drift_before = drift_count(&op, "IamGroup").await;
    eventually(T, "drift set back", || async {
        let inline = group_inline(&n).await;
        let back = group_attached(&n).await == want
            && inline.keys().collect::<Vec<_>>() == vec![MARKER, "sqs"]
            && same_document(&inline["sqs"], &doc(&["sqs:SendMessage"]));
        back.then_some(())
    })
    .await;
    let events = events_for(&ns.name, "admins").await;
    assert!(
        events.iter().any(|(r, m)| r == "DriftCorrected"
            && m.contains(&format!("attached policy {external}"))
            && m.contains("deleted inline policy stray")),
        "{events:?}"
    );
    assert!(drift_count(&op, "IamGroup").await > drift_before);

    // A member added by hand, then delete: out of the group first, policies detached
    // (the IamPolicy's attachment count drops to 0), inline policies deleted, group gone.
    let user = format!("{}-someone", ns.name);
    iam.create_user().user_name(&user).send().await.unwrap();
    iam.add_user_to_group()
        .group_name(&n)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(attachment_count(&own).await, 1);
    let deletes = [
        ("RemoveUserFromGroup", 1),
        ("DetachGroupPolicy", 2),
        ("DeleteGroupPolicy", 2),
        ("DeleteGroup", 1),
    ];
    let mut before = vec![];
    for (o, _) in deletes {
        before.push(
            op.aws_requests(|x, outcome| x == o && outcome == "success")
                .await,
        );
    }
    delete::<IamGroup>(&ns.name, "admins").await;
    gone::<IamGroup>(&ns.name, "admins").await;
    assert!(aws_group(&n).await.is_none(), "group deleted");
    assert_eq!(
        attachment_count(&own).await,
        0,
        "policy detached before the delete"
    );
    for ((o, n), before) in deletes.into_iter().zip(before) {
        let after = op
            .aws_requests(|x, outcome| x == o && outcome == "success")
            .await;
        assert_eq!(after - before, n, "{o} calls of the delete");
    }
    // The user was not the group's: it stays.
    assert!(iam.get_user().user_name(&user).send().await.is_ok());
    let events = events_for(&ns.name, "admins").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Deleted" && m.contains(&arn)),
        "{events:?}"
    );
}

/// Denied actions reached through managed or inline policies, a managed policy the
/// scope does not allow, and a name outside the scope's prefix: Stalled, no group.
#[tokio::test]
async fn guardrails_refuse_a_group_before_any_write() {
    let ns = Namespace::new("group-guard").await;
    let op = Operator::start(&ns.name, &["--deny-action", "iam:*"]).await;
    apply(
        &ns.name,
        &group_manifest(
            "admin",
            json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
        ),
    );
    apply(
        &ns.name,
        &group_manifest(
            "inline",
            json!({"inlinePolicies": {"users": doc(&["iam:CreateUser"])}}),
        ),
    );
    let (ready_status, message, stalled) =
        ready_reason::<IamGroup>(&ns.name, "admin", "GuardrailViolation").await;
    assert_eq!((ready_status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(
        message.starts_with(
            "spec.managedPolicyArns[0]: managed policy arn:aws:iam::aws:policy/AdministratorAccess"
        ),
        "{message}"
    );
    let (_, message, _) = ready_reason::<IamGroup>(&ns.name, "inline", "GuardrailViolation").await;
    assert!(
        message.starts_with("spec.inlinePolicies.users.Statement[0]"),
        "{message}"
    );
    for name in ["admin", "inline"] {
        assert!(aws_group(&format!("{}-{name}", ns.name)).await.is_none());
    }
    assert_eq!(
        op.aws_requests(|o, outcome| o.contains("Group") && !is_read(o) && outcome == "success")
            .await,
        0
    );
}

/// An existing group without a marker: AlreadyExists without adopt; observed (Drifted
/// names the fields, nothing written); adopted with the grant (marker written, policies
/// made the spec's). An empty unmarked group made after the object, as a create
/// interrupted before its marker leaves it, is taken as the object's own.
#[tokio::test]
async fn existing_groups_are_claimed_observed_adopted_and_an_interrupted_create_is_recovered() {
    let ns = Namespace::new("group-claim").await;
    let iam = iam().await;
    let existing = format!("{}-legacy", ns.name);
    iam.create_group()
        .group_name(&existing)
        .send()
        .await
        .unwrap();
    iam.attach_group_policy()
        .group_name(&existing)
        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
        .send()
        .await
        .unwrap();
    // The interrupted create: the object first, then (operator down) its bare group.
    apply(
        &ns.name,
        &group_manifest(
            "fresh",
            json!({"inlinePolicies": {"sqs": doc(&["sqs:SendMessage"])}}),
        ),
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = format!("{}-fresh", ns.name);
    iam.create_group().group_name(&fresh).send().await.unwrap();

    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    let spec = json!({"groupName": existing, "managedPolicyArns": ["arn:aws:iam::aws:policy/SecurityAudit"]});
    apply(&ns.name, &group_manifest("legacy", spec.clone()));
    let (_, message, stalled) = ready_reason::<IamGroup>(&ns.name, "legacy", "AlreadyExists").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("spec.adopt: true"), "{message}");

    let mut observed = spec.clone();
    observed["managementPolicy"] = json!("Observe");
    apply(&ns.name, &group_manifest("legacy", observed));
    let (_, message, _) = ready_reason::<IamGroup>(&ns.name, "legacy", "Drifted").await;
    assert!(
        message.contains("spec.managedPolicyArns/spec.policyRefs"),
        "{message}"
    );
    let g: IamGroup = get(&ns.name, "legacy").await.unwrap();
    assert_eq!(
        g.status.unwrap().attached_policy_arns,
        vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    );
    assert!(
        !group_inline(&existing).await.contains_key(MARKER),
        "observe wrote the marker"
    );

    let mut adopted = spec;
    adopted["adopt"] = json!(true);
    apply(&ns.name, &group_manifest("legacy", adopted));
    let _: IamGroup = ready(&ns.name, "legacy").await;
    assert_eq!(
        group_attached(&existing).await,
        vec!["arn:aws:iam::aws:policy/SecurityAudit"]
    );
    let marker = &group_inline(&existing).await[MARKER];
    assert_eq!(marker_owner(marker)["iamwright.dev/name"], "legacy");
    let events = events_for(&ns.name, "legacy").await;
    assert!(events.iter().any(|(r, _)| r == "Adopted"), "{events:?}");

    // The interrupted create is finished: marker and inline policy, no AlreadyExists.
    let g: IamGroup = ready(&ns.name, "fresh").await;
    let inline = group_inline(&fresh).await;
    assert_eq!(inline.keys().collect::<Vec<_>>(), vec![MARKER, "sqs"]);
    assert_eq!(
        Some(&marker_owner(&inline[MARKER])["iamwright.dev/uid"]),
        g.metadata.uid.as_ref()
    );
    assert_eq!(
        op.aws_requests(|o, outcome| o == "CreateGroup" && outcome == "success")
            .await,
        0,
        "both groups existed: creates refused, then claimed"
    );

    // Retain leaves the adopted group (and its marker) in place.
    let mut retained: Value = serde_json::from_str(&group_manifest("legacy", json!({}))).unwrap();
    retained["spec"] = json!({"groupName": existing, "adopt": true, "deletionPolicy": "Retain",
                              "managedPolicyArns": ["arn:aws:iam::aws:policy/SecurityAudit"]});
    apply(&ns.name, &retained.to_string());
    let _: IamGroup = ready(&ns.name, "legacy").await;
    delete::<IamGroup>(&ns.name, "legacy").await;
    gone::<IamGroup>(&ns.name, "legacy").await;
    assert!(aws_group(&existing).await.is_some(), "retained");
}

fn key_manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

/// The groups of an IAM user, sorted.
pub async fn groups_of(user: &str) -> Vec<String> {
    let mut names: Vec<String> = iam()
        .await
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .groups()
        .iter()
        .map(|g| g.group_name.clone())
        .collect();
    names.sort();
    names
}

async fn aws_user_exists(user: &str) -> bool {
    iam().await.get_user().user_name(user).send().await.is_ok()
}

/// Memberships from the user's side: an IamGroup of the namespace and a granted
/// existing group joined; the group lists its member; memberships made by hand are
/// removed for the owned user and left for a user the object does not own; a group
/// the spec drops is left; deleting a key for another's user ends only its memberships.
#[tokio::test]
async fn users_join_groups_from_their_side_and_the_group_lists_its_members() {
    let ns = Namespace::new("group-members").await;
    let iam = iam().await;
    let (ops, by_hand) = (format!("{}-ext-ops", ns.name), format!("{}-hand", ns.name));
    for g in [&ops, &by_hand] {
        iam.create_group().group_name(g).send().await.unwrap();
    }
    let bob = format!("{}-bob", ns.name);
    iam.create_user().user_name(&bob).send().await.unwrap();
    iam.add_user_to_group()
        .group_name(&by_hand)
        .user_name(&bob)
        .send()
        .await
        .unwrap();
    let op = Operator::start(
        &ns.name,
        &[
            "--allow-existing-group",
            &format!("{}-ext-*", ns.name),
            "--allow-existing-user",
            &bob,
        ],
    )
    .await;
    let devs = format!("{}-devs", ns.name);
    apply(
        &ns.name,
        &group_manifest(
            "devs",
            json!({"inlinePolicies": {"s3": doc(&["s3:GetObject"])}}),
        ),
    );
    let alice = format!("{}-alice", ns.name);
    apply(
        &ns.name,
        &key_manifest(
            "alice",
            json!({"userName": alice, "groupRefs": [{"name": "devs"}], "groups": [ops]}),
        ),
    );
    apply(
        &ns.name,
        &key_manifest(
            "bob",
            json!({"userName": bob, "createUser": false, "groupRefs": [{"name": "devs"}]}),
        ),
    );
    let k: iamwright::api::IamUserAccessKey = ready(&ns.name, "alice").await;
    let mut want = vec![devs.clone(), ops.clone()];
    want.sort();
    assert_eq!(groups_of(&alice).await, want);
    let mut recorded = k.status.unwrap().groups;
    recorded.sort();
    assert_eq!(recorded, want);
    let _: iamwright::api::IamUserAccessKey = ready(&ns.name, "bob").await;
    let mut bobs = vec![devs.clone(), by_hand.clone()];
    bobs.sort();
    assert_eq!(groups_of(&bob).await, bobs, "bob's own membership is left");
    let mut members = vec![alice.clone(), bob.clone()];
    members.sort();
    eventually(T, "the group lists its members", || async {
        let g: IamGroup = get(&ns.name, "devs").await?;
        (g.status?.members == members).then_some(())
    })
    .await;
    let events = events_for(&ns.name, "alice").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "GroupsUpdated" && m.contains(&devs) && m.contains(&ops)),
        "{events:?}"
    );

    // In sync, memberships cost one ListGroupsForUser per key per resync and no write;
    // the existing group's check and the IamGroup read nothing of their own (the
    // account snapshot has them).
    let group_reads =
        |o: &str, _: &str| o.contains("Group") && is_read(o) && o != "ListGroupsForUser";
    let reads_before = op.aws_requests(group_reads).await;
    assert_eq!(
        op.writes_across_resyncs("ListGroupsForUser", 4).await,
        0,
        "memberships in sync caused AWS writes"
    );
    assert_eq!(
        op.aws_requests(group_reads).await - reads_before,
        0,
        "groups in sync read AWS beyond the snapshot"
    );

    // A membership of the owned user made by hand is removed at the next resync.
    iam.add_user_to_group()
        .group_name(&by_hand)
        .user_name(&alice)
        .send()
        .await
        .unwrap();
    eventually(T, "the hand-made membership removed", || async {
        (groups_of(&alice).await == want).then_some(())
    })
    .await;

    // The spec drops the existing group: the user leaves it.
    apply(
        &ns.name,
        &key_manifest(
            "alice",
            json!({"userName": alice, "groupRefs": [{"name": "devs"}]}),
        ),
    );
    let k: iamwright::api::IamUserAccessKey = ready(&ns.name, "alice").await;
    assert_eq!(groups_of(&alice).await, vec![devs.clone()]);
    assert_eq!(k.status.unwrap().groups, vec![devs.clone()]);

    // Deleting bob's key ends the membership it made, not bob's own, and leaves bob.
    delete::<iamwright::api::IamUserAccessKey>(&ns.name, "bob").await;
    gone::<iamwright::api::IamUserAccessKey>(&ns.name, "bob").await;
    assert_eq!(groups_of(&bob).await, vec![by_hand.clone()]);
    assert!(aws_user_exists(&bob).await);
    eventually(T, "the group lists alice only", || async {
        let g: IamGroup = get(&ns.name, "devs").await?;
        (g.status?.members == vec![alice.clone()]).then_some(())
    })
    .await;
    drop(op);
}

/// Joining gains the group's policies: an existing group without a grant is
/// NotPermitted, a granted one whose policies allow a denied action is
/// GuardrailViolation, an IamGroup refused by the guardrails is never Ready to join;
/// in each case no user is created and nobody joins.
#[tokio::test]
async fn joining_a_group_needs_a_grant_and_its_policies_obey_the_denied_actions() {
    let ns = Namespace::new("group-grant").await;
    let iam = iam().await;
    let (admins, other) = (format!("{}-admins", ns.name), format!("{}-other", ns.name));
    for g in [&admins, &other] {
        iam.create_group().group_name(g).send().await.unwrap();
    }
    iam.attach_group_policy()
        .group_name(&admins)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    let op = Operator::start(
        &ns.name,
        &["--deny-action", "iam:*", "--allow-existing-group", &admins],
    )
    .await;
    let user = |n: &str| format!("{}-{n}", ns.name);
    apply(
        &ns.name,
        &key_manifest("a", json!({"userName": user("a"), "groups": [other]})),
    );
    apply(
        &ns.name,
        &key_manifest("b", json!({"userName": user("b"), "groups": [admins]})),
    );
    apply(
        &ns.name,
        &group_manifest(
            "power",
            json!({"inlinePolicies": {"iam": doc(&["iam:PassRole"])}}),
        ),
    );
    apply(
        &ns.name,
        &key_manifest(
            "c",
            json!({"userName": user("c"), "groupRefs": [{"name": "power"}]}),
        ),
    );
    let (_, message, stalled) = key_reason(&ns.name, "a", "NotPermitted").await;
    assert_eq!(stalled, "True");
    assert!(
        message.starts_with("spec.groups[0]:") && message.contains("--allow-existing-group"),
        "{message}"
    );
    let (_, message, stalled) = key_reason(&ns.name, "b", "GuardrailViolation").await;
    assert_eq!(stalled, "True");
    assert!(
        message.contains("AdministratorAccess") && message.contains(&admins),
        "{message}"
    );
    let _ = ready_reason::<IamGroup>(&ns.name, "power", "GuardrailViolation").await;
    let (_, message, _) = key_reason(&ns.name, "c", "DependencyNotReady").await;
    assert!(
        message.starts_with("spec.groupRefs[0]: IamGroup \"power\""),
        "{message}"
    );
    for n in ["a", "b", "c"] {
        assert!(!aws_user_exists(&user(n)).await, "user {n} created");
    }
    for g in [&admins, &other] {
        assert!(
            aws_group(g).await.unwrap().1.is_empty(),
            "someone joined {g}"
        );
    }
    assert_eq!(
        op.aws_requests(|o, outcome| !is_read(o) && outcome == "success")
            .await,
        0,
        "no AWS write"
    );
}

/// Wait until the key's Ready has `reason`; (Ready status, message, Stalled status).
async fn key_reason(ns: &str, name: &str, reason: &str) -> (String, String, String) {
    ready_reason::<iamwright::api::IamUserAccessKey>(ns, name, reason).await
}

/// A real crash between CreateGroup and the marker: the operator exits at the failpoint
/// `after-create-group`, leaving an empty group without a marker; the next operator
/// recognises it as the object's own interrupted create, marks it and finishes it,
/// with no second group and no AlreadyExists.
#[tokio::test]
async fn a_crash_between_create_group_and_the_marker_is_finished_by_the_next_operator() {
    let ns = Namespace::new("group-crash").await;
    let n = format!("{}-ops", ns.name);
    let mut op = Operator::start_with_env(
        &ns.name,
        &[],
        &[("IAMWRIGHT_FAILPOINT", "after-create-group")],
    )
    .await;
    apply(
        &ns.name,
        &group_manifest(
            "ops",
            json!({"inlinePolicies": {"sqs": doc(&["sqs:SendMessage"])}}),
        ),
    );
    let exit = op
        .wait_exit(T)
        .await
        .expect("the operator exits at the failpoint");
    assert_eq!(exit.code(), Some(3), "{}", op.log());
    assert!(aws_group(&n).await.is_some(), "the group was created");
    assert!(group_inline(&n).await.is_empty(), "no marker yet");

    let op = Operator::start(&ns.name, &[]).await;
    let g: IamGroup = ready(&ns.name, "ops").await;
    let inline = group_inline(&n).await;
    assert_eq!(inline.keys().collect::<Vec<_>>(), vec![MARKER, "sqs"]);
    assert_eq!(
        Some(&marker_owner(&inline[MARKER])["iamwright.dev/uid"]),
        g.metadata.uid.as_ref()
    );
    assert_eq!(
        op.aws_requests(|o, outcome| o == "CreateGroup" && outcome == "success")
            .await,
        0,
        "the next operator made no second group"
    );
}

/// `managementPolicy: Observe` on a key that names a group and console sign-in: the
/// missing membership and login profile are `Drifted` fields, never written; once made
/// by hand the object is in sync and reports `consoleAccess: Enabled`.
#[tokio::test]
async fn an_observed_key_reports_group_and_console_drift_and_never_writes() {
    let ns = Namespace::new("group-observe").await;
    let user = format!("{}-ci", ns.name);
    let group = format!("{}-ops", ns.name);
    let iam = iam().await;
    iam.create_user().user_name(&user).send().await.unwrap();
    iam.create_group().group_name(&group).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let op = Operator::start(&ns.name, &["--allow-existing-user", &user]).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ci"},
        "stringData": {"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": "x"}});
    apply(&ns.name, &secret.to_string());
    apply(
        &ns.name,
        &key_manifest(
            "ci",
            json!({"managementPolicy": "Observe", "userName": user, "groups": [group],
                   "console": {"enabled": true}}),
        ),
    );
    let (_, message, _) = key_reason(&ns.name, "ci", "Drifted").await;
    assert!(
        message.contains("spec.groupRefs/spec.groups") && message.contains("spec.console"),
        "{message}"
    );
    assert!(!message.contains("spec.secretName"), "{message}");
    iam.add_user_to_group()
        .group_name(&group)
        .user_name(&user)
        .send()
        .await
        .unwrap();
    iam.create_login_profile()
        .user_name(&user)
        .password("Hand-made-password-1!")
        .send()
        .await
        .unwrap();
    let k: iamwright::api::IamUserAccessKey = ready(&ns.name, "ci").await;
    assert_eq!(
        k.status.unwrap().console_access,
        Some(iamwright::api::ConsoleAccess::Enabled)
    );
    assert_eq!(
        op.aws_writes().await,
        0,
        "AWS writes by an observe-only object"
    );
}

/// The grant from an IamScope (`existingGroups`), and the scope's `denyActions` held
/// through a granted group's inline policy: granted → joined; granted but allowing a
/// denied action → GuardrailViolation; not granted → NotPermitted naming the scope.
#[tokio::test]
async fn a_scope_grants_existing_groups_and_its_denied_actions_hold_through_them() {
    let ns = Namespace::new("group-scope").await;
    let iam = iam().await;
    let (ro, bad, other) = (
        format!("{}-granted-ro", ns.name),
        format!("{}-granted-bad", ns.name),
        format!("{}-other", ns.name),
    );
    for g in [&ro, &bad, &other] {
        iam.create_group().group_name(g).send().await.unwrap();
    }
    iam.put_group_policy()
        .group_name(&bad)
        .policy_name("s3")
        .policy_document(doc(&["s3:*"]).to_string())
        .send()
        .await
        .unwrap();
    let _scope = crate::trust::Scope::apply(
        &ns.name,
        &ns.name,
        json!({"existingGroups": [format!("{}-granted-*", ns.name)],
               "denyActions": ["s3:DeleteBucket"]}),
    );
    let _op = Operator::start(&ns.name, &[]).await;
    let user = |n: &str| format!("{}-{n}", ns.name);
    apply(
        &ns.name,
        &key_manifest("a", json!({"userName": user("a"), "groups": [ro]})),
    );
    apply(
        &ns.name,
        &key_manifest("b", json!({"userName": user("b"), "groups": [bad]})),
    );
    apply(
        &ns.name,
        &key_manifest("c", json!({"userName": user("c"), "groups": [other]})),
    );
    let k: iamwright::api::IamUserAccessKey = ready(&ns.name, "a").await;
    assert_eq!(k.status.unwrap().scope.as_deref(), Some(ns.name.as_str()));
    assert_eq!(groups_of(&user("a")).await, vec![ro.clone()]);
    let (_, message, _) = key_reason(&ns.name, "b", "GuardrailViolation").await;
    assert!(
        message.starts_with("spec.groups[0]:") && message.contains("inline policy s3"),
        "{message}"
    );
    let (_, message, _) = key_reason(&ns.name, "c", "NotPermitted").await;
    assert!(message.contains("existingGroups"), "{message}");
    for n in ["b", "c"] {
        assert!(!aws_user_exists(&user(n)).await, "user {n} created");
    }
    assert!(aws_group(&bad).await.unwrap().1.is_empty());
}
