//! The trust model end to end (docs/trust-model.md): every refusal without a grant
//! (NotPermitted / GuardrailViolation, no AWS write), every grant (operator flag or
//! IamScope), scope confinement, scope conflicts, re-evaluation on a scope change, and
//! the UID ownership tag. IamScopes are cluster-scoped: each test names its own after
//! its namespace, selects only that namespace, and deletes it at the end.

use serde_json::{Value, json};

use crate::access_key::aws_keys;
use crate::binding::{association, launch, until_states};
use crate::harness::*;
use crate::role::{aws_policy, aws_role, ready, ready_reason, role_manifest, trust};
use iamwright::api::{IamPolicy, IamRole, IamScope, IamUserAccessKey, InstanceProfileBinding};

/// An IamScope selecting exactly `ns`, deleted when dropped.
pub struct Scope {
    name: String,
}

impl Scope {
    pub fn apply(name: &str, ns: &str, extra: Value) -> Self {
        let mut spec =
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let body = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamScope",
                          "metadata": {"name": name}, "spec": spec});
        let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&body.to_string()));
        assert!(ok, "{out}{err}");
        Self {
            name: name.to_string(),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        kubectl(&["delete", "iamscope", &self.name, "--wait=false"], None);
    }
}

async fn scope_status(name: &str) -> Option<iamwright::api::IamScopeStatus> {
    let api: kube::Api<IamScope> = kube::Api::all(kube().await);
    api.get_opt(name).await.ok()??.status
}

fn key_manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

fn binding_manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "InstanceProfileBinding",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

fn policy_manifest(name: &str) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
           "metadata": {"name": name},
           "spec": {"document": crate::role::doc(&["s3:GetObject"])}})
    .to_string()
}

#[tokio::test]
async fn a_key_for_an_existing_user_needs_a_grant() {
    let ns = Namespace::new("trust-user").await;
    let user = format!("{}-legacy", ns.name);
    iam()
        .await
        .create_user()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let mut op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &key_manifest("k", json!({"userName": user, "createUser": false})),
    );
    let (status, message, stalled) =
        ready_reason::<IamUserAccessKey>(&ns.name, "k", "NotPermitted").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(
        message.starts_with("spec.userName: IAM user") && message.contains("--allow-existing-user"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0, "no AWS write without the grant");
    assert!(aws_keys(&user).await.is_empty());
    op.stop();

    // The same object under an operator that grants the user: a key, the user untouched.
    let _op = Operator::start(&ns.name, &["--allow-existing-user", &user]).await;
    let k: IamUserAccessKey = ready(&ns.name, "k").await;
    let id = k.status.unwrap().access_key_id.unwrap();
    assert_eq!(aws_keys(&user).await, vec![(id, true)]);
}

#[tokio::test]
async fn adoption_needs_a_grant_and_a_scope_change_reevaluates_at_once() {
    let ns = Namespace::new("trust-adopt").await;
    let name = format!("{}-legacy", ns.name);
    iam()
        .await
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    // A long resync: only the scope's watch can bring the object back in time.
    let op = Operator::start(&ns.name, &["--resync-interval", "10m"]).await;
    apply(
        &ns.name,
        &role_manifest("legacy", json!({"name": name, "adopt": true})),
    );
    let (_, message, stalled) = ready_reason::<IamRole>(&ns.name, "legacy", "NotPermitted").await;
    assert_eq!(stalled, "True");
    assert!(
        message.starts_with("spec.adopt: adopting role") && message.contains("allowAdopt"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0, "no AWS write without the grant");
    assert!(aws_role(&name).await.unwrap().tags().is_empty());

    // The platform team grants adoption: the object becomes Ready without being touched.
    let scope = Scope::apply(&ns.name, &ns.name, json!({"allowAdopt": true}));
    let r: IamRole = ready(&ns.name, "legacy").await;
    assert_eq!(
        r.status.unwrap().scope.as_deref(),
        Some(scope.name.as_str())
    );
    let tags = aws_role(&name).await.unwrap();
    assert!(tags.tags().iter().any(|t| t.key == "iamwright.dev/uid"));
    let st = eventually(T, "the scope's status", || async {
        scope_status(&scope.name)
            .await
            .filter(|s| s.namespaces == vec![ns.name.clone()])
    })
    .await;
    let (ready_status, ..) = condition(&st.conditions, "Ready").unwrap();
    assert_eq!(ready_status, "True");
}

const T: std::time::Duration = crate::role::T;

#[tokio::test]
async fn a_binding_names_only_the_namespaces_roles_unless_granted() {
    let ns = Namespace::new("trust-ipb").await;
    let role = format!("{}-ext", ns.name);
    iam()
        .await
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    let i1 = launch(&[]).await;
    let op = Operator::start(&ns.name, &["--resync-interval", "10m"]).await;
    apply(
        &ns.name,
        &binding_manifest("web", json!({"roleName": role, "instanceIds": [i1]})),
    );
    let (_, message, stalled) =
        ready_reason::<InstanceProfileBinding>(&ns.name, "web", "NotPermitted").await;
    assert_eq!(stalled, "True");
    assert!(
        message.starts_with("spec.roleName: role") && message.contains("existingRoles"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0, "no AWS write without the grant");

    let _scope = Scope::apply(&ns.name, &ns.name, json!({"existingRoles": [role]}));
    let b: InstanceProfileBinding = ready(&ns.name, "web").await;
    assert_eq!(b.status.unwrap().bound_count, Some(1));
}

#[tokio::test]
async fn an_admin_managed_policy_cannot_bypass_the_denied_actions() {
    let ns = Namespace::new("trust-managed").await;
    let op = Operator::start(&ns.name, &["--deny-action", "iam:*"]).await;
    apply(
        &ns.name,
        &role_manifest(
            "admin",
            json!({"managedPolicyArns": [
                "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                "arn:aws:iam::aws:policy/AdministratorAccess"]}),
        ),
    );
    let (_, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "admin", "GuardrailViolation").await;
    assert_eq!(stalled, "True");
    assert!(
        message.starts_with(
            "spec.managedPolicyArns[1]: managed policy arn:aws:iam::aws:policy/AdministratorAccess"
        ) && message.contains("iam:*"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0);
    assert!(aws_role(&format!("{}-admin", ns.name)).await.is_none());
    // The harmless one alone is attached.
    apply(
        &ns.name,
        &role_manifest(
            "admin",
            json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}),
        ),
    );
    ready::<IamRole>(&ns.name, "admin").await;
}

#[tokio::test]
async fn a_public_trust_policy_needs_the_flag() {
    let ns = Namespace::new("trust-public").await;
    let mut op = Operator::start(&ns.name, &[]).await;
    let open = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                      "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]});
    apply(
        &ns.name,
        &role_manifest("open", json!({"assumeRolePolicy": open})),
    );
    let (_, message, _) = ready_reason::<IamRole>(&ns.name, "open", "GuardrailViolation").await;
    assert!(
        message.starts_with("spec.assumeRolePolicy.Statement[0].Principal: lets anyone"),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0);
    op.stop();
    let _op = Operator::start(&ns.name, &["--allow-public-trust"]).await;
    ready::<IamRole>(&ns.name, "open").await;
}

#[tokio::test]
async fn a_scope_confines_paths_and_names_and_forces_its_boundary() {
    let ns = Namespace::new("trust-scope").await;
    let boundary = aws_policy(&format!("{}-boundary", ns.name), &["s3:*"]).await;
    let scope = Scope::apply(
        &ns.name,
        &ns.name,
        json!({"path": "/tenants/{namespace}/", "namePrefix": "{namespace}-",
               "permissionsBoundary": boundary}),
    );
    let op = Operator::start(&ns.name, &[]).await;
    apply(&ns.name, &role_manifest("app", json!({})));
    let r: IamRole = ready(&ns.name, "app").await;
    let st = r.status.unwrap();
    assert_eq!(st.scope.as_deref(), Some(scope.name.as_str()));
    let role = aws_role(&format!("{}-app", ns.name)).await.unwrap();
    assert_eq!(role.path, format!("/tenants/{}/", ns.name));
    assert_eq!(
        role.permissions_boundary
            .and_then(|b| b.permissions_boundary_arn),
        Some(boundary.clone())
    );

    // Another path, a name without the prefix, another boundary: refused, no write.
    let writes = op.aws_writes().await;
    apply(
        &ns.name,
        &role_manifest("elsewhere", json!({"path": "/other/"})),
    );
    apply(
        &ns.name,
        &role_manifest("renamed", json!({"name": format!("x{}", ns.name)})),
    );
    apply(
        &ns.name,
        &role_manifest(
            "unbounded",
            json!({"permissionsBoundary": "arn:aws:iam::123456789012:policy/other"}),
        ),
    );
    let (_, m, _) = ready_reason::<IamRole>(&ns.name, "elsewhere", "NotPermitted").await;
    assert!(m.starts_with("spec.path: must be \"/tenants/"), "{m}");
    let (_, m, _) = ready_reason::<IamRole>(&ns.name, "renamed", "NotPermitted").await;
    assert!(m.starts_with("spec.name: AWS name"), "{m}");
    let (_, m, _) = ready_reason::<IamRole>(&ns.name, "unbounded", "GuardrailViolation").await;
    assert!(m.starts_with("spec.permissionsBoundary: must be"), "{m}");
    assert_eq!(op.aws_writes().await, writes);
}

#[tokio::test]
async fn two_scopes_on_one_namespace_stall_every_object() {
    let ns = Namespace::new("trust-conflict").await;
    let a = Scope::apply(&format!("{}-a", ns.name), &ns.name, json!({}));
    let b = Scope::apply(&format!("{}-b", ns.name), &ns.name, json!({}));
    let op = Operator::start(&ns.name, &[]).await;
    apply(&ns.name, &policy_manifest("p"));
    let (_, message, stalled) = ready_reason::<IamPolicy>(&ns.name, "p", "ScopeConflict").await;
    assert_eq!(stalled, "True");
    assert!(
        message.contains(&a.name) && message.contains(&b.name),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0);
    eventually(T, "the scopes report the conflict", || async {
        let st = scope_status(&a.name).await?;
        let (_, reason, ..) = condition(&st.conditions, "Ready")?;
        (reason == "ScopeConflict").then_some(())
    })
    .await;
    drop(b);
    ready::<IamPolicy>(&ns.name, "p").await;
}

#[tokio::test]
async fn a_recreated_object_does_not_inherit_its_predecessors_role() {
    let ns = Namespace::new("trust-uid").await;
    let _op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &role_manifest("app", json!({"deletionPolicy": "Retain"})),
    );
    let first: IamRole = ready(&ns.name, "app").await;
    delete::<IamRole>(&ns.name, "app").await;
    crate::role::gone::<IamRole>(&ns.name, "app").await;
    apply(&ns.name, &role_manifest("app", json!({})));
    let (_, message, _) = ready_reason::<IamRole>(&ns.name, "app", "OwnedByAnother").await;
    let old_uid = first.metadata.uid.unwrap();
    assert!(message.contains(&old_uid), "{message}");
}

/// `replaceExisting: true` replaces an association only when the profile is nobody's
/// in iamwright: another iamwright object's profile on the instance stays, reported as
/// a Conflict naming its owner.
#[tokio::test]
async fn replace_existing_never_strips_another_owners_profile() {
    let ns = Namespace::new("trust-replace").await;
    let iam = iam().await;
    // Another namespace's binding made this profile (as its tags say) and bound it.
    let theirs = format!("{}-theirs", ns.name);
    iam.create_role()
        .role_name(&theirs)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    let profile = iam
        .create_instance_profile()
        .instance_profile_name(&theirs)
        .tags(tag("iamwright.dev/cluster", "e2e"))
        .tags(tag("iamwright.dev/namespace", "another-team"))
        .tags(tag("iamwright.dev/name", "web"))
        .tags(tag("iamwright.dev/uid", "0000-another-object"))
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&theirs)
        .role_name(&theirs)
        .send()
        .await
        .unwrap();
    let instance = launch(&[]).await;
    ec2()
        .await
        .associate_iam_instance_profile()
        .instance_id(&instance)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .arn(&profile.arn)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let op = Operator::start(&ns.name, &[]).await;
    apply(&ns.name, &role_manifest("app", json!({})));
    apply(
        &ns.name,
        &binding_manifest(
            "web",
            json!({"roleRef": {"name": "app"}, "instanceIds": [instance], "replaceExisting": true}),
        ),
    );
    let b = until_states(&ns.name, "web", &[(&instance, "Conflict")]).await;
    let row = b.status.unwrap().instances;
    assert!(
        row[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("another iamwright object") && m.contains("another-team")),
        "{row:?}"
    );
    assert_eq!(
        association(&instance).await.map(|(_, arn)| arn),
        Some(profile.arn.clone()),
        "the other owner's profile is still on the instance"
    );
    assert_eq!(
        op.aws_requests(|o, _| o.contains("ReplaceIamInstanceProfileAssociation"))
            .await,
        0
    );
}
