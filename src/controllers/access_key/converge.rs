//! Bring the key to the spec: ask the state machine (decide.rs) for the next step,
//! take it, and ask again until the key settles.

use chrono::Utc;

use super::decide::{Outcome, Step, View, decide};
use super::keys::limit_exceeded;
use super::run::Run;
use super::schedule::Schedule;
use super::state::{Observation, Settled};
use super::{rollouts, steps};
use crate::api::KeyStatus;
use crate::controllers::{Error, key_of};

/// Steps one reconcile may take before it must have reached a steady state (the
/// longest path: close a create, heal, retire, set the status, rotate, retire).
const MAX_STEPS: usize = 12;

/// Take the steps `decide` asks for until the key settles.
pub async fn converge(
    run: &mut Run<'_>,
    seen: &mut Observation,
    name: &str,
    user_arn: &str,
    schedule: Option<Schedule>,
) -> Result<Settled, Error> {
    for _ in 0..MAX_STEPS {
        let step = decide(&View {
            recorded: &run.recorded,
            keys: &seen.keys,
            secret: &seen.secret,
            secret_name: name,
            want_active: run.k.spec.key_status == KeyStatus::Active,
            schedule,
            now: Utc::now(),
            rotate_request: run.rotate_request.as_deref(),
            hold_previous: run.hold_previous,
        });
        tracing::debug!(object = %key_of(run.k), ?step, "access key step");
        match step {
            Step::Act(action) => steps::take(run, action, seen, name, user_arn).await?,
            Step::Settle(Outcome::Done { next }) => {
                return Ok(Settled {
                    next,
                    rolling: None,
                });
            }
            Step::Settle(Outcome::LimitExceeded { foreign }) => {
                return Err(limit_exceeded(run.user(), &foreign));
            }
            // Once the rollouts are done (or late) the grace period has started: decide again.
            Step::Settle(Outcome::AwaitRollouts { since }) => {
                if let Some(waiting) = rollouts::wait(run, name, since).await? {
                    return Ok(waiting);
                }
            }
        }
    }
    Err(Error::Internal(format!(
        "the access key did not settle within {MAX_STEPS} steps"
    )))
}
