//! IamRole: a role with its trust policy, attached and inline policies, boundary and
//! tags. Attachments and inline policies are managed exclusively.

use crate::reason::Reason;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_iam::types::Role;
use kube::ResourceExt;
use serde_json::Value;

use super::changes::Changes;
use super::documents;
use super::reconciler::{Applied, Guarded, reconcile, run_controller, scoped_api};
use super::refs::{names, referencing, resolve_policy_refs};
use super::{Context, Error, Settings, Shutdown, governed_name, key_of, watch_config};
use crate::api::{DeletionPolicy, IamPolicy, IamRole, IamRoleSpec, IamRoleStatus};
use crate::aws::{Aws, AwsError, AwsErrorKind, Found, Ownership, sync_tags, tag_map, to_tags};
use crate::policy::{
    DocKind, allowed_actions_matching, check_inline_aggregate, decode_aws_document, same_document,
    validate_document,
};

/// Run the IamRole controller until shutdown. A change to a referenced IamPolicy (it
/// becomes Ready, its ARN changes) re-triggers the roles that reference it.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let watched = ctx.clone();
    run_controller::<IamRole, _, _>(
        ctx,
        shutdown,
        |obj, ctx| reconcile(obj, ctx, apply, cleanup),
        move |c, scope| {
            let store = c.store();
            let c = c.watches(
                scoped_api::<Guarded<IamPolicy>>(&client, scope),
                watch_config(),
                move |p| referencing(&store, &p, |r: &IamRole| names(&r.spec.policy_refs)),
            );
            documents::watch_config_maps(c, watched.clone(), scope, documents::role_config_maps)
        },
    )
    .await;
}

/// The AWS name of a role object (see [`governed_name`]).
pub fn role_name(r: &IamRole) -> String {
    governed_name(
        r.spec.name.as_deref(),
        r.status.as_ref().and_then(|s| s.arn.as_deref()),
        &r.namespace().unwrap_or_default(),
        &r.name_any(),
        64,
    )
}

/// The role as the spec wants it, built and checked without any I/O.
struct Desired {
    name: String,
    path: String,
    trust: Value,
    description: String,
    max_session: i32,
    boundary: Option<String>,
    tags: BTreeMap<String, String>,
    inline: BTreeMap<String, Value>,
    /// The inline policies that come from ConfigMaps (their changes are updates).
    inline_from: BTreeSet<String>,
}

/// Validate the spec (its documents resolved: `spec`) and apply the guardrails: a
/// failure is Stalled, before any AWS call.
fn desired(r: &IamRole, spec: &IamRoleSpec, ctx: &Context) -> Result<Desired, Error> {
    let gov = crate::trust::current();
    let boundary = validate(spec, &gov.settings(&ctx.settings))?;
    let name = role_name(r);
    gov.check_name("spec.name", &name)?;
    Ok(Desired {
        path: gov.path(&r.spec.path)?,
        name,
        trust: spec.assume_role_policy.clone(),
        description: r.spec.description.clone().unwrap_or_default(),
        max_session: r.spec.max_session_duration,
        boundary,
        tags: ctx.owner(r).desired_tags(&r.spec.tags),
        inline: spec.inline_policies.clone(),
        inline_from: spec.inline_policies_from.keys().cloned().collect(),
    })
}

/// The checks a role spec must pass before any AWS call: the trust and inline policy
/// grammar, names and ARNs, and the operator's guardrails (`--deny-action` on inline
/// policies, `--required-permissions-boundary`). Pure, so `iamwright validate` can run
/// it offline. Returns the permissions boundary the role gets.
pub fn validate(spec: &IamRoleSpec, settings: &Settings) -> Result<Option<String>, Error> {
    let invalid_doc = |e: crate::policy::DocumentError| {
        Error::stalled(Reason::InvalidPolicyDocument, e.to_string())
    };
    validate_document(
        &spec.assume_role_policy,
        "spec.assumeRolePolicy",
        DocKind::Trust,
    )
    .map_err(invalid_doc)?;
    if !settings.trust.allow_public_trust
        && let Some(field) =
            crate::trust::public_trust(&spec.assume_role_policy, "spec.assumeRolePolicy")
    {
        return Err(Error::stalled(
            Reason::GuardrailViolation,
            format!(
                "{field}: lets anyone assume the role (Principal \"*\" without a Condition); name the principals, add a Condition, or run the operator with --allow-public-trust"
            ),
        ));
    }
    for (name, doc) in &spec.inline_policies {
        let root = documents::inline_field(spec, name);
        check_policy_name(name)
            .map_err(|m| Error::stalled(Reason::InvalidSpec, format!("{root}: {m}")))?;
        validate_document(doc, &root, DocKind::Inline).map_err(invalid_doc)?;
        if let Some((field, msg)) = allowed_actions_matching(doc, &root, &settings.deny_actions) {
            return Err(Error::stalled(
                Reason::GuardrailViolation,
                format!("{field}: {msg}"),
            ));
        }
    }
    let inline: Vec<(&str, &Value)> = spec
        .inline_policies
        .iter()
        .map(|(name, doc)| (name.as_str(), doc))
        .collect();
    check_inline_aggregate(&inline, "spec.inlinePolicies").map_err(invalid_doc)?;
    for (i, arn) in spec.managed_policy_arns.iter().enumerate() {
        check_policy_arn(arn).map_err(|m| {
            Error::stalled(
                Reason::InvalidSpec,
                format!("spec.managedPolicyArns[{i}]: {m}"),
            )
        })?;
    }
    if let Some(b) = &spec.permissions_boundary {
        check_policy_arn(b).map_err(|m| {
            Error::stalled(
                Reason::InvalidSpec,
                format!("spec.permissionsBoundary: {m}"),
            )
        })?;
    }
    match (
        &settings.required_permissions_boundary,
        &spec.permissions_boundary,
    ) {
        (Some(required), Some(named)) if required != named => Err(Error::stalled(
            Reason::GuardrailViolation,
            format!(
                "spec.permissionsBoundary: must be {required:?} (the operator's --required-permissions-boundary), got {named:?}; remove the field or set it to the required boundary"
            ),
        )),
        (Some(required), _) => Ok(Some(required.clone())),
        (None, named) => Ok(named.clone()),
    }
}

/// AWS's rule for inline policy names.
fn check_policy_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if name.is_empty() || name.len() > 128 || !ok_chars {
        return Err(format!(
            "inline policy name {name:?} must be 1 to 128 letters, digits or _+=,.@-"
        ));
    }
    Ok(())
}

fn check_policy_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[5].starts_with("policy/")
        && parts[5].len() > "policy/".len();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be a policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess, got {arn:?}"
        ))
    }
}

/// Reconcile one role: errors become conditions, not failures.
async fn apply(r: Arc<IamRole>, ctx: Arc<Context>) -> Applied<IamRoleStatus> {
    // The documents as AWS gets them: from their ConfigMaps, variables replaced.
    let spec = match documents::role_spec(&ctx, &r).await {
        Ok(spec) => spec,
        Err(e) => return Applied::failed(None, e),
    };
    // Unknown actions are reported (condition + warning event), never held back.
    let recognized = crate::policy::actions_recognized(documents::role_documents(&spec));
    let applied = match sync(&r, &spec, &ctx).await {
        Ok(status) => {
            let message = format!(
                "role {} is in sync",
                status.arn.as_deref().unwrap_or_default()
            );
            Applied::synced(status, message)
        }
        Err(e) => Applied::failed(None, e),
    };
    applied.with_extra(recognized)
}

/// Validate, resolve references, then bring AWS to the spec with the fewest writes.
async fn sync(r: &IamRole, spec: &IamRoleSpec, ctx: &Context) -> Result<IamRoleStatus, Error> {
    let d = desired(r, spec, ctx)?;
    let ns = r.namespace().unwrap_or_default();
    let refs =
        resolve_policy_refs(&ctx.client, &ns, "spec.policyRefs", &r.spec.policy_refs).await?;
    let gov = crate::trust::current();
    let own = crate::controllers::refs::own_policy_arns(&ctx.client, &ns, &gov).await?;
    gov.check_managed_arns("spec.managedPolicyArns", &r.spec.managed_policy_arns, &own)?;
    ctx.managed_policies
        .check(
            &ctx.aws,
            "spec.managedPolicyArns",
            &r.spec.managed_policy_arns,
            &gov.deny_actions,
        )
        .await?;
    let mut attached: Vec<String> = vec![];
    for arn in r.spec.managed_policy_arns.iter().chain(&refs) {
        if !attached.contains(arn) {
            attached.push(arn.clone());
        }
    }
    let aws = &ctx.aws;
    // observe: on its first reconcile (no status yet) a role is created straight
    // away, without a read that would only answer NotFound; a name already taken
    // falls back to the ownership check. Later reconciles read first. A role just
    // created has no attachments or inline policies to list.
    let never_created = r.status.as_ref().is_none_or(|s| s.conditions.is_empty());
    let existing = if never_created {
        None
    } else {
        get_role(aws, &d.name).await?
    };
    let (role, mut changes, created) = match existing {
        Some(role) => {
            check_ownership(r, ctx, &role).await?;
            (role, Changes::new(ctx, r), false)
        }
        None => match create_role(aws, &d).await {
            Ok(role) => {
                ctx.event(r, false, "Created", format!("created role {}", role.arn))
                    .await;
                // What follows completes the create, which the Created event reports.
                (role, Changes::quiet(ctx, r), true)
            }
            Err(Error::Aws(e)) if e.kind == AwsErrorKind::AlreadyExists => {
                let role = get_role(aws, &d.name).await?.ok_or(e)?;
                check_ownership(r, ctx, &role).await?;
                (role, Changes::new(ctx, r), false)
            }
            Err(e) => return Err(e),
        },
    };
    let result = async {
        update_role(aws, &d, &role, &mut changes).await?;
        sync_attachments(aws, &d.name, &attached, created, &mut changes).await?;
        sync_inline(aws, &d, created, &mut changes).await
    }
    .await;
    // The changes made before a failure are reported too.
    changes.publish().await;
    result?;
    Ok(IamRoleStatus {
        arn: Some(role.arn),
        role_id: Some(role.role_id),
        attached_policy_arns: attached,
        ..Default::default()
    })
}

async fn get_role(aws: &Aws, name: &str) -> Result<Option<Role>, AwsError> {
    Ok(aws
        .call("iam", "GetRole", aws.iam.get_role().role_name(name).send())
        .await
        .found()?
        .and_then(|out| out.role))
}

fn tags_of(role: &Role) -> BTreeMap<String, String> {
    tag_map(role.tags())
}

/// Only a role tagged for this object is changed; an untagged one only with adopt.
async fn check_ownership(r: &IamRole, ctx: &Context, role: &Role) -> Result<(), Error> {
    let arn = &role.arn;
    match ctx.owner(r).ownership(&tags_of(role)) {
        Ownership::Ours => Ok(()),
        Ownership::Another(who) => Err(Error::stalled(
            Reason::OwnedByAnother,
            format!(
                "role {arn} is managed by another iamwright object ({who}); it is left untouched"
            ),
        )),
        Ownership::Untagged if !r.spec.adopt => Err(Error::stalled(
            Reason::AlreadyExists,
            format!(
                "role {arn} already exists and is not managed by iamwright; set spec.adopt: true to take it over"
            ),
        )),
        Ownership::Untagged => {
            crate::trust::current().check_adopt(&format!("role {arn}"))?;
            ctx.event(r, false, "Adopted", format!("adopted existing role {arn}"))
                .await;
            Ok(())
        }
    }
}

async fn create_role(aws: &Aws, d: &Desired) -> Result<Role, Error> {
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
    out.role.ok_or_else(|| Error::Waiting {
        reason: Reason::Creating,
        message: format!("CreateRole returned no role for {}", d.name),
    })
}

/// Tags, trust policy, description, session duration and boundary, each written only
/// when it differs.
async fn update_role(
    aws: &Aws,
    d: &Desired,
    role: &Role,
    changes: &mut Changes<'_, IamRole>,
) -> Result<(), Error> {
    let name = d.name.as_str();
    let keys = sync_tags(
        &tags_of(role),
        &d.tags,
        |keys| {
            aws.call(
                "iam",
                "UntagRole",
                aws.iam
                    .untag_role()
                    .role_name(name)
                    .set_tag_keys(Some(keys))
                    .send(),
            )
        },
        |tags| {
            aws.call(
                "iam",
                "TagRole",
                aws.iam
                    .tag_role()
                    .role_name(name)
                    .set_tags(Some(tags))
                    .send(),
            )
        },
    )
    .await?;
    if !keys.is_empty() {
        changes.made(format!("set tags {keys:?}"));
    }

    let current_trust = role
        .assume_role_policy_document
        .as_deref()
        .and_then(|raw| decode_aws_document(raw).ok());
    let partition = role.arn.split(':').nth(1).unwrap_or("aws");
    let same_trust = current_trust.is_some_and(|t| {
        same_document(
            &normalize_trust(&t, partition),
            &normalize_trust(&d.trust, partition),
        )
    });
    if !same_trust {
        aws.call(
            "iam",
            "UpdateAssumeRolePolicy",
            aws.iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(d.trust.to_string())
                .send(),
        )
        .await?;
        changes.made("updated the trust policy".into());
    }

    let description = role.description.as_deref().unwrap_or_default();
    let max_session = role.max_session_duration.unwrap_or(3600);
    if description != d.description || max_session != d.max_session {
        aws.call(
            "iam",
            "UpdateRole",
            aws.iam
                .update_role()
                .role_name(name)
                .description(&d.description)
                .max_session_duration(d.max_session)
                .send(),
        )
        .await?;
        changes.made(format!(
            "set description {:?} and maxSessionDuration {}",
            d.description, d.max_session
        ));
    }

    let boundary = role
        .permissions_boundary
        .as_ref()
        .and_then(|b| b.permissions_boundary_arn.clone());
    match (&d.boundary, &boundary) {
        (Some(want), have) if Some(want) != have.as_ref() => {
            aws.call(
                "iam",
                "PutRolePermissionsBoundary",
                aws.iam
                    .put_role_permissions_boundary()
                    .role_name(name)
                    .permissions_boundary(want)
                    .send(),
            )
            .await?;
            changes.made(format!("set the permissions boundary {want}"));
        }
        (None, Some(have)) => {
            aws.call(
                "iam",
                "DeleteRolePermissionsBoundary",
                aws.iam
                    .delete_role_permissions_boundary()
                    .role_name(name)
                    .send(),
            )
            .await?;
            changes.made(format!("removed the permissions boundary {have}"));
        }
        _ => {}
    }
    Ok(())
}

/// A trust policy as AWS stores it: an account id principal (`"AWS": "123456789012"`)
/// becomes the account's root ARN. Compared in that form, a spec naming an account id
/// is not rewritten on every reconcile.
fn normalize_trust(doc: &Value, partition: &str) -> Value {
    let mut doc = doc.clone();
    let statements: Vec<&mut Value> = match doc.get_mut("Statement") {
        Some(Value::Array(list)) => list.iter_mut().collect(),
        Some(single) => vec![single],
        None => vec![],
    };
    let root = |v: &mut Value| {
        if let Value::String(s) = v
            && s.len() == 12
            && s.chars().all(|c| c.is_ascii_digit())
        {
            *s = format!("arn:{partition}:iam::{s}:root");
        }
    };
    for st in statements {
        match st.pointer_mut("/Principal/AWS") {
            Some(Value::Array(items)) => items.iter_mut().for_each(root),
            Some(single) => root(single),
            None => {}
        }
    }
    doc
}

/// The managed policies attached to a role.
async fn list_attached(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let mut arns = vec![];
    let mut marker = None;
    loop {
        let out = aws
            .call(
                "iam",
                "ListAttachedRolePolicies",
                aws.iam
                    .list_attached_role_policies()
                    .role_name(name)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        arns.extend(
            out.attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn.clone()),
        );
        if out.is_truncated && out.marker.is_some() {
            marker = out.marker;
        } else {
            return Ok(arns);
        }
    }
}

/// The names of a role's inline policies.
async fn list_inline(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let mut names = vec![];
    let mut marker = None;
    loop {
        let out = aws
            .call(
                "iam",
                "ListRolePolicies",
                aws.iam
                    .list_role_policies()
                    .role_name(name)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        names.extend(out.policy_names().iter().cloned());
        if out.is_truncated && out.marker.is_some() {
            marker = out.marker;
        } else {
            return Ok(names);
        }
    }
}

/// Attach what the spec lists, detach everything else.
async fn sync_attachments(
    aws: &Aws,
    name: &str,
    want: &[String],
    created: bool,
    changes: &mut Changes<'_, IamRole>,
) -> Result<(), Error> {
    let have = if created {
        vec![]
    } else {
        list_attached(aws, name).await?
    };
    for arn in want.iter().filter(|a| !have.contains(a)) {
        aws.call(
            "iam",
            "AttachRolePolicy",
            aws.iam
                .attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send(),
        )
        .await?;
        changes.made(format!("attached policy {arn}"));
    }
    for arn in have.iter().filter(|a| !want.contains(a)) {
        detach(aws, name, arn).await?;
        changes.made(format!("detached policy {arn}"));
    }
    Ok(())
}

async fn detach(aws: &Aws, name: &str, arn: &str) -> Result<(), AwsError> {
    match aws
        .call(
            "iam",
            "DetachRolePolicy",
            aws.iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send(),
        )
        .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Put the inline policies the spec holds (when missing or different), delete the rest.
async fn sync_inline(
    aws: &Aws,
    d: &Desired,
    created: bool,
    changes: &mut Changes<'_, IamRole>,
) -> Result<(), Error> {
    let (name, want) = (d.name.as_str(), &d.inline);
    let have: BTreeSet<String> = if created {
        BTreeSet::new()
    } else {
        list_inline(aws, name).await?.into_iter().collect()
    };
    for (policy, doc) in want {
        if have.contains(policy) {
            let out = aws
                .call(
                    "iam",
                    "GetRolePolicy",
                    aws.iam
                        .get_role_policy()
                        .role_name(name)
                        .policy_name(policy)
                        .send(),
                )
                .await?;
            if decode_aws_document(&out.policy_document)
                .map(|current| same_document(&current, doc))
                .unwrap_or(false)
            {
                continue;
            }
        }
        aws.call(
            "iam",
            "PutRolePolicy",
            aws.iam
                .put_role_policy()
                .role_name(name)
                .policy_name(policy)
                .policy_document(doc.to_string())
                .send(),
        )
        .await?;
        if d.inline_from.contains(policy) {
            changes.followed(format!("put inline policy {policy} from its ConfigMap"));
        } else {
            changes.made(format!("put inline policy {policy}"));
        }
    }
    for policy in have.iter().filter(|p| !want.contains_key(*p)) {
        delete_inline(aws, name, policy).await?;
        changes.made(format!("deleted inline policy {policy}"));
    }
    Ok(())
}

async fn delete_inline(aws: &Aws, name: &str, policy: &str) -> Result<(), AwsError> {
    match aws
        .call(
            "iam",
            "DeleteRolePolicy",
            aws.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send(),
        )
        .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Delete the role unless retained: take it out of its instance profiles, detach its
/// policies, delete its inline policies, then the role. A role we do not own is left.
async fn cleanup(r: Arc<IamRole>, ctx: Arc<Context>) -> Result<(), Error> {
    let aws = &ctx.aws;
    let name = role_name(&r);
    if r.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            &*r,
            false,
            "Retained",
            format!("role {name} retained (deletionPolicy: Retain)"),
        )
        .await;
        return Ok(());
    }
    let Some(role) = get_role(aws, &name).await? else {
        return Ok(());
    };
    if ctx.owner(&*r).ownership(&tags_of(&role)) != Ownership::Ours {
        tracing::info!(object = %key_of(&*r), role = %name, "role not owned by this object; left in place");
        return Ok(());
    }
    let mut marker = None;
    loop {
        let out = aws
            .call(
                "iam",
                "ListInstanceProfilesForRole",
                aws.iam
                    .list_instance_profiles_for_role()
                    .role_name(&name)
                    .set_marker(marker.clone())
                    .send(),
            )
            .await?;
        for p in out.instance_profiles() {
            match aws
                .call(
                    "iam",
                    "RemoveRoleFromInstanceProfile",
                    aws.iam
                        .remove_role_from_instance_profile()
                        .instance_profile_name(&p.instance_profile_name)
                        .role_name(&name)
                        .send(),
                )
                .await
            {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        if out.is_truncated && out.marker.is_some() {
            marker = out.marker;
        } else {
            break;
        }
    }
    for arn in list_attached(aws, &name).await? {
        detach(aws, &name, &arn).await?;
    }
    for policy in list_inline(aws, &name).await? {
        delete_inline(aws, &name, &policy).await?;
    }
    match aws
        .call(
            "iam",
            "DeleteRole",
            aws.iam.delete_role().role_name(&name).send(),
        )
        .await
    {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    ctx.event(&*r, false, "Deleted", format!("deleted role {}", role.arn))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_principals_compare_as_root_arns() {
        let spec = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": ["111122223333", "arn:aws:iam::444455556666:role/x"]},
            "Action": "sts:AssumeRole"}]});
        let stored = serde_json::json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::444455556666:role/x", "arn:aws:iam::111122223333:root"]},
            "Action": "sts:AssumeRole"}});
        assert!(!same_document(&spec, &stored));
        assert!(same_document(
            &normalize_trust(&spec, "aws"),
            &normalize_trust(&stored, "aws")
        ));
    }

    #[test]
    fn policy_arns_and_names_are_checked() {
        assert!(check_policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess").is_ok());
        assert!(check_policy_arn("arn:aws:iam::123456789012:policy/team/x").is_ok());
        assert!(check_policy_arn("ReadOnlyAccess").is_err());
        assert!(check_policy_arn("arn:aws:iam::123456789012:role/x").is_err());
        assert!(check_policy_name("s3-read_v1.2").is_ok());
        assert!(check_policy_name("no spaces").is_err());
        assert!(check_policy_name("").is_err());
    }
}
