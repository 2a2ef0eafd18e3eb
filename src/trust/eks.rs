//! Trust statements for Kubernetes service accounts on EKS (`IamRole.spec.serviceAccounts`,
//! docs/eks.md). Pure: the statements are generated from the spec, the operator's EKS
//! flags and the account, then merged into the spec's `assumeRolePolicy` under fixed
//! Sids, so the same spec always yields the same document and the stored trust policy
//! compares equal on the next reconcile.
//!
//! - IRSA (`--oidc-issuer`): one statement, `sts:AssumeRoleWithWebIdentity` from the
//!   cluster's IAM OIDC provider, `StringEquals` on the token's `sub`
//!   (`system:serviceaccount:NS:NAME`, a list when several) and `aud`
//!   (`sts.amazonaws.com`, what the EKS pod identity webhook requests).
//! - EKS Pod Identity (`--pod-identity`): `pods.eks.amazonaws.com` may
//!   `sts:AssumeRole` + `sts:TagSession`, restricted by the session tags EKS sets
//!   (`kubernetes-namespace`, `kubernetes-service-account`): without them any Pod
//!   Identity association in the account could hand the role to any pod. One statement
//!   per namespace, because two independent tag conditions over several namespaces would
//!   also admit the cross pairs (namespace of one, name of the other).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::api::IamRoleSpec;
use crate::config::EksArgs;
use crate::error::Error;
use crate::reason::Reason;
use crate::trust::Governance;

/// The Sid of the generated IRSA statement.
pub const IRSA_SID: &str = "IamwrightIrsa";
/// The Sid of the first generated Pod Identity statement; the next ones get `2`, `3`, ...
pub const POD_IDENTITY_SID: &str = "IamwrightPodIdentity";
/// The service principal EKS Pod Identity assumes roles as (the same in every partition).
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";
/// The audience the EKS pod identity webhook puts in projected tokens.
pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";

/// The AWS account a role lives in: IRSA statements name its OIDC provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub partition: String,
}

impl Account {
    /// For offline checks (`iamwright validate`): the account only appears inside an
    /// ARN of the generated document, which is checked for grammar only.
    pub fn placeholder() -> Self {
        Account {
            id: "000000000000".into(),
            partition: "aws".into(),
        }
    }
}

/// The service accounts as (namespace, name), the namespace defaulted to the object's,
/// duplicates dropped, in spec order.
pub fn service_accounts(spec: &IamRoleSpec, object_ns: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for sa in &spec.service_accounts {
        let pair = (
            sa.namespace
                .clone()
                .unwrap_or_else(|| object_ns.to_string()),
            sa.name.clone(),
        );
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}

/// Each service account of another namespace than the governance's needs a grant:
/// NotPermitted naming `spec.serviceAccounts[i].namespace` otherwise.
pub fn check_namespaces(spec: &IamRoleSpec, gov: &Governance) -> Result<(), Error> {
    for (i, sa) in spec.service_accounts.iter().enumerate() {
        if let Some(ns) = &sa.namespace {
            gov.check_service_account_namespace(
                &format!("spec.serviceAccounts[{i}].namespace"),
                ns,
            )?;
        }
    }
    Ok(())
}

/// One string, or a list when several: how a person would write the condition value.
fn one_or_many(values: Vec<String>) -> Value {
    match values.as_slice() {
        [one] => json!(one),
        _ => json!(values),
    }
}

/// The statements trusting `sas` under the EKS flags. Neither flag: InvalidSpec, since
/// nothing says how the cluster's pods get credentials.
pub fn statements(
    sas: &[(String, String)],
    eks: &EksArgs,
    account: Option<&Account>,
) -> Result<Vec<Value>, Error> {
    if eks.oidc_issuer.is_none() && !eks.pod_identity {
        return Err(Error::at(
            Reason::InvalidSpec,
            "spec.serviceAccounts",
            "the operator runs without --oidc-issuer (IRSA) and without --pod-identity (EKS Pod Identity), so it cannot generate a trust policy for service accounts; set one of the flags (chart values operator.eks.oidcIssuer / operator.eks.podIdentity) or write spec.assumeRolePolicy instead",
        ));
    }
    let mut out = vec![];
    if let Some(issuer) = &eks.oidc_issuer {
        let account = account.ok_or_else(|| {
            Error::at(
                Reason::InvalidSpec,
                "spec.serviceAccounts",
                "the AWS account of the role is unknown, so its OIDC provider cannot be named",
            )
        })?;
        let subjects = sas
            .iter()
            .map(|(ns, name)| format!("system:serviceaccount:{ns}:{name}"))
            .collect();
        out.push(json!({
            "Sid": IRSA_SID,
            "Effect": "Allow",
            "Principal": {"Federated": format!(
                "arn:{}:iam::{}:oidc-provider/{issuer}", account.partition, account.id
            )},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): one_or_many(subjects),
                format!("{issuer}:aud"): IRSA_AUDIENCE,
            }},
        }));
    }
    if eks.pod_identity {
        let mut by_namespace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (ns, name) in sas {
            by_namespace.entry(ns).or_default().push(name.clone());
        }
        for (i, (ns, names)) in by_namespace.into_iter().enumerate() {
            let sid = match i {
                0 => POD_IDENTITY_SID.to_string(),
                n => format!("{POD_IDENTITY_SID}{}", n + 1),
            };
            out.push(json!({
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_SERVICE},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {
                    "aws:RequestTag/kubernetes-namespace": ns,
                    "aws:RequestTag/kubernetes-service-account": one_or_many(names),
                }},
            }));
        }
    }
    Ok(out)
}

/// Whether a statement Sid is one this module generates (and so replaces when merging).
pub fn is_generated_sid(sid: &str) -> bool {
    sid == IRSA_SID
        || sid
            .strip_prefix(POD_IDENTITY_SID)
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// `generated` appended to the statements of `user` (a single statement object becomes
/// a list), replacing any statement carrying a generated Sid: merging an already
/// merged document changes nothing. No user document: a fresh one. A document whose
/// shape is wrong is returned as is, for validation to report.
pub fn merge(user: Option<&Value>, generated: Vec<Value>) -> Value {
    let mut doc = match user {
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return other.clone(),
        None => Map::from_iter([("Version".to_string(), json!("2012-10-17"))]),
    };
    let mut statements = match doc.remove("Statement") {
        None => vec![],
        Some(Value::Array(list)) => list,
        Some(one @ Value::Object(_)) => vec![one],
        Some(other) => {
            doc.insert("Statement".into(), other);
            return Value::Object(doc);
        }
    };
    statements.retain(|s| {
        !s.get("Sid")
            .and_then(Value::as_str)
            .is_some_and(is_generated_sid)
    });
    statements.extend(generated);
    doc.insert("Statement".into(), Value::Array(statements));
    Value::Object(doc)
}

/// The trust policy a role gets: `spec.assumeRolePolicy`, with the statements for
/// `spec.serviceAccounts` merged in when there are any. With `spec.credentials` only,
/// an empty policy the operator's own statement is added to (role/credentials.rs).
/// None of the three: InvalidSpec (the CRD's CEL rule says the same at apply time).
pub fn trust_document(
    spec: &IamRoleSpec,
    object_ns: &str,
    eks: &EksArgs,
    account: Option<&Account>,
) -> Result<Value, Error> {
    let sas = service_accounts(spec, object_ns);
    match (&spec.assume_role_policy, sas.is_empty()) {
        (None, true) if spec.credentials.is_some() => Ok(json!({
            "Version": "2012-10-17",
            "Statement": [],
        })),
        (None, true) => Err(Error::at(Reason::InvalidSpec, "spec", REQUIRE_ONE)),
        (Some(doc), true) => Ok(doc.value()),
        (user, false) => Ok(merge(
            user.as_ref().map(|d| d.value()).as_ref(),
            statements(&sas, eks, account)?,
        )),
    }
}

/// The rule the CRD's CEL, the controller and `iamwright validate` share.
pub const REQUIRE_ONE: &str =
    "at least one of spec.assumeRolePolicy, spec.serviceAccounts and spec.credentials must be set";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DocKind, same_document, validate_document};

    const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/ABC123";

    fn spec(v: Value) -> IamRoleSpec {
        serde_json::from_value(v).unwrap()
    }

    fn account() -> Account {
        Account {
            id: "111122223333".into(),
            partition: "aws".into(),
        }
    }

    fn irsa() -> EksArgs {
        EksArgs {
            oidc_issuer: Some(ISSUER.into()),
            pod_identity: false,
        }
    }

    fn pod_identity() -> EksArgs {
        EksArgs {
            oidc_issuer: None,
            pod_identity: true,
        }
    }

    fn both() -> EksArgs {
        EksArgs {
            oidc_issuer: Some(ISSUER.into()),
            pod_identity: true,
        }
    }

    fn irsa_statement(sub: Value) -> Value {
        json!({"Sid": "IamwrightIrsa", "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::111122223333:oidc-provider/{ISSUER}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{ISSUER}:sub"): sub,
                format!("{ISSUER}:aud"): "sts.amazonaws.com"}}})
    }

    fn pod_statement(sid: &str, ns: &str, names: Value) -> Value {
        json!({"Sid": sid, "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/kubernetes-namespace": ns,
                "aws:RequestTag/kubernetes-service-account": names}}})
    }

    fn generate(spec: &IamRoleSpec, eks: &EksArgs) -> Value {
        let doc = trust_document(spec, "team", eks, Some(&account())).unwrap();
        validate_document(&doc, "spec.assumeRolePolicy", DocKind::Trust).unwrap();
        doc
    }

    #[test]
    fn irsa_only() {
        let s = spec(json!({"serviceAccounts": [{"name": "app"}]}));
        assert_eq!(
            generate(&s, &irsa()),
            json!({"Version": "2012-10-17", "Statement": [
                irsa_statement(json!("system:serviceaccount:team:app"))]})
        );
    }

    #[test]
    fn irsa_names_the_partition_of_the_account() {
        let s = spec(json!({"serviceAccounts": [{"name": "app"}]}));
        let cn = Account {
            id: "111122223333".into(),
            partition: "aws-cn".into(),
        };
        let doc = trust_document(&s, "team", &irsa(), Some(&cn)).unwrap();
        assert_eq!(
            doc["Statement"][0]["Principal"]["Federated"],
            json!(format!(
                "arn:aws-cn:iam::111122223333:oidc-provider/{ISSUER}"
            ))
        );
    }

    #[test]
    fn pod_identity_only() {
        let s = spec(json!({"serviceAccounts": [{"name": "app"}]}));
        assert_eq!(
            generate(&s, &pod_identity()),
            json!({"Version": "2012-10-17", "Statement": [
                pod_statement("IamwrightPodIdentity", "team", json!("app"))]})
        );
        // Pod Identity needs no account: none is read.
        assert!(trust_document(&s, "team", &pod_identity(), None).is_ok());
    }

    #[test]
    fn both_flags_give_both_statements() {
        let s = spec(json!({"serviceAccounts": [{"name": "app"}]}));
        assert_eq!(
            generate(&s, &both()),
            json!({"Version": "2012-10-17", "Statement": [
                irsa_statement(json!("system:serviceaccount:team:app")),
                pod_statement("IamwrightPodIdentity", "team", json!("app"))]})
        );
    }

    #[test]
    fn several_service_accounts_make_lists_and_one_pod_statement_per_namespace() {
        let s = spec(json!({"serviceAccounts": [
            {"name": "app"}, {"name": "worker"}, {"namespace": "jobs", "name": "batch"},
            {"namespace": "team", "name": "app"}]}));
        assert_eq!(
            service_accounts(&s, "team"),
            vec![
                ("team".to_string(), "app".to_string()),
                ("team".into(), "worker".into()),
                ("jobs".into(), "batch".into())
            ]
        );
        assert_eq!(
            generate(&s, &both()),
            json!({"Version": "2012-10-17", "Statement": [
                irsa_statement(json!(["system:serviceaccount:team:app",
                    "system:serviceaccount:team:worker", "system:serviceaccount:jobs:batch"])),
                pod_statement("IamwrightPodIdentity", "jobs", json!("batch")),
                pod_statement("IamwrightPodIdentity2", "team", json!(["app", "worker"]))]})
        );
    }

    #[test]
    fn merges_into_a_statement_array() {
        let ec2 = json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"});
        let s = spec(
            json!({"assumeRolePolicy": {"Version": "2012-10-17", "Id": "mine",
            "Statement": [ec2.clone()]}, "serviceAccounts": [{"name": "app"}]}),
        );
        assert_eq!(
            generate(&s, &irsa()),
            json!({"Version": "2012-10-17", "Id": "mine", "Statement": [ec2,
                irsa_statement(json!("system:serviceaccount:team:app"))]})
        );
    }

    #[test]
    fn merges_into_a_single_statement_or_none() {
        let ec2 = json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"});
        let s = spec(
            json!({"assumeRolePolicy": {"Version": "2012-10-17", "Statement": ec2},
            "serviceAccounts": [{"name": "app"}]}),
        );
        assert_eq!(
            generate(&s, &pod_identity()),
            json!({"Version": "2012-10-17", "Statement": [ec2,
                pod_statement("IamwrightPodIdentity", "team", json!("app"))]})
        );
        let s = spec(json!({"assumeRolePolicy": {"Version": "2012-10-17"},
            "serviceAccounts": [{"name": "app"}]}));
        assert_eq!(
            generate(&s, &pod_identity()),
            json!({"Version": "2012-10-17", "Statement": [
                pod_statement("IamwrightPodIdentity", "team", json!("app"))]})
        );
    }

    #[test]
    fn merging_is_idempotent_and_replaces_generated_sids() {
        let s =
            spec(json!({"serviceAccounts": [{"name": "app"}, {"name": "b", "namespace": "x"}]}));
        let once = generate(&s, &both());
        // The stored document fed back as the user's: nothing changes.
        let again = merge(
            Some(&once),
            statements(&service_accounts(&s, "team"), &both(), Some(&account())).unwrap(),
        );
        assert_eq!(again, once);
        // A stale generated statement (another service account) is replaced, not kept.
        let stale = merge(
            Some(&json!({"Version": "2012-10-17", "Statement": [
                irsa_statement(json!("system:serviceaccount:team:old"))]})),
            statements(&service_accounts(&s, "team"), &irsa(), Some(&account())).unwrap(),
        );
        assert_eq!(stale["Statement"].as_array().unwrap().len(), 1);
        assert!(same_document(
            &stale["Statement"][0],
            &irsa_statement(json!([
                "system:serviceaccount:team:app",
                "system:serviceaccount:x:b"
            ]))
        ));
        assert!(
            is_generated_sid("IamwrightPodIdentity12")
                && !is_generated_sid("IamwrightPodIdentityX")
        );
        assert!(!is_generated_sid("Irsa"));
    }

    #[test]
    fn without_service_accounts_the_document_is_the_spec_s() {
        let doc = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}});
        let s = spec(json!({"assumeRolePolicy": doc}));
        assert_eq!(
            trust_document(&s, "team", &EksArgs::default(), None).unwrap(),
            doc
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let e = trust_document(&spec(json!({})), "team", &both(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, format!("spec: {REQUIRE_ONE}"));
        let s = spec(json!({"serviceAccounts": [{"name": "app"}]}));
        let e = trust_document(&s, "team", &EksArgs::default(), None).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Stalled {
                    reason: Reason::InvalidSpec,
                    ..
                }
            ),
            "{e}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with("spec.serviceAccounts: ")
                && e.contains("--oidc-issuer")
                && e.contains("--pod-identity"),
            "{e}"
        );
    }

    #[test]
    fn other_namespaces_need_a_grant() {
        let s = spec(
            json!({"serviceAccounts": [{"name": "a"}, {"namespace": "team", "name": "b"},
            {"namespace": "shared", "name": "c"}]}),
        );
        let gov = Governance {
            namespace: "team".into(),
            ..Default::default()
        };
        let e = check_namespaces(&s, &gov).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Stalled {
                    reason: Reason::NotPermitted,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("spec.serviceAccounts[2].namespace: "),
            "{e}"
        );
        let granted = Governance {
            service_account_namespaces: vec!["sh*".into()],
            ..gov
        };
        assert!(check_namespaces(&s, &granted).is_ok());
    }
}
