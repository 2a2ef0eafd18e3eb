//! Read your own status writes. A reconcile runs on the object as the watch cache holds
//! it, and the cache shows the operator's own status patch only when the watch delivers
//! it, often after the next reconcile of the same object has started (a referenced
//! policy's events queue a role again while it is being created). That reconcile saw no
//! ARN and no Ready condition, and paid for the gap: it read the role it had just
//! created (three reads), and wrote the same status again.
//!
//! The status this process last wrote to an object is kept until the watch shows it,
//! and a reconcile on an older copy works on it instead. Only the leader writes an
//! object's status, so what it wrote is what the API server holds; an entry is kept at
//! most [`KEPT`], in case the watch never shows it (a user rewrote the status, the
//! object was deleted). Entries are per object incarnation (its uid). A kind whose
//! apply writes its status itself (IamUserAccessKey records the key it is about to
//! create before creating it, on a fresh copy) is left out: a remembered status would
//! miss those writes.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a written status stands in for the cache's copy: a watch delivers within
/// seconds, also on a loaded API server.
pub const KEPT: Duration = Duration::from_secs(30);

/// Past this many entries, expired ones are dropped on the next write.
const PRUNE_ABOVE: usize = 256;

type Entry = (Instant, Box<dyn Any + Send + Sync>);

/// The statuses written and not yet seen back, by kind and uid.
#[derive(Default)]
pub struct Written {
    statuses: Mutex<HashMap<(&'static str, String), Entry>>,
}

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String), Entry>> {
        self.statuses.lock().expect("written statuses lock")
    }

    /// Remember the status just written to the object `uid` of `kind`.
    pub fn wrote<S: Any + Send + Sync>(
        &self,
        kind: &'static str,
        uid: &str,
        status: S,
        now: Instant,
    ) {
        let mut statuses = self.lock();
        if statuses.len() > PRUNE_ABOVE {
            statuses.retain(|_, (at, _)| now.saturating_duration_since(*at) < KEPT);
        }
        statuses.insert((kind, uid.to_string()), (now, Box::new(status)));
    }

    /// The status to reconcile with: `cached` when the watch shows what was written (the
    /// entry is dropped then) or nothing was written lately, else the written one.
    pub fn newer<S: Any + Clone + PartialEq + Send + Sync>(
        &self,
        kind: &'static str,
        uid: &str,
        cached: Option<&S>,
        now: Instant,
    ) -> Option<S> {
        let key = (kind, uid.to_string());
        let mut statuses = self.lock();
        let (at, status) = statuses.get(&key)?;
        let written = status.downcast_ref::<S>()?;
        if cached == Some(written) || now.saturating_duration_since(*at) >= KEPT {
            statuses.remove(&key);
            return None;
        }
        Some(written.clone())
    }

    /// The object is gone.
    pub fn forget(&self, kind: &'static str, uid: &str) {
        self.lock().remove(&(kind, uid.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Status(&'static str);

    #[test]
    fn a_stale_copy_gets_the_written_status_until_the_watch_shows_it() {
        let w = Written::default();
        let t0 = Instant::now();
        assert_eq!(
            w.newer::<Status>("Role", "u1", None, t0),
            None,
            "nothing written"
        );
        w.wrote("Role", "u1", Status("ready"), t0);
        // The cache still has no status, then an older one: the written one stands in.
        assert_eq!(w.newer("Role", "u1", None, t0), Some(Status("ready")));
        assert_eq!(
            w.newer("Role", "u1", Some(&Status("creating")), t0),
            Some(Status("ready"))
        );
        // Another kind or another incarnation of the name is not this object.
        assert_eq!(w.newer::<Status>("Policy", "u1", None, t0), None);
        assert_eq!(w.newer::<Status>("Role", "u2", None, t0), None);
        // The watch caught up: the entry goes, and later copies are taken as they are.
        assert_eq!(w.newer("Role", "u1", Some(&Status("ready")), t0), None);
        assert_eq!(w.newer("Role", "u1", Some(&Status("edited")), t0), None);
    }

    #[test]
    fn a_written_status_the_watch_never_shows_expires() {
        let w = Written::default();
        let t0 = Instant::now();
        w.wrote("Role", "u1", Status("ready"), t0);
        assert_eq!(w.newer::<Status>("Role", "u1", None, t0 + KEPT), None);
        assert_eq!(w.newer::<Status>("Role", "u1", None, t0), None, "dropped");
        for i in 0..=PRUNE_ABOVE + 1 {
            w.wrote("Role", &format!("old{i}"), Status("ready"), t0);
        }
        w.wrote("Role", "new", Status("ready"), t0 + KEPT);
        assert_eq!(w.lock().len(), 1, "expired entries pruned on a write");
        w.forget("Role", "new");
        assert!(w.lock().is_empty());
    }
}
