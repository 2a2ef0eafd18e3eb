//! IamUserAccessKey end to end: keys in moto, the Secret in the apiserver, usable
//! credentials (STS against moto), rotation, healing, crash safety and no leaks.

use std::collections::BTreeSet;
use std::time::Duration;

use iamwright::api::{IamPolicy, IamUserAccessKey};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

/// Rotation an hour a second: specs keep the bounds users get (`every` ≥ 1h), and
/// the rotation still happens within the test.
const FAST_ROTATION: &[(&str, &str)] = &[("IAMWRIGHT_ROTATION_TIME_SCALE", "3600")];

fn manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

/// Wait until the object is Ready for its current generation; returns it.
async fn ready(ns: &str, name: &str) -> IamUserAccessKey {
    eventually(
        T,
        &format!("IamUserAccessKey {ns}/{name} Ready"),
        || async {
            let k: IamUserAccessKey = get(ns, name).await?;
            let st = k.status.clone()?;
            let (status, ..) = condition(&st.conditions, "Ready")?;
            (status == "True" && st.observed_generation == k.metadata.generation).then_some(k)
        },
    )
    .await
}

/// Wait until Ready has `reason`; returns (Ready status, message, Stalled status).
async fn ready_reason(ns: &str, name: &str, reason: &str) -> (String, String, String) {
    eventually(T, &format!("{ns}/{name} reason {reason}"), || async {
        let k: IamUserAccessKey = get(ns, name).await?;
        let st = k.status?;
        let (status, r, message, _) = condition(&st.conditions, "Ready")?;
        let (stalled, ..) = condition(&st.conditions, "Stalled")?;
        (r == reason).then_some((status, message, stalled))
    })
    .await
}

fn current_key(k: &IamUserAccessKey) -> String {
    k.status.as_ref().unwrap().access_key_id.clone().unwrap()
}

/// The Secret's (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, credentials).
pub(crate) async fn secret_values(ns: &str, name: &str) -> Option<(String, String, String)> {
    let s: Secret = get(ns, name).await?;
    let d = s.data?;
    let text = |k: &str| d.get(k).map(|b| String::from_utf8(b.0.clone()).unwrap());
    Some((
        text("AWS_ACCESS_KEY_ID")?,
        text("AWS_SECRET_ACCESS_KEY")?,
        text("credentials")?,
    ))
}

/// (id, Active?) of the user's keys in AWS.
pub(crate) async fn aws_keys(user: &str) -> Vec<(String, bool)> {
    let mut keys: Vec<(String, bool)> = iam()
        .await
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .access_key_metadata()
        .iter()
        .map(|m| {
            (
                m.access_key_id().unwrap().to_string(),
                m.status() == Some(&aws_sdk_iam::types::StatusType::Active),
            )
        })
        .collect();
    keys.sort();
    keys
}

async fn user_exists(user: &str) -> bool {
    match iam().await.get_user().user_name(user).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            false
        }
        Err(e) => panic!("GetUser: {e:?}"),
    }
}

/// The ARN STS (moto) reports for these credentials.
async fn caller_arn(id: &str, secret: &str) -> String {
    let creds = aws_sdk_sts::config::Credentials::new(id, secret, None, None, "e2e");
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
}

async fn gone(ns: &str, name: &str) {
    eventually(T, &format!("{ns}/{name} deleted"), || async {
        get::<IamUserAccessKey>(ns, name)
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

/// Wait until the Secret holds a key other than `old`; returns the new id.
async fn secret_changes_from(ns: &str, name: &str, old: &str) -> String {
    eventually(
        T,
        &format!("Secret {ns}/{name} holds a key other than {old}"),
        || async {
            let (id, ..) = secret_values(ns, name).await?;
            (id != old).then_some(id)
        },
    )
    .await
}

#[tokio::test]
async fn a_key_is_delivered_into_a_usable_secret() {
    let ns = Namespace::new("key-create").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-ci", ns.name);
    apply(
        &ns.name,
        &json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
                "metadata": {"name": "ci-deploy"},
                "spec": {"document": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}}})
        .to_string(),
    );
    apply(
        &ns.name,
        &manifest(
            "ci",
            json!({"userName": user, "credentialsProfile": "ci", "secretName": "ci-creds",
                   "policyRefs": [{"name": "ci-deploy"}], "tags": {"team": "build"}}),
        ),
    );
    let k = ready(&ns.name, "ci").await;
    let st = k.status.clone().unwrap();
    let id = current_key(&k);
    let user_arn = format!("arn:aws:iam::123456789012:user/{user}");
    assert_eq!(st.user_arn.as_deref(), Some(user_arn.as_str()));
    assert_eq!(st.secret_name.as_deref(), Some("ci-creds"));
    assert!(st.key_created_at.is_some());
    assert!(st.previous_access_key_id.is_none() && st.next_rotation_at.is_none());
    assert!(st.pending_key.is_none());

    // The Secret: Opaque, controlled by the object, labelled, no Argo CD tracking.
    let s: Secret = get(&ns.name, "ci-creds").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    let labels = s.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("iamwright")
    );
    assert!(
        !labels.contains_key("app.kubernetes.io/instance"),
        "{labels:?}"
    );
    let annotations = s.metadata.annotations.clone().unwrap_or_default();
    assert!(
        !annotations
            .keys()
            .any(|a| a.starts_with("argocd.argoproj.io/")),
        "{annotations:?}"
    );
    let owner = &s.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("IamUserAccessKey", "ci", Some(true))
    );
    assert_eq!(Some(&owner.uid), k.metadata.uid.as_ref());
    let keys: BTreeSet<String> = s.data.clone().unwrap().into_keys().collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "AWS_ACCESS_KEY_ID".to_string(),
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "credentials".to_string()
        ])
    );
    let (sid, secret, credentials) = secret_values(&ns.name, "ci-creds").await.unwrap();
    assert_eq!(sid, id);
    assert_eq!(
        credentials,
        format!("[ci]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n")
    );

    // The key was used once before it was delivered: by its verification (STS
    // GetCallerIdentity signed with it), which the status reports as its last use.
    let used_at = st
        .last_used_at
        .clone()
        .expect("the verification used the key");
    assert!(used_at.starts_with("20"), "{used_at}");
    assert_eq!(st.last_used_service.as_deref(), Some("sts"), "{st:?}");
    let events = events_for(&ns.name, "ci").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "KeyVerified" && n.contains(&id)),
        "{events:?}"
    );
    // The credentials work: STS says who they belong to.
    assert_eq!(caller_arn(&id, &secret).await, user_arn);
    let (ok, out, _) = kubectl(&["get", "iamkey", "ci", "-n", &ns.name], None);
    assert!(ok && out.contains("LAST USED"), "{out}");

    // The user: owned (tagged), with the referenced policy attached.
    assert_eq!(aws_keys(&user).await, vec![(id.clone(), true)]);
    let tags: Vec<(String, String)> = iam()
        .await
        .list_user_tags()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    assert!(
        tags.contains(&("iamwright.dev/name".into(), "ci".into())),
        "{tags:?}"
    );
    assert!(tags.contains(&("team".into(), "build".into())), "{tags:?}");
    let policy: IamPolicy = get(&ns.name, "ci-deploy").await.unwrap();
    let attached: Vec<String> = iam()
        .await
        .list_attached_user_policies()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn.clone())
        .collect();
    assert_eq!(attached, vec![policy.status.unwrap().arn.unwrap()]);

    let events = events_for(&ns.name, "ci").await;
    assert!(events.iter().any(|(r, _)| r == "UserCreated"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "KeyCreated" && n.contains(&id)),
        "{events:?}"
    );
    let (ok, out, _) = kubectl(&["get", "iamkey", "-n", &ns.name], None);
    assert!(ok && out.contains(&id) && out.contains("True"), "{out}");
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period_then_deletes_it() {
    let ns = Namespace::new("key-rotate").await;
    let _op = Operator::start_with_env(&ns.name, &[], FAST_ROTATION).await;
    let user = format!("{}-rot", ns.name);
    apply(
        &ns.name,
        &manifest(
            "rot",
            json!({"userName": user, "rotation": {"every": "20h", "gracePeriod": "10h"}}),
        ),
    );
    let k = ready(&ns.name, "rot").await;
    let first = current_key(&k);
    let st = k.status.unwrap();
    assert!(st.next_rotation_at.is_some(), "{st:?}");

    // Rotated: the new key is in the Secret, the old one still exists and is Active.
    let second = secret_changes_from(&ns.name, "rot", &first).await;
    let during = aws_keys(&user).await;
    assert!(during.contains(&(first.clone(), true)), "{during:?}");
    assert!(during.contains(&(second.clone(), true)), "{during:?}");
    let k = eventually(T, "status shows the rotation", || async {
        let k: IamUserAccessKey = get(&ns.name, "rot").await?;
        (k.status.as_ref()?.access_key_id.as_deref() == Some(second.as_str())).then_some(k)
    })
    .await;
    let st = k.status.unwrap();
    if st.previous_access_key_id.is_some() {
        assert_eq!(st.previous_access_key_id.as_deref(), Some(first.as_str()));
    }
    let (_, secret, _) = secret_values(&ns.name, "rot").await.unwrap();
    assert_eq!(
        caller_arn(&second, &secret).await,
        format!("arn:aws:iam::123456789012:user/{user}")
    );

    // After the grace period the old key is gone and only the new one is left.
    eventually(Duration::from_secs(30), "old key retired", || async {
        (aws_keys(&user).await == vec![(second.clone(), true)]).then_some(())
    })
    .await;
    // The status follows the deletion (written after it), so it is waited for too.
    eventually(T, "status without the old key", || async {
        let k: IamUserAccessKey = get(&ns.name, "rot").await?;
        k.status
            .as_ref()?
            .previous_access_key_id
            .is_none()
            .then_some(())
    })
    .await;
    ready(&ns.name, "rot").await;
    let events = events_for(&ns.name, "rot").await;
    assert!(events.iter().any(|(r, _)| r == "Rotating"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "PreviousKeyDeleted" && n.contains(&first)),
        "{events:?}"
    );
}

/// A SIGKILL after CreateAccessKey, before (`after-create-access-key`) or after
/// (`after-verify`) the new key's verification: no Secret ever holds it, and the
/// restarted operator deletes it and delivers a fresh one.
#[tokio::test]
async fn a_crash_between_create_and_secret_write_leaves_exactly_the_delivered_key() {
    let ns = Namespace::new("key-crash").await;
    for (i, failpoint) in ["after-create-access-key", "after-verify"]
        .into_iter()
        .enumerate()
    {
        let name = format!("crash{i}");
        let user = format!("{}-{name}", ns.name);
        let mut op =
            Operator::start_with_env(&ns.name, &[], &[("IAMWRIGHT_FAILPOINT", failpoint)]).await;
        apply(&ns.name, &manifest(&name, json!({"userName": user})));
        let exit = op
            .wait_exit(T)
            .await
            .expect("the operator exits at the failpoint");
        assert_eq!(exit.code(), Some(3), "{failpoint}: {}", op.log());
        // The key exists in AWS, no Secret holds it, and the intent was recorded.
        let orphaned = aws_keys(&user).await;
        assert_eq!(orphaned.len(), 1, "{failpoint}: {orphaned:?}");
        assert!(
            get::<Secret>(&ns.name, &name).await.is_none(),
            "{failpoint}"
        );
        let k: IamUserAccessKey = get(&ns.name, &name).await.unwrap();
        let st = k.status.unwrap();
        let pending = st.pending_key.expect("pendingKey recorded");
        assert!(pending.keys_before.is_empty());
        if failpoint == "after-verify" {
            // Verified, and still never delivered: the key is named in the record.
            assert_eq!(
                pending.created_key_id.as_deref(),
                Some(orphaned[0].0.as_str())
            );
            assert_eq!(
                st.rotation_phase,
                Some(iamwright::api::RotationPhase::Verifying)
            );
            // STS was asked with that key (moto records the use): it was verified.
            let used = iam()
                .await
                .get_access_key_last_used()
                .access_key_id(&orphaned[0].0)
                .send()
                .await
                .unwrap();
            assert!(
                used.access_key_last_used()
                    .and_then(|u| u.last_used_date())
                    .is_some(),
                "{used:?}"
            );
        }

        let _op = Operator::start(&ns.name, &[]).await;
        let k = ready(&ns.name, &name).await;
        let id = current_key(&k);
        assert_ne!(
            id, orphaned[0].0,
            "{failpoint}: the orphan was not delivered"
        );
        assert_eq!(aws_keys(&user).await, vec![(id.clone(), true)]);
        let (sid, secret, _) = secret_values(&ns.name, &name).await.unwrap();
        assert_eq!(sid, id);
        assert_eq!(
            caller_arn(&id, &secret).await,
            format!("arn:aws:iam::123456789012:user/{user}")
        );
        let st = k.status.unwrap();
        assert!(st.pending_key.is_none());
        assert_eq!(
            st.rotation_phase,
            Some(iamwright::api::RotationPhase::Stable)
        );
        let events = events_for(&ns.name, &name).await;
        assert!(
            events
                .iter()
                .any(|(r, n)| r == "OrphanKeyDeleted" && n.contains(&orphaned[0].0)),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|(r, n)| r == "KeyVerified" && n.contains(&id)),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_secret_write_deletes_the_new_key() {
    let ns = Namespace::new("key-nowrite").await;
    let user = format!("{}-nw", ns.name);
    let op = Operator::start_with_env(
        &ns.name,
        &[],
        &[("IAMWRIGHT_FAILPOINT", "fail-secret-write")],
    )
    .await;
    apply(&ns.name, &manifest("nw", json!({"userName": user})));
    let (status, message, _) = ready_reason(&ns.name, "nw", "AwsError").await;
    assert_eq!(status, "False");
    assert!(message.contains("Secret write failed"), "{message}");
    // Every key created was deleted again.
    eventually(T, "created keys all deleted", || async {
        let created = op
            .aws_requests(|o, r| o == "CreateAccessKey" && r == "success")
            .await;
        let deleted = op
            .aws_requests(|o, r| o == "DeleteAccessKey" && r == "success")
            .await;
        (created >= 1 && created == deleted && aws_keys(&user).await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deleted_or_edited_secret_is_healed_with_a_fresh_key() {
    let ns = Namespace::new("key-heal").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-heal", ns.name);
    apply(&ns.name, &manifest("heal", json!({"userName": user})));
    let first = current_key(&ready(&ns.name, "heal").await);

    delete::<Secret>(&ns.name, "heal").await;
    let second = secret_changes_from(&ns.name, "heal", &first).await;
    eventually(T, "only the new key left", || async {
        (aws_keys(&user).await == vec![(second.clone(), true)]).then_some(())
    })
    .await;
    let (_, secret, _) = secret_values(&ns.name, "heal").await.unwrap();
    assert_eq!(
        caller_arn(&second, &secret).await,
        format!("arn:aws:iam::123456789012:user/{user}")
    );

    // Edited by hand: the secret value no longer matches, so the key is replaced.
    let api: Api<Secret> = Api::namespaced(kube().await, &ns.name);
    api.patch(
        "heal",
        &PatchParams::default(),
        &Patch::Merge(json!({"stringData": {"AWS_SECRET_ACCESS_KEY": "edited"}})),
    )
    .await
    .unwrap();
    let third = secret_changes_from(&ns.name, "heal", &second).await;
    eventually(T, "only the third key left", || async {
        (aws_keys(&user).await == vec![(third.clone(), true)]).then_some(())
    })
    .await;
    let k = ready(&ns.name, "heal").await;
    assert_eq!(current_key(&k), third);
    let events = events_for(&ns.name, "heal").await;
    // Events of one reason are aggregated into one series by the recorder.
    assert!(
        events.iter().any(|(r, _)| r == "SecretRecreated"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_key_deleted_in_aws_is_healed() {
    let ns = Namespace::new("key-awsdel").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-gone", ns.name);
    apply(&ns.name, &manifest("gone", json!({"userName": user})));
    let first = current_key(&ready(&ns.name, "gone").await);
    iam()
        .await
        .delete_access_key()
        .user_name(&user)
        .access_key_id(&first)
        .send()
        .await
        .unwrap();
    let second = secret_changes_from(&ns.name, "gone", &first).await;
    eventually(T, "the new key in AWS and in status", || async {
        let k: IamUserAccessKey = get(&ns.name, "gone").await?;
        (aws_keys(&user).await == vec![(second.clone(), true)]
            && k.status?.access_key_id.as_deref() == Some(second.as_str()))
        .then_some(())
    })
    .await;
    let events = events_for(&ns.name, "gone").await;
    assert!(
        events.iter().any(|(r, _)| r == "SecretRecreated"),
        "{events:?}"
    );
}

#[tokio::test]
async fn foreign_keys_are_never_touched_and_a_full_user_is_limit_exceeded() {
    let ns = Namespace::new("key-foreign").await;
    let user = format!("{}-shared", ns.name);
    let iam = iam().await;
    iam.create_user().user_name(&user).send().await.unwrap();
    let mut foreign = vec![];
    for _ in 0..2 {
        let k = iam
            .create_access_key()
            .user_name(&user)
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        foreign.push(k.access_key_id);
    }
    let op = Operator::start(&ns.name, &["--allow-existing-user", &user]).await;
    apply(&ns.name, &manifest("shared", json!({"userName": user})));
    let (status, message, stalled) = ready_reason(&ns.name, "shared", "LimitExceeded").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "True"));
    assert!(
        message.contains(&foreign[0]) && message.contains(&foreign[1]),
        "{message}"
    );
    assert_eq!(op.aws_writes().await, 0, "no AWS write while LimitExceeded");

    // A free slot lets the key be created; the remaining foreign key is left alone.
    iam.delete_access_key()
        .user_name(&user)
        .access_key_id(&foreign[0])
        .send()
        .await
        .unwrap();
    let k = ready(&ns.name, "shared").await;
    let ours = current_key(&k);
    let mut want = vec![(ours.clone(), true), (foreign[1].clone(), true)];
    want.sort();
    assert_eq!(aws_keys(&user).await, want);
    assert!(
        k.status.as_ref().unwrap().conditions[0]
            .message
            .contains("not managed by this object"),
        "{:?}",
        k.status
    );

    // Delete: our key goes; the user (not ours) and its foreign key stay.
    delete::<IamUserAccessKey>(&ns.name, "shared").await;
    gone(&ns.name, "shared").await;
    assert_eq!(aws_keys(&user).await, vec![(foreign[1].clone(), true)]);
    assert!(user_exists(&user).await);
}

#[tokio::test]
async fn key_status_inactive_deactivates_the_key() {
    let ns = Namespace::new("key-inactive").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-off", ns.name);
    apply(
        &ns.name,
        &manifest("off", json!({"userName": user, "keyStatus": "Inactive"})),
    );
    let id = current_key(&ready(&ns.name, "off").await);
    assert_eq!(aws_keys(&user).await, vec![(id.clone(), false)]);
    apply(
        &ns.name,
        &manifest("off", json!({"userName": user, "keyStatus": "Active"})),
    );
    ready(&ns.name, "off").await;
    assert_eq!(aws_keys(&user).await, vec![(id, true)]);
}

#[tokio::test]
async fn delete_removes_key_and_owned_user_and_retain_keeps_them() {
    let ns = Namespace::new("key-delete").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let doomed = format!("{}-doomed", ns.name);
    let kept = format!("{}-kept", ns.name);
    let document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}).to_string();
    // moto does not load AWS-managed policies by default: an external customer one.
    let external = iam()
        .await
        .create_policy()
        .policy_name(&doomed)
        .policy_document(&document)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap()
        .arn
        .unwrap();
    apply(
        &ns.name,
        &manifest(
            "doomed",
            json!({"userName": doomed, "managedPolicyArns": [external]}),
        ),
    );
    apply(
        &ns.name,
        &manifest(
            "kept",
            json!({"userName": kept, "deletionPolicy": "Retain"}),
        ),
    );
    ready(&ns.name, "doomed").await;
    let kept_key = current_key(&ready(&ns.name, "kept").await);
    // Something IAM refuses to delete a user with: an inline policy added by hand.
    iam()
        .await
        .put_user_policy()
        .user_name(&doomed)
        .policy_name("extra")
        .policy_document(&document)
        .send()
        .await
        .unwrap();

    delete::<IamUserAccessKey>(&ns.name, "doomed").await;
    delete::<IamUserAccessKey>(&ns.name, "kept").await;
    gone(&ns.name, "doomed").await;
    gone(&ns.name, "kept").await;
    assert!(!user_exists(&doomed).await);
    assert!(user_exists(&kept).await);
    assert_eq!(aws_keys(&kept).await, vec![(kept_key.clone(), true)]);
    // The garbage collector removes the deleted key's Secret with its owner; the
    // retained key's Secret stays (no owner reference left), holding that key.
    eventually(T, "the deleted key's Secret garbage-collected", || async {
        get::<Secret>(&ns.name, "doomed")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let retained = get::<Secret>(&ns.name, "kept")
        .await
        .expect("the retained key's Secret stays");
    assert!(
        retained
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "no owner reference is left for the garbage collector"
    );
    let shown = retained.data.unwrap_or_default()["AWS_ACCESS_KEY_ID"]
        .0
        .clone();
    assert_eq!(String::from_utf8(shown).unwrap(), kept_key);
}

#[tokio::test]
async fn an_invalid_spec_or_a_foreign_secret_is_stalled_before_any_aws_call() {
    let ns = Namespace::new("key-invalid").await;
    let op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-bad", ns.name);
    // Hostile and pointless durations and unusable Secret names are refused at apply
    // time by the CRD's schema and CEL rules, naming the field.
    for (spec, field, words) in [
        (
            json!({"every": "3000000000h"}),
            "spec.rotation.every",
            "between 1h and 87600h",
        ),
        (
            json!({"every": "1s"}),
            "spec.rotation.every",
            "between 1h and 87600h",
        ),
        (
            json!({"every": "10h", "gracePeriod": "60h"}),
            "spec.rotation.gracePeriod",
            "shorter than",
        ),
        (
            json!({"every": "20h", "gracePeriod": "10h", "deactivatedFor": "10h"}),
            "spec.rotation.deactivatedFor",
            "gracePeriod + deactivatedFor must be shorter than spec.rotation.every",
        ),
        // The default grace period counts too: 1h, or half of a shorter `every`.
        (
            json!({"every": "10h", "deactivatedFor": "9h"}),
            "spec.rotation.deactivatedFor",
            "gracePeriod + deactivatedFor must be shorter than spec.rotation.every",
        ),
        (
            json!({"every": "90m", "deactivatedFor": "45m"}),
            "spec.rotation.deactivatedFor",
            "gracePeriod + deactivatedFor must be shorter than spec.rotation.every",
        ),
    ] {
        let (ok, out, err) = kubectl(
            &["apply", "-n", &ns.name, "-f", "-"],
            Some(&manifest(
                "bad",
                json!({"userName": user, "rotation": spec}),
            )),
        );
        assert!(
            !ok && err.contains(field) && err.contains(words),
            "{spec}: {out}{err}"
        );
    }
    // What fits is admitted (dry run: no object, no AWS call).
    for spec in [
        json!({"every": "10h", "deactivatedFor": "8h59m"}),
        json!({"every": "90m", "deactivatedFor": "44m"}),
    ] {
        let (ok, out, err) = kubectl(
            &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
            Some(&manifest(
                "fits",
                json!({"userName": user, "rotation": spec}),
            )),
        );
        assert!(ok, "{spec}: {out}{err}");
    }
    let (ok, _, err) = kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&manifest(
            "bad",
            json!({"userName": user, "secretName": "Bad_Name"}),
        )),
    );
    assert!(!ok && err.contains("spec.secretName"), "{err}");

    kubectl(
        &[
            "create",
            "secret",
            "generic",
            "taken",
            "-n",
            &ns.name,
            "--from-literal=x=y",
        ],
        None,
    );
    apply(&ns.name, &manifest("taken", json!({"userName": user})));
    let (_, message, stalled) = ready_reason(&ns.name, "taken", "AlreadyExists").await;
    assert_eq!(stalled, "True");
    assert!(message.starts_with("spec.secretName: "), "{message}");
    assert_eq!(op.aws_requests(|_, _| true).await, 0);
    assert!(!user_exists(&user).await);
}

#[tokio::test]
async fn a_key_in_sync_costs_reads_only() {
    let ns = Namespace::new("key-quiet").await;
    let op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-quiet", ns.name);
    apply(
        &ns.name,
        &manifest(
            "quiet",
            json!({"userName": user, "tags": {"a": "b"}, "rotation": {"every": "720h"}}),
        ),
    );
    ready(&ns.name, "quiet").await;
    // Let the reconciles that the creation's own writes triggered (Secret and status
    // watch events) run first: they may still refresh a condition's transition time.
    let lists = op.aws_requests(|o, _| o == "ListAccessKeys").await;
    eventually(Duration::from_secs(30), "the first resync", || async {
        (op.aws_requests(|o, _| o == "ListAccessKeys").await >= lists + 2).then_some(())
    })
    .await;
    let before: IamUserAccessKey = get(&ns.name, "quiet").await.unwrap();
    let secret_before: Secret = get(&ns.name, "quiet").await.unwrap();
    let writes = op.aws_writes().await;
    let lists = op.aws_requests(|o, _| o == "ListAccessKeys").await;
    let since = std::time::Instant::now();
    // Two resyncs (5s each, ±10%): ListAccessKeys is called once per reconcile.
    eventually(Duration::from_secs(30), "two resyncs", || async {
        (op.aws_requests(|o, _| o == "ListAccessKeys").await >= lists + 2
            && since.elapsed() >= Duration::from_secs(9))
        .then_some(())
    })
    .await;
    assert_eq!(
        op.aws_writes().await,
        writes,
        "an object in sync caused AWS writes"
    );
    let after: IamUserAccessKey = get(&ns.name, "quiet").await.unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "status was rewritten"
    );
    let secret_after: Secret = get(&ns.name, "quiet").await.unwrap();
    assert_eq!(
        secret_before.metadata.resource_version, secret_after.metadata.resource_version,
        "the Secret was rewritten"
    );
}

/// Run the operator at trace level through create, rotation and heal, remember every
/// secret value the Secret ever held, then look for them everywhere else.
#[tokio::test]
async fn secret_values_appear_only_in_the_secret() {
    let ns = Namespace::new("key-leak").await;
    let op =
        Operator::start_with_env(&ns.name, &[], &[("RUST_LOG", "trace"), FAST_ROTATION[0]]).await;
    let user = format!("{}-leak", ns.name);
    apply(
        &ns.name,
        &manifest(
            "leak",
            json!({"userName": user, "rotation": {"every": "12h", "gracePeriod": "4h"}}),
        ),
    );
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let record = async |seen: &mut BTreeSet<(String, String)>| {
        if let Some((id, secret, _)) = secret_values(&ns.name, "leak").await {
            seen.insert((id, secret));
        }
    };
    let first = current_key(&ready(&ns.name, "leak").await);
    record(&mut seen).await;
    // Through one rotation, polling the Secret so every value is remembered.
    let deadline = std::time::Instant::now() + T;
    loop {
        record(&mut seen).await;
        if seen.iter().any(|(id, _)| *id != first) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rotation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And a heal.
    let before_heal: BTreeSet<String> = seen.iter().map(|(id, _)| id.clone()).collect();
    delete::<Secret>(&ns.name, "leak").await;
    let deadline = std::time::Instant::now() + T;
    loop {
        record(&mut seen).await;
        if seen.iter().any(|(id, _)| !before_heal.contains(id)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no heal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ready(&ns.name, "leak").await;
    assert!(seen.len() >= 3, "{} keys seen", seen.len());

    let log = op.log();
    assert!(log.contains("TRACE"), "the operator ran at trace level");
    let (_, events, _) = kubectl(&["get", "events", "-n", &ns.name, "-o", "json"], None);
    let (_, object, _) = kubectl(
        &["get", "iamkey", "leak", "-n", &ns.name, "-o", "json"],
        None,
    );
    let metrics = op.metrics().await;
    assert!(events.contains("SecretRecreated") && object.contains("accessKeyId"));
    for (id, secret) in &seen {
        for (what, text) in [
            ("operator log", &log),
            ("events", &events),
            ("object", &object),
            ("metrics", &metrics),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "the secret of key {id} appears in the {what}"
            );
        }
    }
}

#[tokio::test]
async fn a_crash_after_the_secret_write_keeps_the_delivered_key() {
    let ns = Namespace::new("key-crash2").await;
    let user = format!("{}-c2", ns.name);
    let mut op = Operator::start_with_env(
        &ns.name,
        &[],
        &[("IAMWRIGHT_FAILPOINT", "after-secret-write")],
    )
    .await;
    apply(&ns.name, &manifest("c2", json!({"userName": user})));
    let exit = op
        .wait_exit(T)
        .await
        .expect("the operator exits at the failpoint");
    assert_eq!(exit.code(), Some(3), "{}", op.log());
    let (delivered, ..) = secret_values(&ns.name, "c2").await.expect("Secret written");
    let k: IamUserAccessKey = get(&ns.name, "c2").await.unwrap();
    let st = k.status.unwrap();
    assert!(
        st.pending_key.is_some() && st.access_key_id.is_none(),
        "{st:?}"
    );

    // The restarted operator recognises the Secret's key as the current one.
    let op = Operator::start(&ns.name, &[]).await;
    let k = ready(&ns.name, "c2").await;
    assert_eq!(current_key(&k), delivered);
    assert_eq!(aws_keys(&user).await, vec![(delivered, true)]);
    assert_eq!(
        op.aws_requests(|o, _| o == "CreateAccessKey").await,
        0,
        "no second key was made"
    );
}

#[tokio::test]
async fn user_fields_need_ownership_and_adopt_takes_a_user_over() {
    let ns = Namespace::new("key-owner").await;
    let iam = iam().await;
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    let others = format!("{}-others", ns.name);
    iam.create_user()
        .user_name(&others)
        .tags(tag("iamwright.dev/cluster", "another-cluster"))
        .tags(tag("iamwright.dev/namespace", &ns.name))
        .tags(tag("iamwright.dev/name", "x"))
        .send()
        .await
        .unwrap();
    let legacy = format!("{}-legacy", ns.name);
    iam.create_user().user_name(&legacy).send().await.unwrap();
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;

    apply(
        &ns.name,
        &manifest("others", json!({"userName": others, "tags": {"team": "a"}})),
    );
    let (_, message, stalled) = ready_reason(&ns.name, "others", "OwnedByAnother").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("another-cluster"), "{message}");
    apply(
        &ns.name,
        &manifest("legacy", json!({"userName": legacy, "tags": {"team": "b"}})),
    );
    let (_, message, stalled) = ready_reason(&ns.name, "legacy", "AlreadyExists").await;
    assert_eq!(stalled, "True");
    assert!(message.contains("spec.adopt"), "{message}");
    assert_eq!(op.aws_writes().await, 0);
    assert!(aws_keys(&others).await.is_empty() && aws_keys(&legacy).await.is_empty());

    apply(
        &ns.name,
        &manifest(
            "legacy",
            json!({"userName": legacy, "tags": {"team": "b"}, "adopt": true}),
        ),
    );
    ready(&ns.name, "legacy").await;
    let tags: Vec<(String, String)> = iam
        .list_user_tags()
        .user_name(&legacy)
        .send()
        .await
        .unwrap()
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    assert!(tags.contains(&("team".into(), "b".into())), "{tags:?}");
    assert!(
        tags.contains(&("iamwright.dev/name".into(), "legacy".into())),
        "{tags:?}"
    );
    let events = events_for(&ns.name, "legacy").await;
    assert!(events.iter().any(|(r, _)| r == "Adopted"), "{events:?}");
}

#[tokio::test]
async fn a_renamed_secret_gets_a_fresh_key_and_the_old_secret_goes() {
    let ns = Namespace::new("key-rename").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-mv", ns.name);
    apply(&ns.name, &manifest("mv", json!({"userName": user})));
    let first = current_key(&ready(&ns.name, "mv").await);
    apply(
        &ns.name,
        &manifest("mv", json!({"userName": user, "secretName": "moved"})),
    );
    let k = ready(&ns.name, "mv").await;
    let second = current_key(&k);
    assert_ne!(first, second);
    assert_eq!(k.status.unwrap().secret_name.as_deref(), Some("moved"));
    assert_eq!(secret_values(&ns.name, "moved").await.unwrap().0, second);
    eventually(T, "old Secret deleted", || async {
        get::<Secret>(&ns.name, "mv").await.is_none().then_some(())
    })
    .await;
    assert_eq!(aws_keys(&user).await, vec![(second, true)]);
}

#[tokio::test]
async fn dependencies_are_waited_for_and_policy_refs_followed() {
    let ns = Namespace::new("key-deps").await;
    let op = Operator::start(
        &ns.name,
        &["--allow-existing-user", &format!("{}-*", ns.name)],
    )
    .await;
    let user = format!("{}-deps", ns.name);
    let existing = format!("{}-existing", ns.name);
    apply(
        &ns.name,
        &manifest(
            "deps",
            json!({"userName": user, "policyRefs": [{"name": "later"}]}),
        ),
    );
    apply(
        &ns.name,
        &manifest("byhand", json!({"userName": existing, "createUser": false})),
    );
    let (status, message, stalled) = ready_reason(&ns.name, "deps", "DependencyNotReady").await;
    assert_eq!((status.as_str(), stalled.as_str()), ("False", "False"));
    assert!(message.starts_with("spec.policyRefs[0]: "), "{message}");
    let (_, message, _) = ready_reason(&ns.name, "byhand", "DependencyNotReady").await;
    assert!(message.contains("spec.createUser is false"), "{message}");
    assert_eq!(op.aws_writes().await, 0, "nothing is created while waiting");
    assert!(!user_exists(&user).await && !user_exists(&existing).await);

    // The policy appears: the user is created with it attached.
    apply(
        &ns.name,
        &json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
                "metadata": {"name": "later"},
                "spec": {"document": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}})
        .to_string(),
    );
    ready(&ns.name, "deps").await;
    let attached = || async {
        iam()
            .await
            .list_attached_user_policies()
            .user_name(&user)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .len()
    };
    assert_eq!(attached().await, 1);
    // The reference is dropped: the policy is detached.
    apply(&ns.name, &manifest("deps", json!({"userName": user})));
    ready(&ns.name, "deps").await;
    assert_eq!(attached().await, 0);

    // The user appears: its key is made, the user itself is left as it is.
    iam()
        .await
        .create_user()
        .user_name(&existing)
        .send()
        .await
        .unwrap();
    let k = ready(&ns.name, "byhand").await;
    assert_eq!(aws_keys(&existing).await, vec![(current_key(&k), true)]);
    let tags = iam()
        .await
        .list_user_tags()
        .user_name(&existing)
        .send()
        .await
        .unwrap()
        .tags;
    assert!(tags.is_empty(), "{tags:?}");
}

/// `kubectl annotate ... iamwright.dev/rotate=<value>`: one rotation per new value,
/// none for a value already handled (after a spec change and after a restart).
#[tokio::test]
async fn the_rotate_annotation_rotates_exactly_once_per_value() {
    let ns = Namespace::new("key-ondemand").await;
    let mut op = Operator::start(&ns.name, &[]).await;
    let user = format!("{}-od", ns.name);
    apply(&ns.name, &manifest("od", json!({"userName": user})));
    let first = current_key(&ready(&ns.name, "od").await);
    let annotate = |value: &str| {
        let (ok, out, err) = kubectl(
            &[
                "annotate",
                "--overwrite",
                "iamkey",
                "od",
                "-n",
                &ns.name,
                &format!("iamwright.dev/rotate={value}"),
            ],
            None,
        );
        assert!(ok, "{out}{err}");
    };
    let handled = async |value: &str| {
        eventually(T, &format!("rotateRequest {value} handled"), || async {
            let k: IamUserAccessKey = get(&ns.name, "od").await?;
            let st = k.status.clone()?;
            (st.rotate_request.as_deref() == Some(value)
                && st.previous_access_key_id.is_none()
                && condition(&st.conditions, "Ready")?.0 == "True")
                .then_some(k)
        })
        .await
    };
    annotate("leak-1");
    let second = current_key(&handled("leak-1").await);
    assert_ne!(second, first);
    // Without spec.rotation the leaked key goes at once; the Secret holds the new key.
    assert_eq!(aws_keys(&user).await, vec![(second.clone(), true)]);
    let (sid, secret, _) = secret_values(&ns.name, "od").await.unwrap();
    assert_eq!(sid, second);
    assert_eq!(
        caller_arn(&second, &secret).await,
        format!("arn:aws:iam::123456789012:user/{user}")
    );

    // The same value again: a spec change makes the operator look, and it keeps the key.
    annotate("leak-1");
    apply(
        &ns.name,
        &manifest("od", json!({"userName": user, "tags": {"team": "a"}})),
    );
    let k = ready(&ns.name, "od").await;
    assert_eq!(current_key(&k), second);
    // Nor after a restart (the handled value is in the status, not in memory).
    op.stop();
    let op = Operator::start(&ns.name, &[]).await;
    apply(
        &ns.name,
        &manifest("od", json!({"userName": user, "tags": {"team": "b"}})),
    );
    let k = ready(&ns.name, "od").await;
    assert_eq!(current_key(&k), second);
    assert_eq!(op.aws_requests(|o, _| o == "CreateAccessKey").await, 0);

    // A new value rotates once more.
    annotate("leak-2");
    let third = current_key(&handled("leak-2").await);
    assert!(third != second && third != first);
    assert_eq!(aws_keys(&user).await, vec![(third.clone(), true)]);
    assert_eq!(op.aws_requests(|o, _| o == "CreateAccessKey").await, 1);
    let events = events_for(&ns.name, "od").await;
    let rotations = events
        .iter()
        .filter(|(r, n)| r == "Rotating" && n.contains("iamwright.dev/rotate="))
        .count();
    assert_eq!(rotations, 2, "{events:?}");
}

/// AWS's procedure, with rotation an hour a second, started on demand: the new key is
/// delivered, the old one stays Active for gracePeriod, is deactivated for
/// deactivatedFor (a use of it warns; reactivation holds it), then deleted — never
/// more than two keys.
#[tokio::test]
async fn the_rotation_procedure_deactivates_then_deletes_the_previous_key() {
    let ns = Namespace::new("key-procedure").await;
    let _op = Operator::start_with_env(&ns.name, &[], FAST_ROTATION).await;
    let user = format!("{}-pr", ns.name);
    let spec = |tags: Value| {
        json!({"userName": user, "tags": tags,
               // 12 s of Grace and 16 s Inactive: the checks in each window must not race
               // its end on a loaded machine (4 s of Grace and 8 s Inactive each did).
               "rotation": {"every": "60h", "gracePeriod": "12h", "deactivatedFor": "16h"}})
    };
    apply(&ns.name, &manifest("pr", spec(json!({}))));
    let first = current_key(&ready(&ns.name, "pr").await);
    let (_, first_secret, _) = secret_values(&ns.name, "pr").await.unwrap();
    // The two-key limit, sampled all along.
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let (most, user) = (most.clone(), user.clone());
        tokio::spawn(async move {
            loop {
                let n = aws_keys(&user).await.len();
                most.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let status = async || {
        get::<IamUserAccessKey>(&ns.name, "pr")
            .await
            .and_then(|k| k.status)
    };
    use iamwright::api::{KeyStatus, RotationPhase};

    // Rotated (now, on request): delivered, the previous key still Active (Grace).
    let (ok, out, err) = kubectl(
        &[
            "annotate",
            "iamkey",
            "pr",
            "-n",
            &ns.name,
            "iamwright.dev/rotate=now",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let second = secret_changes_from(&ns.name, "pr", &first).await;
    eventually(T, "phase Grace", || async {
        let st = status().await?;
        (st.rotation_phase == Some(RotationPhase::Grace)
            && st.previous_key_status == Some(KeyStatus::Active)
            && st.access_key_id.as_deref() == Some(second.as_str()))
        .then_some(())
    })
    .await;
    assert_eq!(
        aws_keys(&user).await,
        sorted(vec![(first.clone(), true), (second.clone(), true)])
    );
    // A workload still signs with the old key after the new one was delivered.
    caller_arn(&first, &first_secret).await;

    // After gracePeriod: Inactive, not deleted; the late use is reported.
    eventually(T, "previous key deactivated", || async {
        let st = status().await?;
        (st.rotation_phase == Some(RotationPhase::Deactivated)
            && st.previous_key_status == Some(KeyStatus::Inactive)
            && st.previous_key_last_used_at.is_some())
        .then_some(())
    })
    .await;
    assert_eq!(
        aws_keys(&user).await,
        sorted(vec![(first.clone(), false), (second.clone(), true)])
    );
    let warnings = events_of(&ns.name, "pr", true).await;
    assert!(
        warnings
            .iter()
            .any(|(r, n)| r == "PreviousKeyStillUsed" && n.contains(&first)),
        "{warnings:?}"
    );

    // Reactivated by the user: Active again, and kept past its deletion time.
    let (ok, out, err) = kubectl(
        &[
            "annotate",
            "iamkey",
            "pr",
            "-n",
            &ns.name,
            "iamwright.dev/reactivate-previous=incident-42",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    eventually(T, "previous key Active again", || async {
        (aws_keys(&user).await.contains(&(first.clone(), true))).then_some(())
    })
    .await;
    let st = status().await.unwrap();
    let delete_at = iamwright::controllers::access_key::schedule::parse_rfc3339(
        st.key_created_at.as_deref().unwrap(),
    )
    .unwrap()
        + chrono::Duration::seconds(4 + 16 + 1);
    eventually(T, "past the deletion time", || async {
        (chrono::Utc::now() > delete_at).then_some(())
    })
    .await;
    // A spec change makes the operator reconcile after that time: the key stays.
    apply(&ns.name, &manifest("pr", spec(json!({"held": "yes"}))));
    ready(&ns.name, "pr").await;
    assert!(aws_keys(&user).await.contains(&(first.clone(), true)));
    let events = events_for(&ns.name, "pr").await;
    assert!(
        events.iter().any(|(r, _)| r == "PreviousKeyReactivated"),
        "{events:?}"
    );

    // Released: deactivated and deleted; one key left, phase Stable.
    kubectl(
        &[
            "annotate",
            "iamkey",
            "pr",
            "-n",
            &ns.name,
            "iamwright.dev/reactivate-previous-",
        ],
        None,
    );
    eventually(T, "previous key deleted", || async {
        let st = status().await?;
        (st.previous_access_key_id.is_none()
            && st.rotation_phase == Some(RotationPhase::Stable)
            && st.previous_key_status.is_none())
        .then_some(())
    })
    .await;
    assert!(!aws_keys(&user).await.iter().any(|(id, _)| *id == first));
    let events = events_for(&ns.name, "pr").await;
    for reason in [
        "KeyVerified",
        "Rotating",
        "PreviousKeyDeactivated",
        "PreviousKeyDeleted",
    ] {
        assert!(
            events.iter().any(|(r, _)| r == reason),
            "{reason}: {events:?}"
        );
    }
    sampler.abort();
    assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 2);
}

fn sorted(mut v: Vec<(String, bool)>) -> Vec<(String, bool)> {
    v.sort();
    v
}

/// A crash in the middle of an on-demand rotation — after the new key verified, or
/// after it reached the Secret — leaves no orphaned key and no Secret with a dead
/// key, and the request is answered exactly once: by the key the restarted operator
/// delivers, or by the key the Secret already holds (no second rotation).
#[tokio::test]
async fn a_crash_during_an_on_demand_rotation_rotates_exactly_once() {
    let ns = Namespace::new("key-crash-rot").await;
    for (i, failpoint) in ["after-verify", "after-secret-write"]
        .into_iter()
        .enumerate()
    {
        let name = format!("r{i}");
        let user = format!("{}-{name}", ns.name);
        let mut op = Operator::start(&ns.name, &[]).await;
        apply(&ns.name, &manifest(&name, json!({"userName": user})));
        let first = current_key(&ready(&ns.name, &name).await);
        op.stop();

        let mut op =
            Operator::start_with_env(&ns.name, &[], &[("IAMWRIGHT_FAILPOINT", failpoint)]).await;
        let (ok, out, err) = kubectl(
            &[
                "annotate",
                "iamkey",
                &name,
                "-n",
                &ns.name,
                "iamwright.dev/rotate=leak",
            ],
            None,
        );
        assert!(ok, "{out}{err}");
        let exit = op
            .wait_exit(T)
            .await
            .expect("the operator exits at the failpoint");
        assert_eq!(exit.code(), Some(3), "{failpoint}: {}", op.log());
        let keys = aws_keys(&user).await;
        assert_eq!(keys.len(), 2, "{failpoint}: {keys:?}");
        let made = keys.iter().find(|(id, _)| *id != first).unwrap().0.clone();
        let (in_secret, ..) = secret_values(&ns.name, &name).await.unwrap();
        let k: IamUserAccessKey = get(&ns.name, &name).await.unwrap();
        let st = k.status.unwrap();
        assert_ne!(st.rotate_request.as_deref(), Some("leak"), "{failpoint}");
        assert_eq!(
            st.pending_key.and_then(|p| p.rotate_request).as_deref(),
            Some("leak"),
            "{failpoint}"
        );

        let op = Operator::start(&ns.name, &[]).await;
        let k = eventually(T, "the request answered", || async {
            let k: IamUserAccessKey = get(&ns.name, &name).await?;
            let st = k.status.as_ref()?;
            (st.rotate_request.as_deref() == Some("leak")
                && st.pending_key.is_none()
                && st.previous_access_key_id.is_none())
            .then_some(k)
        })
        .await;
        let now = current_key(&k);
        let created = op.aws_requests(|o, _| o == "CreateAccessKey").await;
        if failpoint == "after-verify" {
            // The verified key never reached the Secret: deleted; one new key made.
            assert_eq!(in_secret, first, "{failpoint}");
            assert!(now != first && now != made, "{failpoint}");
            assert_eq!(created, 1, "{failpoint}");
        } else {
            // The Secret already held the new key: it answers the request.
            assert_eq!(in_secret, made, "{failpoint}");
            assert_eq!(now, made, "{failpoint}");
            assert_eq!(created, 0, "{failpoint}: no second rotation");
        }
        // Only the delivered key is left (no schedule: the leaked one goes at once).
        assert_eq!(
            aws_keys(&user).await,
            vec![(now.clone(), true)],
            "{failpoint}"
        );
        let (sid, secret, _) = secret_values(&ns.name, &name).await.unwrap();
        assert_eq!(sid, now);
        assert_eq!(
            caller_arn(&now, &secret).await,
            format!("arn:aws:iam::123456789012:user/{user}")
        );
    }
}

/// `spec.rotation.restartWorkloads`: every delivered key rolls the Deployments that
/// read the Secret (pod-template annotation with the new key id), and only those;
/// without the RBAC the chart grants under `rbac.restartWorkloads` the object says so.
#[tokio::test]
async fn delivered_keys_roll_the_workloads_that_read_the_secret() {
    use k8s_openapi::api::apps::v1::Deployment;
    let ns = Namespace::new("key-restart").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let deployment = |name: &str, pod: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
               "spec": {"selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}})
        .to_string()
    };
    let container = |extra: Value| {
        let mut c = json!({"name": "app", "image": "busybox"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    apply(
        &ns.name,
        &deployment(
            "reader",
            json!({"containers": [container(json!({"envFrom": [{"secretRef": {"name": "app-key"}}]}))]}),
        ),
    );
    apply(
        &ns.name,
        &deployment(
            "mounter",
            json!({"containers": [container(json!({}))],
                   "volumes": [{"name": "aws", "projected": {"sources": [{"secret": {"name": "app-key"}}]}}]}),
        ),
    );
    apply(
        &ns.name,
        &deployment("other", json!({"containers": [container(json!({}))]})),
    );
    let user = format!("{}-rw", ns.name);
    apply(
        &ns.name,
        &manifest(
            "app",
            json!({"userName": user, "secretName": "app-key",
                   "rotation": {"every": "720h", "restartWorkloads": true}}),
        ),
    );
    // Without the RBAC (the chart's default): the key is delivered, the object says
    // what is missing.
    let (status, message, _) = ready_reason(&ns.name, "app", "KubernetesError").await;
    assert_eq!(status, "False");
    assert!(message.contains("rbac.restartWorkloads=true"), "{message}");
    assert!(secret_values(&ns.name, "app-key").await.is_some());

    // The chart renders the rule only with the value; grant it as the chart would.
    let rendered = |set: &[&str]| {
        let mut args = vec![
            "template",
            "x",
            "charts/iamwright",
            "--set",
            "operator.clusterName=e2e",
            "--kube-version",
            "1.34.0",
        ];
        for s in set {
            args.extend(["--set", s]);
        }
        let out = std::process::Command::new("helm")
            .args(&args)
            .current_dir(repo_root())
            .output()
            .expect("helm");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(!rendered(&[]).contains("deployments"));
    assert!(
        rendered(&["rbac.restartWorkloads=true"])
            .contains(r#"resources: ["deployments", "statefulsets", "daemonsets"]"#)
    );
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "iamwright-restart"},
         "rules": [{"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
                    "verbs": ["get", "list", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "iamwright-restart"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "iamwright-restart"},
         "subjects": [{"kind": "ServiceAccount", "name": "iamwright", "namespace": "iamwright-system"}]}]});
    apply(&ns.name, &rbac.to_string());
    let first = current_key(&ready(&ns.name, "app").await);

    let rolled_to = async |name: &str| -> Option<String> {
        let d: Deployment = get(&ns.name, name).await?;
        d.spec?
            .template
            .metadata?
            .annotations?
            .get("iamwright.dev/access-key-id")
            .cloned()
    };
    let wait_rolled = async |key: &str| {
        eventually(T, &format!("workloads rolled to {key}"), || async {
            (rolled_to("reader").await.as_deref() == Some(key)
                && rolled_to("mounter").await.as_deref() == Some(key))
            .then_some(())
        })
        .await
    };
    wait_rolled(&first).await;
    // A rotation rolls them again, to the new key.
    let (ok, out, err) = kubectl(
        &[
            "annotate",
            "iamkey",
            "app",
            "-n",
            &ns.name,
            "iamwright.dev/rotate=1",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let second = secret_changes_from(&ns.name, "app-key", &first).await;
    wait_rolled(&second).await;
    assert_eq!(
        rolled_to("other").await,
        None,
        "a Deployment not reading the Secret"
    );
    // This bed runs no deployment controller, so the rollouts never complete: the
    // previous key's grace period has not started, and the object says what it waits
    // for and until when (the bound, 10 minutes after the delivery; the node suite
    // shows a rollout completing and the grace period starting then).
    let waiting = eventually(T, "rotationPhase RestartingWorkloads", || async {
        let k: IamUserAccessKey = get(&ns.name, "app").await?;
        let st = k.status.clone()?;
        (st.access_key_id.as_deref() == Some(second.as_str())
            && st.rotation_phase == Some(iamwright::api::RotationPhase::RestartingWorkloads))
        .then_some(st)
    })
    .await;
    assert_eq!(
        waiting.previous_key_status,
        Some(iamwright::api::KeyStatus::Active)
    );
    assert_eq!(
        waiting.previous_access_key_id.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(waiting.grace_started_at, None);
    let since = chrono::DateTime::parse_from_rfc3339(
        waiting
            .rollouts_awaited_since
            .as_deref()
            .expect("rolloutsAwaitedSince"),
    )
    .unwrap();
    let due =
        chrono::DateTime::parse_from_rfc3339(waiting.next_rotation_at.as_deref().unwrap()).unwrap();
    assert_eq!(due - since, chrono::Duration::minutes(10));
    let (_, message, _) = ready_reason(&ns.name, "app", "Synced").await;
    assert!(
        message.contains("waiting for Deployment/mounter, Deployment/reader to roll out"),
        "{message}"
    );
    let events = events_for(&ns.name, "app").await;
    assert!(
        events.iter().any(|(r, n)| r == "WorkloadsRestarted"
            && n.contains(&second)
            && n.contains("Deployment/reader")),
        "{events:?}"
    );
}
