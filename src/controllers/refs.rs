//! References between objects: `policyRefs` resolved to ARNs (waiting until each
//! IamPolicy is Ready), and the watch mapping that re-triggers referrers when a
//! referenced policy changes.

use crate::reason::Reason;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::Error;
use super::reconciler::{Guarded, Managed};
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
            reason: Reason::DependencyNotReady,
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

/// The objects in `store` whose references (as `refs` lists them) name `target`, an
/// object of the same namespace (only its name is read, so a target that does not
/// deserialize still re-triggers its referrers).
pub fn referencing<K: Managed, T: Resource>(
    store: &Store<Guarded<K>>,
    target: &T,
    refs: impl Fn(&K) -> Vec<&str>,
) -> Vec<ObjectRef<Guarded<K>>> {
    let ns = target.namespace();
    let name = target.name_any();
    store
        .state()
        .iter()
        .filter(|g| match &g.0 {
            Ok(o) => o.namespace() == ns && refs(o).contains(&name.as_str()),
            Err(_) => false,
        })
        .map(|g| ObjectRef::from_obj(&**g))
        .collect()
}

/// The names in a `policyRefs` list.
pub fn names(refs: &[LocalObjectRef]) -> Vec<&str> {
    refs.iter().map(|r| r.name.as_str()).collect()
}

/// The ARNs of the namespace's own IamPolicies (from their status), which a scope
/// always lets the namespace attach. Only read when a scope restricts attachments.
pub async fn own_policy_arns(
    client: &Client,
    namespace: &str,
    gov: &crate::trust::Governance,
) -> Result<Vec<String>, Error> {
    if gov.managed_policy_arns.is_none() {
        return Ok(vec![]);
    }
    let api: Api<IamPolicy> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.status.and_then(|s| s.arn))
        .collect())
}
