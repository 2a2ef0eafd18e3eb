//! InstanceProfileBinding end to end: instances in moto's EC2, associations, the
//! instance profile, conditions and events.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use iamwright::api::{InstanceBindingStatus, InstanceProfileBinding};
use serde_json::{Value, json};

use crate::harness::*;
use crate::role::{T, gone, ready, ready_reason, role_manifest, trust};

/// An AMI moto knows.
const AMI: &str = "ami-12c6146b";
const ACCOUNT: &str = "123456789012";

fn manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "InstanceProfileBinding",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

fn profile_arn(ns: &str, name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:instance-profile/{ns}-{name}")
}

/// Launch one instance with `tags`; returns its id.
pub(crate) async fn launch(tags: &[(&str, &str)]) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    // EC2 refuses a tag specification without tags.
    let specs = (!tags.is_empty()).then(|| vec![spec.build()]);
    ec2()
        .await
        .run_instances()
        .image_id(AMI)
        .min_count(1)
        .max_count(1)
        .set_tag_specifications(specs)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string()
}

/// The active association of an instance as (association id, profile ARN).
pub(crate) async fn association(instance: &str) -> Option<(String, String)> {
    ec2()
        .await
        .describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .iam_instance_profile_associations()
        .iter()
        .find(|a| {
            a.state
                .as_ref()
                .is_some_and(|s| matches!(s.as_str(), "associated" | "associating"))
        })
        .map(|a| {
            (
                a.association_id.clone().unwrap(),
                a.iam_instance_profile
                    .as_ref()
                    .and_then(|p| p.arn.clone())
                    .unwrap(),
            )
        })
}

/// A role created directly in AWS (for `roleName`).
async fn aws_role(name: &str) {
    iam()
        .await
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
}

pub(crate) async fn profile(name: &str) -> Option<aws_sdk_iam::types::InstanceProfile> {
    match iam()
        .await
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(out) => out.instance_profile,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetInstanceProfile: {e:?}"),
    }
}

pub(crate) fn roles_of(p: &aws_sdk_iam::types::InstanceProfile) -> Vec<String> {
    p.roles().iter().map(|r| r.role_name.clone()).collect()
}

/// status.instances as instance id → state.
fn states(b: &InstanceProfileBinding) -> BTreeMap<String, String> {
    b.status
        .as_ref()
        .map(|s| {
            s.instances
                .iter()
                .map(|i| (i.instance_id.clone(), i.state.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn row<'a>(b: &'a InstanceProfileBinding, id: &str) -> &'a InstanceBindingStatus {
    b.status
        .as_ref()
        .unwrap()
        .instances
        .iter()
        .find(|i| i.instance_id == id)
        .unwrap_or_else(|| panic!("{id} not in status: {:?}", b.status))
}

/// Wait until the binding's status lists exactly `want` (instance id → state).
pub(crate) async fn until_states(
    ns: &str,
    name: &str,
    want: &[(&str, &str)],
) -> InstanceProfileBinding {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(i, s)| (i.to_string(), s.to_string()))
        .collect();
    eventually(T, &format!("binding {name} instances {want:?}"), || async {
        let b: InstanceProfileBinding = get(ns, name).await?;
        (states(&b) == want).then_some(b)
    })
    .await
}

#[tokio::test]
async fn binds_instances_by_id_and_cleans_up_on_delete() {
    let ns = Namespace::new("ipb-ids").await;
    let op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let (i1, i2) = (launch(&[]).await, launch(&[]).await);
    // Applied before its role: waits for it, then follows it through the role watch.
    apply(
        &ns.name,
        &manifest(
            "web",
            json!({"roleRef": {"name": "app"}, "instanceIds": [i1, i2], "tags": {"team": "a"}}),
        ),
    );
    let (status, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "web", "DependencyNotReady").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "False"));
    assert_eq!(message, r#"spec.roleRef: IamRole "app" does not exist"#);
    assert!(profile(&format!("{}-web", ns.name)).await.is_none());
    apply(&ns.name, &role_manifest("app", json!({})));

    let b: InstanceProfileBinding = ready(&ns.name, "web").await;
    // The role's watch events re-trigger the binding (the operator logs the trigger).
    let log = op.log();
    let key = format!("object={}/web", ns.name);
    assert!(
        log.lines().any(
            |l| l.contains(&key) && l.contains("object.reason=related object updated: IamRole")
        ),
        "no reconcile of the binding triggered by the IamRole watch:\n{log}"
    );
    let arn = profile_arn(&ns.name, "web");
    let st = b.status.clone().unwrap();
    assert_eq!(st.instance_profile_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(st.bound_count, Some(2));
    let mut ids = vec![i1.clone(), i2.clone()];
    ids.sort();
    assert_eq!(
        st.instances
            .iter()
            .map(|i| i.instance_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    for id in [&i1, &i2] {
        let r = row(&b, id);
        assert_eq!(r.state, "Associated");
        let (assoc, profile_arn) = association(id).await.expect("associated in EC2");
        assert_eq!(r.association_id.as_deref(), Some(assoc.as_str()));
        assert_eq!(profile_arn, arn);
    }
    let p = profile(&format!("{}-web", ns.name)).await.unwrap();
    assert_eq!(roles_of(&p), vec![format!("{}-app", ns.name)]);
    let tags: BTreeMap<String, String> = p
        .tags()
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    assert_eq!(tags.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        tags.get("iamwright.dev/name").map(String::as_str),
        Some("web")
    );
    let events = events_for(&ns.name, "web").await;
    assert!(events.iter().any(|(r, _)| r == "Created"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Associated" && n.contains(&i2)),
        "{events:?}"
    );

    // In sync: two instance resyncs read EC2 and write nothing.
    let writes = op.aws_writes().await;
    let reads = op
        .aws_requests(|o, _| o == "DescribeIamInstanceProfileAssociations")
        .await;
    eventually(Duration::from_secs(30), "two instance resyncs", || async {
        (op.aws_requests(|o, _| o == "DescribeIamInstanceProfileAssociations")
            .await
            >= reads + 2)
            .then_some(())
    })
    .await;
    assert_eq!(op.aws_writes().await, writes, "a binding in sync wrote");

    // An id removed from the spec loses the profile.
    apply(
        &ns.name,
        &manifest(
            "web",
            json!({"roleRef": {"name": "app"}, "instanceIds": [i1], "tags": {"team": "a"}}),
        ),
    );
    let b = until_states(&ns.name, "web", &[(&i1, "Associated")]).await;
    assert_eq!(b.status.unwrap().bound_count, Some(1));
    assert!(association(&i2).await.is_none(), "{i2} still associated");
    let events = events_for(&ns.name, "web").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Disassociated" && n.contains(&i2)),
        "{events:?}"
    );

    crate::harness::delete::<InstanceProfileBinding>(&ns.name, "web").await;
    gone::<InstanceProfileBinding>(&ns.name, "web").await;
    assert!(association(&i1).await.is_none(), "{i1} still associated");
    assert!(profile(&format!("{}-web", ns.name)).await.is_none());
}

#[tokio::test]
async fn selects_instances_by_tag_and_follows_them() {
    let ns = Namespace::new("ipb-tags").await;
    let _op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let role = format!("{}-role", ns.name);
    aws_role(&role).await;
    // The tag value is unique to this test: moto's EC2 is shared by every test.
    let sel = ns.name.as_str();
    let running = launch(&[("app", sel), ("tier", "web")]).await;
    let stopped = launch(&[("app", sel), ("tier", "web")]).await;
    let other_tier = launch(&[("app", sel), ("tier", "db")]).await;
    let terminated = launch(&[("app", sel), ("tier", "web")]).await;
    let ec2 = ec2().await;
    ec2.stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .unwrap();
    ec2.terminate_instances()
        .instance_ids(&terminated)
        .send()
        .await
        .unwrap();
    apply(
        &ns.name,
        &manifest(
            "web",
            json!({"roleName": role, "instanceSelector": {"tags": {"app": sel, "tier": "web"}}}),
        ),
    );
    let b: InstanceProfileBinding = ready(&ns.name, "web").await;
    assert_eq!(
        states(&b),
        BTreeMap::from([
            (running.clone(), "Associated".to_string()),
            (stopped.clone(), "Associated".to_string()),
        ])
    );
    assert!(association(&other_tier).await.is_none());
    assert!(association(&terminated).await.is_none());
    let arn = profile_arn(&ns.name, "web");
    assert_eq!(association(&stopped).await.map(|a| a.1), Some(arn.clone()));

    // A new instance with the tags gets the profile without any change to the object.
    let newcomer = launch(&[("app", sel), ("tier", "web")]).await;
    let b = until_states(
        &ns.name,
        "web",
        &[
            (&running, "Associated"),
            (&stopped, "Associated"),
            (&newcomer, "Associated"),
        ],
    )
    .await;
    assert_eq!(b.metadata.generation, Some(1));
    assert_eq!(association(&newcomer).await.map(|a| a.1), Some(arn.clone()));

    // An instance whose tag is removed loses it.
    ec2.delete_tags()
        .resources(&running)
        .tags(Tag::builder().key("tier").build())
        .send()
        .await
        .unwrap();
    until_states(
        &ns.name,
        "web",
        &[(&stopped, "Associated"), (&newcomer, "Associated")],
    )
    .await;
    assert!(association(&running).await.is_none());
}

#[tokio::test]
async fn another_profile_is_a_conflict_until_replace_existing() {
    let ns = Namespace::new("ipb-conflict").await;
    let _op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let role = format!("{}-role", ns.name);
    aws_role(&role).await;
    let iam = iam().await;
    let other = format!("{}-other", ns.name);
    let other_arn = iam
        .create_instance_profile()
        .instance_profile_name(&other)
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap()
        .arn;
    let (taken, free) = (launch(&[]).await, launch(&[]).await);
    let theirs = ec2()
        .await
        .associate_iam_instance_profile()
        .instance_id(&taken)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(&other)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .iam_instance_profile_association
        .unwrap()
        .association_id
        .unwrap();

    let spec = json!({"roleName": role, "instanceIds": [taken, free]});
    apply(&ns.name, &manifest("web", spec.clone()));
    let (status, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "web", "InstanceConflict").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "False"));
    assert!(
        message.contains(&taken) && message.contains(&other_arn),
        "{message}"
    );
    let b = until_states(
        &ns.name,
        "web",
        &[(&taken, "Conflict"), (&free, "Associated")],
    )
    .await;
    let r = row(&b, &taken);
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("spec.replaceExisting"),
        "{r:?}"
    );
    assert_eq!(b.status.as_ref().unwrap().bound_count, Some(1));
    assert_eq!(
        association(&taken).await,
        Some((theirs.clone(), other_arn.clone())),
        "the other profile is left alone"
    );
    let events = events_for(&ns.name, "web").await;
    assert!(
        events.iter().any(|(r, _)| r == "InstanceConflict"),
        "{events:?}"
    );

    let mut spec = spec;
    spec["replaceExisting"] = json!(true);
    apply(&ns.name, &manifest("web", spec));
    let b: InstanceProfileBinding = ready(&ns.name, "web").await;
    assert_eq!(b.status.as_ref().unwrap().bound_count, Some(2));
    assert_eq!(row(&b, &taken).state, "Associated");
    assert_eq!(
        association(&taken).await.map(|a| a.1),
        Some(profile_arn(&ns.name, "web"))
    );
    let events = events_for(&ns.name, "web").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Replaced" && n.contains(&other_arn)),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_unknown_instance_is_reported_not_found_without_a_crash_loop() {
    let ns = Namespace::new("ipb-notfound").await;
    let op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let role = format!("{}-role", ns.name);
    aws_role(&role).await;
    let real = launch(&[]).await;
    let ghost = "i-0123456789abcdef0";
    apply(
        &ns.name,
        &manifest(
            "web",
            json!({"roleName": role, "instanceIds": [real, ghost]}),
        ),
    );
    let (status, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "web", "DependencyNotReady").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "False"));
    assert!(message.contains(ghost), "{message}");
    let b = until_states(
        &ns.name,
        "web",
        &[(&real, "Associated"), (ghost, "NotFound")],
    )
    .await;
    assert_eq!(
        row(&b, ghost).message.as_deref(),
        Some("instance i-0123456789abcdef0 does not exist in us-east-1")
    );
    // Re-checked on the instance resync, quietly: reads only, no failing calls.
    let reads = op.aws_requests(|o, _| o == "DescribeInstances").await;
    eventually(Duration::from_secs(30), "two re-checks", || async {
        (op.aws_requests(|o, _| o == "DescribeInstances").await >= reads + 2).then_some(())
    })
    .await;
    // (The only failing call: GetInstanceProfile before the profile was created.)
    assert_eq!(
        op.aws_requests(|o, outcome| outcome == "error" && o != "GetInstanceProfile")
            .await,
        0
    );
    assert_eq!(
        op.aws_requests(|o, _| o == "AssociateIamInstanceProfile")
            .await,
        1
    );

    apply(
        &ns.name,
        &manifest("web", json!({"roleName": role, "instanceIds": [real]})),
    );
    ready::<InstanceProfileBinding>(&ns.name, "web").await;
}

#[tokio::test]
async fn swaps_the_role_in_place_and_retain_leaves_everything() {
    let ns = Namespace::new("ipb-swap").await;
    let _op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let (first, second) = (format!("{}-first", ns.name), format!("{}-second", ns.name));
    aws_role(&first).await;
    aws_role(&second).await;
    let i1 = launch(&[]).await;
    let spec = |role: &str| {
        json!({"roleName": role, "instanceIds": [i1], "deletionPolicy": "Retain",
               "instanceProfileName": format!("{}-custom", ns.name)})
    };
    apply(&ns.name, &manifest("web", spec(&first)));
    let b: InstanceProfileBinding = ready(&ns.name, "web").await;
    let name = format!("{}-custom", ns.name);
    assert_eq!(
        b.status.unwrap().instance_profile_arn,
        Some(format!("arn:aws:iam::{ACCOUNT}:instance-profile/{name}"))
    );
    assert_eq!(
        roles_of(&profile(&name).await.unwrap()),
        vec![first.clone()]
    );
    let assoc = association(&i1).await.unwrap();

    apply(&ns.name, &manifest("web", spec(&second)));
    ready::<InstanceProfileBinding>(&ns.name, "web").await;
    assert_eq!(
        roles_of(&profile(&name).await.unwrap()),
        vec![second.clone()]
    );
    assert_eq!(
        association(&i1).await,
        Some(assoc.clone()),
        "the association is kept"
    );

    crate::harness::delete::<InstanceProfileBinding>(&ns.name, "web").await;
    gone::<InstanceProfileBinding>(&ns.name, "web").await;
    assert_eq!(
        roles_of(&profile(&name).await.expect("retained")),
        vec![second]
    );
    assert_eq!(association(&i1).await, Some(assoc));
}

#[tokio::test]
async fn binds_instances_in_the_region_of_the_spec() {
    let ns = Namespace::new("ipb-region").await;
    let _op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let role = format!("{}-role", ns.name);
    aws_role(&role).await;
    let west = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&aws_config().await)
            .region(aws_config::Region::new("us-west-2"))
            .build(),
    );
    let id = west
        .run_instances()
        .image_id(AMI)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let ghost = "i-0fedcba9876543210";
    apply(
        &ns.name,
        &manifest(
            "west",
            json!({"roleName": role, "instanceIds": [id, ghost], "region": "us-west-2"}),
        ),
    );
    let b = until_states(
        &ns.name,
        "west",
        &[(&id, "Associated"), (ghost, "NotFound")],
    )
    .await;
    assert_eq!(
        row(&b, ghost).message.as_deref(),
        Some("instance i-0fedcba9876543210 does not exist in us-west-2")
    );
    let assocs = west
        .describe_iam_instance_profile_associations()
        .filters(Filter::builder().name("instance-id").values(&id).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        assocs.iam_instance_profile_associations()[0]
            .iam_instance_profile
            .as_ref()
            .and_then(|p| p.arn.clone()),
        Some(profile_arn(&ns.name, "west"))
    );
}

#[tokio::test]
async fn an_existing_profile_is_adopted_only_when_asked_and_another_owner_is_left_alone() {
    let ns = Namespace::new("ipb-adopt").await;
    let role = format!("{}-role", ns.name);
    aws_role(&role).await;
    let iam = iam().await;
    let legacy = format!("{}-legacy", ns.name);
    iam.create_instance_profile()
        .instance_profile_name(&legacy)
        .send()
        .await
        .unwrap();
    let shared = format!("{}-shared", ns.name);
    iam.create_instance_profile()
        .instance_profile_name(&shared)
        .tags(crate::role::tag("iamwright.dev/cluster", "another-cluster"))
        .tags(crate::role::tag("iamwright.dev/namespace", &ns.name))
        .tags(crate::role::tag("iamwright.dev/name", "shared"))
        .send()
        .await
        .unwrap();
    let i1 = launch(&[]).await;
    let op = Operator::start(
        &ns.name,
        &[
            "--allow-adoption",
            "--allow-existing-role",
            &format!("{}-*", ns.name),
        ],
    )
    .await;
    let spec = |adopt: bool| json!({"roleName": role, "instanceIds": [i1], "adopt": adopt});

    apply(&ns.name, &manifest("legacy", spec(false)));
    apply(&ns.name, &manifest("shared", spec(true)));
    let (status, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "legacy", "AlreadyExists").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("spec.adopt"), "{message}");
    let (_, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "shared", "OwnedByAnother").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("another-cluster"), "{message}");
    assert_eq!(op.aws_writes().await, 0);
    assert!(association(&i1).await.is_none());

    // Deleting the object leaves the other owner's profile in place.
    crate::harness::delete::<InstanceProfileBinding>(&ns.name, "shared").await;
    gone::<InstanceProfileBinding>(&ns.name, "shared").await;
    assert!(profile(&shared).await.is_some());

    apply(&ns.name, &manifest("legacy", spec(true)));
    ready::<InstanceProfileBinding>(&ns.name, "legacy").await;
    let p = profile(&legacy).await.unwrap();
    assert!(
        p.tags()
            .iter()
            .any(|t| t.key == "iamwright.dev/name" && t.value == "legacy"),
        "{p:?}"
    );
    assert_eq!(roles_of(&p), vec![role]);
    assert_eq!(association(&i1).await.map(|a| a.1), Some(p.arn.clone()));
    let events = events_for(&ns.name, "legacy").await;
    assert!(events.iter().any(|(r, _)| r == "Adopted"), "{events:?}");
}

#[tokio::test]
async fn ec2_reads_per_tick_do_not_grow_with_the_number_of_bindings() {
    const BINDINGS: usize = 6;
    let ns = Namespace::new("ipb-view").await;
    let op = Operator::start(
        &ns.name,
        &["--allow-existing-role", &format!("{}-*", ns.name)],
    )
    .await;
    let role = format!("{}-role", ns.name);
    aws_role(&role).await;
    for g in 0..BINDINGS {
        let group = format!("{}-g{g}", ns.name);
        for _ in 0..2 {
            launch(&[("group", &group)]).await;
        }
        apply(
            &ns.name,
            &manifest(
                &format!("b{g}"),
                json!({"roleName": role, "instanceSelector": {"tags": {"group": group}}}),
            ),
        );
    }
    for g in 0..BINDINGS {
        let b: InstanceProfileBinding = ready(&ns.name, &format!("b{g}")).await;
        assert_eq!(b.status.unwrap().bound_count, Some(2));
    }
    // Three instance-resync ticks of every binding (5s each): one shared view per
    // tick, not one EC2 listing per binding (which would be 3 × 6 = 18 of each).
    let describe = |o: &str| o == "DescribeInstances";
    let listing = |o: &str| o == "DescribeIamInstanceProfileAssociations";
    let (d0, l0) = (
        op.aws_requests(|o, _| describe(o)).await,
        op.aws_requests(|o, _| listing(o)).await,
    );
    let r0 = op.reconciles("InstanceProfileBinding").await;
    eventually(
        Duration::from_secs(60),
        "three ticks of every binding",
        || async {
            (op.reconciles("InstanceProfileBinding").await >= r0 + 3 * BINDINGS as u64)
                .then_some(())
        },
    )
    .await;
    let (d, l) = (
        op.aws_requests(|o, _| describe(o)).await - d0,
        op.aws_requests(|o, _| listing(o)).await - l0,
    );
    assert!(
        d <= 5,
        "{d} DescribeInstances over 3 ticks of {BINDINGS} bindings"
    );
    assert!(
        l <= 5,
        "{l} association listings over 3 ticks of {BINDINGS} bindings"
    );
}
