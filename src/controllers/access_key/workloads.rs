//! `spec.rotation.restartWorkloads`: after a new key is delivered, the Deployments,
//! StatefulSets and DaemonSets of the namespace whose pod template reads the Secret
//! get the pod-template annotation `iamwright.dev/access-key-id: <new key id>`, so
//! they roll and their pods read the new key (env vars and SDKs that read the
//! credentials file once never see it otherwise). Idempotent: a template already
//! annotated with the key is not patched again.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::status::MANAGER;

/// The pod-template annotation that names the key a workload was rolled for.
pub const ANNOTATION: &str = "iamwright.dev/access-key-id";

/// Whether a pod reads the Secret `name`: an env var, envFrom, a volume or a
/// projected volume source, in any (init) container.
pub fn reads_secret(spec: &PodSpec, name: &str) -> bool {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let env = c.env.iter().flatten().any(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == name)
        });
        let env_from = c
            .env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == name));
        if env || env_from {
            return true;
        }
    }
    spec.volumes.iter().flatten().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(name))
            || v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|r| r.name == name))
            })
    })
}

/// Whether the template reads the Secret and is not yet annotated with `key_id`.
fn stale(t: Option<&PodTemplateSpec>, secret: &str, key_id: &str) -> bool {
    let Some(t) = t else { return false };
    let annotated = t
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(ANNOTATION))
        .is_some_and(|v| v == key_id);
    !annotated && t.spec.as_ref().is_some_and(|s| reads_secret(s, secret))
}

/// A workload kind whose pod template may read the Secret.
trait Workload:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Its rollout is complete, by the rule of `kubectl rollout status`.
    fn rolled_out(&self) -> bool;
}

impl Workload for Deployment {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn rolled_out(&self) -> bool {
        deployment_rolled_out(self)
    }
}

impl Workload for StatefulSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn rolled_out(&self) -> bool {
        statefulset_rolled_out(self)
    }
}

impl Workload for DaemonSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn rolled_out(&self) -> bool {
        daemonset_rolled_out(self)
    }
}

async fn roll<K: Workload>(
    client: &Client,
    ns: &str,
    secret: &str,
    key_id: &str,
    rolled: &mut Vec<String>,
) -> kube::Result<()> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION: key_id}}}}});
    for w in api.list(&ListParams::default()).await? {
        if stale(w.template(), secret, key_id) {
            api.patch(
                &w.name_any(),
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await?;
            rolled.push(format!("{}/{}", K::kind(&()), w.name_any()));
        }
    }
    Ok(())
}

/// Annotate every workload of `ns` that reads `secret` with `key_id`; returns the
/// workloads patched (`Kind/name`).
pub async fn restart(
    client: &Client,
    ns: &str,
    secret: &str,
    key_id: &str,
) -> kube::Result<Vec<String>> {
    let mut rolled = vec![];
    roll::<Deployment>(client, ns, secret, key_id, &mut rolled).await?;
    roll::<StatefulSet>(client, ns, secret, key_id, &mut rolled).await?;
    roll::<DaemonSet>(client, ns, secret, key_id, &mut rolled).await?;
    Ok(rolled)
}

/// A Deployment's rollout is complete, by the rule of `kubectl rollout status`: the
/// controller has seen the spec, and every replica is updated and available, with no
/// old replica left.
pub fn deployment_rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else { return false };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) >= want
        && s.replicas.unwrap_or(0) <= s.updated_replicas.unwrap_or(0)
        && s.available_replicas.unwrap_or(0) >= s.updated_replicas.unwrap_or(0)
}

/// A StatefulSet's rollout is complete (`kubectl rollout status`, RollingUpdate):
/// seen, every replica updated and ready, and the current revision is the update.
pub fn statefulset_rolled_out(d: &StatefulSet) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else { return false };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) >= want
        && s.ready_replicas.unwrap_or(0) >= want
        && (s.update_revision.is_none() || s.update_revision == s.current_revision)
}

/// A DaemonSet's rollout is complete (`kubectl rollout status`): seen, and every
/// scheduled pod updated and available.
pub fn daemonset_rolled_out(d: &DaemonSet) -> bool {
    let Some(s) = &d.status else { return false };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_number_scheduled.unwrap_or(0) >= s.desired_number_scheduled
        && s.number_available.unwrap_or(0) >= s.desired_number_scheduled
}

async fn pending<K: Workload>(
    client: &Client,
    ns: &str,
    secret: &str,
    key_id: &str,
    out: &mut Vec<String>,
) -> kube::Result<()> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for w in api.list(&ListParams::default()).await? {
        let reads = w
            .template()
            .and_then(|t| t.spec.as_ref())
            .is_some_and(|s| reads_secret(s, secret));
        if reads && (stale(w.template(), secret, key_id) || !w.rolled_out()) {
            out.push(format!("{}/{}", K::kind(&()), w.name_any()));
        }
    }
    Ok(())
}

/// The workloads of `ns` that read `secret` and have not completed their rollout to
/// a template annotated with `key_id` (`Kind/name`). Kubernetes reads only.
pub async fn not_rolled_out(
    client: &Client,
    ns: &str,
    secret: &str,
    key_id: &str,
) -> kube::Result<Vec<String>> {
    let mut out = vec![];
    pending::<Deployment>(client, ns, secret, key_id, &mut out).await?;
    pending::<StatefulSet>(client, ns, secret, key_id, &mut out).await?;
    pending::<DaemonSet>(client, ns, secret, key_id, &mut out).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts_complete_by_the_rule_of_kubectl_rollout_status() {
        let d = |generation: i64, status: serde_json::Value| -> Deployment {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "d", "generation": generation},
                "spec": {"replicas": 2, "selector": {}, "template": {}},
                "status": status}))
            .unwrap()
        };
        let done = serde_json::json!({"observedGeneration": 2, "replicas": 2,
            "updatedReplicas": 2, "availableReplicas": 2});
        assert!(deployment_rolled_out(&d(2, done.clone())));
        // Not yet seen by the deployment controller.
        assert!(!deployment_rolled_out(&d(3, done)));
        // An old replica still there (surge), or a new one not available yet.
        assert!(!deployment_rolled_out(&d(
            2,
            serde_json::json!({"observedGeneration": 2,
            "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3})
        )));
        assert!(!deployment_rolled_out(&d(
            2,
            serde_json::json!({"observedGeneration": 2,
            "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1})
        )));
        assert!(!deployment_rolled_out(&d(
            2,
            serde_json::json!({"observedGeneration": 2,
            "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2})
        )));

        let s = |status: serde_json::Value| -> StatefulSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "s", "generation": 1},
                "spec": {"replicas": 1, "selector": {}, "serviceName": "s", "template": {}},
                "status": status}))
            .unwrap()
        };
        assert!(statefulset_rolled_out(&s(
            serde_json::json!({"observedGeneration": 1,
            "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "currentRevision": "b", "updateRevision": "b"})
        )));
        assert!(!statefulset_rolled_out(&s(
            serde_json::json!({"observedGeneration": 1,
            "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "currentRevision": "a", "updateRevision": "b"})
        )));

        let ds = |status: serde_json::Value| -> DaemonSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "x", "generation": 1},
                "spec": {"selector": {}, "template": {}}, "status": status}))
            .unwrap()
        };
        let ds_status = |updated: i32, available: i32| {
            serde_json::json!({"observedGeneration": 1,
            "currentNumberScheduled": 2, "desiredNumberScheduled": 2, "numberMisscheduled": 0,
            "numberReady": 2, "updatedNumberScheduled": updated, "numberAvailable": available})
        };
        assert!(daemonset_rolled_out(&ds(ds_status(2, 2))));
        assert!(!daemonset_rolled_out(&ds(ds_status(1, 2))));
        assert!(!daemonset_rolled_out(&ds(ds_status(2, 1))));
    }

    fn pod(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_way_a_pod_reads_a_secret_is_found() {
        let c = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"name": "app", "image": "x"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let env = pod(
            serde_json::json!({"containers": [c(serde_json::json!({"env": [{"name": "K",
            "valueFrom": {"secretKeyRef": {"name": "ci", "key": "AWS_ACCESS_KEY_ID"}}}]}))]}),
        );
        let env_from = pod(serde_json::json!({"containers": [c(serde_json::json!({}))],
            "initContainers": [c(serde_json::json!({"envFrom": [{"secretRef": {"name": "ci"}}]}))]}));
        let volume = pod(serde_json::json!({"containers": [c(serde_json::json!({}))],
            "volumes": [{"name": "v", "secret": {"secretName": "ci"}}]}));
        let projected = pod(serde_json::json!({"containers": [c(serde_json::json!({}))],
            "volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "ci"}}]}}]}));
        for spec in [&env, &env_from, &volume, &projected] {
            assert!(reads_secret(spec, "ci"), "{spec:?}");
            assert!(!reads_secret(spec, "other"), "{spec:?}");
        }
        let none = pod(
            serde_json::json!({"containers": [c(serde_json::json!({"envFrom": [{"configMapRef": {"name": "ci"}}]}))]}),
        );
        assert!(!reads_secret(&none, "ci"));
    }
}
