//! The user's group memberships (`spec.groupRefs`, `spec.groups`). Joining a group
//! gains its policies, so: an existing group needs a grant, and its policies are held
//! to the namespace's denied actions before the user joins (an IamGroup of the
//! namespace is held to them by its own controller, and is not Ready otherwise).
//! Memberships are exclusive only for a user this object owns; for another user, only
//! those this object made (recorded in `status.groups` before each join) are removed.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::run::Run;
use crate::api::IamUserAccessKey;
use crate::aws::{Aws, AwsError};
use crate::controllers::{Context, Error};
use crate::reason::Reason;

/// The groups the spec wants the user in, by AWS name, with the field naming each.
/// An IamGroup not Ready yet is waited for; an existing group without a grant is
/// `NotPermitted`; one whose policies allow a denied action is `GuardrailViolation`.
/// Reads only: run before any write.
pub async fn desired(ctx: &Context, k: &IamUserAccessKey) -> Result<Vec<(String, String)>, Error> {
    let ns = k.namespace().unwrap_or_default();
    let gov = crate::trust::current();
    let mut out = vec![];
    for (i, g) in k.spec.groups.iter().enumerate() {
        gov.check_existing_group(&format!("spec.groups[{i}]"), g)?;
    }
    for (i, r) in k.spec.group_refs.iter().enumerate() {
        let field = format!("spec.groupRefs[{i}]");
        let state = ctx.key_groups.resolve(&ctx.client, &ns, &r.name).await?;
        let arn = state.ready_arn(&format!("{field}: IamGroup {:?}", r.name))?;
        out.push((field, group_of_arn(&arn).to_string()));
    }
    let aws = ctx.aws().await;
    for (i, g) in k.spec.groups.iter().enumerate() {
        let field = format!("spec.groups[{i}]");
        check_group_policies(ctx, &aws, &field, g, &gov.deny_actions).await?;
        out.push((field, g.clone()));
    }
    Ok(out)
}

/// The group name of a group ARN (`arn:aws:iam::1:group/path/name`).
pub fn group_of_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Refuse (GuardrailViolation) an existing group whose attached or inline policies
/// allow a denied action: the user would gain it by joining. A group that does not
/// exist waits (the join would fail). The group is read from the account snapshot
/// (shared, at most one resync period old: a key in sync reads nothing of its own),
/// else by its own reads (a group newer than the snapshot).
async fn check_group_policies(
    ctx: &Context,
    aws: &Aws,
    field: &str,
    group: &str,
    deny: &[String],
) -> Result<(), Error> {
    let snap = aws.snapshot.get(aws, ctx.settings.resync).await?;
    let (attached, inline) = match snap.groups.get(group) {
        Some(detail) => policies_of(detail),
        None => {
            let Some(_) = crate::controllers::group::get_group(aws, group).await? else {
                return Err(Error::Waiting {
                    reason: Reason::DependencyNotReady,
                    field: Some(field.to_string()),
                    message: format!("IAM group {group:?} does not exist"),
                });
            };
            if deny.is_empty() {
                return Ok(());
            }
            (
                crate::controllers::group::list_attached(aws, group).await?,
                crate::controllers::group::inline_documents(aws, group).await?,
            )
        }
    };
    if deny.is_empty() {
        return Ok(());
    }
    ctx.managed_policies
        .check(aws, field, &attached, deny)
        .await
        .map_err(|e| match e {
            Error::Stalled {
                reason,
                field,
                message,
            } => Error::Stalled {
                reason,
                field,
                message: format!("{message} (through IAM group {group:?})"),
            },
            e => e,
        })?;
    for (name, doc) in inline {
        let root = format!("IAM group {group:?} inline policy {name}");
        if let Some((_, msg)) = crate::policy::allowed_actions_matching(&doc, &root, deny) {
            return Err(Error::at(
                Reason::GuardrailViolation,
                field,
                format!("{root} {msg}; joining it would bypass the denied actions"),
            ));
        }
    }
    Ok(())
}

/// A group's attached policy ARNs and inline policies (the marker's aside), as the
/// snapshot shows them. Pure.
fn policies_of(
    detail: &aws_sdk_iam::types::GroupDetail,
) -> (Vec<String>, Vec<(String, serde_json::Value)>) {
    let attached = detail
        .attached_managed_policies()
        .iter()
        .filter_map(|p| p.policy_arn.clone())
        .collect();
    let inline = detail
        .group_policy_list()
        .iter()
        .filter_map(|p| {
            let name = p.policy_name.clone()?;
            let doc = crate::policy::decode_aws_document(p.policy_document.as_deref()?).ok()?;
            (name != crate::controllers::group::marker::POLICY).then_some((name, doc))
        })
        .collect();
    (attached, inline)
}

/// The membership writes: groups to join, and groups to leave. Pure.
/// `want` the spec's groups, `current` the user's groups in AWS, `recorded` those this
/// object put the user in; `owned` whether the user is this object's.
pub fn plan(
    want: &BTreeSet<String>,
    current: &BTreeSet<String>,
    recorded: &BTreeSet<String>,
    owned: bool,
) -> (Vec<String>, Vec<String>) {
    let join = want.difference(current).cloned().collect();
    let leave = current
        .iter()
        .filter(|g| !want.contains(*g) && (owned || recorded.contains(*g)))
        .cloned()
        .collect();
    (join, leave)
}

/// Bring the user's memberships to the spec. Each join is recorded in the status
/// first, so a crash after it still knows the membership is this object's. Costs one
/// read (ListGroupsForUser) when the object names or made any membership, none else.
pub async fn sync(run: &mut Run<'_>, want: &[(String, String)], owned: bool) -> Result<(), Error> {
    let recorded: BTreeSet<String> = run.recorded.groups.iter().cloned().collect();
    if want.is_empty() && recorded.is_empty() {
        return Ok(());
    }
    let want: BTreeSet<String> = want.iter().map(|(_, g)| g.clone()).collect();
    let aws = run.ctx.aws().await;
    let user = run.user().to_string();
    let current = list_for_user(&aws, &user).await?;
    let (join, leave) = plan(&want, &current, &recorded, owned);
    let mut made: BTreeSet<String> = recorded.clone();
    if !join.is_empty() {
        made.extend(join.iter().cloned());
        let mut st = run.recorded.clone();
        st.groups = made.iter().cloned().collect();
        run.record(st).await?;
    }
    for g in &join {
        let call = aws.iam.add_user_to_group().group_name(g).user_name(&user);
        aws.call("iam", "AddUserToGroup", call.send()).await?;
    }
    for g in &leave {
        remove(&aws, &user, g).await?;
    }
    // What this object made and the spec still wants (a left group is no longer ours;
    // one the user was in before is not recorded: it was not made here).
    let keep: Vec<String> = made.intersection(&want).cloned().collect();
    if keep != run.recorded.groups {
        let mut st = run.recorded.clone();
        st.groups = keep;
        run.record(st).await?;
    }
    if !join.is_empty() || !leave.is_empty() {
        let mut notes = vec![];
        if !join.is_empty() {
            notes.push(format!("added IAM user {user} to {}", join.join(", ")));
        }
        if !leave.is_empty() {
            notes.push(format!("removed IAM user {user} from {}", leave.join(", ")));
        }
        run.ctx
            .event(run.k, false, "GroupsUpdated", notes.join("; "))
            .await;
    }
    Ok(())
}

/// Take the user out of the groups this object put it in (a user it does not own, on
/// deletion). A membership or user already gone is what was wanted.
pub async fn leave_recorded(aws: &Aws, user: &str, recorded: &[String]) -> Result<(), AwsError> {
    for g in recorded {
        remove(aws, user, g).await?;
    }
    Ok(())
}

async fn remove(aws: &Aws, user: &str, group: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .remove_user_from_group()
        .group_name(group)
        .user_name(user);
    match aws.call("iam", "RemoveUserFromGroup", call.send()).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) async fn list_for_user(aws: &Aws, user: &str) -> Result<BTreeSet<String>, AwsError> {
    let pages = aws.iam.list_groups_for_user().user_name(user);
    let pages = aws
        .pages("iam", "ListGroupsForUser", pages.into_paginator().send())
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.groups())
        .map(|g| g.group_name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_owned_user_is_exactly_in_the_spec_groups() {
        let (join, leave) = plan(
            &set(&["admins", "devs"]),
            &set(&["devs", "by-hand"]),
            &set(&[]),
            true,
        );
        assert_eq!(join, vec!["admins"]);
        assert_eq!(leave, vec!["by-hand"]);
    }

    #[test]
    fn another_users_memberships_are_left_unless_this_object_made_them() {
        // "by-hand" was not made here; "old" was, and the spec dropped it.
        let (join, leave) = plan(
            &set(&["admins"]),
            &set(&["by-hand", "old"]),
            &set(&["old"]),
            false,
        );
        assert_eq!(join, vec!["admins"]);
        assert_eq!(leave, vec!["old"]);
        // In sync: nothing to do.
        let (join, leave) = plan(
            &set(&["admins"]),
            &set(&["admins", "by-hand"]),
            &set(&["admins"]),
            false,
        );
        assert!(join.is_empty() && leave.is_empty());
    }

    #[test]
    fn a_snapshot_group_gives_its_policies_but_not_its_marker() {
        use aws_sdk_iam::types::{AttachedPolicy, GroupDetail, PolicyDetail};
        let doc = serde_json::json!({"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
        let encode = |v: &serde_json::Value| urlencoding::encode(&v.to_string()).into_owned();
        let detail = GroupDetail::builder()
            .group_name("ops")
            .attached_managed_policies(
                AttachedPolicy::builder()
                    .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
                    .build(),
            )
            .group_policy_list(
                PolicyDetail::builder()
                    .policy_name("s3")
                    .policy_document(encode(&doc))
                    .build(),
            )
            .group_policy_list(
                PolicyDetail::builder()
                    .policy_name(crate::controllers::group::marker::POLICY)
                    .policy_document(encode(&serde_json::json!({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Deny", "NotAction": "*", "Resource": "*"}]})))
                    .build(),
            )
            .build();
        let (attached, inline) = policies_of(&detail);
        assert_eq!(attached, vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        assert_eq!(inline, vec![("s3".to_string(), doc)]);
    }

    #[test]
    fn group_names_come_from_their_arns() {
        assert_eq!(group_of_arn("arn:aws:iam::1:group/ns-admins"), "ns-admins");
        assert_eq!(
            group_of_arn("arn:aws:iam::1:group/team/a/ns-admins"),
            "ns-admins"
        );
    }
}
