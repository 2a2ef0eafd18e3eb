//! References between objects: `policyRefs` resolved to ARNs (waiting until each
//! IamPolicy is Ready), and the watch mapping that re-triggers referrers when a
//! referenced policy changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::reconciler::{Guarded, Managed};
use super::{Awaited, Error};
use crate::api::{IamGroup, IamPolicy, IamRole, LocalObjectRef};

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
    let mut arns = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let state = index.resolve(client, namespace, &r.name).await?;
        arns.push(state.ready_arn(&format!("{field}[{i}]: IamPolicy {:?}", r.name))?);
    }
    Ok(arns)
}

/// What a reference needs of the object it names.
#[derive(Debug, Clone, PartialEq)]
pub enum RefState {
    Missing,
    NotReady,
    /// Ready for its current generation, with its ARN.
    Ready(String),
}

impl RefState {
    /// The ARN of a Ready object; else `DependencyNotReady`, its message `what` (the
    /// field and the object) followed by why.
    pub fn ready_arn(self, what: &str) -> Result<String, Error> {
        let (awaited, why) = match self {
            RefState::Ready(arn) => return Ok(arn),
            RefState::Missing => (Awaited::Missing, "does not exist"),
            RefState::NotReady => (Awaited::NotReady, "is not Ready yet"),
        };
        Err(Error::Reference {
            awaited,
            message: format!("{what} {why}"),
        })
    }
}

/// A kind other objects reference by name: what such a reference sees of it.
pub trait Referenced: Managed {
    fn ref_state(&self) -> RefState;
}

/// Ready for the current generation, with the ARN the status recorded.
fn ready_arn<K: Managed>(obj: &K, arn: Option<&String>) -> RefState {
    use super::reconciler::StatusFields;
    let ready = obj.status().is_some_and(|st| {
        st.conditions().iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "True"
                && c.observed_generation == obj.meta().generation
        })
    });
    match arn {
        Some(arn) if ready => RefState::Ready(arn.clone()),
        _ => RefState::NotReady,
    }
}

impl Referenced for IamPolicy {
    fn ref_state(&self) -> RefState {
        ready_arn(self, self.status.as_ref().and_then(|s| s.arn.as_ref()))
    }
}

/// A role being deleted is no longer Ready for a binding (its profile would outlive it).
impl Referenced for IamRole {
    fn ref_state(&self) -> RefState {
        if self.metadata.deletion_timestamp.is_some() {
            return RefState::NotReady;
        }
        ready_arn(self, self.status.as_ref().and_then(|s| s.arn.as_ref()))
    }
}

/// A group being deleted is no longer one to join.
impl Referenced for IamGroup {
    fn ref_state(&self) -> RefState {
        if self.metadata.deletion_timestamp.is_some() {
            return RefState::NotReady;
        }
        ready_arn(self, self.status.as_ref().and_then(|s| s.arn.as_ref()))
    }
}

/// The [`RefState`] of every object of kind `K` one controller's watch has seen. It is
/// kept by the same stream that re-triggers the referrers ([`RefIndex::track`]), so a
/// reconcile a referenced object's change starts always finds that change here: no GET
/// per reference, and no window where a separate cache still shows it not Ready. A few
/// bytes per object (names and an ARN), not the objects.
pub struct RefIndex<K>(Arc<RwLock<IndexState>>, std::marker::PhantomData<fn() -> K>);

/// The IamPolicies `policyRefs` name (roles, access keys).
pub type PolicyIndex = RefIndex<IamPolicy>;
/// The IamRoles a binding's `roleRef` names.
pub type RoleIndex = RefIndex<IamRole>;
/// The IamGroups a key's `groupRefs` name.
pub type GroupIndex = RefIndex<IamGroup>;

impl<K> Default for RefIndex<K> {
    fn default() -> Self {
        Self(Default::default(), std::marker::PhantomData)
    }
}

impl<K> Clone for RefIndex<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), std::marker::PhantomData)
    }
}

/// A watch's scope: one namespace, or all (`None`). With several `--watch-namespace`s
/// one index is kept by one watch per namespace, each listing on its own.
type Scope = Option<String>;

#[derive(Default)]
struct IndexState {
    /// The scopes whose watch has listed once: until then a miss there is no answer.
    listed: std::collections::HashSet<Scope>,
    objects: HashMap<(String, String), RefState>,
    /// Per scope, a (re)list in progress: it replaces that scope's objects when done,
    /// so objects deleted while its watch was down go too (until then `objects` gets
    /// every update too). The other scopes' objects stay.
    relisting: HashMap<Scope, HashMap<(String, String), RefState>>,
}

type Key = (String, String);

fn key<K: Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn state<K: Referenced>(obj: &Guarded<K>) -> RefState {
    match &obj.0 {
        Ok(o) => o.ref_state(),
        Err(_) => RefState::NotReady,
    }
}

impl<K: Referenced> RefIndex<K> {
    /// `None` until the watch of the namespace has listed.
    pub fn lookup(&self, namespace: &str, name: &str) -> Option<RefState> {
        let st = self.0.read().expect("index lock");
        let listed = st.listed.contains(&None) || st.listed.contains(&Some(namespace.into()));
        listed.then(|| {
            st.objects
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .unwrap_or(RefState::Missing)
        })
    }

    /// What a reference to `name` in `namespace` sees: from the index once the
    /// namespace's watch has listed, else by GET.
    pub async fn resolve(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<RefState, kube::Error> {
        if let Some(state) = self.lookup(namespace, name) {
            return Ok(state);
        }
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        Ok(api
            .get_opt(name)
            .await?
            .map_or(RefState::Missing, |o| o.ref_state()))
    }

    /// Watch the objects of `scope` (a namespace, or all) into the index: the trigger
    /// stream for the referrers' mapper ([`RefIndex::track`]).
    pub fn watch(
        &self,
        client: &Client,
        scope: Option<&str>,
    ) -> impl Stream<Item = Result<Guarded<K>, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        use kube::runtime::WatchStreamExt;
        let api = super::reconciler::scoped_api::<Guarded<K>>(client, scope);
        let events = watcher::watcher(api, super::watch_config()).default_backoff();
        self.track(scope.map(str::to_string), events)
    }

    /// Keep the index from a watch; yields every object whose state for a reference
    /// changed (and every deleted one), after the index has it, for the referrers'
    /// mapper.
    pub fn track(
        &self,
        scope: Scope,
        events: impl Stream<Item = Result<Event<Guarded<K>>, watcher::Error>> + Send + 'static,
    ) -> impl Stream<Item = Result<Guarded<K>, watcher::Error>> + Send + 'static {
        let index = self.clone();
        events.filter_map(move |event| {
            let out = match event {
                Ok(e) => index.apply(&scope, e).map(Ok),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
    }

    fn apply(&self, scope: &Scope, event: Event<Guarded<K>>) -> Option<Guarded<K>> {
        let mut st = self.0.write().expect("index lock");
        match event {
            Event::Init => {
                st.relisting.insert(scope.clone(), HashMap::new());
                None
            }
            Event::InitApply(o) => {
                let (k, v) = (key(&o), state(&o));
                // Into the live map too: the referrers this event triggers read it.
                if let Some(buffer) = st.relisting.get_mut(scope) {
                    buffer.insert(k.clone(), v.clone());
                }
                let was = st.objects.insert(k, v.clone());
                (was != Some(v)).then_some(o)
            }
            Event::InitDone => {
                if let Some(buffer) = st.relisting.remove(scope) {
                    // This scope's objects are the list's; the other scopes' stay.
                    st.objects
                        .retain(|(ns, _), _| scope.as_ref().is_some_and(|s| s != ns));
                    st.objects.extend(buffer);
                }
                st.listed.insert(scope.clone());
                None
            }
            // Only a change of what a reference sees (missing, not Ready, Ready with an
            // ARN) re-triggers the referrers: a policy's own finalizer and status writes
            // that leave it as it was would start a reconcile of every referring role,
            // which, once Ready, takes an account snapshot in the middle of a converge.
            Event::Apply(o) => {
                let v = state(&o);
                let was = st.objects.insert(key(&o), v.clone());
                (was != Some(v)).then_some(o)
            }
            Event::Delete(o) => {
                st.objects.remove(&key(&o));
                Some(o)
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
                                "observedGeneration": if ready { 2 } else { 1 },
                                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        }))
        .expect("fixture")
    }

    #[test]
    fn index_answers_only_once_listed_and_follows_every_event() {
        let index = PolicyIndex::default();
        let _ = index.apply(&None, Event::Init);
        let _ = index.apply(&None, Event::InitApply(policy("a", true)));
        // Listing: no answer yet (a GET decides), though the entry is kept.
        assert_eq!(index.lookup("team", "a"), None);
        let _ = index.apply(&None, Event::InitDone);
        let arn = "arn:aws:iam::123456789012:policy/a".to_string();
        assert_eq!(index.lookup("team", "a"), Some(RefState::Ready(arn)));
        // A status for an older generation is not Ready; a missing policy is Missing.
        let _ = index.apply(&None, Event::Apply(policy("a", false)));
        assert_eq!(index.lookup("team", "a"), Some(RefState::NotReady));
        assert_eq!(index.lookup("team", "b"), Some(RefState::Missing));
        assert_eq!(index.lookup("other", "a"), Some(RefState::Missing));
    }

    #[test]
    fn a_role_is_ready_for_a_binding_at_its_generation_and_not_while_deleted() {
        let role = |observed: i64, deleting: bool| -> IamRole {
            let mut meta = serde_json::json!({"name": "app", "namespace": "team", "generation": 3});
            if deleting {
                meta["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
                meta["finalizers"] = serde_json::json!(["iamwright.dev/cleanup"]);
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole", "metadata": meta,
                "spec": {"assumeRolePolicy": {"Version": "2012-10-17", "Statement": []}},
                "status": {
                    "arn": "arn:aws:iam::123456789012:role/team-app",
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Synced",
                                    "observedGeneration": observed, "message": "",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                },
            }))
            .expect("fixture")
        };
        let arn = "arn:aws:iam::123456789012:role/team-app".to_string();
        assert_eq!(role(3, false).ref_state(), RefState::Ready(arn));
        assert_eq!(role(2, false).ref_state(), RefState::NotReady);
        assert_eq!(role(3, true).ref_state(), RefState::NotReady);
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
            let _ = index.apply(&None, e);
        }
        // Mid-relist the change is already visible (the event triggers referrers).
        assert_eq!(index.lookup("team", "a"), Some(RefState::NotReady));
        let _ = index.apply(&None, Event::InitDone);
        assert_eq!(index.lookup("team", "gone"), Some(RefState::Missing));
        let _ = index.apply(&None, Event::Delete(policy("a", false)));
        assert_eq!(index.lookup("team", "a"), Some(RefState::Missing));
    }

    #[test]
    fn each_namespace_watch_lists_its_own_policies_and_keeps_the_others() {
        let index = PolicyIndex::default();
        let (team, other) = (Some("team".to_string()), Some("other".to_string()));
        let mut elsewhere = policy("b", true);
        elsewhere.meta_mut().namespace = Some("other".into());
        // Two namespaces' watches list at once, interleaved.
        let _ = index.apply(&team, Event::Init);
        let _ = index.apply(&other, Event::Init);
        let _ = index.apply(&team, Event::InitApply(policy("a", true)));
        let _ = index.apply(&other, Event::InitApply(elsewhere.clone()));
        let _ = index.apply(&team, Event::InitDone);
        assert!(index.lookup("team", "a").is_some());
        assert_eq!(index.lookup("other", "b"), None, "not listed there yet");
        let _ = index.apply(&other, Event::InitDone);
        let ready = |n: &str| RefState::Ready(format!("arn:aws:iam::123456789012:policy/{n}"));
        assert_eq!(index.lookup("team", "a"), Some(ready("a")));
        assert_eq!(index.lookup("other", "b"), Some(ready("b")));
        // One namespace relists without its policy: only that one goes.
        let _ = index.apply(&other, Event::Init);
        let _ = index.apply(&other, Event::InitDone);
        assert_eq!(index.lookup("other", "b"), Some(RefState::Missing));
        assert_eq!(index.lookup("team", "a"), Some(ready("a")));
    }

    #[test]
    fn only_a_change_a_reference_sees_re_triggers_the_referrers() {
        let index = PolicyIndex::default();
        // Whether the event re-triggers the referrers (all namespaces watched).
        let triggers = |e: Event<Guarded<IamPolicy>>| index.apply(&None, e).is_some();
        let _ = triggers(Event::Init);
        assert!(triggers(Event::InitApply(policy("a", false))));
        let _ = triggers(Event::InitDone);
        // The same state again (the policy's finalizer, a status that is still not
        // Ready for its generation): nothing to re-trigger.
        assert!(!triggers(Event::Apply(policy("a", false))));
        assert!(triggers(Event::Apply(policy("a", true))));
        assert!(!triggers(Event::Apply(policy("a", true))));
        // A relist that finds it unchanged re-triggers nothing either; a delete does.
        let _ = triggers(Event::Init);
        assert!(!triggers(Event::InitApply(policy("a", true))));
        let _ = triggers(Event::InitDone);
        assert!(triggers(Event::Delete(policy("a", true))));
    }
}
