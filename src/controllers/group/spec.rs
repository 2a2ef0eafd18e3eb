//! Build: the group as its spec wants it, validated and held to the guardrails, without
//! any I/O (so `iamwright validate` runs the same checks offline).

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::Value;

use super::marker;
use crate::api::{IamGroup, IamGroupSpec};
use crate::controllers::{Context, Error, Settings, governed_name};
use crate::policy::{InlineOwner, check_inline_aggregate_for, check_policy_arn};
use crate::reason::Reason;

/// AWS's limit for a group name.
pub const MAX_NAME: usize = 128;

/// The AWS name of a group object (see [`governed_name`]).
pub fn group_name(g: &IamGroup) -> String {
    governed_name(
        g.spec.group_name.as_deref(),
        g.status.as_ref().and_then(|s| s.arn.as_deref()),
        &g.namespace().unwrap_or_default(),
        &g.name_any(),
        MAX_NAME,
    )
}

/// The group as the spec wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub path: String,
    /// The ownership tags recorded in the marker policy.
    pub owner: BTreeMap<String, String>,
    /// Managed policies to attach: `managedPolicyArns`, then the resolved `policyRefs`.
    pub attached: Vec<String>,
    pub inline: BTreeMap<String, Value>,
}

/// Validate the spec (`inline` its inline policies with variables replaced) and apply
/// the namespace's guardrails: a failure is Stalled, before any AWS write. `refs` are
/// the resolved `policyRefs` ARNs.
pub fn desired(
    g: &IamGroup,
    inline: BTreeMap<String, Value>,
    ctx: &Context,
    refs: &[String],
) -> Result<Desired, Error> {
    let gov = crate::trust::current();
    validate(&g.spec, &inline, &gov.settings(&ctx.settings))?;
    let name = group_name(g);
    gov.check_name("spec.groupName", &name)?;
    let mut attached: Vec<String> = vec![];
    for arn in g.spec.managed_policy_arns.iter().chain(refs) {
        if !attached.contains(arn) {
            attached.push(arn.clone());
        }
    }
    Ok(Desired {
        path: gov.path(&g.spec.path)?,
        name,
        owner: ctx.owner(g).tags(),
        attached,
        inline,
    })
}

/// The checks a group spec must pass before any AWS call: inline policy names and
/// grammar, their aggregate size (with the ownership marker, which shares the limit),
/// managed policy ARNs, and `--deny-action` on the inline policies. Pure.
pub fn validate(
    spec: &IamGroupSpec,
    inline: &BTreeMap<String, Value>,
    settings: &Settings,
) -> Result<(), Error> {
    let invalid_doc =
        |e: crate::policy::DocumentError| Error::invalid(Reason::InvalidPolicyDocument, e);
    for (name, doc) in inline {
        let root = format!("spec.inlinePolicies.{name}");
        if name == marker::POLICY {
            return Err(Error::at(
                Reason::InvalidSpec,
                root,
                format!(
                    "the name {:?} is reserved for the operator's ownership marker",
                    marker::POLICY
                ),
            ));
        }
        crate::controllers::documents::check_inline(&root, name, doc, &settings.deny_actions)?;
    }
    // The marker is as long as its longest form (a UID and long names): counted so that
    // a spec AWS would refuse once the marker is there is refused here.
    let marker = marker::document(
        &crate::aws::Owner {
            cluster: "c".repeat(63),
            namespace: "n".repeat(63),
            name: "o".repeat(253),
            uid: Some("u".repeat(36)),
        }
        .tags(),
    );
    let mut all: Vec<(&str, &Value)> = inline
        .iter()
        .map(|(name, doc)| (name.as_str(), doc))
        .collect();
    all.push((marker::POLICY, &marker));
    check_inline_aggregate_for(InlineOwner::Group, &all, "spec.inlinePolicies")
        .map_err(invalid_doc)?;
    for (i, arn) in spec.managed_policy_arns.iter().enumerate() {
        check_policy_arn(arn).map_err(|m| {
            Error::at(
                Reason::InvalidSpec,
                format!("spec.managedPolicyArns[{i}]"),
                m,
            )
        })?;
    }
    if spec.managed_policy_arns.len() + spec.policy_refs.len() > MAX_ATTACHED {
        return Err(Error::at(
            Reason::InvalidSpec,
            "spec.managedPolicyArns",
            format!(
                "with spec.policyRefs {} policies, more than the {MAX_ATTACHED} AWS attaches to a group by default",
                spec.managed_policy_arns.len() + spec.policy_refs.len()
            ),
        ));
    }
    Ok(())
}

/// AWS's default quota of managed policies attached to a group (it can be raised, so
/// only a spec above the highest quota AWS grants, 20, is refused offline).
const MAX_ATTACHED: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(deny: &[&str]) -> Settings {
        let deny = deny.iter().map(|s| s.to_string()).collect();
        Settings::guardrails(deny, None, Default::default())
    }

    fn spec() -> IamGroupSpec {
        serde_json::from_value(
            json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
        )
        .unwrap()
    }

    fn doc(action: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
    }

    fn problem(r: Result<(), Error>) -> (String, String) {
        match r {
            Err(e @ Error::Stalled { .. }) => (e.outcome(0).reason.to_string(), e.to_string()),
            other => panic!("expected Stalled, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_group_passes() {
        let inline = BTreeMap::from([("s3".to_string(), doc("s3:GetObject"))]);
        validate(&spec(), &inline, &settings(&["iam:*"])).unwrap();
    }

    #[test]
    fn denied_actions_bad_names_arns_and_the_marker_name_are_refused_naming_the_field() {
        let inline = BTreeMap::from([("admin".to_string(), doc("iam:CreateUser"))]);
        let (reason, message) = problem(validate(&spec(), &inline, &settings(&["iam:*"])));
        assert_eq!(reason, "GuardrailViolation");
        assert!(
            message.starts_with("spec.inlinePolicies.admin.Statement[0]"),
            "{message}"
        );

        let inline = BTreeMap::from([(marker::POLICY.to_string(), doc("s3:GetObject"))]);
        let (reason, message) = problem(validate(&spec(), &inline, &settings(&[])));
        assert_eq!(reason, "InvalidSpec");
        assert!(message.contains("reserved"), "{message}");

        let inline = BTreeMap::from([("no spaces".to_string(), doc("s3:GetObject"))]);
        assert_eq!(
            problem(validate(&spec(), &inline, &settings(&[]))).0,
            "InvalidSpec"
        );

        let mut bad = spec();
        bad.managed_policy_arns = vec!["ReadOnlyAccess".into()];
        let (reason, message) = problem(validate(&bad, &BTreeMap::new(), &settings(&[])));
        assert_eq!(reason, "InvalidSpec");
        assert!(
            message.starts_with("spec.managedPolicyArns[0]"),
            "{message}"
        );
    }

    #[test]
    fn the_inline_aggregate_counts_the_marker() {
        // 4,900 characters fit the 5,120 of a group alone, not with the marker.
        let resource = format!("arn:aws:s3:::{}", "b".repeat(4_830));
        let big = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": resource}]});
        assert!(crate::policy::minified_len(&big) < 5_120);
        let inline = BTreeMap::from([("big".to_string(), big)]);
        let (reason, message) = problem(validate(&spec(), &inline, &settings(&[])));
        assert_eq!(reason, "InvalidPolicyDocument");
        assert!(message.contains("a group"), "{message}");
    }
}
