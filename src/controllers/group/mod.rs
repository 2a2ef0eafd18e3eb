//! IamGroup: a group with its attached and inline policies, managed exclusively. Users
//! join it from their side (IamUserAccessKey `spec.groupRefs`, `spec.groups`); the
//! group reports the members iamwright put there.
//!
//! Groups take no tags in IAM: ownership is recorded in the marker inline policy
//! (`marker`), written right after the create and read like a tag.
//!
//! One reconcile: resolve → build (`spec`) → observe (`io`) → plan (`plan`) → apply
//! (`io`) → report. `managementPolicy: Observe` stops after the plan and reports it.

mod io;
pub mod marker;
mod plan;
mod spec;

pub use io::{get_group, inline_documents, list_attached};
pub use spec::{MAX_NAME, group_name, validate};

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use super::changes::{Changes, in_sync};
use super::lifecycle::{self, First, Sought, find_or_create};
use super::reconciler::{Applied, Guarded, reconcile, run_controller, scoped_api};
use super::refs::{names, own_policy_arns, referencing, resolve_policy_refs};
use super::{Context, Error, Shutdown, key_of, observe};
use crate::api::{IamGroup, IamGroupStatus, IamUserAccessKey, ManagementPolicy};
use crate::aws::Ownership;
use crate::aws::snapshot::fingerprint;
use plan::{Observed, Write};
use spec::Desired;

/// Run the IamGroup controller until shutdown. A change to a referenced IamPolicy
/// re-triggers the groups that reference it.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let watched = ctx.clone();
    run_controller::<IamGroup, _, _>(
        ctx,
        shutdown,
        |obj, ctx| reconcile(obj, ctx, apply, cleanup),
        move |c, scope| {
            let store = c.store();
            let policies = watched.group_policies.watch(&client, scope);
            // A key that joined or left reports it in its status: the groups it names
            // update their members.
            let keys = scoped_api::<Guarded<IamUserAccessKey>>(&client, scope);
            c.watches_stream(policies, move |p| {
                referencing(&store, &p, |g: &IamGroup| names(&g.spec.policy_refs))
            })
            .watches(keys, super::watch_config(), |k| {
                let Ok(key) = &k.0 else { return vec![] };
                let ns = key.namespace().unwrap_or_default();
                key.spec
                    .group_refs
                    .iter()
                    .map(|r| ObjectRef::new(&r.name).within(&ns))
                    .collect::<Vec<_>>()
            })
        },
    )
    .await;
}

/// Reconcile one group; errors become conditions. Unknown actions are reported.
async fn apply(g: Arc<IamGroup>, ctx: Arc<Context>) -> Applied<IamGroupStatus> {
    let inline = match super::documents::group_inline(&ctx, &g).await {
        Ok(inline) => inline,
        Err(e) => return Applied::failed(None, e),
    };
    let recognized = crate::policy::actions_recognized(
        inline
            .iter()
            .map(|(name, doc)| (format!("spec.inlinePolicies.{name}"), doc)),
    );
    Applied::from(sync(&g, inline, &ctx).await).with_extra(recognized)
}

async fn sync(
    g: &IamGroup,
    inline: BTreeMap<String, Value>,
    ctx: &Context,
) -> Result<Applied<IamGroupStatus>, Error> {
    let observe_only = g.spec.management_policy == ManagementPolicy::Observe;
    let refs = resolve(g, ctx).await?;
    let d = build(g, inline, ctx, &refs).await?;
    let Some(Found {
        seen,
        created,
        shared,
    }) = observe_group(g, ctx, &d).await?
    else {
        return Err(observe::not_found(&format!("group {}", d.name)));
    };
    let writes = plan::plan(&d, &seen);
    // The members iamwright put there, as its keys record them; where AWS was read, only
    // those AWS lists too.
    let keys: Api<IamUserAccessKey> =
        Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    let mut members = members_of(
        &g.name_any(),
        &d.name,
        &keys.list(&Default::default()).await?.items,
    );
    if !shared {
        members.retain(|m| seen.members.contains(m));
    }
    if observe_only {
        let status = status_of(&seen, seen.attached.clone(), members);
        return Ok(observe::report(
            &format!("group {}", seen.arn),
            status,
            &plan::drifted_fields(&writes),
        ));
    }
    apply_writes(g, ctx, &d, created, &writes).await?;
    if !shared {
        let aws = ctx.aws().await;
        aws.snapshot.saw_in_sync(&entity(&d), fingerprint(&d));
    }
    let status = status_of(&seen, d.attached.clone(), members);
    Ok(Applied::synced(
        status,
        format!("group {} is in sync", seen.arn),
    ))
}

/// Resolve: the `policyRefs` to ARNs (waiting for each IamPolicy to be Ready) and the
/// governance's list of attachable managed policies.
async fn resolve(g: &IamGroup, ctx: &Context) -> Result<Vec<String>, Error> {
    let ns = g.namespace().unwrap_or_default();
    let refs = resolve_policy_refs(
        &ctx.group_policies,
        &ctx.client,
        &ns,
        "spec.policyRefs",
        &g.spec.policy_refs,
    )
    .await?;
    let gov = crate::trust::current();
    let own = own_policy_arns(&ctx.client, &ns, &gov).await?;
    gov.check_managed_arns("spec.managedPolicyArns", &g.spec.managed_policy_arns, &own)?;
    Ok(refs)
}

/// Build: the desired group from the spec (pure), then the deny-action guardrail on
/// the managed policies it attaches (their documents are read, and cached).
async fn build(
    g: &IamGroup,
    inline: BTreeMap<String, Value>,
    ctx: &Context,
    refs: &[String],
) -> Result<Desired, Error> {
    let d = spec::desired(g, inline, ctx, refs)?;
    ctx.check_managed_policies(&g.spec.managed_policy_arns)
        .await?;
    Ok(d)
}

/// A group as observed (see [`lifecycle::Observation`]).
type Found = lifecycle::Observation<Observed>;

/// Observe: the group as AWS holds it, and what this object may do with it. A managed
/// group never recorded in status is created at once (no read that would only answer
/// NotFound); a name already taken falls back to the ownership claim. None: the group
/// does not exist and is not to be created (Observe).
async fn observe_group(g: &IamGroup, ctx: &Context, d: &Desired) -> Result<Option<Found>, Error> {
    let aws = &ctx.aws().await;
    if let Some(seen) = snapshot_view(g, ctx, d).await? {
        return Ok(Some(Found::shared(seen)));
    }
    let sought = Sought::new("group", "CreateGroup", &d.name, First::Create);
    let create = || async move {
        let group = io::create_group(aws, d).await?;
        // Test-only: exit between CreateGroup and the marker (see access_key).
        if group.is_some()
            && std::env::var("IAMWRIGHT_FAILPOINT").is_ok_and(|v| v == "after-create-group")
        {
            tracing::warn!(
                failpoint = "after-create-group",
                "failpoint reached: exiting"
            );
            std::process::exit(3);
        }
        Ok(group)
    };
    let found = find_or_create(
        g,
        ctx,
        sought,
        || io::get_group(aws, &d.name),
        create,
        |(group, members)| async move { claimed(g, ctx, d, &group, members).await },
    )
    .await?;
    let (seen, created) = match found {
        None => return Ok(None),
        Some(lifecycle::Found::Claimed(seen)) => (seen, false),
        Some(lifecycle::Found::Created(group)) => {
            (Observed::created(d, group.arn, group.group_id), true)
        }
    };
    Ok(Some(Found {
        seen,
        created,
        shared: false,
    }))
}

/// An existing group, read whole, once this object's claim on it holds: its marker, or
/// (none) the trace of this object's own interrupted create, or adoption.
async fn claimed(
    g: &IamGroup,
    ctx: &Context,
    d: &Desired,
    group: &aws_sdk_iam::types::Group,
    members: Vec<String>,
) -> Result<Observed, Error> {
    let aws = &ctx.aws().await;
    let names = io::list_inline(aws, &d.name).await?;
    let owner = io::owner(aws, &d.name, &names).await?;
    let seen = io::observe(aws, d, group, members, owner, names).await?;
    let mut ownership = ctx.owner(g).ownership(&seen.owner);
    if ownership == Ownership::Untagged
        && g.spec.management_policy == ManagementPolicy::Manage
        && plan::interrupted_create(
            &seen,
            Some(group.create_date.secs()),
            g.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
        )
    {
        // Our own create, interrupted before its marker: the plan writes the marker.
        tracing::info!(object = %key_of(g), group = %d.name, "empty unmarked group made after the object: an interrupted create of its own");
        ownership = Ownership::Ours;
    }
    lifecycle::claim_of(g, ctx, &ownership, &format!("group {}", group.arn)).await?;
    Ok(seen)
}

/// Resync at the cost of pages: a group in sync for its generation is compared with
/// the account snapshot and costs no read of its own when they agree (see the role's).
async fn snapshot_view(
    g: &IamGroup,
    ctx: &Context,
    d: &Desired,
) -> Result<Option<Observed>, Error> {
    if !in_sync(g) {
        return Ok(None);
    }
    let Some(status) = g.status.as_ref() else {
        return Ok(None);
    };
    let aws = ctx.aws().await;
    let snap = aws.snapshot.get(&aws, ctx.settings.resync).await?;
    // An observed group need not carry the marker: only the spec's fields count then.
    let observe_only = g.spec.management_policy == ManagementPolicy::Observe;
    let agrees = |seen: &Observed| {
        let writes = plan::plan(d, seen);
        if observe_only {
            plan::drifted_fields(&writes).is_empty()
        } else {
            writes.is_empty()
        }
    };
    let in_snapshot = snap
        .groups
        .get(&d.name)
        .and_then(|detail| io::from_snapshot(detail, status.members.clone()))
        .filter(agrees);
    Ok(in_snapshot.or_else(|| {
        let seen = aws.snapshot.seen_in_sync(&entity(d), fingerprint(d));
        seen.then(|| Observed::in_sync(d, status))
            .flatten()
            .filter(agrees)
    }))
}

/// The group's key among what the snapshot cache has seen.
fn entity(d: &Desired) -> String {
    format!("group/{}", d.name)
}

/// Apply: the planned writes in order; the changes made before a failure are reported
/// too (one event).
async fn apply_writes(
    g: &IamGroup,
    ctx: &Context,
    d: &Desired,
    created: bool,
    writes: &[Write],
) -> Result<(), Error> {
    let mut changes = if created {
        Changes::quiet(ctx, g)
    } else {
        Changes::new(ctx, g)
    };
    for w in writes {
        let made = io::write(&ctx.aws().await, d, w).await;
        changes.record(made, false, || w.note(d)).await?;
    }
    changes.publish().await;
    Ok(())
}

/// Report: the identity fields of the status.
fn status_of(seen: &Observed, attached: Vec<String>, members: Vec<String>) -> IamGroupStatus {
    IamGroupStatus {
        arn: Some(seen.arn.clone()),
        group_id: Some(seen.group_id.clone()),
        attached_policy_arns: attached,
        members,
        ..Default::default()
    }
}

/// The IAM users iamwright put in group `aws_name` (object `object`): those of the
/// keys whose `groupRefs` name the object and whose status records the membership as
/// made by them. Sorted, once each. Pure.
pub fn members_of(object: &str, aws_name: &str, keys: &[IamUserAccessKey]) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .filter(|k| k.spec.group_refs.iter().any(|r| r.name == object))
        .filter(|k| {
            k.status
                .as_ref()
                .is_some_and(|s| s.groups.iter().any(|g| g == aws_name))
        })
        .map(|k| k.spec.user_name.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Delete the group unless retained or only observed: take every member out, detach
/// its policies, delete its inline policies, then the marker and the group (AWS refuses
/// to delete a group that still holds any of them). A group this object does not own
/// is left.
async fn cleanup(g: Arc<IamGroup>, ctx: Arc<Context>) -> Result<(), Error> {
    let aws = &ctx.aws().await;
    let name = group_name(&g);
    let found = lifecycle::to_delete(&*g, &ctx, &format!("group {name}"), || async {
        let Some((group, members)) = io::get_group(aws, &name).await? else {
            return Ok(None);
        };
        // The group's ownership is its marker (an inline policy).
        let inline = io::list_inline(aws, &name).await?;
        let owner = io::owner(aws, &name, &inline).await?;
        Ok(Some(((group, members, inline), owner)))
    })
    .await?;
    let Some((group, members, inline)) = found else {
        return Ok(());
    };
    for user in &members {
        io::remove_member(aws, &name, user).await?;
    }
    for arn in io::list_attached(aws, &name).await? {
        io::detach(aws, &name, &arn).await?;
    }
    // The marker last: a cleanup interrupted before the group is gone finds it still ours.
    for policy in inline.iter().filter(|p| *p != marker::POLICY) {
        io::delete_inline(aws, &name, policy).await?;
    }
    io::delete_inline(aws, &name, marker::POLICY).await?;
    io::delete_group(aws, &name).await?;
    ctx.event(
        &*g,
        false,
        "Deleted",
        format!("deleted group {}", group.arn),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(user: &str, refs: &[&str], recorded: &[&str]) -> IamUserAccessKey {
        let refs: Vec<_> = refs.iter().map(|r| json!({"name": r})).collect();
        let mut k: IamUserAccessKey = serde_json::from_value(json!({
            "apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
            "metadata": {"name": user, "namespace": "ns"},
            "spec": {"userName": user, "groupRefs": refs}}))
        .unwrap();
        k.status = Some(crate::api::IamUserAccessKeyStatus {
            groups: recorded.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        k
    }

    #[test]
    fn members_are_the_users_whose_keys_joined_the_group() {
        let keys = [
            key("bob", &["admins"], &["ns-admins"]),
            key("alice", &["admins", "devs"], &["ns-admins", "ns-devs"]),
            // Names the group but has not joined yet (waiting, or refused).
            key("carol", &["admins"], &[]),
            // Joined another group only.
            key("dave", &["devs"], &["ns-devs"]),
        ];
        assert_eq!(
            members_of("admins", "ns-admins", &keys),
            vec!["alice", "bob"]
        );
        assert_eq!(members_of("devs", "ns-devs", &keys), vec!["alice", "dave"]);
    }
}
