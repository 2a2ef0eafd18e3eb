//! IamPolicy: a customer-managed policy whose default version follows the spec.

use crate::reason::Reason;
use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use serde_json::Value;

use super::documents::{Resolved, policy_config_maps, policy_document, watch_config_maps};
use super::reconciler::{Applied, reconcile, run_controller};
use super::{Context, Error, Shutdown, governed_name, key_of};
use crate::api::{DeletionPolicy, IamPolicy, IamPolicyStatus};
use crate::aws::{Aws, AwsError, AwsErrorKind, Found, Ownership, sync_tags, tag_map, to_tags};
use crate::policy::{allowed_actions_matching, decode_aws_document, same_document};
use crate::status;

pub const KIND: &str = "IamPolicy";
/// AWS keeps at most this many versions of a managed policy.
const MAX_VERSIONS: usize = 5;

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

pub(crate) async fn get_policy(
    aws: &Aws,
    arn: &str,
) -> Result<Option<aws_sdk_iam::types::Policy>, AwsError> {
    Ok(aws
        .call(
            "iam",
            "GetPolicy",
            aws.iam.get_policy().policy_arn(arn).send(),
        )
        .await
        .found()?
        .and_then(|out| out.policy))
}

/// The state the spec leads to in AWS, reported in status.
struct Synced {
    arn: String,
    policy_id: Option<String>,
    default_version_id: Option<String>,
}

/// Reconcile one policy: errors become conditions, not failures.
async fn apply(p: Arc<IamPolicy>, ctx: Arc<Context>) -> Applied<IamPolicyStatus> {
    // The document as AWS gets it: from its ConfigMap, variables replaced, checked.
    let doc = match policy_document(&ctx, &p).await {
        Ok(doc) => doc,
        Err(e) => return Applied::failed(None, e),
    };
    // Unknown actions are reported (condition + warning event), never held back: AWS
    // may know actions newer than the shipped catalog.
    let recognized = crate::policy::actions_recognized([(doc.field.clone(), &doc.document)]);
    let applied = match sync(&p, &ctx, &doc).await {
        Ok(s) => {
            let message = format!("policy {} is in sync", s.arn);
            let status = IamPolicyStatus {
                arn: Some(s.arn),
                policy_id: s.policy_id,
                default_version_id: s.default_version_id,
                ..Default::default()
            };
            Applied::synced(status, message)
        }
        Err(e) => Applied::failed(None, e),
    };
    applied.with_extra(recognized)
}

/// Validate, then bring AWS to the spec with the fewest writes.
async fn sync(p: &IamPolicy, ctx: &Context, doc: &Resolved) -> Result<Synced, Error> {
    // Pure checks first: a bad spec never reaches AWS (the document's grammar was
    // checked as it was resolved).
    let gov = crate::trust::current();
    let path = gov.path(&p.spec.path)?;
    gov.check_name("spec.name", &policy_name(p))?;
    if let Some((field, msg)) =
        allowed_actions_matching(&doc.document, &doc.field, &gov.deny_actions)
    {
        return Err(Error::stalled(
            Reason::GuardrailViolation,
            format!("{field}: {msg}"),
        ));
    }
    let document = serde_json::to_string(&doc.document).expect("a JSON value serializes");
    let aws = &ctx.aws;
    let owner = ctx.owner(p);
    let desired_tags = owner.desired_tags(&p.spec.tags);
    let arn = policy_arn(&aws.partition().await?, &aws.account_id().await?, p);

    // observe: on its first reconcile (no status yet) a policy is created straight
    // away, without a read that would only answer NotFound; a name already taken
    // falls back to the ownership check below. Later reconciles read first.
    let never_created = p.status.as_ref().is_none_or(|s| s.conditions.is_empty());
    let existing = if never_created {
        None
    } else {
        get_policy(aws, &arn).await?
    };
    let policy = match existing {
        Some(policy) => policy,
        None => {
            let created = aws
                .call(
                    "iam",
                    "CreatePolicy",
                    aws.iam
                        .create_policy()
                        .policy_name(policy_name(p))
                        .path(&path)
                        .policy_document(&document)
                        .set_description(p.spec.description.clone())
                        .set_tags(Some(to_tags(&desired_tags)))
                        .send(),
                )
                .await;
            match created {
                Ok(out) => {
                    ctx.event(p, false, "Created", format!("created policy {arn}"))
                        .await;
                    let created = out.policy;
                    return Ok(Synced {
                        policy_id: created.as_ref().and_then(|c| c.policy_id.clone()),
                        default_version_id: created
                            .as_ref()
                            .and_then(|c| c.default_version_id.clone()),
                        arn: created.and_then(|c| c.arn).unwrap_or(arn),
                    });
                }
                Err(e) if e.kind == AwsErrorKind::AlreadyExists => {
                    get_policy(aws, &arn).await?.ok_or(e)?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };

    let actual_tags = list_tags(aws, &arn).await?;
    match owner.ownership(&actual_tags) {
        Ownership::Ours => {}
        Ownership::Another(who) => {
            return Err(Error::stalled(
                Reason::OwnedByAnother,
                format!(
                    "policy {arn} is managed by another iamwright object ({who}); it is left untouched"
                ),
            ));
        }
        Ownership::Untagged if !p.spec.adopt => {
            return Err(Error::stalled(
                Reason::AlreadyExists,
                format!(
                    "policy {arn} already exists and is not managed by iamwright; set spec.adopt: true to take it over"
                ),
            ));
        }
        Ownership::Untagged => {
            gov.check_adopt(&format!("policy {arn}"))?;
            ctx.event(
                p,
                false,
                "Adopted",
                format!("adopted existing policy {arn}"),
            )
            .await;
        }
    }
    // A write to an object whose generation was already in sync is drift.
    let in_sync_before = p.status.as_ref().and_then(|s| s.observed_generation)
        == p.metadata.generation
        && p.status
            .as_ref()
            .and_then(|s| status::ready_of(&s.conditions))
            .map(|(r, _)| r)
            == Some("Synced");

    let keys = sync_tags(
        &actual_tags,
        &desired_tags,
        |keys| {
            aws.call(
                "iam",
                "UntagPolicy",
                aws.iam
                    .untag_policy()
                    .policy_arn(&arn)
                    .set_tag_keys(Some(keys))
                    .send(),
            )
        },
        |tags| {
            aws.call(
                "iam",
                "TagPolicy",
                aws.iam
                    .tag_policy()
                    .policy_arn(&arn)
                    .set_tags(Some(tags))
                    .send(),
            )
        },
    )
    .await?;
    if !keys.is_empty() {
        ctx.event(
            p,
            false,
            "TagsUpdated",
            format!("set tags of {arn}: {keys:?}"),
        )
        .await;
        if in_sync_before {
            ctx.metrics.drift_corrected(KIND);
        }
    }

    let mut default_version_id = policy.default_version_id.clone();
    let current_doc = match &default_version_id {
        Some(v) => get_version_document(aws, &arn, v).await?,
        None => None,
    };
    if current_doc
        .as_ref()
        .map(|d| same_document(d, &doc.document))
        != Some(true)
    {
        default_version_id = Some(set_document(aws, &arn, &doc.document, &document).await?);
        let (reason, note) = if let Some(source) = &doc.source {
            (
                "Updated",
                format!("policy {arn} has a new default version from {source}"),
            )
        } else if in_sync_before {
            ctx.metrics.drift_corrected(KIND);
            (
                "DriftCorrected",
                format!("policy {arn} was changed outside iamwright; set back to the spec"),
            )
        } else {
            ("Updated", format!("policy {arn} has a new default version"))
        };
        ctx.event(
            p,
            false,
            reason,
            format!("{note} ({})", default_version_id.as_deref().unwrap_or("")),
        )
        .await;
    }
    Ok(Synced {
        arn,
        policy_id: policy.policy_id,
        default_version_id,
    })
}

/// Make `doc` the default version: an existing version that already holds it is made the
/// default (no new version); otherwise a new one is created, deleting the oldest
/// non-default version first when AWS's 5-version limit is reached.
async fn set_document(aws: &Aws, arn: &str, doc: &Value, raw: &str) -> Result<String, AwsError> {
    let versions = aws
        .call(
            "iam",
            "ListPolicyVersions",
            aws.iam.list_policy_versions().policy_arn(arn).send(),
        )
        .await?
        .versions
        .unwrap_or_default();
    let mut others: Vec<_> = versions.iter().filter(|v| !v.is_default_version).collect();
    for v in &others {
        let Some(id) = v.version_id.as_deref() else {
            continue;
        };
        if get_version_document(aws, arn, id)
            .await?
            .as_ref()
            .map(|d| same_document(d, doc))
            == Some(true)
        {
            aws.call(
                "iam",
                "SetDefaultPolicyVersion",
                aws.iam
                    .set_default_policy_version()
                    .policy_arn(arn)
                    .version_id(id)
                    .send(),
            )
            .await?;
            return Ok(id.to_string());
        }
    }
    if versions.len() >= MAX_VERSIONS {
        others.sort_by_key(|v| {
            (
                v.create_date.map(|d| d.secs()),
                version_number(v.version_id.as_deref()),
            )
        });
        if let Some(id) = others.first().and_then(|v| v.version_id.as_deref()) {
            aws.call(
                "iam",
                "DeletePolicyVersion",
                aws.iam
                    .delete_policy_version()
                    .policy_arn(arn)
                    .version_id(id)
                    .send(),
            )
            .await?;
        }
    }
    let out = aws
        .call(
            "iam",
            "CreatePolicyVersion",
            aws.iam
                .create_policy_version()
                .policy_arn(arn)
                .policy_document(raw)
                .set_as_default(true)
                .send(),
        )
        .await?;
    Ok(out
        .policy_version
        .and_then(|v| v.version_id)
        .unwrap_or_default())
}

fn version_number(id: Option<&str>) -> u64 {
    id.and_then(|s| s.trim_start_matches('v').parse().ok())
        .unwrap_or(0)
}

async fn get_version_document(
    aws: &Aws,
    arn: &str,
    version: &str,
) -> Result<Option<Value>, AwsError> {
    let out = aws
        .call(
            "iam",
            "GetPolicyVersion",
            aws.iam
                .get_policy_version()
                .policy_arn(arn)
                .version_id(version)
                .send(),
        )
        .await?;
    Ok(out
        .policy_version
        .and_then(|v| v.document)
        .and_then(|d| decode_aws_document(&d).ok()))
}

async fn list_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let out = aws
        .call(
            "iam",
            "ListPolicyTags",
            aws.iam.list_policy_tags().policy_arn(arn).send(),
        )
        .await?;
    Ok(tag_map(&out.tags))
}

/// Delete the policy unless retained: detach it from every role, user and group, delete
/// its non-default versions, then the policy. A policy we do not own is left alone.
async fn cleanup(p: Arc<IamPolicy>, ctx: Arc<Context>) -> Result<(), Error> {
    let key = key_of(&*p);
    let aws = &ctx.aws;
    let arn = match p.status.as_ref().and_then(|s| s.arn.clone()) {
        Some(a) => a,
        None => policy_arn(&aws.partition().await?, &aws.account_id().await?, &p),
    };
    if p.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            &*p,
            false,
            "Retained",
            format!("policy {arn} retained (deletionPolicy: Retain)"),
        )
        .await;
        return Ok(());
    }
    match aws
        .call(
            "iam",
            "GetPolicy",
            aws.iam.get_policy().policy_arn(&arn).send(),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if ctx.owner(&*p).ownership(&list_tags(aws, &arn).await?) != Ownership::Ours {
        tracing::info!(object = %key, %arn, "policy not owned by this object; left in place");
        return Ok(());
    }
    let mut marker = None;
    loop {
        let out = aws
            .call(
                "iam",
                "ListEntitiesForPolicy",
                aws.iam
                    .list_entities_for_policy()
                    .policy_arn(&arn)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        for r in out.policy_roles() {
            let name = r.role_name().unwrap_or_default();
            aws.call(
                "iam",
                "DetachRolePolicy",
                aws.iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(&arn)
                    .send(),
            )
            .await?;
        }
        for u in out.policy_users() {
            let name = u.user_name().unwrap_or_default();
            aws.call(
                "iam",
                "DetachUserPolicy",
                aws.iam
                    .detach_user_policy()
                    .user_name(name)
                    .policy_arn(&arn)
                    .send(),
            )
            .await?;
        }
        for g in out.policy_groups() {
            let name = g.group_name().unwrap_or_default();
            aws.call(
                "iam",
                "DetachGroupPolicy",
                aws.iam
                    .detach_group_policy()
                    .group_name(name)
                    .policy_arn(&arn)
                    .send(),
            )
            .await?;
        }
        if out.is_truncated && out.marker.is_some() {
            marker = out.marker;
        } else {
            break;
        }
    }
    let versions = aws
        .call(
            "iam",
            "ListPolicyVersions",
            aws.iam.list_policy_versions().policy_arn(&arn).send(),
        )
        .await?
        .versions
        .unwrap_or_default();
    for v in versions.iter().filter(|v| !v.is_default_version) {
        if let Some(id) = v.version_id.as_deref() {
            aws.call(
                "iam",
                "DeletePolicyVersion",
                aws.iam
                    .delete_policy_version()
                    .policy_arn(&arn)
                    .version_id(id)
                    .send(),
            )
            .await?;
        }
    }
    match aws
        .call(
            "iam",
            "DeletePolicy",
            aws.iam.delete_policy().policy_arn(&arn).send(),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    ctx.event(&*p, false, "Deleted", format!("deleted policy {arn}"))
        .await;
    Ok(())
}
