//! Properties over arbitrary JSON: the checker never panics, canonical form is
//! idempotent, and a valid document is the same policy as itself.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use super::model::{Document, OPERATORS};
use super::{
    DocKind, allowed_actions_matching, canonicalize, check_inline_aggregate, same_document,
    validate_document,
};

const KEYS: &[&str] = &[
    "Version",
    "Id",
    "Statement",
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "NotPrincipal",
    "AWS",
    "Service",
    "Federated",
    "CanonicalUser",
    "aws:SourceIp",
    "aws:CurrentTime",
    "",
];

const STRINGS: &[&str] = &[
    "2012-10-17",
    "2008-10-17",
    "Allow",
    "Deny",
    "*",
    "s3:GetObject",
    "IAM:PassRole",
    "iam:*",
    "sts:AssumeRole",
    "arn:aws:s3:::bucket/*",
    "arn:aws:iam::123456789012:role/x",
    "arn:aws:iam:us-east-1:123456789012:role/x",
    "arn:${aws:partition}:s3:::b/${aws:username}",
    "arn:",
    "${",
    "${aws:username}",
    "203.0.113.0/24",
    "::1/129",
    "2024-02-29T23:59:60.5+05:30",
    "2024-13-01",
    "true",
    "10",
    "QQ==",
    "ec2.amazonaws.com",
    "123456789012",
    "é✓\u{0}",
];

fn operator_names() -> Vec<String> {
    let mut names = vec![];
    for (base, _) in OPERATORS {
        names.push(base.to_string());
        names.push(format!("{base}IfExists"));
        names.push(format!("ForAnyValue:{base}"));
        names.push(format!("ForAllValues:{base}IfExists"));
    }
    names.extend(
        [
            "StringEqual",
            "ForAnyValues:StringLike",
            "BoolIfExist",
            ":",
            "",
        ]
        .map(String::from),
    );
    names
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        2 => prop::sample::select(operator_names()),
        1 => "\\PC{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(|n| Value::Number(n.into())),
        1 => any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        4 => prop::sample::select(STRINGS).prop_map(|s| Value::String(s.into())),
        2 => "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// Arbitrary JSON, with object keys biased toward the policy grammar.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn one_or_many(items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(options).prop_map(|s| Value::String(s.into()))
}

/// Policy-shaped documents: mostly valid, with the parts drawn from valid and invalid
/// values, so that the properties hold on documents that get past the parser.
fn policy() -> impl Strategy<Value = Value> {
    let values = prop_oneof![
        leaf(),
        pick(&[
            "true",
            "false",
            "10",
            "2030-01-01T00:00:00Z",
            "10.0.0.0/8",
            "arn:aws:sns:*:123456789012:t"
        ]),
    ];
    let condition_key = prop_oneof![
        4 => pick(&["aws:SourceIp", "aws:CurrentTime", "aws:PrincipalTag/team"]),
        1 => key().prop_map(Value::String),
    ]
    .prop_map(|k| k.as_str().unwrap_or_default().to_string());
    let condition = prop::option::weighted(
        0.4,
        prop::collection::vec(
            (
                prop::sample::select(operator_names()),
                prop::collection::vec((condition_key, prop::collection::vec(values, 1..3)), 1..3),
            ),
            1..3,
        ),
    )
    .prop_map(Option::unwrap_or_default);
    let statement = (
        pick(&["Allow", "Allow", "Deny", "Deny", "allow"]),
        prop::collection::vec(
            pick(&[
                "s3:GetObject",
                "S3:PutObject",
                "iam:*",
                "*",
                "sts:AssumeRole",
                "bad action",
            ]),
            1..4,
        ),
        any::<bool>(),
        prop::collection::vec(
            pick(&[
                "*",
                "arn:aws:s3:::b/*",
                "arn:aws:iam::123456789012:role/x",
                "arn:aws:s3",
            ]),
            1..3,
        ),
        prop::option::of(prop::collection::vec(
            pick(&["ec2.amazonaws.com", "lambda.amazonaws.com"]),
            1..3,
        )),
        condition,
        prop::option::of(pick(&["", "A", "B", "Sid1"])),
    )
        .prop_map(
            |(effect, actions, not, resources, service, condition, sid)| {
                let mut st = Map::new();
                st.insert("Effect".into(), effect);
                st.insert(
                    (if not { "NotAction" } else { "Action" }).into(),
                    one_or_many(actions),
                );
                match service {
                    Some(services) => {
                        st.insert(
                            "Principal".into(),
                            serde_json::json!({"Service": one_or_many(services)}),
                        );
                    }
                    None => {
                        st.insert("Resource".into(), one_or_many(resources));
                    }
                }
                if !condition.is_empty() {
                    let mut ops = Map::new();
                    for (op, entries) in condition {
                        let keys: Map<String, Value> = entries
                            .into_iter()
                            .map(|(k, v)| (k, one_or_many(v)))
                            .collect();
                        ops.insert(op, Value::Object(keys));
                    }
                    st.insert("Condition".into(), Value::Object(ops));
                }
                if let Some(sid) = sid {
                    st.insert("Sid".into(), sid);
                }
                Value::Object(st)
            },
        );
    (
        pick(&["2012-10-17", "2012-10-17", "2008-10-17"]),
        prop::collection::vec(statement, 1..4),
        any::<bool>(),
    )
        .prop_map(|(version, statements, list)| {
            let statement = if list || statements.len() > 1 {
                Value::Array(statements)
            } else {
                statements.into_iter().next().unwrap_or(Value::Null)
            };
            serde_json::json!({"Version": version, "Statement": statement})
        })
}

fn check(doc: &Value) -> Result<(), TestCaseError> {
    let deny = vec!["iam:*".to_string(), "s3:Put*".to_string()];
    let mut valid = false;
    for kind in [DocKind::Managed, DocKind::Inline, DocKind::Trust] {
        valid |= validate_document(doc, "d", kind).is_ok();
    }
    let _ = allowed_actions_matching(doc, "d", &deny);
    let _ = check_inline_aggregate(&[("a", doc), ("b", doc)], "d");
    let canonical = canonicalize(doc);
    prop_assert_eq!(
        &canonicalize(&canonical),
        &canonical,
        "canonical form is idempotent"
    );
    if Document::parse(doc, "d").is_ok() {
        prop_assert!(
            Document::parse(&canonical, "d").is_ok(),
            "the canonical form of a document is a document"
        );
        prop_assert!(same_document(doc, &canonical));
    }
    if valid {
        prop_assert!(same_document(doc, doc));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics_and_canonical_form_is_idempotent(doc in json()) {
        check(&doc)?;
        // The same value as a document body, so the parser gets past the top level.
        check(&serde_json::json!({"Version": "2012-10-17", "Statement": doc}))?;
    }

    #[test]
    fn policy_shaped_documents_keep_the_properties(doc in policy()) {
        check(&doc)?;
    }
}

/// The policy-shaped strategy does reach valid documents (else the properties above
/// would say little about them).
#[test]
fn the_policy_strategy_produces_valid_documents() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = policy();
    let valid = (0..300)
        .filter(|_| {
            let doc = strategy.new_tree(&mut runner).map(|t| t.current());
            doc.is_ok_and(|d| {
                validate_document(&d, "d", DocKind::Managed).is_ok()
                    || validate_document(&d, "d", DocKind::Trust).is_ok()
            })
        })
        .count();
    assert!(
        valid >= 10,
        "only {valid} of 300 generated documents are valid"
    );
}
