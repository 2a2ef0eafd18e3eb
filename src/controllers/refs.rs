//! References between objects: `policyRefs` resolved to ARNs (waiting until each
//! IamPolicy is Ready), and the watch mapping that re-triggers referrers when a
//! referenced policy changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};

use crate::reason::Reason;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::Error;
use super::reconciler::{Guarded, Managed};
use crate::api::{IamPolicy, LocalObjectRef};

/// The ARNs of the referenced IamPolicies, in order. A policy that is missing or not
/// Ready for its current generation is `DependencyNotReady`, naming the field. Read
/// from `index` (the controller's policy watch) once it has listed, else by GET.
pub async fn resolve_policy_refs(
    index: &PolicyIndex,
    client: &Client,
    namespace: &str,
    field: &str,
    refs: &[LocalObjectRef],
) -> Result<Vec<String>, Error> {
    let api: Api<IamPolicy> = Api::namespaced(client.clone(), namespace);
    let mut arns = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let waiting = |why: &str| Error::Waiting {
            reason: Reason::DependencyNotReady,
            message: format!("{field}[{i}]: IamPolicy {:?} {why}", r.name),
        };
        let state = match index.lookup(namespace, &r.name) {
            Some(state) => state,
            None => match api.get_opt(&r.name).await? {
                Some(policy) => PolicyState::of(&policy),
                None => PolicyState::Missing,
            },
        };
        match state {
            PolicyState::Ready(arn) => arns.push(arn),
            PolicyState::Missing => return Err(waiting(DOES_NOT_EXIST)),
            PolicyState::NotReady => return Err(waiting(NOT_READY_YET)),
        }
    }
    Ok(arns)
}

/// How a reference wait ends its message: the object named exists and is not Ready.
pub const NOT_READY_YET: &str = "is not Ready yet";
/// How a reference wait ends its message: no object of that name in the namespace.
pub const DOES_NOT_EXIST: &str = "does not exist";

/// Waiting for a referenced IamPolicy that exists and is not Ready yet: progress, not
/// a problem worth a warning event (a missing one is).
pub fn is_dependency_in_progress(e: &Error) -> bool {
    matches!(e, Error::Waiting { reason: Reason::DependencyNotReady, message }
        if message.ends_with(NOT_READY_YET))
}

/// Waiting for an object of the namespace that a reference names (a `policyRefs`
/// IamPolicy, a `roleRef` IamRole): missing, or not Ready yet.
pub fn is_reference_wait(e: &Error) -> bool {
    matches!(e, Error::Waiting { reason: Reason::DependencyNotReady, message }
        if message.ends_with(NOT_READY_YET) || message.ends_with(DOES_NOT_EXIST))
}

/// What a `policyRef` needs of an IamPolicy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyState {
    Missing,
    NotReady,
    /// Ready for its current generation, with its ARN.
    Ready(String),
}

impl PolicyState {
    fn of(policy: &IamPolicy) -> Self {
        let status = policy.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| {
                c.status == "True"
                    && status.and_then(|s| s.observed_generation) == policy.metadata.generation
            });
        match status.and_then(|s| s.arn.clone()) {
            Some(arn) if ready => Self::Ready(arn),
            _ => Self::NotReady,
        }
    }
}

/// The [`PolicyState`] of every IamPolicy one controller's policy watch has seen. It is
/// kept by the same stream that re-triggers the referrers ([`PolicyIndex::track`]), so
/// a reconcile a policy's change starts always finds that change here: no GET per
/// reference, and no window where a separate cache still shows the policy not Ready.
/// A few bytes per policy (names and an ARN), not the objects.
#[derive(Default, Clone)]
pub struct PolicyIndex(Arc<RwLock<IndexState>>);

#[derive(Default)]
struct IndexState {
    /// The watch has listed once: until then a miss is not an answer.
    listed: bool,
    policies: HashMap<(String, String), PolicyState>,
    /// A (re)list in progress: it replaces `policies` when done, so policies deleted
    /// while the watch was down go too (until then `policies` gets every update too).
    relisting: Option<HashMap<(String, String), PolicyState>>,
}

type Key = (String, String);

fn key(policy: &Guarded<IamPolicy>) -> Key {
    (policy.namespace().unwrap_or_default(), policy.name_any())
}

fn state(policy: &Guarded<IamPolicy>) -> PolicyState {
    match &policy.0 {
        Ok(p) => PolicyState::of(p),
        Err(_) => PolicyState::NotReady,
    }
}

impl PolicyIndex {
    /// `None` until the watch has listed.
    pub fn lookup(&self, namespace: &str, name: &str) -> Option<PolicyState> {
        let st = self.0.read().expect("policy index lock");
        st.listed.then(|| {
            st.policies
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .unwrap_or(PolicyState::Missing)
        })
    }

    /// Watch the IamPolicies of `api` into the index: the trigger stream for the
    /// referrers' mapper ([`PolicyIndex::track`]).
    pub fn watch(
        &self,
        api: Api<Guarded<IamPolicy>>,
    ) -> impl Stream<Item = Result<Guarded<IamPolicy>, watcher::Error>> + Send + 'static {
        use kube::runtime::WatchStreamExt;
        self.track(watcher::watcher(api, super::watch_config()).default_backoff())
    }

    /// Keep the index from a policy watch; yields every policy whose state for a
    /// reference changed (and every deleted one), after the index has it, for the
    /// referrers' mapper.
    pub fn track(
        &self,
        events: impl Stream<Item = Result<Event<Guarded<IamPolicy>>, watcher::Error>> + Send + 'static,
    ) -> impl Stream<Item = Result<Guarded<IamPolicy>, watcher::Error>> + Send + 'static {
        let index = self.clone();
        events.filter_map(move |event| {
            let out = match event {
                Ok(e) => index.apply(e).map(Ok),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
    }

    fn apply(&self, event: Event<Guarded<IamPolicy>>) -> Option<Guarded<IamPolicy>> {
        let mut st = self.0.write().expect("policy index lock");
        match event {
            Event::Init => {
                st.relisting = Some(HashMap::new());
                None
            }
            Event::InitApply(p) => {
                let (k, v) = (key(&p), state(&p));
                // Into the live map too: the referrers this event triggers read it.
                if let Some(buffer) = st.relisting.as_mut() {
                    buffer.insert(k.clone(), v.clone());
                }
                let was = st.policies.insert(k, v.clone());
                (was != Some(v)).then_some(p)
            }
            Event::InitDone => {
                if let Some(buffer) = st.relisting.take() {
                    st.policies = buffer;
                }
                st.listed = true;
                None
            }
            // Only a change of what a reference sees (missing, not Ready, Ready with an
            // ARN) re-triggers the referrers: a policy's own finalizer and status writes
            // that leave it as it was would start a reconcile of every referring role,
            // which, once Ready, takes an account snapshot in the middle of a converge.
            Event::Apply(p) => {
                let v = state(&p);
                let was = st.policies.insert(key(&p), v.clone());
                (was != Some(v)).then_some(p)
            }
            Event::Delete(p) => {
                st.policies.remove(&key(&p));
                Some(p)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, ready: bool) -> Guarded<IamPolicy> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
            "metadata": {"name": name, "namespace": "team", "generation": 2},
            "spec": {"document": {"Version": "2012-10-17", "Statement": []}},
            "status": {
                "observedGeneration": if ready { 2 } else { 1 },
                "arn": format!("arn:aws:iam::123456789012:policy/{name}"),
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced",
                                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        }))
        .expect("fixture")
    }

    #[test]
    fn index_answers_only_once_listed_and_follows_every_event() {
        let index = PolicyIndex::default();
        let _ = index.apply(Event::Init);
        let _ = index.apply(Event::InitApply(policy("a", true)));
        // Listing: no answer yet (a GET decides), though the entry is kept.
        assert_eq!(index.lookup("team", "a"), None);
        let _ = index.apply(Event::InitDone);
        let arn = "arn:aws:iam::123456789012:policy/a".to_string();
        assert_eq!(index.lookup("team", "a"), Some(PolicyState::Ready(arn)));
        // A status for an older generation is not Ready; a missing policy is Missing.
        let _ = index.apply(Event::Apply(policy("a", false)));
        assert_eq!(index.lookup("team", "a"), Some(PolicyState::NotReady));
        assert_eq!(index.lookup("team", "b"), Some(PolicyState::Missing));
        assert_eq!(index.lookup("other", "a"), Some(PolicyState::Missing));
    }

    #[test]
    fn relist_drops_policies_deleted_while_the_watch_was_down() {
        let index = PolicyIndex::default();
        for e in [
            Event::Init,
            Event::InitApply(policy("a", true)),
            Event::InitApply(policy("gone", true)),
            Event::InitDone,
            // The watch restarts; "gone" was deleted meanwhile, "a" changed.
            Event::Init,
            Event::InitApply(policy("a", false)),
        ] {
            let _ = index.apply(e);
        }
        // Mid-relist the change is already visible (the event triggers referrers).
        assert_eq!(index.lookup("team", "a"), Some(PolicyState::NotReady));
        let _ = index.apply(Event::InitDone);
        assert_eq!(index.lookup("team", "gone"), Some(PolicyState::Missing));
        let _ = index.apply(Event::Delete(policy("a", false)));
        assert_eq!(index.lookup("team", "a"), Some(PolicyState::Missing));
    }

    #[test]
    fn only_a_change_a_reference_sees_re_triggers_the_referrers() {
        let index = PolicyIndex::default();
        let _ = index.apply(Event::Init);
        assert!(index.apply(Event::InitApply(policy("a", false))).is_some());
        let _ = index.apply(Event::InitDone);
        // The same state again (the policy's finalizer, a status that is still not
        // Ready for its generation): nothing to re-trigger.
        assert!(index.apply(Event::Apply(policy("a", false))).is_none());
        assert!(index.apply(Event::Apply(policy("a", true))).is_some());
        assert!(index.apply(Event::Apply(policy("a", true))).is_none());
        // A relist that finds it unchanged re-triggers nothing either; a delete does.
        let _ = index.apply(Event::Init);
        assert!(index.apply(Event::InitApply(policy("a", true))).is_none());
        let _ = index.apply(Event::InitDone);
        assert!(index.apply(Event::Delete(policy("a", true))).is_some());
    }
}
