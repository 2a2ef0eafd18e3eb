//! The reconcile shape every kind shares: finalizer handling, one status report per
//! reconcile (conditions + identity fields, written only when changed), one warning
//! event per new problem, per-object backoff and the reconcile metrics.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
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
    type Status: StatusFields;
    fn status(&self) -> Option<&Self::Status>;
}

/// The status fields every kind has.
pub trait StatusFields: Default + Clone + PartialEq + Serialize + Send + Sync {
    fn conditions(&self) -> &[Condition];
    fn set_common(&mut self, observed_generation: Option<i64>, conditions: Vec<Condition>);
}

macro_rules! managed {
    ($kind:ty, $status:ty) => {
        impl Managed for $kind {
            const KIND: &'static str = stringify!($kind);
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
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
        }
    };
}

use crate::api::*;
managed!(IamPolicy, IamPolicyStatus);
managed!(IamRole, IamRoleStatus);
managed!(InstanceProfileBinding, InstanceProfileBindingStatus);
managed!(IamUserAccessKey, IamUserAccessKeyStatus);

/// The result of one apply: the identity fields to report (None keeps the current
/// ones) and either the Ready message or why it is not ready.
pub struct Applied<S> {
    pub status: Option<S>,
    pub result: Result<String, Error>,
    /// Requeue sooner than the resync (e.g. the next rotation step), when synced.
    pub requeue_after: Option<std::time::Duration>,
}

impl<S> Applied<S> {
    pub fn synced(status: S, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            result: Ok(message.into()),
            requeue_after: None,
        }
    }
    pub fn failed(status: Option<S>, error: Error) -> Self {
        Self {
            status,
            result: Err(error),
            requeue_after: None,
        }
    }
}

impl<S> From<Result<Applied<S>, Error>> for Applied<S> {
    fn from(r: Result<Applied<S>, Error>) -> Self {
        r.unwrap_or_else(|e| Applied::failed(None, e))
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
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let started = Instant::now();
    let result: Result<Action, finalizer::Error<Error>> =
        finalizer::finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                FinalizerEvent::Apply(o) => {
                    let applied = apply(o.clone(), ctx.clone()).await;
                    Ok(report(&api, &o, &ctx, applied).await)
                }
                FinalizerEvent::Cleanup(o) => {
                    let key = key_of(&*o);
                    ctx.metrics.set_ready(K::KIND, key.clone(), None);
                    cleanup(o, ctx.clone()).await?;
                    ctx.succeeded(&key);
                    Ok(Action::await_change())
                }
            }
        })
        .await;
    let label = match &result {
        Ok(_) => "success",
        Err(finalizer::Error::CleanupFailed(e)) => e.metric_label(),
        Err(_) => "error",
    };
    ctx.metrics.reconciled(K::KIND, label, started.elapsed());
    result
}

/// Failed cleanups and finalizer patches back off per object.
pub fn error_policy<K: Managed>(
    obj: Arc<K>,
    err: &finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(kind = K::KIND, object = %key_of(&*obj), error = %err, "reconcile failed");
    Action::requeue(ctx.backoff(&key_of(&*obj), false))
}

/// Write the status for an apply and decide when to look again.
async fn report<K: Managed>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    applied: Applied<K::Status>,
) -> Action {
    let key = key_of(obj);
    let current = obj.status().cloned().unwrap_or_default();
    let outcome = match &applied.result {
        Ok(message) => Outcome::synced(message.clone()),
        Err(e) => e.outcome(),
    };
    let generation = obj.meta().generation;
    let mut next = applied.status.clone().unwrap_or_else(|| current.clone());
    next.set_common(
        generation,
        status::conditions(current.conditions(), generation, &outcome),
    );
    if let Err(e) = status::patch(api, obj, obj.status(), &next).await {
        tracing::warn!(kind = K::KIND, object = %key, error = %e, "status patch failed");
        return Action::requeue(ctx.backoff(&key, false));
    }
    ctx.metrics
        .set_ready(K::KIND, key.clone(), Some(outcome.ready));
    match applied.result {
        Ok(_) => {
            ctx.succeeded(&key);
            match applied.requeue_after {
                Some(d) if d < ctx.settings.resync => Action::requeue(d),
                _ => ctx.resync(),
            }
        }
        Err(e) => {
            // One warning event per new problem, not one per retry.
            let was = status::ready_of(current.conditions());
            if was != Some((outcome.reason, outcome.message.as_str())) {
                ctx.event(obj, true, outcome.reason, outcome.message.clone())
                    .await;
            }
            tracing::info!(kind = K::KIND, object = %key, reason = outcome.reason, error = %e, "not ready");
            e.retry(ctx, &key)
        }
    }
}

/// Run a controller for `K` on every watched namespace until shutdown.
pub async fn run_controller<K, R, RF>(
    ctx: Arc<Context>,
    shutdown: super::Shutdown,
    reconcile: R,
    customize: impl Fn(kube::runtime::Controller<K>, Option<&str>) -> kube::runtime::Controller<K>,
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
    let controllers = scopes.into_iter().map(|scope| {
        let api = scoped_api::<K>(&ctx.client, scope);
        let c = kube::runtime::Controller::new(api, super::watch_config())
            .graceful_shutdown_on(shutdown.wait());
        super::drive(
            customize(c, scope),
            ctx.clone(),
            reconcile.clone(),
            error_policy::<K>,
        )
    });
    futures::future::join_all(controllers).await;
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
