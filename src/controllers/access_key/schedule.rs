//! The rotation schedule, without I/O: Go-style durations (`720h`, `1h30m`, `1.5h`, as
//! the CRD schema admits them) and the rotation state machine's next step.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Rotation;
use crate::error::FieldError;

/// A Go `time.ParseDuration` string, restricted to what the schema admits (no sign).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 720h, 1h30m or 90s");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The rotation settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub grace: Duration,
    /// How long the previous key stays Inactive before it is deleted.
    pub deactivated: Duration,
}

/// The default grace period: an hour, or half of `every` when that is shorter.
fn default_grace(every: Duration) -> Duration {
    Duration::from_secs(3600).min(every / 2)
}

/// The default time a previous key stays Inactive: a day (a daily job that still
/// uses it shows up as `PreviousKeyStillUsed` or fails while it can be reactivated),
/// or half of what `every` leaves after the grace period when that is shorter, so
/// specs written before the field existed keep working.
fn default_deactivated(every: Duration, grace: Duration) -> Duration {
    Duration::from_secs(24 * 3600).min(every.saturating_sub(grace) / 2)
}

/// The shortest rotation period: a key must live long enough to be picked up.
pub const MIN_EVERY: Duration = Duration::from_secs(3600);
/// The longest: ten years (AWS recommends 90 days; anything longer is "never").
pub const MAX_EVERY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Check `spec.rotation`: `every` between [`MIN_EVERY`] and [`MAX_EVERY`] (the same
/// bounds as the CRD's CEL rule), `gracePeriod` shorter than `every` (the old key
/// must be gone before the next rotation needs its slot).
pub fn schedule(rotation: Option<&Rotation>) -> Result<Option<Schedule>, FieldError> {
    let Some(r) = rotation else {
        return Ok(None);
    };
    let every =
        parse_go_duration(&r.every).map_err(|e| FieldError::new("spec.rotation.every", e))?;
    if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
        return Err(FieldError::new(
            "spec.rotation.every",
            format!(
                "must be between 1h and 87600h (10 years), got {:?}",
                r.every
            ),
        ));
    }
    let grace = match &r.grace_period {
        Some(g) => {
            parse_go_duration(g).map_err(|e| FieldError::new("spec.rotation.gracePeriod", e))?
        }
        None => default_grace(every),
    };
    if grace >= every {
        return Err(FieldError::new(
            "spec.rotation.gracePeriod",
            format!(
                "must be shorter than spec.rotation.every ({:?} >= {:?})",
                r.grace_period.as_deref().unwrap_or_default(),
                r.every
            ),
        ));
    }
    Ok(Some(Schedule {
        every,
        grace,
        deactivated: deactivated(r, every, grace)?,
    }))
}

/// `deactivatedFor`: the previous key must be gone before the next rotation needs its
/// slot, so the grace period and this fit inside `every`.
fn deactivated(r: &Rotation, every: Duration, grace: Duration) -> Result<Duration, FieldError> {
    let Some(d) = &r.deactivated_for else {
        return Ok(default_deactivated(every, grace));
    };
    let d = parse_go_duration(d).map_err(|e| FieldError::new("spec.rotation.deactivatedFor", e))?;
    if grace.saturating_add(d) >= every {
        return Err(FieldError::new(
            "spec.rotation.deactivatedFor",
            format!(
                "gracePeriod + deactivatedFor must be shorter than spec.rotation.every ({:?} + {:?} >= {:?}): the previous key must be gone before the next rotation needs its slot",
                r.grace_period.as_deref().unwrap_or("default"),
                r.deactivated_for.as_deref().unwrap_or_default(),
                r.every
            ),
        ));
    }
    Ok(d)
}

impl Schedule {
    /// The durations divided by `scale` (see [`time_scale`]), after the checks.
    pub fn scaled(self, scale: u32) -> Self {
        Schedule {
            every: self.every / scale,
            grace: self.grace / scale,
            deactivated: self.deactivated / scale,
        }
    }
}

/// Test-only: `IAMWRIGHT_ROTATION_TIME_SCALE=N` runs rotation N times faster (with
/// 3600, `every: 20h` rotates every 20 s), so the e2e suite can show real rotations
/// with the bounds users get. Unset in production.
pub fn time_scale() -> u32 {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("IAMWRIGHT_ROTATION_TIME_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1)
    })
}

/// What the key's schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing due; look again at `next` (None: never, no rotation configured).
    Wait { next: Option<DateTime<Utc>> },
    /// The grace period is over: set the previous key Inactive.
    Deactivate,
    /// `iamwright.dev/reactivate-previous` is set and the previous key is Inactive.
    Reactivate,
    /// The previous key's time is over: delete it (deactivating it first if Active).
    Retire,
    /// The current key is old enough: create its successor.
    Rotate,
}

/// The previous key, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub active: bool,
    /// `iamwright.dev/reactivate-previous` is set: keep it Active, never delete it.
    pub held: bool,
}

/// The next step for a current key created at `created`, with `previous` the key it
/// replaced, if that still exists. Without a schedule a leftover previous key (from a
/// heal, a recovered crash or an on-demand rotation) is retired at once.
pub fn next_step(
    schedule: Option<Schedule>,
    created: DateTime<Utc>,
    previous: Option<Previous>,
    now: DateTime<Utc>,
) -> Step {
    next_step_from(schedule, created, created, previous, now)
}

/// Saturating: no duration, however large, may overflow the clock (a panic here
/// would take every object down with the process).
fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// [`next_step`], with the previous key's grace period counted from `grace_from`
/// (when the workloads finished rolling to the new key) instead of `created`.
pub fn next_step_from(
    schedule: Option<Schedule>,
    created: DateTime<Utc>,
    grace_from: DateTime<Utc>,
    previous: Option<Previous>,
    now: DateTime<Utc>,
) -> Step {
    let add = |d: Duration| plus(grace_from, d);
    if let Some(p) = previous {
        if p.held {
            // Held by the user: no step (and no rotation: it would need the slot)
            // until the annotation is removed.
            return if p.active {
                Step::Wait { next: None }
            } else {
                Step::Reactivate
            };
        }
        let Some(s) = schedule else {
            return Step::Retire;
        };
        let grace_end = add(s.grace);
        if now < grace_end {
            return Step::Wait {
                next: Some(grace_end),
            };
        }
        if p.active {
            return Step::Deactivate;
        }
        let delete_at = add(s.grace.saturating_add(s.deactivated));
        return if now >= delete_at {
            Step::Retire
        } else {
            Step::Wait {
                next: Some(delete_at),
            }
        };
    }
    let Some(s) = schedule else {
        return Step::Wait { next: None };
    };
    let at = plus(created, s.every);
    if now >= at {
        Step::Rotate
    } else {
        Step::Wait { next: Some(at) }
    }
}

/// How long the previous key's grace period waits for the workloads rolled by
/// `spec.rotation.restartWorkloads` to complete their rollouts: a rollout stuck
/// longer (an image that no longer pulls, a quota, a PodDisruptionBudget) must not
/// keep the previous key Active for ever, so the grace period then starts anyway and
/// the object says which workloads had not rolled out (event `WorkloadsNotRolledOut`).
pub const ROLLOUT_BOUND: Duration = Duration::from_secs(10 * 60);

/// How often the rollouts are looked at while awaited (Kubernetes reads only, no AWS
/// call). Polled rather than watched: a watch of every Deployment, StatefulSet and
/// DaemonSet in the scope would cost memory in every cluster for a wait of minutes
/// that happens once per rotation.
pub const ROLLOUT_RECHECK: Duration = Duration::from_secs(5);

/// The rollouts' wait, as one reconcile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollouts {
    /// Some rollout is still running: look again at `recheck`; the grace period
    /// starts at `deadline` at the latest.
    Wait {
        recheck: DateTime<Utc>,
        deadline: DateTime<Utc>,
    },
    /// Start the grace period now: every rollout completed (`late` empty), or the
    /// bound passed with `late` still rolling.
    Start { late: Vec<String> },
}

/// Whether the grace period may start, rollouts awaited `since`, with `pending` the
/// workloads not yet rolled out to the new key. Pure: `since` is in the status, so
/// a restarted operator neither restarts the wait nor skips it.
pub fn await_rollouts(
    since: DateTime<Utc>,
    pending: &[String],
    now: DateTime<Utc>,
    bound: Duration,
) -> Rollouts {
    if pending.is_empty() {
        return Rollouts::Start { late: vec![] };
    }
    let deadline = plus(since, bound);
    if now >= deadline {
        return Rollouts::Start {
            late: pending.to_vec(),
        };
    }
    Rollouts::Wait {
        recheck: plus(now, ROLLOUT_RECHECK).min(deadline),
        deadline,
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(
            parse_go_duration("720h"),
            Ok(Duration::from_secs(720 * 3600))
        );
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("1d").is_err());
        assert!(parse_go_duration("h").is_err());
    }

    #[test]
    fn checks_the_schedule() {
        let r = |every: &str, grace: Option<&str>| Rotation {
            every: every.into(),
            grace_period: grace.map(Into::into),
            deactivated_for: None,
            restart_workloads: false,
        };
        assert_eq!(schedule(None), Ok(None));
        assert_eq!(
            schedule(Some(&r("720h", None))).unwrap().unwrap().grace,
            Duration::from_secs(3600)
        );
        assert_eq!(
            schedule(Some(&r("1h", None))).unwrap().unwrap().grace,
            Duration::from_secs(1800)
        );
        let e = schedule(Some(&r("20h", Some("30h")))).unwrap_err();
        assert_eq!(e.field, "spec.rotation.gracePeriod");
        assert!(e.message.starts_with("must be shorter"), "{e}");
        let e = schedule(Some(&r("5x", None))).unwrap_err();
        assert_eq!(e.field, "spec.rotation.every", "{e}");
        // The hostile and the pointless are refused, not overflowed or hammered.
        for every in ["3000000000h", "87601h", "1s", "59m59s"] {
            let e = schedule(Some(&r(every, None))).unwrap_err();
            assert_eq!(e.field, "spec.rotation.every");
            assert!(
                e.message.starts_with("must be between 1h and 87600h"),
                "{e}"
            );
        }
        assert!(schedule(Some(&r("87600h", None))).is_ok());
        // The test-only scale applies after the bounds.
        let s = schedule(Some(&r("20h", Some("10h"))))
            .map(|s| s.map(|s| s.scaled(3600)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.every, s.grace, s.deactivated),
            (
                Duration::from_secs(20),
                Duration::from_secs(10),
                Duration::from_secs(5)
            )
        );
    }

    #[test]
    fn deactivated_for_defaults_to_a_day_or_fits_inside_every() {
        let r = |every: &str, grace: Option<&str>, off: Option<&str>| Rotation {
            every: every.into(),
            grace_period: grace.map(Into::into),
            deactivated_for: off.map(Into::into),
            restart_workloads: false,
        };
        let off = |r: Rotation| schedule(Some(&r)).map(|s| s.unwrap().deactivated);
        // A day when `every` leaves room, else shortened so existing specs still work.
        assert_eq!(
            off(r("2160h", None, None)),
            Ok(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            off(r("20h", Some("10h"), None)),
            Ok(Duration::from_secs(5 * 3600))
        );
        assert_eq!(
            off(r("20h", Some("10h"), Some("9h"))),
            Ok(Duration::from_secs(9 * 3600))
        );
        // An explicit value that does not fit is refused, naming the field.
        for bad in ["10h", "11h", "1x"] {
            let e = off(r("20h", Some("10h"), Some(bad))).unwrap_err();
            assert_eq!(e.field, "spec.rotation.deactivatedFor", "{e}");
        }
    }

    #[test]
    fn no_duration_overflows_the_clock() {
        let s = Some(Schedule {
            every: Duration::from_secs(u64::MAX / 4),
            grace: Duration::from_secs(u64::MAX / 8),
            deactivated: Duration::from_secs(u64::MAX / 8),
        });
        let prev = |active| {
            Some(Previous {
                active,
                held: false,
            })
        };
        let t0 = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert!(matches!(
            next_step(s, t0, None, t0),
            Step::Wait { next: Some(_) }
        ));
        assert!(matches!(
            next_step(s, t0, prev(true), t0),
            Step::Wait { next: Some(_) }
        ));
        assert!(matches!(
            next_step(s, t0, prev(false), t0),
            Step::Wait { next: Some(_) }
        ));
    }

    #[test]
    fn steps_through_rotation() {
        let t0 = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let s = Some(Schedule {
            every: Duration::from_secs(20),
            grace: Duration::from_secs(10),
            deactivated: Duration::from_secs(5),
        });
        let at = |secs| t0 + chrono::Duration::seconds(secs);
        let prev = |active, held| Some(Previous { active, held });
        assert_eq!(
            next_step(s, t0, None, at(5)),
            Step::Wait { next: Some(at(20)) }
        );
        assert_eq!(next_step(s, t0, None, at(20)), Step::Rotate);
        // Grace: the previous key stays Active; then Inactive; then deleted.
        assert_eq!(
            next_step(s, t0, prev(true, false), at(5)),
            Step::Wait { next: Some(at(10)) }
        );
        assert_eq!(
            next_step(s, t0, prev(true, false), at(10)),
            Step::Deactivate
        );
        assert_eq!(
            next_step(s, t0, prev(false, false), at(12)),
            Step::Wait { next: Some(at(15)) }
        );
        assert_eq!(next_step(s, t0, prev(false, false), at(15)), Step::Retire);
        // Reactivated by the user: Active again, and held (no deletion, no rotation)
        // until the annotation goes; then deactivated and deleted as before.
        assert_eq!(
            next_step(s, t0, prev(false, true), at(12)),
            Step::Reactivate
        );
        assert_eq!(
            next_step(s, t0, prev(true, true), at(99)),
            Step::Wait { next: None }
        );
        assert_eq!(
            next_step(s, t0, prev(true, false), at(99)),
            Step::Deactivate
        );
        assert_eq!(next_step(None, t0, prev(true, false), at(0)), Step::Retire);
        assert_eq!(next_step(None, t0, None, at(99)), Step::Wait { next: None });
    }
}
