//! The IAM user behind a key: found, created or adopted, and — only when owned — its
//! tags, permissions boundary and managed policies kept exactly as the spec says.

use crate::reason::Reason;
use std::collections::{BTreeMap, BTreeSet};

use crate::api::{IamUserAccessKey, IamUserAccessKeySpec};
use crate::aws::{Aws, AwsError, Found, Ownership, sync_tags, tag_map, to_tags};
use crate::controllers::{Context, Error};

/// What the spec asks of an owned user, computed before any AWS call.
pub struct DesiredUser {
    pub tags: BTreeMap<String, String>,
    pub boundary: Option<String>,
    pub policy_arns: BTreeSet<String>,
}

/// The user as the reconcile found (or made) it.
pub struct User {
    pub arn: String,
    /// Created or adopted by this object: its user-level fields are managed and it is
    /// deleted with the object (deletionPolicy Delete).
    pub owned: bool,
}

/// Whether the spec sets anything on the user itself (not only the key).
pub fn sets_user_fields(k: &IamUserAccessKey) -> bool {
    let s = &k.spec;
    !s.managed_policy_arns.is_empty()
        || !s.policy_refs.is_empty()
        || s.permissions_boundary.is_some()
        || !s.tags.is_empty()
}

/// Find the user, create it when missing (createUser) or adopt it (adopt), and bring an
/// owned user's fields to the spec. A user we do not own is used as-is, for its key only.
pub async fn ensure(
    ctx: &Context,
    k: &IamUserAccessKey,
    want: &DesiredUser,
) -> Result<User, Error> {
    let aws = &ctx.aws().await;
    let name = &k.spec.user_name;
    let gov = crate::trust::current();
    let path = check_spec(ctx, k, &gov).await?;
    let existing = aws
        .call("iam", "GetUser", aws.iam.get_user().user_name(name).send())
        .await
        .found()?
        .and_then(|out| out.user);
    let Some(user) = existing else {
        return create(ctx, k, want, &gov, &path).await;
    };
    let arn = user.arn.clone();
    let tags = list_tags(aws, name).await?;
    let boundary = user
        .permissions_boundary
        .and_then(|b| b.permissions_boundary_arn);
    let owned = claim(ctx, k, &gov, &arn, &tags, boundary.as_deref()).await?;
    if owned {
        sync_owned(ctx, k, want, &tags, boundary).await?;
    }
    Ok(User { arn, owned })
}

/// Create the missing user (spec.createUser), with its boundary, tags and policies.
async fn create(
    ctx: &Context,
    k: &IamUserAccessKey,
    want: &DesiredUser,
    gov: &crate::trust::Governance,
    path: &str,
) -> Result<User, Error> {
    let aws = &ctx.aws().await;
    let name = &k.spec.user_name;
    if !k.spec.create_user {
        return Err(Error::Waiting {
            field: Some("spec.userName".into()),
            reason: Reason::DependencyNotReady,
            message: format!("IAM user {name:?} does not exist and spec.createUser is false"),
        });
    }
    gov.check_name("spec.userName", name)?;
    let out = aws
        .call(
            "iam",
            "CreateUser",
            aws.iam
                .create_user()
                .user_name(name)
                .path(path)
                .set_permissions_boundary(want.boundary.clone())
                .set_tags(Some(to_tags(&want.tags)))
                .send(),
        )
        .await?;
    let arn = out.user.map(|u| u.arn).unwrap_or_default();
    ctx.event(k, false, "UserCreated", format!("created IAM user {arn}"))
        .await;
    set_policies(aws, name, &BTreeSet::new(), &want.policy_arns).await?;
    Ok(User { arn, owned: true })
}

/// Whether the existing user is this object's to manage (ours, or adopted now); a user
/// it may only issue a key for needs the grant, and one it may not use stalls it.
async fn claim(
    ctx: &Context,
    k: &IamUserAccessKey,
    gov: &crate::trust::Governance,
    arn: &str,
    tags: &BTreeMap<String, String>,
    boundary: Option<&str>,
) -> Result<bool, Error> {
    let name = &k.spec.user_name;
    match ctx.owner(k).ownership(tags) {
        Ownership::Ours => Ok(true),
        Ownership::Another(who) if sets_user_fields(k) => Err(Error::stalled(
            Reason::OwnedByAnother,
            format!(
                "IAM user {arn} is managed by another iamwright object ({who}); remove managedPolicyArns, policyRefs, permissionsBoundary and tags to manage only its key"
            ),
        )),
        Ownership::Untagged if k.spec.adopt => {
            gov.check_adopt(&format!("IAM user {arn}"))?;
            gov.check_name("spec.userName", name)?;
            let note = format!("adopted existing IAM user {arn}");
            ctx.event(k, false, "Adopted", note).await;
            Ok(true)
        }
        Ownership::Untagged if sets_user_fields(k) => Err(Error::stalled(
            Reason::AlreadyExists,
            format!(
                "IAM user {arn} already exists and is not managed by iamwright; set spec.adopt: true to manage its policies, boundary and tags"
            ),
        )),
        Ownership::Another(who) => {
            let why = format!("is managed by another iamwright object ({who})");
            check_existing(gov, name, &why, boundary).map(|()| false)
        }
        Ownership::Untagged => {
            let why = "exists and was not created by this object";
            check_existing(gov, name, why, boundary).map(|()| false)
        }
    }
}

/// The trust checks of the spec before any AWS write (after [`super::validate`]): the
/// path, the managed policies a scope allows, and the denied actions of those
/// policies' documents. Returns the path a created user gets.
async fn check_spec(
    ctx: &Context,
    k: &IamUserAccessKey,
    gov: &crate::trust::Governance,
) -> Result<String, Error> {
    let path = gov.path(&k.spec.path)?;
    let ns = k.metadata.namespace.clone().unwrap_or_default();
    let own = crate::controllers::refs::own_policy_arns(&ctx.client, &ns, gov).await?;
    let field = "spec.managedPolicyArns";
    gov.check_managed_arns(field, &k.spec.managed_policy_arns, &own)?;
    ctx.managed_policies
        .check(
            &ctx.aws().await,
            field,
            &k.spec.managed_policy_arns,
            &gov.deny_actions,
        )
        .await?;
    Ok(path)
}

/// The spec's policy ARNs (`managedPolicyArns`, `permissionsBoundary`) against the ARN
/// grammar, before any AWS call: pure, so `iamwright validate` runs it too.
pub fn check_arns(spec: &IamUserAccessKeySpec) -> Result<(), Error> {
    let fields = spec
        .managed_policy_arns
        .iter()
        .enumerate()
        .map(|(i, arn)| (format!("spec.managedPolicyArns[{i}]"), arn))
        .chain(
            spec.permissions_boundary
                .iter()
                .map(|b| ("spec.permissionsBoundary".to_string(), b)),
        );
    for (field, arn) in fields {
        crate::policy::check_policy_arn(arn)
            .map_err(|m| Error::at(Reason::InvalidSpec, field, m))?;
    }
    Ok(())
}

/// A key for a user this object does not own needs a grant, and the user must already
/// carry the boundary the namespace requires: the operator never changes a user it
/// does not own, so it refuses the key instead (GuardrailViolation).
fn check_existing(
    gov: &crate::trust::Governance,
    name: &str,
    why: &str,
    boundary: Option<&str>,
) -> Result<(), Error> {
    gov.check_existing_user(name, why)?;
    match (&gov.boundary, boundary) {
        (Some(required), have) if have != Some(required.as_str()) => Err(Error::at(
            Reason::GuardrailViolation,
            "spec.userName",
            format!(
                "IAM user {name:?} has permissions boundary {}, but every user of this namespace must have {required}; the operator does not change users it does not own, so it issues no key",
                have.unwrap_or("(none)")
            ),
        )),
        _ => Ok(()),
    }
}

/// Bring an owned user's tags, boundary and managed policies to the spec (event
/// `UserUpdated` naming what changed).
async fn sync_owned(
    ctx: &Context,
    k: &IamUserAccessKey,
    want: &DesiredUser,
    tags: &BTreeMap<String, String>,
    boundary: Option<String>,
) -> Result<(), Error> {
    let aws = &ctx.aws().await;
    let name = &k.spec.user_name;
    let mut changed = vec![];
    if sync_user_tags(aws, name, tags, &want.tags).await? {
        changed.push("tags");
    }
    if boundary != want.boundary {
        set_boundary(aws, name, want.boundary.as_deref()).await?;
        changed.push("permissions boundary");
    }
    let attached = attached_policies(aws, name).await?;
    if set_policies(aws, name, &attached, &want.policy_arns).await? {
        changed.push("managed policies");
    }
    if !changed.is_empty() {
        let note = format!("set {} of IAM user {name}", changed.join(", "));
        ctx.event(k, false, "UserUpdated", note).await;
    }
    Ok(())
}

/// Tag and untag the user to `want`; true when anything changed.
async fn sync_user_tags(
    aws: &Aws,
    name: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<bool, AwsError> {
    let keys = sync_tags(
        have,
        want,
        |keys| {
            aws.call(
                "iam",
                "UntagUser",
                aws.iam
                    .untag_user()
                    .user_name(name)
                    .set_tag_keys(Some(keys))
                    .send(),
            )
        },
        |tags| {
            aws.call(
                "iam",
                "TagUser",
                aws.iam
                    .tag_user()
                    .user_name(name)
                    .set_tags(Some(tags))
                    .send(),
            )
        },
    )
    .await?;
    Ok(!keys.is_empty())
}

/// Put the user's permissions boundary, or delete it (None).
async fn set_boundary(aws: &Aws, name: &str, boundary: Option<&str>) -> Result<(), AwsError> {
    match boundary {
        Some(b) => {
            let call = aws.iam.put_user_permissions_boundary().user_name(name);
            let call = call.permissions_boundary(b).send();
            aws.call("iam", "PutUserPermissionsBoundary", call).await?;
        }
        None => {
            let call = aws.iam.delete_user_permissions_boundary().user_name(name);
            aws.call("iam", "DeleteUserPermissionsBoundary", call.send())
                .await?;
        }
    }
    Ok(())
}

/// Attach what is missing and detach what is extra; true when anything changed.
async fn set_policies(
    aws: &Aws,
    user: &str,
    attached: &BTreeSet<String>,
    want: &BTreeSet<String>,
) -> Result<bool, AwsError> {
    for arn in want.difference(attached) {
        aws.call(
            "iam",
            "AttachUserPolicy",
            aws.iam
                .attach_user_policy()
                .user_name(user)
                .policy_arn(arn)
                .send(),
        )
        .await?;
    }
    detach(aws, user, attached.difference(want)).await?;
    Ok(attached != want)
}

async fn detach<'a>(
    aws: &Aws,
    user: &str,
    arns: impl Iterator<Item = &'a String>,
) -> Result<(), AwsError> {
    for arn in arns {
        match aws
            .call(
                "iam",
                "DetachUserPolicy",
                aws.iam
                    .detach_user_policy()
                    .user_name(user)
                    .policy_arn(arn)
                    .send(),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(super) async fn attached_policies(aws: &Aws, user: &str) -> Result<BTreeSet<String>, AwsError> {
    let pages = aws.iam.list_attached_user_policies().user_name(user);
    let pages = aws
        .pages(
            "iam",
            "ListAttachedUserPolicies",
            pages.into_paginator().send(),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.attached_policies())
        .filter_map(|p| p.policy_arn.clone())
        .collect())
}

pub async fn list_tags(aws: &Aws, user: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let out = aws
        .call(
            "iam",
            "ListUserTags",
            aws.iam.list_user_tags().user_name(user).send(),
        )
        .await?;
    Ok(tag_map(&out.tags))
}

/// Delete an owned user: everything IAM refuses to delete a user with goes first
/// (remaining keys, login profile, group memberships, inline and attached policies).
/// Keys on an owned user go with it, whoever created them: the user is deleted.
pub async fn delete(aws: &Aws, user: &str) -> Result<(), AwsError> {
    let keys = aws
        .call(
            "iam",
            "ListAccessKeys",
            aws.iam.list_access_keys().user_name(user).send(),
        )
        .await?;
    for key in keys.access_key_metadata() {
        if let Some(id) = key.access_key_id() {
            super::keys::delete(aws, user, id).await?;
        }
    }
    let call = aws.iam.delete_login_profile().user_name(user);
    aws.call("iam", "DeleteLoginProfile", call.send())
        .await
        .found()?;
    let groups = aws
        .call(
            "iam",
            "ListGroupsForUser",
            aws.iam.list_groups_for_user().user_name(user).send(),
        )
        .await?;
    for g in groups.groups() {
        let call = aws.iam.remove_user_from_group().user_name(user);
        let call = call.group_name(g.group_name()).send();
        aws.call("iam", "RemoveUserFromGroup", call).await?;
    }
    drop_policies(aws, user).await?;
    let call = aws.iam.delete_user().user_name(user);
    aws.call("iam", "DeleteUser", call.send()).await.found()?;
    Ok(())
}

/// Delete the user's inline policies and detach its managed ones.
async fn drop_policies(aws: &Aws, user: &str) -> Result<(), AwsError> {
    let inline = aws
        .call(
            "iam",
            "ListUserPolicies",
            aws.iam.list_user_policies().user_name(user).send(),
        )
        .await?;
    for p in inline.policy_names() {
        let call = aws.iam.delete_user_policy().user_name(user).policy_name(p);
        aws.call("iam", "DeleteUserPolicy", call.send()).await?;
    }
    let attached = attached_policies(aws, user).await?;
    detach(aws, user, attached.iter()).await
}
