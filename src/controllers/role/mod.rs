//! IamRole: a role with its trust policy, attached and inline policies, boundary, tags
//! and (optionally) its own instance profile. Attachments and inline policies are
//! managed exclusively.
//!
//! One reconcile: resolve → build (`spec`) → observe (`io`) → plan (`plan`) → apply
//! (`io`) → report. `managementPolicy: Observe` stops after the plan and reports it.

pub mod credentials;
mod io;
mod plan;
mod spec;

pub use spec::{inline_documents, role_name, trust_policy, validate};

use std::sync::Arc;

use kube::ResourceExt;

use super::changes::{Changes, in_sync};
use super::claim::Claim;
use super::documents;
use super::lifecycle::{self, First, Sought, find_or_create};
use super::reconciler::{Applied, reconcile, run_controller};
use super::refs::{names, own_policy_arns, referencing, resolve_policy_refs};
use super::{Context, Error, Shutdown, observe};
use crate::api::{IamRole, IamRoleSpec, IamRoleStatus, ManagementPolicy};
use crate::aws::Ownership;
use crate::aws::snapshot::fingerprint;
use crate::trust::eks::Account;
use aws_sdk_iam::types::Role;
use plan::{Observed, Write};
use spec::Desired;

/// Run the IamRole controller until shutdown. A change to a referenced IamPolicy (it
/// becomes Ready, its ARN changes) re-triggers the roles that reference it.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let watched = ctx.clone();
    run_controller::<IamRole, _, _>(
        ctx,
        shutdown,
        |obj, ctx| reconcile(obj, ctx, apply, cleanup),
        move |c, scope| {
            let store = c.store();
            let policies = watched.role_policies.watch(&client, scope);
            let c = c.watches_stream(policies, move |p| {
                referencing(&store, &p, |r: &IamRole| names(&r.spec.policy_refs))
            });
            documents::watch_config_maps(c, watched.clone(), scope, documents::role_config_maps)
        },
    )
    .await;
}

/// Reconcile one role; errors become conditions. Unknown actions are reported
/// (condition + warning event), never held back.
async fn apply(r: Arc<IamRole>, ctx: Arc<Context>) -> Applied<IamRoleStatus> {
    // The documents as AWS gets them: from their ConfigMaps, variables replaced.
    let spec = match documents::role_spec(&ctx, &r).await {
        Ok(spec) => spec,
        Err(e) => return Applied::failed(None, e),
    };
    let docs = documents::role_documents(&spec);
    let recognized =
        crate::policy::actions_recognized(docs.iter().map(|(field, doc)| (field.clone(), doc)));
    Applied::from(sync(&r, &spec, &ctx).await).with_extra(recognized)
}

/// `spec`: the object's spec with its documents resolved (`documents::role_spec`).
async fn sync(
    r: &IamRole,
    spec: &IamRoleSpec,
    ctx: &Context,
) -> Result<Applied<IamRoleStatus>, Error> {
    let observe_only = r.spec.management_policy == ManagementPolicy::Observe;
    let (refs, account) = resolve(r, spec, ctx).await?;
    let mut d = build(r, spec, ctx, &refs, account.as_ref()).await?;
    let Some(Found {
        mut seen,
        created,
        shared,
    }) = observe_role(r, ctx, &d).await?
    else {
        return Err(observe::not_found(&format!("role {}", d.name)));
    };
    if observe_only {
        observe::user_tags_only(&mut d.tags);
        observe::user_tags_only(&mut seen.tags);
    }
    let writes = plan::plan(&d, &seen);
    if observe_only {
        let status = status_of(&seen, seen.attached.clone(), profile_arn(&seen));
        let fields = plan::drifted_fields(&writes);
        return Ok(observe::report(
            &format!("role {}", seen.arn),
            status,
            &fields,
        ));
    }
    let profile = apply_writes(r, ctx, &d, &seen, created, &writes).await?;
    if !shared {
        // In sync now, as this process saw it: the next resync needs no read of it,
        // also when the current snapshot is older than this.
        let aws = ctx.aws().await;
        aws.snapshot.saw_in_sync(&entity(&d), fingerprint(&d));
    }
    let mut status = status_of(&seen, d.attached.clone(), profile);
    let mut message = format!("role {} is in sync", seen.arn);
    let mut requeue_after = None;
    if let Some(c) = &r.spec.credentials {
        let (expire, refresh_in) = credentials::ensure(r, ctx, &seen.arn, c).await?;
        message.push_str(&format!(
            "; session credentials in Secret {} expire at {expire}",
            c.secret_name
        ));
        status.credentials_expire_at = Some(expire);
        requeue_after = Some(refresh_in);
    }
    Ok(Applied {
        requeue_after,
        ..Applied::synced(status, message)
    })
}

/// Resolve: the `policyRefs` to ARNs (waiting for each IamPolicy to be Ready), the
/// governance's list of attachable managed policies, and the account when a generated
/// trust statement names it (IRSA).
async fn resolve(
    r: &IamRole,
    spec: &IamRoleSpec,
    ctx: &Context,
) -> Result<(Vec<String>, Option<Account>), Error> {
    let ns = r.namespace().unwrap_or_default();
    let refs = resolve_policy_refs(
        &ctx.role_policies,
        &ctx.client,
        &ns,
        "spec.policyRefs",
        &r.spec.policy_refs,
    )
    .await?;
    let gov = crate::trust::current();
    let own = own_policy_arns(&ctx.client, &ns, &gov).await?;
    gov.check_managed_arns("spec.managedPolicyArns", &r.spec.managed_policy_arns, &own)?;
    let account = io::account_if_needed(spec, ctx).await?;
    Ok((refs, account))
}

/// Build: the desired role from the spec (pure), then the deny-action guardrail on the
/// managed policies it attaches (their documents are read, and cached).
async fn build(
    r: &IamRole,
    spec: &IamRoleSpec,
    ctx: &Context,
    refs: &[String],
    account: Option<&Account>,
) -> Result<Desired, Error> {
    // spec.credentials: the operator itself may assume the role, under the object's
    // session name only. The statement is part of the desired trust in Observe too, so
    // a role that would not let the operator in shows as drift there.
    let operator = match &r.spec.credentials {
        Some(_) => Some(ctx.aws().await.principal().await?),
        None => None,
    };
    let d = spec::desired(r, spec, ctx, refs, account, operator.as_deref())?;
    ctx.check_managed_policies(&r.spec.managed_policy_arns)
        .await?;
    Ok(d)
}

/// A role as observed (see [`lifecycle::Observation`]).
type Found = lifecycle::Observation<Observed>;

/// Observe: the role as AWS holds it, and what this object may do with it. On its
/// first reconcile that reaches AWS (no ARN in status) a managed role is created at once, with no
/// read that would only answer NotFound; a name already taken falls back to the
/// ownership claim. None: the role does not exist and is not to be created (Observe).
async fn observe_role(r: &IamRole, ctx: &Context, d: &Desired) -> Result<Option<Found>, Error> {
    if let Some(seen) = snapshot_view(r, ctx, d).await? {
        return Ok(Some(Found::shared(seen)));
    }
    let aws = &ctx.aws().await;
    let sought = Sought::new("role", "CreateRole", &d.name, First::Create);
    let get = || io::get_role(aws, &d.name);
    let create = || io::create_role(aws, d);
    let claimed = |role: Role| async move {
        claim_of(r, ctx, &io::tags_of(&role), &role.arn, "role").await?;
        Ok(io::observe(aws, d, &role).await?)
    };
    let (mut seen, created) = match find_or_create(r, ctx, sought, get, create, claimed).await? {
        None => return Ok(None),
        Some(lifecycle::Found::Claimed(seen)) => (seen, false),
        Some(lifecycle::Found::Created(role)) => {
            (Observed::created(d, role.arn, role.role_id), true)
        }
    };
    let had_profile = r
        .status
        .as_ref()
        .is_some_and(|s| s.instance_profile_arn.is_some());
    if d.instance_profile || had_profile {
        seen.profile = match io::get_profile(aws, &d.name).await? {
            // A profile the spec does not want is removed only when it is ours.
            Some(p) if !d.instance_profile => {
                (ctx.owner(r).ownership(&p.tags) == Ownership::Ours).then_some(p)
            }
            Some(p) => {
                claim_of(r, ctx, &p.tags, &p.arn, "instance profile").await?;
                Some(p)
            }
            None => None,
        };
    }
    Ok(Some(Found {
        seen,
        created,
        shared: false,
    }))
}

/// Resync at the cost of pages: a role in sync for its generation is compared with the
/// account snapshot (shared by every object, taken at most once per resync period) and
/// costs no read of its own when they agree. A role this process saw in sync after the
/// snapshot began (it was created during a converge) is taken as it saw it. A stale
/// snapshot can only disagree, which falls back to the role's own reads; it never
/// hides a write the spec needs.
async fn snapshot_view(r: &IamRole, ctx: &Context, d: &Desired) -> Result<Option<Observed>, Error> {
    // A profile being given up needs its ownership read, which the snapshot lacks.
    let had_profile = r
        .status
        .as_ref()
        .is_some_and(|s| s.instance_profile_arn.is_some());
    if !in_sync(r) || (had_profile && !d.instance_profile) {
        return Ok(None);
    }
    let aws = ctx.aws().await;
    let snap = aws.snapshot.get(&aws, ctx.settings.resync).await?;
    let agrees = |seen: &Observed| plan::plan(d, seen).is_empty();
    let in_snapshot = snap
        .roles
        .get(&d.name)
        .and_then(|entry| io::from_snapshot(entry, d, d.instance_profile))
        .filter(agrees);
    Ok(in_snapshot.or_else(|| {
        let status = r.status.as_ref()?;
        let seen = aws.snapshot.seen_in_sync(&entity(d), fingerprint(d));
        seen.then(|| Observed::in_sync(d, status))
            .flatten()
            .filter(agrees)
    }))
}

/// The role's key among what the snapshot cache has seen.
fn entity(d: &Desired) -> String {
    format!("role/{}", d.name)
}

/// The shared ownership claim, with the `Adopted` event when it adopts.
async fn claim_of(
    r: &IamRole,
    ctx: &Context,
    tags: &std::collections::BTreeMap<String, String>,
    arn: &str,
    what: &str,
) -> Result<Claim, Error> {
    let ownership = ctx.owner(r).ownership(tags);
    lifecycle::claim_of(r, ctx, &ownership, &format!("{what} {arn}")).await
}

/// Apply: the planned writes in order; the changes made before a failure are reported
/// too (one event). Returns the ARN of the role's instance profile afterwards.
async fn apply_writes(
    r: &IamRole,
    ctx: &Context,
    d: &Desired,
    seen: &Observed,
    created: bool,
    writes: &[Write],
) -> Result<Option<String>, Error> {
    // Right after a create the `Created` event says it all.
    let mut changes = if created {
        Changes::quiet(ctx, r)
    } else {
        Changes::new(ctx, r)
    };
    let mut profile = profile_arn(seen);
    for w in writes {
        let made = io::write(&ctx.aws().await, d, w).await;
        // An inline policy from a ConfigMap that changed is an update, not drift.
        let followed = matches!(w, Write::PutInline(n) if d.inline_from.contains(n));
        match (changes.record(made, followed, || w.note(d)).await?, w) {
            (Some(arn), _) => profile = Some(arn),
            (None, Write::DeleteProfile) => profile = None,
            _ => {}
        }
    }
    changes.publish().await;
    Ok(profile)
}

fn profile_arn(seen: &Observed) -> Option<String> {
    seen.profile.as_ref().map(|p| p.arn.clone())
}

/// Report: the identity fields of the status.
fn status_of(seen: &Observed, attached: Vec<String>, profile: Option<String>) -> IamRoleStatus {
    IamRoleStatus {
        arn: Some(seen.arn.clone()),
        role_id: Some(seen.role_id.clone()),
        attached_policy_arns: attached,
        instance_profile_arn: profile,
        ..Default::default()
    }
}

/// Delete the role unless retained or only observed: its own instance profile, then
/// take it out of every other profile, detach its policies, delete its inline policies,
/// then the role. A role or profile this object does not own is left.
async fn cleanup(r: Arc<IamRole>, ctx: Arc<Context>) -> Result<(), Error> {
    let aws = &ctx.aws().await;
    let name = role_name(&r);
    let what = format!("role {name}");
    if lifecycle::kept(&*r, &ctx, &what).await {
        return Ok(());
    }
    let owner = ctx.owner(&*r);
    if let Some(profile) = io::get_profile(aws, &name).await?
        && owner.ownership(&profile.tags) == Ownership::Ours
    {
        for role in &profile.roles {
            io::remove_from_profile(aws, &name, role).await?;
        }
        io::delete_profile(aws, &name).await?;
    }
    let found = io::get_role(aws, &name).await?.map(|role| {
        let tags = io::tags_of(&role);
        (role, tags)
    });
    let Some(role) = lifecycle::owned(&*r, &ctx, &what, found) else {
        return Ok(());
    };
    for profile in io::list_profiles(aws, &name).await? {
        io::remove_from_profile(aws, &profile, &name).await?;
    }
    for arn in io::list_attached(aws, &name).await? {
        io::detach(aws, &name, &arn).await?;
    }
    for policy in io::list_inline(aws, &name).await? {
        io::delete_inline(aws, &name, &policy).await?;
    }
    io::delete_role(aws, &name).await?;
    ctx.event(&*r, false, "Deleted", format!("deleted role {}", role.arn))
        .await;
    Ok(())
}
