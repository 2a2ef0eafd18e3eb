//! The typed IAM policy model: one parser from JSON to [`Document`], shared by
//! validation, canonical comparison and guardrail matching.
//!
//! Parsing is structural: it checks shapes and names (which fields exist, what they
//! hold, which condition operators are spelt right) and reports the first problem with
//! the JSON path of the field. Rules that depend on the document kind or on the content
//! of values (ARN structure, action syntax, condition value formats) are the checker's
//! ([`super::validate`]), which runs as a hook on each statement as it is parsed, so
//! problems are reported in document order. Parsing never panics, whatever the JSON.
//!
//! The model serializes back to AWS's JSON (`Serialize`), and deserializes from it
//! (`Deserialize`, through the same parser).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::{DocumentError, err, short};

/// A single value or a list of values, as IAM allows for `Statement`, `Action`,
/// `Resource`, principals and condition values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
}

/// A policy document: `{Version, Id, Statement}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    /// As written; which versions a kind allows is the checker's rule.
    #[serde(rename = "Version", skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(rename = "Id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Statement")]
    pub statement: OneOrMany<Statement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement. Exactly one of `action`/`not_action` is set; at most one of each
/// other pair (whether one is required depends on the document kind).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Statement {
    #[serde(rename = "Sid", skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Principal", skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    #[serde(rename = "NotPrincipal", skip_serializing_if = "Option::is_none")]
    pub not_principal: Option<Principal>,
    #[serde(rename = "Action", skip_serializing_if = "Option::is_none")]
    pub action: Option<OneOrMany<String>>,
    #[serde(rename = "NotAction", skip_serializing_if = "Option::is_none")]
    pub not_action: Option<OneOrMany<String>>,
    #[serde(rename = "Resource", skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany<String>>,
    #[serde(rename = "NotResource", skip_serializing_if = "Option::is_none")]
    pub not_resource: Option<OneOrMany<String>>,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Statement {
    /// `("Action", actions)` or `("NotAction", actions)`.
    pub fn actions(&self) -> (&'static str, &[String]) {
        match (&self.action, &self.not_action) {
            (Some(a), _) => ("Action", a.as_slice()),
            (None, Some(a)) => ("NotAction", a.as_slice()),
            (None, None) => ("Action", &[]),
        }
    }

    /// `("Resource", resources)` or `("NotResource", resources)`, if either is set.
    pub fn resources(&self) -> Option<(&'static str, &[String])> {
        match (&self.resource, &self.not_resource) {
            (Some(r), _) => Some(("Resource", r.as_slice())),
            (None, Some(r)) => Some(("NotResource", r.as_slice())),
            (None, None) => None,
        }
    }

    /// `("Principal", p)` or `("NotPrincipal", p)`, if either is set.
    pub fn principals(&self) -> Option<(&'static str, &Principal)> {
        match (&self.principal, &self.not_principal) {
            (Some(p), _) => Some(("Principal", p)),
            (None, Some(p)) => Some(("NotPrincipal", p)),
            (None, None) => None,
        }
    }
}

/// `"*"` or a map of principal type to one or more principals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Any,
    Map(Vec<(PrincipalType, OneOrMany<String>)>),
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Principal::Any => s.serialize_str("*"),
            Principal::Map(entries) => s.collect_map(entries.iter().map(|(k, v)| (k.as_str(), v))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrincipalType {
    Aws,
    Service,
    Federated,
    CanonicalUser,
}

impl PrincipalType {
    pub const ALL: [PrincipalType; 4] = [
        PrincipalType::Aws,
        PrincipalType::Service,
        PrincipalType::Federated,
        PrincipalType::CanonicalUser,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::Aws => "AWS",
            PrincipalType::Service => "Service",
            PrincipalType::Federated => "Federated",
            PrincipalType::CanonicalUser => "CanonicalUser",
        }
    }
}

/// A condition value: IAM takes strings, numbers and booleans (and compares them as
/// strings or by the operator's type).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    String(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    /// The value as AWS stores it: numbers and booleans become strings.
    pub fn to_aws_string(&self) -> String {
        match self {
            Scalar::String(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// The `Condition` block: operator → condition key → value(s), in document order.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition(pub Vec<ConditionBlock>);

#[derive(Clone, Debug, PartialEq)]
pub struct ConditionBlock {
    /// The operator as written (the JSON key).
    pub name: String,
    pub operator: Operator,
    pub entries: Vec<(String, OneOrMany<Scalar>)>,
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Keys<'a>(&'a [(String, OneOrMany<Scalar>)]);
        impl Serialize for Keys<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        s.collect_map(self.0.iter().map(|b| (&b.name, Keys(&b.entries))))
    }
}

/// Which values an operator compares, and so which value formats it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    String,
    Numeric,
    Date,
    Bool,
    Binary,
    IpAddress,
    Arn,
    Null,
}

/// A multivalued-context set operator prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

/// A parsed condition operator: `[ForAnyValue:|ForAllValues:]Base[IfExists]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operator {
    pub qualifier: Option<SetQualifier>,
    pub base: &'static str,
    pub family: Family,
    pub if_exists: bool,
}

/// Every base condition operator IAM knows, with its family ("IAM JSON policy
/// elements: Condition operators").
pub const OPERATORS: &[(&str, Family)] = &[
    ("StringEquals", Family::String),
    ("StringNotEquals", Family::String),
    ("StringEqualsIgnoreCase", Family::String),
    ("StringNotEqualsIgnoreCase", Family::String),
    ("StringLike", Family::String),
    ("StringNotLike", Family::String),
    ("NumericEquals", Family::Numeric),
    ("NumericNotEquals", Family::Numeric),
    ("NumericLessThan", Family::Numeric),
    ("NumericLessThanEquals", Family::Numeric),
    ("NumericGreaterThan", Family::Numeric),
    ("NumericGreaterThanEquals", Family::Numeric),
    ("DateEquals", Family::Date),
    ("DateNotEquals", Family::Date),
    ("DateLessThan", Family::Date),
    ("DateLessThanEquals", Family::Date),
    ("DateGreaterThan", Family::Date),
    ("DateGreaterThanEquals", Family::Date),
    ("Bool", Family::Bool),
    ("BinaryEquals", Family::Binary),
    ("IpAddress", Family::IpAddress),
    ("NotIpAddress", Family::IpAddress),
    ("ArnEquals", Family::Arn),
    ("ArnNotEquals", Family::Arn),
    ("ArnLike", Family::Arn),
    ("ArnNotLike", Family::Arn),
    ("Null", Family::Null),
];

impl Operator {
    /// Parse an operator name. Operator names are matched exactly, as written in the
    /// AWS documentation.
    pub fn parse(name: &str) -> Result<Operator, String> {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), rest)
        } else if let Some((prefix, _)) = name.split_once(':') {
            let hint = match suggestion(prefix, &["ForAnyValue", "ForAllValues"]) {
                h if h.is_empty() => "; use \"ForAnyValue:\" or \"ForAllValues:\"".to_string(),
                h => h,
            };
            return Err(format!("unknown qualifier {prefix:?}{hint}"));
        } else {
            (None, name)
        };
        let lookup = |base: &str| OPERATORS.iter().find(|(n, _)| *n == base).copied();
        let (base, family, if_exists) = match lookup(rest) {
            Some((base, family)) => (base, family, false),
            None => match rest.strip_suffix("IfExists").and_then(lookup) {
                Some((base, family)) => (base, family, true),
                None => {
                    let mut known: Vec<String> =
                        OPERATORS.iter().map(|(n, _)| n.to_string()).collect();
                    known.extend(
                        OPERATORS
                            .iter()
                            .filter(|(_, f)| *f != Family::Null)
                            .map(|(n, _)| format!("{n}IfExists")),
                    );
                    let known: Vec<&str> = known.iter().map(String::as_str).collect();
                    return Err(format!(
                        "unknown condition operator {rest:?}{}",
                        suggestion(rest, &known)
                    ));
                }
            },
        };
        if if_exists && family == Family::Null {
            return Err("Null has no IfExists form".into());
        }
        Ok(Operator {
            qualifier,
            base,
            family,
            if_exists,
        })
    }
}

/// `; did you mean "X"?` for the closest known name, if it is close.
pub(crate) fn suggestion(got: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| {
            (
                strsim::levenshtein(&got.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("; did you mean {k:?}?"))
        .unwrap_or_default()
}

pub const STATEMENT_KEYS: &[&str] = &[
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

/// Checks run while parsing, in document order: on the raw `Version` before anything
/// else (it decides how the rest reads), and on each statement once it is parsed.
pub trait Hooks {
    fn version(&mut self, _version: Option<&Value>, _path: &str) -> Result<(), DocumentError> {
        Ok(())
    }
    fn statement(&mut self, _statement: &Statement, _path: &str) -> Result<(), DocumentError> {
        Ok(())
    }
}

/// No checks beyond the structure.
pub struct Structural;
impl Hooks for Structural {}

impl Document {
    /// Parse a document found at field `root` (structure only).
    pub fn parse(value: &Value, root: &str) -> Result<Document, DocumentError> {
        Document::parse_with(value, root, &mut Structural)
    }

    /// Parse, running `hooks` on the version and each statement as they are read.
    pub fn parse_with(
        value: &Value,
        root: &str,
        hooks: &mut dyn Hooks,
    ) -> Result<Document, DocumentError> {
        let obj = value
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
        hooks.version(obj.get("Version"), &format!("{root}.Version"))?;
        let version = match obj.get("Version") {
            None => None,
            Some(Value::String(v)) => Some(v.clone()),
            Some(other) => {
                return Err(err(
                    format!("{root}.Version"),
                    format!(
                        "must be a string such as \"2012-10-17\", got {}",
                        short(other)
                    ),
                ));
            }
        };
        let id = match obj.get("Id") {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return Err(err(format!("{root}.Id"), "must be a string")),
        };
        let (raw, many): (Vec<(String, &Value)>, bool) = match obj.get("Statement") {
            Some(Value::Array(list)) => (
                list.iter()
                    .enumerate()
                    .map(|(i, s)| (format!("{root}.Statement[{i}]"), s))
                    .collect(),
                true,
            ),
            Some(s @ Value::Object(_)) => (vec![(format!("{root}.Statement"), s)], false),
            Some(other) => {
                return Err(err(
                    format!("{root}.Statement"),
                    format!("must be an object or a list, got {}", short(other)),
                ));
            }
            None => return Err(err(format!("{root}.Statement"), "is required")),
        };
        if raw.is_empty() {
            return Err(err(
                format!("{root}.Statement"),
                "must hold at least one statement",
            ));
        }
        let mut statements = Vec::with_capacity(raw.len());
        let mut sids = BTreeSet::new();
        for (path, value) in raw {
            let st = Statement::parse(value, &path)?;
            hooks.statement(&st, &path)?;
            if let Some(sid) = &st.sid
                && !sid.is_empty()
                && !sids.insert(sid.clone())
            {
                return Err(err(format!("{path}.Sid"), format!("duplicate Sid {sid:?}")));
            }
            statements.push(st);
        }
        let statement = if many {
            OneOrMany::Many(statements)
        } else {
            OneOrMany::One(statements.remove(0))
        };
        Ok(Document {
            version,
            id,
            statement,
        })
    }

    pub fn statements(&self) -> &[Statement] {
        self.statement.as_slice()
    }

    /// The canonical form: what AWS means, independent of how it was written or how
    /// AWS returns it. Statements as a list; actions, resources, principals and
    /// condition values as sorted, de-duplicated lists of strings (AWS stores condition
    /// booleans and numbers as strings); an empty Sid dropped.
    pub fn canonical(&self) -> Document {
        let set = |v: &OneOrMany<String>| {
            let s: BTreeSet<String> = v.iter().cloned().collect();
            OneOrMany::Many(s.into_iter().collect())
        };
        let principal = |p: &Principal| match p {
            Principal::Any => Principal::Any,
            Principal::Map(entries) => {
                let mut entries: Vec<_> = entries.iter().map(|(k, v)| (*k, set(v))).collect();
                entries.sort_by_key(|(k, _)| *k);
                Principal::Map(entries)
            }
        };
        let statements = self
            .statements()
            .iter()
            .map(|st| Statement {
                sid: st.sid.clone().filter(|s| !s.is_empty()),
                effect: st.effect,
                principal: st.principal.as_ref().map(principal),
                not_principal: st.not_principal.as_ref().map(principal),
                action: st.action.as_ref().map(set),
                not_action: st.not_action.as_ref().map(set),
                resource: st.resource.as_ref().map(set),
                not_resource: st.not_resource.as_ref().map(set),
                condition: st.condition.as_ref().map(|c| {
                    Condition(
                        c.0.iter()
                            .map(|b| ConditionBlock {
                                name: b.name.clone(),
                                operator: b.operator,
                                entries: b
                                    .entries
                                    .iter()
                                    .map(|(k, v)| {
                                        let s: BTreeSet<String> =
                                            v.iter().map(Scalar::to_aws_string).collect();
                                        (
                                            k.clone(),
                                            OneOrMany::Many(
                                                s.into_iter().map(Scalar::String).collect(),
                                            ),
                                        )
                                    })
                                    .collect(),
                            })
                            .collect(),
                    )
                }),
            })
            .collect();
        Document {
            version: self.version.clone(),
            id: self.id.clone(),
            statement: OneOrMany::Many(statements),
        }
    }

    /// The document as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Document::parse(&value, "policy").map_err(serde::de::Error::custom)
    }
}

impl Statement {
    fn parse(value: &Value, path: &str) -> Result<Statement, DocumentError> {
        let st = value
            .as_object()
            .ok_or_else(|| err(path, "must be an object"))?;
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
        let sid = match st.get("Sid") {
            None => None,
            Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(s.clone())
            }
            Some(other) => {
                return Err(err(
                    format!("{path}.Sid"),
                    format!("must be letters and digits only, got {}", short(other)),
                ));
            }
        };
        let effect = match st.get("Effect") {
            Some(Value::String(e)) if e == "Allow" => Effect::Allow,
            Some(Value::String(e)) if e == "Deny" => Effect::Deny,
            Some(other) => {
                return Err(err(
                    format!("{path}.Effect"),
                    format!("must be \"Allow\" or \"Deny\", got {}", short(other)),
                ));
            }
            None => return Err(err(format!("{path}.Effect"), "is required")),
        };
        let (action, not_action) = match pair(st, path, "Action", "NotAction")? {
            (None, None) => {
                return Err(err(
                    format!("{path}.Action"),
                    "one of Action and NotAction is required",
                ));
            }
            (a, n) => (
                a.map(|v| string_list(v, &format!("{path}.Action")))
                    .transpose()?,
                n.map(|v| string_list(v, &format!("{path}.NotAction")))
                    .transpose()?,
            ),
        };
        let (resource, not_resource) = pair(st, path, "Resource", "NotResource")?;
        let resource = resource
            .map(|v| string_list(v, &format!("{path}.Resource")))
            .transpose()?;
        let not_resource = not_resource
            .map(|v| string_list(v, &format!("{path}.NotResource")))
            .transpose()?;
        let (principal, not_principal) = pair(st, path, "Principal", "NotPrincipal")?;
        let principal = principal
            .map(|v| Principal::parse(v, &format!("{path}.Principal")))
            .transpose()?;
        let not_principal = not_principal
            .map(|v| Principal::parse(v, &format!("{path}.NotPrincipal")))
            .transpose()?;
        let condition = st
            .get("Condition")
            .map(|v| Condition::parse(v, &format!("{path}.Condition")))
            .transpose()?;
        Ok(Statement {
            sid,
            effect,
            principal,
            not_principal,
            action,
            not_action,
            resource,
            not_resource,
            condition,
        })
    }
}

/// At most one of `a` and `b`.
fn pair<'a>(
    st: &'a Map<String, Value>,
    path: &str,
    a: &'static str,
    b: &'static str,
) -> Result<(Option<&'a Value>, Option<&'a Value>), DocumentError> {
    match (st.get(a), st.get(b)) {
        (Some(_), Some(_)) => Err(err(
            format!("{path}.{b}"),
            format!("exactly one of {a} and {b} may be set, not both"),
        )),
        pair => Ok(pair),
    }
}

fn string_list(value: &Value, path: &str) -> Result<OneOrMany<String>, DocumentError> {
    match value {
        Value::String(s) => Ok(OneOrMany::One(s.clone())),
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
            .collect::<Result<Vec<_>, _>>()
            .map(OneOrMany::Many),
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

impl Principal {
    fn parse(value: &Value, path: &str) -> Result<Principal, DocumentError> {
        match value {
            Value::String(s) if s == "*" => Ok(Principal::Any),
            Value::Object(map) if !map.is_empty() => {
                let mut entries = vec![];
                for (k, v) in map {
                    let Some(t) = PrincipalType::ALL.into_iter().find(|t| t.as_str() == k) else {
                        return Err(err(
                            format!("{path}.{k}"),
                            "must be one of AWS, Service, Federated, CanonicalUser",
                        ));
                    };
                    entries.push((t, string_list(v, &format!("{path}.{k}"))?));
                }
                Ok(Principal::Map(entries))
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
}

impl Condition {
    fn parse(value: &Value, path: &str) -> Result<Condition, DocumentError> {
        let ops = value
            .as_object()
            .ok_or_else(|| err(path, "must be a map of operator to {key: value}"))?;
        let mut blocks = vec![];
        for (name, keys) in ops {
            let op_path = format!("{path}.{name}");
            let operator = Operator::parse(name).map_err(|m| err(&op_path, m))?;
            let keys = keys
                .as_object()
                .ok_or_else(|| err(&op_path, "must be a map of condition key to value"))?;
            let mut entries = vec![];
            for (key, v) in keys {
                let key_path = format!("{op_path}.{key}");
                if key.is_empty() {
                    return Err(err(key_path, "a condition key must not be empty"));
                }
                let scalar = |v: &Value| match v {
                    Value::String(s) => Some(Scalar::String(s.clone())),
                    Value::Number(n) => Some(Scalar::Number(n.clone())),
                    Value::Bool(b) => Some(Scalar::Bool(*b)),
                    _ => None,
                };
                let values = match v {
                    Value::Array(items) => items
                        .iter()
                        .map(scalar)
                        .collect::<Option<Vec<_>>>()
                        .map(OneOrMany::Many),
                    single => scalar(single).map(OneOrMany::One),
                };
                let values = values.ok_or_else(|| {
                    err(
                        &key_path,
                        "must be a string, number, boolean or a list of them",
                    )
                })?;
                entries.push((key.clone(), values));
            }
            blocks.push(ConditionBlock {
                name: name.clone(),
                operator,
                entries,
            });
        }
        Ok(Condition(blocks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators_parse_with_qualifiers_and_if_exists() {
        let op = Operator::parse("ForAllValues:StringLikeIfExists").unwrap();
        assert_eq!(op.qualifier, Some(SetQualifier::ForAllValues));
        assert_eq!(
            (op.base, op.family, op.if_exists),
            ("StringLike", Family::String, true)
        );
        assert_eq!(Operator::parse("Null").unwrap().family, Family::Null);
        assert!(Operator::parse("NullIfExists").is_err());
        assert_eq!(
            Operator::parse("StringEqual").unwrap_err(),
            "unknown condition operator \"StringEqual\"; did you mean \"StringEquals\"?"
        );
        assert!(
            Operator::parse("ForAnyValues:StringLike")
                .unwrap_err()
                .contains("did you mean \"ForAnyValue\"?")
        );
        assert!(Operator::parse("BoolIfExist").is_err());
    }

    #[test]
    fn the_model_round_trips_through_serde() {
        let v = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::123456789012:root"]}, "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": true}, "NumericLessThan": {"k": 3}}}});
        let doc: Document = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(doc.to_value(), v);
        let bad: Result<Document, _> = serde_json::from_value(json!({"Statement": 1}));
        assert!(
            bad.unwrap_err()
                .to_string()
                .starts_with("policy.Statement: must be")
        );
    }
}
