//! The access-key state machine, without I/O: from what is observed now (the status
//! as last recorded, the user's keys in AWS, what the Secret holds) to the one next
//! step. The reconcile applies a step, updates what it observed, and asks again until
//! the answer is `Done`, so every crash window is a state this function is given on
//! the next reconcile — and each is a row in the tests below.

use chrono::{DateTime, Utc};

use super::keys::{KeyInfo, is_orphan};
use super::schedule::{Previous, Schedule, Step as Due, next_step_from, parse_rfc3339};
use crate::api::{IamUserAccessKeyStatus, KeyStatus, PendingKey, RotationPhase};

/// What the Secret named by the spec holds now (ids only: the decision never needs
/// the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretView {
    Missing,
    Ours {
        /// The key id, when id, secret and fingerprint agree (else it was edited).
        held: Option<String>,
        /// The `AWS_ACCESS_KEY_ID` it shows, edited or not.
        shown: Option<String>,
        /// Nothing to rewrite for the held key.
        up_to_date: bool,
    },
}

impl SecretView {
    fn held(&self) -> Option<&str> {
        match self {
            SecretView::Ours { held, .. } => held.as_deref(),
            SecretView::Missing => None,
        }
    }
    fn shown(&self) -> Option<&str> {
        match self {
            SecretView::Ours { shown, .. } => shown.as_deref(),
            SecretView::Missing => None,
        }
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct View<'a> {
    pub recorded: &'a IamUserAccessKeyStatus,
    pub keys: &'a [KeyInfo],
    pub secret: &'a SecretView,
    /// The Secret name the spec asks for.
    pub secret_name: &'a str,
    pub want_active: bool,
    pub schedule: Option<Schedule>,
    pub now: DateTime<Utc>,
    /// The annotation `iamwright.dev/rotate`, if set.
    pub rotate_request: Option<&'a str>,
    /// The annotation `iamwright.dev/reactivate-previous` is set.
    pub hold_previous: bool,
}

/// Why a new key is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The object has no key yet.
    First,
    /// `spec.secretName` changed: the new Secret gets a new key, the old Secret goes.
    Moved { from: String },
    /// The Secret or the key was lost or edited: the stale key goes at once.
    Heal { stale: Option<String> },
    /// The current key reached its age: the old one stays for the grace period.
    Rotate { current: String },
    /// A new value of `iamwright.dev/rotate`: rotate now (an older previous key still
    /// there is deleted first, to make room).
    Requested { current: String, value: String },
}

/// The decision's answer: one action to take before asking again, or where the key
/// has settled for this reconcile. Two types, so that applying an action can never be
/// handed an outcome (and needs no arm for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Act(Action),
    Settle(Outcome),
}

/// A change to AWS, the Secret or the status, after which the decision is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An interrupted create left keys that no Secret holds: delete them.
    DeleteOrphans(Vec<String>),
    /// Close the interrupted create's record. A key the Secret received before the
    /// crash becomes current, and the key it replaced retires.
    CloseCreate {
        delivered: Option<String>,
        retiring: Option<String>,
    },
    /// The Secret holds the current key but renders it differently (profile, label).
    Rerender,
    /// The status was lost but the Secret holds a live key: it is current again.
    TakeBack { id: String },
    /// Make a key and deliver it, after deleting `free` (ours, to make room).
    Create {
        why: Why,
        free: Vec<String>,
        retiring: Option<String>,
    },
    /// The previous key is no longer in AWS: forget it.
    ForgetPrevious,
    /// The grace period is over: set the previous key Inactive.
    Deactivate { id: String },
    /// `iamwright.dev/reactivate-previous`: set the Inactive previous key Active again.
    Reactivate { id: String },
    /// Deactivate (if still Active) and delete the previous key.
    Retire { id: String },
    /// Set the current key's status to the spec's.
    SetKeyStatus { id: String, active: bool },
}

/// Where the key rests: nothing more to do in AWS in this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// AWS's two-key limit is reached by keys this object does not manage.
    LimitExceeded { foreign: Vec<String> },
    /// `restartWorkloads`: the new key is delivered and the workloads' rollouts are
    /// awaited (since `since`) before the previous key's grace period starts.
    AwaitRollouts { since: DateTime<Utc> },
    /// In sync; look again at `next` (a rotation step), if any.
    Done { next: Option<DateTime<Utc>> },
}

impl From<Action> for Step {
    fn from(a: Action) -> Self {
        Step::Act(a)
    }
}

impl From<Outcome> for Step {
    fn from(o: Outcome) -> Self {
        Step::Settle(o)
    }
}

fn live<'a>(keys: &[KeyInfo], id: Option<&'a String>) -> Option<&'a String> {
    id.filter(|i| keys.iter().any(|k| &k.id == *i))
}

/// The next step for `v`: an interrupted create first, then the current key and its
/// Secret, then the previous key, the key status and the rotation schedule.
pub fn decide(v: &View<'_>) -> Step {
    if let Some(pending) = &v.recorded.pending_key {
        return recover_create(v, pending).into();
    }
    let current = live(v.keys, v.recorded.access_key_id.as_ref()).cloned();
    if let Some(step) = place_key(v, current.as_ref()) {
        return step;
    }
    // place_key answers unless the current key is live and in the Secret.
    let current = current.expect("in sync with a current key");
    if let Some(action) = bookkeeping(v, &current) {
        return action.into();
    }
    rotation(v, current)
}

/// An interrupted create: its orphan first, then its record.
fn recover_create(v: &View<'_>, pending: &PendingKey) -> Action {
    let (st, keys) = (v.recorded, v.keys);
    let orphans: Vec<String> = keys
        .iter()
        .filter(|k| is_orphan(pending, k, v.secret.shown()))
        .map(|k| k.id.clone())
        .collect();
    if !orphans.is_empty() {
        return Action::DeleteOrphans(orphans);
    }
    let delivered = v.secret.held().filter(|h| {
        !pending.keys_before.iter().any(|b| b == h)
            && st.access_key_id.as_deref() != Some(*h)
            && keys.iter().any(|k| k.id == *h)
    });
    // AWS allows two keys: at most one of the old current and old previous can
    // still be there beside the delivered one, and that one retires.
    let retiring = delivered.and_then(|_| {
        live(keys, st.access_key_id.as_ref())
            .or_else(|| live(keys, st.previous_access_key_id.as_ref()))
            .cloned()
    });
    Action::CloseCreate {
        delivered: delivered.map(str::to_string),
        retiring,
    }
}

/// The current key and its Secret: None when the Secret (the spec's) holds the live
/// current key as it should be rendered.
fn place_key(v: &View<'_>, current: Option<&String>) -> Option<Step> {
    let (st, keys) = (v.recorded, v.keys);
    let held = v.secret.held();
    let in_place = st.secret_name.as_deref() == Some(v.secret_name);
    if current.is_some() && held == current.map(String::as_str) && in_place {
        let stale = matches!(
            v.secret,
            SecretView::Ours {
                up_to_date: false,
                ..
            }
        );
        return stale.then_some(Action::Rerender.into());
    }
    if st.access_key_id.is_none()
        && let Some(h) = held.filter(|h| keys.iter().any(|k| k.id == *h))
    {
        return Some(Action::TakeBack { id: h.to_string() }.into());
    }
    let why = match (&st.access_key_id, &st.secret_name) {
        (None, _) => Why::First,
        (Some(_), Some(old)) if old != v.secret_name => Why::Moved { from: old.clone() },
        _ => Why::Heal {
            stale: current.cloned(),
        },
    };
    let mut free: Vec<String> = live(keys, st.previous_access_key_id.as_ref())
        .into_iter()
        .cloned()
        .collect();
    // The replaced key (healed, or in a moved Secret) retires at once: the Secret
    // that held it is gone, edited or about to go.
    free.extend(current.cloned());
    Some(create_or_limit(keys, why, free, current.cloned()))
}

/// The previous key gone from AWS, or the current key's status off the spec's.
fn bookkeeping(v: &View<'_>, current: &str) -> Option<Action> {
    let st = v.recorded;
    if st.previous_access_key_id.is_some()
        && live(v.keys, st.previous_access_key_id.as_ref()).is_none()
    {
        return Some(Action::ForgetPrevious);
    }
    let info = v.keys.iter().find(|k| k.id == current)?;
    (info.active != v.want_active).then(|| Action::SetKeyStatus {
        id: current.to_string(),
        active: v.want_active,
    })
}

/// What the rotation asks for: a requested rotation, the rollouts' wait, else the
/// schedule's step.
fn rotation(v: &View<'_>, current: String) -> Step {
    let (st, keys) = (v.recorded, v.keys);
    let created = st
        .key_created_at
        .as_deref()
        .and_then(parse_rfc3339)
        .or(keys
            .iter()
            .find(|k| k.id == current)
            .and_then(|k| k.created))
        .unwrap_or(v.now);
    let previous_id = live(keys, st.previous_access_key_id.as_ref());
    let previous = previous_id
        .and_then(|p| keys.iter().find(|k| &k.id == p))
        .map(|k| Previous {
            active: k.active,
            held: v.hold_previous,
        });
    // A new rotate request (not while the user holds the previous key).
    if let Some(value) = v.rotate_request
        && st.rotate_request.as_deref() != Some(value)
        && !previous.is_some_and(|p| p.held)
    {
        let why = Why::Requested {
            current: current.clone(),
            value: value.to_string(),
        };
        return create_or_limit(
            keys,
            why,
            previous_id.cloned().into_iter().collect(),
            Some(current),
        );
    }
    // The previous key's grace period waits for the workloads' rollouts (not while
    // the user holds it: then nothing is due anyway).
    if let Some(since) = awaiting_rollouts(st)
        && previous.is_some_and(|p| p.active && !p.held)
    {
        return Outcome::AwaitRollouts { since }.into();
    }
    let grace_from = st
        .grace_started_at
        .as_deref()
        .and_then(parse_rfc3339)
        .unwrap_or(created);
    let prev_id = || st.previous_access_key_id.clone().expect("a previous key");
    match next_step_from(v.schedule, created, grace_from, previous, v.now) {
        Due::Wait { next } => Outcome::Done { next }.into(),
        Due::Deactivate => Action::Deactivate { id: prev_id() }.into(),
        Due::Reactivate => Action::Reactivate { id: prev_id() }.into(),
        Due::Retire => Action::Retire { id: prev_id() }.into(),
        Due::Rotate => {
            let why = Why::Rotate {
                current: current.clone(),
            };
            create_or_limit(keys, why, vec![], Some(current))
        }
    }
}

/// The rotation phase and the previous key's state once settled (no create under way).
pub fn settled_phase(
    recorded: &IamUserAccessKeyStatus,
    keys: &[KeyInfo],
) -> (RotationPhase, Option<KeyStatus>) {
    let previous = live(keys, recorded.previous_access_key_id.as_ref())
        .and_then(|p| keys.iter().find(|k| &k.id == p));
    match previous {
        None => (RotationPhase::Stable, None),
        Some(k) if k.active && awaiting_rollouts(recorded).is_some() => {
            (RotationPhase::RestartingWorkloads, Some(KeyStatus::Active))
        }
        Some(k) if k.active => (RotationPhase::Grace, Some(KeyStatus::Active)),
        Some(_) => (RotationPhase::Deactivated, Some(KeyStatus::Inactive)),
    }
}

/// When the rollouts began to be awaited, while the grace period has not started.
pub fn awaiting_rollouts(st: &IamUserAccessKeyStatus) -> Option<DateTime<Utc>> {
    if st.grace_started_at.is_some() {
        return None;
    }
    st.rollouts_awaited_since.as_deref().and_then(parse_rfc3339)
}

/// Record a delivered key that replaces another (in `st`, with its previous key set):
/// with `restart_workloads` its grace period waits for the rollouts from `now`;
/// without, it counts from the key's creation, as recorded.
pub fn mark_delivered(
    st: &mut IamUserAccessKeyStatus,
    restart_workloads: bool,
    now: DateTime<Utc>,
) {
    st.grace_started_at = None;
    st.workloads_not_rolled_out = vec![];
    st.rollouts_awaited_since = (restart_workloads && st.previous_access_key_id.is_some())
        .then(|| super::schedule::rfc3339(now));
}

/// Create, unless the keys that would remain after freeing ours are already two.
fn create_or_limit(
    keys: &[KeyInfo],
    why: Why,
    free: Vec<String>,
    retiring: Option<String>,
) -> Step {
    let remaining = keys.iter().filter(|k| !free.contains(&k.id)).count();
    if remaining >= 2 {
        let ours: Vec<&String> = free.iter().chain(retiring.iter()).collect();
        let foreign = keys
            .iter()
            .filter(|k| !ours.contains(&&k.id))
            .map(|k| k.id.clone())
            .collect();
        return Outcome::LimitExceeded { foreign }.into();
    }
    Action::Create {
        why,
        free,
        retiring,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        parse_rfc3339(s).unwrap()
    }
    const T0: &str = "2026-01-01T00:00:00Z";

    fn key(id: &str, active: bool) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            active,
            created: Some(t(T0)),
        }
    }
    fn ours(held: Option<&str>, up_to_date: bool) -> SecretView {
        SecretView::Ours {
            held: held.map(Into::into),
            shown: held.map(Into::into),
            up_to_date,
        }
    }
    fn status(current: Option<&str>, previous: Option<&str>) -> IamUserAccessKeyStatus {
        IamUserAccessKeyStatus {
            access_key_id: current.map(Into::into),
            previous_access_key_id: previous.map(Into::into),
            secret_name: current.map(|_| "s".into()),
            key_created_at: current.map(|_| T0.into()),
            ..Default::default()
        }
    }
    fn pending(before: &[&str], created: Option<&str>) -> Option<PendingKey> {
        Some(PendingKey {
            started_at: T0.into(),
            keys_before: before.iter().map(|s| s.to_string()).collect(),
            created_key_id: created.map(Into::into),
            rotate_request: None,
        })
    }
    fn decide_at(
        st: &IamUserAccessKeyStatus,
        keys: &[KeyInfo],
        secret: &SecretView,
        schedule: Option<Schedule>,
        now: &str,
    ) -> Step {
        decide(&View {
            recorded: st,
            keys,
            secret,
            secret_name: "s",
            want_active: true,
            schedule,
            now: t(now),
            rotate_request: None,
            hold_previous: false,
        })
    }
    fn rotation() -> Option<Schedule> {
        Some(Schedule {
            every: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
            deactivated: Duration::from_secs(600),
        })
    }

    /// One row per state the process can be in when a reconcile starts — including
    /// every moment a SIGKILL or a lost AWS answer can leave behind.
    #[test]
    fn every_crash_window_has_its_next_step() {
        let none = SecretView::Missing;
        let rows: Vec<(&str, IamUserAccessKeyStatus, Vec<KeyInfo>, SecretView, Step)> = vec![
            (
                "new object",
                status(None, None),
                vec![],
                none.clone(),
                Step::Act(Action::Create {
                    why: Why::First,
                    free: vec![],
                    retiring: None,
                }),
            ),
            (
                "in sync",
                status(Some("A"), None),
                vec![key("A", true)],
                ours(Some("A"), true),
                Step::Settle(Outcome::Done { next: None }),
            ),
            (
                "crash after pendingKey, before CreateAccessKey",
                IamUserAccessKeyStatus {
                    pending_key: pending(&[], None),
                    ..status(None, None)
                },
                vec![],
                none.clone(),
                Step::Act(Action::CloseCreate {
                    delivered: None,
                    retiring: None,
                }),
            ),
            (
                "create answer lost (no id recorded): the new key is the orphan",
                IamUserAccessKeyStatus {
                    pending_key: pending(&[], None),
                    ..status(None, None)
                },
                vec![key("X", true)],
                none.clone(),
                Step::Act(Action::DeleteOrphans(vec!["X".into()])),
            ),
            (
                "crash after CreateAccessKey, id recorded: exactly that key",
                IamUserAccessKeyStatus {
                    pending_key: pending(&[], Some("X")),
                    ..status(None, None)
                },
                vec![key("X", true), key("OTHER", true)],
                none.clone(),
                Step::Act(Action::DeleteOrphans(vec!["X".into()])),
            ),
            (
                "crash after the Secret write, before the record: the delivered key is current",
                IamUserAccessKeyStatus {
                    pending_key: pending(&["A"], Some("B")),
                    ..status(Some("A"), None)
                },
                vec![key("A", true), key("B", true)],
                ours(Some("B"), true),
                Step::Act(Action::CloseCreate {
                    delivered: Some("B".into()),
                    retiring: Some("A".into()),
                }),
            ),
            (
                "orphans gone: the record closes",
                IamUserAccessKeyStatus {
                    pending_key: pending(&["A"], Some("X")),
                    ..status(Some("A"), None)
                },
                vec![key("A", true)],
                ours(Some("A"), true),
                Step::Act(Action::CloseCreate {
                    delivered: None,
                    retiring: None,
                }),
            ),
            (
                "Secret deleted: heal, the stale key goes",
                status(Some("A"), None),
                vec![key("A", true)],
                none.clone(),
                Step::Act(Action::Create {
                    why: Why::Heal {
                        stale: Some("A".into()),
                    },
                    free: vec!["A".into()],
                    retiring: Some("A".into()),
                }),
            ),
            (
                "Secret edited: heal",
                status(Some("A"), None),
                vec![key("A", true)],
                SecretView::Ours {
                    held: None,
                    shown: Some("A".into()),
                    up_to_date: false,
                },
                Step::Act(Action::Create {
                    why: Why::Heal {
                        stale: Some("A".into()),
                    },
                    free: vec!["A".into()],
                    retiring: Some("A".into()),
                }),
            ),
            (
                "key deleted in AWS: heal with nothing stale",
                status(Some("A"), None),
                vec![],
                ours(Some("A"), true),
                Step::Act(Action::Create {
                    why: Why::Heal { stale: None },
                    free: vec![],
                    retiring: None,
                }),
            ),
            (
                "status lost, Secret holds a live key: take it back",
                status(None, None),
                vec![key("A", true)],
                ours(Some("A"), true),
                Step::Act(Action::TakeBack { id: "A".into() }),
            ),
            (
                "only the rendering changed",
                status(Some("A"), None),
                vec![key("A", true)],
                ours(Some("A"), false),
                Step::Act(Action::Rerender),
            ),
            (
                "two foreign keys: limit",
                status(None, None),
                vec![key("F1", true), key("F2", true)],
                none.clone(),
                Step::Settle(Outcome::LimitExceeded {
                    foreign: vec!["F1".into(), "F2".into()],
                }),
            ),
            (
                "previous key vanished",
                status(Some("A"), Some("P")),
                vec![key("A", true)],
                ours(Some("A"), true),
                Step::Act(Action::ForgetPrevious),
            ),
            (
                "a leftover previous key without a schedule retires",
                status(Some("A"), Some("P")),
                vec![key("A", true), key("P", true)],
                ours(Some("A"), true),
                Step::Act(Action::Retire { id: "P".into() }),
            ),
        ];
        for (what, st, keys, secret, want) in rows {
            assert_eq!(decide_at(&st, &keys, &secret, None, T0), want, "{what}");
        }
    }

    #[test]
    fn rotation_steps_follow_the_schedule() {
        let st = status(Some("A"), None);
        let keys = [key("A", true)];
        let held = ours(Some("A"), true);
        assert_eq!(
            decide_at(&st, &keys, &held, rotation(), "2026-01-01T00:30:00Z"),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T01:00:00Z"))
            })
        );
        assert_eq!(
            decide_at(&st, &keys, &held, rotation(), "2026-01-01T01:00:00Z"),
            Step::Act(Action::Create {
                why: Why::Rotate {
                    current: "A".into()
                },
                free: vec![],
                retiring: Some("A".into())
            })
        );
        // During the grace period the old key stays; after it, it retires.
        let st = status(Some("B"), Some("A"));
        let keys = [key("A", true), key("B", true)];
        let held = ours(Some("B"), true);
        assert_eq!(
            decide_at(&st, &keys, &held, rotation(), "2026-01-01T00:05:00Z"),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T00:10:00Z"))
            })
        );
        assert_eq!(
            decide_at(&st, &keys, &held, rotation(), "2026-01-01T00:10:00Z"),
            Step::Act(Action::Deactivate { id: "A".into() })
        );
        // Deactivated for its time, then deleted.
        let keys = [key("A", false), key("B", true)];
        assert_eq!(
            decide_at(&st, &keys, &held, rotation(), "2026-01-01T00:15:00Z"),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T00:20:00Z"))
            })
        );
        assert_eq!(
            decide_at(&st, &keys, &held, rotation(), "2026-01-01T00:20:00Z"),
            Step::Act(Action::Retire { id: "A".into() })
        );
        // A rotation due while a foreign key fills the second slot: limit, not loop.
        let st = status(Some("A"), None);
        let keys = [key("A", true), key("F", true)];
        assert_eq!(
            decide_at(
                &st,
                &keys,
                &ours(Some("A"), true),
                rotation(),
                "2026-01-01T02:00:00Z"
            ),
            Step::Settle(Outcome::LimitExceeded {
                foreign: vec!["F".into()]
            })
        );
    }

    #[test]
    fn a_rotate_request_rotates_once_per_value() {
        let view = |st: &IamUserAccessKeyStatus, keys: &[KeyInfo], req, hold| {
            decide(&View {
                recorded: st,
                keys,
                secret: &ours(Some("A"), true),
                secret_name: "s",
                want_active: true,
                schedule: rotation(),
                now: t("2026-01-01T00:30:00Z"),
                rotate_request: req,
                hold_previous: hold,
            })
        };
        let st = status(Some("A"), None);
        let one = [key("A", true)];
        // A new value rotates now, with or without a schedule due.
        assert_eq!(
            view(&st, &one, Some("leak-1"), false),
            Step::Act(Action::Create {
                why: Why::Requested {
                    current: "A".into(),
                    value: "leak-1".into()
                },
                free: vec![],
                retiring: Some("A".into())
            })
        );
        // The value handled is not handled again.
        let handled = IamUserAccessKeyStatus {
            rotate_request: Some("leak-1".into()),
            ..st.clone()
        };
        assert_eq!(
            view(&handled, &one, Some("leak-1"), false),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T01:00:00Z"))
            })
        );
        // During a grace period the older previous key makes room first.
        let st = IamUserAccessKeyStatus {
            rotate_request: Some("leak-1".into()),
            ..status(Some("A"), Some("P"))
        };
        let two = [key("A", true), key("P", true)];
        assert_eq!(
            view(&st, &two, Some("leak-2"), false),
            Step::Act(Action::Create {
                why: Why::Requested {
                    current: "A".into(),
                    value: "leak-2".into()
                },
                free: vec!["P".into()],
                retiring: Some("A".into())
            })
        );
        // Not while the user holds the previous key.
        assert_eq!(
            view(&st, &two, Some("leak-2"), true),
            Step::Settle(Outcome::Done { next: None })
        );
        let two_off = [key("A", true), key("P", false)];
        assert_eq!(
            view(&st, &two_off, None, true),
            Step::Act(Action::Reactivate { id: "P".into() })
        );
    }

    /// `restartWorkloads`: the grace period waits for the rollouts, then counts from
    /// when they completed (or the bound passed), across restarts: all of it is in
    /// the status.
    #[test]
    fn the_grace_period_waits_for_the_rollouts() {
        use crate::controllers::access_key::schedule::{ROLLOUT_BOUND, Rollouts, await_rollouts};
        let keys = [key("B", true), key("A", true)];
        let secret = ours(Some("B"), true);
        // Delivered at T0 with restartWorkloads: the wait begins in the same record.
        let mut delivered = status(Some("B"), Some("A"));
        mark_delivered(&mut delivered, true, t(T0));
        assert_eq!(delivered.rollouts_awaited_since.as_deref(), Some(T0));
        // Without restartWorkloads (or without a key replaced) nothing is awaited.
        let mut plain = status(Some("B"), Some("A"));
        mark_delivered(&mut plain, false, t(T0));
        assert_eq!(plain.rollouts_awaited_since, None);
        let mut first = status(Some("B"), None);
        mark_delivered(&mut first, true, t(T0));
        assert_eq!(first.rollouts_awaited_since, None);

        // Waiting: long past the 10-minute grace counted from creation, the previous
        // key is not deactivated; the phase is RestartingWorkloads. A restarted
        // operator reads the same status, so the same answer.
        for now in ["2026-01-01T00:00:30Z", "2026-01-01T00:20:00Z"] {
            assert_eq!(
                decide_at(&delivered, &keys, &secret, rotation(), now),
                Step::Settle(Outcome::AwaitRollouts { since: t(T0) }),
                "{now}"
            );
        }
        assert_eq!(
            settled_phase(&delivered, &keys),
            (RotationPhase::RestartingWorkloads, Some(KeyStatus::Active))
        );
        // The wait itself: recheck every few seconds until the bound, then start
        // anyway naming what had not rolled out; start at once when all have.
        let pending = vec!["Deployment/app".to_string()];
        let at = |s: &str| await_rollouts(t(T0), &pending, t(s), ROLLOUT_BOUND);
        assert_eq!(
            at("2026-01-01T00:00:30Z"),
            Rollouts::Wait {
                recheck: t("2026-01-01T00:00:35Z"),
                deadline: t("2026-01-01T00:10:00Z")
            }
        );
        assert_eq!(
            at("2026-01-01T00:09:58Z"),
            Rollouts::Wait {
                recheck: t("2026-01-01T00:10:00Z"),
                deadline: t("2026-01-01T00:10:00Z")
            }
        );
        assert_eq!(
            at("2026-01-01T00:10:00Z"),
            Rollouts::Start {
                late: pending.clone()
            }
        );
        assert_eq!(
            await_rollouts(t(T0), &[], t("2026-01-01T00:00:30Z"), ROLLOUT_BOUND),
            Rollouts::Start { late: vec![] }
        );

        // Completed at 00:03: the grace period (10 minutes) counts from then.
        let mut started = delivered.clone();
        started.grace_started_at = Some("2026-01-01T00:03:00Z".into());
        assert_eq!(
            decide_at(&started, &keys, &secret, rotation(), "2026-01-01T00:12:00Z"),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T00:13:00Z"))
            })
        );
        assert_eq!(
            decide_at(&started, &keys, &secret, rotation(), "2026-01-01T00:13:00Z"),
            Step::Act(Action::Deactivate { id: "A".into() })
        );
        assert_eq!(
            settled_phase(&started, &keys),
            (RotationPhase::Grace, Some(KeyStatus::Active))
        );
        // Deleted deactivatedFor (10 minutes) after the grace period's end.
        let inactive = [key("B", true), key("A", false)];
        assert_eq!(
            decide_at(
                &started,
                &inactive,
                &secret,
                rotation(),
                "2026-01-01T00:20:00Z"
            ),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T00:23:00Z"))
            })
        );
        // The next rotation still counts from the key's creation.
        let alone = [key("B", true)];
        let mut settled = started.clone();
        settled.previous_access_key_id = None;
        assert_eq!(
            decide_at(
                &settled,
                &alone,
                &secret,
                rotation(),
                "2026-01-01T00:30:00Z"
            ),
            Step::Settle(Outcome::Done {
                next: Some(t("2026-01-01T01:00:00Z"))
            })
        );
        // A previous key the user holds is not awaited (nothing is due while held).
        let held = decide(&View {
            recorded: &delivered,
            keys: &keys,
            secret: &secret,
            secret_name: "s",
            want_active: true,
            schedule: rotation(),
            now: t("2026-01-01T00:00:30Z"),
            rotate_request: None,
            hold_previous: true,
        });
        assert_eq!(held, Step::Settle(Outcome::Done { next: None }));
        // A new delivery waits again, from its own time.
        let mut again = started.clone();
        again.workloads_not_rolled_out = vec!["Deployment/app".into()];
        mark_delivered(&mut again, true, t("2026-01-01T02:00:00Z"));
        assert_eq!(again.grace_started_at, None);
        assert!(again.workloads_not_rolled_out.is_empty());
        assert_eq!(awaiting_rollouts(&again), Some(t("2026-01-01T02:00:00Z")));
    }

    #[test]
    fn the_phase_follows_the_previous_key() {
        let st = status(Some("A"), Some("P"));
        assert_eq!(
            settled_phase(&st, &[key("A", true)]),
            (RotationPhase::Stable, None)
        );
        assert_eq!(
            settled_phase(&st, &[key("A", true), key("P", true)]),
            (RotationPhase::Grace, Some(KeyStatus::Active))
        );
        assert_eq!(
            settled_phase(&st, &[key("A", true), key("P", false)]),
            (RotationPhase::Deactivated, Some(KeyStatus::Inactive))
        );
    }

    #[test]
    fn key_status_and_moves() {
        let st = status(Some("A"), None);
        let keys = [key("A", true)];
        let held = ours(Some("A"), true);
        let step = decide(&View {
            recorded: &st,
            keys: &keys,
            secret: &held,
            secret_name: "s",
            want_active: false,
            schedule: None,
            now: t(T0),
            rotate_request: None,
            hold_previous: false,
        });
        assert_eq!(
            step,
            Step::Act(Action::SetKeyStatus {
                id: "A".into(),
                active: false
            })
        );
        let step = decide(&View {
            recorded: &st,
            keys: &keys,
            secret: &SecretView::Missing,
            secret_name: "t",
            want_active: true,
            schedule: None,
            now: t(T0),
            rotate_request: None,
            hold_previous: false,
        });
        assert_eq!(
            step,
            Step::Act(Action::Create {
                why: Why::Moved { from: "s".into() },
                free: vec!["A".into()],
                retiring: Some("A".into())
            })
        );
    }
}
