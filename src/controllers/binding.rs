//! InstanceProfileBinding: an owned instance profile holding one role, associated with
//! every EC2 instance the spec targets (by id and/or tag), re-evaluated every
//! `--instance-resync-interval`.

use crate::reason::Reason;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_iam::types::InstanceProfile;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::changes::Changes;
use super::instances::{self, Association, Targets};
use super::reconciler::{Applied, Guarded, reconcile, run_controller, scoped_api};
use super::refs::referencing;
use super::{Context, Error, Shutdown, governed_name, key_of, watch_config};
use crate::api::{
    DeletionPolicy, IamRole, InstanceBindingStatus, InstanceProfileBinding,
    InstanceProfileBindingStatus,
};
use crate::aws::{self, Aws, AwsError, Found, Ownership, tag_map, to_tags};

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
            c.watches(
                scoped_api::<Guarded<IamRole>>(&client, scope),
                watch_config(),
                move |role| {
                    referencing(&store, &role, |b: &InstanceProfileBinding| {
                        b.spec.role_ref.iter().map(|r| r.name.as_str()).collect()
                    })
                },
            )
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
    let synced = match sync(&b, &ctx, &state).await {
        Ok(s) => s,
        Err(e) => return Applied::failed(None, e),
    };
    let resync = ctx.settings.instance_resync;
    match synced.problem {
        None => Applied {
            status: Some(synced.status),
            result: Ok(synced.message),
            requeue_after: Some(if synced.associating {
                resync.min(ASSOCIATING_RECHECK)
            } else {
                resync
            }),
            fresh: None,
            extra: vec![],
        },
        Some(e) => {
            if matches!(&e, Error::Waiting { reason, .. } if matches!(reason, Reason::InstanceConflict | Reason::DependencyNotReady | Reason::NotPermitted))
            {
                state
                    .recheck
                    .lock()
                    .expect("recheck lock")
                    .insert(key_of(&*b), resync);
            }
            Applied::failed(Some(synced.status), e)
        }
    }
}

/// The result of a sync that reached EC2: the status to report, and what (if
/// anything) keeps the binding from Ready.
struct Synced {
    status: InstanceProfileBindingStatus,
    message: String,
    problem: Option<Error>,
    /// Some association is still `associating`.
    associating: bool,
}

async fn sync(b: &InstanceProfileBinding, ctx: &Context, state: &State) -> Result<Synced, Error> {
    if b.spec.role_ref.is_some() == b.spec.role_name.is_some() {
        return Err(Error::stalled(
            Reason::InvalidSpec,
            "spec: exactly one of roleRef and roleName must be set",
        ));
    }
    if b.spec.instance_ids.is_empty() && b.spec.instance_selector.is_none() {
        return Err(Error::stalled(
            Reason::InvalidSpec,
            "spec: at least one of instanceIds and instanceSelector must be set",
        ));
    }
    let gov = crate::trust::current();
    let path = gov.path(&b.spec.path)?;
    let name = profile_name(b);
    gov.check_name("spec.instanceProfileName", &name)?;
    let role = resolve_role(b, ctx).await?;
    let aws = &ctx.aws;
    let existing = get_profile(aws, &name).await?;
    if let Some(p) = &existing {
        check_ownership(b, ctx, p).await?;
    }
    let (profile, mut changes) = match existing {
        Some(p) => (p, Changes::new(ctx, b)),
        None => {
            let p = create_profile(aws, b, ctx, &name, &path).await?;
            ctx.event(
                b,
                false,
                "Created",
                format!("created instance profile {}", p.arn),
            )
            .await;
            (p, Changes::quiet(ctx, b))
        }
    };
    let result = async {
        sync_tags(aws, b, ctx, &profile, &mut changes).await?;
        sync_role(aws, &profile, &role, b, &mut changes).await
    }
    .await;
    changes.publish().await;
    result?;

    let ec2 = state.ec2(aws, b.spec.region.as_deref());
    let region = ec2
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let mut targets = instances::targets(aws, &ec2, &b.spec, &region).await?;
    instances::restrict(aws, &ec2, &b.spec, &mut targets, &gov.instance_tags).await?;
    let mut assocs = instances::associations(aws, &ec2).await?;
    let bound = bind(aws, ctx, b, &ec2, &profile.arn, &targets, &assocs).await;
    if bound.wrote {
        // Report what EC2 says now, not what we asked for.
        assocs = instances::associations(aws, &ec2).await?;
    }
    let mut synced = report(&profile, &role, &targets, &assocs, bound.pending);
    // An AWS error on one instance is reported as such (and retried with backoff).
    if let Some(e) = bound.errors.into_iter().next() {
        synced.problem = Some(Error::Aws(e));
    }
    Ok(synced)
}

/// The AWS role name the binding puts in its profile.
async fn resolve_role(b: &InstanceProfileBinding, ctx: &Context) -> Result<String, Error> {
    let Some(r) = &b.spec.role_ref else {
        let name = b.spec.role_name.clone().unwrap_or_default();
        check_role_name(b, ctx, &name).await?;
        return Ok(name);
    };
    let waiting = |why: &str| Error::Waiting {
        reason: Reason::DependencyNotReady,
        message: format!("spec.roleRef: IamRole {:?} {why}", r.name),
    };
    let api: Api<IamRole> = Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
    let Some(role) = api.get_opt(&r.name).await? else {
        return Err(waiting("does not exist"));
    };
    let status = role.status.as_ref();
    let ready = status.is_some_and(|s| {
        s.observed_generation == role.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    match status.and_then(|s| s.arn.as_deref()) {
        Some(arn) if ready && role.metadata.deletion_timestamp.is_none() => {
            Ok(arn.rsplit('/').next().unwrap_or_default().to_string())
        }
        _ => Err(waiting("is not Ready yet")),
    }
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
    let aws = &ctx.aws;
    let Some(role) = aws
        .call("iam", "GetRole", aws.iam.get_role().role_name(name).send())
        .await
        .found()?
        .and_then(|o| o.role)
    else {
        return Ok(());
    };
    let tags = tag_map(role.tags());
    let ns = b.namespace().unwrap_or_default();
    if tags.get(aws::OWNER_CLUSTER) == Some(&ctx.settings.cluster_name)
        && tags.get(aws::OWNER_NAMESPACE) == Some(&ns)
    {
        return Ok(());
    }
    Err(Error::stalled(
        Reason::NotPermitted,
        format!(
            "spec.roleName: role {name:?} was not created by an iamwright object of namespace {ns}; binding it needs a grant (IamScope spec.existingRoles or the operator flag --allow-existing-role)"
        ),
    ))
}

async fn get_profile(aws: &Aws, name: &str) -> Result<Option<InstanceProfile>, AwsError> {
    Ok(aws
        .call(
            "iam",
            "GetInstanceProfile",
            aws.iam
                .get_instance_profile()
                .instance_profile_name(name)
                .send(),
        )
        .await
        .found()?
        .and_then(|out| out.instance_profile))
}

fn tags_of(p: &InstanceProfile) -> BTreeMap<String, String> {
    tag_map(p.tags())
}

async fn check_ownership(
    b: &InstanceProfileBinding,
    ctx: &Context,
    p: &InstanceProfile,
) -> Result<(), Error> {
    let arn = &p.arn;
    match ctx.owner(b).ownership(&tags_of(p)) {
        Ownership::Ours => Ok(()),
        Ownership::Another(who) => Err(Error::stalled(
            Reason::OwnedByAnother,
            format!(
                "instance profile {arn} is managed by another iamwright object ({who}); it is left untouched"
            ),
        )),
        Ownership::Untagged if !b.spec.adopt => Err(Error::stalled(
            Reason::AlreadyExists,
            format!(
                "instance profile {arn} already exists and is not managed by iamwright; set spec.adopt: true to take it over"
            ),
        )),
        Ownership::Untagged => {
            crate::trust::current().check_adopt(&format!("instance profile {arn}"))?;
            ctx.event(
                b,
                false,
                "Adopted",
                format!("adopted existing instance profile {arn}"),
            )
            .await;
            Ok(())
        }
    }
}

async fn create_profile(
    aws: &Aws,
    b: &InstanceProfileBinding,
    ctx: &Context,
    name: &str,
    path: &str,
) -> Result<InstanceProfile, Error> {
    let out = aws
        .call(
            "iam",
            "CreateInstanceProfile",
            aws.iam
                .create_instance_profile()
                .instance_profile_name(name)
                .path(path)
                .set_tags(Some(to_tags(&ctx.owner(b).desired_tags(&b.spec.tags))))
                .send(),
        )
        .await?;
    out.instance_profile.ok_or_else(|| Error::Waiting {
        reason: Reason::Creating,
        message: format!("CreateInstanceProfile returned no profile for {name}"),
    })
}

async fn sync_tags(
    aws: &Aws,
    b: &InstanceProfileBinding,
    ctx: &Context,
    p: &InstanceProfile,
    changes: &mut Changes<'_, InstanceProfileBinding>,
) -> Result<(), Error> {
    let name = &p.instance_profile_name;
    let keys = aws::sync_tags(
        &tags_of(p),
        &ctx.owner(b).desired_tags(&b.spec.tags),
        |keys| {
            aws.call(
                "iam",
                "UntagInstanceProfile",
                aws.iam
                    .untag_instance_profile()
                    .instance_profile_name(name)
                    .set_tag_keys(Some(keys))
                    .send(),
            )
        },
        |tags| {
            aws.call(
                "iam",
                "TagInstanceProfile",
                aws.iam
                    .tag_instance_profile()
                    .instance_profile_name(name)
                    .set_tags(Some(tags))
                    .send(),
            )
        },
    )
    .await?;
    if !keys.is_empty() {
        changes.made(format!("set tags of instance profile {name}: {keys:?}"));
    }
    Ok(())
}

/// Make `role` the profile's only role (a profile holds at most one).
async fn sync_role(
    aws: &Aws,
    p: &InstanceProfile,
    role: &str,
    b: &InstanceProfileBinding,
    changes: &mut Changes<'_, InstanceProfileBinding>,
) -> Result<(), Error> {
    let name = &p.instance_profile_name;
    let current: Vec<&str> = p.roles().iter().map(|r| r.role_name.as_str()).collect();
    if current == [role] {
        return Ok(());
    }
    for other in current.iter().filter(|r| **r != role) {
        match aws
            .call(
                "iam",
                "RemoveRoleFromInstanceProfile",
                aws.iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(name)
                    .role_name(*other)
                    .send(),
            )
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    if !current.contains(&role) {
        match aws
            .call(
                "iam",
                "AddRoleToInstanceProfile",
                aws.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(name)
                    .role_name(role)
                    .send(),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                let field = if b.spec.role_ref.is_some() {
                    "spec.roleRef"
                } else {
                    "spec.roleName"
                };
                return Err(Error::Waiting {
                    reason: Reason::DependencyNotReady,
                    message: format!("{field}: role {role:?} does not exist in AWS"),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    changes.made(format!("instance profile {name} now holds role {role}"));
    Ok(())
}

/// What [`bind`] did.
#[derive(Default)]
struct Bound {
    /// Whether any association was written.
    wrote: bool,
    /// Targets that could not be associated (yet): (state, why).
    pending: BTreeMap<String, (&'static str, String)>,
    /// The AWS errors among them, each naming its instance.
    errors: Vec<AwsError>,
}

/// Associate the profile with every target that lacks it and take it away from
/// instances that are no longer targeted. A failure on one instance does not stop the
/// others: it is recorded for the status.
async fn bind(
    aws: &Aws,
    ctx: &Context,
    b: &InstanceProfileBinding,
    ec2: &aws_sdk_ec2::Client,
    profile_arn: &str,
    targets: &Targets,
    assocs: &BTreeMap<String, Association>,
) -> Bound {
    let mut out = Bound::default();
    // One event per kind of change, each listing its instances (see changes.rs).
    let (mut associated, mut replaced, mut removed) = (vec![], vec![], vec![]);
    for id in &targets.live {
        let replace = match assocs.get(id) {
            None => None,
            Some(a) if a.profile_arn == profile_arn && a.is_active() => continue,
            Some(a) if a.state == "disassociating" => {
                out.pending.insert(
                    id.clone(),
                    (
                        "Associating",
                        format!("waiting for the previous association {} to end", a.id),
                    ),
                );
                continue;
            }
            // A conflict is reported from the associations, not written.
            Some(_) if !b.spec.replace_existing => continue,
            Some(a) => match other_owner(aws, ctx, b, &a.profile_arn).await {
                Ok(None) => Some(a.id.as_str()),
                Ok(Some(who)) => {
                    out.pending.insert(
                        id.clone(),
                        (
                            "Conflict",
                            format!(
                                "instance carries instance profile {} of another iamwright object ({who}); spec.replaceExisting never replaces it",
                                a.profile_arn
                            ),
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    out.pending.insert(id.clone(), ("Error", e.to_string()));
                    out.errors.push(e);
                    continue;
                }
            },
        };
        match instances::associate(aws, ec2, id, profile_arn, replace).await {
            Ok(true) => {
                out.wrote = true;
                match replace {
                    Some(_) => replaced.push(format!("{id} (had {})", assocs[id].profile_arn)),
                    None => associated.push(id.clone()),
                }
            }
            Ok(false) => {
                out.pending.insert(
                    id.clone(),
                    (
                        "Associating",
                        format!(
                            "instance profile {profile_arn} is not usable by EC2 yet (AWS eventual consistency); retrying"
                        ),
                    ),
                );
            }
            Err(e) if e.is_not_found() => {
                out.pending
                    .insert(id.clone(), ("NotFound", format!("instance {id}: {e}")));
            }
            Err(e) => {
                out.pending.insert(id.clone(), ("Error", e.to_string()));
                out.errors.push(AwsError {
                    message: format!("instance {id}: {}", e.message),
                    ..e
                });
            }
        }
    }
    for a in assocs.values() {
        if a.profile_arn == profile_arn && a.is_active() && !targets.live.contains(&a.instance_id) {
            match instances::disassociate(aws, ec2, &a.id).await {
                Ok(()) => {
                    out.wrote = true;
                    removed.push(a.instance_id.clone());
                }
                Err(e) => out.errors.push(AwsError {
                    message: format!("instance {}: {}", a.instance_id, e.message),
                    ..e
                }),
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

/// The iamwright owner of the instance profile `arn`, when it is another object's.
async fn other_owner(
    aws: &Aws,
    ctx: &Context,
    b: &InstanceProfileBinding,
    arn: &str,
) -> Result<Option<String>, AwsError> {
    let name = arn.rsplit('/').next().unwrap_or_default();
    let Some(p) = get_profile(aws, name).await? else {
        return Ok(None);
    };
    Ok(match ctx.owner(b).ownership(&tags_of(&p)) {
        Ownership::Another(who) => Some(who),
        Ownership::Ours | Ownership::Untagged => None,
    })
}

/// The status from what EC2 reports, and the condition it leads to.
fn report(
    profile: &InstanceProfile,
    role: &str,
    targets: &Targets,
    assocs: &BTreeMap<String, Association>,
    pending: BTreeMap<String, (&'static str, String)>,
) -> Synced {
    let arn = profile.arn.as_str();
    let mut rows = vec![];
    for id in &targets.live {
        let row = |state: &str, association_id: Option<String>, message: Option<String>| {
            InstanceBindingStatus {
                instance_id: id.clone(),
                association_id,
                state: state.to_string(),
                message,
            }
        };
        rows.push(match (assocs.get(id), pending.get(id)) {
            (Some(a), _) if a.profile_arn == arn && a.state == "associated" => {
                row("Associated", Some(a.id.clone()), None)
            }
            (Some(a), _) if a.profile_arn == arn && a.state == "associating" => {
                row("Associating", Some(a.id.clone()), None)
            }
            (_, Some((state, message))) => row(state, None, Some(message.clone())),
            (Some(a), None) if a.is_active() => row(
                "Conflict",
                None,
                Some(format!(
                    "instance carries instance profile {} ({}); set spec.replaceExisting: true to replace it",
                    a.profile_arn, a.id
                )),
            ),
            _ => row(
                "Associating",
                None,
                Some("not associated yet; retrying".into()),
            ),
        });
    }
    for (id, message) in &targets.not_permitted {
        rows.push(InstanceBindingStatus {
            instance_id: id.clone(),
            association_id: None,
            state: "NotPermitted".into(),
            message: Some(message.clone()),
        });
    }
    for (id, message) in &targets.not_found {
        rows.push(InstanceBindingStatus {
            instance_id: id.clone(),
            association_id: None,
            state: "NotFound".into(),
            message: Some(message.clone()),
        });
    }
    rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));

    let bound = rows.iter().filter(|r| r.association_id.is_some()).count();
    let count = |state: &str| rows.iter().filter(|r| r.state == state).count();
    let first = |state: &str| {
        rows.iter()
            .find(|r| r.state == state)
            .map(|r| {
                format!(
                    "{}: {}",
                    r.instance_id,
                    r.message.as_deref().unwrap_or_default()
                )
            })
            .unwrap_or_default()
    };
    let problem = if count("Conflict") > 0 {
        Some(Error::Waiting {
            reason: Reason::InstanceConflict,
            message: format!(
                "{} instance(s) carry another instance profile; {}",
                count("Conflict"),
                first("Conflict")
            ),
        })
    } else if count("NotPermitted") > 0 {
        Some(Error::Waiting {
            reason: Reason::NotPermitted,
            message: format!(
                "{} instance(s) may not be bound from this namespace; {}",
                count("NotPermitted"),
                first("NotPermitted")
            ),
        })
    } else if count("NotFound") > 0 {
        Some(Error::Waiting {
            reason: Reason::DependencyNotReady,
            message: format!(
                "{} instance(s) cannot be bound; {}",
                count("NotFound"),
                first("NotFound")
            ),
        })
    } else if rows
        .iter()
        .any(|r| r.state == "Associating" && r.association_id.is_none())
    {
        Some(Error::Waiting {
            reason: Reason::Updating,
            message: format!("associating; {}", first("Associating")),
        })
    } else {
        None
    };
    Synced {
        message: format!(
            "instance profile {arn} holds role {role} and is associated with {bound} instance(s)"
        ),
        associating: count("Associating") > 0,
        status: InstanceProfileBindingStatus {
            instance_profile_arn: Some(arn.to_string()),
            instances: rows,
            bound_count: Some(bound as i32),
            ..Default::default()
        },
        problem,
    }
}

/// Delete unless retained: disassociate the profile from every instance that carries
/// it, take its role out, delete it. A profile we do not own is left alone.
async fn cleanup(
    b: Arc<InstanceProfileBinding>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<(), Error> {
    let aws = &ctx.aws;
    let name = profile_name(&b);
    if b.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            &*b,
            false,
            "Retained",
            format!(
                "instance profile {name} and its associations retained (deletionPolicy: Retain)"
            ),
        )
        .await;
        return Ok(());
    }
    let Some(profile) = get_profile(aws, &name).await? else {
        return Ok(());
    };
    if ctx.owner(&*b).ownership(&tags_of(&profile)) != Ownership::Ours {
        tracing::info!(object = %key_of(&*b), profile = %name, "instance profile not owned by this object; left in place");
        return Ok(());
    }
    let ec2 = state.ec2(aws, b.spec.region.as_deref());
    for a in instances::associations(aws, &ec2).await?.values() {
        if a.profile_arn == profile.arn && a.is_active() {
            instances::disassociate(aws, &ec2, &a.id).await?;
        }
    }
    for role in profile.roles() {
        match aws
            .call(
                "iam",
                "RemoveRoleFromInstanceProfile",
                aws.iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(&role.role_name)
                    .send(),
            )
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    match aws
        .call(
            "iam",
            "DeleteInstanceProfile",
            aws.iam
                .delete_instance_profile()
                .instance_profile_name(&name)
                .send(),
        )
        .await
    {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    ctx.event(
        &*b,
        false,
        "Deleted",
        format!("deleted instance profile {}", profile.arn),
    )
    .await;
    Ok(())
}
