//! Logs (tracing, text or JSON), Prometheus metrics and the HTTP endpoints
//! `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLabels {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ManagedLabels {
    kind: &'static str,
    ready: &'static str,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// The operator's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: HistogramFamily,
    aws_requests: Family<AwsLabels, Counter>,
    drift: Family<KindLabels, Counter>,
    managed: Family<ManagedLabels, Gauge>,
    // Readiness per object, so the managed-resources gauge counts each object once.
    readiness: Arc<Mutex<HashMap<(&'static str, String), bool>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let durations: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14)));
        let aws_requests = Family::<AwsLabels, Counter>::default();
        let drift = Family::<KindLabels, Counter>::default();
        let managed = Family::<ManagedLabels, Gauge>::default();
        registry.register(
            "iamwright_reconcile",
            "Reconciliations by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "iamwright_reconcile_duration_seconds",
            "Time spent in one reconciliation",
            durations.clone(),
        );
        registry.register(
            "iamwright_aws_requests",
            "AWS API calls by service, operation and outcome",
            aws_requests.clone(),
        );
        registry.register(
            "iamwright_drift_corrected",
            "AWS resources set back after a change made outside the operator",
            drift.clone(),
        );
        registry.register(
            "iamwright_managed_resources",
            "Objects managed by the operator, by kind and readiness",
            managed.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            durations,
            aws_requests,
            drift,
            managed,
            readiness: Default::default(),
        }
    }

    pub fn reconciled(&self, kind: &'static str, result: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn aws_request(
        &self,
        service: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) {
        self.aws_requests
            .get_or_create(&AwsLabels {
                service,
                operation,
                outcome,
            })
            .inc();
    }

    pub fn drift_corrected(&self, kind: &'static str) {
        self.drift.get_or_create(&KindLabels { kind }).inc();
    }

    /// Record an object's readiness (`None`: the object is gone).
    pub fn set_ready(&self, kind: &'static str, key: String, ready: Option<bool>) {
        let mut map = self.readiness.lock().expect("metrics lock");
        match ready {
            Some(r) => map.insert((kind, key), r),
            None => map.remove(&(kind, key)),
        };
        let (mut yes, mut no) = (0, 0);
        for ((k, _), r) in map.iter() {
            if *k == kind {
                if *r { yes += 1 } else { no += 1 }
            }
        }
        self.managed
            .get_or_create(&ManagedLabels {
                kind,
                ready: "true",
            })
            .set(yes);
        self.managed
            .get_or_create(&ManagedLabels {
                kind,
                ready: "false",
            })
            .set(no);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encode metrics");
        out
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global tracing subscriber. The level comes from `RUST_LOG` when set,
/// else from `level`.
pub fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    use std::io::IsTerminal;
    // Colours only for a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Serve `/metrics` on one address and `/healthz`, `/readyz` on another (the same
/// address may be given twice).
pub async fn serve(
    metrics: Metrics,
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    use axum::{Router, http::StatusCode, routing::get};
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    let metrics_router = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    if metrics_addr == health_addr {
        let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        return axum::serve(listener, metrics_router.merge(health)).await;
    }
    let m = tokio::net::TcpListener::bind(metrics_addr).await?;
    let h = tokio::net::TcpListener::bind(health_addr).await?;
    tracing::info!(metrics = %metrics_addr, health = %health_addr, "serving http");
    tokio::try_join!(axum::serve(m, metrics_router), axum::serve(h, health))?;
    Ok(())
}
