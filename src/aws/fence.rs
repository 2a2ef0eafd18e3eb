//! The leader's fence: AWS writes are made only while this replica's leadership is
//! confirmed. Held by the AWS clients (every write checks it); extended by the leader
//! election (`leader.rs`), which sits above the controllers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Until when this replica may write to AWS as the leader.
#[derive(Debug, Default)]
pub struct Fence {
    until: Mutex<Option<Instant>>,
}

impl Fence {
    pub(crate) fn confirm_for(&self, valid: Duration) {
        *self.until.lock().expect("fence lock") = Some(Instant::now() + valid);
    }

    /// Whether the leadership is confirmed right now.
    pub fn holds(&self) -> bool {
        self.until
            .lock()
            .expect("fence lock")
            .is_some_and(|u| Instant::now() < u)
    }
}
