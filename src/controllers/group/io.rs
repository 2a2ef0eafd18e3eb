//! The thin I/O of a group reconcile: the reads that observe a group, and one call per
//! planned write. No decisions here.

use std::collections::BTreeMap;

use aws_sdk_iam::types::{Group, GroupDetail};

use super::marker;
use super::plan::{Observed, Write};
use super::spec::Desired;
use crate::aws::{Aws, AwsError, Found};
use crate::policy::decode_aws_document;

/// The group and its members (user names), or None when it does not exist.
pub async fn get_group(aws: &Aws, name: &str) -> Result<Option<(Group, Vec<String>)>, AwsError> {
    let pages = aws.iam.get_group().group_name(name).into_paginator().send();
    let Some(pages) = aws.pages("iam", "GetGroup", pages).await.found()? else {
        return Ok(None);
    };
    let Some(group) = pages.first().and_then(|p| p.group.clone()) else {
        return Ok(None);
    };
    let members = pages
        .iter()
        .flat_map(|p| p.users())
        .map(|u| u.user_name.clone())
        .collect();
    Ok(Some((group, members)))
}

/// The ownership recorded in the group's marker policy (empty when it has none).
pub async fn owner(
    aws: &Aws,
    name: &str,
    inline: &[String],
) -> Result<BTreeMap<String, String>, AwsError> {
    if !inline.iter().any(|n| n == marker::POLICY) {
        return Ok(BTreeMap::new());
    }
    Ok(get_inline(aws, name, marker::POLICY)
        .await?
        .map(|doc| marker::tags_of(&doc))
        .unwrap_or_default())
}

/// Everything the plan compares, for a group that exists: its marker, attachments and
/// inline policies (documents only of those the spec names). `inline_names` are the
/// names of its inline policies (listed by the caller, which read the marker with them).
pub async fn observe(
    aws: &Aws,
    d: &Desired,
    group: &Group,
    members: Vec<String>,
    owner: BTreeMap<String, String>,
    inline_names: Vec<String>,
) -> Result<Observed, AwsError> {
    let mut inline = BTreeMap::new();
    for name in inline_names.into_iter().filter(|n| n != marker::POLICY) {
        let doc = if d.inline.contains_key(&name) {
            get_inline(aws, &d.name, &name).await?
        } else {
            None
        };
        inline.insert(name, doc);
    }
    Ok(Observed {
        arn: group.arn.clone(),
        group_id: group.group_id.clone(),
        path: group.path.clone(),
        owner,
        attached: list_attached(aws, &d.name).await?,
        inline,
        members,
    })
}

async fn get_inline(
    aws: &Aws,
    group: &str,
    policy: &str,
) -> Result<Option<serde_json::Value>, AwsError> {
    let call = aws
        .iam
        .get_group_policy()
        .group_name(group)
        .policy_name(policy);
    let out = aws
        .call("iam", "GetGroupPolicy", call.send())
        .await
        .found()?;
    Ok(out.and_then(|o| decode_aws_document(&o.policy_document).ok()))
}

/// The inline policies of a group with their documents, the marker's aside.
pub async fn inline_documents(
    aws: &Aws,
    group: &str,
) -> Result<Vec<(String, serde_json::Value)>, AwsError> {
    let mut out = vec![];
    for name in list_inline(aws, group).await? {
        if name == marker::POLICY {
            continue;
        }
        if let Some(doc) = get_inline(aws, group, &name).await? {
            out.push((name, doc));
        }
    }
    Ok(out)
}

/// A group as the account snapshot shows it; its members are not in the snapshot and
/// are taken as `members` (what the status last recorded).
pub fn from_snapshot(g: &GroupDetail, members: Vec<String>) -> Option<Observed> {
    let mut owner = BTreeMap::new();
    let mut inline = BTreeMap::new();
    for p in g.group_policy_list() {
        let name = p.policy_name.clone().unwrap_or_default();
        let doc = p
            .policy_document
            .as_deref()
            .and_then(|raw| decode_aws_document(raw).ok());
        if name == marker::POLICY {
            owner = doc.as_ref().map(marker::tags_of).unwrap_or_default();
        } else {
            inline.insert(name, doc);
        }
    }
    Some(Observed {
        arn: g.arn.clone()?,
        group_id: g.group_id.clone()?,
        path: g.path.clone()?,
        owner,
        attached: g
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_arn.clone())
            .collect(),
        inline,
        members,
    })
}

pub async fn create_group(aws: &Aws, d: &Desired) -> Result<Option<Group>, AwsError> {
    let call = aws.iam.create_group().group_name(&d.name).path(&d.path);
    Ok(aws.call("iam", "CreateGroup", call.send()).await?.group)
}

/// Make one planned write.
pub async fn write(aws: &Aws, d: &Desired, w: &Write) -> Result<(), AwsError> {
    let name = d.name.as_str();
    let iam = &aws.iam;
    match w {
        Write::Marker => put_inline(aws, name, marker::POLICY, &marker::document(&d.owner)).await?,
        Write::Path => {
            let call = iam.update_group().group_name(name).new_path(&d.path);
            aws.call("iam", "UpdateGroup", call.send()).await?;
        }
        Write::Attach(arn) => {
            let call = iam.attach_group_policy().group_name(name).policy_arn(arn);
            aws.call("iam", "AttachGroupPolicy", call.send()).await?;
        }
        Write::Detach(arn) => detach(aws, name, arn).await?,
        Write::PutInline(policy) => put_inline(aws, name, policy, &d.inline[policy]).await?,
        Write::DeleteInline(policy) => delete_inline(aws, name, policy).await?,
    }
    Ok(())
}

async fn put_inline(
    aws: &Aws,
    group: &str,
    policy: &str,
    doc: &serde_json::Value,
) -> Result<(), AwsError> {
    let call = aws
        .iam
        .put_group_policy()
        .group_name(group)
        .policy_name(policy)
        .policy_document(doc.to_string());
    aws.call("iam", "PutGroupPolicy", call.send()).await?;
    Ok(())
}

/// The managed policies attached to a group.
pub async fn list_attached(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let pages = aws.iam.list_attached_group_policies().group_name(name);
    let pages = aws
        .pages(
            "iam",
            "ListAttachedGroupPolicies",
            pages.into_paginator().send(),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.attached_policies())
        .filter_map(|p| p.policy_arn.clone())
        .collect())
}

/// The names of a group's inline policies (the marker's included).
pub async fn list_inline(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let pages = aws.iam.list_group_policies().group_name(name);
    let pages = aws
        .pages("iam", "ListGroupPolicies", pages.into_paginator().send())
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.policy_names())
        .cloned()
        .collect())
}

// Deletes below: a thing already gone is what was wanted.

pub async fn remove_member(aws: &Aws, group: &str, user: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .remove_user_from_group()
        .group_name(group)
        .user_name(user);
    aws.call("iam", "RemoveUserFromGroup", call.send())
        .await
        .found()?;
    Ok(())
}

pub async fn detach(aws: &Aws, name: &str, arn: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .detach_group_policy()
        .group_name(name)
        .policy_arn(arn);
    aws.call("iam", "DetachGroupPolicy", call.send())
        .await
        .found()?;
    Ok(())
}

pub async fn delete_inline(aws: &Aws, name: &str, policy: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .delete_group_policy()
        .group_name(name)
        .policy_name(policy);
    aws.call("iam", "DeleteGroupPolicy", call.send())
        .await
        .found()?;
    Ok(())
}

pub async fn delete_group(aws: &Aws, name: &str) -> Result<(), AwsError> {
    let call = aws.iam.delete_group().group_name(name);
    aws.call("iam", "DeleteGroup", call.send()).await.found()?;
    Ok(())
}
