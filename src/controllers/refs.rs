//! References between objects: `policyRefs` resolved to ARNs (waiting until each
//! IamPolicy is Ready), and the watch mapping that re-triggers referrers when a
//! referenced policy changes.

use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::Error;
use super::reconciler::Managed;
use crate::api::{IamPolicy, LocalObjectRef};

/// The ARNs of the referenced IamPolicies, in order. A policy that is missing or not
/// Ready for its current generation is `DependencyNotReady`, naming the field.
pub async fn resolve_policy_refs(
    client: &Client,
    namespace: &str,
    field: &str,
    refs: &[LocalObjectRef],
) -> Result<Vec<String>, Error> {
    let api: Api<IamPolicy> = Api::namespaced(client.clone(), namespace);
    let mut arns = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let waiting = |why: String| Error::Waiting {
            reason: "DependencyNotReady",
            message: format!("{field}[{i}]: IamPolicy {:?} {why}", r.name),
        };
        let Some(policy) = api.get_opt(&r.name).await? else {
            return Err(waiting("does not exist".into()));
        };
        let status = policy.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .filter(|c| {
                c.status == "True"
                    && status.and_then(|s| s.observed_generation) == policy.metadata.generation
            });
        match (ready, status.and_then(|s| s.arn.clone())) {
            (Some(_), Some(arn)) => arns.push(arn),
            _ => return Err(waiting("is not Ready yet".into())),
        }
    }
    Ok(arns)
}

/// The objects in `store` whose references (as `refs` lists them) name `policy`.
pub fn referencing<K: Managed>(
    store: &Store<K>,
    policy: &IamPolicy,
    refs: impl Fn(&K) -> &[LocalObjectRef],
) -> Vec<ObjectRef<K>> {
    let ns = policy.namespace();
    let name = policy.name_any();
    store
        .state()
        .iter()
        .filter(|o| o.namespace() == ns && refs(o).iter().any(|r| r.name == name))
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}
