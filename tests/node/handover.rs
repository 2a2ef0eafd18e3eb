//! Two replicas with leader election: one holds the Lease; deleting its pod (the kubelet
//! sends SIGTERM) releases the Lease, another pod takes it within the Lease duration,
//! and an object applied meanwhile is reconciled.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, WatchEvent, WatchParams};

use crate::harness::*;
use crate::release::*;

async fn lease() -> Lease {
    let api: Api<Lease> = Api::namespaced(kube().await, RELEASE_NAMESPACE);
    api.get("iamwright-leader").await.expect("the leader Lease")
}

#[tokio::test]
async fn a_deleted_leader_pod_releases_the_lease_and_another_takes_over() {
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

    let ns = objects_namespace("handover");
    apply(&ns.name, &policy("before"));
    policy_ready(&ns.name, "before").await;

    // Every change of the Lease from here on, in order (a watch, not polling: the
    // released state may last only until the next pod takes the Lease).
    let leases: Api<Lease> = Api::namespaced(kube().await, RELEASE_NAMESPACE);
    // The holder's renewal as the watch starts; every later one comes as an event.
    let held = lease().await;
    let rv = held.metadata.resource_version.unwrap();
    let mut last_renew = held.spec.unwrap().renew_time.map(|t| t.0);
    let wp = WatchParams::default().fields("metadata.name=iamwright-leader");
    let mut changes = leases
        .watch(&wp, &rv)
        .await
        .expect("watch the Lease")
        .boxed();

    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(kube().await, RELEASE_NAMESPACE);
    let deleted_at = Timestamp::now();
    pods.delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    apply(&ns.name, &policy("during"));

    let mut released_at = None;
    let (successor, acquired, duration) = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = changes.next().await {
            let WatchEvent::Modified(l) = event.expect("Lease watch") else {
                continue;
            };
            let spec = l.spec.unwrap_or_default();
            match spec.holder_identity.as_deref() {
                Some(h) if h == leader => last_renew = spec.renew_time.map(|t| t.0),
                Some(h) if !h.is_empty() => {
                    let d = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap() as i64);
                    return (h.to_string(), spec.acquire_time.expect("acquireTime").0, d);
                }
                _ => released_at = released_at.or(Some(Timestamp::now())),
            }
        }
        panic!("the Lease watch ended");
    })
    .await
    .expect("no other pod took the Lease within 60 s");
    let last_renew = last_renew.expect("the leader's renewTime");
    eprintln!(
        "figure: leader pod deleted to {successor} leading in {:.1} s, {:.1} s after the leader's last renewal (Lease duration {} s)",
        acquired.duration_since(deleted_at).as_secs_f64(),
        acquired.duration_since(last_renew).as_secs_f64(),
        duration.as_secs()
    );
    // SIGTERM made the leader give the Lease up: the Lease stood empty while the
    // leader's term still ran (a successor breaking an expired Lease empties it too, but
    // only after the term).
    let released_at = released_at.expect("the Lease never stood empty");
    assert!(
        released_at < last_renew + duration,
        "the Lease was emptied only at {released_at}, after the term of the renewal at {last_renew}: the leader did not release it on SIGTERM"
    );
    // Taken over when the old term ended at the latest (1 s for the successor's
    // read-then-write).
    assert!(
        acquired <= last_renew + duration + SignedDuration::from_secs(1),
        "taken over only at {acquired}, the Lease was last renewed at {last_renew}"
    );
    // No reconcile lost: the object applied while the leader went away is Ready.
    policy_ready(&ns.name, "during").await;
    // And a replacement pod came up as the new standby.
    ready_pods(2).await;
    delete_objects(&ns.name);
}
