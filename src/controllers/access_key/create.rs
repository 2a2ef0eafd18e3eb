//! Create a key and deliver it into the Secret without ever losing or leaking one:
//! the intent is recorded first (status.pendingKey), the new key is verified before it
//! is written, and a key that cannot be delivered is deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::decide;
use super::failpoints::{crash_point, failpoint};
use super::keys::{self, KeyInfo, limit_exceeded};
use super::rollouts::restarts_workloads;
use super::run::Run;
use super::schedule::rfc3339;
use super::secret::{self, KeyMaterial, Observed};
use crate::api::{PendingKey, RotationPhase};
use crate::controllers::{Error, key_of};
use crate::reason::Reason;

/// Create a key and deliver it into the Secret, recording the intent first. `free` are
/// our keys that may be deleted to make room (retiring first); `retiring` becomes
/// `previousAccessKeyId`. On any failure after the create, the new key is deleted.
pub async fn create_and_deliver(
    run: &mut Run<'_>,
    keys: &mut Vec<KeyInfo>,
    name: &str,
    free: &[String],
    retiring: Option<String>,
    user_arn: &str,
) -> Result<(), Error> {
    make_room(run, keys, free, retiring.as_ref()).await?;
    // The Secret must be writable before a key exists that only it can hold.
    secret::check_writable(&run.secrets, run.k, name)
        .await
        .map_err(|e| secret_not_writable(name, e))?;
    let keys_before = keys.iter().map(|x| x.id.clone()).collect();
    let rotate_request = run.rotate_request.clone();
    run.update(|st| {
        st.pending_key = Some(PendingKey {
            started_at: rfc3339(Utc::now()),
            keys_before,
            created_key_id: None,
            rotate_request,
        })
    })
    .await?;
    let (key, created) = create(run).await?;
    verify_or_delete(run, keys, &key, user_arn).await?;
    crash_point("after-verify");
    deliver(run, name, &key).await?;
    crash_point("after-secret-write");
    keys.push(KeyInfo {
        id: key.id.clone(),
        active: true,
        created: Some(created),
    });
    record_delivered(run, keys, &key.id, created, retiring, name).await
}

/// Delete our keys in `free` while AWS's two-key limit leaves no room.
async fn make_room(
    run: &mut Run<'_>,
    keys: &mut Vec<KeyInfo>,
    free: &[String],
    retiring: Option<&String>,
) -> Result<(), Error> {
    let user = run.user().to_string();
    for id in free {
        if keys.len() < 2 {
            break;
        }
        keys::delete(&run.ctx.aws().await, &user, id).await?;
        keys.retain(|x| &x.id != id);
        if run.recorded.previous_access_key_id.as_ref() == Some(id) {
            run.update(|st| st.previous_access_key_id = None).await?;
        }
    }
    if keys.len() >= 2 {
        let ours: BTreeSet<&String> = free.iter().chain(retiring).collect();
        let foreign: Vec<&str> = keys
            .iter()
            .filter(|x| !ours.contains(&x.id))
            .map(|x| x.id.as_str())
            .collect();
        return Err(limit_exceeded(&user, &foreign));
    }
    Ok(())
}

/// CreateAccessKey, then name the new key in the record at once, so recovery deletes
/// exactly it.
async fn create(run: &mut Run<'_>) -> Result<(KeyMaterial, DateTime<Utc>), Error> {
    // No SDK retry here (see keys::create): an error may still mean a key was made,
    // which status.pendingKey lets the next reconcile find and delete.
    let (key, created) = keys::create(&run.ctx.aws().await, run.user()).await?;
    tracing::debug!(object = %key_of(run.k), key = %key.id, "created access key");
    crash_point("after-create-access-key");
    // If this write fails the key is still delivered; recovery then falls back to the
    // key set.
    let recorded = run
        .update(|st| {
            if let Some(p) = st.pending_key.as_mut() {
                p.created_key_id = Some(key.id.clone());
            }
            st.rotation_phase = Some(RotationPhase::Verifying);
        })
        .await;
    if let Err(e) = recorded {
        tracing::warn!(object = %key_of(run.k), error = %e, "recording the created key id failed; delivering it anyway");
    }
    Ok((key, created))
}

/// Verified before delivered: no Secret ever holds a key AWS does not accept. A key
/// that never verifies is deleted (status.pendingKey covers a crash meanwhile).
async fn verify_or_delete(
    run: &mut Run<'_>,
    keys: &[KeyInfo],
    key: &KeyMaterial,
    user_arn: &str,
) -> Result<(), Error> {
    let Err(e) = verify(run, key, user_arn).await else {
        return Ok(());
    };
    let user = run.user().to_string();
    keys::delete(&run.ctx.aws().await, &user, &key.id).await?;
    run.update(|st| {
        st.pending_key = None;
        st.rotation_phase = Some(decide::settled_phase(st, keys).0);
    })
    .await?;
    let note = format!(
        "new access key {} of IAM user {user} was deleted: STS GetCallerIdentity did not accept it ({e}); the Secret keeps its key and the creation is retried",
        key.id
    );
    run.event(true, "KeyNotVerified", note).await;
    Err(Error::Waiting {
        field: None,
        reason: Reason::Verifying,
        message: format!(
            "Verifying: new access key {} of IAM user {user} was not accepted by STS GetCallerIdentity within {}s ({e}); it was deleted and is replaced after a backoff",
            key.id,
            VERIFY_WAITS.iter().sum::<Duration>().as_secs()
        ),
    })
}

/// Write the new key into the Secret. A key no Secret holds is deleted at once: nobody
/// could ever read its secret again.
async fn deliver(run: &mut Run<'_>, name: &str, key: &KeyMaterial) -> Result<(), Error> {
    let written = if failpoint("fail-secret-write") {
        Err(Error::Waiting {
            field: None,
            reason: Reason::AwsError,
            message: "failpoint fail-secret-write: the Secret write failed".into(),
        })
    } else {
        secret::write(&run.secrets, &secret::render(run.k, name, key))
            .await
            .map_err(Error::from)
    };
    let Err(e) = written else {
        return Ok(());
    };
    // An error does not prove the write failed (a timeout after the API server
    // stored it): if the Secret holds the new key, it was delivered.
    let delivered = match run.secrets.get_opt(name).await {
        Ok(s) => matches!(
            secret::observe(run.k, name, s),
            Observed::Ours { shown_id: Some(id), .. } if id == key.id
        ),
        Err(_) => false,
    };
    if delivered {
        tracing::info!(object = %key_of(run.k), "the Secret write reported an error but the Secret holds the new key");
        return Ok(());
    }
    // If the delete fails too, status.pendingKey stays and the next reconcile deletes it.
    keys::delete(&run.ctx.aws().await, run.user(), &key.id).await?;
    run.update(|st| st.pending_key = None).await?;
    Err(e)
}

/// Record the delivered key `id` as current, in the same write as the rollouts' wait.
async fn record_delivered(
    run: &mut Run<'_>,
    keys: &[KeyInfo],
    id: &str,
    created: DateTime<Utc>,
    retiring: Option<String>,
    name: &str,
) -> Result<(), Error> {
    let restarts = restarts_workloads(run.k);
    run.update(|st| {
        // The key being replaced retires; without one (first key, or a key lost in AWS)
        // a previous key still in its grace period stays the one retiring.
        st.previous_access_key_id = retiring
            .or(st.previous_access_key_id.take())
            .filter(|r| keys.iter().any(|x| &x.id == r));
        st.access_key_id = Some(id.to_string());
        st.key_created_at = Some(rfc3339(created));
        st.secret_name = Some(name.to_string());
        // In the same write as the delivery: a restart never loses the wait or skips it.
        decide::mark_delivered(st, restarts, Utc::now());
        if let Some(r) = st.pending_key.take().and_then(|p| p.rotate_request) {
            st.rotate_request = Some(r);
        }
        st.rotation_phase = Some(decide::settled_phase(st, keys).0);
    })
    .await
}

/// The waits between verification attempts of a new key: IAM takes a few seconds to
/// make a new key usable everywhere (`InvalidClientTokenId` meanwhile).
const VERIFY_WAITS: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Check the new key with STS GetCallerIdentity signed with it, until STS names the
/// user or the waits run out. The first refusal is shown in the conditions (reason
/// `Verifying`); success is event `KeyVerified`.
async fn verify(run: &mut Run<'_>, key: &KeyMaterial, user_arn: &str) -> Result<(), String> {
    let mut waits = VERIFY_WAITS.iter();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let problem = match keys::caller_arn(&run.ctx.aws().await, key).await {
            Ok(arn) if keys::is_user(&arn, user_arn) => break,
            Ok(arn) => format!("it answered {arn:?}, not {user_arn}"),
            Err(e) => e.to_string(),
        };
        let Some(wait) = waits.next() else {
            return Err(problem);
        };
        if attempts == 1 {
            let message = format!(
                "Verifying: new access key {} of IAM user {} is not accepted by STS GetCallerIdentity yet ({problem}); IAM propagates new keys within seconds, retried for up to {}s before it is written to the Secret",
                key.id,
                run.user(),
                VERIFY_WAITS.iter().sum::<Duration>().as_secs()
            );
            if let Err(e) = run.progress(Reason::Verifying, message).await {
                tracing::debug!(object = %key_of(run.k), error = %e, "showing the verification wait failed");
            }
        }
        tokio::time::sleep(*wait).await;
    }
    let note = format!(
        "new access key {} of IAM user {} verified with STS GetCallerIdentity (attempt {attempts})",
        key.id,
        run.user()
    );
    run.event(false, "KeyVerified", note).await;
    Ok(())
}

/// Why the Secret cannot be written, as the object shows it: a refused name or
/// content is the spec's to fix (`Stalled`); a quota or an admission webhook may
/// change on its own, so that is retried with backoff.
fn secret_not_writable(name: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => Error::at(
            Reason::InvalidSpec,
            "spec.secretName",
            format!(
                "Secret {name:?} cannot be written: {}; no access key was created",
                s.message
            ),
        ),
        kube::Error::Api(s) => Error::Waiting {
            field: Some("spec.secretName".into()),
            reason: Reason::KubernetesError,
            message: format!(
                "Secret {name:?} cannot be written now ({} {}): {}; no access key is created until it can",
                s.code, s.reason, s.message
            ),
        },
        _ => Error::Kube(e),
    }
}
