//! `IamRole.spec.credentials`: STS session credentials for the role, kept in a Secret
//! of the namespace instead of a long-lived access key. The operator assumes the role
//! from its own identity (the trust statement that lets it names exactly that
//! principal and the object's session name) and refreshes the Secret when a quarter
//! of the duration is left. The session's secret and token go into the Secret only.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::{IamRole, RoleCredentials};
use crate::controllers::access_key::schedule::{parse_go_duration, parse_rfc3339, rfc3339};
use crate::controllers::{Context, Error, cut_name};
use crate::error::FieldError;
use crate::reason::Reason;
use crate::status::MANAGER;

/// The Sid of the generated trust statement.
pub const SID: &str = "IamwrightCredentials";
const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);
/// Annotations on the Secret (no secret in them): when to refresh, for which role.
const REFRESH_AT: &str = "iamwright.dev/credentials-refresh-at";
const ROLE_ARN: &str = "iamwright.dev/role-arn";
const KEYS: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "credentials",
];

/// The session duration the spec asks for, checked: 15m–12h and within the role's
/// `maxSessionDuration` (seconds).
pub fn duration(c: &RoleCredentials, max_session: i32) -> Result<Duration, FieldError> {
    let d = match &c.duration {
        Some(s) => {
            parse_go_duration(s).map_err(|e| FieldError::new("spec.credentials.duration", e))?
        }
        None => DEFAULT_DURATION,
    };
    if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
        return Err(FieldError::new(
            "spec.credentials.duration",
            format!(
                "must be between 15m and 12h, got {:?}",
                c.duration.as_deref().unwrap_or_default()
            ),
        ));
    }
    if d.as_secs() > u64::try_from(max_session).unwrap_or(0) {
        return Err(FieldError::new(
            "spec.credentials.duration",
            format!(
                "must not exceed spec.maxSessionDuration ({max_session} s), got {:?}",
                c.duration.as_deref().unwrap_or("1h")
            ),
        ));
    }
    Ok(d)
}

/// The session name, bound in the trust statement: one object (namespace and
/// name), one name.
pub fn session_name(namespace: &str, name: &str) -> String {
    cut_name(&format!("{namespace}.{name}"), 64)
}

/// The session name of an IamRole object.
pub fn object_session_name(r: &IamRole) -> String {
    session_name(&r.namespace().unwrap_or_default(), &r.name_any())
}

/// The statement that lets `principal` (the operator) assume the role under
/// `session` only.
pub fn operator_statement(principal: &str, session: &str) -> Value {
    json!({
        "Sid": SID,
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:RoleSessionName": session}},
    })
}

/// `trust` with the [`operator_statement`], replacing an earlier one of the same Sid.
pub fn with_operator_statement(trust: &Value, principal: &str, session: &str) -> Value {
    let mut doc = trust.clone();
    let mut statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(one) => vec![one.clone()],
        None => vec![],
    };
    statements.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(SID));
    statements.push(operator_statement(principal, session));
    doc["Statement"] = Value::Array(statements);
    doc
}

/// When credentials issued at `issued` for `d` are refreshed: with a quarter of `d`
/// left (`scale` > 1 only in tests, see `schedule::time_scale`).
pub fn refresh_at(issued: DateTime<Utc>, d: Duration, scale: u32) -> DateTime<Utc> {
    let ahead = (d - d / 4) / scale.max(1);
    issued + chrono::Duration::from_std(ahead).unwrap_or_default()
}

/// Keep the Secret holding current session credentials; returns when they expire
/// and when to look again.
pub async fn ensure(
    r: &IamRole,
    ctx: &Context,
    role_arn: &str,
    c: &RoleCredentials,
) -> Result<(String, Duration), Error> {
    let d = duration(c, r.spec.max_session_duration)
        .map_err(|e| Error::invalid(Reason::InvalidSpec, e))?;
    let ns = r.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Utc::now();
    if let Some(s) = secrets.get_opt(&c.secret_name).await? {
        let ours = s
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == r.uid().as_ref());
        if !ours {
            return Err(Error::at(
                Reason::AlreadyExists,
                "spec.credentials.secretName",
                format!(
                    "Secret {:?} already exists and is not controlled by this IamRole; it is left untouched",
                    c.secret_name
                ),
            ));
        }
        let note = |k: &str| s.annotations().get(k).cloned();
        let complete = s
            .data
            .as_ref()
            .is_some_and(|d| KEYS.iter().all(|k| d.contains_key(*k)));
        if let (Some(refresh), Some(expire), true, Some(true)) = (
            note(REFRESH_AT).as_deref().and_then(parse_rfc3339),
            s.data
                .as_ref()
                .and_then(|d| d.get("AWS_CREDENTIAL_EXPIRATION"))
                .and_then(|b| String::from_utf8(b.0.clone()).ok()),
            complete,
            note(ROLE_ARN).map(|a| a == role_arn),
        ) && now < refresh
        {
            let wait = (refresh - now).to_std().unwrap_or_default();
            return Ok((expire, wait.max(Duration::from_secs(1))));
        }
    }
    let aws = ctx.aws().await;
    let out = aws
        .call(
            "sts",
            "AssumeRole",
            aws.sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(object_session_name(r))
                .duration_seconds(i32::try_from(d.as_secs()).unwrap_or(3600))
                .send(),
        )
        .await?;
    let Some(creds) = out.credentials else {
        return Err(Error::Waiting {
            field: None,
            reason: Reason::AwsError,
            message: "STS AssumeRole returned no credentials".into(),
        });
    };
    let expires =
        chrono::DateTime::from_timestamp(creds.expiration.secs(), creds.expiration.subsec_nanos())
            .unwrap_or(now);
    let refresh = refresh_at(
        now,
        d,
        crate::controllers::access_key::schedule::time_scale(),
    );
    let expire_text = rfc3339(expires);
    let file = format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
        creds.access_key_id, creds.secret_access_key, creds.session_token
    );
    let data = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID", creds.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
        ("AWS_SESSION_TOKEN", creds.session_token),
        ("AWS_CREDENTIAL_EXPIRATION", expire_text.clone()),
        ("credentials", file),
    ])
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(c.secret_name.clone()),
            namespace: Some(ns),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "iamwright".to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (REFRESH_AT.to_string(), rfc3339(refresh)),
                (ROLE_ARN.to_string(), role_arn.to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: IamRole::api_version(&()).into_owned(),
                kind: IamRole::kind(&()).into_owned(),
                name: r.name_any(),
                uid: r.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    secrets
        .patch(
            &c.secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    ctx.event(
        r,
        false,
        "CredentialsIssued",
        format!(
            "session credentials {} for role {role_arn} written to Secret {}; they expire at {expire_text} and are refreshed at {}",
            creds.access_key_id,
            c.secret_name,
            rfc3339(refresh)
        ),
    )
    .await;
    let wait = (refresh - Utc::now()).to_std().unwrap_or_default();
    Ok((expire_text, wait.max(Duration::from_secs(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(d: Option<&str>) -> RoleCredentials {
        RoleCredentials {
            secret_name: "s".into(),
            duration: d.map(Into::into),
        }
    }

    #[test]
    fn the_duration_is_checked_against_sts_and_the_role() {
        assert_eq!(duration(&creds(None), 3600), Ok(DEFAULT_DURATION));
        assert_eq!(
            duration(&creds(Some("15m")), 3600),
            Ok(Duration::from_secs(900))
        );
        for bad in ["14m", "13h", "x"] {
            let e = duration(&creds(Some(bad)), 43200).unwrap_err();
            assert_eq!(e.field, "spec.credentials.duration", "{e}");
        }
        let e = duration(&creds(Some("2h")), 3600).unwrap_err();
        assert!(e.message.contains("spec.maxSessionDuration"), "{e}");
    }

    #[test]
    fn the_trust_statement_names_the_operator_and_the_session_only() {
        let trust = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}});
        let op = "arn:aws:iam::111122223333:role/iamwright";
        let doc = with_operator_statement(&trust, op, "team-a.app");
        let st = doc["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0], trust["Statement"]);
        assert_eq!(st[1]["Principal"], json!({"AWS": op}));
        assert_eq!(
            st[1]["Condition"],
            json!({"StringEquals": {"sts:RoleSessionName": "team-a.app"}})
        );
        // Idempotent: applied again it replaces itself.
        assert_eq!(with_operator_statement(&doc, op, "team-a.app"), doc);
    }

    #[test]
    fn credentials_are_refreshed_with_a_quarter_left() {
        let t0 = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            refresh_at(t0, Duration::from_secs(3600), 1),
            parse_rfc3339("2026-01-01T00:45:00Z").unwrap()
        );
        assert_eq!(
            refresh_at(t0, Duration::from_secs(900), 60),
            t0 + chrono::Duration::milliseconds(11250)
        );
    }
}
