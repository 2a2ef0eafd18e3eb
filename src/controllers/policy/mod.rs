//! IamPolicy: a customer-managed policy whose default version follows the spec.
//!
//! One reconcile: resolve → build → observe (`io`) → plan (`plan`) → apply (`io`) →
//! report. `managementPolicy: Observe` stops after the plan and reports it.

mod io;
mod plan;
mod spec;

pub use spec::{Resolved, Source, source, validate};

use std::sync::Arc;

use kube::ResourceExt;

use super::changes::{Changes, in_sync};
use super::documents::{
    fetch, policy_config_maps, read_source, substitute_field, variables_if_used, watch_config_maps,
};
use super::lifecycle::{self, Arn, First, Found, Sought, claim_of, find_or_create};
use super::reconciler::{Applied, reconcile, run_controller};
use super::{Context, Error, Shutdown, governed_name, observe};
use crate::api::{IamPolicy, IamPolicyStatus, ManagementPolicy};
use crate::aws::snapshot::fingerprint;
use aws_sdk_iam::types::Policy;
use plan::{Desired, Observed, Write};

pub const KIND: &str = "IamPolicy";

/// Run the IamPolicy controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let watched = ctx.clone();
    run_controller::<IamPolicy, _, _>(
        ctx,
        shutdown,
        |obj, ctx| reconcile(obj, ctx, apply, cleanup),
        move |c, scope| watch_config_maps(c, watched.clone(), scope, policy_config_maps),
    )
    .await;
}

/// The AWS name of a policy object.
pub fn policy_name(p: &IamPolicy) -> String {
    governed_name(
        p.spec.name.as_deref(),
        p.status.as_ref().and_then(|s| s.arn.as_deref()),
        &p.namespace().unwrap_or_default(),
        &p.name_any(),
        128,
    )
}

pub fn policy_arn(partition: &str, account: &str, p: &IamPolicy) -> String {
    format!(
        "arn:{partition}:iam::{account}:policy{}{}",
        crate::trust::current().path_or(&p.spec.path),
        policy_name(p)
    )
}

/// Reconcile one policy; errors become conditions. Unknown actions are reported
/// (condition + warning event), never held back: AWS may know actions newer than the
/// shipped catalog.
async fn apply(p: Arc<IamPolicy>, ctx: Arc<Context>) -> Applied<IamPolicyStatus> {
    // The document as AWS gets it: from its ConfigMap, variables replaced.
    let doc = match document(&ctx, &p).await {
        Ok(doc) => doc,
        Err(e) => return Applied::failed(None, e),
    };
    let recognized = crate::policy::actions_recognized([(doc.field.clone(), &doc.document)]);
    Applied::from(sync(&p, &ctx, doc).await).with_extra(recognized)
}

async fn sync(
    p: &IamPolicy,
    ctx: &Context,
    doc: Resolved,
) -> Result<Applied<IamPolicyStatus>, Error> {
    let observe_only = p.spec.management_policy == ManagementPolicy::Observe;
    let gov = crate::trust::current();
    validate(&doc, &gov.settings(&ctx.settings))?;
    let (name, path) = governed(p)?;
    let arn = resolve(p, ctx).await?;
    let mut d = Desired {
        name,
        path,
        arn,
        document: doc.document,
        source: doc.source,
        description: p.spec.description.clone(),
        tags: ctx.owner(p).desired_tags(&p.spec.tags),
    };
    let Some((mut seen, shared)) = observe_policy(p, ctx, &d).await? else {
        return Err(observe::not_found(&format!("policy {}", d.arn)));
    };
    if observe_only {
        observe::user_tags_only(&mut d.tags);
        observe::user_tags_only(&mut seen.tags);
    }
    let writes = plan::plan(&d, &seen);
    if observe_only {
        let fields = observe::fields(writes.iter().map(|w| w.field().to_string()));
        let what = format!("policy {}", seen.arn);
        return Ok(observe::report(&what, status_of(&seen), &fields));
    }
    let version = apply_writes(p, ctx, &d, &writes).await?;
    if version.is_some() {
        seen.default_version_id = version;
    }
    if !shared {
        // In sync now, as this process saw it: the next resync needs no read of its
        // document, also when the current snapshot is older than this.
        let aws = ctx.aws().await;
        aws.snapshot.saw_in_sync(&d.arn, fingerprint(&d));
    }
    let message = format!("policy {} is in sync", seen.arn);
    Ok(Applied::synced(status_of(&seen), message))
}

/// Resolve: the document, `spec.document` or the ConfigMap key `spec.documentFrom`
/// names, with its variables replaced (checked by [`validate`]). A missing ConfigMap or
/// key waits (`DependencyNotReady`); a document that does not parse is
/// `InvalidPolicyDocument`.
async fn document(ctx: &Context, p: &IamPolicy) -> Result<Resolved, Error> {
    let ns = p.namespace().unwrap_or_default();
    let (field, document, origin) = match source(&p.spec)? {
        Source::Written(doc) => ("spec.document", doc.value(), None),
        Source::ConfigMap(from) => {
            let field = "spec.documentFrom";
            let maps = fetch(ctx, &ns, [from]).await?;
            (field, read_source(field, &ns, from, &maps)?, Some(from))
        }
    };
    let vars = variables_if_used(ctx, [&document]).await?;
    let document = substitute_field(field, &document, vars.as_ref())?;
    Ok(Resolved::new(field, document, origin))
}

/// Resolve: the ARN the policy has in the account the operator works in.
async fn resolve(p: &IamPolicy, ctx: &Context) -> Result<String, Error> {
    let aws = &ctx.aws().await;
    Ok(policy_arn(
        &aws.partition().await?,
        &aws.account_id().await?,
        p,
    ))
}

/// Build: the AWS name and path under the namespace's governance (its IamScope's
/// name prefix and path). Pure. The spec's own checks are [`validate`].
fn governed(p: &IamPolicy) -> Result<(String, String), Error> {
    let gov = crate::trust::current();
    let path = gov.path(&p.spec.path)?;
    let name = policy_name(p);
    gov.check_name("spec.name", &name)?;
    Ok((name, path))
}

/// Observe: the policy as AWS holds it, and the ownership claim on it. On its first
/// reconcile that reaches AWS (no ARN in status) a managed policy is created at once, with no read
/// that would only answer NotFound; a name already taken falls back to the claim.
/// With it, whether it was seen in the shared view (the snapshot), not by its own read.
async fn observe_policy(
    p: &IamPolicy,
    ctx: &Context,
    d: &Desired,
) -> Result<Option<(Observed, bool)>, Error> {
    let aws = &ctx.aws().await;
    if let Some(seen) = snapshot_view(p, ctx, d).await? {
        return Ok(Some((seen, true)));
    }
    let sought = Sought::new("policy", "CreatePolicy", &d.name, First::Create);
    let get = || io::get_policy(aws, &d.arn);
    let create = || async move {
        // Named by its ARN also where AWS's answer would leave it out.
        let made = io::create_policy(aws, d).await?;
        let mut made = made.unwrap_or_else(|| Policy::builder().build());
        made.arn.get_or_insert_with(|| d.arn.clone());
        Ok(Some(made))
    };
    let claimed = |policy| async move {
        let tags = io::list_tags(aws, &d.arn).await?;
        let ownership = ctx.owner(p).ownership(&tags);
        claim_of(p, ctx, &ownership, &format!("policy {}", d.arn)).await?;
        Ok(io::observe(aws, &policy, tags).await?)
    };
    let found = find_or_create(p, ctx, sought, get, create, claimed).await?;
    Ok(found.map(|found| match found {
        Found::Claimed(seen) => (seen, false),
        Found::Created(made) => {
            // Created exactly as the spec says: the plan finds nothing to write.
            let seen = Observed {
                arn: Arn::arn(&made).to_string(),
                policy_id: made.policy_id,
                default_version_id: made.default_version_id,
                tags: d.tags.clone(),
                document: Some(d.document.clone()),
            };
            (seen, false)
        }
    }))
}

/// Resync at the cost of pages: a policy in sync for its generation is compared with
/// the account snapshot (its default version's document), or, when this process wrote
/// or read it in sync after the snapshot began, with what it saw then; only its tags,
/// which the snapshot lacks, are read. A difference falls back to the policy's own
/// reads.
async fn snapshot_view(
    p: &IamPolicy,
    ctx: &Context,
    d: &Desired,
) -> Result<Option<Observed>, Error> {
    if !in_sync(p) {
        return Ok(None);
    }
    let aws = ctx.aws().await;
    let snap = aws.snapshot.get(&aws, ctx.settings.resync).await?;
    let status = p.status.as_ref();
    let recorded_id = || status.and_then(|s| s.policy_id.clone());
    // The snapshot has no tags: they are read once the rest agrees, and compared then.
    let in_snapshot = snap.policies.get(&d.arn).map(|detail| Observed {
        arn: d.arn.clone(),
        policy_id: detail.policy_id.clone().or_else(recorded_id),
        default_version_id: detail.default_version_id.clone(),
        tags: d.tags.clone(),
        document: detail
            .policy_version_list()
            .iter()
            .find(|v| v.is_default_version)
            .and_then(|v| v.document.as_deref())
            .and_then(|raw| crate::policy::decode_aws_document(raw).ok()),
    });
    // Created or written after the snapshot began: as this process saw it then.
    let seen_since = || {
        let seen = aws.snapshot.seen_in_sync(&d.arn, fingerprint(d));
        seen.then(|| Observed {
            arn: d.arn.clone(),
            policy_id: recorded_id(),
            default_version_id: status.and_then(|s| s.default_version_id.clone()),
            tags: d.tags.clone(),
            document: Some(d.document.clone()),
        })
    };
    let agrees = |seen: &Observed| plan::plan(d, seen).is_empty();
    let Some(mut seen) = in_snapshot
        .filter(agrees)
        .or_else(|| seen_since().filter(agrees))
    else {
        return Ok(None);
    };
    seen.tags = io::list_tags(&aws, &d.arn).await?;
    Ok(agrees(&seen).then_some(seen))
}

/// Apply: the planned writes in order, reported as one event (also when one fails).
/// Returns the new default version id when the document was written.
async fn apply_writes(
    p: &IamPolicy,
    ctx: &Context,
    d: &Desired,
    writes: &[Write],
) -> Result<Option<String>, Error> {
    let mut changes = Changes::new(ctx, p);
    let mut version = None;
    for w in writes {
        let made = io::write(&ctx.aws().await, d, w).await;
        // A document from a ConfigMap that changed is an update, not drift.
        let followed = *w == Write::Document && d.source.is_some();
        version = changes
            .record(made, followed, || w.note(d))
            .await?
            .or(version);
    }
    changes.publish().await;
    Ok(version)
}

/// Report: the identity fields of the status.
fn status_of(seen: &Observed) -> IamPolicyStatus {
    IamPolicyStatus {
        arn: Some(seen.arn.clone()),
        policy_id: seen.policy_id.clone(),
        default_version_id: seen.default_version_id.clone(),
        ..Default::default()
    }
}

/// Delete the policy unless retained or only observed: detach it from every role, user
/// and group, delete its non-default versions, then the policy. A policy this object
/// does not own is left alone.
async fn cleanup(p: Arc<IamPolicy>, ctx: Arc<Context>) -> Result<(), Error> {
    let aws = &ctx.aws().await;
    let arn = match p.status.as_ref().and_then(|s| s.arn.clone()) {
        Some(a) => a,
        None => resolve(&p, &ctx).await?,
    };
    let found = lifecycle::to_delete(&*p, &ctx, &format!("policy {arn}"), || async {
        if io::get_policy(aws, &arn).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(((), io::list_tags(aws, &arn).await?)))
    })
    .await?;
    if found.is_none() {
        return Ok(());
    }
    io::detach_everywhere(aws, &arn).await?;
    io::delete_policy(aws, &arn).await?;
    ctx.event(&*p, false, "Deleted", format!("deleted policy {arn}"))
        .await;
    Ok(())
}
