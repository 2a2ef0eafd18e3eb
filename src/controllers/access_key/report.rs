//! The end of a reconcile: the settled status (phase, next rotation, last use), the
//! Ready message that tells the user where the key is and what comes next, and when
//! to look again.

use chrono::{DateTime, Utc};

use super::console;
use super::decide::settled_phase;
use super::hygiene::key_hygiene;
use super::keys::KeyInfo;
use super::rollouts::{restart, restarts_workloads};
use super::run::Run;
use super::schedule::{ROLLOUT_BOUND, rfc3339};
use super::state::{Rolling, Settled};
use super::user::User;
use crate::api::{ConsoleAccess, IamUserAccessKeyStatus, KeyStatus, REACTIVATE_ANNOTATION};
use crate::controllers::Error;
use crate::controllers::reconciler::Applied;

/// Report the settled key: its status, with the last use read (at most once per
/// resync), and the workloads still on another key rolled.
pub async fn report(
    run: &mut Run<'_>,
    name: &str,
    user: &User,
    console: Option<ConsoleAccess>,
    keys: &[KeyInfo],
    settled: Settled,
) -> Result<Applied<IamUserAccessKeyStatus>, Error> {
    let mut st = settled_status(&run.recorded, name, user, console, keys, &settled);
    key_hygiene(run, &mut st).await?;
    // Roll the consumers still on another key: checked on every reconcile (Kubernetes
    // reads only; patches only stale templates), so a crash or a refused patch right
    // after a delivery is made up for by the next reconcile.
    if restarts_workloads(run.k)
        && settled.rolling.is_none()
        && let Some(id) = &st.access_key_id
    {
        restart(run, name, id).await?;
    }
    let facts = Facts {
        user: run.user(),
        secret: name,
        owned: user.owned,
        hold_previous: run.hold_previous,
    };
    let message = message(&st, &facts, &settled);
    Ok(Applied {
        requeue_after: settled.next.map(|at| requeue(at, Utc::now())),
        ..Applied::synced(st, message)
    })
}

/// The status once settled: what was recorded, with the user, the Secret, the console
/// sign-in, the rotation phase and when the next rotation step is due.
fn settled_status(
    recorded: &IamUserAccessKeyStatus,
    name: &str,
    user: &User,
    console: Option<ConsoleAccess>,
    keys: &[KeyInfo],
    settled: &Settled,
) -> IamUserAccessKeyStatus {
    let mut st = recorded.clone();
    st.console_access = console;
    st.user_arn = Some(user.arn.clone());
    st.secret_name = Some(name.to_string());
    // While rollouts are awaited `next` is only the recheck: the next rotation step
    // (the grace period's start) is due at the bound at the latest.
    st.next_rotation_at = match &settled.rolling {
        Some(Rolling { deadline, .. }) => Some(rfc3339(*deadline)),
        None => settled.next.map(rfc3339),
    };
    let (phase, previous) = settled_phase(&st, keys);
    st.rotation_phase = Some(phase);
    st.previous_key_status = previous;
    if previous.is_none() {
        st.previous_key_last_used_at = None;
    }
    st
}

/// What the message says beside the status.
struct Facts<'a> {
    user: &'a str,
    secret: &'a str,
    /// The user itself is managed by this object.
    owned: bool,
    /// `iamwright.dev/reactivate-previous` is set.
    hold_previous: bool,
}

/// The Ready message: where the key is, then the console, the rollouts and the
/// previous key's next step.
fn message(st: &IamUserAccessKeyStatus, f: &Facts<'_>, settled: &Settled) -> String {
    let id = st.access_key_id.as_deref().unwrap_or_default();
    let mut message = format!(
        "access key {id} of IAM user {} is in Secret {}",
        f.user, f.secret
    );
    if !f.owned {
        message.push_str(" (the user itself is not managed by this object)");
    }
    if st.console_access == Some(ConsoleAccess::Enabled) {
        message.push_str(&format!(
            "; console sign-in enabled, its password in the same Secret ({})",
            console::PASSWORD_KEY
        ));
    }
    let previous = st.previous_key_status;
    if let Some(Rolling { pending, deadline }) = &settled.rolling {
        message.push_str(&format!(
            "; waiting for {} to roll out to it: the previous key's grace period starts when they have, at {} at the latest",
            pending.join(", "),
            rfc3339(*deadline)
        ));
        return message;
    }
    if !st.workloads_not_rolled_out.is_empty() && previous.is_some() {
        message.push_str(&format!(
            "; {} had not rolled out to it within {}s, the grace period started anyway",
            st.workloads_not_rolled_out.join(", "),
            ROLLOUT_BOUND.as_secs()
        ));
    }
    match (&st.previous_access_key_id, previous, settled.next) {
        (Some(prev), Some(KeyStatus::Active), Some(at)) => message.push_str(&format!(
            "; previous key {prev} stays Active until {}, then Inactive",
            rfc3339(at)
        )),
        (Some(prev), Some(KeyStatus::Inactive), Some(at)) => message.push_str(&format!(
            "; previous key {prev} is Inactive and is deleted at {}",
            rfc3339(at)
        )),
        (Some(prev), Some(_), None) if f.hold_previous => message.push_str(&format!(
            "; previous key {prev} is kept Active ({REACTIVATE_ANNOTATION} is set; remove it to let the rotation go on)"
        )),
        _ => {}
    }
    message
}

/// How long until `at` from `now`, at least a second (a step due now is retried soon,
/// not in a busy loop).
fn requeue(at: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    at.signed_duration_since(now)
        .to_std()
        .unwrap_or_default()
        .max(std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::access_key::schedule::parse_rfc3339;

    fn t(s: &str) -> DateTime<Utc> {
        parse_rfc3339(s).unwrap()
    }
    const USER: User = User {
        arn: String::new(),
        owned: true,
    };
    fn key(id: &str, active: bool) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            active,
            created: None,
        }
    }
    fn facts(owned: bool, hold_previous: bool) -> Facts<'static> {
        Facts {
            user: "u",
            secret: "s",
            owned,
            hold_previous,
        }
    }
    fn recorded(previous: Option<&str>) -> IamUserAccessKeyStatus {
        IamUserAccessKeyStatus {
            access_key_id: Some("A".into()),
            previous_access_key_id: previous.map(Into::into),
            previous_key_last_used_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_message_says_where_the_key_is_and_what_comes_next() {
        let alone = settled_status(
            &recorded(None),
            "s",
            &USER,
            None,
            &[key("A", true)],
            &Settled::default(),
        );
        assert_eq!(
            alone.previous_key_last_used_at, None,
            "no previous key, no last use"
        );
        assert_eq!(
            message(&alone, &facts(false, false), &Settled::default()),
            "access key A of IAM user u is in Secret s (the user itself is not managed by this object)"
        );
        let keys = [key("A", true), key("P", true)];
        let grace = Settled {
            next: Some(t("2026-01-01T01:00:00Z")),
            rolling: None,
        };
        let st = settled_status(&recorded(Some("P")), "s", &USER, None, &keys, &grace);
        assert_eq!(st.next_rotation_at.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(
            message(&st, &facts(true, false), &grace),
            "access key A of IAM user u is in Secret s; previous key P stays Active until 2026-01-01T01:00:00Z, then Inactive"
        );
        let held = settled_status(
            &recorded(Some("P")),
            "s",
            &USER,
            None,
            &keys,
            &Settled::default(),
        );
        assert!(
            message(&held, &facts(true, true), &Settled::default())
                .ends_with("; previous key P is kept Active (iamwright.dev/reactivate-previous is set; remove it to let the rotation go on)")
        );
    }

    #[test]
    fn while_rollouts_are_awaited_the_deadline_is_the_next_step() {
        let keys = [key("A", true), key("P", true)];
        let rolling = Settled {
            next: Some(t("2026-01-01T00:00:35Z")),
            rolling: Some(Rolling {
                pending: vec!["Deployment/app".into()],
                deadline: t("2026-01-01T00:10:00Z"),
            }),
        };
        let st = settled_status(&recorded(Some("P")), "s", &USER, None, &keys, &rolling);
        assert_eq!(st.next_rotation_at.as_deref(), Some("2026-01-01T00:10:00Z"));
        assert_eq!(
            message(&st, &facts(true, false), &rolling),
            "access key A of IAM user u is in Secret s; waiting for Deployment/app to roll out to it: the previous key's grace period starts when they have, at 2026-01-01T00:10:00Z at the latest"
        );
        assert_eq!(
            requeue(t("2026-01-01T00:00:35Z"), t("2026-01-01T00:00:30Z")).as_secs(),
            5
        );
        assert_eq!(
            requeue(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:30Z")).as_secs(),
            1,
            "a step overdue is retried in a second"
        );
    }
}
