//! IamScope status: the namespaces a scope governs now, and whether any of them is
//! also governed by another scope (then every object there is `ScopeConflict`, and the
//! scope shows it). What a scope grants is applied by the other controllers, which
//! watch scopes and namespaces (see `reconciler::governance_watches`).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};

use super::{Context, Error, Shutdown};
use crate::api::{IamScope, IamScopeStatus};
use crate::reason::Reason;
use crate::status::{self, Outcome};
use crate::trust::{namespace_labels, selects};

/// Run the IamScope status controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let scopes: Api<IamScope> = Api::all(ctx.client.clone());
    let c = Controller::new(scopes, super::watch_config()).graceful_shutdown_on(shutdown.wait());
    let store = c.store();
    let c = c.watches(
        Api::<Namespace>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |_| {
            store
                .state()
                .iter()
                .map(|s| ObjectRef::from_obj(&**s))
                .collect::<Vec<_>>()
        },
    );
    let metrics = ctx.metrics.clone();
    c.run(reconcile, error_policy, ctx)
        .for_each(|res| {
            match res {
                Ok(_) => metrics.watch_ok("IamScope"),
                Err(kube::runtime::controller::Error::QueueError(e)) => {
                    metrics.watch_error("IamScope");
                    tracing::warn!(error = %e, "IamScope watch failed; retrying with backoff")
                }
                Err(e) => tracing::debug!(error = %e, "IamScope reconcile failed"),
            }
            async {}
        })
        .await;
}

fn error_policy(s: Arc<IamScope>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(scope = %s.name_any(), error = %e, "IamScope status failed");
    Action::requeue(std::time::Duration::from_secs(10))
}

async fn reconcile(s: Arc<IamScope>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let all_ns = namespaces.list(&Default::default()).await?.items;
    let scopes: Api<IamScope> = Api::all(ctx.client.clone());
    let all_scopes = scopes.list(&Default::default()).await?.items;
    let mut governed = vec![];
    let mut conflicts = vec![];
    for ns in &all_ns {
        let labels = namespace_labels(ns);
        if !selects(&s, &labels) {
            continue;
        }
        governed.push(ns.name_any());
        let others: Vec<String> = all_scopes
            .iter()
            .filter(|o| o.name_any() != s.name_any() && selects(o, &labels))
            .map(|o| o.name_any())
            .collect();
        if !others.is_empty() {
            conflicts.push(format!("{} (also {})", ns.name_any(), others.join(", ")));
        }
    }
    governed.sort();
    let selector_ok = kube::core::Selector::try_from(s.spec.namespace_selector.clone()).is_ok();
    let outcome = if !selector_ok {
        Outcome::stalled(
            Reason::InvalidSpec,
            "spec.namespaceSelector: cannot be read as a label selector; it selects no namespace",
        )
    } else if !conflicts.is_empty() {
        Outcome::stalled(
            Reason::ScopeConflict,
            format!(
                "namespaces governed by another IamScope too (their objects are ScopeConflict): {}",
                conflicts.join("; ")
            ),
        )
    } else {
        Outcome::synced(format!("governs {} namespace(s)", governed.len()))
    };
    let current = s.status.clone().unwrap_or_default();
    let generation = s.meta().generation;
    let next = IamScopeStatus {
        observed_generation: generation,
        conditions: status::conditions(&current.conditions, generation, &outcome),
        namespaces: governed,
    };
    status::patch(&scopes, &*s, s.status.as_ref(), &next).await?;
    Ok(Action::requeue(ctx.settings.resync))
}
