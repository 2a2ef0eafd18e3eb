//! The IAM grammar per document kind, checked on the typed model ([`super::model`])
//! before any AWS call. Each rule follows a page of the IAM User Guide; see
//! `docs/policy-grammar.md`. Where AWS's behaviour is not documented the checker
//! accepts: a document AWS would refuse fails at the AWS call anyway, a document AWS
//! would accept must never be refused here.

use serde_json::Value;

use super::error::{DocumentError, err, short};
use super::model::{
    Document, Family, Hooks, OneOrMany, Principal, PrincipalType, Scalar, Statement,
};

/// Which grammar a document follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// A customer managed policy (IamPolicy documents): no `Principal`.
    Managed,
    /// An inline policy of a role or user: no `Principal`.
    Inline,
    /// A role's trust policy: `Principal` required, only STS assume actions.
    Trust,
}

/// Everything that differs between the kinds, in one place.
#[derive(Debug)]
pub struct KindRules {
    /// The `Version` values AWS takes for this kind.
    pub versions: &'static [&'static str],
    /// The limit on one document, in characters without whitespace; `None` when only
    /// an aggregate applies (inline policies, see [`check_inline_aggregate`]).
    pub max_chars: Option<usize>,
    /// Trust policies: `Principal` required, `Resource` not allowed, only the
    /// [`TRUST_ACTIONS`]. Identity policies: the reverse.
    pub trust: bool,
}

impl DocKind {
    pub fn rules(self) -> &'static KindRules {
        match self {
            // CreatePolicy / CreatePolicyVersion take only 2012-10-17.
            DocKind::Managed => &KindRules {
                versions: &["2012-10-17"],
                max_chars: Some(MAX_MANAGED_POLICY_CHARS),
                trust: false,
            },
            DocKind::Inline => &KindRules {
                versions: &["2012-10-17", "2008-10-17"],
                max_chars: None,
                trust: false,
            },
            DocKind::Trust => &KindRules {
                versions: &["2012-10-17", "2008-10-17"],
                max_chars: Some(MAX_TRUST_POLICY_CHARS),
                trust: true,
            },
        }
    }
}

/// AWS's limit for a managed policy, counted without whitespace.
pub const MAX_MANAGED_POLICY_CHARS: usize = 6144;
/// AWS's limit for a role trust policy (the default quota; it can be raised to 4,096).
pub const MAX_TRUST_POLICY_CHARS: usize = 2048;
/// AWS's limit for all inline policies of a role together, without whitespace.
pub const MAX_ROLE_INLINE_AGGREGATE_CHARS: usize = 10240;
/// AWS's limit for all inline policies of a user together, without whitespace.
pub const MAX_USER_INLINE_AGGREGATE_CHARS: usize = 2048;
/// AWS's limit for all inline policies of a group together, without whitespace.
pub const MAX_GROUP_INLINE_AGGREGATE_CHARS: usize = 5120;

/// The actions a trust policy may allow (compared case-insensitively, as IAM does).
pub const TRUST_ACTIONS: &[&str] = &[
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRoleWithSAML",
    "sts:TagSession",
    "sts:SetSourceIdentity",
    "sts:SetContext",
];

/// The partitions AWS has ("IAM identifiers": ARNs).
pub const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// Services whose ARNs never hold a region.
const GLOBAL_SERVICES: &[&str] = &[
    "iam",
    "sts",
    "route53",
    "cloudfront",
    "organizations",
    "waf",
];

/// Check a document against the IAM grammar before any AWS call. `root` names the
/// field the document came from (e.g. `spec.document`, `spec.inlinePolicies.s3`).
pub fn validate_document(doc: &Value, root: &str, kind: DocKind) -> Result<(), DocumentError> {
    let rules = kind.rules();
    Document::parse_with(doc, root, &mut Checker { rules })?;
    if let Some(limit) = rules.max_chars {
        let size = minified_len(doc);
        if size > limit {
            return Err(err(
                root,
                format!(
                    "is {size} characters without whitespace, more than the {limit} AWS allows"
                ),
            ));
        }
    }
    Ok(())
}

/// Whose inline policies are counted together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InlineOwner {
    Role,
    User,
    Group,
}

/// AWS limits the inline policies of a role together (10,240 characters without
/// whitespace), not each one. `docs` are `(name, document)`, `root` the field they
/// come from (e.g. `spec.inlinePolicies`).
pub fn check_inline_aggregate(docs: &[(&str, &Value)], root: &str) -> Result<(), DocumentError> {
    check_inline_aggregate_for(InlineOwner::Role, docs, root)
}

/// [`check_inline_aggregate`] for a role or a user (2,048 characters for a user).
pub fn check_inline_aggregate_for(
    owner: InlineOwner,
    docs: &[(&str, &Value)],
    root: &str,
) -> Result<(), DocumentError> {
    let (limit, whose) = match owner {
        InlineOwner::Role => (MAX_ROLE_INLINE_AGGREGATE_CHARS, "a role"),
        InlineOwner::User => (MAX_USER_INLINE_AGGREGATE_CHARS, "a user"),
        InlineOwner::Group => (MAX_GROUP_INLINE_AGGREGATE_CHARS, "a group"),
    };
    let total: usize = docs.iter().map(|(_, d)| minified_len(d)).sum();
    if total > limit {
        return Err(err(
            root,
            format!(
                "the {} inline policies are {total} characters without whitespace together, more than the {limit} AWS allows for {whose}",
                docs.len()
            ),
        ));
    }
    Ok(())
}

struct Checker {
    rules: &'static KindRules,
}

impl Hooks for Checker {
    fn version(&mut self, version: Option<&Value>, path: &str) -> Result<(), DocumentError> {
        let allowed = self.rules.versions;
        match version {
            Some(Value::String(v)) if allowed.contains(&v.as_str()) => Ok(()),
            Some(other) => {
                let want = allowed
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let why = if other.as_str() == Some("2008-10-17") {
                    " (a managed policy takes only the current version)"
                } else {
                    ""
                };
                Err(err(
                    path,
                    format!("must be {want}{why}, got {}", short(other)),
                ))
            }
            // AWS would default a missing Version to 2008-10-17, which disables policy
            // variables; we ask for it to be written.
            None => Err(err(path, "is required (use \"2012-10-17\")")),
        }
    }

    fn statement(&mut self, st: &Statement, path: &str) -> Result<(), DocumentError> {
        let (action_key, actions) = st.actions();
        for (i, action) in actions.iter().enumerate() {
            let at = format!("{path}.{action_key}[{i}]");
            check_action(action, &at)?;
            if self.rules.trust && !TRUST_ACTIONS.iter().any(|t| t.eq_ignore_ascii_case(action)) {
                return Err(err(
                    at,
                    format!(
                        "a trust policy allows only {}, got {action:?}",
                        TRUST_ACTIONS.join(", ")
                    ),
                ));
            }
        }
        if self.rules.trust {
            if st.not_principal.is_some() {
                return Err(err(
                    format!("{path}.NotPrincipal"),
                    "is not allowed in a trust policy; use Principal",
                ));
            }
            if let Some((key, _)) = st.resources() {
                return Err(err(
                    format!("{path}.{key}"),
                    "is not allowed in a trust policy",
                ));
            }
            let principal = st
                .principal
                .as_ref()
                .ok_or_else(|| err(format!("{path}.Principal"), "is required in a trust policy"))?;
            check_principal(principal, &format!("{path}.Principal"))?;
        } else {
            if let Some((key, _)) = st.principals() {
                return Err(err(
                    format!("{path}.{key}"),
                    "is not allowed in an identity policy",
                ));
            }
            let (key, resources) = st.resources().ok_or_else(|| {
                err(
                    format!("{path}.Resource"),
                    "one of Resource and NotResource is required",
                )
            })?;
            for (i, r) in resources.iter().enumerate() {
                check_arn(r).map_err(|m| err(format!("{path}.{key}[{i}]"), m))?;
            }
        }
        if let Some(cond) = &st.condition {
            for block in &cond.0 {
                for (key, values) in &block.entries {
                    let key_path = format!("{path}.Condition.{}.{key}", block.name);
                    for (i, v) in values.iter().enumerate() {
                        let at = match values {
                            OneOrMany::One(_) => key_path.clone(),
                            OneOrMany::Many(_) => format!("{key_path}[{i}]"),
                        };
                        check_condition_value(block.operator.family, &block.name, v)
                            .map_err(|m| err(at, m))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `*` or `service:Action`. IAM matches service prefixes and action names
/// case-insensitively (`IAM:ListAccessKeys` is `iam:ListAccessKeys`); `*` and `?` are
/// wildcards in the action name.
fn check_action(action: &str, path: &str) -> Result<(), DocumentError> {
    if action == "*" {
        return Ok(());
    }
    let valid = match action.split_once(':') {
        Some((service, name)) => {
            !service.is_empty()
                && service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '-' | '_'))
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(err(
            path,
            format!("must be \"*\" or \"service:Action\" (wildcards allowed), got {action:?}"),
        ))
    }
}

fn check_principal(principal: &Principal, path: &str) -> Result<(), DocumentError> {
    let Principal::Map(entries) = principal else {
        return Ok(());
    };
    for (t, values) in entries {
        for (i, v) in values.iter().enumerate() {
            let at = match values {
                OneOrMany::One(_) => format!("{path}.{}", t.as_str()),
                OneOrMany::Many(_) => format!("{path}.{}[{i}]", t.as_str()),
            };
            if v.is_empty() {
                return Err(err(at, "must not be empty"));
            }
            if *t == PrincipalType::Aws && v != "*" && !is_account_id(v) && !v.contains("${") {
                if !v.starts_with("arn:") {
                    return Err(err(
                        at,
                        format!("must be \"*\", a 12-digit account id or an ARN, got {v:?}"),
                    ));
                }
                check_arn(v).map_err(|m| err(&at, m))?;
            }
        }
    }
    Ok(())
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Policy variables (`${aws:username}`) replaced by `*`: for structure they match
/// anything, and they may hold colons.
fn mask_variables(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push('*');
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The structure of a resource ARN ("IAM identifiers"; "IAM JSON policy elements:
/// Resource"): `*`, or `arn:partition:service:region:account:resource`. Returns the
/// message for a refused ARN.
pub fn check_arn(arn: &str) -> Result<(), String> {
    if arn == "*" {
        return Ok(());
    }
    if !arn.starts_with("arn:") {
        return Err(format!(
            "must be \"*\" or an ARN starting \"arn:\", got {arn:?}"
        ));
    }
    let masked = mask_variables(arn);
    let parts: Vec<&str> = masked.splitn(6, ':').collect();
    if parts.len() < 6 {
        // A trailing wildcard may stand for the remaining parts (`arn:aws:s3:*`);
        // whether IAM takes that is not documented, so it is accepted.
        if masked.ends_with('*') {
            return Ok(());
        }
        return Err(format!(
            "an ARN has 6 parts, arn:partition:service:region:account:resource, got {arn:?}"
        ));
    }
    let (partition, service, region, account, resource) =
        (parts[1], parts[2], parts[3], parts[4], parts[5]);
    if !PARTITIONS.contains(&partition) && !has_wildcard(partition) {
        return Err(format!(
            "unknown partition {partition:?} in {arn:?}; AWS partitions are {}",
            PARTITIONS.join(", ")
        ));
    }
    let regionless = GLOBAL_SERVICES.contains(&service)
        // S3 bucket and object ARNs have neither region nor account; access points,
        // jobs and Storage Lens ARNs have both.
        || (service == "s3" && account.is_empty());
    if regionless && !region.is_empty() && !has_wildcard(region) {
        let what = if service == "s3" {
            "S3 bucket and object ARNs have no region (access points have region and account)"
        } else {
            &format!("{service} ARNs have no region")
        };
        return Err(format!("{what}, got region {region:?} in {arn:?}"));
    }
    if service == "iam" {
        if !(is_account_id(account) || account == "aws" || has_wildcard(account)) {
            return Err(format!(
                "an IAM ARN needs the account: 12 digits, \"aws\" (AWS managed policies) or a wildcard, got {account:?} in {arn:?}"
            ));
        }
        check_iam_resource(resource, arn)?;
    } else if !account.is_empty()
        && account.bytes().all(|b| b.is_ascii_digit())
        && !is_account_id(account)
    {
        // Other AWS-owned resources use names (`aws`) as the account; only a numeric
        // account of the wrong length is certainly wrong.
        return Err(format!(
            "an account id has 12 digits, got {account:?} in {arn:?}"
        ));
    }
    Ok(())
}

/// AWS's rule for inline policy names.
pub fn check_policy_name(name: &str) -> Result<(), String> {
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

/// A managed policy ARN, as `managedPolicyArns` and `permissionsBoundary` take it:
/// `arn:partition:iam::account:policy/[path/]name`, and an ARN [`check_arn`] accepts
/// (partition, no region, the account).
pub fn check_policy_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[5].starts_with("policy/")
        && parts[5].len() > "policy/".len();
    if !ok {
        return Err(format!(
            "must be a policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess, got {arn:?}"
        ));
    }
    check_arn(arn)
}

/// The resource types IAM ARNs may name, in the order of IAM's own answer to any
/// other: "IAM resource path must either be "*" or start with user/, federated-user/,
/// role/, ..." ("IAM identifiers": IAM ARNs lists the common ones; the Service
/// Authorization Reference's IAM page lists the rest). Matched case-sensitively.
pub const IAM_RESOURCE_TYPES: &[&str] = &[
    "user",
    "federated-user",
    "role",
    "group",
    "instance-profile",
    "mfa",
    "server-certificate",
    "policy",
    "sms-mfa",
    "saml-provider",
    "oidc-provider",
    "report",
    "access-report",
];

/// The resource part of an IAM ARN (`resource`, policy variables masked as wildcards,
/// from `arn`): `root` (the account itself), or `type/[path/]name` with a type IAM
/// has. A wildcard in the type (`*`, `ro*/x`) may stand for any type; whether IAM takes
/// a partial one is not documented, so it is accepted.
fn check_iam_resource(resource: &str, arn: &str) -> Result<(), String> {
    let Some((head, _)) = resource.split_once('/') else {
        if resource == "root" || has_wildcard(resource) {
            return Ok(());
        }
        return Err(format!(
            "an IAM resource is a type and a name, such as role/name or policy/path/name, got {resource:?} in {arn:?}"
        ));
    };
    if has_wildcard(head) || IAM_RESOURCE_TYPES.contains(&head) {
        return Ok(());
    }
    let hint = crate::policy::model::suggestion(head, IAM_RESOURCE_TYPES);
    let types: Vec<String> = IAM_RESOURCE_TYPES.iter().map(|t| format!("{t}/")).collect();
    Err(format!(
        "unknown IAM resource type {head:?} in {arn:?} (IAM resources are root or start with {}){hint}",
        types.join(", ")
    ))
}

/// The value formats of each operator family ("IAM JSON policy elements: Condition
/// operators"). A value with a policy variable (`${...}`) is not checked: it is
/// replaced when the policy is evaluated.
fn check_condition_value(family: Family, op: &str, v: &Scalar) -> Result<(), String> {
    if let Scalar::String(s) = v
        && s.contains("${")
    {
        return Ok(());
    }
    let text = v.to_aws_string();
    let ok = match (family, v) {
        (Family::String, _) => true,
        (Family::Numeric, Scalar::Number(_)) => true,
        (Family::Numeric, Scalar::String(s)) => is_number(s),
        (Family::Date, Scalar::Number(_)) => is_epoch(&text),
        (Family::Date, Scalar::String(s)) => is_epoch(s) || is_iso8601(s),
        (Family::Bool | Family::Null, Scalar::Bool(_)) => true,
        (Family::Bool | Family::Null, Scalar::String(s)) => {
            s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")
        }
        (Family::Binary, _) => is_base64(&text),
        (Family::IpAddress, Scalar::String(s)) => is_ip_or_cidr(s),
        (Family::Arn, Scalar::String(s)) => {
            return check_arn(s).map_err(|m| format!("{op} takes ARNs: {m}"));
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let want = match family {
        Family::String => "strings",
        Family::Numeric => "numbers",
        Family::Date => {
            "ISO 8601 dates or times (2024-01-31, 2024-01-31T12:00:00Z) or epoch seconds"
        }
        Family::Bool | Family::Null => "\"true\" or \"false\"",
        Family::Binary => "base64-encoded values",
        Family::IpAddress => "IPv4 or IPv6 addresses or CIDR ranges (203.0.113.0/24)",
        Family::Arn => "ARNs",
    };
    let got = match v {
        Scalar::String(s) => format!("{s:?}"),
        other => other.to_aws_string(),
    };
    Err(format!("{op} takes {want}, got {got}"))
}

fn is_number(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Epoch seconds, possibly fractional (`1700000000`, `1700000000.5`).
fn is_epoch(s: &str) -> bool {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// The W3C profile of ISO 8601 that IAM documents (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mm[:ss[.s+]][TZD]`), checking that the date exists. A time without a
/// zone is accepted: whether IAM takes it is not documented.
pub fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize, n: usize| -> Option<u32> {
        let part = b.get(*i..*i + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += n;
        Some(part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let Some(year) = digits(&mut i, 4) else {
        return false;
    };
    if i == b.len() {
        return true;
    }
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(month) = digits(&mut i, 2).filter(|m| (1..=12).contains(m)) else {
        return false;
    };
    if i == b.len() {
        return true;
    }
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if digits(&mut i, 2)
        .filter(|d| (1..=days).contains(d))
        .is_none()
    {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if !matches!(b.get(i), Some(b'T' | b't')) {
        return false;
    }
    i += 1;
    if digits(&mut i, 2).filter(|h| *h <= 23).is_none() || b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    if digits(&mut i, 2).filter(|m| *m <= 59).is_none() {
        return false;
    }
    if b.get(i) == Some(&b':') {
        i += 1;
        // 60: a leap second.
        if digits(&mut i, 2).filter(|s| *s <= 60).is_none() {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i += 1;
            if digits(&mut i, 2).filter(|h| *h <= 23).is_none() {
                return false;
            }
            if b.get(i) == Some(&b':') {
                i += 1;
            }
            i == b.len() || (digits(&mut i, 2).is_some_and(|m| m <= 59) && i == b.len())
        }
        _ => false,
    }
}

fn is_ip_or_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    match prefix {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= max)
        }
    }
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    let padding = s.len() - body.len();
    body.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && padding <= 2
        && (if padding > 0 {
            s.len().is_multiple_of(4)
        } else {
            body.len() % 4 != 1
        })
}

/// Characters of the document's JSON without whitespace outside strings, as AWS counts.
pub fn minified_len(doc: &Value) -> usize {
    serde_json::to_string(doc)
        .map(|s| s.chars().count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(doc: Value) -> Result<(), DocumentError> {
        validate_document(&doc, "document", DocKind::Managed)
    }

    fn message(doc: Value) -> String {
        identity(doc).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_typical_policy() {
        identity(json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "s3:List*"],
             "Resource": "arn:aws:s3:::bucket/*",
             "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
            {"Effect": "Deny", "NotAction": "iam:*", "NotResource": ["*"]}
        ]}))
        .unwrap();
        validate_document(
            &json!({"Version": "2008-10-17", "Statement":
                {"Effect": "Allow", "Action": "*", "Resource": "*"}}),
            "document",
            DocKind::Inline,
        )
        .unwrap();
    }

    #[test]
    fn names_the_field_of_a_bad_effect() {
        assert_eq!(
            message(json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                {"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}]})),
            r#"document.Statement[1].Effect: must be "Allow" or "Deny", got "allow""#
        );
    }

    #[test]
    fn rejects_each_grammar_rule() {
        let cases = [
            (json!({"Statement": []}), "document.Version: is required"),
            (
                json!({"Version": "2020-01-01", "Statement": []}),
                "document.Version: must be",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": []}),
                "document.Statement: must hold at least one",
            ),
            (
                json!({"Version": "2012-10-17"}),
                "document.Statement: is required",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Resource": "*"}}),
                "document.Statement.Action: one of Action and NotAction is required",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:Get", "NotAction": "s3:Put", "Resource": "*"}}),
                "document.Statement.NotAction: exactly one of Action and NotAction",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:Get"}}),
                "document.Statement.Resource: one of Resource and NotResource is required",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Principal": "*"}}),
                "document.Statement.Principal: is not allowed in an identity policy",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3 GetObject", "Resource": "*"}}),
                "document.Statement.Action[0]: must be \"*\" or \"service:Action\"",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:Get", "Resource": "bucket"}}),
                "document.Statement.Resource[0]: must be \"*\" or an ARN",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Sid": "has space"}}),
                "document.Statement.Sid: must be letters and digits only",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Foo": 1}}),
                "document.Statement.Foo: unknown field",
            ),
        ];
        for (doc, want) in cases {
            let got = message(doc.clone());
            assert!(
                got.starts_with(want),
                "for {doc}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    /// IAM ARNs name one of IAM's resource types (issue 25): `users/x` is refused with
    /// the field, the list and the nearest type; every documented type, `root` and
    /// wildcards pass.
    #[test]
    fn iam_arns_name_a_resource_type_iam_has() {
        let doc = |r: Value| {
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "iam:GetUser", "Resource": r}]})
        };
        let got = message(doc(json!(["*", "arn:aws:iam::123456789012:users/x"])));
        assert!(
            got.starts_with(
                r#"document.Statement[0].Resource[1]: unknown IAM resource type "users" in "arn:aws:iam::123456789012:users/x" (IAM resources are root or start with user/, federated-user/, role/,"#
            ),
            "{got}"
        );
        assert!(got.ends_with(r#"; did you mean "user"?"#), "{got}");
        for bad in [
            "arn:aws:iam::123456789012:Role/x",
            "arn:aws:iam::123456789012:bucket/x",
            "arn:aws:iam::aws:policies/ReadOnlyAccess",
        ] {
            let got = message(doc(json!(bad)));
            assert!(got.contains("unknown IAM resource type"), "{bad}: {got}");
        }
        for t in IAM_RESOURCE_TYPES {
            identity(doc(json!(format!("arn:aws:iam::123456789012:{t}/a/b")))).unwrap();
        }
        for good in [
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:*",
            "arn:aws:iam::123456789012:*/x",
            "arn:aws:iam::123456789012:ro?e/x",
            "arn:aws:iam::123456789012:${aws:username}/x",
            "arn:aws:s3:::users/x",
        ] {
            identity(doc(json!(good))).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn rejects_a_document_over_the_size_limit() {
        let actions: Vec<String> = (0..400).map(|i| format!("s3:GetObjectNumber{i}")).collect();
        let got = message(json!({"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": actions, "Resource": "*"}}));
        assert!(got.starts_with("document: is "), "{got}");
        assert!(got.contains("more than the 6144 AWS allows"), "{got}");
    }

    #[test]
    fn trust_policy_needs_a_principal_and_sts_actions() {
        let trust = |doc: Value| validate_document(&doc, "assumeRolePolicy", DocKind::Trust);
        trust(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )
        .unwrap();
        let e = trust(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "sts:AssumeRole"}]}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "assumeRolePolicy.Statement[0].Principal: is required in a trust policy"
        );
        let e = trust(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": "*", "Action": "s3:GetObject"}]}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("assumeRolePolicy.Statement[0].Action[0]: a trust policy allows only")
        );
    }
}
