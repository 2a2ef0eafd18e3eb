//! Build: the role as its spec wants it, validated and held to the guardrails, without
//! any I/O (so `iamwright validate` runs the same checks offline).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde_json::Value;

use crate::api::{IamRole, IamRoleSpec};
use crate::controllers::{Context, Error, Settings, governed_name};
use crate::policy::{DocKind, check_inline_aggregate, check_policy_arn, validate_document};
use crate::reason::Reason;
use crate::trust::eks::{self, Account};

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

/// The role as the spec wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub path: String,
    pub trust: Value,
    pub description: String,
    pub max_session: i32,
    pub boundary: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Managed policies to attach: `managedPolicyArns`, then the resolved `policyRefs`.
    pub attached: Vec<String>,
    pub inline: BTreeMap<String, Value>,
    /// The inline policies that come from ConfigMaps (their changes are updates).
    pub inline_from: BTreeSet<String>,
    /// Keep an instance profile of the role's name holding the role.
    pub instance_profile: bool,
}

/// Validate the spec and apply the guardrails of the namespace's governance: a failure
/// is Stalled, before any AWS write. `spec` has its documents resolved
/// (`documents::role_spec`); `refs` are the resolved `policyRefs` ARNs;
/// `account` the role's account, when its trust names it (trust::eks); `operator` the
/// operator's own principal, which `spec.credentials` adds to the trust policy.
pub fn desired(
    r: &IamRole,
    spec: &IamRoleSpec,
    ctx: &Context,
    refs: &[String],
    account: Option<&Account>,
    operator: Option<&str>,
) -> Result<Desired, Error> {
    let gov = crate::trust::current();
    let ns = r.namespace().unwrap_or_default();
    let session = super::credentials::object_session_name(r);
    let operator = operator.map(|principal| (principal, session.as_str()));
    let trust = trust_policy(spec, &ns, &ctx.settings.trust.eks, account, operator)?;
    let inline = inline_documents(spec);
    let boundary = validate(spec, &trust, &inline, &gov.settings(&ctx.settings))?;
    let name = role_name(r);
    gov.check_name("spec.name", &name)?;
    eks::check_namespaces(&r.spec, &gov)?;
    let mut attached: Vec<String> = vec![];
    for arn in r.spec.managed_policy_arns.iter().chain(refs) {
        if !attached.contains(arn) {
            attached.push(arn.clone());
        }
    }
    Ok(Desired {
        path: gov.path(&r.spec.path)?,
        name,
        trust,
        description: r.spec.description.clone().unwrap_or_default(),
        max_session: r.spec.max_session_duration,
        boundary,
        tags: ctx.owner(r).desired_tags(&r.spec.tags),
        attached,
        inline,
        inline_from: spec.inline_policies_from.keys().cloned().collect(),
        instance_profile: r.spec.instance_profile,
    })
}

/// The trust policy the role gets: `spec.assumeRolePolicy` and the service accounts'
/// statements (`eks::trust_document`), with `spec.credentials`' statement for
/// `operator` = (principal, session) when given. Pure: `iamwright validate` builds it
/// the same way.
pub fn trust_policy(
    spec: &IamRoleSpec,
    namespace: &str,
    eks_args: &crate::config::EksArgs,
    account: Option<&Account>,
    operator: Option<(&str, &str)>,
) -> Result<Value, Error> {
    let trust = eks::trust_document(spec, namespace, eks_args, account)?;
    Ok(match (operator, &spec.credentials) {
        (Some((principal, session)), Some(_)) => {
            super::credentials::with_operator_statement(&trust, principal, session)
        }
        _ => trust,
    })
}

/// The inline policies of a (resolved) spec as JSON, parsed once for both the checks
/// and the plan.
pub fn inline_documents(spec: &IamRoleSpec) -> BTreeMap<String, Value> {
    spec.inline_policies
        .iter()
        .map(|(name, doc)| (name.clone(), doc.value()))
        .collect()
}

/// The checks a role spec must pass before any AWS call: the trust and inline policy
/// grammar, names and ARNs, and the operator's guardrails (`--deny-action` on inline
/// policies, `--required-permissions-boundary`). `trust` is the trust policy the role
/// gets (see [`eks::trust_document`]), `inline` its inline policies
/// ([`inline_documents`]). Pure, so `iamwright validate` can run it offline. Returns
/// the permissions boundary the role gets.
pub fn validate(
    spec: &IamRoleSpec,
    trust: &Value,
    inline: &BTreeMap<String, Value>,
    settings: &Settings,
) -> Result<Option<String>, Error> {
    let invalid_doc =
        |e: crate::policy::DocumentError| Error::invalid(Reason::InvalidPolicyDocument, e);
    validate_document(trust, "spec.assumeRolePolicy", DocKind::Trust).map_err(invalid_doc)?;
    if !settings.trust.allow_public_trust
        && let Some(field) = crate::trust::public_trust(trust, "spec.assumeRolePolicy")
    {
        return Err(Error::at(
            Reason::GuardrailViolation,
            field,
            "lets anyone assume the role (Principal \"*\" without a Condition); name the principals, add a Condition, or run the operator with --allow-public-trust",
        ));
    }
    for (name, doc) in inline {
        let root = crate::controllers::documents::inline_field(spec, name);
        crate::controllers::documents::check_inline(&root, name, doc, &settings.deny_actions)?;
    }
    let inline: Vec<(&str, &Value)> = inline
        .iter()
        .map(|(name, doc)| (name.as_str(), doc))
        .collect();
    check_inline_aggregate(&inline, "spec.inlinePolicies").map_err(invalid_doc)?;
    for (i, arn) in spec.managed_policy_arns.iter().enumerate() {
        check_policy_arn(arn).map_err(|m| {
            Error::at(
                Reason::InvalidSpec,
                format!("spec.managedPolicyArns[{i}]"),
                m,
            )
        })?;
    }
    if let Some(c) = &spec.credentials {
        super::credentials::duration(c, spec.max_session_duration)
            .map_err(|e| Error::invalid(Reason::InvalidSpec, e))?;
    }
    if let Some(b) = &spec.permissions_boundary {
        check_policy_arn(b)
            .map_err(|m| Error::at(Reason::InvalidSpec, "spec.permissionsBoundary", m))?;
    }
    match (
        &settings.required_permissions_boundary,
        &spec.permissions_boundary,
    ) {
        (Some(required), Some(named)) if required != named => Err(Error::at(
            Reason::GuardrailViolation,
            "spec.permissionsBoundary",
            format!(
                "must be {required:?} (the operator's --required-permissions-boundary), got {named:?}; remove the field or set it to the required boundary"
            ),
        )),
        (Some(required), _) => Ok(Some(required.clone())),
        (None, named) => Ok(named.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_arns_and_names_are_checked() {
        assert!(check_policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess").is_ok());
        assert!(check_policy_arn("arn:aws:iam::123456789012:policy/team/x").is_ok());
        assert!(check_policy_arn("ReadOnlyAccess").is_err());
        assert!(check_policy_arn("arn:aws:iam::123456789012:role/x").is_err());
        // The ARN grammar too: no region, a 12-digit account.
        assert!(check_policy_arn("arn:aws:iam:us-east-1:123456789012:policy/x").is_err());
        assert!(check_policy_arn("arn:aws:iam::12345:policy/x").is_err());
        assert!(crate::policy::check_policy_name("s3-read_v1.2").is_ok());
        assert!(crate::policy::check_policy_name("no spaces").is_err());
        assert!(crate::policy::check_policy_name("").is_err());
    }
}
