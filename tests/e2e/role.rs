//! IamRole end to end: AWS state in moto, conditions, events, guardrails and AWS call
//! counts.

use std::collections::BTreeMap;
use std::time::Duration;

use iamwright::api::{Condition, IamRole};
use iamwright::controllers::reconciler::Managed;
use iamwright::policy::{decode_aws_document, same_document};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::harness::*;

pub const T: Duration = Duration::from_secs(60);
const ACCOUNT: &str = "123456789012";

/// The status conditions of any of our kinds.
fn conditions_of<K: Managed>(obj: &K) -> Vec<Condition> {
    use iamwright::controllers::reconciler::StatusFields;
    obj.status()
        .map(|s| s.conditions().to_vec())
        .unwrap_or_default()
}

/// Wait until the object is Ready for its current generation; returns it.
pub async fn ready<K>(ns: &str, name: &str) -> K
where
    K: Managed + Resource<Scope = NamespaceResourceScope>,
{
    eventually(T, &format!("{} {ns}/{name} Ready", K::KIND), || async {
        let o: K = get(ns, name).await?;
        let (status, _, _, generation) = condition(&conditions_of(&o), "Ready")?;
        (status == "True" && generation == o.meta().generation).then_some(o)
    })
    .await
}

/// Wait until Ready has `reason` for the current generation; returns (Ready status,
/// message, Stalled status).
pub async fn ready_reason<K>(ns: &str, name: &str, reason: &str) -> (String, String, String)
where
    K: Managed + Resource<Scope = NamespaceResourceScope>,
{
    eventually(
        T,
        &format!("{} {ns}/{name} reason {reason}", K::KIND),
        || async {
            let o: K = get(ns, name).await?;
            let conditions = conditions_of(&o);
            let (status, r, message, generation) = condition(&conditions, "Ready")?;
            let (stalled, ..) = condition(&conditions, "Stalled")?;
            (r == reason && generation == o.meta().generation).then_some((status, message, stalled))
        },
    )
    .await
}

/// Wait until the object is gone (its cleanup finished).
pub async fn gone<K>(ns: &str, name: &str)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    eventually(T, &format!("{ns}/{name} deleted"), || async {
        get::<K>(ns, name).await.is_none().then_some(())
    })
    .await
}

pub fn trust(services: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
           "Principal": {"Service": services}, "Action": "sts:AssumeRole"}]})
}

pub fn doc(actions: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

/// An IamRole manifest: the EC2 trust policy plus `extra` spec fields.
pub fn role_manifest(name: &str, extra: Value) -> String {
    let mut spec = json!({"assumeRolePolicy": trust(&["ec2.amazonaws.com"])});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

pub fn role_arn(ns: &str, name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{ns}-{name}")
}

pub fn tag(k: &str, v: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .unwrap()
}

/// A customer-managed policy created directly in AWS; returns its ARN.
pub async fn aws_policy(name: &str, actions: &[&str]) -> String {
    iam()
        .await
        .create_policy()
        .policy_name(name)
        .policy_document(doc(actions).to_string())
        .send()
        .await
        .unwrap()
        .policy
        .unwrap()
        .arn
        .unwrap()
}

pub async fn aws_role(name: &str) -> Option<aws_sdk_iam::types::Role> {
    match iam().await.get_role().role_name(name).send().await {
        Ok(out) => out.role,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetRole: {e:?}"),
    }
}

fn role_tags(role: &aws_sdk_iam::types::Role) -> BTreeMap<String, String> {
    role.tags()
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

async fn attached(name: &str) -> Vec<String> {
    iam()
        .await
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn.clone())
        .collect()
}

async fn inline(name: &str) -> BTreeMap<String, Value> {
    let iam = iam().await;
    let names = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .policy_names;
    let mut out = BTreeMap::new();
    for n in names {
        // The operator may delete it between the list and the get (drift test).
        let Ok(got) = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(&n)
            .send()
            .await
        else {
            continue;
        };
        out.insert(n, decode_aws_document(&got.policy_document).unwrap());
    }
    out
}

const BOUNDARY: &str = "arn:aws:iam::aws:policy/PowerUserAccess";

fn boundary_of(role: &aws_sdk_iam::types::Role) -> Option<String> {
    role.permissions_boundary
        .as_ref()
        .and_then(|b| b.permissions_boundary_arn.clone())
}

fn trust_of(role: &aws_sdk_iam::types::Role) -> Value {
    decode_aws_document(role.assume_role_policy_document.as_deref().unwrap()).unwrap()
}

/// The value of `iamwright_drift_corrected_total` for `kind`.
pub async fn drift_count(op: &Operator, kind: &str) -> f64 {
    let metrics = op.metrics().await;
    metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "iamwright_drift_corrected_total{{kind=\"{kind}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_role_is_created_updated_in_place_and_deleted() {
    let ns = Namespace::new("role-life").await;
    let op = Operator::start(&ns.name, &[]).await;
    let n = format!("{}-app", ns.name);
    let first_policy = aws_policy(&format!("{}-first", ns.name), &["s3:GetObject"]).await;
    let second_policy = aws_policy(&format!("{}-second", ns.name), &["sqs:SendMessage"]).await;
    apply(
        &ns.name,
        &role_manifest(
            "app",
            json!({"description": "first", "managedPolicyArns": [first_policy],
                   "inlinePolicies": {"s3": doc(&["s3:ListBucket"])}, "tags": {"team": "a"}}),
        ),
    );

    let r: IamRole = ready(&ns.name, "app").await;
    let st = r.status.unwrap();
    let arn = role_arn(&ns.name, "app");
    assert_eq!(st.arn.as_deref(), Some(arn.as_str()));
    assert!(st.role_id.is_some());
    assert_eq!(st.attached_policy_arns, vec![first_policy.clone()]);
    let role = aws_role(&n).await.expect("role created");
    assert!(same_document(
        &trust_of(&role),
        &trust(&["ec2.amazonaws.com"])
    ));
    assert_eq!(role.description.as_deref(), Some("first"));
    assert_eq!(role.max_session_duration, Some(3600));
    let tags = role_tags(&role);
    assert_eq!(tags.get("team").map(String::as_str), Some("a"));
    assert_eq!(tags.get("iamwright.dev/namespace"), Some(&ns.name));
    assert_eq!(
        tags.get("iamwright.dev/name").map(String::as_str),
        Some("app")
    );
    assert_eq!(attached(&n).await, vec![first_policy.clone()]);
    let docs = inline(&n).await;
    assert_eq!(docs.keys().collect::<Vec<_>>(), vec!["s3"]);
    assert!(same_document(&docs["s3"], &doc(&["s3:ListBucket"])));
    let events = events_for(&ns.name, "app").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Created" && n.contains(&arn)),
        "{events:?}"
    );

    // Every field changes in place: same role id, one write per changed field.
    let new_trust = trust(&["ec2.amazonaws.com", "lambda.amazonaws.com"]);
    let mut m: Value = serde_json::from_str(&role_manifest(
        "app",
        json!({"description": "second", "maxSessionDuration": 7200,
               "managedPolicyArns": [second_policy], "permissionsBoundary": BOUNDARY,
               "inlinePolicies": {"logs": doc(&["logs:PutLogEvents"])}, "tags": {"team": "b"}}),
    ))
    .unwrap();
    m["spec"]["assumeRolePolicy"] = new_trust.clone();
    apply(&ns.name, &m.to_string());
    let r: IamRole = ready(&ns.name, "app").await;
    assert_eq!(r.metadata.generation, Some(2));
    let st = r.status.unwrap();
    assert_eq!(st.attached_policy_arns, vec![second_policy.clone()]);
    let role = aws_role(&n).await.unwrap();
    assert_eq!(Some(role.role_id.clone()), st.role_id);
    assert!(same_document(&trust_of(&role), &new_trust));
    assert_eq!(role.description.as_deref(), Some("second"));
    assert_eq!(role.max_session_duration, Some(7200));
    assert_eq!(boundary_of(&role).as_deref(), Some(BOUNDARY));
    assert_eq!(role_tags(&role).get("team").map(String::as_str), Some("b"));
    assert_eq!(attached(&n).await, vec![second_policy.clone()]);
    let docs = inline(&n).await;
    assert_eq!(docs.keys().collect::<Vec<_>>(), vec!["logs"]);
    for op_name in ["UpdateAssumeRolePolicy", "UpdateRole", "CreateRole"] {
        assert_eq!(
            op.aws_requests(|o, _| o == op_name).await,
            1,
            "{op_name} calls"
        );
    }
    let events = events_for(&ns.name, "app").await;
    for what in [
        "trust policy",
        "detached policy",
        "deleted inline policy s3",
    ] {
        assert!(
            events
                .iter()
                .any(|(r, n)| r == "Updated" && n.contains(what)),
            "no Updated event for {what}: {events:?}"
        );
    }

    // A boundary removed from the spec is removed from the role.
    m["spec"]
        .as_object_mut()
        .unwrap()
        .remove("permissionsBoundary");
    apply(&ns.name, &m.to_string());
    let r: IamRole = ready(&ns.name, "app").await;
    assert_eq!(r.metadata.generation, Some(3));
    assert_eq!(boundary_of(&aws_role(&n).await.unwrap()), None);

    // Someone put the role into an instance profile: delete takes it out first.
    let iam = iam().await;
    let profile = format!("{}-outside", ns.name);
    iam.create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name(&n)
        .send()
        .await
        .unwrap();
    delete::<IamRole>(&ns.name, "app").await;
    gone::<IamRole>(&ns.name, "app").await;
    assert!(aws_role(&n).await.is_none(), "role deleted");
    let p = iam
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap();
    assert!(p.roles.is_empty(), "role removed from the profile");
    // The policies themselves are not the role's: they stay.
    assert!(
        iam.get_policy()
            .policy_arn(&second_policy)
            .send()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn attachments_and_inline_policies_added_out_of_band_are_removed() {
    let ns = Namespace::new("role-drift").await;
    let op = Operator::start(&ns.name, &[]).await;
    let n = format!("{}-guarded", ns.name);
    let kept = doc(&["s3:GetObject"]);
    apply(
        &ns.name,
        &role_manifest("guarded", json!({"inlinePolicies": {"main": kept}})),
    );
    ready::<IamRole>(&ns.name, "guarded").await;

    let stray = aws_policy(&format!("{}-stray", ns.name), &["ec2:*"]).await;
    let iam = iam().await;
    iam.attach_role_policy()
        .role_name(&n)
        .policy_arn(&stray)
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(&n)
        .policy_name("backdoor")
        .policy_document(doc(&["*"]).to_string())
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(&n)
        .policy_name("main")
        .policy_document(doc(&["s3:*"]).to_string())
        .send()
        .await
        .unwrap();
    iam.update_assume_role_policy()
        .role_name(&n)
        .policy_document(trust(&["lambda.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    iam.tag_role()
        .role_name(&n)
        .tags(tag("stray", "x"))
        .send()
        .await
        .unwrap();

    eventually(T, "drift removed", || async {
        let docs = inline(&n).await;
        let role = aws_role(&n).await?;
        (attached(&n).await.is_empty()
            && !role_tags(&role).contains_key("stray")
            && docs.len() == 1
            && same_document(&docs["main"], &kept)
            && same_document(&trust_of(&role), &trust(&["ec2.amazonaws.com"])))
        .then_some(())
    })
    .await;
    // The corrections may span reconciles, whose events the recorder folds into one
    // series; the metric counts each correction.
    let events = events_for(&ns.name, "guarded").await;
    assert!(
        events.iter().any(|(r, n)| r == "DriftCorrected"
            && n.starts_with("changed outside iamwright, set back to the spec: ")),
        "{events:?}"
    );
    assert!(drift_count(&op, "IamRole").await >= 5.0);
    // The stray policy itself is someone else's: only the attachment went.
    assert!(iam.get_policy().policy_arn(&stray).send().await.is_ok());
}

#[tokio::test]
async fn a_role_applied_just_before_its_policy_never_reports_it_missing() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let ns = Namespace::new("role-order").await;
    let _op = Operator::start(&ns.name, &[]).await;
    // Every status the role ever has, from a watch opened before it exists.
    let api: kube::Api<IamRole> = kube::Api::namespaced(kube().await, &ns.name);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let watch = tokio::spawn(
        watcher(api, watcher::Config::default())
            .applied_objects()
            .for_each(move |r| {
                if let Ok(r) = r
                    && let Some((_, reason, message, _)) = condition(&conditions_of(&r), "Ready")
                {
                    record.lock().unwrap().push(format!("{reason}: {message}"));
                }
                futures::future::ready(())
            }),
    );
    // As two GitOps clients or a sync in kind order would: the role first, its policy
    // a moment later.
    apply(
        &ns.name,
        &role_manifest("app", json!({"policyRefs": [{"name": "later"}]})),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let policy = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": "later"}, "spec": {"document": doc(&["s3:GetObject"])}});
    apply(&ns.name, &policy.to_string());
    let _: IamRole = ready(&ns.name, "app").await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.starts_with("Synced")),
        "the role reported a wait: {seen:?}"
    );
    assert_eq!(events_of(&ns.name, "app", true).await, vec![]);
}

#[tokio::test]
async fn policy_refs_of_two_watched_namespaces_survive_a_restart() {
    let (a, b) = (
        Namespace::new("refs-a").await,
        Namespace::new("refs-b").await,
    );
    let flags = ["--watch-namespace", b.name.as_str()];
    let mut op = Operator::start(&a.name, &flags).await;
    for ns in [&a.name, &b.name] {
        let policy = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
            "metadata": {"name": "p"}, "spec": {"document": doc(&["s3:GetObject"])}});
        apply(ns, &policy.to_string());
        apply(
            ns,
            &role_manifest("r", json!({"policyRefs": [{"name": "p"}]})),
        );
    }
    for ns in [&a.name, &b.name] {
        let _: IamRole = ready(ns, "r").await;
    }
    op.stop();
    // The new process lists both namespaces' policies, each watch on its own: both
    // roles' resyncs still find their policy.
    let op = Operator::start(&a.name, &flags).await;
    op.writes_across_resyncs("GetAccountAuthorizationDetails", 4)
        .await;
    for ns in [&a.name, &b.name] {
        let r: IamRole = ready(ns, "r").await;
        let (status, reason, message, _) = condition(&conditions_of(&r), "Ready").unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Synced"),
            "{ns}: {message}"
        );
        assert_eq!(events_of(ns, "r", true).await, vec![], "{ns}");
    }
}

#[tokio::test]
async fn a_role_waits_for_its_policy_refs_and_follows_them_by_watch() {
    let ns = Namespace::new("role-refs").await;
    // A 10-minute resync: only the IamPolicy watch can bring the role to Ready in time.
    let op = Operator::start(&ns.name, &["--resync-interval", "10m"]).await;
    apply(
        &ns.name,
        &role_manifest("app", json!({"policyRefs": [{"name": "reader"}]})),
    );
    let (status, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "app", "DependencyNotReady").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "False"));
    assert_eq!(
        message,
        r#"spec.policyRefs[0]: IamPolicy "reader" does not exist"#
    );
    assert_eq!(op.aws_writes().await, 0, "no write while waiting");
    // Let the error backoff grow (2s, 4s, 8s …): after three attempts the next retry is
    // at least ~7s away, so a Ready within 6s of the policy can only come from the watch.
    let key = format!("object={}/app", ns.name);
    eventually(T, "three attempts", || async {
        let attempts = op
            .log()
            .lines()
            .filter(|l| l.contains("not ready") && l.contains(&key))
            .count();
        (attempts >= 3).then_some(())
    })
    .await;

    let policy = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": "reader"}, "spec": {"document": doc(&["s3:GetObject"])}});
    apply(&ns.name, &policy.to_string());
    let r: IamRole = eventually(
        Duration::from_secs(6),
        "role Ready through the watch",
        || ready_now(&ns.name, "app"),
    )
    .await;
    // The operator's log names what triggered the reconciles: the policy's watch event.
    let log = op.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&key)
                && l.contains("object.reason=related object updated: IamPolicy")),
        "no reconcile of the role triggered by the IamPolicy watch:\n{log}"
    );
    let policy_arn = format!("arn:aws:iam::{ACCOUNT}:policy/{}-reader", ns.name);
    assert_eq!(
        r.status.unwrap().attached_policy_arns,
        vec![policy_arn.clone()]
    );
    assert_eq!(
        attached(&format!("{}-app", ns.name)).await,
        vec![policy_arn]
    );
}

/// Ready for the current generation, checked once.
async fn ready_now(ns: &str, name: &str) -> Option<IamRole> {
    let o: IamRole = get(ns, name).await?;
    let (status, _, _, generation) = condition(&conditions_of(&o), "Ready")?;
    (status == "True" && generation == o.metadata.generation).then_some(o)
}

#[tokio::test]
async fn guardrails_reject_a_spec_before_any_write() {
    let ns = Namespace::new("role-guard").await;
    let required = "arn:aws:iam::aws:policy/PowerUserAccess";
    let op = Operator::start(
        &ns.name,
        &[
            "--deny-action",
            "iam:Create*",
            "--required-permissions-boundary",
            required,
        ],
    )
    .await;
    apply(
        &ns.name,
        &role_manifest(
            "admin",
            json!({"inlinePolicies": {"ops": doc(&["s3:GetObject", "*"])}}),
        ),
    );
    apply(
        &ns.name,
        &role_manifest(
            "escape",
            json!({"permissionsBoundary": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        ),
    );
    apply(&ns.name, &role_manifest("bounded", json!({})));

    let (status, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "admin", "GuardrailViolation").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert_eq!(
        message,
        r#"spec.inlinePolicies.ops.Statement[0].Action[1]: allows "*", which the operator's --deny-action "iam:Create*" forbids"#
    );
    let (_, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "escape", "GuardrailViolation").await;
    assert_eq!(stalled, "True");
    assert_eq!(
        message,
        format!(
            r#"spec.permissionsBoundary: must be "{required}" (the operator's --required-permissions-boundary), got "arn:aws:iam::aws:policy/AdministratorAccess"; remove the field or set it to the required boundary"#
        )
    );
    ready::<IamRole>(&ns.name, "bounded").await;
    let role = aws_role(&format!("{}-bounded", ns.name)).await.unwrap();
    assert_eq!(
        role.permissions_boundary
            .and_then(|b| b.permissions_boundary_arn)
            .as_deref(),
        Some(required),
        "the required boundary is set on every role created"
    );
    assert!(aws_role(&format!("{}-admin", ns.name)).await.is_none());
    assert!(aws_role(&format!("{}-escape", ns.name)).await.is_none());
    assert_eq!(op.aws_requests(|o, _| o == "CreateRole").await, 1);
    let events = events_for(&ns.name, "admin").await;
    assert!(
        events.iter().any(|(r, _)| r == "GuardrailViolation"),
        "{events:?}"
    );

    // Naming the required boundary is fine.
    apply(
        &ns.name,
        &role_manifest("escape", json!({"permissionsBoundary": required})),
    );
    ready::<IamRole>(&ns.name, "escape").await;
}

#[tokio::test]
async fn an_invalid_trust_policy_is_stalled_before_any_aws_call() {
    let ns = Namespace::new("role-invalid").await;
    let op = Operator::start(&ns.name, &[]).await;
    let mut m: Value = serde_json::from_str(&role_manifest("broken", json!({}))).unwrap();
    m["spec"]["assumeRolePolicy"] = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole"}]});
    apply(&ns.name, &m.to_string());
    let (status, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "broken", "InvalidPolicyDocument").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert_eq!(
        message,
        "spec.assumeRolePolicy.Statement[0].Principal: is required in a trust policy"
    );
    m["spec"]["assumeRolePolicy"] = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "s3:GetObject"}]});
    apply(&ns.name, &m.to_string());
    let (_, message, _) =
        ready_reason::<IamRole>(&ns.name, "broken", "InvalidPolicyDocument").await;
    assert!(
        message.starts_with(
            r#"spec.assumeRolePolicy.Statement[0].Action[0]: a trust policy allows only sts:AssumeRole"#
        ),
        "{message}"
    );
    assert_eq!(
        op.aws_requests(|_, _| true).await,
        0,
        "no AWS call for an invalid spec"
    );
    assert!(aws_role(&format!("{}-broken", ns.name)).await.is_none());
}

#[tokio::test]
async fn a_role_in_sync_costs_reads_only() {
    let ns = Namespace::new("role-quiet").await;
    let op = Operator::start(&ns.name, &[]).await;
    let ext = aws_policy(&format!("{}-ext", ns.name), &["s3:GetObject"]).await;
    apply(
        &ns.name,
        &role_manifest(
            "quiet",
            json!({"description": "d", "maxSessionDuration": 7200, "managedPolicyArns": [ext],
                   "inlinePolicies": {"a": doc(&["s3:ListBucket"]), "b": doc(&["sqs:*"])},
                   "permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess",
                   "tags": {"x": "y"}}),
        ),
    );
    let before: IamRole = ready(&ns.name, "quiet").await;
    assert!(op.aws_writes().await >= 1, "the create was counted");
    // Two resyncs (5s each, ±10%): the account snapshot is read once per resync
    // period, and a role in sync costs no read of its own.
    let own_reads = |o: &str, _: &str| o.contains("Role") && is_read(o) && o != "ListRoles";
    let reads_before = op.aws_requests(own_reads).await;
    assert_eq!(
        op.writes_across_resyncs("GetAccountAuthorizationDetails", 4)
            .await,
        0,
        "a role in sync caused AWS writes"
    );
    assert_eq!(
        op.aws_requests(own_reads).await - reads_before,
        0,
        "a role in sync read AWS beyond the snapshot"
    );
    let after: IamRole = get(&ns.name, "quiet").await.unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "status was rewritten"
    );
}

#[tokio::test]
async fn objects_created_after_the_snapshot_cost_no_read_of_their_own() {
    let ns = Namespace::new("role-late").await;
    // A 10-minute resync: the snapshot taken below is still the current one when the
    // objects created after it are re-evaluated (a namespace label change does that).
    let op = Operator::start(&ns.name, &["--resync-interval", "10m"]).await;
    let relabel = |round: &str| {
        let label = format!("iamwright-e2e/round={round}");
        let (ok, _, err) = kubectl(&["label", "--overwrite", "ns", &ns.name, &label], None);
        assert!(ok, "{err}");
    };
    let snapshots = || op.aws_requests(|o, _| o == "GetAccountAuthorizationDetails");
    apply(&ns.name, &role_manifest("early", json!({})));
    let _: IamRole = ready(&ns.name, "early").await;
    // Re-evaluated in sync, the first role takes the account snapshot.
    relabel("1");
    eventually(T, "an account snapshot", || async {
        (snapshots().await >= 2).then_some(())
    })
    .await;
    let taken = snapshots().await;

    // Created after the snapshot: a policy, and a role that references it, with an
    // inline policy and an instance profile.
    let policy = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": "late-p"}, "spec": {"document": doc(&["s3:GetObject"])}});
    apply(&ns.name, &policy.to_string());
    apply(
        &ns.name,
        &role_manifest(
            "late",
            json!({"policyRefs": [{"name": "late-p"}], "instanceProfile": true,
                   "inlinePolicies": {"q": doc(&["sqs:SendMessage"])}}),
        ),
    );
    let _: iamwright::api::IamPolicy = ready(&ns.name, "late-p").await;
    let _: IamRole = ready(&ns.name, "late").await;

    // Every object re-evaluated in sync against the snapshot from before the late
    // ones: what the operator saw of them when it made them stands in for their
    // entries. Policy tags, which no snapshot holds, are read as on every resync.
    let own_reads = |o: &str, _: &str| {
        is_read(o)
            && ["Role", "Policy", "InstanceProfile"]
                .iter()
                .any(|k| o.contains(k))
            && ![
                "ListRoles",
                "GetAccountAuthorizationDetails",
                "ListPolicyTags",
            ]
            .contains(&o)
    };
    let reads = op.aws_requests(own_reads).await;
    let writes = op.aws_writes().await;
    let (roles, policies) = (
        op.reconciles("IamRole").await,
        op.reconciles("IamPolicy").await,
    );
    relabel("2");
    eventually(T, "every object re-evaluated", || async {
        (op.reconciles("IamRole").await >= roles + 2 && op.reconciles("IamPolicy").await > policies)
            .then_some(())
    })
    .await;
    assert_eq!(snapshots().await, taken, "the snapshot was taken anew");
    assert_eq!(
        op.aws_requests(own_reads).await - reads,
        0,
        "an object created after the snapshot read its own state"
    );
    assert_eq!(op.aws_writes().await - writes, 0);
}

#[tokio::test]
async fn an_existing_role_is_adopted_only_when_asked_and_retain_keeps_it() {
    let ns = Namespace::new("role-adopt").await;
    let n = format!("{}-legacy", ns.name);
    let iam = iam().await;
    iam.create_role()
        .role_name(&n)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    apply(
        &ns.name,
        &role_manifest("legacy", json!({"description": "adopted"})),
    );
    let (status, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "legacy", "AlreadyExists").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("spec.adopt"), "{message}");
    assert_eq!(op.aws_writes().await, 0);

    apply(
        &ns.name,
        &role_manifest(
            "legacy",
            json!({"description": "adopted", "adopt": true, "deletionPolicy": "Retain"}),
        ),
    );
    ready::<IamRole>(&ns.name, "legacy").await;
    let role = aws_role(&n).await.unwrap();
    assert_eq!(role.description.as_deref(), Some("adopted"));
    assert_eq!(
        role_tags(&role)
            .get("iamwright.dev/name")
            .map(String::as_str),
        Some("legacy")
    );
    let events = events_for(&ns.name, "legacy").await;
    assert!(events.iter().any(|(r, _)| r == "Adopted"), "{events:?}");

    delete::<IamRole>(&ns.name, "legacy").await;
    gone::<IamRole>(&ns.name, "legacy").await;
    assert!(aws_role(&n).await.is_some(), "Retain keeps the role");
}

/// A role and a policy held at `AlreadyExists` (their names taken by untagged
/// resources) re-check at each retry with a read: no CreateRole or CreatePolicy (nor
/// any other write, even one AWS refuses) over several retries. When the name becomes
/// free the next retry creates.
#[tokio::test]
async fn a_name_taken_is_retried_with_reads_not_creates() {
    let ns = Namespace::new("role-taken-retry").await;
    let (role, policy) = (format!("{}-taken", ns.name), format!("{}-taken-p", ns.name));
    let iam = iam().await;
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .send()
        .await
        .unwrap();
    let policy_arn = iam
        .create_policy()
        .policy_name(&policy)
        .policy_document(doc(&["s3:GetObject"]).to_string())
        .send()
        .await
        .unwrap()
        .policy
        .and_then(|p| p.arn)
        .unwrap();
    let op = Operator::start(&ns.name, &[]).await;
    apply(&ns.name, &role_manifest("taken", json!({})));
    let policy_manifest = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": "taken-p"}, "spec": {"document": doc(&["s3:PutObject"])}});
    apply(&ns.name, &policy_manifest.to_string());
    ready_reason::<IamRole>(&ns.name, "taken", "AlreadyExists").await;
    ready_reason::<iamwright::api::IamPolicy>(&ns.name, "taken-p", "AlreadyExists").await;

    // Every write attempt, answered or refused (a refused create is a write of the
    // account's rate all the same).
    let attempts = || op.aws_requests(|o, _| !is_read(o));
    let reads = |name: &'static str| op.aws_requests(move |o, _| o == name);
    let before = attempts().await;
    let (roles, policies) = (reads("GetRole").await, reads("GetPolicy").await);
    eventually(
        Duration::from_secs(45),
        "three retries of each object",
        || async {
            (reads("GetRole").await >= roles + 3 && reads("GetPolicy").await >= policies + 3)
                .then_some(())
        },
    )
    .await;
    assert_eq!(attempts().await - before, 0, "writes while held");
    let (_, message, stalled) = ready_reason::<IamRole>(&ns.name, "taken", "AlreadyExists").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("spec.adopt"), "{message}");

    // The name is freed: the next retry creates the operator's own.
    iam.delete_role().role_name(&role).send().await.unwrap();
    iam.delete_policy()
        .policy_arn(&policy_arn)
        .send()
        .await
        .unwrap();
    ready::<IamRole>(&ns.name, "taken").await;
    let created = aws_role(&role).await.unwrap();
    assert_eq!(
        role_tags(&created)
            .get("iamwright.dev/name")
            .map(String::as_str),
        Some("taken")
    );
    ready::<iamwright::api::IamPolicy>(&ns.name, "taken-p").await;
}

#[tokio::test]
async fn a_role_owned_by_another_is_never_touched() {
    let ns = Namespace::new("role-other").await;
    let n = format!("{}-shared", ns.name);
    iam()
        .await
        .create_role()
        .role_name(&n)
        .assume_role_policy_document(trust(&["ec2.amazonaws.com"]).to_string())
        .tags(tag("iamwright.dev/cluster", "another-cluster"))
        .tags(tag("iamwright.dev/namespace", &ns.name))
        .tags(tag("iamwright.dev/name", "shared"))
        .send()
        .await
        .unwrap();
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    apply(
        &ns.name,
        &role_manifest("shared", json!({"description": "mine", "adopt": true})),
    );
    let (status, message, stalled) =
        ready_reason::<IamRole>(&ns.name, "shared", "OwnedByAnother").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(message.contains("another-cluster"), "{message}");
    delete::<IamRole>(&ns.name, "shared").await;
    gone::<IamRole>(&ns.name, "shared").await;
    let role = aws_role(&n).await.expect("the other owner's role stays");
    assert_ne!(role.description.as_deref(), Some("mine"));
    assert_eq!(op.aws_writes().await, 0);
}

use crate::binding::{profile as aws_profile, roles_of as profile_roles};

#[tokio::test]
async fn a_role_keeps_its_own_instance_profile_for_launch_templates() {
    let ns = Namespace::new("role-profile").await;
    let op = Operator::start(&ns.name, &[]).await;
    let n = format!("{}-web", ns.name);
    apply(
        &ns.name,
        &role_manifest("web", json!({"instanceProfile": true})),
    );
    let r: IamRole = ready(&ns.name, "web").await;
    let want_arn = format!("arn:aws:iam::{ACCOUNT}:instance-profile/{n}");
    assert_eq!(
        r.status.unwrap().instance_profile_arn.as_deref(),
        Some(want_arn.as_str())
    );
    let p = aws_profile(&n).await.expect("profile of the role's name");
    assert_eq!(profile_roles(&p), vec![n.clone()]);
    let tags: BTreeMap<_, _> = p
        .tags()
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    assert_eq!(
        tags.get("iamwright.dev/name").map(String::as_str),
        Some("web")
    );
    // In sync: the resyncs read and never write.
    assert_eq!(
        op.writes_across_resyncs("GetAccountAuthorizationDetails", 4)
            .await,
        0
    );

    // Someone takes the role out of its profile: the next resync puts it back.
    iam()
        .await
        .remove_role_from_instance_profile()
        .instance_profile_name(&n)
        .role_name(&n)
        .send()
        .await
        .unwrap();
    eventually(T, "role back in its profile", || async {
        let p = aws_profile(&n).await?;
        (profile_roles(&p) == vec![n.clone()]).then_some(())
    })
    .await;

    // Turned off: the profile goes, the role stays.
    apply(
        &ns.name,
        &role_manifest("web", json!({"instanceProfile": false})),
    );
    let r: IamRole = ready(&ns.name, "web").await;
    assert_eq!(r.status.unwrap().instance_profile_arn, None);
    assert!(aws_profile(&n).await.is_none(), "profile deleted");
    assert!(aws_role(&n).await.is_some());

    // On again, then the role is deleted: both go.
    apply(
        &ns.name,
        &role_manifest("web", json!({"instanceProfile": true})),
    );
    ready::<IamRole>(&ns.name, "web").await;
    assert!(aws_profile(&n).await.is_some());
    delete::<IamRole>(&ns.name, "web").await;
    gone::<IamRole>(&ns.name, "web").await;
    assert!(
        aws_profile(&n).await.is_none(),
        "profile deleted with the role"
    );
    assert!(aws_role(&n).await.is_none(), "role deleted");
}

#[tokio::test]
async fn a_profile_of_that_name_owned_by_nobody_is_not_taken() {
    let ns = Namespace::new("role-profile-taken").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let n = format!("{}-web", ns.name);
    iam()
        .await
        .create_instance_profile()
        .instance_profile_name(&n)
        .send()
        .await
        .unwrap();
    apply(
        &ns.name,
        &role_manifest("web", json!({"instanceProfile": true})),
    );
    let (_, message, stalled) = ready_reason::<IamRole>(&ns.name, "web", "AlreadyExists").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("instance-profile"), "{message}");
    assert!(profile_roles(&aws_profile(&n).await.unwrap()).is_empty());
}

/// `spec.credentials`: the operator assumes the role (the trust statement naming it
/// and the object's session name is added) and keeps STS session credentials in a
/// Secret, which STS resolves to the role, and refreshes them before they expire.
#[tokio::test]
async fn session_credentials_reach_a_secret_resolve_to_the_role_and_are_refreshed() {
    use k8s_openapi::api::core::v1::Secret;
    let ns = Namespace::new("role-creds").await;
    // A minute a second: 15m credentials are refreshed after 11.25 s (3/4 of them).
    // At trace level, so the leak scan below sees everything the process logs.
    let op = Operator::start_with_env(
        &ns.name,
        &[],
        &[
            ("IAMWRIGHT_ROTATION_TIME_SCALE", "60"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    apply(
        &ns.name,
        &role_manifest(
            "app",
            json!({"credentials": {"secretName": "app-aws", "duration": "15m"}}),
        ),
    );
    let r: IamRole = ready(&ns.name, "app").await;
    let st = r.status.unwrap();
    assert_eq!(st.arn.as_deref(), Some(role_arn(&ns.name, "app").as_str()));
    let expire = st
        .credentials_expire_at
        .expect("status.credentialsExpireAt");
    let values = async || {
        let s: Secret = get(&ns.name, "app-aws").await?;
        let d = s.data?;
        let text = |k: &str| d.get(k).map(|b| String::from_utf8(b.0.clone()).unwrap());
        Some((
            text("AWS_ACCESS_KEY_ID")?,
            text("AWS_SECRET_ACCESS_KEY")?,
            text("AWS_SESSION_TOKEN")?,
            text("AWS_CREDENTIAL_EXPIRATION")?,
            text("credentials")?,
        ))
    };
    let (id, secret, token, expiration, file) = values().await.expect("the Secret");
    assert_eq!(expiration, expire);
    assert_eq!(
        file,
        format!(
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\naws_session_token = {token}\n"
        )
    );
    // STS resolves the credentials to a session of the role, under the object's name.
    let caller = |id: String, secret: String, token: String| async move {
        let creds = aws_sdk_sts::config::Credentials::new(id, secret, Some(token), None, "e2e");
        let conf = aws_sdk_sts::config::Builder::from(&aws_config().await)
            .credentials_provider(creds)
            .build();
        aws_sdk_sts::Client::from_conf(conf)
            .get_caller_identity()
            .send()
            .await
            .unwrap()
            .arn
            .unwrap()
    };
    let mut seen = vec![secret.clone(), token.clone()];
    assert_eq!(
        caller(id.clone(), secret, token).await,
        format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/{}-app/{}.app",
            ns.name, ns.name
        )
    );
    // The trust policy lets exactly the operator's principal in, under that name.
    let role = iam()
        .await
        .get_role()
        .role_name(format!("{}-app", ns.name))
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    let trust = decode_aws_document(role.assume_role_policy_document.as_deref().unwrap()).unwrap();
    let ours: Vec<&Value> = trust["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Sid"] == "IamwrightCredentials")
        .collect();
    assert_eq!(ours.len(), 1, "{trust:#}");
    // moto answers the operator's test credentials with user/moto.
    assert_eq!(
        ours[0]["Principal"]["AWS"],
        format!("arn:aws:iam::{ACCOUNT}:user/moto")
    );
    assert_eq!(
        ours[0]["Condition"]["StringEquals"]["sts:RoleSessionName"],
        format!("{}.app", ns.name)
    );
    // Refreshed before expiry: new credentials, a later expiry, in the status too.
    let (new_expire, new_secret, new_token) =
        eventually(Duration::from_secs(45), "credentials refreshed", || async {
            let (new_id, new_secret, new_token, expiration, _) = values().await?;
            // RFC 3339 in UTC with whole seconds: later is greater as text too.
            (new_id != id && expiration > expire).then_some((expiration, new_secret, new_token))
        })
        .await;
    seen.extend([new_secret, new_token]);
    eventually(T, "status follows the refresh", || async {
        let r: IamRole = get(&ns.name, "app").await?;
        (r.status?.credentials_expire_at.as_deref() == Some(new_expire.as_str())).then_some(())
    })
    .await;
    let events = events_for(&ns.name, "app").await;
    assert!(
        events
            .iter()
            .filter(|(r, _)| r == "CredentialsIssued")
            .count()
            >= 2,
        "{events:?}"
    );
    // The session's secret and token are in the Secret and nowhere else.
    let log = op.log();
    assert!(log.contains("TRACE"), "the operator ran at trace level");
    let (_, events, _) = kubectl(&["get", "events", "-n", &ns.name, "-o", "json"], None);
    let (_, object, _) = kubectl(
        &["get", "iamrole", "app", "-n", &ns.name, "-o", "json"],
        None,
    );
    let metrics = op.metrics().await;
    for value in &seen {
        for (what, text) in [
            ("operator log", &log),
            ("events", &events),
            ("object", &object),
            ("metrics", &metrics),
        ] {
            assert!(
                !text.contains(value.as_str()),
                "a session secret appears in the {what}"
            );
        }
    }
}

/// A role that exists only to hand out session credentials needs no trust policy of its
/// own: the API server admits `spec.credentials` alone, and the role's trust policy is
/// exactly the operator's statement, under which STS issues the session.
#[tokio::test]
async fn a_role_with_only_credentials_trusts_the_operator_alone() {
    use k8s_openapi::api::core::v1::Secret;
    let ns = Namespace::new("role-creds-only").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let manifest = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole",
        "metadata": {"name": "app"}, "spec": {"credentials": {"secretName": "app-aws"}}});
    apply(&ns.name, &manifest.to_string());
    ready::<IamRole>(&ns.name, "app").await;
    let role = iam()
        .await
        .get_role()
        .role_name(format!("{}-app", ns.name))
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    let trust = decode_aws_document(role.assume_role_policy_document.as_deref().unwrap()).unwrap();
    let statements = trust["Statement"].as_array().expect("a statement list");
    assert_eq!(statements.len(), 1, "{trust:#}");
    assert_eq!(statements[0]["Sid"], "IamwrightCredentials");
    assert_eq!(
        statements[0]["Condition"]["StringEquals"]["sts:RoleSessionName"],
        format!("{}.app", ns.name)
    );
    let s: Secret = get(&ns.name, "app-aws").await.expect("the Secret");
    let data = s.data.expect("Secret data");
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(data.contains_key(key), "{key} in the Secret");
    }
}
