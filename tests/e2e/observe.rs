//! `managementPolicy: Observe`: the status mirrors AWS, `Drifted` names the fields
//! that differ, and the operator makes no AWS write at all — not even on delete.

use iamwright::api::IamRole;
use serde_json::{Value, json};

use crate::harness::*;
use crate::role::{T, aws_policy, aws_role, gone, ready, ready_reason, role_manifest, trust};

/// The (status, reason, message) of condition `type_` on the object, for its generation.
async fn condition_of(ns: &str, name: &str, type_: &str) -> Option<(String, String, String)> {
    let r: IamRole = get(ns, name).await?;
    let c = r
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    (c.observed_generation == r.metadata.generation).then_some((c.status, c.reason, c.message))
}

fn observing(name: &str, aws_name: &str, extra: Value) -> String {
    let mut spec =
        json!({"managementPolicy": "Observe", "name": aws_name, "description": "web servers"});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    role_manifest(name, spec)
}

#[tokio::test]
async fn an_observed_role_reports_drift_and_is_never_written() {
    let ns = Namespace::new("observe-role").await;
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    let n = format!("{}-prod", ns.name);
    let iam = iam().await;
    iam.create_role()
        .role_name(&n)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .description("hand made")
        .send()
        .await
        .unwrap();
    let extra = aws_policy(&format!("{}-extra", ns.name), &["s3:GetObject"]).await;
    iam.attach_role_policy()
        .role_name(&n)
        .policy_arn(&extra)
        .send()
        .await
        .unwrap();
    apply(&ns.name, &observing("prod", &n, json!({})));

    // Drifted: description and attachments differ. Stalled (only a human can align
    // them), and the status mirrors what AWS holds.
    let (is_ready, message, stalled) = ready_reason::<IamRole>(&ns.name, "prod", "Drifted").await;
    assert_eq!((is_ready.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("spec.description"), "{message}");
    assert!(message.contains("spec.managedPolicyArns"), "{message}");
    let (drifted, _, why) = condition_of(&ns.name, "prod", "Drifted").await.unwrap();
    assert_eq!(drifted, "True");
    assert!(why.contains("spec.description"), "{why}");
    let r: IamRole = get(&ns.name, "prod").await.unwrap();
    let st = r.status.unwrap();
    assert_eq!(st.arn, aws_role(&n).await.map(|r| r.arn));
    assert_eq!(st.attached_policy_arns, vec![extra.clone()]);

    // AWS brought in line by hand: Ready, Drifted=False.
    iam.update_role()
        .role_name(&n)
        .description("web servers")
        .send()
        .await
        .unwrap();
    iam.detach_role_policy()
        .role_name(&n)
        .policy_arn(&extra)
        .send()
        .await
        .unwrap();
    ready::<IamRole>(&ns.name, "prod").await;
    eventually(T, "Drifted=False", || async {
        let (s, ..) = condition_of(&ns.name, "prod", "Drifted").await?;
        (s == "False").then_some(())
    })
    .await;

    // Deleting the object leaves the role; nothing was ever written, not even a tag.
    delete::<IamRole>(&ns.name, "prod").await;
    gone::<IamRole>(&ns.name, "prod").await;
    let role = aws_role(&n).await.expect("role left in place");
    assert!(role.tags().is_empty(), "{:?}", role.tags());
    assert_eq!(
        op.aws_writes().await,
        0,
        "AWS writes by an observe-only object"
    );
}

#[tokio::test]
async fn observe_needs_the_resource_and_the_adoption_grant() {
    let ns = Namespace::new("observe-missing").await;
    let op = Operator::start(&ns.name, &[]).await;
    let n = format!("{}-absent", ns.name);
    apply(&ns.name, &observing("absent", &n, json!({})));
    let (_, message, stalled) = ready_reason::<IamRole>(&ns.name, "absent", "NotFound").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("never creates"), "{message}");
    assert!(aws_role(&n).await.is_none());

    // An unmanaged role exists now; observing it needs the grant adoption needs.
    iam()
        .await
        .create_role()
        .role_name(&n)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    let (_, message, _) = ready_reason::<IamRole>(&ns.name, "absent", "NotPermitted").await;
    assert!(message.contains("--allow-adoption"), "{message}");
    assert_eq!(op.aws_writes().await, 0);
}

#[tokio::test]
async fn an_observed_policy_mirrors_aws_and_names_the_drifted_document() {
    use iamwright::api::IamPolicy;
    let ns = Namespace::new("observe-policy").await;
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    let n = format!("{}-vendor", ns.name);
    let arn = aws_policy(&n, &["s3:GetObject"]).await;
    let manifest = |actions: &[&str]| {
        json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
               "metadata": {"name": "vendor"},
               "spec": {"managementPolicy": "Observe", "name": n,
                        "document": {"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": actions, "Resource": "*"}]}}})
        .to_string()
    };
    apply(&ns.name, &manifest(&["s3:GetObject"]));
    let p: IamPolicy = ready(&ns.name, "vendor").await;
    let st = p.status.unwrap();
    assert_eq!(st.arn.as_deref(), Some(arn.as_str()));
    assert_eq!(st.default_version_id.as_deref(), Some("v1"));

    // The spec asks for more than AWS holds: drift, and AWS is left as it is.
    apply(&ns.name, &manifest(&["s3:GetObject", "s3:PutObject"]));
    let (_, message, stalled) = ready_reason::<IamPolicy>(&ns.name, "vendor", "Drifted").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("spec.document"), "{message}");
    delete::<IamPolicy>(&ns.name, "vendor").await;
    gone::<IamPolicy>(&ns.name, "vendor").await;
    let left = iam()
        .await
        .get_policy()
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        left.policy.unwrap().default_version_id.as_deref(),
        Some("v1")
    );
    assert_eq!(
        op.aws_writes().await,
        0,
        "AWS writes by an observe-only object"
    );
}

#[tokio::test]
async fn an_observed_binding_mirrors_ec2_and_never_associates() {
    use crate::binding::{association, launch};
    use iamwright::api::InstanceProfileBinding;
    let ns = Namespace::new("observe-binding").await;
    let role = format!("{}-legacy", ns.name);
    let grant = format!("--allow-existing-role={role}");
    let op = Operator::start(&ns.name, &["--allow-adoption", &grant]).await;
    let iam = iam().await;
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    let profile = iam
        .create_instance_profile()
        .instance_profile_name(&role)
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&role)
        .role_name(&role)
        .send()
        .await
        .unwrap();
    let (bound, unbound) = (launch(&[]).await, launch(&[]).await);
    ec2()
        .await
        .associate_iam_instance_profile()
        .instance_id(&bound)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .arn(&profile.arn)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let manifest = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "InstanceProfileBinding",
        "metadata": {"name": "legacy"},
        "spec": {"managementPolicy": "Observe", "instanceProfileName": role, "roleName": role,
                 "instanceIds": [bound, unbound]}});
    apply(&ns.name, &manifest.to_string());

    let (_, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "legacy", "Drifted").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("spec.instanceIds"), "{message}");
    let b: InstanceProfileBinding = get(&ns.name, "legacy").await.unwrap();
    let st = b.status.unwrap();
    assert_eq!(
        st.instance_profile_arn.as_deref(),
        Some(profile.arn.as_str())
    );
    assert_eq!(st.bound_count, Some(1));
    assert!(association(&unbound).await.is_none(), "never associated");

    delete::<InstanceProfileBinding>(&ns.name, "legacy").await;
    gone::<InstanceProfileBinding>(&ns.name, "legacy").await;
    assert_eq!(
        association(&bound).await.map(|a| a.1),
        Some(profile.arn.clone())
    );
    assert_eq!(
        op.aws_writes().await,
        0,
        "AWS writes by an observe-only object"
    );
}

#[tokio::test]
async fn an_observed_access_key_reports_the_users_key_and_never_issues_one() {
    use iamwright::api::IamUserAccessKey;
    let ns = Namespace::new("observe-key").await;
    let user = format!("{}-ci", ns.name);
    let grant = format!("--allow-existing-user={user}");
    let op = Operator::start(&ns.name, &[&grant]).await;
    let iam = iam().await;
    iam.create_user().user_name(&user).send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let manifest = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
        "metadata": {"name": "ci"},
        "spec": {"managementPolicy": "Observe", "userName": user, "secretName": "ci-key"}});
    apply(&ns.name, &manifest.to_string());

    // No Secret holds the key yet: that is the drift, and no key is issued for it.
    let (_, message, _) = ready_reason::<IamUserAccessKey>(&ns.name, "ci", "Drifted").await;
    assert!(message.contains("spec.secretName"), "{message}");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ci-key"},
        "stringData": {"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": "x"}});
    apply(&ns.name, &secret.to_string());
    // The hand-made Secret is not watched: the next resync finds it.
    let k: IamUserAccessKey = ready(&ns.name, "ci").await;
    let st = k.status.unwrap();
    assert_eq!(
        st.access_key_id.as_deref(),
        Some(key.access_key_id.as_str())
    );
    assert!(st.user_arn.unwrap().ends_with(&format!("user/{user}")));

    // Deactivated by hand: keyStatus drifted, and left inactive.
    iam.update_access_key()
        .user_name(&user)
        .access_key_id(&key.access_key_id)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let (_, message, _) = ready_reason::<IamUserAccessKey>(&ns.name, "ci", "Drifted").await;
    assert!(message.contains("spec.keyStatus"), "{message}");

    delete::<IamUserAccessKey>(&ns.name, "ci").await;
    gone::<IamUserAccessKey>(&ns.name, "ci").await;
    let keys = iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(
        keys.access_key_metadata().len(),
        1,
        "the user's key is left"
    );
    assert_eq!(
        op.aws_writes().await,
        0,
        "AWS writes by an observe-only object"
    );
}
