//! When the keys were last used (status.lastUsedAt, lastUsedService,
//! previousKeyLastUsedAt), and the warning when the previous key is still used after
//! the new one was delivered.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keys;
use super::run::Run;
use super::schedule::{self, rfc3339};
use crate::api::IamUserAccessKeyStatus;
use crate::controllers::{Error, key_of};

/// When each object's key was last asked about its last use: GetAccessKeyLastUsed is
/// read at most once per resync per key, not on every reconcile. Held by the
/// controller (one per process), forgotten when the object goes.
#[derive(Debug, Default)]
pub struct LastUsedReads(Mutex<HashMap<String, (String, Instant)>>);

impl LastUsedReads {
    /// Whether key `id` of `object` is to be read again (a new key, or `every` passed).
    fn due(&self, object: &str, id: &str, every: Duration) -> bool {
        self.0
            .lock()
            .expect("last-used lock")
            .get(object)
            .is_none_or(|(read_id, at)| read_id != id || at.elapsed() >= every)
    }

    fn read(&self, object: String, id: String) {
        self.0
            .lock()
            .expect("last-used lock")
            .insert(object, (id, Instant::now()));
    }

    pub fn forget(&self, object: &str) {
        self.0.lock().expect("last-used lock").remove(object);
    }
}

/// Report when the current key was last used (status.lastUsedAt, lastUsedService).
pub async fn key_hygiene(run: &Run<'_>, st: &mut IamUserAccessKeyStatus) -> Result<(), Error> {
    let Some(id) = st.access_key_id.clone() else {
        return Ok(());
    };
    let object = key_of(run.k);
    if !run.last_used.due(&object, &id, run.ctx.settings.resync) {
        return Ok(());
    }
    let used = keys::last_used(&run.ctx.aws().await, &id).await?;
    st.last_used_at = used.as_ref().map(|(at, _)| rfc3339(*at));
    st.last_used_service = used
        .map(|(_, service)| service)
        .filter(|s| !s.is_empty() && s != "N/A");
    if let Some(prev) = st.previous_access_key_id.clone()
        && st.previous_key_status.is_some()
    {
        previous_use(run, st, &prev).await?;
    }
    run.last_used.read(object, id);
    Ok(())
}

/// Read when the previous key was last used (status.previousKeyLastUsedAt) and warn
/// (`PreviousKeyStillUsed`) on a use after the new key was delivered: AWS's procedure
/// is to confirm the old key is unused before deactivating and deleting it.
pub async fn previous_use(
    run: &Run<'_>,
    st: &mut IamUserAccessKeyStatus,
    prev: &str,
) -> Result<(), Error> {
    let used = keys::last_used(&run.ctx.aws().await, prev)
        .await?
        .map(|(at, _)| at);
    let before = st.previous_key_last_used_at.clone();
    st.previous_key_last_used_at = used.map(rfc3339);
    let delivered = st
        .key_created_at
        .as_deref()
        .and_then(schedule::parse_rfc3339);
    if let (Some(at), Some(delivered)) = (used, delivered)
        && at > delivered
        && before != st.previous_key_last_used_at
    {
        let note = format!(
            "previous access key {prev} of IAM user {} was used at {} after key {} was delivered: a workload still holds the old key",
            run.user(),
            rfc3339(at),
            st.access_key_id.as_deref().unwrap_or_default()
        );
        run.event(true, "PreviousKeyStillUsed", note).await;
    }
    Ok(())
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
