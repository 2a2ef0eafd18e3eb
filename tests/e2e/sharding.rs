//! Sharding past one process: `--object-selector` gives each operator process its
//! share of the objects (each with its own leader-election Lease when elected).

use std::process::{Command, Stdio};
use std::time::Duration;

use iamwright::api::IamPolicy;
use serde_json::json;

use crate::harness::*;
use crate::policy::policy_exists;
use crate::role::{T, ready};

fn labelled_policy(name: &str, shard: Option<&str>) -> String {
    let labels = shard.map(|s| json!({"shard": s})).unwrap_or(json!({}));
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
           "metadata": {"name": name, "labels": labels},
           "spec": {"document": {"Version": "2012-10-17", "Statement": [
               {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}})
    .to_string()
}

fn arn(ns: &str, name: &str) -> String {
    format!("arn:aws:iam::123456789012:policy/{ns}-{name}")
}

async fn creates(op: &Operator) -> u64 {
    op.aws_requests(|o, outcome| o == "CreatePolicy" && outcome == "success")
        .await
}

#[tokio::test]
async fn each_shard_reconciles_only_its_objects() {
    let ns = Namespace::new("shards").await;
    let a = Operator::start(&ns.name, &["--object-selector=shard=a"]).await;
    let b = Operator::start(&ns.name, &["--object-selector=shard=b"]).await;
    apply(&ns.name, &labelled_policy("pa", Some("a")));
    apply(&ns.name, &labelled_policy("pb", Some("b")));
    apply(&ns.name, &labelled_policy("none", None));
    ready::<IamPolicy>(&ns.name, "pa").await;
    ready::<IamPolicy>(&ns.name, "pb").await;
    // Each shard made exactly its own policy.
    assert_eq!((creates(&a).await, creates(&b).await), (1, 1));

    // The unlabelled object belongs to no shard: two resyncs of each later, it has
    // no status and nothing in AWS.
    assert_eq!(a.writes_across_resyncs("ListPolicyTags", 2).await, 0);
    assert_eq!(b.writes_across_resyncs("ListPolicyTags", 2).await, 0);
    let none: IamPolicy = get(&ns.name, "none").await.unwrap();
    assert!(none.status.is_none(), "{:?}", none.status);
    assert!(!policy_exists(&arn(&ns.name, "none")).await);

    // An object moved to the other shard is taken over there, in sync: no writes.
    let (writes_a, writes_b) = (a.aws_writes().await, b.aws_writes().await);
    apply(&ns.name, &labelled_policy("pb", Some("a")));
    eventually(T, "shard a reads pb", || async {
        let reconciled = a.metrics().await.lines().any(|l| {
            l.starts_with("iamwright_managed_resources{")
                && l.contains("IamPolicy")
                && l.contains("ready=\"true\"")
                && l.ends_with(" 2")
        });
        reconciled.then_some(())
    })
    .await;
    assert_eq!(a.aws_writes().await - writes_a, 0);
    assert_eq!(b.aws_writes().await - writes_b, 0);
}

#[tokio::test]
async fn an_invalid_selector_refuses_to_start() {
    let ns = Namespace::new("shard-bad").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_iamwright"))
        .args([
            "run",
            "--cluster-name",
            "e2e",
            "--watch-namespace",
            &ns.name,
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--health-probe-bind-address",
            "127.0.0.1:0",
            "--object-selector",
            "shard in (a",
        ])
        .env("KUBECONFIG", operator_kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not exit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("--object-selector"), "{err}");
}
