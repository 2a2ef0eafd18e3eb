//! The policy checker's grammar table against moto: every document the checker
//! accepts, moto accepts too (managed policies through CreatePolicy, trust policies
//! through CreateRole, inline policies through PutRolePolicy) — except where moto's own
//! validator is stricter than AWS's documented grammar, each listed below with why.
//! moto checks less than AWS elsewhere, so the refused rows are not sent.

use iamwright::policy::DocKind;
use iamwright::policy::table::rows;

use crate::harness::*;

/// Where moto's validator refuses what AWS documents as valid: a fragment of the row's
/// document, and why the checker keeps accepting it.
pub(crate) const MOTO_STRICTER: &[(&str, &str)] = &[
    (
        "arn:aws:iam::123456789012:*",
        "moto refuses an IAM ARN whose resource is `*`; AWS's rule is \"`*` or user/, role/, ...\"",
    ),
    (
        "${aws:PrincipalAccount}",
        "moto splits the ARN at the colon inside the policy variable",
    ),
    (
        "aws:EpochTime",
        "moto refuses epoch seconds given as a JSON number or with a fraction",
    ),
    (
        "\"s3:object-lock-remaining-retention-days\":-1",
        "moto refuses a negative JSON number in a numeric condition",
    ),
    (
        "${aws:TokenIssueTime}",
        "moto refuses a policy variable as a date condition value",
    ),
    (
        "2008-10-17",
        "moto requires 2012-10-17 for inline policies too; AWS requires it for managed policies only",
    ),
];

#[tokio::test]
async fn every_document_the_checker_accepts_moto_accepts() {
    let iam = iam().await;
    let run = random_suffix();
    let holder = format!("e2e-grammar-{run}");
    let ec2_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role()
        .role_name(&holder)
        .assume_role_policy_document(ec2_trust)
        .send()
        .await
        .unwrap();
    let mut sent = 0;
    let mut refused = vec![];
    for (n, row) in rows().into_iter().enumerate() {
        if row.refused.is_some() {
            continue;
        }
        let doc = row.doc.to_string();
        let result = match row.kind {
            DocKind::Managed => iam
                .create_policy()
                .policy_name(format!("e2e-grammar-{run}-{n}"))
                .policy_document(&doc)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
            DocKind::Trust => iam
                .create_role()
                .role_name(format!("e2e-grammar-{run}-{n}"))
                .assume_role_policy_document(&doc)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
            DocKind::Inline => iam
                .put_role_policy()
                .role_name(&holder)
                .policy_name(format!("p{n}"))
                .policy_document(&doc)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
        };
        sent += 1;
        let known = MOTO_STRICTER
            .iter()
            .find(|(fragment, _)| doc.contains(fragment));
        match (result, known) {
            (Ok(()), _) => {}
            (Err(_), Some((_, why))) => eprintln!("row {n}: moto is stricter than AWS: {why}"),
            (Err(e), None) => refused.push(format!("row {n} ({}): {e}", row.rule)),
        }
    }
    assert!(sent >= 15, "only {sent} accepted rows");
    assert!(
        refused.is_empty(),
        "moto refused accepted documents:\n{}",
        refused.join("\n")
    );
}
