//! InstanceProfileBinding: an owned instance profile holding one role, associated with
//! every EC2 instance the spec targets (by id and/or tag), re-evaluated every
//! `--instance-resync-interval`.
//!
//! One reconcile: validate → resolve the role → build → observe (IAM `io`, EC2
//! `instances`) → plan (`plan`) → apply → report (`plan::report`).
//! `managementPolicy: Observe` stops after the plan and reports it.

mod io;
mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::changes::Changes;
use super::instances::{self, Association, Targets};
use super::lifecycle::{self, First, Sought, find_or_create};
use super::reconciler::{Applied, reconcile, run_controller};
use super::refs::referencing;
use super::{Context, Error, Shutdown, governed_name, key_of, observe};
use crate::api::{
    InstanceProfileBinding, InstanceProfileBindingSpec, InstanceProfileBindingStatus,
    ManagementPolicy,
};
use crate::aws::{self, Aws, AwsError, Ownership};
use crate::reason::Reason;
use plan::{AssocWrite, Desired, Pending, Profile, ProfileWrite};

/// While EC2 reports an association as still in progress, look again this soon.
const ASSOCIATING_RECHECK: Duration = Duration::from_secs(5);

/// What the controller keeps between reconciles.
#[derive(Default)]
struct State {
    /// Objects whose last apply ended in a condition only EC2 can clear (a conflicting
    /// profile, an unknown instance): they are re-checked every instance resync rather
    /// than on the error backoff.
    recheck: Mutex<HashMap<String, Duration>>,
    /// One EC2 client per region (`None`: the operator's region).
    ec2: Mutex<HashMap<Option<String>, aws_sdk_ec2::Client>>,
    /// Each region's instances and associations, shared by every binding.
    views: instances::Views,
}

impl State {
    fn ec2(&self, aws: &Aws, region: Option<&str>) -> aws_sdk_ec2::Client {
        let mut clients = self.ec2.lock().expect("ec2 clients lock");
        clients
            .entry(region.map(str::to_string))
            .or_insert_with(|| aws.ec2(region))
            .clone()
    }
}

/// Run the InstanceProfileBinding controller until shutdown. A change to an IamRole
/// (it becomes Ready, it is deleted) re-triggers the bindings whose roleRef names it.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let roles = ctx.binding_roles.clone();
    let state = Arc::new(State::default());
    run_controller::<InstanceProfileBinding, _, _>(
        ctx,
        shutdown,
        move |obj, ctx| {
            let state = state.clone();
            async move {
                let key = key_of(&*obj);
                let (s1, s2) = (state.clone(), state.clone());
                let action = reconcile(
                    obj,
                    ctx,
                    move |o, c| apply(o, c, s1),
                    move |o, c| cleanup(o, c, s2),
                )
                .await?;
                let recheck = state.recheck.lock().expect("recheck lock").remove(&key);
                Ok(recheck.map(Action::requeue).unwrap_or(action))
            }
        },
        move |c, scope| {
            let store = c.store();
            let watched = roles.watch(&client, scope);
            c.watches_stream(watched, move |role| {
                referencing(&store, &role, |b: &InstanceProfileBinding| {
                    b.spec.role_ref.iter().map(|r| r.name.as_str()).collect()
                })
            })
        },
    )
    .await;
}

/// The AWS name of a binding's instance profile.
pub fn profile_name(b: &InstanceProfileBinding) -> String {
    governed_name(
        b.spec.instance_profile_name.as_deref(),
        b.status
            .as_ref()
            .and_then(|s| s.instance_profile_arn.as_deref()),
        &b.namespace().unwrap_or_default(),
        &b.name_any(),
        128,
    )
}

/// Reconcile one binding. A conflict or an unknown instance keeps the status EC2
/// reported and is looked at again every instance resync.
async fn apply(
    b: Arc<InstanceProfileBinding>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Applied<InstanceProfileBindingStatus> {
    let applied = Applied::from(sync(&b, &ctx, &state).await);
    if let Err(e) = &applied.result
        && (matches!(e, Error::Reference { .. })
            || matches!(e, Error::Waiting { reason, .. } if matches!(
                reason,
                Reason::InstanceConflict | Reason::DependencyNotReady | Reason::NotPermitted
            )))
    {
        let resync = ctx.settings.instance_resync;
        let mut recheck = state.recheck.lock().expect("recheck lock");
        recheck.insert(key_of(&*b), resync);
    }
    applied
}

async fn sync(
    b: &InstanceProfileBinding,
    ctx: &Context,
    state: &State,
) -> Result<Applied<InstanceProfileBindingStatus>, Error> {
    let observe_only = b.spec.management_policy == ManagementPolicy::Observe;
    validate(&b.spec)?;
    let role = resolve_role(b, ctx).await?;
    let d = desired(b, ctx, role)?;
    let Some(Found { profile, created }) = observe_profile(b, ctx, &d).await? else {
        return Err(observe::not_found(&format!("instance profile {}", d.name)));
    };
    let aws = &ctx.aws().await;
    let ec2 = state.ec2(aws, b.spec.region.as_deref());
    let (region, targets, mut assocs) = observe_instances(ctx, state, &ec2, b).await?;
    let to_check = plan::profiles_to_check(&profile.arn, &targets, &assocs, d.replace_existing);
    let owners = other_owners(aws, ctx, b, &to_check).await?;
    if observe_only {
        return Ok(observed(d, profile, &targets, &assocs, &owners));
    }
    let profile_writes = plan::plan_profile(&d, &profile);
    let (assoc_writes, pending) =
        plan::plan_associations(&profile.arn, &targets, &assocs, d.replace_existing, &owners);
    apply_profile(b, ctx, &d, &profile, created, &profile_writes).await?;
    let bound = apply_associations(aws, ctx, b, &ec2, &profile.arn, &assoc_writes, pending).await;
    if bound.wrote {
        // Report what EC2 says now, not what we asked for.
        assocs = instances::associations(aws, &ec2).await?;
        state
            .views
            .update_associations(&region, assocs.clone())
            .await;
    }
    let mut r = plan::report(&profile.arn, &d.role, &targets, &assocs, &bound.pending);
    // An AWS error on one instance is reported as such (and retried with backoff).
    if let Some(e) = bound.errors.into_iter().next() {
        r.problem = Some(Error::Aws(e));
    }
    Ok(report(r, ctx.settings.instance_resync))
}

/// Observe only: the plan's writes as drifted fields, nothing written.
fn observed(
    mut d: Desired,
    mut profile: Profile,
    targets: &Targets,
    assocs: &BTreeMap<String, Association>,
    owners: &BTreeMap<String, String>,
) -> Applied<InstanceProfileBindingStatus> {
    observe::user_tags_only(&mut d.tags);
    observe::user_tags_only(&mut profile.tags);
    let profile_writes = plan::plan_profile(&d, &profile);
    let (assoc_writes, pending) =
        plan::plan_associations(&profile.arn, targets, assocs, d.replace_existing, owners);
    let fields = observe::fields(
        profile_writes.iter().map(|w| w.field(&d)).chain(
            assoc_writes
                .iter()
                .map(|_| "spec.instanceIds/spec.instanceSelector".into()),
        ),
    );
    let r = plan::report(&profile.arn, &d.role, targets, assocs, &pending);
    let what = format!("instance profile {}", profile.arn);
    observe::report(&what, r.status, &fields)
}

/// Report: Ready with the next look (sooner while an association is on its way), or
/// the first problem.
fn report(r: plan::Report, resync: std::time::Duration) -> Applied<InstanceProfileBindingStatus> {
    match r.problem {
        None => Applied {
            requeue_after: Some(if r.associating {
                resync.min(ASSOCIATING_RECHECK)
            } else {
                resync
            }),
            ..Applied::synced(r.status, r.message)
        },
        Some(e) => Applied::failed(Some(r.status), e),
    }
}

/// Validate: the CRD's CEL rules again (an object stored before them, or a client
/// that skipped them). Pure; `iamwright validate` calls it too.
pub fn validate(spec: &InstanceProfileBindingSpec) -> Result<(), Error> {
    if spec.role_ref.is_some() == spec.role_name.is_some() {
        return Err(Error::at(
            Reason::InvalidSpec,
            "spec",
            crate::crds::BINDING_ROLE_ONE_OF,
        ));
    }
    if spec.instance_ids.is_empty() && spec.instance_selector.is_none() {
        return Err(Error::at(
            Reason::InvalidSpec,
            "spec",
            crate::crds::BINDING_INSTANCES_REQUIRED,
        ));
    }
    Ok(())
}

/// Build: the profile as the spec wants it, under the namespace's governance. Pure.
fn desired(b: &InstanceProfileBinding, ctx: &Context, role: String) -> Result<Desired, Error> {
    let gov = crate::trust::current();
    let name = profile_name(b);
    gov.check_name("spec.instanceProfileName", &name)?;
    Ok(Desired {
        path: gov.path(&b.spec.path)?,
        name,
        tags: ctx.owner(b).desired_tags(&b.spec.tags),
        role,
        role_field: if b.spec.role_ref.is_some() {
            "spec.roleRef"
        } else {
            "spec.roleName"
        },
        replace_existing: b.spec.replace_existing,
    })
}

/// Resolve: the AWS role name the binding puts in its profile.
async fn resolve_role(b: &InstanceProfileBinding, ctx: &Context) -> Result<String, Error> {
    let Some(r) = &b.spec.role_ref else {
        let name = b.spec.role_name.clone().unwrap_or_default();
        check_role_name(b, ctx, &name).await?;
        return Ok(name);
    };
    // From the role watch's index (a GET until it has listed).
    let ns = b.namespace().unwrap_or_default();
    let state = ctx.binding_roles.resolve(&ctx.client, &ns, &r.name).await?;
    let arn = state.ready_arn(&format!("spec.roleRef: IamRole {:?}", r.name))?;
    Ok(arn.rsplit('/').next().unwrap_or_default().to_string())
}

/// `spec.roleName` may name only a role of this namespace (its ownership tags name this
/// cluster and namespace) unless the platform granted the role. A missing role is left
/// to AddRoleToInstanceProfile, which reports it.
async fn check_role_name(
    b: &InstanceProfileBinding,
    ctx: &Context,
    name: &str,
) -> Result<(), Error> {
    let gov = crate::trust::current();
    if gov.role_granted(name) {
        return Ok(());
    }
    let Some(tags) = io::role_tags(&ctx.aws().await, name).await? else {
        return Ok(());
    };
    let ns = b.namespace().unwrap_or_default();
    if tags.get(aws::OWNER_CLUSTER) == Some(&ctx.settings.cluster_name)
        && tags.get(aws::OWNER_NAMESPACE) == Some(&ns)
    {
        return Ok(());
    }
    Err(Error::at(
        Reason::NotPermitted,
        "spec.roleName",
        format!(
            "role {name:?} was not created by an iamwright object of namespace {ns}; binding it needs a grant (IamScope spec.existingRoles or the operator flag --allow-existing-role)"
        ),
    ))
}

/// The binding's profile as observed, and whether this reconcile just created it.
struct Found {
    profile: Profile,
    created: bool,
}

/// Observe IAM: the binding's instance profile, created when missing (unless observe
/// only), and the ownership claim on an existing one.
async fn observe_profile(
    b: &InstanceProfileBinding,
    ctx: &Context,
    d: &Desired,
) -> Result<Option<Found>, Error> {
    let aws = &ctx.aws().await;
    let sought = Sought::new(
        "instance profile",
        "CreateInstanceProfile",
        &d.name,
        First::Read,
    );
    let get = || io::get_profile(aws, &d.name);
    let create = || io::create_profile(aws, d);
    let claimed = |profile: Profile| async move {
        let what = format!("instance profile {}", profile.arn);
        let ownership = ctx.owner(b).ownership(&profile.tags);
        lifecycle::claim_of(b, ctx, &ownership, &what).await?;
        Ok(profile)
    };
    let found = find_or_create(b, ctx, sought, get, create, claimed).await?;
    Ok(found.map(|found| match found {
        lifecycle::Found::Claimed(profile) => Found {
            profile,
            created: false,
        },
        lifecycle::Found::Created(profile) => Found {
            profile,
            created: true,
        },
    }))
}

/// Observe EC2: the region's shared view (read at most once per instance resync for
/// all bindings), the targeted instances in it (ids and selector, held to the
/// governance's instance tags) and the region's associations. The first reconcile of
/// a new generation (a new or edited binding) reads the view anew, so instances
/// launched just before it are seen at once; resync ticks share the view.
async fn observe_instances(
    ctx: &Context,
    state: &State,
    ec2: &aws_sdk_ec2::Client,
    b: &InstanceProfileBinding,
) -> Result<(String, Targets, BTreeMap<String, Association>), Error> {
    let region = ec2
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let max_age = view_max_age(b, SystemTime::now(), ctx.settings.instance_resync);
    let view = state
        .views
        .get(&ctx.aws().await, ec2, &region, max_age)
        .await?;
    let gov = crate::trust::current();
    let mut targets = instances::targets(&view, &b.spec, &region);
    instances::restrict(&view, &b.spec, &mut targets, &gov.instance_tags);
    Ok((region, targets, view.associations.clone()))
}

/// How old a region's view may be for this binding. Once its generation is reported,
/// one instance-resync interval. A new or edited spec needs a view read after it was
/// written, so instances launched before it are seen at once: for a new binding, read
/// after its creation (the second after its creationTimestamp, which is truncated to
/// the second), which the many bindings of one apply then share instead of each
/// reading the region anew; for an edit (whose time the object does not show), now.
fn view_max_age(b: &InstanceProfileBinding, now: SystemTime, resync: Duration) -> Duration {
    let reported = b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation;
    if reported {
        return resync;
    }
    match (b.metadata.generation, &b.metadata.creation_timestamp) {
        (Some(1), Some(created)) => {
            let after = SystemTime::from(created.0) + Duration::from_secs(1);
            now.duration_since(after)
                .unwrap_or(Duration::ZERO)
                .min(resync)
        }
        _ => Duration::ZERO,
    }
}

/// The iamwright owners (another object's) of the profiles `arns`.
async fn other_owners(
    aws: &Aws,
    ctx: &Context,
    b: &InstanceProfileBinding,
    arns: &[String],
) -> Result<BTreeMap<String, String>, Error> {
    let mut owners = BTreeMap::new();
    for arn in arns {
        let name = arn.rsplit('/').next().unwrap_or_default();
        if let Some(p) = io::get_profile(aws, name).await?
            && let Ownership::Another(who) = ctx.owner(b).ownership(&p.tags)
        {
            owners.insert(arn.clone(), who);
        }
    }
    Ok(owners)
}

/// Apply the profile's writes, reported as one event (also when one fails). A role
/// AWS does not know is a dependency, not an error.
async fn apply_profile(
    b: &InstanceProfileBinding,
    ctx: &Context,
    d: &Desired,
    profile: &Profile,
    created: bool,
    writes: &[ProfileWrite],
) -> Result<(), Error> {
    // Right after a create the `Created` event says it all.
    let mut changes = if created {
        Changes::quiet(ctx, b)
    } else {
        Changes::new(ctx, b)
    };
    for w in writes {
        let made = match io::write(&ctx.aws().await, d, w).await {
            Err(e) if *w == ProfileWrite::AddRole && e.is_not_found() => Err(Error::Waiting {
                field: Some(d.role_field.to_string()),
                reason: Reason::DependencyNotReady,
                message: format!("role {:?} does not exist in AWS", d.role),
            }),
            other => other.map_err(Error::from),
        };
        changes
            .record(made, false, || note(d, &profile.arn, w))
            .await?;
    }
    changes.publish().await;
    Ok(())
}

/// What a profile write did, for the Updated / DriftCorrected event.
fn note(d: &Desired, arn: &str, w: &ProfileWrite) -> String {
    match w {
        ProfileWrite::Untag(keys) => {
            format!("removed tags {keys:?} of instance profile {}", d.name)
        }
        ProfileWrite::Tag(tags) => format!(
            "set tags {:?} of instance profile {}",
            tags.keys().collect::<Vec<_>>(),
            d.name
        ),
        ProfileWrite::RemoveRole(role) => {
            format!("removed role {role} from instance profile {arn}")
        }
        ProfileWrite::AddRole => format!("instance profile {} now holds role {}", d.name, d.role),
    }
}

/// What [`apply_associations`] did.
#[derive(Default)]
struct Bound {
    /// Whether any association was written.
    wrote: bool,
    /// Targets that could not be associated (yet): (state, why).
    pending: Pending,
    /// The AWS errors among them, each naming its instance.
    errors: Vec<AwsError>,
}

/// Apply the association writes. A failure on one instance does not stop the others:
/// it is recorded for the status. One event per kind of change, listing its instances.
async fn apply_associations(
    aws: &Aws,
    ctx: &Context,
    b: &InstanceProfileBinding,
    ec2: &aws_sdk_ec2::Client,
    profile_arn: &str,
    writes: &[AssocWrite],
    pending: Pending,
) -> Bound {
    let mut out = Bound {
        pending,
        ..Bound::default()
    };
    let (mut associated, mut replaced, mut removed) = (vec![], vec![], vec![]);
    let named = |id: &str, e: AwsError| AwsError {
        message: format!("instance {id}: {}", e.message),
        ..e
    };
    for w in writes {
        let (id, replace) = match w {
            AssocWrite::Associate(id) => (id, None),
            AssocWrite::Replace {
                instance,
                association,
                ..
            } => (instance, Some(association.as_str())),
            AssocWrite::Disassociate {
                instance,
                association,
            } => {
                match instances::disassociate(aws, ec2, association).await {
                    Ok(()) => {
                        out.wrote = true;
                        removed.push(instance.clone());
                    }
                    Err(e) => out.errors.push(named(instance, e)),
                }
                continue;
            }
        };
        match instances::associate(aws, ec2, id, profile_arn, replace).await {
            Ok(true) => {
                out.wrote = true;
                match w {
                    AssocWrite::Replace { had, .. } => replaced.push(format!("{id} (had {had})")),
                    _ => associated.push(id.clone()),
                }
            }
            Ok(false) => {
                let why = format!(
                    "instance profile {profile_arn} is not usable by EC2 yet (AWS eventual consistency); retrying"
                );
                out.pending.insert(id.clone(), ("Associating", why));
            }
            Err(e) if e.is_not_found() => {
                out.pending
                    .insert(id.clone(), ("NotFound", format!("instance {id}: {e}")));
            }
            Err(e) => {
                out.pending.insert(id.clone(), ("Error", e.to_string()));
                out.errors.push(named(id, e));
            }
        }
    }
    for (reason, what, ids) in [
        ("Associated", "associated with", associated),
        ("Replaced", "now replaces the profile of", replaced),
        (
            "Disassociated",
            "removed from the no longer targeted",
            removed,
        ),
    ] {
        if !ids.is_empty() {
            let note = format!(
                "instance profile {profile_arn} {what} instance(s) {}",
                ids.join(", ")
            );
            ctx.event(b, false, reason, note).await;
        }
    }
    out
}

/// Delete unless retained or only observed: disassociate the profile from every
/// instance that carries it, take its role out, delete it. A profile this object does
/// not own is left alone.
async fn cleanup(
    b: Arc<InstanceProfileBinding>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<(), Error> {
    let aws = &ctx.aws().await;
    let name = profile_name(&b);
    let what = format!("instance profile {name}");
    if lifecycle::kept(&*b, &ctx, &format!("{what} and its associations")).await {
        return Ok(());
    }
    let found = io::get_profile(aws, &name).await?.map(|p| {
        let tags = p.tags.clone();
        (p, tags)
    });
    let Some(profile) = lifecycle::owned(&*b, &ctx, &what, found) else {
        return Ok(());
    };
    let ec2 = state.ec2(aws, b.spec.region.as_deref());
    for a in instances::associations(aws, &ec2).await?.values() {
        if a.profile_arn == profile.arn && a.is_active() {
            instances::disassociate(aws, &ec2, &a.id).await?;
        }
    }
    for role in &profile.roles {
        io::remove_role(aws, &name, role).await?;
    }
    io::delete_profile(aws, &name).await?;
    let note = format!("deleted instance profile {}", profile.arn);
    ctx.event(&*b, false, "Deleted", note).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(generation: i64, observed: Option<i64>) -> InstanceProfileBinding {
        let mut b: InstanceProfileBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "iamwright.dev/v1alpha1", "kind": "InstanceProfileBinding",
            "metadata": {"name": "web", "namespace": "team", "generation": generation,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"roleRef": {"name": "app"}, "instanceSelector": {"tags": {"g": "1"}}},
        }))
        .expect("fixture");
        b.status = observed.map(|g| InstanceProfileBindingStatus {
            observed_generation: Some(g),
            ..Default::default()
        });
        b
    }

    #[test]
    fn a_new_binding_shares_a_view_read_after_it_was_created_an_edit_reads_anew() {
        let resync = Duration::from_secs(60);
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let at = |secs| created + Duration::from_secs(secs);
        // Reported: the tick's view.
        assert_eq!(view_max_age(&binding(3, Some(3)), at(500), resync), resync);
        // New: any view read from the second after its creation on.
        assert_eq!(
            view_max_age(&binding(1, None), at(4), resync),
            Duration::from_secs(3)
        );
        assert_eq!(
            view_max_age(&binding(1, None), at(0), resync),
            Duration::ZERO
        );
        assert_eq!(view_max_age(&binding(1, None), at(500), resync), resync);
        // Edited: its time is unknown, so a view read now.
        assert_eq!(
            view_max_age(&binding(2, Some(1)), at(500), resync),
            Duration::ZERO
        );
    }
}
