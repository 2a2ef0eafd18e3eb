//! Documents from ConfigMaps (`IamPolicy.spec.documentFrom`,
//! `IamRole.spec.inlinePoliciesFrom`) and the operator's variables (`$AWS_ACCOUNT_ID`,
//! `${AWS_PARTITION}`, `${AWS_REGION}`): what moto stores, conditions, AWS call counts.
//!
//! The operators here resync once an hour (unless the test is about resyncs): a change
//! they apply within the test's minute was started by the ConfigMap watch.

use iamwright::api::{IamPolicy, IamRole};
use iamwright::policy::decode_aws_document;
use serde_json::{Value, json};

use crate::harness::*;
use crate::policy::{default_document, policy_exists};
use crate::role::{T, ready, ready_reason};

const ACCOUNT: &str = "123456789012";
/// The region the bed's operator runs in (the env file's AWS_REGION).
fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

const NO_RESYNC: [&str; 2] = ["--resync-interval", "1h"];

fn config_map(name: &str, data: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
        .to_string()
}

/// A vendor's policy file, as shipped: variables to be replaced, and IAM's own.
fn vendor_policy(actions: &[&str]) -> String {
    serde_json::to_string_pretty(&json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "VendorAccess",
            "Effect": "Allow",
            "Action": actions,
            "Resource": [
                "arn:${AWS_PARTITION}:s3:::vendor-$AWS_ACCOUNT_ID-${AWS_REGION}/*",
                "arn:aws:s3:::vendor-home/${aws:username}/*"
            ]
        }]
    }))
    .unwrap()
}

fn policy_from(name: &str, cm: &str, key: &str) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
           "metadata": {"name": name},
           "spec": {"documentFrom": {"configMapKeyRef": {"name": cm, "key": key}}}})
    .to_string()
}

fn policy_arn(ns: &str, name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy/{ns}-{name}")
}

#[tokio::test]
async fn a_policy_from_a_config_map_gets_the_account_and_follows_the_config_map() {
    let ns = Namespace::new("docfrom-policy").await;
    let op = Operator::start(&ns.name, &NO_RESYNC).await;
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"policy.json": vendor_policy(&["s3:GetObject"])}),
        ),
    );
    apply(&ns.name, &policy_from("vendor", "vendor", "policy.json"));
    ready::<IamPolicy>(&ns.name, "vendor").await;

    let arn = policy_arn(&ns.name, "vendor");
    let (v1, stored) = default_document(&arn).await;
    let region = region();
    assert_eq!(
        stored["Statement"][0]["Resource"],
        json!([
            format!("arn:aws:s3:::vendor-{ACCOUNT}-{region}/*"),
            // IAM's own variable is AWS's to evaluate: stored as written.
            "arn:aws:s3:::vendor-home/${aws:username}/*"
        ]),
        "{stored}"
    );

    // The vendor ships a new version: the ConfigMap changes, the policy follows.
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"policy.json": vendor_policy(&["s3:GetObject", "s3:ListBucket"])}),
        ),
    );
    let (v2, stored) = eventually(T, "a new default version", || async {
        let (v, d) = default_document(&arn).await;
        (v != v1).then_some((v, d))
    })
    .await;
    assert_eq!(v2, "v2");
    assert_eq!(
        stored["Statement"][0]["Action"],
        json!(["s3:GetObject", "s3:ListBucket"])
    );
    // A ConfigMap edit is an update, not drift.
    let events = events_for(&ns.name, "vendor").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Updated"
                && n.contains(r#"from ConfigMap "vendor" key "policy.json""#)),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|(r, _)| r == "DriftCorrected"),
        "{events:?}"
    );
    assert!(
        op.aws_requests(|o, _| o == "CreatePolicyVersion").await == 1,
        "one new version for one change"
    );
}

#[tokio::test]
async fn a_missing_config_map_waits_until_it_is_created() {
    let ns = Namespace::new("docfrom-missing").await;
    let op = Operator::start(&ns.name, &NO_RESYNC).await;
    apply(&ns.name, &policy_from("later", "not-yet", "policy.json"));
    let (ready_status, message, stalled) =
        ready_reason::<IamPolicy>(&ns.name, "later", "DependencyNotReady").await;
    assert_eq!(
        (ready_status.as_str(), stalled.as_str()),
        ("False", "False")
    );
    assert_eq!(
        message,
        format!(
            r#"spec.documentFrom.configMapKeyRef: ConfigMap "not-yet" does not exist in namespace "{}""#,
            ns.name
        )
    );
    let p: IamPolicy = get(&ns.name, "later").await.unwrap();
    let reconciling = condition(&p.status.unwrap().conditions, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.0.as_str(), reconciling.1.as_str()),
        ("True", "DependencyNotReady")
    );

    // A ConfigMap without the key: still waiting, now for the key.
    apply(
        &ns.name,
        &config_map("not-yet", json!({"other.json": "{}"})),
    );
    eventually(T, "waiting for the key", || async {
        let p: IamPolicy = get(&ns.name, "later").await?;
        let (_, reason, message, _) = condition(&p.status?.conditions, "Ready")?;
        (reason == "DependencyNotReady"
            && message
                == r#"spec.documentFrom.configMapKeyRef: ConfigMap "not-yet" has no key "policy.json""#)
            .then_some(())
    })
    .await;
    assert_eq!(op.aws_writes().await, 0, "no AWS write while waiting");
    assert!(!policy_exists(&policy_arn(&ns.name, "later")).await);

    apply(
        &ns.name,
        &config_map(
            "not-yet",
            json!({"policy.json": vendor_policy(&["s3:GetObject"])}),
        ),
    );
    ready::<IamPolicy>(&ns.name, "later").await;
    assert!(policy_exists(&policy_arn(&ns.name, "later")).await);
}

#[tokio::test]
async fn an_unparseable_document_is_stalled_without_aws_writes_until_the_config_map_is_fixed() {
    let ns = Namespace::new("docfrom-bad").await;
    let op = Operator::start(&ns.name, &NO_RESYNC).await;
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"policy.json": "{\"Version\": \"2012-10-17\", \"Statement\": ["}),
        ),
    );
    apply(&ns.name, &policy_from("broken", "vendor", "policy.json"));
    let (ready_status, message, stalled) =
        ready_reason::<IamPolicy>(&ns.name, "broken", "InvalidPolicyDocument").await;
    assert_eq!((ready_status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(
        message.starts_with(
            r#"spec.documentFrom: ConfigMap "vendor" key "policy.json" is not valid JSON: "#
        ),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0);

    // A document that parses but breaks the grammar names the field and the key.
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"policy.json": r#"{"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}]}"#}),
        ),
    );
    eventually(T, "the grammar problem", || async {
        let p: IamPolicy = get(&ns.name, "broken").await?;
        let (_, reason, message, _) = condition(&p.status?.conditions, "Ready")?;
        (reason == "InvalidPolicyDocument"
            && message
                == r#"spec.documentFrom.Statement[0].Effect: must be "Allow" or "Deny", got "allow" (from ConfigMap "vendor" key "policy.json")"#)
            .then_some(())
    })
    .await;
    assert_eq!(op.aws_writes().await, 0, "no AWS write for a bad document");
    assert!(!policy_exists(&policy_arn(&ns.name, "broken")).await);

    // Fixing the ConfigMap (not the object) is the change a stalled object waits for.
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"policy.json": vendor_policy(&["s3:GetObject"])}),
        ),
    );
    ready::<IamPolicy>(&ns.name, "broken").await;
}

#[tokio::test]
async fn a_role_takes_inline_policies_from_config_maps_and_variables_in_its_trust_policy() {
    let ns = Namespace::new("docfrom-role").await;
    let _op = Operator::start(&ns.name, &NO_RESYNC).await;
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"s3.json": vendor_policy(&["s3:GetObject"]),
                   "logs.yaml": "Version: '2012-10-17'\nStatement:\n- Effect: Allow\n  Action: logs:PutLogEvents\n  Resource: arn:${AWS_PARTITION}:logs:${AWS_REGION}:${AWS_ACCOUNT_ID}:log-group:vendor:*\n"}),
        ),
    );
    let role = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole",
        "metadata": {"name": "vendor"},
        "spec": {
            "assumeRolePolicy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"AWS": "arn:${AWS_PARTITION}:iam::$AWS_ACCOUNT_ID:root"},
                "Action": "sts:AssumeRole"}]},
            "inlinePolicies": {"own": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:*:${AWS_ACCOUNT_ID}:q"}]}},
            "inlinePoliciesFrom": {
                "s3": {"configMapKeyRef": {"name": "vendor", "key": "s3.json"}},
                "logs": {"configMapKeyRef": {"name": "vendor", "key": "logs.yaml"}}}}});
    apply(&ns.name, &role.to_string());
    ready::<IamRole>(&ns.name, "vendor").await;

    let iam = iam().await;
    let name = format!("{}-vendor", ns.name);
    let inline = |policy: &'static str| {
        let iam = iam.clone();
        let name = name.clone();
        async move {
            let out = iam
                .get_role_policy()
                .role_name(&name)
                .policy_name(policy)
                .send()
                .await
                .unwrap();
            decode_aws_document(&out.policy_document).unwrap()
        }
    };
    let region = region();
    assert_eq!(
        inline("logs").await["Statement"][0]["Resource"],
        json!(format!(
            "arn:aws:logs:{region}:{ACCOUNT}:log-group:vendor:*"
        ))
    );
    assert_eq!(
        inline("own").await["Statement"][0]["Resource"],
        json!(format!("arn:aws:sqs:*:{ACCOUNT}:q"))
    );
    assert_eq!(
        inline("s3").await["Statement"][0]["Resource"][1],
        json!("arn:aws:s3:::vendor-home/${aws:username}/*")
    );
    let stored = iam.get_role().role_name(&name).send().await.unwrap();
    let trust = decode_aws_document(
        stored
            .role
            .unwrap()
            .assume_role_policy_document
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        json!(format!("arn:aws:iam::{ACCOUNT}:root"))
    );

    // The ConfigMap changes: the inline policy follows.
    apply(
        &ns.name,
        &config_map(
            "vendor",
            json!({"s3.json": vendor_policy(&["s3:PutObject"]),
                   "logs.yaml": "Version: '2012-10-17'\nStatement:\n- Effect: Allow\n  Action: logs:PutLogEvents\n  Resource: '*'\n"}),
        ),
    );
    eventually(T, "the inline policies follow the ConfigMap", || async {
        let s3 = inline("s3").await;
        let logs = inline("logs").await;
        (s3["Statement"][0]["Action"] == json!(["s3:PutObject"])
            && logs["Statement"][0]["Resource"] == json!("*"))
        .then_some(())
    })
    .await;
    let events = eventually(T, "the Updated event", || async {
        let events = events_for(&ns.name, "vendor").await;
        events
            .iter()
            .any(|(r, n)| r == "Updated" && n.contains("put inline policy s3 from its ConfigMap"))
            .then_some(events)
    })
    .await;
    assert!(
        !events.iter().any(|(r, _)| r == "DriftCorrected"),
        "{events:?}"
    );
}

#[tokio::test]
async fn variables_in_a_written_document_are_compared_substituted() {
    let ns = Namespace::new("docfrom-vars").await;
    let op = Operator::start(&ns.name, &[]).await;
    let policy = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": "mine"},
        "spec": {"document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "sns:Publish",
            "Resource": "arn:${AWS_PARTITION}:sns:${AWS_REGION}:$AWS_ACCOUNT_ID:alerts"}]}}});
    apply(&ns.name, &policy.to_string());
    ready::<IamPolicy>(&ns.name, "mine").await;
    let arn = policy_arn(&ns.name, "mine");
    let (v, stored) = default_document(&arn).await;
    assert_eq!(v, "v1");
    assert_eq!(
        stored["Statement"][0]["Resource"],
        json!(format!("arn:aws:sns:{}:{ACCOUNT}:alerts", region()))
    );
    // Resyncs compare AWS with the substituted document: in sync, nothing written.
    assert_eq!(op.writes_across_resyncs("ListPolicyTags", 2).await, 0);
    assert_eq!(default_document(&arn).await.0, "v1");
}

#[tokio::test]
async fn the_crd_refuses_both_or_neither_document_and_a_name_in_both_maps() {
    let ns = Namespace::new("docfrom-cel").await;
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    let from = json!({"configMapKeyRef": {"name": "vendor", "key": "policy.json"}});
    let refused = |spec: Value, kind: &str| {
        let manifest = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "x"}, "spec": spec});
        let (ok, _, err) = kubectl(
            &["apply", "-n", &ns.name, "-f", "-"],
            Some(&manifest.to_string()),
        );
        assert!(!ok, "{kind} {spec} was accepted");
        err
    };
    let err = refused(json!({"document": doc, "documentFrom": from}), "IamPolicy");
    assert!(
        err.contains("exactly one of spec.document and spec.documentFrom must be set"),
        "{err}"
    );
    let err = refused(json!({}), "IamPolicy");
    assert!(
        err.contains("exactly one of spec.document and spec.documentFrom must be set"),
        "{err}"
    );
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let err = refused(
        json!({"assumeRolePolicy": trust, "inlinePolicies": {"s3": doc},
               "inlinePoliciesFrom": {"s3": from}}),
        "IamRole",
    );
    assert!(
        err.contains("each inline policy name must be in only one of spec.inlinePolicies and spec.inlinePoliciesFrom"),
        "{err}"
    );
    let err = refused(
        json!({"documentFrom": {"configMapKeyRef": {"name": "Not_A_Name", "key": "k"}}}),
        "IamPolicy",
    );
    assert!(
        err.contains("spec.documentFrom.configMapKeyRef.name"),
        "{err}"
    );
}
