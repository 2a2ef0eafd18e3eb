//! Turning the writes a reconcile made into one event: `Updated`, or `DriftCorrected`
//! when the object was already in sync for its generation (someone changed AWS behind
//! the operator's back), which also counts in the drift metric.
//!
//! One event per reconcile, listing every change, rather than one per write: a user
//! reads one line per reconcile in `kubectl describe`, and the API server stores one
//! object rather than several.

use super::Context;
use super::reconciler::{Managed, StatusFields};

/// Collects the changes of one reconcile; [`Changes::publish`] reports them.
pub struct Changes<'a, K: Managed> {
    ctx: &'a Context,
    obj: &'a K,
    in_sync_before: bool,
    /// Right after a create the `Created` event says it all.
    quiet: bool,
    notes: Vec<String>,
    /// Changes that follow a referenced ConfigMap (see [`Changes::followed`]).
    followed: Vec<String>,
}

impl<'a, K: Managed> Changes<'a, K> {
    pub fn new(ctx: &'a Context, obj: &'a K) -> Self {
        Self {
            ctx,
            obj,
            in_sync_before: in_sync(obj),
            quiet: false,
            notes: vec![],
            followed: vec![],
        }
    }

    /// A recorder that publishes nothing (the writes that complete a create).
    pub fn quiet(ctx: &'a Context, obj: &'a K) -> Self {
        Self {
            quiet: true,
            ..Self::new(ctx, obj)
        }
    }

    /// Record one change described by `note`.
    pub fn made(&mut self, note: String) {
        if self.quiet {
            return;
        }
        if self.in_sync_before {
            self.ctx.metrics.drift_corrected(K::KIND);
        }
        self.notes.push(note);
    }

    /// Record a change of a document that comes from a ConfigMap: an update, never
    /// counted as drift. A reconcile cannot tell a ConfigMap edit (the usual cause, and
    /// no generation change) from a change made in AWS.
    pub fn followed(&mut self, note: String) {
        if !self.quiet {
            self.followed.push(note);
        }
    }

    /// The result of one write: recorded (`note`; as [`Changes::followed`] when
    /// `from_config_map`) when it was made. On a failure the changes made before it are
    /// published, so a partial apply is reported too, and the error is returned for
    /// the caller's `?`.
    pub async fn record<T, E>(
        &mut self,
        result: Result<T, E>,
        from_config_map: bool,
        note: impl FnOnce() -> String,
    ) -> Result<T, E> {
        match result {
            Ok(out) if from_config_map => {
                self.followed(note());
                Ok(out)
            }
            Ok(out) => {
                self.made(note());
                Ok(out)
            }
            Err(e) => {
                self.publish().await;
                Err(e)
            }
        }
    }

    /// Publish the changes recorded so far as one event (none when nothing changed),
    /// and those that follow a ConfigMap as an `Updated` event of their own.
    pub async fn publish(&mut self) {
        if !self.followed.is_empty() {
            let notes = std::mem::take(&mut self.followed).join("; ");
            self.ctx.event(self.obj, false, "Updated", notes).await;
        }
        if self.notes.is_empty() {
            return;
        }
        let notes = std::mem::take(&mut self.notes).join("; ");
        let (reason, note) = if self.in_sync_before {
            (
                "DriftCorrected",
                format!("changed outside iamwright, set back to the spec: {notes}"),
            )
        } else {
            ("Updated", notes)
        };
        self.ctx.event(self.obj, false, reason, note).await;
    }
}

/// Ready=True with reason Synced, set from the object's current generation.
pub fn in_sync<K: Managed>(obj: &K) -> bool {
    let generation = obj.meta().generation;
    obj.status()
        .map(|s| {
            s.conditions().iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.reason == "Synced"
                    && c.observed_generation == generation
            })
        })
        .unwrap_or(false)
}
