//! Apply one action of the state machine (decide.rs) and update what was observed to
//! match, so the next decision sees the state the action left.

use chrono::Utc;

use super::decide::{self, Action, SecretView, Why};
use super::hygiene::previous_use;
use super::keys::{self, KeyInfo};
use super::rollouts::restarts_workloads;
use super::run::Run;
use super::schedule::rfc3339;
use super::secret::{self, Observed};
use super::state::Observation;
use super::{KIND, create};
use crate::api::KeyStatus;
use crate::controllers::{Error, key_of};

/// Apply `action`.
pub async fn take(
    run: &mut Run<'_>,
    action: Action,
    seen: &mut Observation,
    name: &str,
    user_arn: &str,
) -> Result<(), Error> {
    match action {
        Action::DeleteOrphans(ids) => delete_orphans(run, &mut seen.keys, &ids).await,
        Action::CloseCreate {
            delivered,
            retiring,
        } => close_create(run, &seen.keys, delivered, retiring, name, user_arn).await,
        Action::Rerender => rerender(run, seen, name).await,
        Action::TakeBack { id } => {
            rerender(run, seen, name).await?;
            let created = created_of(&seen.keys, &id);
            run.update(|st| {
                st.key_created_at = created;
                st.access_key_id = Some(id);
                st.secret_name = Some(name.to_string());
            })
            .await
        }
        Action::Create {
            why,
            free,
            retiring,
        } => create(run, seen, name, why, &free, retiring, user_arn).await,
        Action::ForgetPrevious => run.update(|st| st.previous_access_key_id = None).await,
        Action::Retire { id } => {
            // The last check of AWS's procedure: was it used since the new key came?
            previous_use(run, &mut run.recorded.clone(), &id).await?;
            retire(run, &mut seen.keys).await
        }
        Action::Deactivate { id } => set_previous(run, &mut seen.keys, id, false).await,
        Action::Reactivate { id } => set_previous(run, &mut seen.keys, id, true).await,
        Action::SetKeyStatus { id, active } => {
            set_status(run, &mut seen.keys, &id, active).await?;
            let (reason, want) = match active {
                true => ("KeyActivated", KeyStatus::Active),
                false => ("KeyDeactivated", KeyStatus::Inactive),
            };
            run.event(false, reason, format!("access key {id} is now {want:?}"))
                .await;
            Ok(())
        }
    }
}

fn created_of(keys: &[KeyInfo], id: &str) -> Option<String> {
    keys.iter()
        .find(|k| k.id == id)
        .and_then(|k| k.created)
        .map(rfc3339)
}

/// Delete the keys an interrupted create left that no Secret holds.
async fn delete_orphans(
    run: &Run<'_>,
    keys: &mut Vec<KeyInfo>,
    ids: &[String],
) -> Result<(), Error> {
    for id in ids {
        keys::delete(&run.ctx.aws().await, run.user(), id).await?;
        tracing::info!(object = %key_of(run.k), key = %id, "deleted the orphaned key of an interrupted create");
        let note = format!(
            "deleted access key {id} of IAM user {}: it was created by an interrupted reconcile and never reached the Secret",
            run.user()
        );
        run.event(true, "OrphanKeyDeleted", note).await;
    }
    keys.retain(|x| !ids.contains(&x.id));
    Ok(())
}

/// Close an interrupted create's record; a key it `delivered` becomes current.
async fn close_create(
    run: &mut Run<'_>,
    keys: &[KeyInfo],
    delivered: Option<String>,
    retiring: Option<String>,
    name: &str,
    user_arn: &str,
) -> Result<(), Error> {
    let restarts = restarts_workloads(run.k);
    run.update(|st| {
        if let Some(id) = delivered {
            if let Some(r) = st
                .pending_key
                .as_ref()
                .and_then(|p| p.rotate_request.clone())
            {
                st.rotate_request = Some(r);
            }
            st.previous_access_key_id = retiring;
            st.key_created_at = created_of(keys, &id);
            st.access_key_id = Some(id);
            st.secret_name = Some(name.to_string());
            decide::mark_delivered(st, restarts, Utc::now());
        }
        st.user_arn = Some(user_arn.to_string());
        st.pending_key = None;
    })
    .await
}

/// Write the held key into the Secret again when its rendering is stale.
async fn rerender(run: &Run<'_>, seen: &mut Observation, name: &str) -> Result<(), Error> {
    // decide asks for Rerender and TakeBack only when the Secret holds the key.
    let h = seen.held.as_ref().expect("the Secret holds the key");
    if matches!(
        seen.secret,
        SecretView::Ours {
            up_to_date: false,
            ..
        }
    ) {
        secret::write(&run.secrets, &secret::render(run.k, name, h)).await?;
    }
    seen.secret = SecretView::Ours {
        held: Some(h.id.clone()),
        shown: Some(h.id.clone()),
        up_to_date: true,
    };
    Ok(())
}

/// Make a key and deliver it; a healed or moved key's predecessor retires at once.
async fn create(
    run: &mut Run<'_>,
    seen: &mut Observation,
    name: &str,
    why: Why,
    free: &[String],
    retiring: Option<String>,
    user_arn: &str,
) -> Result<(), Error> {
    let old_name = run.recorded.secret_name.clone();
    create::create_and_deliver(run, &mut seen.keys, name, free, retiring, user_arn).await?;
    let new_id = run.recorded.access_key_id.clone().unwrap_or_default();
    seen.secret = SecretView::Ours {
        held: Some(new_id.clone()),
        shown: Some(new_id.clone()),
        up_to_date: true,
    };
    seen.held = None;
    announce(run, &why, &new_id, name).await;
    if let Why::Heal { .. } | Why::Moved { .. } = why {
        retire(run, &mut seen.keys).await?;
    }
    if let (Why::Moved { .. }, Some(old)) = (&why, old_name) {
        delete_old_secret(run, &old).await?;
    }
    Ok(())
}

/// Set the previous key Inactive after its grace period, or Active again on request.
async fn set_previous(
    run: &mut Run<'_>,
    keys: &mut [KeyInfo],
    id: String,
    active: bool,
) -> Result<(), Error> {
    let mut st = run.recorded.clone();
    if !active {
        // AWS's procedure: confirm the old key is unused before deactivating.
        previous_use(run, &mut st, &id).await?;
    }
    set_status(run, keys, &id, active).await?;
    let (reason, note) = if active {
        (
            "PreviousKeyReactivated",
            format!(
                "previous access key {id} of IAM user {} is Active again ({} is set); it is kept until the annotation is removed",
                run.user(),
                crate::api::REACTIVATE_ANNOTATION
            ),
        )
    } else {
        (
            "PreviousKeyDeactivated",
            format!(
                "previous access key {id} of IAM user {} is now Inactive after the grace period; it is deleted later (annotate {}=<any> to reactivate it meanwhile)",
                run.user(),
                crate::api::REACTIVATE_ANNOTATION
            ),
        )
    };
    run.event(false, reason, note).await;
    let (phase, previous) = decide::settled_phase(&st, keys);
    st.rotation_phase = Some(phase);
    st.previous_key_status = previous;
    run.record(st).await
}

/// Set key `id` Active or Inactive in AWS, and in `keys`.
async fn set_status(
    run: &Run<'_>,
    keys: &mut [KeyInfo],
    id: &str,
    active: bool,
) -> Result<(), Error> {
    let want = if active {
        KeyStatus::Active
    } else {
        KeyStatus::Inactive
    };
    keys::set_status(&run.ctx.aws().await, run.user(), id, want).await?;
    for x in keys.iter_mut().filter(|x| x.id == id) {
        x.active = active;
    }
    Ok(())
}

/// Deactivate and delete the previous key, and forget it.
pub async fn retire(run: &mut Run<'_>, keys: &mut Vec<KeyInfo>) -> Result<(), Error> {
    let Some(prev) = run.recorded.previous_access_key_id.clone() else {
        return Ok(());
    };
    let user = run.user().to_string();
    if let Some(info) = keys.iter().find(|x| x.id == prev) {
        if info.active {
            keys::set_status(&run.ctx.aws().await, &user, &prev, KeyStatus::Inactive).await?;
        }
        keys::delete(&run.ctx.aws().await, &user, &prev).await?;
        let note = format!("deleted previous access key {prev} of IAM user {user}");
        run.event(false, "PreviousKeyDeleted", note).await;
    }
    keys.retain(|x| x.id != prev);
    run.update(|st| st.previous_access_key_id = None).await
}

/// After a change of spec.secretName, the old Secret (if still ours) goes.
async fn delete_old_secret(run: &mut Run<'_>, old: &str) -> Result<(), Error> {
    if let Observed::Ours { .. } = secret::observe(run.k, old, run.secrets.get_opt(old).await?) {
        match run.secrets.delete(old, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The event for a new key, by why it was made.
async fn announce(run: &Run<'_>, why: &Why, new_id: &str, name: &str) {
    let user = run.user();
    let (warning, reason, note) = match why {
        Why::First => (
            false,
            "KeyCreated",
            format!("created access key {new_id} of IAM user {user}; written to Secret {name}"),
        ),
        Why::Moved { from } => (
            false,
            "KeyCreated",
            format!(
                "created access key {new_id} of IAM user {user}; written to Secret {name} (spec.secretName changed from {from})"
            ),
        ),
        Why::Heal { stale } => {
            run.ctx.metrics.drift_corrected(KIND);
            (
                true,
                "SecretRecreated",
                format!(
                    "the Secret {name} or its key was lost or edited; created access key {new_id} and wrote it to the Secret{}",
                    stale
                        .as_ref()
                        .map(|s| format!("; stale key {s} is deleted"))
                        .unwrap_or_default()
                ),
            )
        }
        Why::Rotate { current } => (
            false,
            "Rotating",
            format!(
                "rotated: access key {new_id} is in Secret {name}; previous key {current} stays active for the grace period"
            ),
        ),
        Why::Requested { current, value } => (
            false,
            "Rotating",
            format!(
                "rotated on request ({}={value}): access key {new_id} is in Secret {name}; previous key {current} follows the rotation procedure (grace period, then Inactive, then deleted; deleted at once without spec.rotation)",
                crate::api::ROTATE_ANNOTATION
            ),
        ),
    };
    run.event(warning, reason, note).await;
}
