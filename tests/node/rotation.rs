//! `spec.rotation.restartWorkloads` on a real node: a rotation rolls the Deployment,
//! StatefulSet and DaemonSet that read the key's Secret, the object stays in
//! `RestartingWorkloads` while their controllers and kubelet replace the pods, and the
//! previous key's grace period starts only once every rollout has completed.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use iamwright::api::{IamUserAccessKey, RotationPhase};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::harness::*;
use crate::release::*;

/// Long enough that the rollout is seen running: the new pod counts as available
/// only this long after it is Ready.
const MIN_READY_SECONDS: i64 = 10;

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn template_key(d: &Deployment) -> Option<String> {
    key_of(&d.spec.as_ref()?.template)
}

fn key_of(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Option<String> {
    t.metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("iamwright.dev/access-key-id")
        .cloned()
}

/// When the pod labelled `app=<app>` running `key` became Ready (kubelet's condition).
async fn pod_ready_at(ns: &str, app: &str, key: &str) -> Option<DateTime<Utc>> {
    let pods: Api<Pod> = Api::namespaced(kube().await, ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .ok()?;
    list.items.iter().find_map(|p| {
        let annotated = p
            .metadata
            .annotations
            .as_ref()?
            .get("iamwright.dev/access-key-id")?;
        if annotated != key {
            return None;
        }
        let c = p
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "True")?;
        let t = c.last_transition_time.as_ref()?.0;
        DateTime::from_timestamp(t.as_second(), 0)
    })
}

/// The rollout is complete, read straight from the Deployment's status (the fields
/// `kubectl rollout status` reads).
fn rolled_out(d: &Deployment) -> bool {
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.replicas == Some(1)
        && s.updated_replicas == Some(1)
        && s.available_replicas == Some(1)
}

/// A StatefulSet's rollout is complete (the fields `kubectl rollout status` reads).
fn statefulset_rolled_out(s: &StatefulSet) -> bool {
    let st = s.status.clone().unwrap_or_default();
    st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0)
        && st.updated_replicas == Some(1)
        && st.available_replicas == Some(1)
        && st.current_revision.is_some()
        && st.current_revision == st.update_revision
}

/// A DaemonSet's rollout is complete on the one node.
fn daemonset_rolled_out(d: &DaemonSet) -> bool {
    let st = d.status.clone().unwrap_or_default();
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.desired_number_scheduled == 1
        && st.updated_number_scheduled == Some(1)
        && st.number_available == Some(1)
}

/// The chart installed with the RBAC that restartWorkloads needs, its pod Ready; the
/// fault proxy (the pod's way to moto) and the release live as long as the pair.
async fn install_with_restarts() -> (FaultProxy, Release) {
    let proxy = FaultProxy::start_on("0.0.0.0").await;
    let mut values = base_values(&proxy);
    values.push("rbac.restartWorkloads=true".into());
    let release = Release::install(&values);
    ready_pods(1).await;
    (proxy, release)
}

/// The IamUserAccessKey `app` (Secret `app-key`) restarting the workloads that read
/// it; returns its first key once Ready.
async fn key_restarting_workloads(ns: &str, user: &str) -> String {
    apply(
        ns,
        &json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
            "metadata": {"name": "app"},
            "spec": {"userName": user, "secretName": "app-key",
                "rotation": {"every": "720h", "restartWorkloads": true}}})
        .to_string(),
    );
    wait_ready(ns, "iamuseraccesskey/app");
    eventually(Duration::from_secs(60), "the first key", || async {
        get::<IamUserAccessKey>(ns, "app")
            .await?
            .status?
            .access_key_id
    })
    .await
}

/// Rotate `app` now, as a user would after a leak.
fn rotate_now(ns: &str) {
    let (ok, out, err) = kubectl(
        &[
            "annotate",
            "iamkey",
            "app",
            "-n",
            ns,
            "iamwright.dev/rotate=now",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
}

#[tokio::test]
async fn the_grace_period_starts_when_the_rollout_to_the_new_key_completes() {
    let (_proxy, _release) = install_with_restarts().await;

    let ns = objects_namespace("rotation");
    let user = format!("{}-app", ns.name);
    apply(
        &ns.name,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "consumer"},
            "spec": {"replicas": 1, "minReadySeconds": MIN_READY_SECONDS,
                "selector": {"matchLabels": {"app": "consumer"}},
                "template": {"metadata": {"labels": {"app": "consumer"}},
                    "spec": {"containers": [{"name": "app", "image": "localhost/pause:iamwright",
                        "imagePullPolicy": "Never",
                        "env": [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef":
                            {"name": "app-key", "key": "AWS_ACCESS_KEY_ID"}}}]}]}}}})
        .to_string(),
    );
    let first = key_restarting_workloads(&ns.name, &user).await;
    // The first key rolls the Deployment too (its pods wait for the Secret meanwhile).
    eventually(
        Duration::from_secs(120),
        "the Deployment rolled out to the first key",
        || async {
            let d: Deployment = get(&ns.name, "consumer").await?;
            (template_key(&d).as_deref() == Some(first.as_str()) && rolled_out(&d)).then_some(())
        },
    )
    .await;

    let asked = Utc::now();
    let started = Instant::now();
    rotate_now(&ns.name);

    // Watch the object and the Deployment side by side until the phase is Grace.
    let seen_restarting_while_rolling = std::cell::Cell::new(false);
    let (k, d_at_grace) = eventually(Duration::from_secs(120), "rotationPhase Grace", || {
        let seen = &seen_restarting_while_rolling;
        let ns = &ns.name;
        let first = &first;
        async move {
            let k: IamUserAccessKey = get(ns, "app").await?;
            let d: Deployment = get(ns, "consumer").await?;
            let st = k.status.clone()?;
            let second = st.access_key_id.clone().filter(|id| id != first)?;
            if st.rotation_phase == Some(RotationPhase::RestartingWorkloads)
                && template_key(&d).as_deref() == Some(second.as_str())
                && !rolled_out(&d)
            {
                seen.set(true);
            }
            (st.rotation_phase == Some(RotationPhase::Grace)).then_some((k, d))
        }
    })
    .await;
    let to_grace = started.elapsed();
    let st = k.status.clone().unwrap();
    let second = st.access_key_id.clone().unwrap();
    assert_ne!(second, first);
    assert!(
        seen_restarting_while_rolling.get(),
        "rotationPhase RestartingWorkloads was never seen while the Deployment rolled"
    );
    // When Grace is first seen, the Deployment runs the new key, rolled out.
    assert_eq!(template_key(&d_at_grace).as_deref(), Some(second.as_str()));
    assert!(
        rolled_out(&d_at_grace),
        "Grace before the rollout completed: {:?}",
        d_at_grace.status
    );
    // And by the timestamps: the wait began at the delivery, after the request; the
    // grace period began no earlier than the new pod became available (Ready, then
    // minReadySeconds; the status has whole seconds).
    let awaited = time(
        st.rollouts_awaited_since
            .as_deref()
            .expect("rolloutsAwaitedSince"),
    );
    let grace = time(st.grace_started_at.as_deref().expect("graceStartedAt"));
    let ready = pod_ready_at(&ns.name, "consumer", &second)
        .await
        .expect("the new pod's Ready time");
    assert!(
        awaited >= asked - chrono::Duration::seconds(1),
        "{awaited} < {asked}"
    );
    assert!(
        grace >= ready + chrono::Duration::seconds(MIN_READY_SECONDS - 1),
        "grace started at {grace}, the new pod was Ready at {ready} (+{MIN_READY_SECONDS}s to be available)"
    );
    assert!(st.workloads_not_rolled_out.is_empty(), "{st:?}");
    // The previous key stays Active for the grace period, counted from its start.
    assert_eq!(
        st.previous_key_status,
        Some(iamwright::api::KeyStatus::Active)
    );
    let next = time(st.next_rotation_at.as_deref().expect("nextRotationAt"));
    assert_eq!(next, grace + chrono::Duration::hours(1), "{st:?}");
    let events = events_for(&ns.name, "app").await;
    for reason in ["WorkloadsRestarted", "WorkloadsRolledOut"] {
        assert!(
            events
                .iter()
                .any(|(r, n)| r == reason && n.contains(&second)),
            "no {reason} for {second}: {events:?}"
        );
    }
    println!(
        "figures: rotate requested -> Grace {:.1}s; new pod Ready at +{:.1}s, rollouts awaited from +{:.1}s, grace from +{:.1}s",
        to_grace.as_secs_f64(),
        (ready - asked).num_milliseconds() as f64 / 1000.0,
        (awaited - asked).num_milliseconds() as f64 / 1000.0,
        (grace - asked).num_milliseconds() as f64 / 1000.0,
    );
    delete_objects(&ns.name);
}

/// The other two workload kinds, reading the Secret the other ways: a StatefulSet
/// through `envFrom`, a DaemonSet through a Secret volume. Both roll to the new key,
/// and the grace period waits for the later of the two.
#[tokio::test]
async fn statefulsets_and_daemonsets_roll_before_the_grace_period() {
    let (_proxy, _release) = install_with_restarts().await;

    let ns = objects_namespace("rotation-kinds");
    let user = format!("{}-app", ns.name);
    let container = json!({"name": "app", "image": "localhost/pause:iamwright",
        "imagePullPolicy": "Never"});
    let mut env_from = container.clone();
    env_from["envFrom"] = json!([{"secretRef": {"name": "app-key"}}]);
    let mut mounted = container.clone();
    mounted["volumeMounts"] = json!([{"name": "aws", "mountPath": "/aws", "readOnly": true}]);
    apply(
        &ns.name,
        &json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "store"},
            "spec": {"replicas": 1, "serviceName": "store", "minReadySeconds": 5,
                "selector": {"matchLabels": {"app": "store"}},
                "template": {"metadata": {"labels": {"app": "store"}},
                    "spec": {"containers": [env_from]}}}})
        .to_string(),
    );
    apply(
        &ns.name,
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"minReadySeconds": 5, "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [mounted],
                        "volumes": [{"name": "aws", "secret": {"secretName": "app-key"}}]}}}})
        .to_string(),
    );
    let first = key_restarting_workloads(&ns.name, &user).await;
    let rolled_to = |key: String| {
        let ns = ns.name.clone();
        async move {
            let s: StatefulSet = get(&ns, "store").await?;
            let d: DaemonSet = get(&ns, "agent").await?;
            let s_key = key_of(&s.spec.as_ref()?.template);
            let d_key = key_of(&d.spec.as_ref()?.template);
            Some((
                s_key.as_deref() == Some(key.as_str()) && statefulset_rolled_out(&s),
                d_key.as_deref() == Some(key.as_str()) && daemonset_rolled_out(&d),
            ))
        }
    };
    eventually(
        Duration::from_secs(120),
        "both rolled out to the first key",
        || async { (rolled_to(first.clone()).await? == (true, true)).then_some(()) },
    )
    .await;

    rotate_now(&ns.name);
    let (st, at_grace) = eventually(Duration::from_secs(120), "rotationPhase Grace", || {
        let first = first.clone();
        let ns = ns.name.clone();
        let rolled_to = &rolled_to;
        async move {
            let st = get::<IamUserAccessKey>(&ns, "app").await?.status?;
            let second = st.access_key_id.clone().filter(|id| *id != first)?;
            if st.rotation_phase != Some(RotationPhase::Grace) {
                return None;
            }
            let at_grace = rolled_to(second).await;
            Some((st, at_grace))
        }
    })
    .await;
    let second = st.access_key_id.clone().unwrap();
    assert_eq!(
        at_grace,
        Some((true, true)),
        "when Grace was seen, not both workloads ran the new key, rolled out"
    );
    let grace = time(st.grace_started_at.as_deref().expect("graceStartedAt"));
    for app in ["store", "agent"] {
        let ready = pod_ready_at(&ns.name, app, &second)
            .await
            .unwrap_or_else(|| panic!("the new {app} pod's Ready time"));
        assert!(
            grace >= ready + chrono::Duration::seconds(5 - 1),
            "grace started at {grace}, the new {app} pod was Ready at {ready} (+5s to be available)"
        );
    }
    assert!(st.workloads_not_rolled_out.is_empty(), "{st:?}");
    delete_objects(&ns.name);
}
