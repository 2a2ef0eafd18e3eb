//! `managementPolicy: Observe` for an access key: the user, its keys and the Secret are
//! read, never written — no user, key or Secret is created, changed or deleted. The
//! status mirrors what exists (user ARN, the key the Secret shows, when it was last
//! used); `Drifted` names what differs from the spec.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::hygiene::key_hygiene;
use super::keys::{self, KeyInfo};
use super::resolve::policy_arns;
use super::run::Run;
use super::{secret, user};
use crate::api::{IamUserAccessKey, IamUserAccessKeyStatus, KeyStatus};
use crate::aws::{Aws, Found, tag_diff};
use crate::controllers::claim::claim;
use crate::controllers::reconciler::Applied;
use crate::controllers::refs::RefState;
use crate::controllers::{Error, observe};

/// The user as AWS holds it.
pub struct SeenUser {
    pub tags: BTreeMap<String, String>,
    pub boundary: Option<String>,
    pub policies: BTreeSet<String>,
}

/// The spec fields AWS differs in. Pure. `shown` is the key id the Secret shows.
pub fn drifted(
    k: &IamUserAccessKey,
    want_policies: &BTreeSet<String>,
    seen: &SeenUser,
    keys: &[KeyInfo],
    shown: Option<&str>,
) -> Vec<String> {
    let mut fields = vec![];
    if user::sets_user_fields(k) {
        let mut have = seen.tags.clone();
        observe::user_tags_only(&mut have);
        let (remove, set) = tag_diff(&have, &k.spec.tags);
        if !remove.is_empty() || !set.is_empty() {
            fields.push("spec.tags".to_string());
        }
        if k.spec.permissions_boundary.is_some() && seen.boundary != k.spec.permissions_boundary {
            fields.push("spec.permissionsBoundary".into());
        }
        if &seen.policies != want_policies {
            fields.push("spec.managedPolicyArns/spec.policyRefs".into());
        }
    }
    match shown.and_then(|id| keys.iter().find(|key| key.id == id)) {
        // No key delivered, or the Secret's key is not the user's (any more).
        None => fields.push("spec.secretName".into()),
        Some(key) if key.active != (k.spec.key_status == KeyStatus::Active) => {
            fields.push("spec.keyStatus".into())
        }
        Some(_) => {}
    }
    fields
}

/// The membership and console fields AWS differs in. Pure. `want_groups` the groups
/// the spec names (IamGroups by their AWS name), `user_groups` the user's groups,
/// `login_profile` whether the user has one (None: not looked at, no console spec).
pub fn drifted_access(
    k: &IamUserAccessKey,
    want_groups: &BTreeSet<String>,
    user_groups: &BTreeSet<String>,
    login_profile: Option<bool>,
) -> Vec<String> {
    let mut fields = vec![];
    if !want_groups.is_subset(user_groups) {
        fields.push("spec.groupRefs/spec.groups".to_string());
    }
    let want_console = k.spec.console.as_ref().map(|c| c.enabled);
    if let (Some(want), Some(have)) = (want_console, login_profile)
        && want != have
    {
        fields.push("spec.console".into());
    }
    fields
}

/// Observe the user, its keys and the Secret, and report what differs from the spec.
pub async fn reconcile(run: &Run<'_>) -> Result<Applied<IamUserAccessKeyStatus>, Error> {
    let (k, ctx) = (run.k, run.ctx);
    let aws = &ctx.aws().await;
    let name = run.user();
    let what = format!("IAM user {name}");
    // resolve
    let ns = k.namespace().unwrap_or_default();
    let refs = policy_arns(ctx, k, &ns).await?;
    let want_policies: BTreeSet<String> = k
        .spec
        .managed_policy_arns
        .iter()
        .cloned()
        .chain(refs)
        .collect();
    // observe: the user (and what this namespace may read of it), its keys, the Secret
    let (arn, seen) = observe_user(run, aws, &what).await?;
    let keys = keys::list(aws, name).await?;
    let secret_name = secret::secret_name(k);
    let shown = run
        .secrets
        .get_opt(&secret_name)
        .await?
        .and_then(|s| secret::shown_id(&s));
    let access = observe_access(run, aws, &ns).await?;
    // plan: what would change, reported
    let mut fields = drifted(k, &want_policies, &seen, &keys, shown.as_deref());
    fields.extend(drifted_access(
        k,
        &access.want_groups,
        &access.user_groups,
        access.login_profile,
    ));
    let current = shown
        .as_deref()
        .and_then(|id| keys.iter().find(|key| key.id == id));
    let mut st = IamUserAccessKeyStatus {
        user_arn: Some(arn),
        secret_name: Some(secret_name),
        access_key_id: current.map(|key| key.id.clone()),
        key_created_at: current
            .and_then(|key| key.created)
            .map(super::schedule::rfc3339),
        // An interrupted create of an earlier Manage run stays on record for its
        // recovery when the object manages again.
        pending_key: run.recorded.pending_key.clone(),
        console_access: access.login_profile.map(|has| {
            if has {
                crate::api::ConsoleAccess::Enabled
            } else {
                crate::api::ConsoleAccess::Disabled
            }
        }),
        ..Default::default()
    };
    if current.is_some() {
        key_hygiene(run, &mut st).await?;
    }
    Ok(observe::report(&what, st, &fields))
}

/// The user as AWS holds it, with its ARN, once this namespace may read it.
async fn observe_user(run: &Run<'_>, aws: &Aws, what: &str) -> Result<(String, SeenUser), Error> {
    let name = run.user();
    let call = aws.iam.get_user().user_name(name);
    let Some(found) = aws.call("iam", "GetUser", call.send()).await.found()? else {
        return Err(observe::not_found(what));
    };
    let Some(aws_user) = found.user else {
        return Err(observe::not_found(what));
    };
    let tags = user::list_tags(aws, name).await?;
    let gov = crate::trust::current();
    // Reading another user's keys is what a key for an existing user needs: the same
    // grant (or adoption's).
    claim(
        &run.ctx.owner(run.k).ownership(&tags),
        what,
        false,
        true,
        || {
            gov.check_existing_user(name, "exists and was not created by this object")
                .or_else(|_| gov.check_adopt(what))
        },
    )?;
    let seen = SeenUser {
        tags,
        boundary: aws_user
            .permissions_boundary
            .and_then(|b| b.permissions_boundary_arn),
        policies: user::attached_policies(aws, name).await?,
    };
    Ok((aws_user.arn, seen))
}

/// The groups and console sign-in as the spec names them and AWS holds them.
struct Access {
    /// The groups the spec names (an IamGroup not Ready yet names none).
    want_groups: BTreeSet<String>,
    /// The user's groups (read only when the spec names any).
    user_groups: BTreeSet<String>,
    /// Whether the user has a login profile, read only when the spec says anything of
    /// console sign-in.
    login_profile: Option<bool>,
}

async fn observe_access(run: &Run<'_>, aws: &Aws, ns: &str) -> Result<Access, Error> {
    let (k, ctx, name) = (run.k, run.ctx, run.user());
    let mut want_groups: BTreeSet<String> = k.spec.groups.iter().cloned().collect();
    for r in &k.spec.group_refs {
        if let RefState::Ready(arn) = ctx.key_groups.resolve(&ctx.client, ns, &r.name).await? {
            want_groups.insert(super::groups::group_of_arn(&arn).to_string());
        }
    }
    let user_groups = if want_groups.is_empty() {
        BTreeSet::new()
    } else {
        super::groups::list_for_user(aws, name).await?
    };
    let login_profile = match &k.spec.console {
        Some(_) => Some(super::console::get_profile(aws, name).await?),
        None => None,
    };
    Ok(Access {
        want_groups,
        user_groups,
        login_profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(spec: serde_json::Value) -> IamUserAccessKey {
        serde_json::from_value(json!({"apiVersion": "iamwright.dev/v1alpha1",
            "kind": "IamUserAccessKey", "metadata": {"name": "k", "namespace": "ns"}, "spec": spec}))
        .unwrap()
    }

    fn key(id: &str, active: bool) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            active,
            created: None,
        }
    }

    #[test]
    fn drift_names_missing_memberships_and_console_access() {
        let set = |v: &[&str]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<String>>()
        };
        let k = object(json!({"userName": "u", "groups": ["Ops"], "console": {"enabled": true}}));
        assert!(drifted_access(&k, &set(&["Ops"]), &set(&["Ops", "Other"]), Some(true)).is_empty());
        assert_eq!(
            drifted_access(&k, &set(&["Ops"]), &set(&[]), Some(false)),
            vec!["spec.groupRefs/spec.groups", "spec.console"]
        );
        let off = object(json!({"userName": "u", "console": {"enabled": false}}));
        assert_eq!(
            drifted_access(&off, &set(&[]), &set(&[]), Some(true)),
            vec!["spec.console"]
        );
        // No console spec: the login profile is not looked at, nor reported.
        let none = object(json!({"userName": "u"}));
        assert!(drifted_access(&none, &set(&[]), &set(&[]), None).is_empty());
    }

    #[test]
    fn drift_names_the_key_and_the_user_fields() {
        let seen = SeenUser {
            tags: BTreeMap::new(),
            boundary: None,
            policies: BTreeSet::new(),
        };
        let none = BTreeSet::new();
        let k = object(json!({"userName": "u"}));
        assert_eq!(
            drifted(&k, &none, &seen, &[key("AK1", true)], Some("AK1")),
            Vec::<String>::new()
        );
        assert_eq!(
            drifted(&k, &none, &seen, &[key("AK1", true)], None),
            vec!["spec.secretName"]
        );
        assert_eq!(
            drifted(&k, &none, &seen, &[key("AK2", true)], Some("AK1")),
            vec!["spec.secretName"]
        );
        assert_eq!(
            drifted(&k, &none, &seen, &[key("AK1", false)], Some("AK1")),
            vec!["spec.keyStatus"]
        );
        let k = object(json!({"userName": "u", "tags": {"team": "a"},
            "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}));
        let want = BTreeSet::from(["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()]);
        assert_eq!(
            drifted(&k, &want, &seen, &[key("AK1", true)], Some("AK1")),
            vec!["spec.tags", "spec.managedPolicyArns/spec.policyRefs"]
        );
    }
}
