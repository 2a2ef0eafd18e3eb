//! Leader election: with --leader-elect only one replica reconciles, and a standby takes
//! over when the leader dies.

use std::time::Duration;

use iamwright::api::IamPolicy;
use serde_json::json;

use crate::harness::*;

fn policy(name: &str) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy", "metadata": {"name": name},
           "spec": {"document": {"Version": "2012-10-17",
               "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}})
    .to_string()
}

async fn wait_ready(ns: &str, name: &str, timeout: Duration) {
    eventually(timeout, &format!("IamPolicy {name} Ready"), || async {
        let p: IamPolicy = get(ns, name).await?;
        let st = p.status?;
        (condition(&st.conditions, "Ready")?.0 == "True").then_some(())
    })
    .await
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let ns = Namespace::new("ha").await;
    // The chart grants Leases in its own namespace only.
    let flags = [
        "--leader-elect",
        "--leader-election-namespace",
        RELEASE_NAMESPACE,
    ];
    let first = Operator::start(&ns.name, &flags).await;
    let second = Operator::start(&ns.name, &flags).await;

    apply(&ns.name, &policy("before"));
    wait_ready(&ns.name, "before", Duration::from_secs(60)).await;
    let writes = [first.aws_writes().await, second.aws_writes().await];
    assert!(
        (writes[0] > 0) != (writes[1] > 0),
        "exactly one replica may write to AWS, saw writes {writes:?}"
    );
    let (mut leader, standby) = if writes[0] > 0 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        standby.aws_requests(|_, _| true).await,
        0,
        "the standby made AWS calls"
    );

    // A crash: the Lease is not released, so the standby waits for it to expire.
    leader.kill();
    apply(&ns.name, &policy("after"));
    wait_ready(&ns.name, "after", Duration::from_secs(60)).await;
    assert!(
        standby.aws_writes().await > 0,
        "the standby did not take over"
    );
    assert!(
        standby.log().contains("became the leader"),
        "{}",
        standby.log()
    );
}
