//! Leader election over a coordination.k8s.io Lease (kube-lease-manager): with
//! `--leader-elect`, only the holder of the Lease reconciles. A replica that loses the
//! Lease stops its controllers and exits, so two replicas never write at once; a
//! replica shut down gracefully releases the Lease so a standby takes over at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::RunArgs;
use crate::controllers::Shutdown;
use crate::operator::anyhow_free::Result;

/// The Lease's name, in `--leader-election-namespace`.
pub const LEASE_NAME: &str = "iamwright-leader";
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
}

impl Leadership {
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
    let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .build()
        .await
        .map_err(|e| format!("leader election: {e}"))?;
    let (mut rx, task) = manager.watch().await;
    tracing::info!(%identity, lease = %format!("{namespace}/{LEASE_NAME}"), "waiting to become the leader");
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
    tokio::spawn(async move {
        let mut rx = watch_rx;
        loop {
            if rx.changed().await.is_err() {
                return; // released on shutdown
            }
            if !*rx.borrow_and_update() {
                tracing::error!("lost the leader lease; stopping the controllers");
                flag.store(true, Ordering::Relaxed);
                stop.trigger();
                return;
            }
        }
    });
    Ok(Some(Leadership { rx, task, lost }))
}
