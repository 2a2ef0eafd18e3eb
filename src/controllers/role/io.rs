//! The thin I/O of a role reconcile: the reads that observe a role, and one call per
//! planned write. No decisions here.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Role;

use super::plan::{Observed, Profile, Write};
use super::spec::Desired;
use crate::api::IamRoleSpec;
use crate::aws::snapshot::RoleEntry;
use crate::aws::{Aws, AwsError, Found, tag_map, to_tags};
use crate::controllers::{Context, Error};
use crate::policy::decode_aws_document;
use crate::trust::eks::Account;

pub async fn get_role(aws: &Aws, name: &str) -> Result<Option<Role>, AwsError> {
    Ok(aws
        .call("iam", "GetRole", aws.iam.get_role().role_name(name).send())
        .await
        .found()?
        .and_then(|out| out.role))
}

pub fn tags_of(role: &Role) -> BTreeMap<String, String> {
    tag_map(role.tags())
}

/// Everything the plan compares, for a role that exists: its attachments, its inline
/// policies (documents only of those the spec names).
pub async fn observe(aws: &Aws, d: &Desired, role: &Role) -> Result<Observed, AwsError> {
    let mut inline = BTreeMap::new();
    for name in list_inline(aws, &d.name).await? {
        let doc = if d.inline.contains_key(&name) {
            let out = aws
                .call(
                    "iam",
                    "GetRolePolicy",
                    aws.iam
                        .get_role_policy()
                        .role_name(&d.name)
                        .policy_name(&name)
                        .send(),
                )
                .await?;
            decode_aws_document(&out.policy_document).ok()
        } else {
            None
        };
        inline.insert(name, doc);
    }
    Ok(Observed {
        arn: role.arn.clone(),
        role_id: role.role_id.clone(),
        tags: tags_of(role),
        trust: role
            .assume_role_policy_document
            .as_deref()
            .and_then(|raw| decode_aws_document(raw).ok()),
        description: role.description.clone().unwrap_or_default(),
        max_session: role.max_session_duration.unwrap_or(3600),
        boundary: role
            .permissions_boundary
            .as_ref()
            .and_then(|b| b.permissions_boundary_arn.clone()),
        attached: list_attached(aws, &d.name).await?,
        inline,
        profile: None,
    })
}

/// A role as the account snapshot shows it. The role's own instance profile is taken
/// from the snapshot only when `want_profile` (its ownership is not in the snapshot).
pub fn from_snapshot(entry: &RoleEntry, d: &Desired, want_profile: bool) -> Option<Observed> {
    let r = &entry.detail;
    let inline = r
        .role_policy_list()
        .iter()
        .map(|p| {
            let name = p.policy_name.clone().unwrap_or_default();
            let doc = p
                .policy_document
                .as_deref()
                .and_then(|raw| decode_aws_document(raw).ok());
            (name, doc)
        })
        .collect();
    let profile = r
        .instance_profile_list()
        .iter()
        .find(|p| want_profile && p.instance_profile_name == d.name)
        .map(|p| Profile {
            arn: p.arn.clone(),
            roles: p.roles().iter().map(|r| r.role_name.clone()).collect(),
            tags: tag_map(p.tags()),
        });
    Some(Observed {
        arn: r.arn.clone()?,
        role_id: r.role_id.clone()?,
        tags: tag_map(r.tags()),
        trust: r
            .assume_role_policy_document
            .as_deref()
            .and_then(|raw| decode_aws_document(raw).ok()),
        description: entry.description.clone().unwrap_or_default(),
        max_session: entry.max_session.unwrap_or(3600),
        boundary: r
            .permissions_boundary
            .as_ref()
            .and_then(|b| b.permissions_boundary_arn.clone()),
        attached: r
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_arn.clone())
            .collect(),
        inline,
        profile,
    })
}

pub async fn create_role(aws: &Aws, d: &Desired) -> Result<Option<Role>, AwsError> {
    let out = aws
        .call(
            "iam",
            "CreateRole",
            aws.iam
                .create_role()
                .role_name(&d.name)
                .path(&d.path)
                .assume_role_policy_document(d.trust.to_string())
                .set_description((!d.description.is_empty()).then(|| d.description.clone()))
                .max_session_duration(d.max_session)
                .set_permissions_boundary(d.boundary.clone())
                .set_tags(Some(to_tags(&d.tags)))
                .send(),
        )
        .await?;
    Ok(out.role)
}

/// Make one planned write. Returns the ARN of a profile it created.
pub async fn write(aws: &Aws, d: &Desired, w: &Write) -> Result<Option<String>, AwsError> {
    let name = d.name.as_str();
    let iam = &aws.iam;
    match w {
        Write::Untag(keys) => {
            let call = iam
                .untag_role()
                .role_name(name)
                .set_tag_keys(Some(keys.clone()));
            aws.call("iam", "UntagRole", call.send()).await?;
        }
        Write::Tag(tags) => {
            let call = iam.tag_role().role_name(name).set_tags(Some(to_tags(tags)));
            aws.call("iam", "TagRole", call.send()).await?;
        }
        Write::Trust => {
            let call = iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(d.trust.to_string());
            aws.call("iam", "UpdateAssumeRolePolicy", call.send())
                .await?;
        }
        Write::Settings => {
            let call = iam
                .update_role()
                .role_name(name)
                .description(&d.description)
                .max_session_duration(d.max_session);
            aws.call("iam", "UpdateRole", call.send()).await?;
        }
        Write::PutBoundary(arn) => {
            let call = iam
                .put_role_permissions_boundary()
                .role_name(name)
                .permissions_boundary(arn);
            aws.call("iam", "PutRolePermissionsBoundary", call.send())
                .await?;
        }
        Write::DeleteBoundary(_) => {
            let call = iam.delete_role_permissions_boundary().role_name(name);
            aws.call("iam", "DeleteRolePermissionsBoundary", call.send())
                .await?;
        }
        Write::Attach(arn) => {
            let call = iam.attach_role_policy().role_name(name).policy_arn(arn);
            aws.call("iam", "AttachRolePolicy", call.send()).await?;
        }
        Write::Detach(arn) => detach(aws, name, arn).await?,
        Write::PutInline(policy) => {
            let call = iam
                .put_role_policy()
                .role_name(name)
                .policy_name(policy)
                .policy_document(d.inline[policy].to_string());
            aws.call("iam", "PutRolePolicy", call.send()).await?;
        }
        Write::DeleteInline(policy) => delete_inline(aws, name, policy).await?,
        Write::CreateProfile => {
            let call = iam
                .create_instance_profile()
                .instance_profile_name(name)
                .path(&d.path)
                .set_tags(Some(to_tags(&d.tags)));
            let out = aws
                .call("iam", "CreateInstanceProfile", call.send())
                .await?;
            return Ok(out.instance_profile.map(|p| p.arn));
        }
        Write::RemoveFromProfile(role) => remove_from_profile(aws, name, role).await?,
        Write::AddToProfile => {
            let call = iam
                .add_role_to_instance_profile()
                .instance_profile_name(name)
                .role_name(name);
            aws.call("iam", "AddRoleToInstanceProfile", call.send())
                .await?;
        }
        Write::DeleteProfile => delete_profile(aws, name).await?,
    }
    Ok(None)
}

/// The managed policies attached to a role.
pub async fn list_attached(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let pages = aws.iam.list_attached_role_policies().role_name(name);
    let pages = aws
        .pages(
            "iam",
            "ListAttachedRolePolicies",
            pages.into_paginator().send(),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.attached_policies())
        .filter_map(|p| p.policy_arn.clone())
        .collect())
}

/// The names of a role's inline policies.
pub async fn list_inline(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let pages = aws.iam.list_role_policies().role_name(name);
    let pages = aws
        .pages("iam", "ListRolePolicies", pages.into_paginator().send())
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.policy_names())
        .cloned()
        .collect())
}

/// The names of every instance profile holding the role.
pub async fn list_profiles(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let pages = aws.iam.list_instance_profiles_for_role().role_name(name);
    let pages = aws
        .pages(
            "iam",
            "ListInstanceProfilesForRole",
            pages.into_paginator().send(),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.instance_profiles())
        .map(|p| p.instance_profile_name.clone())
        .collect())
}

// Deletes below: a thing already gone is what was wanted.

pub async fn detach(aws: &Aws, name: &str, arn: &str) -> Result<(), AwsError> {
    let call = aws.iam.detach_role_policy().role_name(name).policy_arn(arn);
    aws.call("iam", "DetachRolePolicy", call.send())
        .await
        .found()?;
    Ok(())
}

pub async fn delete_inline(aws: &Aws, name: &str, policy: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .delete_role_policy()
        .role_name(name)
        .policy_name(policy);
    aws.call("iam", "DeleteRolePolicy", call.send())
        .await
        .found()?;
    Ok(())
}

pub use crate::aws::profiles::{
    delete as delete_profile, get as get_profile, remove_role as remove_from_profile,
};

pub async fn delete_role(aws: &Aws, name: &str) -> Result<(), AwsError> {
    let call = aws.iam.delete_role().role_name(name);
    aws.call("iam", "DeleteRole", call.send()).await.found()?;
    Ok(())
}

/// The account of the roles this operator manages. The one place that says so, so
/// that roles in other accounts (per IamScope) redirect only this.
pub async fn account(ctx: &Context) -> Result<Account, Error> {
    Ok(Account {
        id: ctx.aws().await.account_id().await?,
        partition: ctx.aws().await.partition().await?,
    })
}

/// The account when the spec needs it (IRSA statements to generate), else None: no
/// STS call for roles without service accounts.
pub async fn account_if_needed(
    spec: &IamRoleSpec,
    ctx: &Context,
) -> Result<Option<Account>, Error> {
    if spec.service_accounts.is_empty() || ctx.settings.trust.eks.oidc_issuer.is_none() {
        return Ok(None);
    }
    account(ctx).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::types::{
        AttachedPermissionsBoundary, AttachedPolicy, InstanceProfile, PolicyDetail, RoleDetail,
    };
    use serde_json::json;

    fn desired() -> Desired {
        Desired {
            name: "ns-web".into(),
            path: "/".into(),
            trust: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            description: "web".into(),
            max_session: 7200,
            boundary: Some("arn:aws:iam::1:policy/b".into()),
            tags: BTreeMap::from([("team".into(), "a".into())]),
            attached: vec!["arn:aws:iam::aws:policy/A".into()],
            inline: BTreeMap::from([(
                "s3".into(),
                json!({"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
            )]),
            inline_from: Default::default(),
            instance_profile: true,
        }
    }

    /// A snapshot entry of a role exactly as `d` wants it (documents URL-encoded, as
    /// AWS returns them) plans no write: a role in sync costs no read of its own.
    #[test]
    fn a_snapshot_entry_in_sync_plans_nothing_and_a_difference_shows() {
        let d = desired();
        let encode = |v: &serde_json::Value| urlencoding::encode(&v.to_string()).into_owned();
        let profile = InstanceProfile::builder()
            .path("/")
            .instance_profile_name("ns-web")
            .instance_profile_id("P")
            .arn("arn:aws:iam::1:instance-profile/ns-web")
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .set_roles(Some(vec![
                aws_sdk_iam::types::Role::builder()
                    .path("/")
                    .role_name("ns-web")
                    .role_id("R")
                    .arn("arn:aws:iam::1:role/ns-web")
                    .create_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap(),
            ]))
            .build()
            .unwrap();
        let detail = RoleDetail::builder()
            .role_name("ns-web")
            .role_id("R")
            .arn("arn:aws:iam::1:role/ns-web")
            .assume_role_policy_document(encode(&d.trust))
            .role_policy_list(
                PolicyDetail::builder()
                    .policy_name("s3")
                    .policy_document(encode(&d.inline["s3"]))
                    .build(),
            )
            .attached_managed_policies(
                AttachedPolicy::builder()
                    .policy_arn("arn:aws:iam::aws:policy/A")
                    .build(),
            )
            .permissions_boundary(
                AttachedPermissionsBoundary::builder()
                    .permissions_boundary_arn("arn:aws:iam::1:policy/b")
                    .build(),
            )
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("team")
                    .value("a")
                    .build()
                    .unwrap(),
            )
            .instance_profile_list(profile)
            .build();
        let entry = RoleEntry {
            detail,
            description: Some("web".into()),
            max_session: Some(7200),
        };
        let seen = from_snapshot(&entry, &d, true).unwrap();
        assert_eq!(super::super::plan::plan(&d, &seen), vec![]);
        // The session duration is not in the details: ListRoles supplies it.
        let stale = RoleEntry {
            max_session: Some(3600),
            ..entry
        };
        let seen = from_snapshot(&stale, &d, true).unwrap();
        assert_eq!(super::super::plan::plan(&d, &seen), vec![Write::Settings]);
    }
}
