//! The grammar table: documents AWS accepts and documents it refuses, each with the
//! page of the IAM User Guide whose rule it shows, run through the checker. Every valid
//! row must pass; every invalid row must fail at exactly the path given, with a message
//! containing the fragment. `tests/fixtures/validate/grammar/` runs a subset of these
//! through `iamwright validate`.

use serde_json::{Value, json};

use super::DocKind;
#[cfg(test)]
use super::{check_inline_aggregate, validate_document};

const VERSION: &str = "IAM JSON policy elements: Version";
const STATEMENT: &str = "IAM JSON policy elements: Statement";
const SID: &str = "IAM JSON policy elements: Sid";
const EFFECT: &str = "IAM JSON policy elements: Effect";
const PRINCIPAL: &str = "IAM JSON policy elements: Principal";
const ACTION: &str = "IAM JSON policy elements: Action";
const RESOURCE: &str = "IAM JSON policy elements: Resource";
const CONDITION: &str = "IAM JSON policy elements: Condition";
const OPERATORS: &str = "IAM JSON policy elements: Condition operators";
const MULTIVALUED: &str = "Condition keys: single-valued vs. multivalued context keys";
const VARIABLES: &str = "IAM policy elements: Variables and tags";
const ARNS: &str = "IAM identifiers: IAM ARNs";
const QUOTAS: &str = "IAM and AWS STS quotas";
const TRUST: &str = "Creating a role: trust policies (IAM roles terms and concepts)";

pub struct Row {
    pub rule: &'static str,
    pub kind: DocKind,
    pub doc: Value,
    /// `None`: AWS accepts it. `Some((path, fragment))`: refused at `path`.
    pub refused: Option<(&'static str, &'static str)>,
}

/// An identity policy with one statement.
fn id(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// An identity statement allowing `s3:GetObject` on everything, plus `extra`.
fn allow(extra: Value) -> Value {
    let mut st = json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"});
    if let (Some(st), Some(extra)) = (st.as_object_mut(), extra.as_object()) {
        st.extend(extra.clone());
    }
    id(st)
}

fn cond(condition: Value) -> Value {
    allow(json!({"Condition": condition}))
}

fn resource(r: &str) -> Value {
    allow(json!({"Resource": r}))
}

fn trust(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

fn ok(rule: &'static str, kind: DocKind, doc: Value) -> Row {
    Row {
        rule,
        kind,
        doc,
        refused: None,
    }
}

fn bad(
    rule: &'static str,
    kind: DocKind,
    doc: Value,
    path: &'static str,
    fragment: &'static str,
) -> Row {
    Row {
        rule,
        kind,
        doc,
        refused: Some((path, fragment)),
    }
}

pub fn rows() -> Vec<Row> {
    use DocKind::{Inline, Managed, Trust};
    vec![
        // --- accepted: realistic documents in the spirit of the AWS examples ---
        ok(
            ACTION,
            Managed,
            id(json!({"Effect": "Allow",
                "Action": ["IAM:ListAccessKeys", "SNS:Publish", "S3:GetObject", "iam:Get*", "ec2:Describe?*"],
                "Resource": "*"})),
        ),
        ok(
            VARIABLES,
            Managed,
            json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "ListHome", "Effect": "Allow", "Action": "s3:ListBucket",
                 "Resource": "arn:aws:s3:::amzn-s3-demo-bucket",
                 "Condition": {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/*"]}}},
                {"Sid": "ObjectsInHome", "Effect": "Allow", "Action": "s3:*",
                 "Resource": ["arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}",
                              "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*"]}]}),
        ),
        ok(
            OPERATORS,
            Managed,
            id(
                json!({"Sid": "DenyWithoutMFA", "Effect": "Deny", "NotAction": ["iam:*", "sts:GetSessionToken"],
                "Resource": "*", "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}}),
            ),
        ),
        ok(
            MULTIVALUED,
            Managed,
            cond(
                json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]},
                        "ForAnyValue:StringLike": {"aws:PrincipalServiceNamesList": "*.amazonaws.com"}}),
            ),
        ),
        ok(
            OPERATORS,
            Managed,
            cond(
                json!({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "198.51.100.7"]},
                        "NotIpAddress": {"aws:SourceIp": "2001:DB8:1234:5678::/64"}}),
            ),
        ),
        ok(
            OPERATORS,
            Managed,
            cond(
                json!({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
                        "DateGreaterThan": {"aws:TokenIssueTime": ["2024-01-31", "2024-01-31T12:00:00.123+02:00", "1700000000"]},
                        "DateEquals": {"aws:EpochTime": [1700000000, "1700000000.25"]}}),
            ),
        ),
        ok(
            OPERATORS,
            Managed,
            allow(json!({"Effect": "Deny", "Condition": {"Null": {"aws:TokenIssueTime": "true"}}})),
        ),
        ok(
            OPERATORS,
            Managed,
            allow(json!({"Action": "sns:Publish",
                "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:123456789012:topic"},
                              "ArnEquals": {"aws:PrincipalArn": ["arn:aws:iam::123456789012:role/ops", "arn:aws:iam::*:role/*"]}}})),
        ),
        ok(
            OPERATORS,
            Managed,
            cond(
                json!({"NumericLessThanEquals": {"s3:max-keys": ["10", 10, "1.5"]},
                        "NumericGreaterThanIfExists": {"s3:object-lock-remaining-retention-days": -1}}),
            ),
        ),
        ok(
            OPERATORS,
            Managed,
            cond(
                json!({"BinaryEquals": {"key": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="},
                        "Bool": {"aws:SecureTransport": [true, "TRUE", "false"]},
                        "StringEqualsIgnoreCase": {"aws:PrincipalTag/team": "Data"},
                        "StringNotLike": {"aws:userid": "AIDA*:*"}}),
            ),
        ),
        ok(
            VARIABLES,
            Managed,
            cond(
                json!({"DateGreaterThan": {"aws:CurrentTime": "${aws:TokenIssueTime}"},
                        "StringEquals": {"aws:ResourceTag/owner": "${aws:username}"}}),
            ),
        ),
        ok(
            ARNS,
            Managed,
            allow(json!({"Action": "iam:*", "Resource": [
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "arn:aws:iam::*:role/*",
                "arn:aws:iam::123456789012:role/path/to/name",
                "arn:aws:iam::123456789012:*",
                "arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}",

                "arn:*:s3:::bucket",
                "arn:aws-cn:s3:::bucket/key/with:colon",
                "arn:aws:s3:us-west-2:123456789012:accesspoint/reports",
                "arn:aws:ec2:*:*:instance/*",
                "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:fn:PROD",
                "arn:aws:sagemaker:us-east-1:aws:hub/SageMakerPublicHub"]})),
        ),
        ok(
            ARNS,
            Managed,
            allow(json!({"Action": "iam:*", "Resource": [
                "arn:aws:iam::123456789012:user/division/bob",
                "arn:aws:iam::123456789012:federated-user/bob",
                "arn:aws:iam::123456789012:group/admins",
                "arn:aws:iam::123456789012:instance-profile/web",
                "arn:aws:iam::123456789012:mfa/bob",
                "arn:aws:iam::123456789012:sms-mfa/*",
                "arn:aws:iam::123456789012:server-certificate/division/cert",
                "arn:aws:iam::123456789012:saml-provider/okta",
                "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
                "arn:aws:iam::123456789012:report/*",
                "arn:aws:iam::123456789012:access-report/*"]})),
        ),
        ok(
            RESOURCE,
            Managed,
            id(
                json!({"Effect": "Deny", "Action": "s3:*", "NotResource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]}),
            ),
        ),
        ok(
            VERSION,
            Inline,
            json!({"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}),
        ),
        ok(
            PRINCIPAL,
            Trust,
            trust(json!({"Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {"oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE:sub": "system:serviceaccount:ns:app"}}})),
        ),
        ok(
            PRINCIPAL,
            Trust,
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com", "lambda.amazonaws.com"]}, "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"AWS": ["123456789012", "arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:role/ci"]},
                 "Action": ["STS:AssumeRole", "sts:TagSession"],
                 "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
                {"Effect": "Allow", "Principal": {"CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
                 "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"Federated": "cognito-identity.amazonaws.com"},
                 "Action": "sts:AssumeRoleWithWebIdentity"}]}),
        ),
        ok(
            PRINCIPAL,
            Trust,
            json!({"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}}),
        ),
        // --- refused: operators ---
        bad(
            OPERATORS,
            Managed,
            cond(json!({"StringEqual": {"aws:PrincipalTag/team": "data"}})),
            "document.Statement[0].Condition.StringEqual",
            "unknown condition operator \"StringEqual\"; did you mean \"StringEquals\"?",
        ),
        bad(
            MULTIVALUED,
            Managed,
            cond(json!({"ForAnyValues:StringLike": {"aws:TagKeys": "env*"}})),
            "document.Statement[0].Condition.ForAnyValues:StringLike",
            "unknown qualifier \"ForAnyValues\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"ArnEqual": {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:t"}})),
            "document.Statement[0].Condition.ArnEqual",
            "unknown condition operator \"ArnEqual\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"BoolIfExist": {"aws:MultiFactorAuthPresent": "true"}})),
            "document.Statement[0].Condition.BoolIfExist",
            "did you mean \"BoolIfExists\"?",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"NullIfExists": {"aws:TokenIssueTime": "true"}})),
            "document.Statement[0].Condition.NullIfExists",
            "Null has no IfExists form",
        ),
        // --- refused: condition values ---
        bad(
            OPERATORS,
            Managed,
            cond(json!({"DateGreaterThan": {"aws:CurrentTime": "yesterday"}})),
            "document.Statement[0].Condition.DateGreaterThan.aws:CurrentTime",
            "DateGreaterThan takes ISO 8601 dates or times",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"DateGreaterThan": {"aws:CurrentTime": "2024-13-01"}})),
            "document.Statement[0].Condition.DateGreaterThan.aws:CurrentTime",
            "got \"2024-13-01\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(
                json!({"DateLessThanIfExists": {"aws:CurrentTime": ["2024-02-29", "2023-02-29"]}}),
            ),
            "document.Statement[0].Condition.DateLessThanIfExists.aws:CurrentTime[1]",
            "got \"2023-02-29\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"NumericLessThan": {"s3:max-keys": "ten"}})),
            "document.Statement[0].Condition.NumericLessThan.s3:max-keys",
            "NumericLessThan takes numbers, got \"ten\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"IpAddress": {"aws:SourceIp": "300.1.1.1"}})),
            "document.Statement[0].Condition.IpAddress.aws:SourceIp",
            "IpAddress takes IPv4 or IPv6 addresses or CIDR ranges",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "10.0.0.0/33"]}})),
            "document.Statement[0].Condition.NotIpAddress.aws:SourceIp[1]",
            "got \"10.0.0.0/33\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"Bool": {"aws:SecureTransport": "yes"}})),
            "document.Statement[0].Condition.Bool.aws:SecureTransport",
            "Bool takes \"true\" or \"false\", got \"yes\"",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"Null": {"aws:TokenIssueTime": 0}})),
            "document.Statement[0].Condition.Null.aws:TokenIssueTime",
            "Null takes \"true\" or \"false\", got 0",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"BinaryEquals": {"key": "not base64!"}})),
            "document.Statement[0].Condition.BinaryEquals.key",
            "BinaryEquals takes base64-encoded values",
        ),
        bad(
            OPERATORS,
            Managed,
            cond(json!({"ArnLike": {"aws:SourceArn": "my-topic"}})),
            "document.Statement[0].Condition.ArnLike.aws:SourceArn",
            "ArnLike takes ARNs: must be \"*\" or an ARN",
        ),
        bad(
            CONDITION,
            Managed,
            cond(json!({"StringEquals": {"": "x"}})),
            "document.Statement[0].Condition.StringEquals.",
            "a condition key must not be empty",
        ),
        bad(
            CONDITION,
            Managed,
            cond(json!({"StringEquals": {"aws:PrincipalTag/team": {"a": 1}}})),
            "document.Statement[0].Condition.StringEquals.aws:PrincipalTag/team",
            "must be a string, number, boolean or a list of them",
        ),
        // --- refused: resources (ARN structure) ---
        bad(
            ARNS,
            Managed,
            resource("arn:aws:s3"),
            "document.Statement[0].Resource[0]",
            "an ARN has 6 parts",
        ),
        bad(
            ARNS,
            Managed,
            resource("arn:amazon:s3:::b"),
            "document.Statement[0].Resource[0]",
            "unknown partition \"amazon\"",
        ),
        bad(
            ARNS,
            Managed,
            resource("arn:aws:s3:us-east-1::b"),
            "document.Statement[0].Resource[0]",
            "S3 bucket and object ARNs have no region (access points have region and account), got region \"us-east-1\"",
        ),
        bad(
            ARNS,
            Managed,
            resource("arn:aws:iam:us-east-1:123456789012:role/x"),
            "document.Statement[0].Resource[0]",
            "iam ARNs have no region",
        ),
        bad(
            ARNS,
            Managed,
            resource("arn:aws:iam::123456789012:role"),
            "document.Statement[0].Resource[0]",
            "an IAM resource is a type and a name",
        ),
        bad(
            ARNS,
            Managed,
            resource("arn:aws:iam::123456789012:users/x"),
            "document.Statement[0].Resource[0]",
            "unknown IAM resource type \"users\"",
        ),
        bad(
            ARNS,
            Trust,
            trust(json!({"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::123456789012:roles/ci"}})),
            "document.Statement[0].Principal.AWS",
            "unknown IAM resource type \"roles\"",
        ),
        bad(
            ARNS,
            Managed,
            resource("arn:aws:iam::12345:role/x"),
            "document.Statement[0].Resource[0]",
            "an IAM ARN needs the account",
        ),
        bad(
            RESOURCE,
            Managed,
            allow(json!({"Resource": ["*", "bucket"]})),
            "document.Statement[0].Resource[1]",
            "must be \"*\" or an ARN starting \"arn:\"",
        ),
        // --- refused: actions, effect, sid, statement ---
        bad(
            ACTION,
            Managed,
            allow(json!({"Action": ["s3:GetObject", "s3 GetObject"]})),
            "document.Statement[0].Action[1]",
            "must be \"*\" or \"service:Action\"",
        ),
        bad(
            ACTION,
            Managed,
            allow(json!({"Action": "s3:"})),
            "document.Statement[0].Action[0]",
            "must be \"*\" or \"service:Action\"",
        ),
        bad(
            EFFECT,
            Managed,
            allow(json!({"Effect": "allow"})),
            "document.Statement[0].Effect",
            "must be \"Allow\" or \"Deny\", got \"allow\"",
        ),
        bad(
            SID,
            Managed,
            json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "One", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                {"Sid": "One", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}),
            "document.Statement[1].Sid",
            "duplicate Sid \"One\"",
        ),
        bad(
            STATEMENT,
            Managed,
            allow(json!({"Principal": "*"})),
            "document.Statement[0].Principal",
            "is not allowed in an identity policy",
        ),
        // --- refused: versions and kinds ---
        bad(
            VERSION,
            Managed,
            json!({"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}),
            "document.Version",
            "must be \"2012-10-17\" (a managed policy takes only the current version), got \"2008-10-17\"",
        ),
        bad(
            VERSION,
            Inline,
            json!({"Version": "2012-10-18", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}),
            "document.Version",
            "must be \"2012-10-17\" or \"2008-10-17\", got \"2012-10-18\"",
        ),
        bad(
            TRUST,
            Trust,
            trust(
                json!({"Effect": "Allow", "Principal": {"AWS": "ci-user"}, "Action": "sts:AssumeRole"}),
            ),
            "document.Statement[0].Principal.AWS",
            "must be \"*\", a 12-digit account id or an ARN, got \"ci-user\"",
        ),
        bad(
            PRINCIPAL,
            Trust,
            trust(
                json!({"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:root", "arn:aws:iam:us-east-1:123456789012:role/x"]}, "Action": "sts:AssumeRole"}),
            ),
            "document.Statement[0].Principal.AWS[1]",
            "iam ARNs have no region",
        ),
        bad(
            PRINCIPAL,
            Trust,
            trust(
                json!({"Effect": "Allow", "Principal": {"Group": "admins"}, "Action": "sts:AssumeRole"}),
            ),
            "document.Statement[0].Principal.Group",
            "must be one of AWS, Service, Federated, CanonicalUser",
        ),
        bad(
            TRUST,
            Trust,
            trust(
                json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole", "Resource": "*"}),
            ),
            "document.Statement[0].Resource",
            "is not allowed in a trust policy",
        ),
        bad(
            TRUST,
            Trust,
            trust(
                json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "s3:GetObject"}),
            ),
            "document.Statement[0].Action[0]",
            "a trust policy allows only sts:AssumeRole",
        ),
        bad(
            QUOTAS,
            Trust,
            trust(
                json!({"Effect": "Allow", "Principal": {"AWS": (0..100).map(|i| format!("arn:aws:iam::123456789012:role/r{i:03}")).collect::<Vec<_>>()}, "Action": "sts:AssumeRole"}),
            ),
            "document",
            "more than the 2048 AWS allows",
        ),
        bad(
            QUOTAS,
            Managed,
            big_policy(),
            "document",
            "more than the 6144 AWS allows",
        ),
        ok(QUOTAS, Inline, big_policy()),
    ]
}

/// An identity policy of about 7,000 characters: over the managed limit, under the
/// inline aggregate.
fn big_policy() -> Value {
    let actions: Vec<String> = (0..350).map(|i| format!("s3:GetObjectNumber{i}")).collect();
    json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": actions, "Resource": "*"}})
}

#[test]
fn the_grammar_table_agrees_with_aws() {
    let mut failures = vec![];
    let rows = rows();
    for (n, row) in rows.iter().enumerate() {
        let got = validate_document(&row.doc, "document", row.kind);
        match (&row.refused, got) {
            (None, Ok(())) => {}
            (None, Err(e)) => failures.push(format!(
                "row {n} ({}, {:?}): AWS accepts it, we refused: {e}",
                row.rule, row.kind
            )),
            (Some((path, _)), Ok(())) => failures.push(format!(
                "row {n} ({}, {:?}): AWS refuses it at {path}, we accepted",
                row.rule, row.kind
            )),
            (Some((path, fragment)), Err(e)) => {
                if e.path != *path || !e.message.contains(fragment) {
                    failures.push(format!(
                        "row {n} ({}, {:?}): want {path}: …{fragment}…, got {e}",
                        row.rule, row.kind
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rows.iter().filter(|r| r.refused.is_none()).count() >= 15);
    assert!(rows.iter().filter(|r| r.refused.is_some()).count() >= 30);
}

#[test]
fn inline_policies_are_limited_together() {
    let big = big_policy();
    let small = id(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}));
    check_inline_aggregate(&[("a", &big), ("b", &small)], "spec.inlinePolicies").unwrap();
    let err =
        check_inline_aggregate(&[("a", &big), ("b", &big)], "spec.inlinePolicies").unwrap_err();
    assert_eq!(err.path, "spec.inlinePolicies");
    assert!(
        err.message
            .contains("together, more than the 10240 AWS allows for a role"),
        "{err}"
    );
    // Each of them is a valid inline policy on its own.
    validate_document(&big, "spec.inlinePolicies.a", DocKind::Inline).unwrap();
}

#[test]
fn a_version_is_required_in_every_kind() {
    for kind in [DocKind::Managed, DocKind::Inline, DocKind::Trust] {
        let e = validate_document(&json!({"Statement": []}), "document", kind).unwrap_err();
        assert_eq!(
            e.to_string(),
            "document.Version: is required (use \"2012-10-17\")"
        );
    }
}
