//! When the keys were last used (status.lastUsedAt, lastUsedService,
//! previousKeyLastUsedAt), and the warning when the previous key is still used after
//! the new one was delivered.

use super::keys;
use super::run::Run;
use super::schedule::{self, rfc3339};
use crate::api::IamUserAccessKeyStatus;
use crate::controllers::{Error, key_of};

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
