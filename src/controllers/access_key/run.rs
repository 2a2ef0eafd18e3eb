//! One reconcile's view of the object: its spec and the status as last written, and
//! the status writes each step makes before the next AWS call.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::last_used::LastUsedReads;
use crate::api::{IamUserAccessKey, IamUserAccessKeyStatus};
use crate::controllers::{Context, Error};
use crate::reason::Reason;
use crate::status;

/// The status is read fresh from the API server, then updated by this reconcile's own
/// writes, so a decision is never taken on a cached status that misses a key just
/// created.
pub struct Run<'a> {
    pub ctx: &'a Context,
    pub k: &'a IamUserAccessKey,
    pub api: Api<IamUserAccessKey>,
    pub secrets: Api<Secret>,
    pub recorded: IamUserAccessKeyStatus,
    /// The resourceVersion of `recorded`: every status write is conditional on it, so
    /// two writers (an old leader, a stale cache) can never interleave key records.
    pub rv: String,
    /// The annotation `iamwright.dev/rotate` on the object as read with `recorded`.
    pub rotate_request: Option<String>,
    /// The annotation `iamwright.dev/reactivate-previous` is set.
    pub hold_previous: bool,
    /// When the controller last read the keys' last use (at most once per resync).
    pub last_used: &'a LastUsedReads,
}

impl<'a> Run<'a> {
    /// The run of `k` on `fresh`, its copy as just read from the API server.
    pub fn new(
        ctx: &'a Context,
        k: &'a IamUserAccessKey,
        api: Api<IamUserAccessKey>,
        fresh: IamUserAccessKey,
        last_used: &'a LastUsedReads,
    ) -> Self {
        let annotations = fresh.metadata.annotations.unwrap_or_default();
        Run {
            ctx,
            k,
            api,
            secrets: Api::namespaced(ctx.client.clone(), &k.namespace().unwrap_or_default()),
            recorded: fresh.status.unwrap_or_default(),
            rv: fresh.metadata.resource_version.unwrap_or_default(),
            rotate_request: annotations.get(crate::api::ROTATE_ANNOTATION).cloned(),
            hold_previous: annotations.contains_key(crate::api::REACTIVATE_ANNOTATION),
            last_used,
        }
    }

    /// Write `next` as the status now, before the next AWS step (e.g. the intent to
    /// create a key), conditional on the resourceVersion read, like the final report.
    pub async fn record(&mut self, next: IamUserAccessKeyStatus) -> Result<(), Error> {
        if let Some(rv) =
            status::patch_at(&self.api, self.k, Some(&self.recorded), &next, &self.rv).await?
        {
            self.rv = rv;
        }
        self.recorded = next;
        Ok(())
    }

    /// Change the recorded status with `change` and write it (see [`Run::record`]).
    pub async fn update(
        &mut self,
        change: impl FnOnce(&mut IamUserAccessKeyStatus),
    ) -> Result<(), Error> {
        let mut st = self.recorded.clone();
        change(&mut st);
        self.record(st).await
    }

    pub fn user(&self) -> &str {
        &self.k.spec.user_name
    }

    /// Show a step in progress in the conditions now (e.g. the wait for a new key to
    /// verify), before the reconcile's final report.
    pub async fn progress(&mut self, reason: Reason, message: String) -> Result<(), Error> {
        let (generation, outcome) = (
            self.k.metadata.generation,
            status::Outcome::progressing(reason, message),
        );
        self.update(|st| st.conditions = status::conditions(&st.conditions, generation, &outcome))
            .await
    }

    /// Send an event about the object (a warning when `warning`).
    pub async fn event(&self, warning: bool, reason: &str, note: String) {
        self.ctx.event(self.k, warning, reason, note).await;
    }
}
