//! One controller per kind. Every reconcile has the same shape: resolve references,
//! validate and build the desired state without I/O, observe AWS and make only the
//! writes the difference needs, then report one status patch and an event per change.

pub mod access_key;
pub mod binding;
pub mod changes;
pub mod claim;
pub mod documents;
pub mod events;
pub mod group;
pub mod instances;
pub mod lifecycle;
pub mod observe;
pub mod policy;
pub mod reconciler;
pub mod refs;
pub mod role;
pub mod scope;
pub mod written;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use serde::de::DeserializeOwned;

use crate::aws::{Aws, AwsErrorKind, Owner};
pub use crate::config::Settings;
pub use crate::error::{Awaited, Error};
pub use crate::naming::cut_name;
pub use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// The finalizer on every object the operator manages.
pub const FINALIZER: &str = "iamwright.dev/cleanup";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The operator's own account; [`Context::aws`] picks the account of the object.
    base_aws: Aws,
    /// One set of clients per other account (IamScope `spec.account`), built once.
    accounts: tokio::sync::Mutex<HashMap<crate::api::ScopeAccount, Aws>>,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Managed policy documents read for the deny-action guardrail.
    pub managed_policies: crate::trust::managed::ManagedPolicyCache,
    /// The IamPolicies `policyRefs` resolve to, as the IamRole and the
    /// IamUserAccessKey controllers' policy watches see them (one index each: each is
    /// current for the reconciles its own watch triggers).
    pub role_policies: refs::PolicyIndex,
    pub key_policies: refs::PolicyIndex,
    /// The IamPolicies IamGroups' `policyRefs` resolve to, from the group controller's watch.
    pub group_policies: refs::PolicyIndex,
    /// The IamGroups keys' `groupRefs` name, from the key controller's group watch.
    pub key_groups: refs::GroupIndex,
    /// The IamRoles bindings' `roleRef`s name, from the binding controller's role watch.
    pub binding_roles: refs::RoleIndex,
    /// The IamScopes and namespace labels governance is resolved from.
    pub governance: crate::trust::GovernanceCache,
    events: events::Publisher,
    failures: Mutex<HashMap<String, Failures>>,
    /// Objects (by key) whose AWS resource this process created: a reconcile that runs
    /// before the status carrying its ARN reached the watch cache reads it instead of
    /// creating it again (a duplicate create costs a refused write and three reads).
    created: Mutex<std::collections::HashSet<String>>,
    /// The statuses this process wrote that the watch cache may not show yet.
    pub written: written::Written,
}

/// An object's run of failures: how many in a row, and until when (for which
/// generation) it is held, so no event but a spec change reconciles it sooner.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: std::time::Instant,
    generation: Option<i64>,
}

impl Context {
    pub fn new(client: Client, aws: Aws, settings: Settings, metrics: Metrics) -> Self {
        Self {
            events: events::Publisher::new(
                client.clone(),
                "iamwright",
                std::env::var("POD_NAME").ok(),
            ),
            client,
            base_aws: aws,
            accounts: Default::default(),
            settings,
            metrics,
            managed_policies: Default::default(),
            governance: Default::default(),
            role_policies: Default::default(),
            key_policies: Default::default(),
            group_policies: Default::default(),
            key_groups: Default::default(),
            binding_roles: Default::default(),
            failures: Default::default(),
            created: Default::default(),
            written: Default::default(),
        }
    }

    /// The governance's denied actions on the managed policies a spec attaches
    /// (`spec.managedPolicyArns`): their documents are read, and cached.
    pub async fn check_managed_policies(&self, arns: &[String]) -> Result<(), Error> {
        let gov = crate::trust::current();
        let field = "spec.managedPolicyArns";
        let aws = self.aws().await;
        self.managed_policies
            .check(&aws, field, arns, &gov.deny_actions)
            .await
    }

    /// Whether the object's resource still has to be created: no ARN in the status
    /// (`arn_recorded`) and not created by this process since.
    pub fn never_created<K: Resource>(&self, obj: &K, arn_recorded: bool) -> bool {
        let key = key_of(obj);
        let mut created = self.created.lock().expect("created lock");
        if arn_recorded {
            // The status caught up: nothing to remember any more.
            created.remove(&key);
            return false;
        }
        !created.contains(&key)
    }

    /// Remember that the object's resource was just created (see `never_created`).
    pub fn created<K: Resource>(&self, obj: &K) {
        let mut created = self.created.lock().expect("created lock");
        created.insert(key_of(obj));
    }

    /// The AWS clients of the object being reconciled: its namespace's IamScope
    /// account (the role assumed once, its session refreshed by the SDK), else the
    /// operator's own. Ownership is per account: resources of one account are never
    /// looked for in another.
    pub async fn aws(&self) -> Aws {
        let Some(account) = crate::trust::current().account.clone() else {
            return self.base_aws.clone();
        };
        let mut accounts = self.accounts.lock().await;
        if let Some(aws) = accounts.get(&account) {
            return aws.clone();
        }
        let aws = self.base_aws.assume(&account).await;
        accounts.insert(account, aws.clone());
        aws
    }

    /// The ownership tags' owner for an object.
    pub fn owner<K: Resource>(&self, obj: &K) -> Owner {
        Owner {
            cluster: self.settings.cluster_name.clone(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid: obj.meta().uid.clone(),
        }
    }

    /// Publish an event on `obj`, without waiting for it. Failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        // Published in the background: a reconcile (and the next object in the queue)
        // never waits for the API server to store an event.
        let (events, reference, reason) =
            (self.events.clone(), obj.object_ref(&()), reason.to_string());
        tokio::spawn(async move {
            if let Err(e) = events.publish(reference, warning, &reason, &note).await {
                tracing::warn!(error = %e, reason, "failed to publish event");
            }
        });
    }

    /// The next resync: the configured interval with ±10% jitter, so objects created
    /// together do not hit AWS together forever after.
    pub fn resync(&self) -> Action {
        Action::requeue(jitter(self.settings.resync))
    }

    /// Forget an object's failures after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failures lock").remove(key);
    }

    /// The object is gone (its cleanup finished): nothing kept for it is needed any
    /// more, also not a create its status never recorded.
    pub fn forget(&self, key: &str) {
        self.succeeded(key);
        self.created.lock().expect("created lock").remove(key);
    }

    /// Let a held object be reconciled at once (its governance changed), keeping its
    /// count of failures, so its next failure still backs off further.
    pub fn lift_hold(&self, key: &str) {
        if let Some(f) = self.failures.lock().expect("failures lock").get_mut(key) {
            f.until = std::time::Instant::now();
        }
    }

    /// How many reconciles of the object failed in a row.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .expect("failures lock")
            .get(key)
            .map_or(0, |f| f.count)
    }

    /// How long an object is still held after a failure, unless its generation changed
    /// (a spec change by the user is always worth a reconcile).
    pub fn held(&self, key: &str, generation: Option<i64>) -> Option<Duration> {
        let failures = self.failures.lock().expect("failures lock");
        let f = failures.get(key)?;
        let left = f.until.checked_duration_since(std::time::Instant::now())?;
        (f.generation == generation && !left.is_zero()).then_some(left)
    }

    /// Exponential per-object backoff with jitter: 2s, 4s, 8s … capped at 5 minutes,
    /// never above the resync interval. Errors that retrying cannot fix soon (access
    /// denied, input AWS refused) start at a minute, so they are reported, not hammered.
    /// The object is held until then: its own writes cannot start it early.
    pub fn backoff(&self, key: &str, generation: Option<i64>, slow: bool) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let f = failures.entry(key.to_string()).or_insert(Failures {
            count: 0,
            until: std::time::Instant::now(),
            generation,
        });
        let exp = f.count.min(10);
        f.count += 1;
        let base = if slow {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(2)
        };
        let cap = Duration::from_secs(300).min(self.settings.resync.max(base));
        let wait = jitter((base * 2u32.pow(exp)).min(cap));
        f.until = std::time::Instant::now() + wait;
        f.generation = generation;
        wait
    }

    /// Hold an object without counting a failure (a stalled spec waits for a change).
    pub fn hold(&self, key: &str, generation: Option<i64>, wait: Duration) {
        let mut failures = self.failures.lock().expect("failures lock");
        let f = failures.entry(key.to_string()).or_insert(Failures {
            count: 0,
            until: std::time::Instant::now(),
            generation,
        });
        f.until = std::time::Instant::now() + wait;
        f.generation = generation;
    }
}

/// `d` ±10%.
pub fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.9..1.1);
    d.mul_f64(f)
}

/// The AWS name of an object under the current governance: the explicit one, else the
/// name it was created with (`recorded`, from its status ARN: a later scope change
/// never moves an object to another AWS resource), else the scope's default name.
pub fn governed_name(
    explicit: Option<&str>,
    recorded: Option<&str>,
    namespace: &str,
    name: &str,
    max: usize,
) -> String {
    if let Some(n) = explicit {
        return n.to_string();
    }
    if let Some(arn) = recorded
        && let Some(n) = arn.rsplit('/').next().filter(|n| !n.is_empty())
    {
        return n.to_string();
    }
    crate::trust::current().default_name(namespace, name, max)
}

/// When to try again: stalled specs wait for a change (or a slow resync, for
/// conditions outside the spec such as ownership), errors back off per object.
/// Either way the object is held until then.
pub fn retry(e: &Error, ctx: &Context, key: &str, generation: Option<i64>) -> Action {
    match e {
        Error::Stalled { reason, .. } => {
            ctx.hold(key, generation, ctx.settings.resync);
            if reason.waits_for_spec_change() {
                Action::await_change()
            } else {
                ctx.resync()
            }
        }
        Error::Aws(e)
            if matches!(
                e.kind,
                AwsErrorKind::AccessDenied | AwsErrorKind::Invalid | AwsErrorKind::LimitExceeded
            ) =>
        {
            Action::requeue(ctx.backoff(key, generation, true))
        }
        Error::Internal(_) => Action::requeue(ctx.backoff(key, generation, true)),
        // Waiting for another object: its change (a watch event) is the very
        // thing to react to, so no hold; the backoff only paces the re-checks.
        Error::Waiting { .. } | Error::Reference { .. } => {
            let wait = ctx.backoff(key, generation, false);
            ctx.hold(key, generation, Duration::ZERO);
            Action::requeue(wait)
        }
        _ => Action::requeue(ctx.backoff(key, generation, false)),
    }
}

/// A stable key for per-object bookkeeping.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Drive a controller until shutdown, logging each result. Watch failures (lost
/// permissions, a removed CRD, an unreachable API server) are logged at WARN and
/// counted; persisting ones fail `/healthz` (see `Metrics::watch_error`).
pub async fn drive<K, ReconcilerFut, E>(
    kind: &'static str,
    controller: Controller<K>,
    ctx: Arc<Context>,
    reconcile: impl FnMut(Arc<K>, Arc<Context>) -> ReconcilerFut + Send + 'static,
    error_policy: impl Fn(Arc<K>, &E, Arc<Context>) -> Action + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    ReconcilerFut: futures::TryFuture<Ok = Action, Error = E> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    use kube::runtime::controller::Error as ControllerError;
    let concurrency = ctx.settings.concurrency;
    let metrics = ctx.metrics.clone();
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            match res {
                Ok((obj, _)) => {
                    metrics.watch_ok(kind);
                    tracing::trace!(object = %obj, "reconciled")
                }
                Err(ControllerError::QueueError(e)) => {
                    metrics.watch_error(kind);
                    tracing::warn!(kind, error = %e, "watch failed; retrying with backoff")
                }
                // Already logged by the error policy.
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
            async {}
        })
        .await;
}

/// Watcher settings shared by every controller.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// The watch of a controller's own kind: only the objects of its shard
/// (`--object-selector`). Referenced objects (IamPolicies, Secrets) are watched whole,
/// so a reference across shards is still followed.
pub fn primary_watch_config(settings: &Settings) -> watcher::Config {
    match &settings.object_selector {
        Some(selector) => watch_config().labels(selector),
        None => watch_config(),
    }
}
