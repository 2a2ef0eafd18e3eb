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

async fn roll<K>(
    client: &Client,
    ns: &str,
    secret: &str,
    key_id: &str,
    template: fn(&K) -> Option<&PodTemplateSpec>,
    rolled: &mut Vec<String>,
) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION: key_id}}}}});
    for w in api.list(&ListParams::default()).await? {
        if stale(template(&w), secret, key_id) {
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
    roll::<Deployment>(
        client,
        ns,
        secret,
        key_id,
        |d| d.spec.as_ref().map(|s| &s.template),
        &mut rolled,
    )
    .await?;
    roll::<StatefulSet>(
        client,
        ns,
        secret,
        key_id,
        |d| d.spec.as_ref().map(|s| &s.template),
        &mut rolled,
    )
    .await?;
    roll::<DaemonSet>(
        client,
        ns,
        secret,
        key_id,
        |d| d.spec.as_ref().map(|s| &s.template),
        &mut rolled,
    )
    .await?;
    Ok(rolled)
}

#[cfg(test)]
mod tests {
    use super::*;

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
