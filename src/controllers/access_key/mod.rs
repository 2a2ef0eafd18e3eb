//! IamUserAccessKey: an IAM user's access key, delivered into a Secret, healed and
//! rotated without ever losing or leaking a key. The design (crash safety, the rotation
//! state machine) is written down in docs/access-keys.md.
//!
//! Every reconcile: validate the spec (no I/O), read the Secret and the referenced
//! policies, ensure the user, then bring the key to the spec — recovering an
//! interrupted create first, healing a lost Secret or key, applying keyStatus, and
//! taking the rotation step that is due.
//!
//! The modules, in the order a reconcile uses them: `validate` (pure, shared with
//! `iamwright validate`), `resolve` (the Secret, the policies), `user` and `groups`,
//! `converge` (asks `decide` for the next step until settled; `steps` and `create`
//! apply them, `rollouts` awaits the workloads; `state` holds what it observed and
//! where the key rests), `console`, `report` (the settled status and message, with
//! `hygiene`'s last-used reads, remembered in `last_used`), and `cleanup` on deletion.
//! `run` is one reconcile's view of the object and its status writes.

mod cleanup;
mod console;
mod converge;
mod create;
mod decide;
mod failpoints;
mod groups;
mod hygiene;
mod keys;
mod last_used;
mod observe;
mod report;
mod resolve;
mod rollouts;
mod run;
pub mod schedule;
mod secret;
mod state;
mod steps;
pub mod user;
mod validate;
mod workloads;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::reconciler::{Applied, reconcile, run_controller, scoped_api};
use super::refs::{names, referencing};
use super::{Context, Error, Shutdown};
use crate::api::{IamUserAccessKey, IamUserAccessKeyStatus};
use last_used::LastUsedReads;
use run::Run;
pub use validate::{Validated, validate};

pub const KIND: &str = "IamUserAccessKey";

/// Run the IamUserAccessKey controller until shutdown. Owned Secrets are watched so a
/// deleted or edited Secret is healed at once, and IamPolicies so policyRefs follow.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let keys_ctx = ctx.clone();
    // The controller's own memory of the last-used reads, shared by its reconciles.
    let last_used = Arc::new(LastUsedReads::default());
    run_controller::<IamUserAccessKey, _, _>(
        ctx,
        shutdown,
        move |obj, ctx| {
            let (reads, forget) = (last_used.clone(), last_used.clone());
            reconcile(
                obj,
                ctx,
                move |k, ctx| apply(k, ctx, reads),
                move |k, ctx| cleanup::cleanup(k, ctx, forget),
            )
        },
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

/// Reconcile on a fresh copy of the object: the status as last written decides, never
/// a cached one that may miss a key just created.
async fn apply(
    k: Arc<IamUserAccessKey>,
    ctx: Arc<Context>,
    last_used: Arc<LastUsedReads>,
) -> Applied<IamUserAccessKeyStatus> {
    let ns = k.namespace().unwrap_or_default();
    let api: Api<IamUserAccessKey> = Api::namespaced(ctx.client.clone(), &ns);
    let fresh = match api.get(&k.name_any()).await {
        Ok(fresh) => fresh,
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
    let mut run = Run::new(&ctx, &k, api, fresh, &last_used);
    if k.spec.management_policy == crate::api::ManagementPolicy::Observe {
        return Applied {
            fresh: Some((run.rv.clone(), run.recorded.clone())),
            ..Applied::from(observe::reconcile(&run).await)
        };
    }
    let result = sync(&mut run).await;
    let fresh = Some((run.rv.clone(), run.recorded.clone()));
    match result {
        Ok(applied) => Applied { fresh, ..applied },
        // The recorded status (e.g. a pending create) is kept, only conditions change.
        Err(e) => Applied {
            fresh,
            ..Applied::failed(Some(run.recorded.clone()), e)
        },
    }
}

/// One reconcile of a managed key, as named steps: validate → resolve → the user and
/// its groups → converge the key → console sign-in → report.
async fn sync(run: &mut Run<'_>) -> Result<Applied<IamUserAccessKeyStatus>, Error> {
    let (k, ctx) = (run.k, run.ctx);
    // validate (pure): an invalid spec never reaches AWS.
    let valid = validate(&k.spec, &crate::trust::current())?;
    let schedule = valid.schedule.map(|s| s.scaled(schedule::time_scale()));
    // resolve: the Secret, the referenced policies, the groups to join (reads only).
    let name = secret::secret_name(k);
    let (secret, held) = resolve::secret(run, &name).await?;
    let want = resolve::desired_user(ctx, k, valid.boundary).await?;
    let groups = groups::desired(ctx, k).await?;
    // apply: the user and its memberships, then the key one step at a time.
    let user = user::ensure(ctx, k, &want).await?;
    groups::sync(run, &groups, user.owned).await?;
    let mut seen = state::Observation {
        keys: keys::list(&ctx.aws().await, run.user()).await?,
        secret,
        held,
    };
    let settled = converge::converge(run, &mut seen, &name, &user.arn, schedule).await?;
    // Console sign-in, once the Secret holds the key.
    let console = console::sync(run, &name, &user.arn).await?;
    // report: the settled status, its message, and when to look again.
    report::report(run, &name, &user, console, &seen.keys, settled).await
}
