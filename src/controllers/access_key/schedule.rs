//! The rotation schedule, without I/O: Go-style durations (`720h`, `1h30m`, `1.5h`, as
//! the CRD schema admits them) and the rotation state machine's next step.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Rotation;

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
}

/// The default grace period: an hour, or half of `every` when that is shorter.
fn default_grace(every: Duration) -> Duration {
    Duration::from_secs(3600).min(every / 2)
}

/// The shortest rotation period: a key must live long enough to be picked up.
pub const MIN_EVERY: Duration = Duration::from_secs(3600);
/// The longest: ten years (AWS recommends 90 days; anything longer is "never").
pub const MAX_EVERY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Check `spec.rotation`: `every` between [`MIN_EVERY`] and [`MAX_EVERY`] (the same
/// bounds as the CRD's CEL rule), `gracePeriod` shorter than `every` (the old key
/// must be gone before the next rotation needs its slot).
pub fn schedule(rotation: Option<&Rotation>) -> Result<Option<Schedule>, String> {
    schedule_scaled(rotation, 1)
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

/// [`schedule`], with the durations divided by `scale` after the checks.
pub fn schedule_scaled(
    rotation: Option<&Rotation>,
    scale: u32,
) -> Result<Option<Schedule>, String> {
    let Some(r) = rotation else {
        return Ok(None);
    };
    let every = parse_go_duration(&r.every).map_err(|e| format!("spec.rotation.every: {e}"))?;
    if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
        return Err(format!(
            "spec.rotation.every: must be between 1h and 87600h (10 years), got {:?}",
            r.every
        ));
    }
    let grace = match &r.grace_period {
        Some(g) => parse_go_duration(g).map_err(|e| format!("spec.rotation.gracePeriod: {e}"))?,
        None => default_grace(every),
    };
    if grace >= every {
        return Err(format!(
            "spec.rotation.gracePeriod: must be shorter than spec.rotation.every ({:?} >= {:?})",
            r.grace_period.as_deref().unwrap_or_default(),
            r.every
        ));
    }
    Ok(Some(Schedule {
        every: every / scale,
        grace: grace / scale,
    }))
}

/// What the key's schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing due; look again at `next` (None: never, no rotation configured).
    Wait { next: Option<DateTime<Utc>> },
    /// The retiring key's grace period is over: deactivate and delete it.
    Retire,
    /// The current key is old enough: create its successor.
    Rotate,
}

/// The next step for a current key created at `created`, with `retiring` telling
/// whether a previous key is still in its grace period. Without a schedule a leftover
/// previous key (from a heal or a recovered crash) is retired at once.
pub fn next_step(
    schedule: Option<Schedule>,
    created: DateTime<Utc>,
    retiring: bool,
    now: DateTime<Utc>,
) -> Step {
    // Saturating: no duration, however large, may overflow the clock (a panic here
    // would take every object down with the process).
    let add = |d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| created.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    let Some(s) = schedule else {
        return if retiring {
            Step::Retire
        } else {
            Step::Wait { next: None }
        };
    };
    if retiring {
        let at = add(s.grace);
        return if now >= at {
            Step::Retire
        } else {
            Step::Wait { next: Some(at) }
        };
    }
    let at = add(s.every);
    if now >= at {
        Step::Rotate
    } else {
        Step::Wait { next: Some(at) }
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
        assert!(
            e.starts_with("spec.rotation.gracePeriod: must be shorter"),
            "{e}"
        );
        let e = schedule(Some(&r("5x", None))).unwrap_err();
        assert!(e.starts_with("spec.rotation.every: "), "{e}");
        // The hostile and the pointless are refused, not overflowed or hammered.
        for every in ["3000000000h", "87601h", "1s", "59m59s"] {
            let e = schedule(Some(&r(every, None))).unwrap_err();
            assert!(
                e.starts_with("spec.rotation.every: must be between 1h and 87600h"),
                "{e}"
            );
        }
        assert!(schedule(Some(&r("87600h", None))).is_ok());
        // The test-only scale applies after the bounds.
        let s = schedule_scaled(Some(&r("20h", Some("10h"))), 3600)
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.every, s.grace),
            (Duration::from_secs(20), Duration::from_secs(10))
        );
    }

    #[test]
    fn no_duration_overflows_the_clock() {
        let s = Some(Schedule {
            every: Duration::from_secs(u64::MAX / 4),
            grace: Duration::from_secs(u64::MAX / 8),
        });
        let t0 = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert!(matches!(
            next_step(s, t0, false, t0),
            Step::Wait { next: Some(_) }
        ));
        assert!(matches!(
            next_step(s, t0, true, t0),
            Step::Wait { next: Some(_) }
        ));
    }

    #[test]
    fn steps_through_rotation() {
        let t0 = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let s = Some(Schedule {
            every: Duration::from_secs(20),
            grace: Duration::from_secs(10),
        });
        let at = |secs| t0 + chrono::Duration::seconds(secs);
        assert_eq!(
            next_step(s, t0, false, at(5)),
            Step::Wait { next: Some(at(20)) }
        );
        assert_eq!(next_step(s, t0, false, at(20)), Step::Rotate);
        assert_eq!(
            next_step(s, t0, true, at(5)),
            Step::Wait { next: Some(at(10)) }
        );
        assert_eq!(next_step(s, t0, true, at(10)), Step::Retire);
        assert_eq!(next_step(None, t0, true, at(0)), Step::Retire);
        assert_eq!(
            next_step(None, t0, false, at(99)),
            Step::Wait { next: None }
        );
    }
}
