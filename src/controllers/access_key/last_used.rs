//! The controller's memory of when it last read each key's last use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each object's key was last asked about its last use: GetAccessKeyLastUsed is
/// read at most once per resync per key, not on every reconcile. Held by the
/// controller (one per process), forgotten when the object goes.
#[derive(Debug, Default)]
pub struct LastUsedReads(Mutex<HashMap<String, (String, Instant)>>);

impl LastUsedReads {
    /// Whether key `id` of `object` is to be read again (a new key, or `every` passed).
    pub fn due(&self, object: &str, id: &str, every: Duration) -> bool {
        self.0
            .lock()
            .expect("last-used lock")
            .get(object)
            .is_none_or(|(read_id, at)| read_id != id || at.elapsed() >= every)
    }

    pub fn read(&self, object: String, id: String) {
        self.0
            .lock()
            .expect("last-used lock")
            .insert(object, (id, Instant::now()));
    }

    pub fn forget(&self, object: &str) {
        self.0.lock().expect("last-used lock").remove(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_read_once_per_resync_and_again_when_it_changes() {
        let reads = LastUsedReads::default();
        let hour = Duration::from_secs(3600);
        assert!(reads.due("ns/k", "A", hour), "never read");
        reads.read("ns/k".into(), "A".into());
        assert!(!reads.due("ns/k", "A", hour), "read within the resync");
        assert!(reads.due("ns/k", "A", Duration::ZERO), "the resync passed");
        assert!(reads.due("ns/k", "B", hour), "a new key");
        assert!(reads.due("ns/other", "A", hour), "per object");
        reads.forget("ns/k");
        assert!(reads.due("ns/k", "A", hour), "forgotten with the object");
    }
}
