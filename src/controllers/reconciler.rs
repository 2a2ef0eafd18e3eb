//! The reconcile shape every kind shares: a hold while an object backs off, finalizer
//! handling, one status report per reconcile (conditions + identity fields, written
//! only when changed), one warning event per new problem, per-object backoff and the
//! reconcile metrics from the real outcome.
//!
//! The watch itself is made robust here too: objects that do not deserialize are
//! reported on the object (not fatal to the watch), and the object's own status writes
//! do not trigger another reconcile (a generation/finalizer/deletion predicate).

use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::{PredicateConfig, WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, FINALIZER, key_of};
use crate::api::Condition;
use crate::status::{self, Outcome};

/// A kind the operator manages.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    /// Whether the kind's apply writes its status itself, on a fresh copy read for it
    /// (IamUserAccessKey: the key it is about to create, before creating it). Its
    /// reconciles never work on a status remembered by [`super::written`], which would
    /// miss those writes.
    const WRITES_STATUS_IN_APPLY: bool;
    type Status: StatusFields;
    fn status(&self) -> Option<&Self::Status>;
    fn status_mut(&mut self) -> &mut Option<Self::Status>;
}

/// The status fields every kind has.
pub trait StatusFields: Default + Clone + PartialEq + Serialize + Send + Sync + 'static {
    fn conditions(&self) -> &[Condition];
    fn set_common(&mut self, observed_generation: Option<i64>, conditions: Vec<Condition>);
    /// `status.scope`: the IamScope governing the object's namespace.
    fn set_scope(&mut self, scope: Option<String>);
    /// `status.accountId`, from the account field of the ARN the status holds.
    fn fill_account(&mut self);
    /// The ARN the status holds (the object's resource, as last reported).
    fn arn(&self) -> Option<&str>;
}

macro_rules! managed {
    ($kind:ty, $status:ty, $arn:ident) => {
        managed!($kind, $status, $arn, false);
    };
    ($kind:ty, $status:ty, $arn:ident, $writes_in_apply:expr) => {
        impl Managed for $kind {
            const KIND: &'static str = stringify!($kind);
            const WRITES_STATUS_IN_APPLY: bool = $writes_in_apply;
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn status_mut(&mut self) -> &mut Option<$status> {
                &mut self.status
            }
        }
        impl StatusFields for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn set_common(&mut self, observed_generation: Option<i64>, conditions: Vec<Condition>) {
                self.observed_generation = observed_generation;
                self.conditions = conditions;
            }
            fn set_scope(&mut self, scope: Option<String>) {
                self.scope = scope;
            }
            fn fill_account(&mut self) {
                // arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE
                let account = self.$arn.as_deref().and_then(|a| a.split(':').nth(4));
                self.account_id = account.filter(|a| !a.is_empty()).map(str::to_string);
            }
            fn arn(&self) -> Option<&str> {
                self.$arn.as_deref()
            }
        }
    };
}

use crate::api::*;
managed!(IamPolicy, IamPolicyStatus, arn);
managed!(IamRole, IamRoleStatus, arn);
managed!(
    InstanceProfileBinding,
    InstanceProfileBindingStatus,
    instance_profile_arn
);
managed!(IamUserAccessKey, IamUserAccessKeyStatus, user_arn, true);
managed!(IamGroup, IamGroupStatus, arn);

/// The result of one apply: the identity fields to report (None keeps the current
/// ones) and either the Ready message or why it is not ready.
pub struct Applied<S> {
    pub status: Option<S>,
    pub result: Result<String, Error>,
    /// Requeue sooner than the resync (e.g. the next rotation step), when synced.
    pub requeue_after: Option<std::time::Duration>,
    /// The object's status as the apply last read or wrote it, with its
    /// resourceVersion, when the apply works on a fresh copy (IamUserAccessKey): the
    /// report then compares against it and is conditional on that version, so a
    /// status computed from a stale copy is refused rather than written over a newer.
    pub fresh: Option<(String, S)>,
    /// Conditions beside Ready/Reconciling/Stalled (e.g. `ActionsRecognized`), written
    /// with them; each new `False` one is also a warning event.
    pub extra: Vec<status::Extra>,
}

impl<S> Applied<S> {
    pub fn synced(status: S, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            result: Ok(message.into()),
            requeue_after: None,
            fresh: None,
            extra: vec![],
        }
    }
    pub fn failed(status: Option<S>, error: Error) -> Self {
        Self {
            status,
            result: Err(error),
            requeue_after: None,
            fresh: None,
            extra: vec![],
        }
    }
    /// With `extra` conditions written beside the three.
    pub fn with_extra(mut self, extra: impl IntoIterator<Item = status::Extra>) -> Self {
        self.extra.extend(extra);
        self
    }
}

impl<S> From<Result<Applied<S>, Error>> for Applied<S> {
    fn from(r: Result<Applied<S>, Error>) -> Self {
        r.unwrap_or_else(|e| Applied::failed(None, e))
    }
}

/// A panic in one object's reconcile becomes that object's error: the process and
/// every other object carry on.
async fn unwind_safe<T>(
    what: &str,
    fut: impl Future<Output = T>,
    on_panic: impl FnOnce(Error) -> T,
) -> T {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(v) => v,
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %text, "{what} panicked; reported on the object");
            on_panic(Error::Internal(format!(
                "internal error while reconciling (please report): {text}"
            )))
        }
    }
}

/// Run one reconcile of `obj` through the finalizer: `apply` while it exists, `cleanup`
/// once it is being deleted (the finalizer is removed only when cleanup succeeds).
pub async fn reconcile<K, A, AF, C, CF>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    apply: A,
    cleanup: C,
) -> Result<Action, finalizer::Error<Error>>
where
    K: Managed,
    A: FnOnce(Arc<K>, Arc<Context>) -> AF,
    AF: Future<Output = Applied<K::Status>>,
    C: FnOnce(Arc<K>, Arc<Context>) -> CF,
    CF: Future<Output = Result<(), Error>>,
{
    let key = key_of(&*obj);
    // Inside the controller's span, which names the trigger (object.reason).
    tracing::trace!(kind = K::KIND, object = %key, "reconcile started");
    // hold: an object backing off is not reconciled early by an event that is not a
    // change of its spec (its own status write, an owned Secret, a referenced policy).
    if obj.meta().deletion_timestamp.is_none()
        && let Some(wait) = ctx.held(&key, obj.meta().generation)
    {
        return Ok(Action::requeue(wait));
    }
    let obj = with_own_status(&ctx, obj);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let started = Instant::now();
    let obj = with_finalizer(&api, obj)
        .await
        .map_err(finalizer::Error::AddFinalizer)?;
    let label = Mutex::new("error");
    let result: Result<Action, finalizer::Error<Error>> =
        finalizer::finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                FinalizerEvent::Apply(o) => {
                    // The trust model first: which IamScope governs the namespace (two:
                    // ScopeConflict, and the object is not touched).
                    let ns = o.namespace().unwrap_or_default();
                    let (applied, scope) = match Box::pin(crate::trust::resolve(
                        &ctx.governance,
                        &ctx.client,
                        &ctx.settings,
                        &ns,
                    ))
                    .await
                    {
                        Ok(gov) => {
                            let scope = gov.scope.clone();
                            // Boxed: the apply futures are large, and nesting them
                            // in the scope's future overflowed the worker's stack.
                            let fut = crate::trust::with(
                                Arc::new(gov),
                                Box::pin(apply(o.clone(), ctx.clone())),
                            );
                            let applied =
                                unwind_safe(K::KIND, fut, |e| Applied::failed(None, e)).await;
                            (applied, Some(scope))
                        }
                        Err(e) => (Applied::failed(None, e), None),
                    };
                    let (action, l) = report(&api, &o, &ctx, applied, scope).await;
                    *label.lock().expect("label lock") = l;
                    Ok(action)
                }
                FinalizerEvent::Cleanup(o) => {
                    let key = key_of(&*o);
                    let uid = o.meta().uid.clone();
                    ctx.metrics.set_ready(K::KIND, key.clone(), None);
                    // Cleanup never waits for a valid scope: names and paths come from
                    // the object's status, else its governance, else no scope.
                    let ns = o.namespace().unwrap_or_default();
                    let gov =
                        crate::trust::resolve(&ctx.governance, &ctx.client, &ctx.settings, &ns)
                            .await
                            .unwrap_or_else(|_| {
                                crate::trust::Governance::new(&ctx.settings, &ns, None)
                            });
                    let fut = crate::trust::with(Arc::new(gov), Box::pin(cleanup(o, ctx.clone())));
                    unwind_safe(K::KIND, fut, Err).await?;
                    ctx.forget(&key);
                    if let Some(uid) = &uid {
                        ctx.written.forget(K::KIND, uid);
                    }
                    *label.lock().expect("label lock") = "success";
                    Ok(Action::await_change())
                }
            }
        })
        .await;
    let label = match &result {
        Ok(_) => *label.lock().expect("label lock"),
        Err(finalizer::Error::CleanupFailed(e)) => e.metric_label(),
        Err(_) => "kube_error",
    };
    ctx.metrics.reconciled(K::KIND, label, started.elapsed());
    result
}

/// The object with the status this process last wrote to it while the watch cache
/// still holds an older copy (see [`super::written`]).
fn with_own_status<K: Managed>(ctx: &Context, obj: Arc<K>) -> Arc<K> {
    let Some(uid) = obj
        .meta()
        .uid
        .as_deref()
        .filter(|_| !K::WRITES_STATUS_IN_APPLY)
    else {
        return obj;
    };
    match ctx
        .written
        .newer(K::KIND, uid, obj.status(), Instant::now())
    {
        Some(status) => {
            let mut newer = (*obj).clone();
            *newer.status_mut() = Some(status);
            Arc::new(newer)
        }
        None => obj,
    }
}

/// The finalizer is added by the reconcile that finds it missing, which then goes on
/// with the patched object: kube's `finalizer()` would stop there and wait for the
/// watch to deliver the patch, a second pass through the queue for every new object.
/// The patch is conditional on the resourceVersion the reconcile read (409 otherwise),
/// so a finalizer another client added meanwhile is never dropped. A conflict is most
/// often a watch cache behind the operator's own earlier patch (a loaded API server
/// delivers it seconds late): the object is read once and the reconcile goes on with it,
/// instead of failing into a backoff.
async fn with_finalizer<K: Managed>(api: &Api<K>, obj: Arc<K>) -> kube::Result<Arc<K>> {
    let name = obj.name_any();
    match add_finalizer(api, obj).await {
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let Some(fresh) = api.get_opt(&name).await? else {
                return Err(kube::Error::Api(s));
            };
            add_finalizer(api, Arc::new(fresh)).await
        }
        other => other,
    }
}

async fn add_finalizer<K: Managed>(api: &Api<K>, obj: Arc<K>) -> kube::Result<Arc<K>> {
    if obj.meta().deletion_timestamp.is_some() || obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(obj);
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    let mut patched = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    patched.meta_mut().managed_fields = None;
    Ok(Arc::new(patched))
}

/// Failed cleanups and finalizer patches back off per object.
pub fn error_policy<K: Managed>(
    obj: Arc<DeserializeGuard<K>>,
    err: &finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    // The finalizer patch races the watch on a just-created object (422 on its test
    // operation); it is retried at once and needs no warning.
    if matches!(err, finalizer::Error::AddFinalizer(_)) {
        tracing::debug!(kind = K::KIND, object = %key_of(&*obj), error = %err, "adding the finalizer failed; retrying");
    } else {
        tracing::warn!(kind = K::KIND, object = %key_of(&*obj), error = %err, "reconcile failed");
    }
    Action::requeue(ctx.backoff(&key_of(&*obj), obj.meta().generation, false))
}

/// Write the status for an apply and decide when to look again. Returns the action
/// and the metric label of the real outcome.
async fn report<K: Managed>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    applied: Applied<K::Status>,
    scope: Option<Option<String>>,
) -> (Action, &'static str) {
    let key = key_of(obj);
    let generation = obj.meta().generation;
    if let Err(e) = &applied.result
        && first_wait_unreported(
            e,
            obj.meta().creation_timestamp.as_ref().map(|t| t.0.into()),
            obj.status().is_some(),
            std::time::SystemTime::now(),
        )
    {
        ctx.metrics.set_ready(K::KIND, key, Some(false));
        return (Action::requeue(FIRST_WAIT_UNREPORTED), e.metric_label());
    }
    let (fresh_rv, current) = match applied.fresh.clone() {
        Some((rv, st)) => (Some(rv), st),
        None => (None, obj.status().cloned().unwrap_or_default()),
    };
    let outcome = match &applied.result {
        Ok(message) => Outcome::synced(message.clone()),
        Err(e) => e.outcome(ctx.failures(&key)),
    };
    let mut next = applied.status.clone().unwrap_or_else(|| current.clone());
    // None: the scope could not be resolved (a conflict); the field shows none then.
    next.set_scope(scope.flatten());
    next.fill_account();
    let mut conditions = status::conditions(current.conditions(), generation, &outcome);
    conditions.extend(status::extra_conditions(
        current.conditions(),
        generation,
        &applied.extra,
    ));
    next.set_common(generation, conditions);
    let written = match &fresh_rv {
        Some(rv) => status::patch_at(api, obj, Some(&current), &next, rv)
            .await
            .map(|_| ()),
        None => status::patch(api, obj, obj.status(), &next).await,
    };
    if let Err(e) = written {
        tracing::warn!(kind = K::KIND, object = %key, error = %e, "status patch failed");
        return (
            Action::requeue(ctx.backoff(&key, generation, false)),
            "kube_error",
        );
    }
    // A reconcile of a fresh copy compares against that copy; the others may run on a
    // cache that does not show this write yet.
    if !K::WRITES_STATUS_IN_APPLY
        && fresh_rv.is_none()
        && obj.status() != Some(&next)
        && let Some(uid) = obj.meta().uid.as_deref()
    {
        ctx.written
            .wrote(K::KIND, uid, next.clone(), Instant::now());
    }
    for e in status::new_problems(current.conditions(), &applied.extra) {
        ctx.event(obj, true, e.reason, e.message.clone()).await;
    }
    ctx.metrics
        .set_ready(K::KIND, key.clone(), Some(outcome.ready));
    match applied.result {
        Ok(_) => {
            ctx.succeeded(&key);
            let action = match applied.requeue_after {
                Some(d) if d < ctx.settings.resync => Action::requeue(d),
                _ => ctx.resync(),
            };
            (action, "success")
        }
        Err(e) => {
            // One warning event per new problem, not one per retry. Waiting for a
            // referenced policy on its way to Ready (applied together with the role) is
            // no problem: the condition says it, and a warning per such wait was a
            // fifth of all events while many objects converged.
            let was = status::ready_of(current.conditions());
            if !e.is_dependency_in_progress()
                && was != Some((outcome.reason.as_str(), outcome.message.as_str()))
            {
                ctx.event(obj, true, outcome.reason.as_str(), outcome.message.clone())
                    .await;
            }
            tracing::info!(kind = K::KIND, object = %key, reason = %outcome.reason, error = %e, "not ready");
            (super::retry(&e, ctx, &key, generation), e.metric_label())
        }
    }
}

/// How long a new object waiting for an object it references goes without a status
/// ([`first_wait_unreported`]).
const FIRST_WAIT_UNREPORTED: std::time::Duration = std::time::Duration::from_secs(10);

/// A new object (no status yet, created moments ago) whose only problem is an object
/// it references (an IamPolicy, an IamRole) that is not there or not Ready yet, as
/// when both come in one `kubectl apply` or GitOps sync in any order, is not reported:
/// the referenced object's watch re-triggers it within seconds, and a "waiting" status
/// and warning would be replaced at once (a role applied by another client than its
/// policy wrote both: half of the API-server writes of such roles). A wait that lasts,
/// a typo in a reference, is reported at the next look, at most 10 seconds later.
fn first_wait_unreported(
    e: &Error,
    created: Option<std::time::SystemTime>,
    has_status: bool,
    now: std::time::SystemTime,
) -> bool {
    let young = created.is_some_and(|c| {
        now.duration_since(c)
            .is_ok_and(|age| age < FIRST_WAIT_UNREPORTED)
    });
    e.is_reference_wait() && young && !has_status
}

/// An object that does not deserialize (e.g. written before a schema change, or with
/// a value the schema admits but the operator cannot read) is reported on the object:
/// `Stalled`, `InvalidSpec`, with the decoder's message. It never stops the watch.
async fn report_invalid<K: Managed>(
    ctx: &Context,
    guard: &DeserializeGuard<K>,
    error: &str,
) -> Action {
    let meta = guard.meta();
    let (ns, name) = (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    );
    let message = format!("spec: the object cannot be read by the operator: {error}");
    tracing::warn!(kind = K::KIND, object = %format!("{ns}/{name}"), %message, "invalid object");
    let conditions = status::conditions(
        &[],
        meta.generation,
        &Outcome::stalled(crate::reason::Reason::InvalidSpec, message.clone()),
    );
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {"observedGeneration": meta.generation, "conditions": conditions},
    });
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let _ = api
        .patch_status(
            &name,
            &PatchParams::apply(status::MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "status patch of an invalid object failed"));
    ctx.event(guard, true, "InvalidSpec", message).await;
    Action::await_change()
}

/// Which watch events start a reconcile: a new generation (spec) and deletion. The
/// operator's own writes do not: its status reports, and its finalizer, which the
/// reconcile adds and goes on from ([`with_finalizer`]). A finalizer someone removes
/// by hand is added back by the next resync.
fn trigger_hash<K: Resource>(obj: &K) -> Option<u64> {
    let m = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.generation.hash(&mut h);
    m.deletion_timestamp.is_some().hash(&mut h);
    m.uid.hash(&mut h);
    // The annotations that ask for an action (rotate now, keep the previous key).
    for a in [
        crate::api::ROTATE_ANNOTATION,
        crate::api::REACTIVATE_ANNOTATION,
    ] {
        m.annotations.as_ref().and_then(|x| x.get(a)).hash(&mut h);
    }
    Some(h.finish())
}

/// A guarded object type, as the controllers watch it.
pub type Guarded<K> = DeserializeGuard<K>;

/// Run a controller for `K` on every watched namespace until shutdown.
pub async fn run_controller<K, R, RF>(
    ctx: Arc<Context>,
    shutdown: super::Shutdown,
    reconcile: R,
    customize: impl Fn(
        kube::runtime::Controller<Guarded<K>>,
        Option<&str>,
    ) -> kube::runtime::Controller<Guarded<K>>,
) where
    K: Managed,
    R: FnMut(Arc<K>, Arc<Context>) -> RF + Clone + Send + 'static,
    RF: Future<Output = Result<Action, finalizer::Error<Error>>> + Send + 'static,
{
    let scopes: Vec<Option<&str>> = if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|n| Some(n.as_str()))
            .collect()
    };
    // One budget of concurrent reconciles per kind, shared by the controllers of all
    // watched namespaces: ten namespaces are not ten times the IAM callers.
    let permits = Arc::new(tokio::sync::Semaphore::new(ctx.settings.concurrency.into()));
    let controllers = scopes.into_iter().map(|scope| {
        let api = scoped_api::<Guarded<K>>(&ctx.client, scope);
        let (reader, writer) = reflector::store();
        // managedFields are dropped before the object is stored: nothing reads them
        // here, and with server-side apply they can outweigh the object itself.
        let watch = watcher(api, super::primary_watch_config(&ctx.settings))
            .modify(|o| o.meta_mut().managed_fields = None);
        let trigger = reflector(writer, watch)
            .default_backoff()
            .applied_objects()
            .predicate_filter(trigger_hash, PredicateConfig::default());
        let c = kube::runtime::Controller::for_stream(trigger, reader)
            .graceful_shutdown_on(shutdown.wait());
        let c = governance_watches(c, &ctx, scope);
        let inner = reconcile.clone();
        let permits = permits.clone();
        let unwrap = move |guard: Arc<Guarded<K>>, ctx: Arc<Context>| {
            let mut inner = inner.clone();
            let permits = permits.clone();
            async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                match &guard.0 {
                    Ok(obj) => inner(Arc::new(obj.clone()), ctx).await,
                    Err(invalid) => Ok(report_invalid(&ctx, &guard, &invalid.error).await),
                }
            }
        };
        super::drive(
            K::KIND,
            customize(c, scope),
            ctx.clone(),
            unwrap,
            error_policy::<K>,
        )
    });
    futures::future::join_all(controllers).await;
}

/// A change of an IamScope, or of a namespace's labels, can change what every object
/// of a namespace may do: it re-evaluates them at once (their hold, e.g. after
/// NotPermitted, is lifted). A scope change maps to every object the controller
/// watches (scopes change rarely; a reconcile in sync costs reads only).
fn governance_watches<K: Managed>(
    c: kube::runtime::Controller<Guarded<K>>,
    ctx: &Arc<Context>,
    scope: Option<&str>,
) -> kube::runtime::Controller<Guarded<K>> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::runtime::reflector::ObjectRef;
    let store = c.store();
    // Every object is re-evaluated, but only those stopped by governance (a grant, a
    // scope, a guardrail) skip their backoff: an object failing for another reason
    // (AWS refusing its input) keeps backing off whatever the scopes do.
    let release = |ctx: &Context, objects: Vec<Arc<Guarded<K>>>| {
        objects
            .iter()
            .map(|g| {
                let governed =
                    g.0.as_ref()
                        .ok()
                        .and_then(|o| o.status())
                        .is_some_and(|st| {
                            status::ready_of(st.conditions()).is_some_and(|(reason, _)| {
                                matches!(
                                    reason,
                                    "NotPermitted"
                                        | "ScopeConflict"
                                        | "GuardrailViolation"
                                        | "AlreadyExists"
                                )
                            })
                        });
                if governed {
                    ctx.lift_hold(&key_of(&**g));
                }
                ObjectRef::from_obj(&**g)
            })
            .collect::<Vec<ObjectRef<Guarded<K>>>>()
    };
    let (ctx1, store1) = (ctx.clone(), store.clone());
    let ctx2 = ctx.clone();
    let namespaces = match scope {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    // Only a change of a scope's spec or a namespace's labels re-evaluates: a scope's
    // status write (the scope controller's own) or a namespace phase change does not.
    let scopes = changes_of(
        Api::<crate::api::IamScope>::all(ctx.client.clone()),
        watcher::Config::default(),
        |s: &crate::api::IamScope| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            s.meta().generation.hash(&mut h);
            h.finish()
        },
    );
    let namespaces = changes_of(
        Api::<Namespace>::all(ctx.client.clone()),
        namespaces,
        |n: &Namespace| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            n.meta().labels.hash(&mut h);
            h.finish()
        },
    );
    c.watches_stream(scopes, move |_| {
        ctx1.governance.invalidate();
        release(&ctx1, store1.state())
    })
    .watches_stream(namespaces, move |ns: Namespace| {
        ctx2.governance.invalidate();
        let name = ns.name_any();
        let objects = store
            .state()
            .into_iter()
            .filter(|g| g.meta().namespace.as_deref() == Some(name.as_str()))
            .collect();
        release(&ctx2, objects)
    })
}

/// The objects of a watch whose `fingerprint` changed, and every deleted one (a
/// deletion need not change the fingerprint, which a plain predicate filter would
/// then drop).
fn changes_of<T>(
    api: Api<T>,
    config: watcher::Config,
    fingerprint: impl Fn(&T) -> u64 + Send + 'static,
) -> impl futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static
where
    T: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut seen: std::collections::HashMap<String, u64> = Default::default();
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let key = |o: &T| o.meta().uid.clone().unwrap_or_default();
            let out = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    let f = fingerprint(&o);
                    (seen.insert(key(&o), f) != Some(f)).then_some(Ok(o))
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.remove(&key(&o));
                    Some(Ok(o))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        })
}

/// An API for all namespaces (`None`) or one.
pub fn scoped_api<T>(client: &kube::Client, scope: Option<&str>) -> Api<T>
where
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::refs::RefState;
    use crate::reason::Reason;
    use std::time::{Duration, SystemTime};

    fn waiting(state: RefState) -> Error {
        state
            .ready_arn(r#"spec.policyRefs[0]: IamPolicy "p""#)
            .unwrap_err()
    }

    #[test]
    fn only_a_new_objects_first_wait_for_a_referenced_object_goes_unreported() {
        let now = SystemTime::now();
        let new = Some(now - Duration::from_secs(2));
        let on_its_way = waiting(RefState::NotReady);
        assert!(first_wait_unreported(&on_its_way, new, false, now));
        // Not there yet: it may come in the same apply, by another client.
        assert!(first_wait_unreported(
            &waiting(RefState::Missing),
            new,
            false,
            now
        ));
        let role_ref = RefState::Missing
            .ready_arn(r#"spec.roleRef: IamRole "app""#)
            .unwrap_err();
        assert!(first_wait_unreported(&role_ref, new, false, now));
        // Reported: an object that already has a status, an object waiting longer than
        // the grace, a wait for something in AWS, and any other problem.
        assert!(!first_wait_unreported(&on_its_way, new, true, now));
        let in_aws = Error::Waiting {
            field: Some("spec.userName".into()),
            reason: Reason::DependencyNotReady,
            message: r#"IAM user "u" does not exist and spec.createUser is false"#.into(),
        };
        assert!(!first_wait_unreported(&in_aws, new, false, now));
        // AWS's own text can end like a reference wait (an EC2 association refused with
        // InvalidInstanceID.NotFound): a wait in AWS all the same, reported at once.
        let instance_gone = Error::Waiting {
            field: None,
            reason: Reason::DependencyNotReady,
            message:
                "1 instance(s) cannot be bound; i-0abc: The instance ID 'i-0abc' does not exist"
                    .into(),
        };
        assert!(!first_wait_unreported(&instance_gone, new, false, now));
        assert!(!instance_gone.is_dependency_in_progress());
        let old = Some(now - FIRST_WAIT_UNREPORTED - Duration::from_secs(1));
        assert!(!first_wait_unreported(&on_its_way, old, false, now));
        assert!(!first_wait_unreported(&on_its_way, None, false, now));
        let other = Error::stalled(Reason::InvalidSpec, "spec: bad");
        assert!(!first_wait_unreported(&other, new, false, now));
    }
}
