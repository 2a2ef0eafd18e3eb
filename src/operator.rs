//! `iamwright run`: telemetry, clients, the HTTP endpoints and the controllers, with a
//! graceful stop on SIGTERM or SIGINT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

use crate::aws::Aws;
use crate::config::RunArgs;
use crate::controllers::{self, Context, Settings, Shutdown};
use crate::leader;
use crate::telemetry::{self, Metrics};

pub async fn run(args: RunArgs) -> anyhow_free::Result<()> {
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let http = tokio::spawn(telemetry::serve(
        metrics.clone(),
        args.metrics_bind_address,
        args.health_probe_bind_address,
        ready.clone(),
    ));

    let shutdown = Shutdown::default();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing reconciles in flight");
        trigger.trigger();
    });

    let client = Client::try_default()
        .await
        .map_err(|e| format!("Kubernetes client: {e}"))?;
    let aws = Aws::from_env(
        args.region.clone(),
        args.aws_max_requests_per_second,
        metrics.clone(),
    )
    .await;

    tokio::select! {
        r = wait_for_crds(&client) => r?,
        _ = shutdown.wait() => return Ok(()),
    }
    if let Some(selector) = &args.object_selector {
        check_selector(&client, selector).await?;
    }
    let settings = Settings {
        cluster_name: args.cluster_name.clone(),
        resync: args.resync_interval,
        instance_resync: args.instance_resync_interval,
        concurrency: args.concurrency,
        namespaces: args.watch_namespaces.clone(),
        object_selector: args.object_selector.clone(),
        required_permissions_boundary: args.required_permissions_boundary.clone(),
        deny_actions: args.deny_actions.clone(),
        trust: args.trust.clone(),
    };
    // Standby replicas are ready (they serve probes and metrics) but do not reconcile.
    ready.store(true, Ordering::Relaxed);
    let leadership = if args.leader_elect {
        match leader::acquire(&client, &args, &shutdown).await? {
            Some(l) => Some(l),
            None => return Ok(()), // shut down while standing by
        }
    } else {
        None
    };
    if let Some(l) = &leadership {
        aws.fence_writes(l.fence());
    }
    tracing::info!(cluster = %settings.cluster_name, namespaces = ?settings.namespaces, "starting controllers");
    let ctx = Arc::new(Context::new(client, aws, settings, metrics));
    // One controller per kind, all stopping together on shutdown.
    tokio::join!(
        controllers::policy::run(ctx.clone(), shutdown.clone()),
        controllers::role::run(ctx.clone(), shutdown.clone()),
        controllers::binding::run(ctx.clone(), shutdown.clone()),
        controllers::access_key::run(ctx.clone(), shutdown.clone()),
        controllers::group::run(ctx.clone(), shutdown.clone()),
        controllers::scope::run(ctx.clone(), shutdown.clone()),
    );
    http.abort();
    if let Some(l) = leadership {
        if l.lost() {
            return Err(
                "lost the leader lease; exiting so that only the new leader reconciles".into(),
            );
        }
        l.release().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The CRDs must be established before their watches can start.
async fn wait_for_crds(client: &Client) -> anyhow_free::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names = crate::crds::all()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect::<Vec<_>>();
    let mut logged = false;
    loop {
        let mut missing = vec![];
        for name in &names {
            let established = match api.get_opt(name).await {
                Ok(Some(crd)) => crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"),
                Ok(None) => false,
                Err(e) => return Err(format!("reading CRD {name}: {e}").into()),
            };
            if !established {
                missing.push(name.clone());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if !logged {
            tracing::info!(?missing, "waiting for CRDs to be established");
            logged = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A small boxed error for the binary's top level.
pub use crate::error::anyhow_free;

/// Refuse to start with a label selector the API server does not accept (its own
/// parser is the judge): a shard that silently watched nothing would look healthy.
async fn check_selector(client: &Client, selector: &str) -> anyhow_free::Result<()> {
    let api: kube::Api<crate::api::IamPolicy> = kube::Api::all(client.clone());
    let params = kube::api::ListParams::default().labels(selector).limit(1);
    match api.list_metadata(&params).await {
        Err(kube::Error::Api(e)) if e.code == 400 => Err(format!(
            "--object-selector {selector:?}: not a valid label selector: {}",
            e.message
        )
        .into()),
        _ => Ok(()),
    }
}
