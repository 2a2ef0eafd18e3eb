//! IamRole.spec.serviceAccounts end to end (docs/eks.md): the trust policy moto stores
//! for IRSA (`--oidc-issuer`), EKS Pod Identity (`--pod-identity`) and both, merged
//! with a given assumeRolePolicy; no write on later reconciles; another namespace only
//! with a grant (flag or IamScope); service accounts without either flag refused; the
//! CRD's CEL rule.
//! moto does not evaluate trust policies: tests/trust_policy.rs proves with an IAM
//! evaluation engine that the generated IRSA statement admits only the named accounts.

use serde_json::{Value, json};

use iamwright::api::IamRole;
use iamwright::policy::{decode_aws_document, same_document};

use crate::harness::*;
use crate::role::{aws_role, ready, ready_reason, trust};

const ISSUER_URL: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/E2EEXAMPLE";
const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/E2EEXAMPLE";
const PROVIDER: &str =
    "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/E2EEXAMPLE";

fn manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

/// The trust policy moto stores for a role (GetRole, URL-decoded).
async fn stored_trust(name: &str) -> Value {
    let role = aws_role(name).await.expect("role exists");
    decode_aws_document(role.assume_role_policy_document.as_deref().unwrap()).unwrap()
}

fn irsa(subjects: Value) -> Value {
    json!({"Sid": "IamwrightIrsa", "Effect": "Allow", "Principal": {"Federated": PROVIDER},
           "Action": "sts:AssumeRoleWithWebIdentity",
           "Condition": {"StringEquals": {format!("{ISSUER}:sub"): subjects,
                                          format!("{ISSUER}:aud"): "sts.amazonaws.com"}}})
}

fn pod_identity(ns: &str, names: Value) -> Value {
    json!({"Sid": "IamwrightPodIdentity", "Effect": "Allow",
           "Principal": {"Service": "pods.eks.amazonaws.com"},
           "Action": ["sts:AssumeRole", "sts:TagSession"],
           "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": ns,
                                          "aws:RequestTag/kubernetes-service-account": names}}})
}

fn assert_same(got: &Value, want: &Value) {
    assert!(
        same_document(got, want),
        "stored trust policy\n{got:#}\nwanted\n{want:#}"
    );
}

#[tokio::test]
async fn irsa_trust_is_generated_merged_and_left_alone_once_in_sync() {
    let ns = Namespace::new("eks-irsa").await;
    let op = Operator::start(&ns.name, &["--oidc-issuer", ISSUER_URL]).await;
    apply(
        &ns.name,
        &manifest(
            "app",
            json!({"serviceAccounts": [{"name": "app"}, {"name": "worker"}]}),
        ),
    );
    let ec2 = trust(&["ec2.amazonaws.com"]);
    apply(
        &ns.name,
        &manifest(
            "merged",
            json!({"assumeRolePolicy": ec2, "serviceAccounts": [{"name": "app"}]}),
        ),
    );
    ready::<IamRole>(&ns.name, "app").await;
    ready::<IamRole>(&ns.name, "merged").await;

    let subjects = json!([
        format!("system:serviceaccount:{}:app", ns.name),
        format!("system:serviceaccount:{}:worker", ns.name)
    ]);
    assert_same(
        &stored_trust(&format!("{}-app", ns.name)).await,
        &json!({"Version": "2012-10-17", "Statement": [irsa(subjects)]}),
    );
    assert_same(
        &stored_trust(&format!("{}-merged", ns.name)).await,
        &json!({"Version": "2012-10-17", "Statement": [
            ec2["Statement"][0].clone(),
            irsa(json!(format!("system:serviceaccount:{}:app", ns.name)))]}),
    );

    // Two resyncs (one account snapshot each): the stored trust compares equal,
    // nothing is written.
    assert_eq!(
        op.writes_across_resyncs("GetAccountAuthorizationDetails", 4)
            .await,
        0,
        "a role with generated trust in sync caused AWS writes"
    );
}

#[tokio::test]
async fn pod_identity_and_irsa_together_give_both_statements() {
    let ns = Namespace::new("eks-both").await;
    let _op = Operator::start(&ns.name, &["--oidc-issuer", ISSUER_URL, "--pod-identity"]).await;
    apply(
        &ns.name,
        &manifest("app", json!({"serviceAccounts": [{"name": "app"}]})),
    );
    ready::<IamRole>(&ns.name, "app").await;
    assert_same(
        &stored_trust(&format!("{}-app", ns.name)).await,
        &json!({"Version": "2012-10-17", "Statement": [
            irsa(json!(format!("system:serviceaccount:{}:app", ns.name))),
            pod_identity(&ns.name, json!("app"))]}),
    );

    // A new service account: the generated statements are replaced, not appended.
    apply(
        &ns.name,
        &manifest(
            "app",
            json!({"serviceAccounts": [{"name": "app"}, {"name": "cron"}]}),
        ),
    );
    let want = json!({"Version": "2012-10-17", "Statement": [
        irsa(json!([format!("system:serviceaccount:{}:app", ns.name),
                    format!("system:serviceaccount:{}:cron", ns.name)])),
        pod_identity(&ns.name, json!(["app", "cron"]))]});
    let name = format!("{}-app", ns.name);
    eventually(crate::role::T, "the trust policy updated", || async {
        same_document(&stored_trust(&name).await, &want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn another_namespace_s_service_account_needs_a_grant() {
    let ns = Namespace::new("eks-grant").await;
    let other = format!("{}-jobs", ns.name);
    let mut op = Operator::start(&ns.name, &["--oidc-issuer", ISSUER_URL]).await;
    apply(
        &ns.name,
        &manifest(
            "batch",
            json!({"serviceAccounts": [{"name": "app"}, {"namespace": other, "name": "batch"}]}),
        ),
    );
    let (status, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "batch", "NotPermitted").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(
        message.starts_with("spec.serviceAccounts[1].namespace: ")
            && message.contains(&format!("{other:?}"))
            && message.contains("--allow-service-account-namespace"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0, "no AWS write without the grant");
    assert!(aws_role(&format!("{}-batch", ns.name)).await.is_none());
    op.stop();

    // The flag grants `<own namespace>-jobs` to every namespace.
    let _op = Operator::start(
        &ns.name,
        &[
            "--oidc-issuer",
            ISSUER_URL,
            "--allow-service-account-namespace",
            "{namespace}-jobs",
        ],
    )
    .await;
    ready::<IamRole>(&ns.name, "batch").await;
    assert_same(
        &stored_trust(&format!("{}-batch", ns.name)).await,
        &json!({"Version": "2012-10-17", "Statement": [irsa(json!([
            format!("system:serviceaccount:{}:app", ns.name),
            format!("system:serviceaccount:{other}:batch")]))]}),
    );
}

#[tokio::test]
async fn service_accounts_without_an_eks_flag_are_refused() {
    let ns = Namespace::new("eks-noflag").await;
    let op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &manifest("app", json!({"serviceAccounts": [{"name": "app"}]})),
    );
    let (status, message, stalled) = ready_reason::<IamRole>(&ns.name, "app", "InvalidSpec").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(
        message.starts_with("spec.serviceAccounts: ")
            && message.contains("--oidc-issuer")
            && message.contains("--pod-identity"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0);
    assert!(aws_role(&format!("{}-app", ns.name)).await.is_none());

    // Neither a trust policy nor service accounts: the apiserver refuses the object.
    let (ok, out, err) = kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&manifest("empty", json!({"serviceAccounts": []}))),
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("at least one of spec.assumeRolePolicy, spec.serviceAccounts and spec.credentials must be set"),
        "{err}"
    );
}

#[tokio::test]
async fn an_iam_scope_grants_another_namespace_s_service_accounts() {
    let ns = Namespace::new("eks-scope").await;
    let other = format!("{}-jobs", ns.name);
    let _scope = crate::trust::Scope::apply(
        &ns.name,
        &ns.name,
        json!({"serviceAccountNamespaces": ["{namespace}-jobs"]}),
    );
    let _op = Operator::start(&ns.name, &["--pod-identity"]).await;
    apply(
        &ns.name,
        &manifest(
            "batch",
            json!({"serviceAccounts": [{"namespace": other, "name": "batch"}]}),
        ),
    );
    ready::<IamRole>(&ns.name, "batch").await;
    assert_same(
        &stored_trust(&format!("{}-batch", ns.name)).await,
        &json!({"Version": "2012-10-17", "Statement": [pod_identity(&other, json!("batch"))]}),
    );
}
