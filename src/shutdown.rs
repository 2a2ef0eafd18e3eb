//! One shutdown request, fanned out to every controller and the leader election.

use std::sync::{Arc, Mutex};

/// Fans one shutdown request out to every controller. Each gets its own future: the
/// controller runtime needs one that is `Send + Sync`, which a oneshot receiver is.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Mutex<(bool, Vec<tokio::sync::oneshot::Sender<()>>)>>,
}

impl Shutdown {
    /// A future that completes once [`Shutdown::trigger`] was called.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut inner = self.inner.lock().expect("shutdown lock");
        if inner.0 {
            let _ = tx.send(());
        } else {
            inner.1.push(tx);
        }
        async move {
            let _ = rx.await;
        }
    }

    pub fn trigger(&self) {
        let mut inner = self.inner.lock().expect("shutdown lock");
        inner.0 = true;
        for tx in inner.1.drain(..) {
            let _ = tx.send(());
        }
    }
}
