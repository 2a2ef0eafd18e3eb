use serde_json::{Map, Value};

/// Which grammar a document follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// An identity policy (IamPolicy document, inline policies): no `Principal`.
    Identity,
    /// A role's trust policy: `Principal` required, only STS assume actions.
    Trust,
}

/// A problem in a document, located by its path, e.g.
/// `document.Statement[1].Effect: must be "Allow" or "Deny", got "allow"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DocumentError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> DocumentError {
    DocumentError {
        path: path.into(),
        message: message.into(),
    }
}

/// AWS's limit for a managed policy, counted without whitespace.
pub const MAX_MANAGED_POLICY_CHARS: usize = 6144;
/// AWS's limit for a role trust policy (default quota).
pub const MAX_TRUST_POLICY_CHARS: usize = 2048;

const TRUST_ACTIONS: &[&str] = &[
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRoleWithSAML",
    "sts:TagSession",
    "sts:SetSourceIdentity",
];

const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "NotPrincipal",
];

/// Check a document against the IAM grammar before any AWS call. `root` names the
/// field the document came from (e.g. `document`, `inlinePolicies.s3`).
pub fn validate_document(doc: &Value, root: &str, kind: DocKind) -> Result<(), DocumentError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| err(root, "must be an object"))?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            return Err(err(
                format!("{root}.{key}"),
                "unknown field; a policy has Version, Id and Statement",
            ));
        }
    }
    match obj.get("Version") {
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
        Some(other) => {
            return Err(err(
                format!("{root}.Version"),
                format!(
                    "must be \"2012-10-17\" or \"2008-10-17\", got {}",
                    short(other)
                ),
            ));
        }
        None => {
            return Err(err(
                format!("{root}.Version"),
                "is required (use \"2012-10-17\")",
            ));
        }
    }
    if let Some(id) = obj.get("Id")
        && !id.is_string()
    {
        return Err(err(format!("{root}.Id"), "must be a string"));
    }
    let statements: Vec<(String, &Value)> = match obj.get("Statement") {
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{root}.Statement[{i}]"), s))
            .collect(),
        Some(s @ Value::Object(_)) => vec![(format!("{root}.Statement"), s)],
        Some(other) => {
            return Err(err(
                format!("{root}.Statement"),
                format!("must be an object or a list, got {}", short(other)),
            ));
        }
        None => return Err(err(format!("{root}.Statement"), "is required")),
    };
    if statements.is_empty() {
        return Err(err(
            format!("{root}.Statement"),
            "must hold at least one statement",
        ));
    }
    let mut sids = std::collections::BTreeSet::new();
    for (path, statement) in statements {
        let st = statement
            .as_object()
            .ok_or_else(|| err(&path, "must be an object"))?;
        validate_statement(st, &path, kind)?;
        if let Some(Value::String(sid)) = st.get("Sid")
            && !sid.is_empty()
            && !sids.insert(sid.clone())
        {
            return Err(err(format!("{path}.Sid"), format!("duplicate Sid {sid:?}")));
        }
    }
    let size = minified_len(doc);
    let limit = match kind {
        DocKind::Identity => MAX_MANAGED_POLICY_CHARS,
        DocKind::Trust => MAX_TRUST_POLICY_CHARS,
    };
    if size > limit {
        return Err(err(
            root,
            format!("is {size} characters without whitespace, more than the {limit} AWS allows"),
        ));
    }
    Ok(())
}

fn validate_statement(
    st: &Map<String, Value>,
    path: &str,
    kind: DocKind,
) -> Result<(), DocumentError> {
    for key in st.keys() {
        if !STATEMENT_KEYS.contains(&key.as_str()) {
            return Err(err(
                format!("{path}.{key}"),
                format!(
                    "unknown field; a statement has {}",
                    STATEMENT_KEYS.join(", ")
                ),
            ));
        }
    }
    if let Some(sid) = st.get("Sid") {
        match sid {
            Value::String(s) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {}
            other => {
                return Err(err(
                    format!("{path}.Sid"),
                    format!("must be letters and digits only, got {}", short(other)),
                ));
            }
        }
    }
    match st.get("Effect") {
        Some(Value::String(e)) if e == "Allow" || e == "Deny" => {}
        Some(other) => {
            return Err(err(
                format!("{path}.Effect"),
                format!("must be \"Allow\" or \"Deny\", got {}", short(other)),
            ));
        }
        None => return Err(err(format!("{path}.Effect"), "is required")),
    }
    let (action_key, actions) = exactly_one(st, path, "Action", "NotAction")?;
    let actions = string_list(actions, &format!("{path}.{action_key}"))?;
    for (i, action) in actions.iter().enumerate() {
        let at = format!("{path}.{action_key}[{i}]");
        check_action(action, &at)?;
        if kind == DocKind::Trust && !TRUST_ACTIONS.contains(&action.as_str()) {
            return Err(err(
                at,
                format!(
                    "a trust policy allows only {}, got {action:?}",
                    TRUST_ACTIONS.join(", ")
                ),
            ));
        }
    }
    match kind {
        DocKind::Identity => {
            for key in ["Principal", "NotPrincipal"] {
                if st.contains_key(key) {
                    return Err(err(
                        format!("{path}.{key}"),
                        "is not allowed in an identity policy",
                    ));
                }
            }
            let (res_key, resources) = exactly_one(st, path, "Resource", "NotResource")?;
            let resources = string_list(resources, &format!("{path}.{res_key}"))?;
            for (i, r) in resources.iter().enumerate() {
                if r != "*" && !r.starts_with("arn:") {
                    return Err(err(
                        format!("{path}.{res_key}[{i}]"),
                        format!("must be \"*\" or an ARN starting \"arn:\", got {r:?}"),
                    ));
                }
            }
        }
        DocKind::Trust => {
            if st.contains_key("NotPrincipal") {
                return Err(err(
                    format!("{path}.NotPrincipal"),
                    "is not allowed in a trust policy; use Principal",
                ));
            }
            for key in ["Resource", "NotResource"] {
                if st.contains_key(key) {
                    return Err(err(
                        format!("{path}.{key}"),
                        "is not allowed in a trust policy",
                    ));
                }
            }
            let principal = st
                .get("Principal")
                .ok_or_else(|| err(format!("{path}.Principal"), "is required in a trust policy"))?;
            check_principal(principal, &format!("{path}.Principal"))?;
        }
    }
    if let Some(cond) = st.get("Condition") {
        check_condition(cond, &format!("{path}.Condition"))?;
    }
    Ok(())
}

fn exactly_one<'a>(
    st: &'a Map<String, Value>,
    path: &str,
    a: &'static str,
    b: &'static str,
) -> Result<(&'static str, &'a Value), DocumentError> {
    match (st.get(a), st.get(b)) {
        (Some(v), None) => Ok((a, v)),
        (None, Some(v)) => Ok((b, v)),
        (Some(_), Some(_)) => Err(err(
            format!("{path}.{b}"),
            format!("exactly one of {a} and {b} may be set, not both"),
        )),
        (None, None) => Err(err(
            format!("{path}.{a}"),
            format!("one of {a} and {b} is required"),
        )),
    }
}

fn string_list(value: &Value, path: &str) -> Result<Vec<String>, DocumentError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    err(
                        format!("{path}[{i}]"),
                        format!("must be a string, got {}", short(v)),
                    )
                })
            })
            .collect(),
        Value::Array(_) => Err(err(path, "must not be empty")),
        other => Err(err(
            path,
            format!(
                "must be a string or a list of strings, got {}",
                short(other)
            ),
        )),
    }
}

fn check_action(action: &str, path: &str) -> Result<(), DocumentError> {
    if action == "*" {
        return Ok(());
    }
    let valid = match action.split_once(':') {
        Some((service, name)) => {
            !service.is_empty()
                && service
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?' || c == '-')
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

fn check_principal(value: &Value, path: &str) -> Result<(), DocumentError> {
    match value {
        Value::String(s) if s == "*" => Ok(()),
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if !matches!(
                    k.as_str(),
                    "AWS" | "Service" | "Federated" | "CanonicalUser"
                ) {
                    return Err(err(
                        format!("{path}.{k}"),
                        "must be one of AWS, Service, Federated, CanonicalUser",
                    ));
                }
                string_list(v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        other => Err(err(
            path,
            format!(
                "must be \"*\" or a map such as {{Service: ec2.amazonaws.com}}, got {}",
                short(other)
            ),
        )),
    }
}

fn check_condition(value: &Value, path: &str) -> Result<(), DocumentError> {
    let ops = value
        .as_object()
        .ok_or_else(|| err(path, "must be a map of operator to {key: value}"))?;
    for (op, keys) in ops {
        let keys = keys.as_object().ok_or_else(|| {
            err(
                format!("{path}.{op}"),
                "must be a map of condition key to value",
            )
        })?;
        for (key, v) in keys {
            let ok = match v {
                Value::String(_) | Value::Bool(_) | Value::Number(_) => true,
                Value::Array(items) => items
                    .iter()
                    .all(|i| matches!(i, Value::String(_) | Value::Bool(_) | Value::Number(_))),
                _ => false,
            };
            if !ok {
                return Err(err(
                    format!("{path}.{op}.{key}"),
                    "must be a string, number, boolean or a list of them",
                ));
            }
        }
    }
    Ok(())
}

/// Characters of the document's JSON without whitespace outside strings, as AWS counts.
pub fn minified_len(doc: &Value) -> usize {
    serde_json::to_string(doc)
        .map(|s| s.chars().count())
        .unwrap_or(0)
}

/// A short rendering of a value for messages (never a whole document).
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(doc: Value) -> Result<(), DocumentError> {
        validate_document(&doc, "document", DocKind::Identity)
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
        identity(json!({"Version": "2008-10-17", "Statement":
            {"Effect": "Allow", "Action": "*", "Resource": "*"}}))
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
