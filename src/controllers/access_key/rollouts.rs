//! `restartWorkloads`: roll the workloads reading the Secret to a new key, and hold the
//! previous key's grace period until they have rolled out (or the bound has passed).

use chrono::Utc;
use kube::ResourceExt;

use super::run::Run;
use super::schedule::{self, ROLLOUT_BOUND, Rollouts, rfc3339};
use super::state::{Rolling, Settled};
use super::workloads;
use crate::api::IamUserAccessKey;
use crate::controllers::Error;
use crate::reason::Reason;

pub fn restarts_workloads(k: &IamUserAccessKey) -> bool {
    k.spec
        .rotation
        .as_ref()
        .is_some_and(|r| r.restart_workloads)
}

/// The wait for the rollouts since `since`: where the key rests while it lasts, None
/// once the grace period has started (recorded, with its event).
pub async fn wait(
    run: &mut Run<'_>,
    name: &str,
    since: chrono::DateTime<Utc>,
) -> Result<Option<Settled>, Error> {
    let id = run.recorded.access_key_id.clone().unwrap_or_default();
    let pending = pending(run, name, &id, since).await?;
    match schedule::await_rollouts(since, &pending, Utc::now(), ROLLOUT_BOUND) {
        Rollouts::Wait { recheck, deadline } => Ok(Some(Settled {
            next: Some(recheck),
            rolling: Some(Rolling { pending, deadline }),
        })),
        Rollouts::Start { late } => {
            start_grace(run, name, &id, late).await?;
            Ok(None)
        }
    }
}

/// The workloads not rolled out to `id` yet (after rolling what still needs it).
async fn pending(
    run: &Run<'_>,
    name: &str,
    id: &str,
    since: chrono::DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    if !restarts_workloads(run.k) {
        // restartWorkloads was turned off meanwhile: nothing to await.
        return Ok(vec![]);
    }
    match rollouts_pending(run, name, id).await {
        Ok(pending) => Ok(pending),
        // Workloads that cannot be read (RBAC revoked) must not hold the previous key
        // for ever either: retried until the bound, then the grace period starts and
        // the error is what is reported.
        Err(e)
            if Utc::now()
                < since + chrono::Duration::from_std(ROLLOUT_BOUND).unwrap_or_default() =>
        {
            Err(e)
        }
        Err(e) => Ok(vec![format!("(the workloads could not be read: {e})")]),
    }
}

/// Start the previous key's grace period now, naming the workloads `late` to roll out.
async fn start_grace(
    run: &mut Run<'_>,
    name: &str,
    id: &str,
    late: Vec<String>,
) -> Result<(), Error> {
    let (warning, reason, note) = if late.is_empty() {
        (
            false,
            "WorkloadsRolledOut",
            format!(
                "the workloads reading Secret {name} run access key {id}; the previous key's grace period starts now"
            ),
        )
    } else {
        (
            true,
            "WorkloadsNotRolledOut",
            format!(
                "{} had not rolled out to access key {id} {}s after its delivery; the previous key's grace period starts anyway",
                late.join(", "),
                ROLLOUT_BOUND.as_secs()
            ),
        )
    };
    run.update(|st| {
        st.grace_started_at = Some(rfc3339(Utc::now()));
        st.workloads_not_rolled_out = late;
    })
    .await?;
    run.event(warning, reason, note).await;
    Ok(())
}

/// Roll what still needs it, then the workloads not rolled out to `id` yet.
async fn rollouts_pending(run: &Run<'_>, secret: &str, id: &str) -> Result<Vec<String>, Error> {
    restart(run, secret, id).await?;
    let ns = run.k.namespace().unwrap_or_default();
    Ok(workloads::not_rolled_out(&run.ctx.client, &ns, secret, id).await?)
}

/// Annotate the workloads reading the Secret with the new key id (event
/// `WorkloadsRestarted`). Without the RBAC for it the object says how to grant it.
pub async fn restart(run: &Run<'_>, secret: &str, id: &str) -> Result<(), Error> {
    let ns = run.k.namespace().unwrap_or_default();
    match workloads::restart(&run.ctx.client, &ns, secret, id).await {
        Ok(rolled) if rolled.is_empty() => Ok(()),
        Ok(rolled) => {
            let note = format!(
                "rolled {} to access key {id} (pod-template annotation {})",
                rolled.join(", "),
                workloads::ANNOTATION
            );
            run.event(false, "WorkloadsRestarted", note).await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Error::Waiting {
            field: Some("spec.rotation.restartWorkloads".into()),
            reason: Reason::KubernetesError,
            message: format!(
                "the operator may not list or patch the namespace's Deployments, StatefulSets and DaemonSets ({}); install the chart with rbac.restartWorkloads=true. The new key {id} is in Secret {secret}",
                s.message
            ),
        }),
        Err(e) => Err(e.into()),
    }
}
