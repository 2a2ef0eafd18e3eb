//! Unknown actions end to end: an action that is not in the shipped AWS service
//! authorization catalog is applied all the same (moto, like AWS, accepts it), and the
//! object says so with `ActionsRecognized=False` and one `UnknownAction` warning.

use std::time::Duration;

use iamwright::api::{Condition, IamPolicy, IamRole};
use iamwright::controllers::reconciler::{Managed, StatusFields};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde_json::json;

use crate::harness::*;
use crate::role::{T, doc, ready, role_manifest};

fn policy(name: &str, actions: &[&str]) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
           "metadata": {"name": name}, "spec": {"document": doc(actions)}})
    .to_string()
}

/// ActionsRecognized as (status, reason, message) once the object is Ready for its
/// current generation and the condition is there.
async fn recognized<K>(ns: &str, name: &str, want: &str) -> (String, String, String)
where
    K: Managed + Resource<Scope = NamespaceResourceScope>,
{
    eventually(
        T,
        &format!("{} {ns}/{name} ActionsRecognized={want}", K::KIND),
        || async {
            let o: K = get(ns, name).await?;
            let conditions: Vec<Condition> = o.status()?.conditions().to_vec();
            let (ready, .., generation) = condition(&conditions, "Ready")?;
            let (status, reason, message, g) = condition(&conditions, "ActionsRecognized")?;
            (ready == "True"
                && generation == o.meta().generation
                && g == generation
                && status == want)
                .then_some((status, reason, message))
        },
    )
    .await
}

/// Warning events for an object, as (reason, note).
async fn warnings(ns: &str, name: &str) -> Vec<(String, String)> {
    events_of(ns, name, true).await
}

#[tokio::test]
async fn an_unknown_action_is_applied_with_a_warning_and_a_condition() {
    let ns = Namespace::new("catalog").await;
    let op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &policy("typo", &["s3:ListBucket", "s3:GetObjects"]),
    );
    apply(&ns.name, &policy("clean", &["s3:GetObject", "S3:list*"]));
    apply(
        &ns.name,
        &role_manifest(
            "app",
            json!({"inlinePolicies": {"logs": doc(&["logs:PutLogEvent"])}}),
        ),
    );

    // Not held back: Ready (moto accepts it, as AWS does), with the field and suggestion.
    let (_, reason, message) = recognized::<IamPolicy>(&ns.name, "typo", "False").await;
    assert_eq!(reason, "UnknownAction");
    let field = "spec.document.Statement[0].Action[1]: `s3:GetObjects`: unknown action; did you mean `s3:GetObject`?";
    assert!(message.ends_with(field), "{message}");
    let p: IamPolicy = ready(&ns.name, "typo").await;
    let arn = p.status.unwrap().arn.unwrap();
    let in_aws = iam()
        .await
        .get_policy()
        .policy_arn(&arn)
        .send()
        .await
        .expect("the policy exists in AWS");
    assert!(in_aws.policy.is_some());

    let (_, reason, message) = recognized::<IamPolicy>(&ns.name, "clean", "True").await;
    assert_eq!(reason, "AllActionsRecognized", "{message}");

    let (_, reason, message) = recognized::<IamRole>(&ns.name, "app", "False").await;
    assert_eq!(reason, "UnknownAction");
    assert!(
        message.ends_with("spec.inlinePolicies.logs.Statement[0].Action[0]: `logs:PutLogEvent`: unknown action; did you mean `logs:PutLogEvents`?"),
        "{message}"
    );

    // One warning per change, not one per resync: counted once both policies were
    // reconciled twice more (the suite resyncs every 5s), so a stuck operator fails.
    let before = op.reconciles("IamPolicy").await;
    eventually(
        Duration::from_secs(60),
        "two resyncs of each policy",
        || async { (op.reconciles("IamPolicy").await >= before + 4).then_some(()) },
    )
    .await;
    let w = warnings(&ns.name, "typo").await;
    let unknown: Vec<_> = w.iter().filter(|(r, _)| r == "UnknownAction").collect();
    assert_eq!(unknown.len(), 1, "{w:?}");
    assert!(unknown[0].1.ends_with(field), "{w:?}");
    assert!(warnings(&ns.name, "clean").await.is_empty());
    let w = warnings(&ns.name, "app").await;
    assert_eq!(
        w.iter().filter(|(r, _)| r == "UnknownAction").count(),
        1,
        "{w:?}"
    );

    // Fixing the typo clears the condition.
    apply(
        &ns.name,
        &policy("typo", &["s3:ListBucket", "s3:GetObject"]),
    );
    recognized::<IamPolicy>(&ns.name, "typo", "True").await;
}
