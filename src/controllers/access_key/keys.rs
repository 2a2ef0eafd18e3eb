//! The user's access keys in AWS: listing, creating (the one place a secret enters the
//! process), deactivating and deleting, and recognising the orphan of an interrupted
//! create.

use chrono::{DateTime, Utc};

use super::schedule::parse_rfc3339;
use super::secret::{KeyMaterial, SecretValue};
use crate::api::{KeyStatus, PendingKey};
use crate::aws::{Aws, AwsError};
use crate::controllers::Error;
use crate::reason::Reason;

/// An access key as ListAccessKeys shows it (no secret: AWS never shows it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub active: bool,
    pub created: Option<DateTime<Utc>>,
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

pub async fn list(aws: &Aws, user: &str) -> Result<Vec<KeyInfo>, AwsError> {
    let out = aws
        .call(
            "iam",
            "ListAccessKeys",
            aws.iam.list_access_keys().user_name(user).send(),
        )
        .await?;
    Ok(out
        .access_key_metadata()
        .iter()
        .filter_map(|m| {
            Some(KeyInfo {
                id: m.access_key_id()?.to_string(),
                active: m.status() != Some(&aws_sdk_iam::types::StatusType::Inactive),
                created: to_chrono(m.create_date()),
            })
        })
        .collect())
}

/// Create a key. The SDK output is taken apart at once: the secret goes into a
/// [`SecretValue`] and nothing else of the output is kept or printed.
pub async fn create(aws: &Aws, user: &str) -> Result<(KeyMaterial, DateTime<Utc>), AwsError> {
    let out = aws
        .call(
            "iam",
            "CreateAccessKey",
            aws.iam
                .create_access_key()
                .user_name(user)
                .customize()
                .config_override(crate::aws::no_retries())
                .send(),
        )
        .await?;
    let missing = || AwsError {
        kind: crate::aws::AwsErrorKind::Other,
        operation: "CreateAccessKey",
        code: "IncompleteResponse".into(),
        message: "AWS returned no access key".into(),
    };
    let key = out.access_key.ok_or_else(missing)?;
    let created = to_chrono(key.create_date.as_ref()).unwrap_or_else(Utc::now);
    Ok((
        KeyMaterial {
            id: key.access_key_id,
            secret: SecretValue::new(key.secret_access_key),
        },
        created,
    ))
}

pub async fn set_status(
    aws: &Aws,
    user: &str,
    id: &str,
    status: KeyStatus,
) -> Result<(), AwsError> {
    let s = match status {
        KeyStatus::Active => aws_sdk_iam::types::StatusType::Active,
        KeyStatus::Inactive => aws_sdk_iam::types::StatusType::Inactive,
    };
    aws.call(
        "iam",
        "UpdateAccessKey",
        aws.iam
            .update_access_key()
            .user_name(user)
            .access_key_id(id)
            .status(s)
            .send(),
    )
    .await?;
    Ok(())
}

/// When and with which service the key was last used (None: never).
pub async fn last_used(aws: &Aws, id: &str) -> Result<Option<(DateTime<Utc>, String)>, AwsError> {
    let out = aws
        .call(
            "iam",
            "GetAccessKeyLastUsed",
            aws.iam.get_access_key_last_used().access_key_id(id).send(),
        )
        .await?;
    Ok(out.access_key_last_used.and_then(|u| {
        let at = to_chrono(u.last_used_date.as_ref())?;
        Some((at, u.service_name))
    }))
}

/// The ARN STS reports for a request signed with `key` itself.
pub async fn caller_arn(aws: &Aws, key: &KeyMaterial) -> Result<String, AwsError> {
    aws.caller_arn_as(&key.id, key.secret.expose()).await
}

/// Whether GetCallerIdentity's answer `caller` is the IAM user `user_arn`: the same
/// account and user name (the user's path may or may not be shown).
pub fn is_user(caller: &str, user_arn: &str) -> bool {
    if caller == user_arn {
        return true;
    }
    let parts = |arn: &str| -> Option<(String, String)> {
        let f: Vec<&str> = arn.splitn(6, ':').collect();
        let resource = f.get(5)?.strip_prefix("user/")?;
        Some((
            f.get(4)?.to_string(),
            resource.rsplit('/').next()?.to_string(),
        ))
    };
    matches!((parts(caller), parts(user_arn)), (Some(a), Some(b)) if a == b && !a.1.is_empty())
}

/// Delete a key; one already gone counts as deleted.
pub async fn delete(aws: &Aws, user: &str, id: &str) -> Result<(), AwsError> {
    match aws
        .call(
            "iam",
            "DeleteAccessKey",
            aws.iam
                .delete_access_key()
                .user_name(user)
                .access_key_id(id)
                .send(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// How far a key's AWS creation time may lie from the recorded start of the create
/// (clock skew between the operator and AWS, and the call's own duration). A key
/// created outside this window is someone else's, however long the operator was down.
const ORPHAN_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Whether `key` is the product of the create `pending` recorded: it was not there
/// before, AWS created it around the recorded start, and no Secret holds it.
pub fn is_orphan(pending: &PendingKey, key: &KeyInfo, in_secret: Option<&str>) -> bool {
    if pending.keys_before.contains(&key.id) || in_secret == Some(key.id.as_str()) {
        return false;
    }
    // AWS answered and the answer was recorded: that key and no other.
    if let Some(created) = &pending.created_key_id {
        return *created == key.id;
    }
    match (parse_rfc3339(&pending.started_at), key.created) {
        (Some(start), Some(created)) => {
            created >= start - ORPHAN_WINDOW && created <= start + ORPHAN_WINDOW
        }
        // Without both times the window cannot be checked; the key set alone decides.
        _ => true,
    }
}

/// AWS's two-key limit, reached with `foreign` keys this object does not manage.
pub fn limit_exceeded(user: &str, foreign: &[impl AsRef<str>]) -> Error {
    let foreign: Vec<&str> = foreign.iter().map(AsRef::as_ref).collect();
    Error::stalled(
        Reason::LimitExceeded,
        format!(
            "IAM user {user} already has 2 access keys, the AWS limit; keys not managed by this object: {}. Delete one to let iamwright create its key",
            foreign.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_new_timely_and_unheld() {
        let pending = PendingKey {
            started_at: "2026-01-01T00:00:00Z".into(),
            keys_before: vec!["OLD".into()],
            created_key_id: None,
            rotate_request: None,
        };
        let key = |id: &str, at: &str| KeyInfo {
            id: id.into(),
            active: true,
            created: parse_rfc3339(at),
        };
        assert!(is_orphan(
            &pending,
            &key("NEW", "2026-01-01T00:00:01Z"),
            None
        ));
        assert!(!is_orphan(
            &pending,
            &key("OLD", "2026-01-01T00:00:01Z"),
            None
        ));
        assert!(!is_orphan(
            &pending,
            &key("NEW", "2026-01-01T00:00:01Z"),
            Some("NEW")
        ));
        assert!(!is_orphan(
            &pending,
            &key("LATER", "2026-01-01T01:00:00Z"),
            None
        ));
    }

    #[test]
    fn the_verified_caller_must_be_the_user() {
        let user = "arn:aws:iam::123456789012:user/team/app";
        assert!(is_user(user, user));
        assert!(is_user("arn:aws:iam::123456789012:user/app", user));
        // Another account, another user, or a role session is not the key's user.
        assert!(!is_user("arn:aws:iam::210987654321:user/app", user));
        assert!(!is_user("arn:aws:iam::123456789012:user/other", user));
        assert!(!is_user(
            "arn:aws:sts::123456789012:assumed-role/app/s",
            user
        ));
        assert!(!is_user("", user));
    }

    #[test]
    fn a_recorded_create_names_its_orphan_exactly() {
        let pending = PendingKey {
            started_at: "2026-01-01T00:00:00Z".into(),
            keys_before: vec![],
            created_key_id: Some("MINE".into()),
            rotate_request: None,
        };
        let at = parse_rfc3339("2026-01-01T00:00:01Z");
        let key = |id: &str| KeyInfo {
            id: id.into(),
            active: true,
            created: at,
        };
        assert!(is_orphan(&pending, &key("MINE"), None));
        // Another object's key made on the same user at the same moment is not ours.
        assert!(!is_orphan(&pending, &key("OTHER"), None));
        assert!(!is_orphan(&pending, &key("MINE"), Some("MINE")));
    }
}
