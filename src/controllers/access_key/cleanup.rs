//! On deletion: delete the key(s) this object made, and the user when owned (unless
//! retained). Keys on a user we do not own that we did not make are never touched.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::keys::{self, KeyInfo};
use super::last_used::LastUsedReads;
use super::secret::{self, Observed};
use super::{console, groups, user};
use crate::api::{DeletionPolicy, IamUserAccessKey, IamUserAccessKeyStatus};
use crate::aws::{Aws, Ownership};
use crate::controllers::{Context, Error, key_of};

pub async fn cleanup(
    k: Arc<IamUserAccessKey>,
    ctx: Arc<Context>,
    last_used: Arc<LastUsedReads>,
) -> Result<(), Error> {
    last_used.forget(&key_of(&*k));
    if k.spec.management_policy == crate::api::ManagementPolicy::Observe {
        tracing::info!(object = %key_of(&*k), "observe-only: nothing deleted in AWS");
        return Ok(());
    }
    let aws = &ctx.aws().await;
    let ns = k.namespace().unwrap_or_default();
    let api: Api<IamUserAccessKey> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(recorded) = api.get_opt(&k.name_any()).await? else {
        return Ok(());
    };
    let recorded = recorded.status.unwrap_or_default();
    let user = &k.spec.user_name;
    let keys = match keys::list(aws, user).await {
        Ok(keys) => keys,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = recorded
        .secret_name
        .clone()
        .unwrap_or_else(|| secret::secret_name(&k));
    let in_secret = match secret::observe(&k, &name, secrets.get_opt(&name).await?) {
        Observed::Ours { shown_id, .. } => shown_id,
        _ => None,
    };
    // An orphan of an interrupted create is deleted even when retained: no Secret holds it.
    if let Some(p) = &recorded.pending_key {
        for x in keys
            .iter()
            .filter(|x| keys::is_orphan(p, x, in_secret.as_deref()))
        {
            keys::delete(aws, user, &x.id).await?;
        }
    }
    if k.spec.deletion_policy == DeletionPolicy::Retain {
        // The retained key stays usable only through its Secret: keep that too.
        secret::release(&secrets, &name).await?;
        let note = format!(
            "IAM user {user}, its access key and the Secret {name} retained (deletionPolicy: Retain)"
        );
        ctx.event(&*k, false, "Retained", note).await;
        return Ok(());
    }
    let note = if ctx.owner(&*k).ownership(&user::list_tags(aws, user).await?) == Ownership::Ours {
        user::delete(aws, user).await?;
        format!("deleted IAM user {user} and its access keys")
    } else {
        delete_ours(aws, user, &recorded, &keys, in_secret).await?;
        format!("deleted the access key(s) of IAM user {user}")
    };
    ctx.event(&*k, false, "Deleted", note).await;
    Ok(())
}

/// On a user this object does not own: the keys, memberships and console sign-in it
/// made, and nothing else.
async fn delete_ours(
    aws: &Aws,
    user: &str,
    recorded: &IamUserAccessKeyStatus,
    keys: &[KeyInfo],
    in_secret: Option<String>,
) -> Result<(), Error> {
    let ours: BTreeSet<String> = recorded
        .access_key_id
        .iter()
        .chain(recorded.previous_access_key_id.iter())
        .chain(in_secret.iter())
        .cloned()
        .collect();
    for x in keys.iter().filter(|x| ours.contains(&x.id)) {
        keys::delete(aws, user, &x.id).await?;
    }
    // The memberships this object made; the others are not its to end.
    groups::leave_recorded(aws, user, &recorded.groups).await?;
    // And the console sign-in it enabled.
    if recorded.console_access == Some(crate::api::ConsoleAccess::Enabled)
        || recorded.console_password_pending.is_some()
    {
        console::delete_profile(aws, user).await?;
    }
    Ok(())
}
