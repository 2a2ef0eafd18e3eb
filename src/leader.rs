//! Leader election over a coordination.k8s.io Lease (kube-lease-manager): with
//! `--leader-elect`, only the holder of the Lease reconciles. A replica that loses the
//! Lease stops its controllers and exits, so two replicas never write at once; a
//! replica shut down gracefully releases the Lease so a standby takes over at once.
//!
//! Losing the Lease is not always observable: a leader cut off from the API server
//! cannot renew, and cannot learn that another replica took over. So AWS writes are
//! fenced: they are allowed only while the Lease, as last read from the API server,
//! names this replica and has not expired. A leader that cannot confirm that stops
//! writing to AWS before a successor can start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::Fence;
pub use crate::config::DEFAULT_LEASE_NAME;
use crate::config::{RunArgs, lease_name};
use crate::error::anyhow_free::Result;
use crate::shutdown::Shutdown;

/// Seconds a Lease is valid without renewal: a crashed leader is replaced within this.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const GRACE_SECONDS: u64 = 5;

/// Held leadership.
pub struct Leadership {
    rx: watch::Receiver<bool>,
    task: JoinHandle<
        std::result::Result<
            kube_lease_manager::LeaseManager,
            kube_lease_manager::LeaseManagerError,
        >,
    >,
    lost: Arc<AtomicBool>,
    fence: Arc<Fence>,
}

impl Leadership {
    /// The fence AWS writes must pass while this leadership lasts.
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    /// Whether the Lease was lost (rather than the process asked to stop).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Give the Lease up: closing the channel makes the manager release it.
    pub async fn release(self) {
        drop(self.rx);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease failed"),
            Err(e) => tracing::warn!(error = %e, "leader lease task failed"),
        }
    }
}

/// Wait until this replica holds the Lease (None: shutdown came first). Once held, a
/// background task triggers `shutdown` if the Lease is lost.
pub async fn acquire(
    client: &Client,
    args: &RunArgs,
    shutdown: &Shutdown,
) -> Result<Option<Leadership>> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let lease_name = lease_name(args);
    let manager = LeaseManagerBuilder::new(client.clone(), &lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .build()
        .await
        .map_err(|e| format!("leader election: {e}"))?;
    let (mut rx, task) = manager.watch().await;
    tracing::info!(%identity, lease = %format!("{namespace}/{lease_name}"), "waiting to become the leader");
    while !*rx.borrow_and_update() {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return Err("leader election stopped unexpectedly".into());
                }
            }
            _ = shutdown.wait() => {
                drop(rx);
                let _ = task.await;
                return Ok(None);
            }
        }
    }
    tracing::info!(%identity, "became the leader");
    let lost = Arc::new(AtomicBool::new(false));
    let (watch_rx, flag, stop) = (rx.clone(), lost.clone(), shutdown.clone());
    let stopping = shutdown.wait();
    tokio::spawn(async move {
        let mut rx = watch_rx;
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return; // the manager is gone
                    }
                    if !*rx.borrow_and_update() {
                        tracing::error!("lost the leader lease; stopping the controllers");
                        flag.store(true, Ordering::Relaxed);
                        stop.trigger();
                        return;
                    }
                }
                // On shutdown this receiver must go too: the manager releases the Lease
                // only once every receiver is dropped, so keeping it would hold the Lease
                // until the process is killed (and a standby would wait for its expiry).
                _ = &mut stopping => return,
            }
        }
    });
    let fence = Arc::new(Fence::default());
    fence.confirm_for(Duration::from_secs(LEASE_SECONDS - FENCE_MARGIN_SECONDS));
    tokio::spawn(confirm_loop(
        Api::namespaced(client.clone(), &namespace),
        lease_name,
        identity,
        fence.clone(),
        shutdown.clone(),
    ));
    Ok(Some(Leadership {
        rx,
        task,
        lost,
        fence,
    }))
}

/// Seconds taken off the Lease's expiry for clock skew between replicas.
const FENCE_MARGIN_SECONDS: u64 = 3;

/// Read the Lease every couple of seconds; while it names this replica, the fence
/// extends to its expiry (renewal time + duration, less a margin). A failed read
/// extends nothing, so the fence runs out by itself.
async fn confirm_loop(
    api: Api<Lease>,
    name: String,
    identity: String,
    fence: Arc<Fence>,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        if let Ok(lease) = api.get(&name).await
            && let Some(spec) = lease.spec
            && spec.holder_identity.as_deref() == Some(identity.as_str())
            && let Some(renewed) = spec.renew_time
        {
            let duration = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS as i32) as i64;
            let expires = renewed.0.as_second() + duration - FENCE_MARGIN_SECONDS as i64;
            let left = expires - chrono::Utc::now().timestamp();
            if left > 0 {
                fence.confirm_for(Duration::from_secs(left as u64));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = &mut stop => return,
        }
    }
}
