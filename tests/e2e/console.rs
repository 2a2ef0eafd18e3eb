//! Console sign-in end to end: the login profile in moto, the password (generated to
//! the account's password policy) only in the Secret, recreated when deleted in AWS,
//! removed when turned off; crash and lost-answer safety of the password path; the
//! password never in logs, events, status or metrics.

use std::collections::BTreeSet;

use iamwright::api::{ConsoleAccess, IamUserAccessKey};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::harness::*;
use crate::role::{T, ready};

fn key_manifest(name: &str, spec: Value) -> String {
    json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamUserAccessKey",
           "metadata": {"name": name}, "spec": spec})
    .to_string()
}

/// (password, sign-in URL, access key id) as the Secret holds them.
async fn console_values(
    ns: &str,
    name: &str,
) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let s: Secret = get(ns, name).await?;
    let d = s.data.unwrap_or_default();
    let text = |k: &str| d.get(k).map(|b| String::from_utf8(b.0.clone()).unwrap());
    Some((
        text("AWS_CONSOLE_PASSWORD"),
        text("AWS_CONSOLE_SIGNIN_URL"),
        text("AWS_ACCESS_KEY_ID"),
    ))
}

/// The user's login profile: Some(password reset required) when it exists.
async fn login_profile(user: &str) -> Option<bool> {
    match iam().await.get_login_profile().user_name(user).send().await {
        Ok(out) => Some(out.login_profile.unwrap().password_reset_required),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetLoginProfile: {e:?}"),
    }
}

fn classes(p: &str) -> [bool; 4] {
    [
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| "!@#$%^&*()_+-=[]{}|'".contains(c)),
    ]
}

/// Delivered, recreated, removed; every password it held never appears elsewhere.
#[tokio::test]
async fn a_console_password_is_delivered_recreated_when_deleted_in_aws_and_removed() {
    let ns = Namespace::new("console").await;
    // The account's policy asks for 32 characters: the generated password follows it.
    iam()
        .await
        .update_account_password_policy()
        .minimum_password_length(32)
        .require_symbols(true)
        .require_numbers(true)
        .require_uppercase_characters(true)
        .require_lowercase_characters(true)
        .send()
        .await
        .unwrap();
    let op = Operator::start_with_env(&ns.name, &[], &[("RUST_LOG", "trace")]).await;
    let user = format!("{}-alice", ns.name);
    let spec =
        json!({"userName": user, "console": {"enabled": true, "passwordResetRequired": true}});
    apply(&ns.name, &key_manifest("alice", spec));
    let k: IamUserAccessKey = ready(&ns.name, "alice").await;
    let st = k.status.unwrap();
    assert_eq!(st.console_access, Some(ConsoleAccess::Enabled));
    assert!(st.console_password_pending.is_none());
    let (password, url, id) = console_values(&ns.name, "alice").await.unwrap();
    let first = password.expect("AWS_CONSOLE_PASSWORD in the Secret");
    assert!(first.len() >= 32, "{} characters", first.len());
    assert_eq!(classes(&first), [true; 4]);
    assert_eq!(
        url.as_deref(),
        Some("https://123456789012.signin.aws.amazon.com/console")
    );
    assert_eq!(id, st.access_key_id, "the key's fields are still there");
    // The login profile exists (moto keeps PasswordResetRequired only from
    // UpdateLoginProfile: the crash test below proves the flag is sent).
    assert!(login_profile(&user).await.is_some());
    assert_eq!(
        op.aws_requests(|o, _| o == "GetAccountPasswordPolicy")
            .await,
        1
    );
    let mut seen = BTreeSet::from([first.clone()]);
    // In sync: one GetLoginProfile per resync, no write, the status not rewritten.
    assert_eq!(
        op.writes_across_resyncs("GetLoginProfile", 2).await,
        0,
        "console sign-in in sync caused AWS writes"
    );
    let later: IamUserAccessKey = get(&ns.name, "alice").await.unwrap();
    assert_eq!(later.metadata.resource_version, k.metadata.resource_version);

    // Deleted in AWS: a new login profile, a new password in the Secret.
    iam()
        .await
        .delete_login_profile()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    let second = eventually(T, "a new password delivered", || async {
        let (p, ..) = console_values(&ns.name, "alice").await?;
        p.filter(|p| *p != first)
    })
    .await;
    assert!(
        login_profile(&user).await.is_some(),
        "login profile created again"
    );
    assert_eq!(
        op.aws_requests(|o, outcome| o == "CreateLoginProfile" && outcome == "success")
            .await,
        2
    );
    seen.insert(second);

    // Turned off: the profile goes, so do the Secret's console fields (not the key's).
    let spec = json!({"userName": user, "console": {"enabled": false}});
    apply(&ns.name, &key_manifest("alice", spec));
    let k: IamUserAccessKey = ready(&ns.name, "alice").await;
    assert_eq!(
        k.status.as_ref().unwrap().console_access,
        Some(ConsoleAccess::Disabled)
    );
    assert_eq!(login_profile(&user).await, None);
    let (password, url, id) = console_values(&ns.name, "alice").await.unwrap();
    assert_eq!((password, url), (None, None));
    assert_eq!(id, k.status.unwrap().access_key_id);
    let events = events_for(&ns.name, "alice").await;
    for reason in ["ConsolePasswordSet", "ConsoleAccessRemoved"] {
        assert!(
            events.iter().any(|(r, _)| r == reason),
            "{reason}: {events:?}"
        );
    }

    // The passwords were only ever in the Secret.
    let log = op.log();
    assert!(log.contains("TRACE"), "the operator ran at trace level");
    let (_, events, _) = kubectl(&["get", "events", "-n", &ns.name, "-o", "json"], None);
    let (_, object, _) = kubectl(
        &["get", "iamkey", "alice", "-n", &ns.name, "-o", "json"],
        None,
    );
    let metrics = op.metrics().await;
    for p in &seen {
        for (what, text) in [
            ("operator log", &log),
            ("events", &events),
            ("object", &object),
            ("metrics", &metrics),
        ] {
            assert!(
                !text.contains(p.as_str()),
                "a console password appears in the {what}"
            );
        }
    }
}

/// A crash after the password was set and before the Secret held it: the next
/// operator finds the recorded intent and sets (and delivers) a new password rather
/// than leave one set that nobody knows.
#[tokio::test]
async fn a_crash_after_setting_the_console_password_resets_it() {
    let ns = Namespace::new("console-crash").await;
    let user = format!("{}-bob", ns.name);
    let mut op = Operator::start_with_env(
        &ns.name,
        &[],
        &[("IAMWRIGHT_FAILPOINT", "after-set-console-password")],
    )
    .await;
    apply(
        &ns.name,
        &key_manifest(
            "bob",
            json!({"userName": user, "console": {"enabled": true, "passwordResetRequired": true}}),
        ),
    );
    let exit = op
        .wait_exit(T)
        .await
        .expect("the operator exits at the failpoint");
    assert_eq!(exit.code(), Some(3), "{}", op.log());
    // The password is set in AWS, no Secret holds it, and the intent was recorded.
    assert!(
        login_profile(&user).await.is_some(),
        "the login profile was made"
    );
    let (password, ..) = console_values(&ns.name, "bob")
        .await
        .expect("the key's Secret");
    assert_eq!(password, None);
    let k: IamUserAccessKey = get(&ns.name, "bob").await.unwrap();
    assert!(k.status.unwrap().console_password_pending.is_some());

    let op = Operator::start(&ns.name, &[]).await;
    let k: IamUserAccessKey = ready(&ns.name, "bob").await;
    let st = k.status.unwrap();
    assert!(st.console_password_pending.is_none());
    assert_eq!(st.console_access, Some(ConsoleAccess::Enabled));
    let (password, ..) = console_values(&ns.name, "bob").await.unwrap();
    assert!(password.is_some_and(|p| p.len() >= 24));
    // The spec's passwordResetRequired went with the new password.
    assert_eq!(login_profile(&user).await, Some(true));
    // Reset, not created again: the profile the crashed operator made got a new password.
    assert_eq!(
        op.aws_requests(|o, outcome| o == "UpdateLoginProfile" && outcome == "success")
            .await,
        1
    );
    assert_eq!(op.aws_requests(|o, _| o == "CreateLoginProfile").await, 0);
}

/// Every CreateLoginProfile answer lost after AWS made the profile: the object still
/// ends with a password AWS has and the Secret holds (set again with UpdateLoginProfile).
#[tokio::test]
async fn a_lost_console_password_answer_is_set_again_and_delivered() {
    let ns = Namespace::new("console-lost").await;
    let proxy = FaultProxy::start().await;
    proxy
        .set_rules(json!([
            {"operations": ["CreateLoginProfile"], "fault": "lost", "probability": 1.0},
        ]))
        .await;
    let (k, v) = proxy.operator_env();
    let op = Operator::start_with_env(&ns.name, &[], &[(k, &v)]).await;
    let user = format!("{}-carol", ns.name);
    apply(
        &ns.name,
        &key_manifest(
            "carol",
            json!({"userName": user, "console": {"enabled": true}}),
        ),
    );
    let k: IamUserAccessKey = ready(&ns.name, "carol").await;
    assert_eq!(
        k.status.unwrap().console_access,
        Some(ConsoleAccess::Enabled)
    );
    assert!(proxy.count("CreateLoginProfile", "lost").await >= 1);
    assert!(login_profile(&user).await.is_some());
    let (password, ..) = console_values(&ns.name, "carol").await.unwrap();
    assert!(password.is_some());
    // The password in the Secret is one a successful call set.
    assert!(
        op.aws_requests(|o, outcome| o == "UpdateLoginProfile" && outcome == "success")
            .await
            >= 1,
        "no password was set with an answer"
    );
}
