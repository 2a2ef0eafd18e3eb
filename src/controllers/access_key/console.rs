//! Console sign-in (`spec.console`): the user's login profile, with a password
//! generated to the account's password policy and delivered only into the object's
//! Secret (`AWS_CONSOLE_PASSWORD`, `AWS_CONSOLE_SIGNIN_URL`).
//!
//! AWS never shows a password back, so the Secret is its only copy. Crash safety as for
//! keys: the intent is recorded in the status (`consolePasswordPending`) before any
//! password is set; a reconcile that finds it still set (a crash or a lost answer
//! between setting the password and writing the Secret) sets a new one and delivers
//! it, so no password is ever set that no Secret holds. A Secret that lost its password
//! (deleted, edited) gets a new one the same way; a login profile deleted in AWS is
//! created again. A password the user changed at sign-in (as `passwordResetRequired`
//! asks) cannot be seen and is left alone.

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use rand::Rng;
use rand::seq::SliceRandom;

use super::run::Run;
use super::schedule::rfc3339;
use super::secret::{MANAGED_BY, SecretValue};
use crate::api::{ConsoleAccess, IamUserAccessKey};
use crate::aws::{Aws, AwsError, AwsErrorKind, Found};
use crate::controllers::Error;

pub const PASSWORD_KEY: &str = "AWS_CONSOLE_PASSWORD";
pub const SIGNIN_URL_KEY: &str = "AWS_CONSOLE_SIGNIN_URL";
/// The console fields of the Secret are applied by a field manager of their own, so a
/// key write (which applies the key fields) never removes them, and the other way round.
const MANAGER: &str = "iamwright-console";

/// The symbols IAM accepts in a password (its documented set).
const SYMBOLS: &[u8] = b"!@#$%^&*()_+-=[]{}|'";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
/// Generated passwords are at least this long (IAM allows 128).
const MIN_LENGTH: usize = 24;

/// The account's password policy, as far as a generated password must meet it: its
/// minimum length. The character classes it may require are always all included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
}

/// A password of at least `max(policy.min_length, 24)` characters holding every
/// character class (upper, lower, digit, IAM symbol): it meets any password policy
/// and AWS's default one (three of the four classes) alike. `rng` is the thread's
/// CSPRNG in production.
pub fn generate(policy: &PasswordPolicy, rng: &mut impl Rng) -> SecretValue {
    let length = policy.min_length.clamp(MIN_LENGTH, 128);
    let classes = [UPPER, LOWER, DIGITS, SYMBOLS];
    let mut chars: Vec<u8> = classes
        .iter()
        .map(|c| c[rng.random_range(0..c.len())])
        .collect();
    let all: Vec<u8> = classes.concat();
    while chars.len() < length {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(rng);
    SecretValue::new(String::from_utf8(chars).expect("ASCII"))
}

/// The account's sign-in URL for the partition of `user_arn`.
pub fn signin_url(user_arn: &str) -> String {
    let mut parts = user_arn.split(':');
    let partition = parts.nth(1).unwrap_or("aws");
    let account = parts.nth(2).unwrap_or_default();
    let host = match partition {
        "aws-cn" => "signin.amazonaws.cn",
        "aws-us-gov" => "signin.amazonaws-us-gov.com",
        _ => "signin.aws.amazon.com",
    };
    format!("https://{account}.{host}/console")
}

/// The one step console sign-in needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    InSync,
    /// No login profile: create one with a new password.
    Create,
    /// A login profile whose password no Secret is known to hold (a set interrupted
    /// before delivery, a Secret that lost it): set a new one.
    Reset,
    /// Console access turned off: delete the login profile this object made.
    Delete,
    /// No login profile to remove, but the Secret still shows a password: remove it.
    Clear,
}

/// What console sign-in needs, from what is observed. Pure.
/// `want`: `spec.console.enabled`; `profile`: the user has a login profile;
/// `delivered`: the Secret holds a console password; `pending`: a password set was
/// started and not recorded as delivered; `made`: the status says this object enabled
/// console access (so a profile it did not make is never deleted).
pub fn decide(want: bool, profile: bool, delivered: bool, pending: bool, made: bool) -> Step {
    match (want, profile) {
        (true, false) => Step::Create,
        (true, true) if pending || !delivered => Step::Reset,
        (true, true) => Step::InSync,
        (false, true) if made || pending => Step::Delete,
        (false, _) if delivered => Step::Clear,
        (false, _) => Step::InSync,
    }
}

/// Bring console sign-in to the spec; returns the `status.consoleAccess` to report.
pub async fn sync(
    run: &mut Run<'_>,
    secret: &str,
    user_arn: &str,
) -> Result<Option<ConsoleAccess>, Error> {
    let k = run.k;
    let want = k.spec.console.as_ref().is_some_and(|c| c.enabled);
    let made = run.recorded.console_access == Some(ConsoleAccess::Enabled);
    let pending = run.recorded.console_password_pending.is_some();
    if !want && !made && !pending && run.recorded.console_access.is_none() {
        // Never asked for: no read at all.
        return Ok(None);
    }
    let aws = run.ctx.aws().await;
    let user = run.user().to_string();
    let profile = get_profile(&aws, &user).await?;
    let delivered = delivered(&run.secrets, secret).await?;
    let step = decide(want, profile, delivered, pending, made);
    tracing::debug!(object = %crate::controllers::key_of(k), ?step, "console step");
    match step {
        Step::InSync => {}
        Step::Create | Step::Reset => {
            set_and_deliver(run, &aws, secret, user_arn, step == Step::Create).await?
        }
        Step::Delete | Step::Clear => remove(run, &aws, secret, step == Step::Delete).await?,
    }
    Ok(Some(if want {
        ConsoleAccess::Enabled
    } else {
        ConsoleAccess::Disabled
    }))
}

/// Set a new password (creating the login profile when `create`) and deliver it,
/// recording the intent first: a crash from there on is found by the next reconcile.
async fn set_and_deliver(
    run: &mut Run<'_>,
    aws: &Aws,
    secret: &str,
    user_arn: &str,
    create: bool,
) -> Result<(), Error> {
    let (k, user) = (run.k, run.user().to_string());
    let reset = k
        .spec
        .console
        .as_ref()
        .is_some_and(|c| c.password_reset_required);
    let policy = password_policy(aws).await?;
    let password = generate(&policy, &mut rand::rng());
    run.update(|st| st.console_password_pending = Some(rfc3339(Utc::now())))
        .await?;
    set_password(aws, &user, &password, reset, create).await?;
    super::failpoints::crash_point("after-set-console-password");
    let signin = signin_url(user_arn);
    deliver(&run.secrets, k, secret, Some((&password, &signin))).await?;
    run.update(|st| {
        st.console_password_pending = None;
        st.console_access = Some(ConsoleAccess::Enabled);
    })
    .await?;
    let what = if create {
        "enabled console sign-in"
    } else {
        "set a new console password"
    };
    let note =
        format!("{what} for IAM user {user}; the password is in Secret {secret} ({PASSWORD_KEY})");
    run.event(false, "ConsolePasswordSet", note).await;
    Ok(())
}

/// Take the password out of the Secret, and delete the login profile when `delete`.
async fn remove(run: &mut Run<'_>, aws: &Aws, secret: &str, delete: bool) -> Result<(), Error> {
    let user = run.user().to_string();
    if delete {
        delete_profile(aws, &user).await?;
    }
    deliver(&run.secrets, run.k, secret, None).await?;
    run.update(|st| {
        st.console_password_pending = None;
        st.console_access = Some(ConsoleAccess::Disabled);
    })
    .await?;
    let note = format!("removed console sign-in of IAM user {user}");
    run.event(false, "ConsoleAccessRemoved", note).await;
    Ok(())
}

pub(super) async fn get_profile(aws: &Aws, user: &str) -> Result<bool, AwsError> {
    let call = aws.iam.get_login_profile().user_name(user);
    Ok(aws
        .call("iam", "GetLoginProfile", call.send())
        .await
        .found()?
        .is_some())
}

/// The account's password policy; AWS's default (8 characters) when it has none.
async fn password_policy(aws: &Aws) -> Result<PasswordPolicy, AwsError> {
    let call = aws.iam.get_account_password_policy();
    let Some(out) = aws
        .call("iam", "GetAccountPasswordPolicy", call.send())
        .await
        .found()?
    else {
        return Ok(PasswordPolicy { min_length: 8 });
    };
    let Some(p) = out.password_policy else {
        return Ok(PasswordPolicy { min_length: 8 });
    };
    Ok(PasswordPolicy {
        min_length: p.minimum_password_length.unwrap_or(8).max(0) as usize,
    })
}

/// Create the login profile, or set its password; each falls back to the other when
/// AWS says the profile is there after all (or gone).
async fn set_password(
    aws: &Aws,
    user: &str,
    password: &SecretValue,
    reset: bool,
    create: bool,
) -> Result<(), AwsError> {
    let create_call = || {
        aws.iam
            .create_login_profile()
            .user_name(user)
            .password(password.expose())
            .password_reset_required(reset)
            .send()
    };
    let update_call = || {
        aws.iam
            .update_login_profile()
            .user_name(user)
            .password(password.expose())
            .password_reset_required(reset)
            .send()
    };
    if create {
        match aws.call("iam", "CreateLoginProfile", create_call()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind == AwsErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        aws.call("iam", "UpdateLoginProfile", update_call()).await?;
        return Ok(());
    }
    match aws.call("iam", "UpdateLoginProfile", update_call()).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            aws.call("iam", "CreateLoginProfile", create_call()).await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub async fn delete_profile(aws: &Aws, user: &str) -> Result<(), AwsError> {
    let call = aws.iam.delete_login_profile().user_name(user);
    aws.call("iam", "DeleteLoginProfile", call.send())
        .await
        .found()?;
    Ok(())
}

/// Whether the object's Secret shows a console password.
async fn delivered(secrets: &Api<Secret>, name: &str) -> Result<bool, kube::Error> {
    Ok(secrets
        .get_opt(name)
        .await?
        .and_then(|s| s.data)
        .is_some_and(|d| d.get(PASSWORD_KEY).is_some_and(|v| !v.0.is_empty())))
}

/// Apply the console fields of the Secret (`None`: none), under their own field
/// manager: the key's fields are not touched.
async fn deliver(
    secrets: &Api<Secret>,
    k: &IamUserAccessKey,
    name: &str,
    console: Option<(&SecretValue, &str)>,
) -> Result<(), Error> {
    if console.is_none() && secrets.get_opt(name).await?.is_none() {
        return Ok(());
    }
    let data: BTreeMap<String, ByteString> = match console {
        Some((password, url)) => BTreeMap::from([
            (
                PASSWORD_KEY.to_string(),
                ByteString(password.expose().as_bytes().to_vec()),
            ),
            (
                SIGNIN_URL_KEY.to_string(),
                ByteString(url.as_bytes().to_vec()),
            ),
        ]),
        None => BTreeMap::new(),
    };
    let owner = k.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = Some(true);
        o
    });
    let patch = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": k.namespace(),
                     "labels": {MANAGED_BY.0: MANAGED_BY.1},
                     "ownerReferences": owner.into_iter().collect::<Vec<_>>()},
        "type": "Opaque",
        "data": data,
    });
    secrets
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn classes(p: &str) -> [bool; 4] {
        [
            p.bytes().any(|b| UPPER.contains(&b)),
            p.bytes().any(|b| LOWER.contains(&b)),
            p.bytes().any(|b| DIGITS.contains(&b)),
            p.bytes().any(|b| SYMBOLS.contains(&b)),
        ]
    }

    #[test]
    fn generated_passwords_meet_the_policy_and_differ() {
        let strict = PasswordPolicy { min_length: 40 };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for policy in [
            PasswordPolicy::default(),
            strict,
            PasswordPolicy { min_length: 500 },
        ] {
            for _ in 0..200 {
                let p = generate(&policy, &mut rng);
                let p = p.expose();
                assert!(
                    p.len() >= policy.min_length.min(128)
                        && p.len() >= MIN_LENGTH
                        && p.len() <= 128,
                    "{}",
                    p.len()
                );
                assert_eq!(classes(p), [true; 4], "every class");
                assert!(p.bytes().all(|b| UPPER.contains(&b)
                    || LOWER.contains(&b)
                    || DIGITS.contains(&b)
                    || SYMBOLS.contains(&b)));
                seen.insert(p.to_string());
            }
        }
        assert_eq!(seen.len(), 600, "no password twice");
    }

    #[test]
    fn a_password_never_prints() {
        let p = generate(&PasswordPolicy::default(), &mut rand::rng());
        assert!(!format!("{p:?}").contains(p.expose()));
    }

    #[test]
    fn the_signin_url_follows_the_partition() {
        assert_eq!(
            signin_url("arn:aws:iam::123456789012:user/a"),
            "https://123456789012.signin.aws.amazon.com/console"
        );
        assert_eq!(
            signin_url("arn:aws-cn:iam::123456789012:user/a"),
            "https://123456789012.signin.amazonaws.cn/console"
        );
        assert_eq!(
            signin_url("arn:aws-us-gov:iam::1:user/p/a"),
            "https://1.signin.amazonaws-us-gov.com/console"
        );
    }

    #[test]
    fn every_console_step() {
        use Step::*;
        // want, profile, delivered, pending, made
        assert_eq!(decide(true, false, false, false, false), Create);
        // Deleted in AWS: created again (the Secret's old password is replaced).
        assert_eq!(decide(true, false, true, false, true), Create);
        assert_eq!(decide(true, true, true, false, true), InSync);
        // Set and never delivered (crash, lost answer): reset, not left unknown.
        assert_eq!(decide(true, true, true, true, true), Reset);
        assert_eq!(decide(true, true, false, false, true), Reset);
        // A profile someone else made, taken over when the spec asks for console access.
        assert_eq!(decide(true, true, false, false, false), Reset);
        // Turned off: only a profile this object made (or was making) is deleted.
        assert_eq!(decide(false, true, true, false, true), Delete);
        assert_eq!(decide(false, true, false, true, false), Delete);
        assert_eq!(decide(false, true, false, false, false), InSync);
        assert_eq!(decide(false, false, true, false, true), Clear);
        assert_eq!(decide(false, false, false, false, true), InSync);
    }
}
