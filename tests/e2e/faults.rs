//! Reliability under faults, made to happen: `hack/faultproxy.py` between the operator
//! and moto (throttling, 5xx, responses lost after the write), SIGKILLs in a loop, and
//! a Secret that can never be written. Each test counts what matters — keys in IAM
//! against keys in Secrets, AWS calls, reconciles — and asserts on the count.

use std::collections::BTreeMap;
use std::time::Duration;

use iamwright::api::{IamPolicy, IamRole, IamUserAccessKey, InstanceProfileBinding};
use iamwright::controllers::reconciler::Managed;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde_json::{Value, json};

use crate::access_key::{aws_keys, secret_values};
use crate::binding::{association, launch};
use crate::harness::*;
use crate::role::{doc, ready, ready_reason, role_manifest};

fn object(kind: &str, name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

fn key_manifest(name: &str, spec: Value) -> String {
    object("IamUserAccessKey", name, spec)
}

/// For every (object, user): the user's keys in IAM are exactly the one key its
/// Secret holds — no orphan, no duplicate, nothing lost.
async fn keys_match_secrets(ns: &str, keys: &[(String, String)]) -> Result<(), String> {
    for (name, user) in keys {
        let in_iam: Vec<String> = aws_keys(user).await.into_iter().map(|(id, _)| id).collect();
        let in_secret = secret_values(ns, name).await.map(|(id, ..)| id);
        if in_secret.as_ref().map(|id| vec![id.clone()]) != Some(in_iam.clone()) {
            return Err(format!(
                "{name}: IAM holds {in_iam:?}, the Secret {in_secret:?}"
            ));
        }
    }
    Ok(())
}

/// Whether the object's Stalled condition is True.
async fn stalled<K>(ns: &str, name: &str) -> bool
where
    K: Managed + Resource<Scope = NamespaceResourceScope>,
{
    let o: K = get(ns, name).await.expect("object exists");
    let v = serde_json::to_value(&o).unwrap();
    v["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Stalled" && c["status"] == "True")
}

/// `iamwright_reconcile_total` samples of `kind` by result.
async fn reconciles(op: &Operator, kind: &str) -> BTreeMap<String, f64> {
    let text = op.metrics().await;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("iamwright_reconcile_total{") else {
            continue;
        };
        if !rest.contains(&format!("kind=\"{kind}\"")) {
            continue;
        }
        let result = rest
            .split("result=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string();
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        *out.entry(result).or_default() += n;
    }
    out
}

#[tokio::test]
async fn throttling_and_server_errors_on_a_third_of_calls_still_converge() {
    let ns = Namespace::new("fault-flaky").await;
    let proxy = FaultProxy::start().await;
    proxy
        .set_rules(json!([
            {"operations": ["*"], "fault": "throttle", "probability": 0.15},
            {"operations": ["*"], "fault": "error5xx", "probability": 0.15},
        ]))
        .await;
    let (k, v) = proxy.operator_env();
    let _op = Operator::start_with_env(&ns.name, &[], &[(k, &v)]).await;
    let instance = launch(&[("fault-test", &ns.name)]).await;
    let mut keys = vec![];
    for i in 0..3 {
        let n = &ns.name;
        apply(
            n,
            &object(
                "IamPolicy",
                &format!("p{i}"),
                json!({"document": doc(&["s3:GetObject"])}),
            ),
        );
        apply(
            n,
            &role_manifest(
                &format!("r{i}"),
                json!({"policyRefs": [{"name": format!("p{i}")}]}),
            ),
        );
        let user = format!("{n}-u{i}");
        apply(
            n,
            &key_manifest(
                &format!("k{i}"),
                json!({"userName": user, "policyRefs": [{"name": format!("p{i}")}]}),
            ),
        );
        keys.push((format!("k{i}"), user));
    }
    apply(
        &ns.name,
        &object(
            "InstanceProfileBinding",
            "b0",
            json!({"roleRef": {"name": "r0"}, "instanceIds": [instance]}),
        ),
    );
    for i in 0..3 {
        ready::<IamPolicy>(&ns.name, &format!("p{i}")).await;
        ready::<IamRole>(&ns.name, &format!("r{i}")).await;
        ready::<IamUserAccessKey>(&ns.name, &format!("k{i}")).await;
    }
    ready::<InstanceProfileBinding>(&ns.name, "b0").await;
    // The faults did happen, and were absorbed: nothing stalled, the AWS state is whole.
    assert!(proxy.count("*", "throttled").await > 0);
    assert!(proxy.count("*", "errors5xx").await > 0);
    for i in 0..3 {
        assert!(!stalled::<IamPolicy>(&ns.name, &format!("p{i}")).await);
        assert!(!stalled::<IamRole>(&ns.name, &format!("r{i}")).await);
        assert!(!stalled::<IamUserAccessKey>(&ns.name, &format!("k{i}")).await);
    }
    assert!(
        association(&instance).await.is_some(),
        "the instance got its profile"
    );
    eprintln!(
        "figures: {} AWS requests through the proxy, {} throttled, {} 5xx; 10 objects Ready, none Stalled",
        proxy.count("*", "requests").await,
        proxy.count("*", "throttled").await,
        proxy.count("*", "errors5xx").await
    );
    proxy.clear().await;
    eventually(
        Duration::from_secs(30),
        "keys in IAM == keys in Secrets",
        || async { keys_match_secrets(&ns.name, &keys).await.ok() },
    )
    .await;
}

/// The sum of the operator's metric samples named `name` (all label sets).
async fn metric_sum(op: &Operator, name: &str) -> f64 {
    op.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// IAM's shape, made by the proxy: one account-wide rate of 2 calls a second, answered
/// `Throttling` above it, 50 ms per answer. 8 policy+role pairs applied at once meet
/// the limit, and no object shows it: the pacer re-sent the throttled attempts at the
/// rate it learned (both counted in its metrics), every object is Ready, no
/// `AwsThrottled` warning, no call failed throttled.
#[tokio::test]
async fn an_account_rate_limit_is_paced_not_reported() {
    let ns = Namespace::new("fault-paced").await;
    let proxy = FaultProxy::start().await;
    proxy
        .set_rules(json!([
            {"operations": ["*"], "fault": "ratelimit", "ratePerSecond": 2, "latencySeconds": 0.05},
        ]))
        .await;
    let (k, v) = proxy.operator_env();
    let op = Operator::start_with_env(&ns.name, &[], &[(k, &v)]).await;
    for i in 0..8 {
        apply(
            &ns.name,
            &object(
                "IamPolicy",
                &format!("p{i}"),
                json!({"document": doc(&["s3:GetObject"])}),
            ),
        );
        apply(
            &ns.name,
            &role_manifest(
                &format!("r{i}"),
                json!({"policyRefs": [{"name": format!("p{i}")}]}),
            ),
        );
    }
    for i in 0..8 {
        ready::<IamPolicy>(&ns.name, &format!("p{i}")).await;
        ready::<IamRole>(&ns.name, &format!("r{i}")).await;
    }
    for i in 0..8 {
        for name in [format!("p{i}"), format!("r{i}")] {
            let warnings = events_of(&ns.name, &name, true).await;
            assert!(
                !warnings.iter().any(|(r, _)| r == "AwsThrottled"),
                "{name}: {warnings:?}"
            );
        }
    }
    assert_eq!(
        op.aws_requests(|_, outcome| outcome == "throttled").await,
        0,
        "no call failed throttled"
    );
    // No more throttling, so that no answer is in flight while the two counts are read
    // (the proxy counts a throttle when it answers, the pacer when it receives it).
    proxy.clear().await;
    let throttled = proxy.count("*", "throttled").await;
    assert!(throttled > 0, "the account's limit was met");
    // The pacer absorbed throttles (it may pass one on to the SDK's own retry once its
    // 10 s window is spent: those still ended without a throttled call, checked above,
    // so the two counts need not be equal under a loaded machine).
    let absorbed = eventually(
        Duration::from_secs(10),
        "throttled attempts re-sent by the pacer",
        || async {
            let absorbed = metric_sum(&op, "iamwright_aws_throttles_absorbed_total").await as u64;
            (absorbed > 0).then_some(absorbed)
        },
    )
    .await;
    assert!(
        absorbed <= proxy.count("*", "throttled").await,
        "the pacer counted {absorbed} throttles, more than the account answered"
    );
    let rate = metric_sum(&op, "iamwright_aws_pace_requests_per_second").await;
    assert!(rate > 0.0 && rate < 20.0, "a rate learned: {rate}");
    eprintln!(
        "figures: {} requests through the proxy, {throttled} throttled, {absorbed} absorbed by the pacer; learned rate {rate:.1}/s",
        proxy.count("*", "requests").await
    );
}

#[tokio::test]
async fn lost_create_responses_leave_no_orphaned_key_and_no_duplicate() {
    let ns = Namespace::new("fault-lost").await;
    let proxy = FaultProxy::start().await;
    // Every CreateAccessKey reaches AWS and its answer is lost; half of the other
    // creates too.
    proxy
        .set_rules(json!([
            {"operations": ["CreateAccessKey"], "fault": "lost", "probability": 1.0},
            {"operations": ["CreateUser", "CreatePolicy", "CreateRole"], "fault": "lost", "probability": 0.5},
        ]))
        .await;
    let (k, v) = proxy.operator_env();
    let op = Operator::start_with_env(&ns.name, &[], &[(k, &v)]).await;
    let mut keys = vec![];
    for i in 0..4 {
        let user = format!("{}-u{i}", ns.name);
        apply(
            &ns.name,
            &key_manifest(&format!("k{i}"), json!({"userName": user})),
        );
        keys.push((format!("k{i}"), user));
    }
    apply(
        &ns.name,
        &object(
            "IamPolicy",
            "p",
            json!({"document": doc(&["s3:GetObject"])}),
        ),
    );
    apply(
        &ns.name,
        &role_manifest("r", json!({"policyRefs": [{"name": "p"}]})),
    );
    // Every user saw at least two lost creates: the key each one made was found and
    // deleted (none can be delivered: AWS showed its secret to nobody).
    eventually(
        Duration::from_secs(90),
        "two lost creates per user",
        || async { (proxy.count("CreateAccessKey", "lost").await >= 8).then_some(()) },
    )
    .await;
    let lost = proxy.count("CreateAccessKey", "lost").await;
    // Each call the operator made reached AWS once: no SDK retry doubled a create.
    // (Compared when no create is in flight: the proxy counts a request when it
    // arrives, the operator a call when it ends.)
    eventually(
        Duration::from_secs(20),
        "one HTTP attempt per CreateAccessKey call",
        || async {
            let calls = op.aws_requests(|o, _| o == "CreateAccessKey").await;
            let attempts = proxy.count("CreateAccessKey", "requests").await;
            (attempts == calls).then_some(())
        },
    )
    .await;
    ready::<IamRole>(&ns.name, "r").await;
    proxy.clear().await;
    for (name, _) in &keys {
        ready::<IamUserAccessKey>(&ns.name, name).await;
    }
    eventually(
        Duration::from_secs(30),
        "keys in IAM == keys in Secrets",
        || async { keys_match_secrets(&ns.name, &keys).await.ok() },
    )
    .await;
    // Every lost key was deleted by the recovery (one delete per lost create).
    let deleted = op
        .aws_requests(|o, r| o == "DeleteAccessKey" && r == "success")
        .await;
    assert!(deleted >= lost, "{deleted} deletes for {lost} lost creates");
    eprintln!(
        "figures: {lost} CreateAccessKey answers lost, {} HTTP attempts for {} calls, {deleted} keys deleted, none left over",
        proxy.count("CreateAccessKey", "requests").await,
        op.aws_requests(|o, _| o == "CreateAccessKey").await
    );
    // One IAM object per spec: the lost creates of users, policies and roles made no
    // duplicate (IAM names are unique; the ownership check took them over).
    let policies = iam()
        .await
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    let mine = policies
        .policies()
        .iter()
        .filter(|p| p.policy_name() == Some(&format!("{}-p", ns.name)))
        .count();
    assert_eq!(mine, 1);
}

#[tokio::test]
async fn a_secret_that_can_never_be_written_costs_no_key() {
    let ns = Namespace::new("fault-quota").await;
    let op = Operator::start(&ns.name, &[]).await;
    let (ok, out, err) = kubectl(
        &[
            "create",
            "quota",
            "no-secrets",
            "--hard=count/secrets=0",
            "-n",
            &ns.name,
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let user = format!("{}-q", ns.name);
    apply(&ns.name, &key_manifest("q", json!({"userName": user})));
    let (status, message, _) =
        ready_reason::<IamUserAccessKey>(&ns.name, "q", "KubernetesError").await;
    assert_eq!(status, "False");
    assert!(message.contains("cannot be written"), "{message}");
    let before = reconciles(&op, "IamUserAccessKey").await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = reconciles(&op, "IamUserAccessKey").await;
    // No key was ever made for a Secret that could not hold it, and the object backs
    // off instead of looping on its own writes.
    assert_eq!(
        op.aws_requests(|o, _| o == "CreateAccessKey").await,
        0,
        "CreateAccessKey calls"
    );
    assert!(aws_keys(&user).await.is_empty());
    let tries: f64 = after.values().sum::<f64>() - before.values().sum::<f64>();
    assert!(
        tries <= 6.0,
        "{tries} reconciles in 20s: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.get("success").copied().unwrap_or(0.0),
        0.0,
        "{after:?}"
    );
    eprintln!("figures: 0 CreateAccessKey calls and {tries} reconciles in 20 s, Secret unwritable");
    // Lifting the quota lets it through.
    kubectl(&["delete", "quota", "no-secrets", "-n", &ns.name], None);
    ready::<IamUserAccessKey>(&ns.name, "q").await;
    keys_match_secrets(&ns.name, &[("q".into(), user)])
        .await
        .unwrap();
}

#[tokio::test]
async fn sigkill_at_any_moment_leaves_keys_in_iam_equal_to_keys_in_secrets() {
    let ns = Namespace::new("fault-kill").await;
    let scale = [("IAMWRIGHT_ROTATION_TIME_SCALE", "3600")];
    let mut keys = vec![];
    for i in 0..4 {
        let user = format!("{}-u{i}", ns.name);
        // Two rotate every 20 "hours" (20 s here): kills land in rotations too.
        let spec = if i % 2 == 0 {
            json!({"userName": user, "rotation": {"every": "20h", "gracePeriod": "5h"}})
        } else {
            json!({"userName": user})
        };
        apply(&ns.name, &key_manifest(&format!("k{i}"), spec));
        keys.push((format!("k{i}"), user));
    }
    // Kill the operator at staggered moments while it creates, heals and rotates.
    let pauses = [300u64, 700, 1100, 450, 1500, 900, 250, 1300, 600, 2000];
    for (round, pause) in pauses.iter().enumerate() {
        let mut op = Operator::start_with_env(&ns.name, &[], &scale).await;
        if round == 5 {
            // A lost Secret mid-run: the heal path runs under the kills too.
            kubectl(&["delete", "secret", "k1", "-n", &ns.name], None);
        }
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        op.kill();
    }
    let _op = Operator::start_with_env(&ns.name, &[], &scale).await;
    for (name, _) in &keys {
        ready::<IamUserAccessKey>(&ns.name, name).await;
    }
    eventually(
        Duration::from_secs(40),
        "keys in IAM == keys in Secrets",
        || async { keys_match_secrets(&ns.name, &keys).await.ok() },
    )
    .await;
    eprintln!(
        "figures: {} SIGKILLs over {} users; keys in IAM == keys in Secrets",
        pauses.len(),
        keys.len()
    );
}

/// A new key that STS never accepts is never delivered: it is deleted, the object
/// says so (reason `Verifying`), and no Secret ever holds it. Then lost
/// GetCallerIdentity answers only delay the delivery: the keys in IAM end up equal
/// to the keys in the Secrets.
#[tokio::test]
async fn a_key_that_never_verifies_never_reaches_a_secret() {
    let ns = Namespace::new("fault-verify").await;
    let proxy = FaultProxy::start().await;
    let (k, v) = proxy.operator_env();
    let op = Operator::start_with_env(&ns.name, &[], &[(k, &v)]).await;
    // One key delivered first: the operator's own identity is known from here on.
    let u0 = format!("{}-u0", ns.name);
    apply(&ns.name, &key_manifest("k0", json!({"userName": u0})));
    ready::<IamUserAccessKey>(&ns.name, "k0").await;
    let verified_before = op
        .aws_requests(|o, r| o == "GetCallerIdentity" && r == "success")
        .await;
    assert!(verified_before >= 1, "the first key was verified");

    proxy
        .set_rules(json!([{"operations": ["GetCallerIdentity"], "fault": "error5xx"}]))
        .await;
    let u1 = format!("{}-u1", ns.name);
    apply(&ns.name, &key_manifest("k1", json!({"userName": u1})));
    let (status, message, _) = ready_reason::<IamUserAccessKey>(&ns.name, "k1", "Verifying").await;
    assert_eq!(status, "False");
    assert!(message.contains("GetCallerIdentity"), "{message}");
    // Every key made was deleted again, and no Secret was written.
    eventually(
        Duration::from_secs(90),
        "unverified keys deleted",
        || async {
            let events = events_of(&ns.name, "k1", true).await;
            let failed = events.iter().filter(|(r, _)| r == "KeyNotVerified").count();
            (failed >= 1 && aws_keys(&u1).await.is_empty()).then_some(())
        },
    )
    .await;
    assert!(secret_values(&ns.name, "k1").await.is_none());
    let k1: IamUserAccessKey = get(&ns.name, "k1").await.unwrap();
    let st = k1.status.unwrap();
    assert!(st.access_key_id.is_none(), "{st:?}");

    // Lost answers (STS answered, the operator never heard): delivered all the same.
    proxy
        .set_rules(
            json!([{"operations": ["GetCallerIdentity"], "fault": "lost", "probability": 0.5}]),
        )
        .await;
    let u2 = format!("{}-u2", ns.name);
    apply(&ns.name, &key_manifest("k2", json!({"userName": u2})));
    let keys = vec![
        ("k0".to_string(), u0),
        ("k1".to_string(), u1),
        ("k2".to_string(), u2),
    ];
    for (name, _) in &keys {
        ready::<IamUserAccessKey>(&ns.name, name).await;
    }
    eventually(
        Duration::from_secs(30),
        "keys in IAM == keys in Secrets",
        || async { keys_match_secrets(&ns.name, &keys).await.ok() },
    )
    .await;
    eprintln!(
        "figures: {} GetCallerIdentity answers failed, {} lost; keys in IAM == keys in Secrets",
        proxy.count("GetCallerIdentity", "errors5xx").await,
        proxy.count("GetCallerIdentity", "lost").await
    );
}
