//! Two replicas with leader election: one holds the Lease; deleting its pod (the kubelet
//! sends SIGTERM) releases the Lease, so the standby takes over before the Lease would
//! have expired, and an object applied meanwhile is reconciled.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams};

use crate::harness::*;
use crate::release::*;

async fn lease() -> Lease {
    let api: Api<Lease> = Api::namespaced(kube().await, RELEASE_NAMESPACE);
    api.get("iamwright-leader").await.expect("the leader Lease")
}

#[tokio::test]
async fn a_deleted_leader_pod_releases_the_lease_and_the_standby_takes_over() {
    let proxy = FaultProxy::start_on("0.0.0.0").await;
    let mut values = base_values(&proxy);
    values.extend([
        "replicaCount=2".into(),
        "leaderElection.enabled=true".into(),
    ]);
    let _release = Release::install(&values);
    let pods = ready_pods(2).await;
    let names: Vec<String> = pods.iter().map(name).collect();
    let leader = eventually(
        Duration::from_secs(60),
        "a leader among the pods",
        || async { lease_holder().await.filter(|h| names.contains(h)) },
    )
    .await;
    let standby = names.iter().find(|n| **n != leader).unwrap().clone();

    let ns = objects_namespace("handover");
    apply(&ns.name, &policy("before"));
    policy_ready(&ns.name, "before").await;

    let api: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(kube().await, RELEASE_NAMESPACE);
    let deleted_at = Timestamp::now();
    api.delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    apply(&ns.name, &policy("during"));

    // Follow the Lease closely: the old holder's last renewal seen, then the standby's
    // acquisition.
    let mut last_renew = None;
    let mut released_seen = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (acquired, duration) = loop {
        let spec = lease().await.spec.unwrap();
        match spec.holder_identity.as_deref() {
            Some(h) if h == leader => last_renew = spec.renew_time.map(|t| t.0),
            Some(h) if h == standby => {
                let d = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap() as i64);
                break (spec.acquire_time.expect("acquireTime").0, d);
            }
            _ => released_seen = true,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never took the Lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last_renew = last_renew.expect("the leader's renewTime");
    eprintln!(
        "figure: leader pod deleted to standby leading in {:.1} s (Lease duration {} s, empty holder seen: {released_seen})",
        acquired.duration_since(deleted_at).as_secs_f64(),
        duration.as_secs()
    );
    // Acquired before the old holder's Lease could have expired: it was released on
    // SIGTERM, not waited out (the Lease's own timestamps).
    assert!(
        acquired < last_renew.checked_add(duration).unwrap(),
        "the standby waited for the Lease to expire (renewed {last_renew}, acquired {acquired})"
    );
    // No reconcile lost: the object applied while the leader went away is Ready.
    policy_ready(&ns.name, "during").await;
    // And a replacement pod came up as the new standby.
    ready_pods(2).await;
    delete_objects(&ns.name);
}
