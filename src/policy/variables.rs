//! The operator's variables in policy and trust documents: `$AWS_ACCOUNT_ID` /
//! `${AWS_ACCOUNT_ID}`, `$AWS_PARTITION` / `${AWS_PARTITION}` and `$AWS_REGION` /
//! `${AWS_REGION}`, replaced by the account, partition and region the object lives in,
//! so a document a vendor ships ("replace $AWS_ACCOUNT_ID with your account") is used
//! as shipped, and one manifest works in every account and partition.
//!
//! The rules (envsubst's, restricted to these three names):
//! - `${NAME}` is replaced wherever it appears;
//! - `$NAME` is replaced when the name ends there: the next character is not an ASCII
//!   letter, digit or `_` (`$AWS_ACCOUNT_IDX` names another variable and is left as is);
//! - everything else is left untouched: IAM's own policy variables (`${aws:username}`,
//!   `${aws:PrincipalTag/team}`, `${*}`, `${$}`), and any other `$NAME` or `${NAME}`.
//!
//! Both string values and object keys are substituted (a condition key such as
//! `oidc.eks.${AWS_REGION}.amazonaws.com/id/X:sub` is a key). Substitution happens on
//! the parsed document, never on its text: a value can never break the JSON.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::{Map, Value};

/// The values the variables stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variables {
    pub account_id: String,
    pub partition: String,
    /// `None` when the operator has no region: a document using `${AWS_REGION}` is
    /// then refused (see [`Unset`]) rather than sent with the variable in it.
    pub region: Option<String>,
}

impl Variables {
    /// The values `iamwright validate` checks documents with (offline, no account):
    /// moto's and the AWS documentation's example account, the commercial partition and
    /// `us-east-1`.
    pub fn placeholders() -> Self {
        Self {
            account_id: "123456789012".into(),
            partition: "aws".into(),
            region: Some("us-east-1".into()),
        }
    }
}

/// A document uses a variable that has no value (only `AWS_REGION` can lack one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset(pub &'static str);

impl std::fmt::Display for Unset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "uses ${{{}}}, but the operator has no AWS region (run it with --region or AWS_REGION)",
            self.0
        )
    }
}

static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$(?:\{(AWS_ACCOUNT_ID|AWS_PARTITION|AWS_REGION)\}|(AWS_ACCOUNT_ID|AWS_PARTITION|AWS_REGION)(?-u:\b))",
    )
    .expect("the variable pattern compiles")
});

/// Whether `doc` uses any of the variables (then the account must be known to use it).
pub fn uses_variables(doc: &Value) -> bool {
    match doc {
        Value::String(s) => VARIABLE.is_match(s),
        Value::Array(items) => items.iter().any(uses_variables),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| VARIABLE.is_match(k) || uses_variables(v)),
        _ => false,
    }
}

/// `doc` with every variable replaced (see the module documentation for the rules).
pub fn substitute(doc: &Value, vars: &Variables) -> Result<Value, Unset> {
    Ok(match doc {
        Value::String(s) => Value::String(substitute_str(s, vars)?.into_owned()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(substitute_str(k, vars)?.into_owned(), substitute(v, vars)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// One string with every variable replaced.
pub fn substitute_str<'a>(s: &'a str, vars: &Variables) -> Result<Cow<'a, str>, Unset> {
    let mut unset = None;
    let out = VARIABLE.replace_all(s, |c: &Captures| {
        let name = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        match name {
            "AWS_ACCOUNT_ID" => vars.account_id.clone(),
            "AWS_PARTITION" => vars.partition.clone(),
            _ => vars.region.clone().unwrap_or_else(|| {
                unset = Some(Unset("AWS_REGION"));
                String::new()
            }),
        }
    });
    match unset {
        Some(u) => Err(u),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Variables {
        Variables {
            account_id: "111122223333".into(),
            partition: "aws-us-gov".into(),
            region: Some("us-gov-west-1".into()),
        }
    }

    #[test]
    fn replaces_the_three_variables_and_nothing_else() {
        let table = [
            ("$AWS_ACCOUNT_ID", "111122223333"),
            ("${AWS_ACCOUNT_ID}", "111122223333"),
            (
                "arn:aws:iam::$AWS_ACCOUNT_ID:role/x",
                "arn:aws:iam::111122223333:role/x",
            ),
            (
                "arn:${AWS_PARTITION}:s3:::logs-$AWS_ACCOUNT_ID-${AWS_REGION}/*",
                "arn:aws-us-gov:s3:::logs-111122223333-us-gov-west-1/*",
            ),
            ("$AWS_PARTITION/$AWS_REGION", "aws-us-gov/us-gov-west-1"),
            ("bucket-$AWS_ACCOUNT_ID", "bucket-111122223333"),
            ("$AWS_ACCOUNT_ID$AWS_ACCOUNT_ID", "111122223333111122223333"),
            ("${AWS_ACCOUNT_ID}X", "111122223333X"),
            // Another variable name: left as is (envsubst's reading).
            ("$AWS_ACCOUNT_IDX", "$AWS_ACCOUNT_IDX"),
            ("$AWS_ACCOUNT_ID_2", "$AWS_ACCOUNT_ID_2"),
            ("$AWS_ACCOUNT_ID9", "$AWS_ACCOUNT_ID9"),
            // IAM's own variables and anything else: untouched.
            (
                "arn:aws:s3:::b/home/${aws:username}/*",
                "arn:aws:s3:::b/home/${aws:username}/*",
            ),
            ("${aws:PrincipalTag/team}", "${aws:PrincipalTag/team}"),
            ("${*}${?}${$}", "${*}${?}${$}"),
            ("${AWS_ACCOUNT}", "${AWS_ACCOUNT}"),
            ("${aws_account_id}", "${aws_account_id}"),
            ("$HOME", "$HOME"),
            ("${AWS_ACCOUNT_ID", "${AWS_ACCOUNT_ID"),
            ("$", "$"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(
                substitute_str(input, &vars()).unwrap(),
                want,
                "substituting {input:?}"
            );
        }
    }

    #[test]
    fn substitutes_values_and_keys_anywhere_in_a_document() {
        let doc = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "arn:${AWS_PARTITION}:iam::$AWS_ACCOUNT_ID:oidc-provider/oidc.eks.${AWS_REGION}.amazonaws.com/id/X"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"oidc.eks.${AWS_REGION}.amazonaws.com/id/X:sub": "system:serviceaccount:a:b"},
                          "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                          "Bool": {"aws:SecureTransport": true}}}]});
        assert!(uses_variables(&doc));
        let got = substitute(&doc, &vars()).unwrap();
        assert_eq!(
            got,
            json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws-us-gov:iam::111122223333:oidc-provider/oidc.eks.us-gov-west-1.amazonaws.com/id/X"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"oidc.eks.us-gov-west-1.amazonaws.com/id/X:sub": "system:serviceaccount:a:b"},
                          "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                          "Bool": {"aws:SecureTransport": true}}}]})
        );
        assert!(!uses_variables(&got));
    }

    #[test]
    fn a_document_without_variables_is_unchanged() {
        let doc = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:username}/*"}});
        assert!(!uses_variables(&doc));
        assert_eq!(substitute(&doc, &vars()).unwrap(), doc);
    }

    #[test]
    fn a_region_is_needed_only_when_used() {
        let no_region = Variables {
            region: None,
            ..vars()
        };
        assert_eq!(
            substitute(
                &json!({"Resource": "arn:aws:s3:::$AWS_ACCOUNT_ID"}),
                &no_region
            )
            .unwrap(),
            json!({"Resource": "arn:aws:s3:::111122223333"})
        );
        let err = substitute(&json!({"Resource": ["x", "${AWS_REGION}"]}), &no_region).unwrap_err();
        assert_eq!(err, Unset("AWS_REGION"));
        assert!(err.to_string().starts_with("uses ${AWS_REGION}, but"));
    }
}
