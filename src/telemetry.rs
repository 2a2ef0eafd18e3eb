//! Logs (tracing, text or JSON), Prometheus metrics and the HTTP endpoints
//! `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
struct AccountLabels {
    account: String,
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
    aws_pace: Family<AccountLabels, Gauge<f64, AtomicU64>>,
    throttles_absorbed: Family<AccountLabels, Counter>,
    drift: Family<KindLabels, Counter>,
    managed: Family<ManagedLabels, Gauge>,
    watch_errors: Family<KindLabels, Counter>,
    // Readiness per object, so the managed-resources gauge counts each object once.
    readiness: Arc<Mutex<HashMap<(&'static str, String), bool>>>,
    // Per kind: (first, last) watch error of the current run of errors.
    watch_failing: Arc<Mutex<HashMap<&'static str, (Instant, Instant)>>>,
}

/// The kinds whose series are created at start.
const KINDS: [&str; 4] = [
    "IamPolicy",
    "IamRole",
    "InstanceProfileBinding",
    "IamUserAccessKey",
];

/// A run of watch errors with gaps shorter than this is one outage.
const WATCH_ERROR_GAP: Duration = Duration::from_secs(120);
/// A watch failing for longer than this fails `/healthz`: a restart is the remedy
/// left (new credentials, a re-created CRD), and the orchestrator should apply it.
const WATCH_DEAD_AFTER: Duration = Duration::from_secs(300);

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
        let aws_pace = Family::<AccountLabels, Gauge<f64, AtomicU64>>::default();
        let throttles_absorbed = Family::<AccountLabels, Counter>::default();
        let drift = Family::<KindLabels, Counter>::default();
        let managed = Family::<ManagedLabels, Gauge>::default();
        let watch_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "iamwright_watch_errors",
            "Failed watch requests to the Kubernetes API, by kind",
            watch_errors.clone(),
        );
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
            "iamwright_aws_pace_requests_per_second",
            "The request rate learned from the account's throttling answers, by account (0: not paced, no throttling seen)",
            aws_pace.clone(),
        );
        registry.register(
            "iamwright_aws_throttles_absorbed",
            "Throttled HTTP attempts the pacer sent again itself, unseen by the reconcile, by account",
            throttles_absorbed.clone(),
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
        // Every kind's series exist from the start, at zero: `increase()` in alerts
        // and dashboards then sees the first event, and a scrape lists every metric.
        for kind in KINDS {
            reconciles
                .get_or_create(&ReconcileLabels {
                    kind,
                    result: "success",
                })
                .inc_by(0);
            let _ = durations.get_or_create(&KindLabels { kind });
            drift.get_or_create(&KindLabels { kind }).inc_by(0);
            watch_errors.get_or_create(&KindLabels { kind }).inc_by(0);
            for ready in ["true", "false"] {
                managed.get_or_create(&ManagedLabels { kind, ready }).set(0);
            }
        }
        Self {
            registry: Arc::new(registry),
            reconciles,
            durations,
            aws_requests,
            aws_pace,
            throttles_absorbed,
            drift,
            managed,
            watch_errors,
            readiness: Default::default(),
            watch_failing: Default::default(),
        }
    }

    /// A kind's watch failed (it is retried with backoff).
    pub fn watch_error(&self, kind: &'static str) {
        self.watch_error_at(kind, Instant::now());
    }

    fn watch_error_at(&self, kind: &'static str, now: Instant) {
        self.watch_errors.get_or_create(&KindLabels { kind }).inc();
        let mut failing = self.watch_failing.lock().expect("watch lock");
        let run = failing.entry(kind).or_insert((now, now));
        if now.duration_since(run.1) > WATCH_ERROR_GAP {
            run.0 = now;
        }
        run.1 = now;
    }

    /// A kind's watch delivered an object.
    pub fn watch_ok(&self, kind: &'static str) {
        self.watch_failing.lock().expect("watch lock").remove(kind);
    }

    /// `Err` naming the kinds whose watch has failed for longer than
    /// [`WATCH_DEAD_AFTER`] without a pause.
    pub fn liveness(&self) -> Result<(), String> {
        self.liveness_at(Instant::now())
    }

    fn liveness_at(&self, now: Instant) -> Result<(), String> {
        let failing = self.watch_failing.lock().expect("watch lock");
        let dead: Vec<&str> = failing
            .iter()
            .filter(|(_, (first, last))| {
                now.duration_since(*last) <= WATCH_ERROR_GAP
                    && last.duration_since(*first) >= WATCH_DEAD_AFTER
            })
            .map(|(k, _)| *k)
            .collect();
        if dead.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "watch failing for over {}s: {}",
                WATCH_DEAD_AFTER.as_secs(),
                dead.join(", ")
            ))
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

    /// The pacer's current rate for `account` (0: not paced).
    pub fn aws_pace(&self, account: &str, rate: f64) {
        self.aws_pace
            .get_or_create(&AccountLabels {
                account: account.to_string(),
            })
            .set(rate);
    }

    /// `n` throttled attempts absorbed by the pacer of `account`.
    pub fn aws_throttle_absorbed(&self, account: &str, n: u64) {
        self.throttles_absorbed
            .get_or_create(&AccountLabels {
                account: account.to_string(),
            })
            .inc_by(n);
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
    let live = metrics.clone();
    let health = Router::new()
        .route(
            "/healthz",
            get(move || {
                let m = live.clone();
                async move {
                    match m.liveness() {
                        Ok(()) => (StatusCode::OK, "ok".to_string()),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
                    }
                }
            }),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_failing_without_pause_fails_liveness_and_recovers() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        // Errors every 30 s for four minutes: still alive.
        for n in (0..=240).step_by(30) {
            m.watch_error_at("IamRole", s(n));
        }
        assert!(m.liveness_at(s(240)).is_ok());
        // Past five minutes without a pause: dead, naming the kind.
        for n in (270..=330).step_by(30) {
            m.watch_error_at("IamRole", s(n));
        }
        let e = m.liveness_at(s(330)).unwrap_err();
        assert!(e.contains("IamRole"), "{e}");
        // Quiet for longer than the gap: the outage is over.
        assert!(m.liveness_at(s(330 + 121)).is_ok());
        // An object delivered ends it at once; a lone error later starts a new run.
        m.watch_error_at("IamRole", s(500));
        m.watch_ok("IamRole");
        m.watch_error_at("IamRole", s(510));
        assert!(m.liveness_at(s(510)).is_ok());
        assert!(
            m.encode()
                .contains("iamwright_watch_errors_total{kind=\"IamRole\"} 14")
        );
    }
}
