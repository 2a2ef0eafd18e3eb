//! The thin I/O of a policy reconcile: the reads that observe a policy and one call (or
//! the version steps) per planned write. No decisions here.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Policy;
use serde_json::Value;

use super::plan::{Desired, Observed, Version, VersionStep, Write, version_step};
use crate::aws::{Aws, AwsError, Found, tag_map, to_tags};
use crate::policy::decode_aws_document;

pub use crate::aws::reads::get_policy;

pub async fn list_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let call = aws.iam.list_policy_tags().policy_arn(arn);
    let out = aws.call("iam", "ListPolicyTags", call.send()).await?;
    Ok(tag_map(&out.tags))
}

/// The policy's tags and default document (GetPolicy does not return tags).
pub async fn observe(
    aws: &Aws,
    policy: &Policy,
    tags: BTreeMap<String, String>,
) -> Result<Observed, AwsError> {
    let arn = policy.arn.clone().unwrap_or_default();
    let document = match &policy.default_version_id {
        Some(v) => version_document(aws, &arn, v).await?,
        None => None,
    };
    Ok(Observed {
        arn,
        policy_id: policy.policy_id.clone(),
        default_version_id: policy.default_version_id.clone(),
        tags,
        document,
    })
}

pub async fn create_policy(aws: &Aws, d: &Desired) -> Result<Option<Policy>, AwsError> {
    let call = aws
        .iam
        .create_policy()
        .policy_name(&d.name)
        .path(&d.path)
        .policy_document(d.document.to_string())
        .set_description(d.description.clone())
        .set_tags(Some(to_tags(&d.tags)));
    Ok(aws.call("iam", "CreatePolicy", call.send()).await?.policy)
}

/// Make one planned write. Returns the new default version id of a document write.
pub async fn write(aws: &Aws, d: &Desired, w: &Write) -> Result<Option<String>, AwsError> {
    let arn = d.arn.as_str();
    match w {
        Write::Untag(keys) => {
            let call = aws
                .iam
                .untag_policy()
                .policy_arn(arn)
                .set_tag_keys(Some(keys.clone()));
            aws.call("iam", "UntagPolicy", call.send()).await?;
        }
        Write::Tag(tags) => {
            let call = aws
                .iam
                .tag_policy()
                .policy_arn(arn)
                .set_tags(Some(to_tags(tags)));
            aws.call("iam", "TagPolicy", call.send()).await?;
        }
        Write::Document => return set_document(aws, arn, &d.document).await.map(Some),
    }
    Ok(None)
}

/// Make `doc` the default version, by the steps [`version_step`] decides.
async fn set_document(aws: &Aws, arn: &str, doc: &Value) -> Result<String, AwsError> {
    let call = aws.iam.list_policy_versions().policy_arn(arn);
    let versions = aws
        .call("iam", "ListPolicyVersions", call.send())
        .await?
        .versions
        .unwrap_or_default();
    let mut others = vec![];
    for v in versions.iter().filter(|v| !v.is_default_version) {
        let Some(id) = v.version_id.clone() else {
            continue;
        };
        others.push(Version {
            document: version_document(aws, arn, &id).await?,
            created: v.create_date.map(|d| d.secs()),
            id,
        });
    }
    match version_step(doc, &others, versions.len()) {
        VersionStep::MakeDefault(id) => {
            let call = aws
                .iam
                .set_default_policy_version()
                .policy_arn(arn)
                .version_id(&id);
            aws.call("iam", "SetDefaultPolicyVersion", call.send())
                .await?;
            Ok(id)
        }
        VersionStep::Create { delete_first } => {
            if let Some(id) = delete_first {
                delete_version(aws, arn, &id).await?;
            }
            let call = aws
                .iam
                .create_policy_version()
                .policy_arn(arn)
                .policy_document(doc.to_string())
                .set_as_default(true);
            let out = aws.call("iam", "CreatePolicyVersion", call.send()).await?;
            Ok(out
                .policy_version
                .and_then(|v| v.version_id)
                .unwrap_or_default())
        }
    }
}

async fn version_document(aws: &Aws, arn: &str, version: &str) -> Result<Option<Value>, AwsError> {
    let call = aws
        .iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version);
    let out = aws.call("iam", "GetPolicyVersion", call.send()).await?;
    Ok(out
        .policy_version
        .and_then(|v| v.document)
        .and_then(|d| decode_aws_document(&d).ok()))
}

async fn delete_version(aws: &Aws, arn: &str, id: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .delete_policy_version()
        .policy_arn(arn)
        .version_id(id);
    aws.call("iam", "DeletePolicyVersion", call.send()).await?;
    Ok(())
}

/// Take the policy off every role, user and group it is attached to.
pub async fn detach_everywhere(aws: &Aws, arn: &str) -> Result<(), AwsError> {
    // The largest page AWS allows: fewer calls (and moto applies MaxItems to the
    // entities it searches, default 100, so a smaller page misses attachments).
    let pages = aws
        .iam
        .list_entities_for_policy()
        .policy_arn(arn)
        .max_items(1000);
    let pages = aws
        .pages(
            "iam",
            "ListEntitiesForPolicy",
            pages.into_paginator().send(),
        )
        .await?;
    for page in &pages {
        for r in page.policy_roles() {
            let call = aws
                .iam
                .detach_role_policy()
                .role_name(r.role_name().unwrap_or_default())
                .policy_arn(arn);
            aws.call("iam", "DetachRolePolicy", call.send())
                .await
                .found()?;
        }
        for u in page.policy_users() {
            let call = aws
                .iam
                .detach_user_policy()
                .user_name(u.user_name().unwrap_or_default())
                .policy_arn(arn);
            aws.call("iam", "DetachUserPolicy", call.send())
                .await
                .found()?;
        }
        for g in page.policy_groups() {
            let call = aws
                .iam
                .detach_group_policy()
                .group_name(g.group_name().unwrap_or_default())
                .policy_arn(arn);
            aws.call("iam", "DetachGroupPolicy", call.send())
                .await
                .found()?;
        }
    }
    Ok(())
}

/// Delete the non-default versions, then the policy (gone is fine).
pub async fn delete_policy(aws: &Aws, arn: &str) -> Result<(), AwsError> {
    let call = aws.iam.list_policy_versions().policy_arn(arn);
    let versions = aws
        .call("iam", "ListPolicyVersions", call.send())
        .await?
        .versions
        .unwrap_or_default();
    for v in versions.iter().filter(|v| !v.is_default_version) {
        if let Some(id) = v.version_id.as_deref() {
            delete_version(aws, arn, id).await?;
        }
    }
    let call = aws.iam.delete_policy().policy_arn(arn);
    aws.call("iam", "DeletePolicy", call.send()).await.found()?;
    Ok(())
}
