//! IamPolicy end to end: AWS state in moto, conditions, events and AWS call counts.

use std::collections::BTreeMap;
use std::time::Duration;

use iamwright::api::IamPolicy;
use iamwright::policy::{decode_aws_document, same_document};
use serde_json::{Value, json};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn doc(actions: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Sid": "Main", "Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

fn manifest(name: &str, document: &Value, extra: Value) -> String {
    let mut spec = json!({"document": document});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

fn arn(ns: &str, name: &str) -> String {
    format!("arn:aws:iam::123456789012:policy/{ns}-{name}")
}

/// Wait until the policy is Ready for its current generation; returns it.
async fn ready(ns: &str, name: &str) -> IamPolicy {
    eventually(T, &format!("IamPolicy {ns}/{name} Ready"), || async {
        let p: IamPolicy = get(ns, name).await?;
        let st = p.status.clone()?;
        let (status, ..) = condition(&st.conditions, "Ready")?;
        (status == "True" && st.observed_generation == p.metadata.generation).then_some(p)
    })
    .await
}

/// Wait until Ready has `reason`; returns (status, message) of Ready and Stalled's status.
async fn ready_reason(ns: &str, name: &str, reason: &str) -> (String, String, String) {
    eventually(
        T,
        &format!("IamPolicy {ns}/{name} reason {reason}"),
        || async {
            let p: IamPolicy = get(ns, name).await?;
            let st = p.status?;
            let (status, r, message, gen_) = condition(&st.conditions, "Ready")?;
            let (stalled, ..) = condition(&st.conditions, "Stalled")?;
            (r == reason && gen_ == p.metadata.generation).then_some((status, message, stalled))
        },
    )
    .await
}

async fn aws_tags(arn: &str) -> BTreeMap<String, String> {
    iam()
        .await
        .list_policy_tags()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect()
}

/// The default version of a policy in moto: (version id, document).
pub(crate) async fn default_document(arn: &str) -> (String, Value) {
    let iam = iam().await;
    let p = iam
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    let v = p.default_version_id.unwrap();
    let d = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(&v)
        .send()
        .await
        .unwrap()
        .policy_version
        .unwrap()
        .document
        .unwrap();
    (v, decode_aws_document(&d).unwrap())
}

pub(crate) async fn policy_exists(arn: &str) -> bool {
    match iam().await.get_policy().policy_arn(arn).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            false
        }
        Err(e) => panic!("GetPolicy: {e:?}"),
    }
}

#[tokio::test]
async fn creates_a_tagged_policy_and_reports_ready() {
    let ns = Namespace::new("pol-create").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let d = doc(&["s3:GetObject", "s3:ListBucket"]);
    apply(
        &ns.name,
        &manifest(
            "reader",
            &d,
            json!({"description": "read things", "tags": {"team": "data"}}),
        ),
    );

    let p = ready(&ns.name, "reader").await;
    let st = p.status.unwrap();
    let arn = arn(&ns.name, "reader");
    assert_eq!(st.arn.as_deref(), Some(arn.as_str()));
    assert!(st.policy_id.is_some());
    assert_eq!(st.default_version_id.as_deref(), Some("v1"));
    assert_eq!(condition(&st.conditions, "Reconciling").unwrap().0, "False");
    assert_eq!(condition(&st.conditions, "Stalled").unwrap().0, "False");
    for c in &st.conditions {
        assert_eq!(c.observed_generation, p.metadata.generation, "{c:?}");
    }
    assert_eq!(
        p.metadata.finalizers,
        Some(vec!["iamwright.dev/cleanup".to_string()])
    );

    let tags = aws_tags(&arn).await;
    assert_eq!(tags.get("team").map(String::as_str), Some("data"));
    assert_eq!(
        tags.get("iamwright.dev/cluster").map(String::as_str),
        Some("e2e")
    );
    assert_eq!(tags.get("iamwright.dev/namespace"), Some(&ns.name));
    assert_eq!(
        tags.get("iamwright.dev/name").map(String::as_str),
        Some("reader")
    );
    let (_, aws_doc) = default_document(&arn).await;
    assert!(same_document(&aws_doc, &d), "{aws_doc}");
    let policy = iam()
        .await
        .get_policy()
        .policy_arn(&arn)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(policy.description.as_deref(), Some("read things"));

    let events = events_for(&ns.name, "reader").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Created" && n.contains(&arn)),
        "{events:?}"
    );

    // kubectl shows it with the category and printer columns.
    let (ok, out, _) = kubectl(&["get", "iamwright", "-n", &ns.name], None);
    assert!(ok);
    assert!(
        out.contains("reader") && out.contains("True") && out.contains(&arn),
        "{out}"
    );
}

#[tokio::test]
async fn a_changed_document_becomes_the_new_default_within_five_versions() {
    let ns = Namespace::new("pol-versions").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let arn = arn(&ns.name, "rotating");
    let mut last = Value::Null;
    for i in 0..7 {
        let action = format!("s3:GetObjectVersion{i}");
        last = doc(&[action.as_str()]);
        apply(&ns.name, &manifest("rotating", &last, json!({})));
        let p = ready(&ns.name, "rotating").await;
        assert_eq!(
            p.status.unwrap().default_version_id,
            Some(format!("v{}", i + 1))
        );
    }
    let versions = iam()
        .await
        .list_policy_versions()
        .policy_arn(&arn)
        .send()
        .await
        .unwrap()
        .versions
        .unwrap();
    let ids: Vec<String> = versions
        .iter()
        .filter_map(|v| v.version_id.clone())
        .collect();
    assert_eq!(versions.len(), 5, "{ids:?}");
    assert!(
        !ids.contains(&"v1".to_string()) && !ids.contains(&"v2".to_string()),
        "{ids:?}"
    );
    let (v, aws_doc) = default_document(&arn).await;
    assert_eq!(v, "v7");
    assert!(same_document(&aws_doc, &last));
    let events = events_for(&ns.name, "rotating").await;
    assert!(events.iter().any(|(r, _)| r == "Updated"), "{events:?}");
}

#[tokio::test]
async fn an_invalid_document_is_stalled_before_any_aws_call() {
    let ns = Namespace::new("pol-invalid").await;
    let op = Operator::start(&ns.name, &[]).await;
    let bad = json!({"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}]});
    apply(&ns.name, &manifest("broken", &bad, json!({})));
    let (ready_status, message, stalled) =
        ready_reason(&ns.name, "broken", "InvalidPolicyDocument").await;
    assert_eq!(ready_status, "False");
    assert_eq!(stalled, "True");
    assert_eq!(
        message,
        r#"spec.document.Statement[0].Effect: must be "Allow" or "Deny", got "allow""#
    );
    assert_eq!(
        op.aws_requests(|_, _| true).await,
        0,
        "no AWS call for an invalid document"
    );
    assert!(!policy_exists(&arn(&ns.name, "broken")).await);

    // Fixing the spec brings it to Ready.
    apply(
        &ns.name,
        &manifest("broken", &doc(&["s3:GetObject"]), json!({})),
    );
    ready(&ns.name, "broken").await;
}

#[tokio::test]
async fn an_existing_untagged_policy_is_taken_over_only_with_adopt() {
    let ns = Namespace::new("pol-adopt").await;
    let arn = arn(&ns.name, "legacy");
    let original = doc(&["s3:GetObject"]);
    iam()
        .await
        .create_policy()
        .policy_name(format!("{}-legacy", ns.name))
        .policy_document(original.to_string())
        .send()
        .await
        .unwrap();
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;

    let wanted = doc(&["s3:PutObject"]);
    apply(&ns.name, &manifest("legacy", &wanted, json!({})));
    let (ready_status, message, stalled) = ready_reason(&ns.name, "legacy", "AlreadyExists").await;
    assert_eq!((ready_status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("spec.adopt"), "{message}");
    assert!(aws_tags(&arn).await.is_empty());
    assert!(same_document(&default_document(&arn).await.1, &original));
    assert_eq!(op.aws_writes().await, 0);

    apply(
        &ns.name,
        &manifest("legacy", &wanted, json!({"adopt": true})),
    );
    ready(&ns.name, "legacy").await;
    assert_eq!(
        aws_tags(&arn)
            .await
            .get("iamwright.dev/name")
            .map(String::as_str),
        Some("legacy")
    );
    assert!(same_document(&default_document(&arn).await.1, &wanted));
    let events = events_for(&ns.name, "legacy").await;
    assert!(events.iter().any(|(r, _)| r == "Adopted"), "{events:?}");
}

#[tokio::test]
async fn a_policy_owned_by_another_is_never_touched() {
    let ns = Namespace::new("pol-other").await;
    let arn = arn(&ns.name, "shared");
    let original = doc(&["s3:GetObject"]);
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    iam()
        .await
        .create_policy()
        .policy_name(format!("{}-shared", ns.name))
        .policy_document(original.to_string())
        .tags(tag("iamwright.dev/cluster", "another-cluster"))
        .tags(tag("iamwright.dev/namespace", &ns.name))
        .tags(tag("iamwright.dev/name", "shared"))
        .send()
        .await
        .unwrap();
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    apply(
        &ns.name,
        &manifest("shared", &doc(&["iam:PassRole"]), json!({"adopt": true})),
    );
    let (ready_status, message, stalled) = ready_reason(&ns.name, "shared", "OwnedByAnother").await;
    assert_eq!((ready_status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("another-cluster"), "{message}");
    assert!(same_document(&default_document(&arn).await.1, &original));

    // Deleting the object leaves the other owner's policy in place.
    delete::<IamPolicy>(&ns.name, "shared").await;
    eventually(T, "object gone", || async {
        get::<IamPolicy>(&ns.name, "shared")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(policy_exists(&arn).await);
    assert_eq!(op.aws_writes().await, 0);
}

#[tokio::test]
async fn drift_is_set_back_and_tags_are_exclusive() {
    let ns = Namespace::new("pol-drift").await;
    let op = Operator::start(&ns.name, &[]).await;
    let d = doc(&["s3:GetObject"]);
    apply(
        &ns.name,
        &manifest("guarded", &d, json!({"tags": {"team": "data"}})),
    );
    ready(&ns.name, "guarded").await;
    let arn = arn(&ns.name, "guarded");

    // Someone edits the policy in the console: a new default version and a stray tag.
    let iam = iam().await;
    iam.create_policy_version()
        .policy_arn(&arn)
        .policy_document(doc(&["*"]).to_string())
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    iam.tag_policy()
        .policy_arn(&arn)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("stray")
                .value("x")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    eventually(T, "document set back", || async {
        same_document(&default_document(&arn).await.1, &d).then_some(())
    })
    .await;
    eventually(T, "stray tag removed", || async {
        let tags = aws_tags(&arn).await;
        (!tags.contains_key("stray") && tags.get("team").map(String::as_str) == Some("data"))
            .then_some(())
    })
    .await;
    let events = events_for(&ns.name, "guarded").await;
    assert!(
        events.iter().any(|(r, _)| r == "DriftCorrected"),
        "{events:?}"
    );
    let metrics = op.metrics().await;
    let drift: f64 = metrics
        .lines()
        .find(|l| l.starts_with("iamwright_drift_corrected_total{kind=\"IamPolicy\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(drift >= 2.0, "drift counter: {metrics}");
}

#[tokio::test]
async fn delete_detaches_from_every_entity_then_deletes() {
    let ns = Namespace::new("pol-delete").await;
    let _op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &manifest("doomed", &doc(&["s3:GetObject"]), json!({})),
    );
    ready(&ns.name, "doomed").await;
    apply(
        &ns.name,
        &manifest("doomed", &doc(&["s3:PutObject"]), json!({})),
    );
    ready(&ns.name, "doomed").await;
    let arn = arn(&ns.name, "doomed");

    let iam = iam().await;
    let n = format!("{}-x", ns.name);
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    iam.create_role()
        .role_name(&n)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    iam.create_user().user_name(&n).send().await.unwrap();
    iam.create_group().group_name(&n).send().await.unwrap();
    iam.attach_role_policy()
        .role_name(&n)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    iam.attach_user_policy()
        .user_name(&n)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    iam.attach_group_policy()
        .group_name(&n)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();

    delete::<IamPolicy>(&ns.name, "doomed").await;
    eventually(T, "object gone", || async {
        get::<IamPolicy>(&ns.name, "doomed")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!policy_exists(&arn).await);
    let role = iam
        .list_attached_role_policies()
        .role_name(&n)
        .send()
        .await
        .unwrap();
    assert!(role.attached_policies().is_empty());
    let user = iam
        .list_attached_user_policies()
        .user_name(&n)
        .send()
        .await
        .unwrap();
    assert!(user.attached_policies().is_empty());
    let group = iam
        .list_attached_group_policies()
        .group_name(&n)
        .send()
        .await
        .unwrap();
    assert!(group.attached_policies().is_empty());
}

#[tokio::test]
async fn retain_leaves_the_policy_in_aws() {
    let ns = Namespace::new("pol-retain").await;
    let _op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &manifest(
            "kept",
            &doc(&["s3:GetObject"]),
            json!({"deletionPolicy": "Retain"}),
        ),
    );
    ready(&ns.name, "kept").await;
    delete::<IamPolicy>(&ns.name, "kept").await;
    eventually(T, "object gone", || async {
        get::<IamPolicy>(&ns.name, "kept")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(policy_exists(&arn(&ns.name, "kept")).await);
}

#[tokio::test]
async fn a_policy_in_sync_costs_reads_only() {
    let ns = Namespace::new("pol-quiet").await;
    let op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &manifest(
            "quiet",
            &doc(&["s3:GetObject"]),
            json!({"tags": {"a": "b"}}),
        ),
    );
    let before = ready(&ns.name, "quiet").await;
    assert!(op.aws_writes().await >= 1, "the create was counted");
    // Two resyncs (5s each, ±10%): the snapshot holds the document, so a policy in
    // sync reads only its tags (ListPolicyTags, once per reconcile).
    let gets_before = op.aws_requests(|o, _| o.starts_with("GetPolicy")).await;
    assert_eq!(
        op.writes_across_resyncs("ListPolicyTags", 2).await,
        0,
        "an object in sync caused AWS writes"
    );
    assert_eq!(
        op.aws_requests(|o, _| o.starts_with("GetPolicy")).await - gets_before,
        0,
        "a policy in sync read its document beyond the snapshot"
    );
    let after: IamPolicy = get(&ns.name, "quiet").await.unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "status was rewritten"
    );
}

#[tokio::test]
async fn an_aws_refusal_is_reported_and_not_hammered() {
    let ns = Namespace::new("pol-refused").await;
    let op = Operator::start(&ns.name, &[]).await;
    // AWS allows tag values of at most 256 characters; the schema leaves that to AWS.
    let long = "v".repeat(300);
    apply(
        &ns.name,
        &manifest(
            "refused",
            &doc(&["s3:GetObject"]),
            json!({"tags": {"big": long}}),
        ),
    );
    // AWS refusing the input needs a change by the user: Stalled, so kstatus tools
    // (Flux, kpt) report Failed instead of waiting for their timeout.
    let (ready_status, message, stalled) = ready_reason(&ns.name, "refused", "AwsError").await;
    assert_eq!((ready_status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("CreatePolicy"), "{message}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = op.aws_requests(|o, _| o == "CreatePolicy").await;
    assert!(attempts <= 2, "CreatePolicy tried {attempts} times in 10s");
}
