//! Other accounts: an IamScope's `spec.account` makes the operator assume that
//! account's role for its namespaces' objects. moto keeps one IAM per account and maps
//! the credentials STS hands out to the role's account.

use iamwright::api::{IamPolicy, IamRole};
use serde_json::json;

use crate::harness::*;
use crate::role::{gone, ready, role_manifest};
use crate::trust::Scope;

const ACCOUNT_A: &str = "111111111111";
const ACCOUNT_B: &str = "222222222222";

/// An IAM client acting in `account` (through a role the test assumes, as the operator does).
async fn iam_in(account: &str) -> aws_sdk_iam::Client {
    let base = aws_config().await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(format!(
        "arn:aws:iam::{account}:role/e2e-reader"
    ))
    .session_name("e2e")
    .configure(&base)
    .build()
    .await;
    let config = base
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build();
    aws_sdk_iam::Client::new(&config)
}

async fn role_namespace(iam: &aws_sdk_iam::Client, name: &str) -> Option<String> {
    let role = iam.get_role().role_name(name).send().await.ok()?.role?;
    role.tags()
        .iter()
        .find(|t| t.key == "iamwright.dev/namespace")
        .map(|t| t.value.clone())
}

#[tokio::test]
async fn two_namespaces_in_two_accounts_share_names_and_nothing_crosses() {
    let (a, b) = (
        Namespace::new("acct-a").await,
        Namespace::new("acct-b").await,
    );
    let _sa = Scope::apply(
        &a.name,
        &a.name,
        json!({"account": {"roleArn": format!("arn:aws:iam::{ACCOUNT_A}:role/iamwright")}}),
    );
    let _sb = Scope::apply(
        &b.name,
        &b.name,
        json!({"account": {"roleArn": format!("arn:aws:iam::{ACCOUNT_B}:role/iamwright"),
                           "externalId": "tenant-b", "sessionName": "iamwright-b"}}),
    );
    let op = Operator::start(&a.name, &["--watch-namespace", &b.name]).await;
    // The same AWS names in both namespaces: they live in different accounts.
    let name = format!("shared-{}", random_suffix());
    for ns in [&a.name, &b.name] {
        let policy = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
            "metadata": {"name": "p"},
            "spec": {"name": name, "document": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject",
                 "Resource": "arn:aws:s3:::b-$AWS_ACCOUNT_ID/*"}]}}});
        apply(ns, &policy.to_string());
        apply(
            ns,
            &role_manifest("r", json!({"name": name, "policyRefs": [{"name": "p"}]})),
        );
    }
    for (ns, account) in [(&a.name, ACCOUNT_A), (&b.name, ACCOUNT_B)] {
        let p: IamPolicy = ready(ns, "p").await;
        let st = p.status.unwrap();
        assert_eq!(st.account_id.as_deref(), Some(account));
        assert_eq!(
            st.arn.as_deref(),
            Some(format!("arn:aws:iam::{account}:policy/{name}").as_str())
        );
        let r: IamRole = ready(ns, "r").await;
        let st = r.status.unwrap();
        assert_eq!(st.account_id.as_deref(), Some(account));
        assert_eq!(
            st.attached_policy_arns,
            vec![format!("arn:aws:iam::{account}:policy/{name}")]
        );
        // The account variable is the object's own account.
        let iam = iam_in(account).await;
        let version = iam
            .get_policy_version()
            .policy_arn(format!("arn:aws:iam::{account}:policy/{name}"))
            .version_id("v1")
            .send()
            .await
            .unwrap();
        let doc = iamwright::policy::decode_aws_document(
            version.policy_version.unwrap().document.as_deref().unwrap(),
        )
        .unwrap();
        assert_eq!(
            doc["Statement"][0]["Resource"],
            format!("arn:aws:s3:::b-{account}/*")
        );
        // Each account holds exactly its own namespace's role.
        assert_eq!(
            role_namespace(&iam, &name).await.as_deref(),
            Some(ns.as_str())
        );
    }
    // Nothing in the operator's own account.
    assert_eq!(role_namespace(&iam().await, &name).await, None);
    // Each account's role was assumed once for its session, not per call, and every
    // AssumeRole is counted like any AWS call.
    let assumed = op
        .aws_requests(|o, outcome| o == "AssumeRole" && outcome == "success")
        .await;
    let calls = op.aws_requests(|o, _| o != "AssumeRole").await;
    assert_eq!(assumed, 2, "AssumeRole calls, beside {calls} other calls");

    // Deleting in one namespace deletes in its account only.
    delete::<IamRole>(&a.name, "r").await;
    gone::<IamRole>(&a.name, "r").await;
    assert_eq!(role_namespace(&iam_in(ACCOUNT_A).await, &name).await, None);
    assert_eq!(
        role_namespace(&iam_in(ACCOUNT_B).await, &name)
            .await
            .as_deref(),
        Some(b.name.as_str())
    );
    drop(op);
}
