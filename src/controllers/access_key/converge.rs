//! Bring the key to the spec: ask the state machine (decide.rs) for the next step,
//! take it, and ask again until the key settles.

use chrono::{DateTime, Utc};

use super::decide::{Outcome, SecretView, Step, View, decide};
use super::keys::KeyInfo;
use super::run::Run;
use super::schedule::Schedule;
use super::secret::KeyMaterial;
use super::{rollouts, steps};
use crate::api::KeyStatus;
use crate::controllers::{Error, key_of};
use crate::reason::Reason;

/// What the reconcile observed of the key and its Secret, kept current as steps are
/// taken (each step updates it as it changed AWS or the Secret).
pub struct Observation {
    /// The user's keys in AWS.
    pub keys: Vec<KeyInfo>,
    /// What the Secret holds, by id.
    pub secret: SecretView,
    /// The key the Secret holds, with its secret (to render it again).
    pub held: Option<KeyMaterial>,
}

/// Where the key rests at the end of the reconcile.
#[derive(Debug, Default)]
pub struct Settled {
    /// When to look again (a rotation step, or the rollouts' recheck).
    pub next: Option<DateTime<Utc>>,
    /// The workloads awaited before the previous key's grace period starts.
    pub rolling: Option<Rolling>,
}

/// The workloads not yet rolled out to the new key, and until when they are awaited.
#[derive(Debug)]
pub struct Rolling {
    pub pending: Vec<String>,
    pub deadline: DateTime<Utc>,
}

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
