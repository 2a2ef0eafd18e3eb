//! What a reconcile knows of the key while it converges: what it observed (kept
//! current as steps are taken), and where the key rests at the end.

use chrono::{DateTime, Utc};

use super::decide::SecretView;
use super::keys::KeyInfo;
use super::secret::KeyMaterial;

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
