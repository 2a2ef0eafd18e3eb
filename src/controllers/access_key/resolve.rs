//! What a reconcile reads before it writes: the Secret the spec names, and the
//! policies the user is to have.

use kube::ResourceExt;

use super::decide::SecretView;
use super::run::Run;
use super::secret::{self, KeyMaterial, Observed};
use super::user::DesiredUser;
use crate::api::IamUserAccessKey;
use crate::controllers::refs::resolve_policy_refs;
use crate::controllers::{Context, Error};
use crate::reason::Reason;

/// The Secret `name` as the decision sees it (ids only), and the key it holds. A Secret
/// of that name that is not ours is never touched: the object stalls instead.
pub async fn secret(run: &Run<'_>, name: &str) -> Result<(SecretView, Option<KeyMaterial>), Error> {
    match secret::observe(run.k, name, run.secrets.get_opt(name).await?) {
        Observed::NotOurs => Err(Error::at(
            Reason::AlreadyExists,
            "spec.secretName",
            format!(
                "Secret {name:?} already exists and is not controlled by this IamUserAccessKey; it is left untouched"
            ),
        )),
        Observed::Missing => Ok((SecretView::Missing, None)),
        Observed::Ours {
            key,
            shown_id,
            up_to_date,
        } => {
            let view = SecretView::Ours {
                held: key.as_ref().map(|h| h.id.clone()),
                shown: shown_id,
                up_to_date,
            };
            Ok((view, key))
        }
    }
}

/// The user the spec asks for: its tags, `boundary` (as validated), and the managed
/// policies with those `policyRefs` resolve to.
pub async fn desired_user(
    ctx: &Context,
    k: &IamUserAccessKey,
    boundary: Option<String>,
) -> Result<DesiredUser, Error> {
    let refs = policy_arns(ctx, k, &k.namespace().unwrap_or_default()).await?;
    Ok(DesiredUser {
        tags: ctx.owner(k).desired_tags(&k.spec.tags),
        boundary,
        policy_arns: k
            .spec
            .managed_policy_arns
            .iter()
            .cloned()
            .chain(refs)
            .collect(),
    })
}

/// The ARNs of the key's `policyRefs` (waiting while one is missing or not Ready).
pub async fn policy_arns(
    ctx: &Context,
    k: &IamUserAccessKey,
    ns: &str,
) -> Result<Vec<String>, Error> {
    resolve_policy_refs(
        &ctx.key_policies,
        &ctx.client,
        ns,
        "spec.policyRefs",
        &k.spec.policy_refs,
    )
    .await
}
