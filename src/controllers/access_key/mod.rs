//! IamUserAccessKey: an IAM user's access key, delivered into a Secret, healed and
//! rotated without ever losing or leaking a key. The design (crash safety, the rotation
//! state machine) is written down in docs/access-keys.md.
//!
//! Every reconcile: validate the spec (no I/O), read the Secret and the referenced
//! policies, ensure the user, then bring the key to the spec — recovering an
//! interrupted create first, healing a lost Secret or key, applying keyStatus, and
//! taking the rotation step that is due.

mod console;
mod decide;
mod groups;
mod keys;
mod observe;
pub mod schedule;
mod secret;
pub mod user;
mod workloads;

use crate::reason::Reason;
use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::reconciler::{Applied, reconcile, run_controller, scoped_api};
use super::refs::{names, referencing, resolve_policy_refs};
use super::{Context, Error, Shutdown, key_of};
use crate::api::{DeletionPolicy, IamUserAccessKey, IamUserAccessKeyStatus, KeyStatus, PendingKey};
use crate::aws::Ownership;
use crate::status;
use decide::{SecretView, Step, View, Why, decide};
use keys::KeyInfo;
use schedule::rfc3339;
use secret::{KeyMaterial, Observed};

pub const KIND: &str = "IamUserAccessKey";

/// Run the IamUserAccessKey controller until shutdown. Owned Secrets are watched so a
/// deleted or edited Secret is healed at once, and IamPolicies so policyRefs follow.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let keys_ctx = ctx.clone();
    run_controller::<IamUserAccessKey, _, _>(
        ctx,
        shutdown,
        |obj, ctx| reconcile(obj, ctx, apply, cleanup),
        move |c, scope| {
            let store = c.store();
            let managed = format!("{}={}", secret::MANAGED_BY.0, secret::MANAGED_BY.1);
            c.owns(
                scoped_api::<Secret>(&client, scope),
                super::watch_config().labels(&managed),
            )
            .watches_stream(keys_ctx.key_policies.watch(&client, scope), {
                let store = store.clone();
                move |p| {
                    referencing(&store, &p, |k: &IamUserAccessKey| {
                        names(&k.spec.policy_refs)
                    })
                }
            })
            .watches_stream(keys_ctx.key_groups.watch(&client, scope), move |g| {
                referencing(&store, &g, |k: &IamUserAccessKey| names(&k.spec.group_refs))
            })
        },
    )
    .await;
}

/// The ARNs of the key's `policyRefs` (waiting while one is missing or not Ready).
pub(crate) async fn policy_arns(
    ctx: &Context,
    k: &IamUserAccessKey,
    ns: &str,
) -> Result<Vec<String>, Error> {
    resolve_policy_refs(
        &ctx.key_policies,
        &ctx.client,
        ns,
        "spec.policyRefs",
        &k.spec.policy_refs,
    )
    .await
}

/// Test-only failpoints: `IAMWRIGHT_FAILPOINT=<name>` makes the process exit (code 3)
/// at a step — `after-create-access-key` (between CreateAccessKey and the Secret
/// write), `after-verify` (between the key's verification and the Secret write),
/// `after-secret-write` (between the Secret write and the status record),
/// `after-set-console-password` (between setting a console password and delivering
/// it) — or
/// fails one: `fail-secret-write` (the Secret write returns an error). Unset in
/// production; they exist so the e2e suite can prove crash safety on a real process.
fn failpoint(name: &str) -> bool {
    std::env::var("IAMWRIGHT_FAILPOINT").is_ok_and(|v| v == name)
}

fn crash_point(name: &str) {
    if failpoint(name) {
        tracing::warn!(failpoint = name, "failpoint reached: exiting");
        std::process::exit(3);
    }
}

/// One reconcile's view of the object: its spec (`k`) and the status as last written
/// (read fresh from the API server, then updated by this reconcile's own writes), so
/// a decision is never taken on a cached status that misses a key just created.
struct Run<'a> {
    ctx: &'a Context,
    k: &'a IamUserAccessKey,
    api: Api<IamUserAccessKey>,
    secrets: Api<Secret>,
    recorded: IamUserAccessKeyStatus,
    /// The resourceVersion of `recorded`: every status write is conditional on it, so
    /// two writers (an old leader, a stale cache) can never interleave key records.
    rv: String,
    /// The annotation `iamwright.dev/rotate` on the object as read with `recorded`.
    rotate_request: Option<String>,
    /// The annotation `iamwright.dev/reactivate-previous` is set.
    hold_previous: bool,
}

impl Run<'_> {
    /// Write `next` as the status now, before the next AWS step (e.g. the intent to
    /// create a key), conditional on the resourceVersion read, like the final report.
    async fn record(&mut self, next: IamUserAccessKeyStatus) -> Result<(), Error> {
        if let Some(rv) =
            status::patch_at(&self.api, self.k, Some(&self.recorded), &next, &self.rv).await?
        {
            self.rv = rv;
        }
        self.recorded = next;
        Ok(())
    }

    fn user(&self) -> &str {
        &self.k.spec.user_name
    }

    /// Show a step in progress in the conditions now (e.g. the wait for a new key to
    /// verify), before the reconcile's final report.
    async fn progress(&mut self, reason: Reason, message: String) -> Result<(), Error> {
        let mut st = self.recorded.clone();
        st.conditions = status::conditions(
            &st.conditions,
            self.k.metadata.generation,
            &status::Outcome::progressing(reason, message),
        );
        self.record(st).await
    }
}

async fn apply(k: Arc<IamUserAccessKey>, ctx: Arc<Context>) -> Applied<IamUserAccessKeyStatus> {
    let ns = k.namespace().unwrap_or_default();
    let api: Api<IamUserAccessKey> = Api::namespaced(ctx.client.clone(), &ns);
    let (recorded, rv, annotations) = match api.get(&k.name_any()).await {
        Ok(fresh) => (
            fresh.status.unwrap_or_default(),
            fresh.metadata.resource_version.unwrap_or_default(),
            fresh.metadata.annotations.unwrap_or_default(),
        ),
        Err(e) => {
            // Report on the cached copy only if it is still current: a stale status
            // (one missing a pending create) must never be written back.
            let mut failed = Applied::failed(None, e.into());
            failed.fresh = Some((
                k.metadata.resource_version.clone().unwrap_or_default(),
                k.status.clone().unwrap_or_default(),
            ));
            return failed;
        }
    };
    let mut run = Run {
        ctx: &ctx,
        k: &k,
        api,
        secrets: Api::namespaced(ctx.client.clone(), &ns),
        recorded,
        rv,
        rotate_request: annotations.get(crate::api::ROTATE_ANNOTATION).cloned(),
        hold_previous: annotations.contains_key(crate::api::REACTIVATE_ANNOTATION),
    };
    if k.spec.management_policy == crate::api::ManagementPolicy::Observe {
        return Applied {
            fresh: Some((run.rv.clone(), run.recorded.clone())),
            ..Applied::from(observe::reconcile(&run).await)
        };
    }
    let result = sync(&mut run).await;
    let fresh = Some((run.rv.clone(), run.recorded.clone()));
    match result {
        Ok((status, message, requeue_after)) => Applied {
            status: Some(status),
            result: Ok(message),
            requeue_after,
            fresh,
            extra: vec![],
        },
        // The recorded status (e.g. a pending create) is kept, only conditions change.
        Err(e) => Applied {
            fresh,
            ..Applied::failed(Some(run.recorded.clone()), e)
        },
    }
}

type Synced = (IamUserAccessKeyStatus, String, Option<std::time::Duration>);

/// Steps one reconcile may take before it must have reached a steady state (the
/// longest path: close a create, heal, retire, set the status, rotate, retire).
const MAX_STEPS: usize = 12;

async fn sync(run: &mut Run<'_>) -> Result<Synced, Error> {
    let (k, ctx) = (run.k, run.ctx);
    // validate (pure): an invalid spec never reaches AWS.
    let schedule = schedule::schedule_scaled(k.spec.rotation.as_ref(), schedule::time_scale())
        .map_err(|e| Error::invalid(Reason::InvalidSpec, e))?;
    // The boundary of the namespace's IamScope, else --required-permissions-boundary.
    let required = crate::trust::current().boundary.clone();
    if let (Some(req), Some(b)) = (&required, &k.spec.permissions_boundary)
        && req != b
    {
        return Err(Error::at(
            Reason::GuardrailViolation,
            "spec.permissionsBoundary",
            format!("must be {req} (--required-permissions-boundary), got {b}"),
        ));
    }
    // resolve: the Secret, the referenced policies, the user.
    let name = secret::secret_name(k);
    let observed = secret::observe(k, &name, run.secrets.get_opt(&name).await?);
    let mut view = match &observed {
        Observed::NotOurs => {
            return Err(Error::at(
                Reason::AlreadyExists,
                "spec.secretName",
                format!(
                    "Secret {name:?} already exists and is not controlled by this IamUserAccessKey; it is left untouched"
                ),
            ));
        }
        Observed::Missing => SecretView::Missing,
        Observed::Ours {
            key,
            shown_id,
            up_to_date,
        } => SecretView::Ours {
            held: key.as_ref().map(|h| h.id.clone()),
            shown: shown_id.clone(),
            up_to_date: *up_to_date,
        },
    };
    let mut held = match observed {
        Observed::Ours { key, .. } => key,
        _ => None,
    };
    let ns = k.namespace().unwrap_or_default();
    let refs = policy_arns(ctx, k, &ns).await?;
    let want = user::DesiredUser {
        tags: ctx.owner(k).desired_tags(&k.spec.tags),
        boundary: k.spec.permissions_boundary.clone().or(required),
        policy_arns: k
            .spec
            .managed_policy_arns
            .iter()
            .cloned()
            .chain(refs)
            .collect(),
    };
    // The groups to join: granted, held to the denied actions, Ready (reads only).
    let groups = groups::desired(ctx, k).await?;
    let user = user::ensure(ctx, k, &want).await?;
    groups::sync(run, &groups, user.owned).await?;

    // observe, then plan and apply one step at a time (decide.rs) until in sync.
    let mut keys = keys::list(&ctx.aws().await, run.user()).await?;
    // The workloads not yet rolled out to the new key, while awaited.
    let mut rolling: Option<(Vec<String>, chrono::DateTime<Utc>)> = None;
    for _ in 0..MAX_STEPS {
        let step = decide(&View {
            recorded: &run.recorded,
            keys: &keys,
            secret: &view,
            secret_name: &name,
            want_active: k.spec.key_status == KeyStatus::Active,
            schedule,
            now: Utc::now(),
            rotate_request: run.rotate_request.as_deref(),
            hold_previous: run.hold_previous,
        });
        tracing::debug!(object = %key_of(k), ?step, "access key step");
        let next = match step {
            Step::Done { next } => next,
            Step::AwaitRollouts { since } => {
                let id = run.recorded.access_key_id.clone().unwrap_or_default();
                let pending = if restarts_workloads(k) {
                    match rollouts_pending(run, &name, &id).await {
                        Ok(pending) => pending,
                        // Workloads that cannot be read (RBAC revoked) must not hold the
                        // previous key for ever either: retried until the bound, then
                        // the grace period starts and the error is what is reported.
                        Err(e)
                            if Utc::now()
                                < since
                                    + chrono::Duration::from_std(schedule::ROLLOUT_BOUND)
                                        .unwrap_or_default() =>
                        {
                            return Err(e);
                        }
                        Err(e) => vec![format!("(the workloads could not be read: {e})")],
                    }
                } else {
                    // restartWorkloads was turned off meanwhile: nothing to await.
                    vec![]
                };
                match schedule::await_rollouts(since, &pending, Utc::now(), schedule::ROLLOUT_BOUND)
                {
                    schedule::Rollouts::Wait { recheck, deadline } => {
                        rolling = Some((pending, deadline));
                        Some(recheck)
                    }
                    schedule::Rollouts::Start { late } => {
                        let mut st = run.recorded.clone();
                        st.grace_started_at = Some(rfc3339(Utc::now()));
                        st.workloads_not_rolled_out = late.clone();
                        run.record(st).await?;
                        if late.is_empty() {
                            run.ctx
                                .event(
                                    k,
                                    false,
                                    "WorkloadsRolledOut",
                                    format!("the workloads reading Secret {name} run access key {id}; the previous key's grace period starts now"),
                                )
                                .await;
                        } else {
                            run.ctx
                                .event(
                                    k,
                                    true,
                                    "WorkloadsNotRolledOut",
                                    format!(
                                        "{} had not rolled out to access key {id} {}s after its delivery; the previous key's grace period starts anyway",
                                        late.join(", "),
                                        schedule::ROLLOUT_BOUND.as_secs()
                                    ),
                                )
                                .await;
                        }
                        continue;
                    }
                }
            }
            Step::LimitExceeded { foreign } => {
                return Err(Error::stalled(
                    Reason::LimitExceeded,
                    format!(
                        "IAM user {} already has 2 access keys, the AWS limit; keys not managed by this object: {}. Delete one to let iamwright create its key",
                        run.user(),
                        foreign.join(", ")
                    ),
                ));
            }
            step => {
                take(run, step, &mut keys, &mut view, &mut held, &name, &user.arn).await?;
                continue;
            }
        };
        // Console sign-in, once the Secret holds the key.
        let console = console::sync(run, &name, &user.arn).await?;
        // report: the settled status, and when to look again.
        let mut st = run.recorded.clone();
        st.console_access = console;
        st.user_arn = Some(user.arn.clone());
        st.secret_name = Some(name.clone());
        // While rollouts are awaited `next` is only the recheck: the next rotation step
        // (the grace period's start) is due at the bound at the latest.
        st.next_rotation_at = match &rolling {
            Some((_, deadline)) => Some(rfc3339(*deadline)),
            None => next.map(rfc3339),
        };
        let (phase, previous) = decide::settled_phase(&st, &keys);
        st.rotation_phase = Some(phase);
        st.previous_key_status = previous;
        if previous.is_none() {
            st.previous_key_last_used_at = None;
        }
        key_hygiene(run, &mut st).await?;
        // Roll the consumers still on another key: checked on every reconcile (Kubernetes
        // reads only; patches only stale templates), so a crash or a refused patch
        // right after a delivery is made up for by the next reconcile.
        if restarts_workloads(k)
            && rolling.is_none()
            && let Some(id) = &st.access_key_id
        {
            restart_workloads(run, &name, id).await?;
        }
        let id = st.access_key_id.clone().unwrap_or_default();
        let mut message = format!(
            "access key {id} of IAM user {} is in Secret {name}",
            run.user()
        );
        if !user.owned {
            message.push_str(" (the user itself is not managed by this object)");
        }
        if console == Some(crate::api::ConsoleAccess::Enabled) {
            message.push_str(&format!(
                "; console sign-in enabled, its password in the same Secret ({})",
                console::PASSWORD_KEY
            ));
        }
        if let Some((pending, deadline)) = &rolling {
            message.push_str(&format!(
                "; waiting for {} to roll out to it: the previous key's grace period starts when they have, at {} at the latest",
                pending.join(", "),
                rfc3339(*deadline)
            ));
        } else if !st.workloads_not_rolled_out.is_empty() && previous.is_some() {
            message.push_str(&format!(
                "; {} had not rolled out to it within {}s, the grace period started anyway",
                st.workloads_not_rolled_out.join(", "),
                schedule::ROLLOUT_BOUND.as_secs()
            ));
        }
        match (&st.previous_access_key_id, previous, next) {
            _ if rolling.is_some() => {}
            (Some(prev), Some(KeyStatus::Active), Some(at)) => message.push_str(&format!(
                "; previous key {prev} stays Active until {}, then Inactive",
                rfc3339(at)
            )),
            (Some(prev), Some(KeyStatus::Inactive), Some(at)) => message.push_str(&format!(
                "; previous key {prev} is Inactive and is deleted at {}",
                rfc3339(at)
            )),
            (Some(prev), Some(_), None) if run.hold_previous => message.push_str(&format!(
                "; previous key {prev} is kept Active ({} is set; remove it to let the rotation go on)",
                crate::api::REACTIVATE_ANNOTATION
            )),
            _ => {}
        }
        let requeue = next.map(|at| {
            at.signed_duration_since(Utc::now())
                .to_std()
                .unwrap_or_default()
                .max(std::time::Duration::from_secs(1))
        });
        return Ok((st, message, requeue));
    }
    Err(Error::Internal(format!(
        "the access key did not settle within {MAX_STEPS} steps"
    )))
}

/// Roll what still needs it, then the workloads not rolled out to `id` yet.
async fn rollouts_pending(run: &Run<'_>, secret: &str, id: &str) -> Result<Vec<String>, Error> {
    restart_workloads(run, secret, id).await?;
    let ns = run.k.namespace().unwrap_or_default();
    Ok(workloads::not_rolled_out(&run.ctx.client, &ns, secret, id).await?)
}

fn restarts_workloads(k: &IamUserAccessKey) -> bool {
    k.spec
        .rotation
        .as_ref()
        .is_some_and(|r| r.restart_workloads)
}

/// Annotate the workloads reading the Secret with the new key id (event
/// `WorkloadsRestarted`). Without the RBAC for it the object says how to grant it.
async fn restart_workloads(run: &Run<'_>, secret: &str, id: &str) -> Result<(), Error> {
    let ns = run.k.namespace().unwrap_or_default();
    match workloads::restart(&run.ctx.client, &ns, secret, id).await {
        Ok(rolled) if rolled.is_empty() => Ok(()),
        Ok(rolled) => {
            run.ctx
                .event(
                    run.k,
                    false,
                    "WorkloadsRestarted",
                    format!(
                        "rolled {} to access key {id} (pod-template annotation {})",
                        rolled.join(", "),
                        workloads::ANNOTATION
                    ),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Error::Waiting {
            field: Some("spec.rotation.restartWorkloads".into()),
            reason: Reason::KubernetesError,
            message: format!(
                "the operator may not list or patch the namespace's Deployments, StatefulSets and DaemonSets ({}); install the chart with rbac.restartWorkloads=true. The new key {id} is in Secret {secret}",
                s.message
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// When each object's key was last asked about its last use: GetAccessKeyLastUsed is
/// read at most once per resync per key, not on every reconcile.
static LAST_USED_READ: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
> = std::sync::LazyLock::new(Default::default);

/// Report when the current key was last used (status.lastUsedAt, lastUsedService).
async fn key_hygiene(run: &Run<'_>, st: &mut IamUserAccessKeyStatus) -> Result<(), Error> {
    let Some(id) = st.access_key_id.clone() else {
        return Ok(());
    };
    let object = key_of(run.k);
    let due = LAST_USED_READ
        .lock()
        .expect("last-used lock")
        .get(&object)
        .is_none_or(|(read_id, at)| *read_id != id || at.elapsed() >= run.ctx.settings.resync);
    if !due {
        return Ok(());
    }
    let used = keys::last_used(&run.ctx.aws().await, &id).await?;
    st.last_used_at = used.as_ref().map(|(at, _)| rfc3339(*at));
    st.last_used_service = used
        .map(|(_, service)| service)
        .filter(|s| !s.is_empty() && s != "N/A");
    if let Some(prev) = st.previous_access_key_id.clone()
        && st.previous_key_status.is_some()
    {
        previous_use(run, st, &prev).await?;
    }
    LAST_USED_READ
        .lock()
        .expect("last-used lock")
        .insert(object, (id, std::time::Instant::now()));
    Ok(())
}

/// Read when the previous key was last used (status.previousKeyLastUsedAt) and warn
/// (`PreviousKeyStillUsed`) on a use after the new key was delivered: AWS's procedure
/// is to confirm the old key is unused before deactivating and deleting it.
async fn previous_use(
    run: &Run<'_>,
    st: &mut IamUserAccessKeyStatus,
    prev: &str,
) -> Result<(), Error> {
    let used = keys::last_used(&run.ctx.aws().await, prev)
        .await?
        .map(|(at, _)| at);
    let before = st.previous_key_last_used_at.clone();
    st.previous_key_last_used_at = used.map(rfc3339);
    let delivered = st
        .key_created_at
        .as_deref()
        .and_then(schedule::parse_rfc3339);
    if let (Some(at), Some(delivered)) = (used, delivered)
        && at > delivered
        && before != st.previous_key_last_used_at
    {
        run.ctx
            .event(
                run.k,
                true,
                "PreviousKeyStillUsed",
                format!(
                    "previous access key {prev} of IAM user {} was used at {} after key {} was delivered: a workload still holds the old key",
                    run.user(),
                    rfc3339(at),
                    st.access_key_id.as_deref().unwrap_or_default()
                ),
            )
            .await;
    }
    Ok(())
}

fn created_of(keys: &[KeyInfo], id: &str) -> Option<chrono::DateTime<Utc>> {
    keys.iter().find(|k| k.id == id).and_then(|k| k.created)
}

/// Apply one step of the state machine and update what was observed to match.
async fn take(
    run: &mut Run<'_>,
    step: Step,
    keys: &mut Vec<KeyInfo>,
    view: &mut SecretView,
    held: &mut Option<KeyMaterial>,
    name: &str,
    user_arn: &str,
) -> Result<(), Error> {
    let (k, ctx) = (run.k, run.ctx);
    match step {
        Step::DeleteOrphans(ids) => {
            for id in &ids {
                keys::delete(&ctx.aws().await, run.user(), id).await?;
                tracing::info!(object = %key_of(k), key = %id, "deleted the orphaned key of an interrupted create");
                ctx.event(
                    k,
                    true,
                    "OrphanKeyDeleted",
                    format!("deleted access key {id} of IAM user {}: it was created by an interrupted reconcile and never reached the Secret", run.user()),
                )
                .await;
            }
            keys.retain(|x| !ids.contains(&x.id));
        }
        Step::CloseCreate {
            delivered,
            retiring,
        } => {
            let mut st = run.recorded.clone();
            if let Some(id) = delivered {
                if let Some(r) = st
                    .pending_key
                    .as_ref()
                    .and_then(|p| p.rotate_request.clone())
                {
                    st.rotate_request = Some(r);
                }
                st.previous_access_key_id = retiring;
                st.key_created_at = created_of(keys, &id).map(rfc3339);
                st.access_key_id = Some(id);
                st.secret_name = Some(name.to_string());
                decide::mark_delivered(&mut st, restarts_workloads(k), Utc::now());
            }
            st.user_arn = Some(user_arn.to_string());
            st.pending_key = None;
            run.record(st).await?;
        }
        Step::Rerender | Step::TakeBack { .. } => {
            let h = held.as_ref().expect("the Secret holds the key");
            if matches!(
                view,
                SecretView::Ours {
                    up_to_date: false,
                    ..
                }
            ) {
                secret::write(&run.secrets, &secret::render(k, name, h)).await?;
            }
            *view = SecretView::Ours {
                held: Some(h.id.clone()),
                shown: Some(h.id.clone()),
                up_to_date: true,
            };
            if let Step::TakeBack { id } = step {
                let mut st = run.recorded.clone();
                st.key_created_at = created_of(keys, &id).map(rfc3339);
                st.access_key_id = Some(id);
                st.secret_name = Some(name.to_string());
                run.record(st).await?;
            }
        }
        Step::Create {
            why,
            free,
            retiring,
        } => {
            let old_name = run.recorded.secret_name.clone();
            create_and_deliver(run, keys, name, &free, retiring, user_arn).await?;
            let new_id = run.recorded.access_key_id.clone().unwrap_or_default();
            *view = SecretView::Ours {
                held: Some(new_id.clone()),
                shown: Some(new_id.clone()),
                up_to_date: true,
            };
            *held = None;
            announce(run, &why, &new_id, name).await;
            if let Why::Heal { .. } | Why::Moved { .. } = why {
                retire(run, keys).await?;
            }
            if let (Why::Moved { .. }, Some(old)) = (&why, old_name) {
                delete_old_secret(run, &old).await?;
            }
        }
        Step::ForgetPrevious => {
            let mut st = run.recorded.clone();
            st.previous_access_key_id = None;
            run.record(st).await?;
        }
        Step::Retire { id } => {
            // The last check of AWS's procedure: was it used since the new key came?
            let mut st = run.recorded.clone();
            previous_use(run, &mut st, &id).await?;
            retire(run, keys).await?
        }
        Step::Deactivate { ref id } | Step::Reactivate { ref id } => {
            let active = matches!(step, Step::Reactivate { .. });
            let id = id.clone();
            let mut st = run.recorded.clone();
            if !active {
                // AWS's procedure: confirm the old key is unused before deactivating.
                previous_use(run, &mut st, &id).await?;
            }
            let want = if active {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            };
            keys::set_status(&ctx.aws().await, run.user(), &id, want).await?;
            for x in keys.iter_mut().filter(|x| x.id == id) {
                x.active = active;
            }
            let (reason, note) = if active {
                (
                    "PreviousKeyReactivated",
                    format!(
                        "previous access key {id} of IAM user {} is Active again ({} is set); it is kept until the annotation is removed",
                        run.user(),
                        crate::api::REACTIVATE_ANNOTATION
                    ),
                )
            } else {
                (
                    "PreviousKeyDeactivated",
                    format!(
                        "previous access key {id} of IAM user {} is now Inactive after the grace period; it is deleted later (annotate {}=<any> to reactivate it meanwhile)",
                        run.user(),
                        crate::api::REACTIVATE_ANNOTATION
                    ),
                )
            };
            ctx.event(k, false, reason, note).await;
            let (phase, previous) = decide::settled_phase(&st, keys);
            st.rotation_phase = Some(phase);
            st.previous_key_status = previous;
            run.record(st).await?;
        }
        Step::SetKeyStatus { id, active } => {
            let want = if active {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            };
            keys::set_status(&ctx.aws().await, run.user(), &id, want).await?;
            for x in keys.iter_mut().filter(|x| x.id == id) {
                x.active = active;
            }
            let reason = if active {
                "KeyActivated"
            } else {
                "KeyDeactivated"
            };
            ctx.event(k, false, reason, format!("access key {id} is now {want:?}"))
                .await;
        }
        Step::Done { .. } | Step::LimitExceeded { .. } | Step::AwaitRollouts { .. } => {
            unreachable!("handled by sync")
        }
    }
    Ok(())
}

/// The event for a new key, by why it was made.
async fn announce(run: &Run<'_>, why: &Why, new_id: &str, name: &str) {
    let (k, ctx, user) = (run.k, run.ctx, run.user());
    let (warning, reason, note) = match why {
        Why::First => (
            false,
            "KeyCreated",
            format!("created access key {new_id} of IAM user {user}; written to Secret {name}"),
        ),
        Why::Moved { from } => (
            false,
            "KeyCreated",
            format!(
                "created access key {new_id} of IAM user {user}; written to Secret {name} (spec.secretName changed from {from})"
            ),
        ),
        Why::Heal { stale } => {
            ctx.metrics.drift_corrected(KIND);
            (
                true,
                "SecretRecreated",
                format!(
                    "the Secret {name} or its key was lost or edited; created access key {new_id} and wrote it to the Secret{}",
                    stale
                        .as_ref()
                        .map(|s| format!("; stale key {s} is deleted"))
                        .unwrap_or_default()
                ),
            )
        }
        Why::Rotate { current } => (
            false,
            "Rotating",
            format!(
                "rotated: access key {new_id} is in Secret {name}; previous key {current} stays active for the grace period"
            ),
        ),
        Why::Requested { current, value } => (
            false,
            "Rotating",
            format!(
                "rotated on request ({}={value}): access key {new_id} is in Secret {name}; previous key {current} follows the rotation procedure (grace period, then Inactive, then deleted; deleted at once without spec.rotation)",
                crate::api::ROTATE_ANNOTATION
            ),
        ),
    };
    ctx.event(k, warning, reason, note).await;
}

/// Create a key and deliver it into the Secret, recording the intent first. `free` are
/// our keys that may be deleted to make room (retiring first); `retiring` becomes
/// `previousAccessKeyId`. On any failure after the create, the new key is deleted.
async fn create_and_deliver(
    run: &mut Run<'_>,
    keys: &mut Vec<KeyInfo>,
    name: &str,
    free: &[String],
    retiring: Option<String>,
    user_arn: &str,
) -> Result<(), Error> {
    let (ctx, k) = (run.ctx, run.k);
    let user = run.user().to_string();
    for id in free {
        if keys.len() < 2 {
            break;
        }
        keys::delete(&ctx.aws().await, &user, id).await?;
        keys.retain(|x| &x.id != id);
        if run.recorded.previous_access_key_id.as_ref() == Some(id) {
            let mut st = run.recorded.clone();
            st.previous_access_key_id = None;
            run.record(st).await?;
        }
    }
    if keys.len() >= 2 {
        let ours: BTreeSet<&String> = free.iter().chain(retiring.iter()).collect();
        let foreign: Vec<&str> = keys
            .iter()
            .filter(|x| !ours.contains(&x.id))
            .map(|x| x.id.as_str())
            .collect();
        return Err(Error::stalled(
            Reason::LimitExceeded,
            format!(
                "IAM user {user} already has 2 access keys, the AWS limit; keys not managed by this object: {}. Delete one to let iamwright create its key",
                foreign.join(", ")
            ),
        ));
    }
    // The Secret must be writable before a key exists that only it can hold.
    secret::check_writable(&run.secrets, k, name)
        .await
        .map_err(|e| secret_not_writable(name, e))?;
    let mut st = run.recorded.clone();
    st.pending_key = Some(PendingKey {
        started_at: rfc3339(Utc::now()),
        keys_before: keys.iter().map(|x| x.id.clone()).collect(),
        created_key_id: None,
        rotate_request: run.rotate_request.clone(),
    });
    run.record(st).await?;

    // No SDK retry here (see keys::create): an error may still mean a key was made,
    // which status.pendingKey lets the next reconcile find and delete.
    let (key, created) = keys::create(&ctx.aws().await, &user).await?;
    tracing::debug!(object = %key_of(k), key = %key.id, "created access key");
    crash_point("after-create-access-key");
    // Name the new key in the record at once, so recovery deletes exactly it. If this
    // write fails the key is still delivered; recovery then falls back to the key set.
    let mut st = run.recorded.clone();
    if let Some(p) = st.pending_key.as_mut() {
        p.created_key_id = Some(key.id.clone());
    }
    st.rotation_phase = Some(crate::api::RotationPhase::Verifying);
    if let Err(e) = run.record(st).await {
        tracing::warn!(object = %key_of(k), error = %e, "recording the created key id failed; delivering it anyway");
    }
    // Verified before delivered: no Secret ever holds a key AWS does not accept. A
    // key that never verifies is deleted (status.pendingKey covers a crash meanwhile).
    if let Err(e) = verify(run, &key, user_arn).await {
        keys::delete(&ctx.aws().await, &user, &key.id).await?;
        let mut st = run.recorded.clone();
        st.pending_key = None;
        st.rotation_phase = Some(decide::settled_phase(&st, keys).0);
        run.record(st).await?;
        ctx.event(
            k,
            true,
            "KeyNotVerified",
            format!(
                "new access key {} of IAM user {user} was deleted: STS GetCallerIdentity did not accept it ({e}); the Secret keeps its key and the creation is retried",
                key.id
            ),
        )
        .await;
        return Err(Error::Waiting {
            field: None,
            reason: Reason::Verifying,
            message: format!(
                "Verifying: new access key {} of IAM user {user} was not accepted by STS GetCallerIdentity within {}s ({e}); it was deleted and is replaced after a backoff",
                key.id,
                VERIFY_WAITS.iter().sum::<std::time::Duration>().as_secs()
            ),
        });
    }
    crash_point("after-verify");
    let written = if failpoint("fail-secret-write") {
        Err(Error::Waiting {
            field: None,
            reason: Reason::AwsError,
            message: "failpoint fail-secret-write: the Secret write failed".into(),
        })
    } else {
        secret::write(&run.secrets, &secret::render(k, name, &key))
            .await
            .map_err(Error::from)
    };
    if let Err(e) = written {
        // An error does not prove the write failed (a timeout after the API server
        // stored it): if the Secret holds the new key, it was delivered.
        let delivered = match run.secrets.get_opt(name).await {
            Ok(s) => matches!(
                secret::observe(k, name, s),
                Observed::Ours { shown_id: Some(id), .. } if id == key.id
            ),
            Err(_) => false,
        };
        if !delivered {
            // Nobody can ever read this key's secret again: delete it now. If that
            // fails too, status.pendingKey stays and the next reconcile deletes it.
            keys::delete(&ctx.aws().await, &user, &key.id).await?;
            let mut st = run.recorded.clone();
            st.pending_key = None;
            run.record(st).await?;
            return Err(e);
        }
        tracing::info!(object = %key_of(k), "the Secret write reported an error but the Secret holds the new key");
    }
    crash_point("after-secret-write");
    keys.push(KeyInfo {
        id: key.id.clone(),
        active: true,
        created: Some(created),
    });
    let mut st = run.recorded.clone();
    // The key being replaced retires; without one (first key, or a key lost in AWS) a
    // previous key still in its grace period stays the one retiring.
    st.previous_access_key_id = retiring
        .or(st.previous_access_key_id.take())
        .filter(|r| keys.iter().any(|x| &x.id == r));
    st.access_key_id = Some(key.id.clone());
    st.key_created_at = Some(rfc3339(created));
    st.secret_name = Some(name.to_string());
    // In the same write as the delivery: a restart never loses the wait or skips it.
    decide::mark_delivered(&mut st, restarts_workloads(k), Utc::now());
    if let Some(r) = st.pending_key.take().and_then(|p| p.rotate_request) {
        st.rotate_request = Some(r);
    }
    st.rotation_phase = Some(decide::settled_phase(&st, keys).0);
    run.record(st).await
}

/// The waits between verification attempts of a new key: IAM takes a few seconds to
/// make a new key usable everywhere (`InvalidClientTokenId` meanwhile).
const VERIFY_WAITS: [std::time::Duration; 5] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(8),
];

/// Check the new key with STS GetCallerIdentity signed with it, until STS names the
/// user or the waits run out. The first refusal is shown in the conditions (reason
/// `Verifying`); success is event `KeyVerified`.
async fn verify(run: &mut Run<'_>, key: &KeyMaterial, user_arn: &str) -> Result<(), String> {
    let mut waits = VERIFY_WAITS.iter();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let problem = match keys::caller_arn(&run.ctx.aws().await, key).await {
            Ok(arn) if keys::is_user(&arn, user_arn) => break,
            Ok(arn) => format!("it answered {arn:?}, not {user_arn}"),
            Err(e) => e.to_string(),
        };
        let Some(wait) = waits.next() else {
            return Err(problem);
        };
        if attempts == 1 {
            let message = format!(
                "Verifying: new access key {} of IAM user {} is not accepted by STS GetCallerIdentity yet ({problem}); IAM propagates new keys within seconds, retried for up to {}s before it is written to the Secret",
                key.id,
                run.user(),
                VERIFY_WAITS.iter().sum::<std::time::Duration>().as_secs()
            );
            if let Err(e) = run.progress(Reason::Verifying, message).await {
                tracing::debug!(object = %key_of(run.k), error = %e, "showing the verification wait failed");
            }
        }
        tokio::time::sleep(*wait).await;
    }
    run.ctx
        .event(
            run.k,
            false,
            "KeyVerified",
            format!(
                "new access key {} of IAM user {} verified with STS GetCallerIdentity (attempt {attempts})",
                key.id,
                run.user()
            ),
        )
        .await;
    Ok(())
}

/// Why the Secret cannot be written, as the object shows it: a refused name or
/// content is the spec's to fix (`Stalled`); a quota or an admission webhook may
/// change on its own, so that is retried with backoff.
fn secret_not_writable(name: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => Error::at(
            Reason::InvalidSpec,
            "spec.secretName",
            format!(
                "Secret {name:?} cannot be written: {}; no access key was created",
                s.message
            ),
        ),
        kube::Error::Api(s) => Error::Waiting {
            field: Some("spec.secretName".into()),
            reason: Reason::KubernetesError,
            message: format!(
                "Secret {name:?} cannot be written now ({} {}): {}; no access key is created until it can",
                s.code, s.reason, s.message
            ),
        },
        _ => Error::Kube(e),
    }
}

/// Deactivate and delete the previous key, and forget it.
async fn retire(run: &mut Run<'_>, keys: &mut Vec<KeyInfo>) -> Result<(), Error> {
    let Some(prev) = run.recorded.previous_access_key_id.clone() else {
        return Ok(());
    };
    let user = run.user().to_string();
    if let Some(info) = keys.iter().find(|x| x.id == prev) {
        if info.active {
            keys::set_status(&run.ctx.aws().await, &user, &prev, KeyStatus::Inactive).await?;
        }
        keys::delete(&run.ctx.aws().await, &user, &prev).await?;
        run.ctx
            .event(
                run.k,
                false,
                "PreviousKeyDeleted",
                format!("deleted previous access key {prev} of IAM user {user}"),
            )
            .await;
    }
    keys.retain(|x| x.id != prev);
    let mut st = run.recorded.clone();
    st.previous_access_key_id = None;
    run.record(st).await
}

/// After a change of spec.secretName, the old Secret (if still ours) goes.
async fn delete_old_secret(run: &mut Run<'_>, old: &str) -> Result<(), Error> {
    if let Observed::Ours { .. } = secret::observe(run.k, old, run.secrets.get_opt(old).await?) {
        match run.secrets.delete(old, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Delete the key(s) this object made, and the user when owned (unless retained).
/// Keys on a user we do not own that we did not make are never touched.
async fn cleanup(k: Arc<IamUserAccessKey>, ctx: Arc<Context>) -> Result<(), Error> {
    LAST_USED_READ
        .lock()
        .expect("last-used lock")
        .remove(&key_of(&*k));
    if k.spec.management_policy == crate::api::ManagementPolicy::Observe {
        tracing::info!(object = %key_of(&*k), "observe-only: nothing deleted in AWS");
        return Ok(());
    }
    let aws = &ctx.aws().await;
    let ns = k.namespace().unwrap_or_default();
    let api: Api<IamUserAccessKey> = Api::namespaced(ctx.client.clone(), &ns);
    let recorded = match api.get_opt(&k.name_any()).await? {
        Some(fresh) => fresh.status.unwrap_or_default(),
        None => return Ok(()),
    };
    let user = &k.spec.user_name;
    let keys = match keys::list(aws, user).await {
        Ok(keys) => keys,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = recorded
        .secret_name
        .clone()
        .unwrap_or_else(|| secret::secret_name(&k));
    let in_secret = match secret::observe(&k, &name, secrets.get_opt(&name).await?) {
        Observed::Ours { shown_id, .. } => shown_id,
        _ => None,
    };
    // An orphan of an interrupted create is deleted even when retained: no Secret holds it.
    if let Some(p) = &recorded.pending_key {
        for x in keys
            .iter()
            .filter(|x| keys::is_orphan(p, x, in_secret.as_deref()))
        {
            keys::delete(aws, user, &x.id).await?;
        }
    }
    if k.spec.deletion_policy == DeletionPolicy::Retain {
        // The retained key stays usable only through its Secret: keep that too.
        secret::release(&secrets, &name).await?;
        ctx.event(
            &*k,
            false,
            "Retained",
            format!("IAM user {user}, its access key and the Secret {name} retained (deletionPolicy: Retain)"),
        )
        .await;
        return Ok(());
    }
    let ours: BTreeSet<String> = recorded
        .access_key_id
        .iter()
        .chain(recorded.previous_access_key_id.iter())
        .chain(in_secret.iter())
        .cloned()
        .collect();
    let owned = ctx.owner(&*k).ownership(&user::list_tags(aws, user).await?) == Ownership::Ours;
    if owned {
        user::delete(aws, user).await?;
        ctx.event(
            &*k,
            false,
            "Deleted",
            format!("deleted IAM user {user} and its access keys"),
        )
        .await;
    } else {
        for x in keys.iter().filter(|x| ours.contains(&x.id)) {
            keys::delete(aws, user, &x.id).await?;
        }
        // The memberships this object made; the others are not its to end.
        groups::leave_recorded(aws, user, &recorded.groups).await?;
        // And the console sign-in it enabled.
        if recorded.console_access == Some(crate::api::ConsoleAccess::Enabled)
            || recorded.console_password_pending.is_some()
        {
            console::delete_profile(aws, user).await?;
        }
        ctx.event(
            &*k,
            false,
            "Deleted",
            format!("deleted the access key(s) of IAM user {user}"),
        )
        .await;
    }
    Ok(())
}
