//! The e2e harness: the test bed's clients, a fresh namespace per test, and the
//! operator binary run as a real process watching only that namespace.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};
use rand::Rng;
use serde::de::DeserializeOwned;

/// Fails the test with a clear message when the bed's environment is missing.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the e2e suite through hack/test.sh, which starts the test bed"
        )
    })
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bed_dir() -> PathBuf {
    PathBuf::from(env("IAMWRIGHT_TESTBED_DIR"))
}

pub async fn kube() -> Client {
    env("KUBECONFIG");
    Client::try_default()
        .await
        .expect("kube client from KUBECONFIG")
}

pub async fn aws_config() -> aws_config::SdkConfig {
    env("AWS_ENDPOINT_URL");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

pub async fn iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&aws_config().await)
}

/// Run kubectl with the bed's admin kubeconfig; returns (success, stdout, stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH (the bed's env file puts it there)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl apply -f -` in a namespace; panics with kubectl's message on failure.
pub fn apply(ns: &str, yaml: &str) {
    let (ok, out, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(yaml));
    assert!(ok, "kubectl apply failed: {out}{err}\n{yaml}");
}

/// The chart's release on the bed, installed once per run: it brings the CRDs (so the
/// chart's CRD template is what the apiserver validates with) and the operator's RBAC
/// (so every operator process of the suite runs with exactly the chart's permissions).
pub const RELEASE_NAMESPACE: &str = "iamwright-system";

const CRD_NAMES: [&str; 6] = [
    "iampolicies.iamwright.dev",
    "iamroles.iamwright.dev",
    "instanceprofilebindings.iamwright.dev",
    "iamuseraccesskeys.iamwright.dev",
    "iamscopes.iamwright.dev",
    "iamgroups.iamwright.dev",
];

pub async fn ensure_crds() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        // CRDs applied earlier with kubectl (an older bed, the demo) are handed to the
        // release the way Helm documents adoption, instead of failing the install.
        for crd in CRD_NAMES {
            let (exists, _, _) = kubectl(&["get", "crd", crd], None);
            if exists {
                kubectl(
                    &[
                        "label",
                        "--overwrite",
                        "crd",
                        crd,
                        "app.kubernetes.io/managed-by=Helm",
                    ],
                    None,
                );
                kubectl(
                    &[
                        "annotate",
                        "--overwrite",
                        "crd",
                        crd,
                        "meta.helm.sh/release-name=iamwright",
                        &format!("meta.helm.sh/release-namespace={RELEASE_NAMESPACE}"),
                    ],
                    None,
                );
            }
        }
        let chart = repo_root().join("charts/iamwright");
        let out = Command::new("helm")
            .args([
                "upgrade",
                "--install",
                "iamwright",
                chart.to_str().unwrap(),
                "--namespace",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "--set",
                "leaderElection.enabled=true",
                "--set",
                "operator.clusterName=e2e",
                "--wait=false",
            ])
            .output()
            .expect("helm on PATH (the bed's env file puts it there)");
        assert!(
            out.status.success(),
            "helm install failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (ok, out, err) = kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/iampolicies.iamwright.dev",
                "crd/iamroles.iamwright.dev",
                "crd/instanceprofilebindings.iamwright.dev",
                "crd/iamuseraccesskeys.iamwright.dev",
                "crd/iamscopes.iamwright.dev",
                "crd/iamgroups.iamwright.dev",
            ],
            None,
        );
        assert!(ok, "CRDs not established: {out}{err}");
    })
    .await;
}

/// The kubeconfig of the chart's ServiceAccount (a static token on the bed).
pub fn operator_kubeconfig() -> String {
    env("IAMWRIGHT_OPERATOR_KUBECONFIG")
}

pub fn random_suffix() -> String {
    let n: u32 = rand::rng().random();
    format!("{n:08x}")
}

/// A fresh namespace, deleted (without waiting) when dropped.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub async fn new(prefix: &str) -> Self {
        ensure_crds().await;
        let name = format!("e2e-{prefix}-{}", random_suffix());
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube().await);
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if std::env::var("E2E_KEEP_NAMESPACES").is_err() {
            let _ = Command::new("kubectl")
                .args(["delete", "namespace", &self.name, "--wait=false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The operator binary, run as a child process that watches one namespace.
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub health_port: u16,
    pub log_path: PathBuf,
}

impl Operator {
    /// Start with the suite's defaults (5s resync) plus `extra` flags.
    pub async fn start(ns: &str, extra: &[&str]) -> Self {
        Self::start_with_env(ns, extra, &[]).await
    }

    pub async fn start_with_env(ns: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let (metrics_port, health_port) = (free_port(), free_port());
        let log_dir = bed_dir().join("logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log_path = log_dir.join(format!("operator-{ns}-{}.log", random_suffix()));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--cluster-name".into(),
            "e2e".into(),
            "--watch-namespace".into(),
            ns.into(),
            "--resync-interval".into(),
            "5s".into(),
            "--instance-resync-interval".into(),
            "5s".into(),
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--health-probe-bind-address".into(),
            format!("127.0.0.1:{health_port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iamwright"));
        cmd.args(&args)
            .env("KUBECONFIG", operator_kubeconfig())
            .env(
                "RUST_LOG",
                std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info,iamwright=trace".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the operator");
        let mut op = Self {
            child: Some(child),
            metrics_port,
            health_port,
            log_path,
        };
        op.wait_ready().await;
        op
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.health_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("operator exited with {status}; log:\n{}", self.log());
            }
            if let Ok(body) = http_get(&url).await
                && body.0 == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("operator not ready within 60s; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .expect("metrics endpoint")
            .1
    }

    /// Sum of `iamwright_aws_requests_total` samples whose labels pass `filter`.
    pub async fn aws_requests(&self, filter: impl Fn(&str, &str) -> bool) -> u64 {
        parse_aws_requests(&self.metrics().await)
            .into_iter()
            .filter(|(op, outcome, _)| filter(op, outcome))
            .map(|(_, _, n)| n)
            .sum()
    }

    /// Successful reconciles of `kind` (`iamwright_reconcile_total`).
    pub async fn reconciles(&self, kind: &str) -> u64 {
        successful_reconciles(&self.metrics().await, kind)
    }

    /// AWS writes made (calls other than Get*, List*, Describe* that succeeded). A
    /// create refused because the name exists changed nothing and is not counted.
    pub async fn aws_writes(&self) -> u64 {
        self.aws_requests(|op, outcome| !is_read(op) && outcome == "success")
            .await
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn is_read(op: &str) -> bool {
    op.starts_with("Get") || op.starts_with("List") || op.starts_with("Describe")
}

/// Successful reconciles of `kind` in a `/metrics` text (`iamwright_reconcile_total`).
pub fn successful_reconciles(metrics: &str, kind: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("iamwright_reconcile_total{")
                && l.contains(&format!("kind=\"{kind}\""))
                && l.contains("result=\"success\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// (operation, outcome, count) of every `iamwright_aws_requests_total` sample.
pub fn parse_aws_requests(text: &str) -> Vec<(String, String, u64)> {
    text.lines()
        .filter(|l| l.starts_with("iamwright_aws_requests_total{"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            let label = |k: &str| {
                let start = labels.find(&format!("{k}=\""))? + k.len() + 2;
                let end = labels[start..].find('"')? + start;
                Some(labels[start..end].to_string())
            };
            Some((
                label("operation")?,
                label("outcome")?,
                value.parse::<f64>().ok()? as u64,
            ))
        })
        .collect()
}

/// A minimal HTTP/1.1 GET over loopback (status, body).
pub async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    http_request("GET", url, "").await
}

/// Poll `check` until it returns Some, or fail after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Get an object; None when it does not exist.
pub async fn get<K>(ns: &str, name: &str) -> Option<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(kube().await, ns);
    api.get_opt(name).await.expect("get object")
}

pub async fn delete<K>(ns: &str, name: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(kube().await, ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete object");
}

/// The condition of `type_` as (status, reason, message, observedGeneration).
pub fn condition(
    conditions: &[iamwright::api::Condition],
    type_: &str,
) -> Option<(String, String, String, Option<i64>)> {
    conditions.iter().find(|c| c.type_ == type_).map(|c| {
        (
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    })
}

/// Events recorded for an object (events.k8s.io), as (reason, note).
/// The operator publishes events in the background, after the status write a test
/// usually waits for: the list is read until two reads half a second apart agree.
pub async fn events_for(ns: &str, name: &str) -> Vec<(String, String)> {
    events_of(ns, name, false).await
}

/// [`events_for`], only the warnings with `warnings_only`.
pub async fn events_of(ns: &str, name: &str, warnings_only: bool) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(kube().await, ns);
    let read = || async {
        api.list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| !warnings_only || e.type_.as_deref() == Some("Warning"))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let mut last = read().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = read().await;
        if now == last {
            break;
        }
        last = now;
    }
    last
}

impl Operator {
    /// SIGKILL: the process dies without releasing anything (a crashed pod).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An EC2 client on the bed's moto (the operator's default region).
pub async fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&aws_config().await)
}

impl Operator {
    /// Wait for the process to exit on its own (e.g. at a failpoint); None on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

impl Operator {
    /// Wait until `read_op` (an AWS read made once per reconcile, or per snapshot) was
    /// called `resyncs` more times, and return how many AWS writes the operator made
    /// meanwhile. A snapshot makes two GetAccountAuthorizationDetails listings (roles,
    /// then policies; moto answers each in one page): two resyncs are 4 of them.
    pub async fn writes_across_resyncs(&self, read_op: &str, resyncs: u64) -> u64 {
        let writes = self.aws_writes().await;
        let reads = self.aws_requests(|o, _| o == read_op).await;
        eventually(
            Duration::from_secs(30),
            &format!("{resyncs} resyncs"),
            || async {
                (self.aws_requests(|o, _| o == read_op).await >= reads + resyncs).then_some(())
            },
        )
        .await;
        self.aws_writes().await - writes
    }
}

/// A minimal HTTP/1.1 request with a body over loopback (status, body).
pub async fn http_request(method: &str, url: &str, body: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `hack/faultproxy.py` between an operator and moto: throttling, 5xx and responses
/// lost after the write, on chosen AWS operations. Stopped when dropped.
pub struct FaultProxy {
    child: Child,
    port: u16,
}

impl FaultProxy {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// A proxy listening on `host` (e.g. "0.0.0.0", so that pods on the bed's node
    /// reach it at the host's address).
    pub async fn start_on(host: &str) -> Self {
        let port_file = bed_dir()
            .join("logs")
            .join(format!("faultproxy-{}.port", random_suffix()));
        std::fs::create_dir_all(port_file.parent().unwrap()).unwrap();
        let log = std::fs::File::create(port_file.with_extension("log")).unwrap();
        let child = Command::new("python3")
            .arg(repo_root().join("hack/faultproxy.py"))
            .args([
                "--listen",
                &format!("{host}:0"),
                "--upstream",
                &env("AWS_ENDPOINT_URL"),
            ])
            .arg("--port-file")
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start hack/faultproxy.py");
        let port = eventually(Duration::from_secs(60), "the fault proxy listening", || {
            let f = port_file.clone();
            async move { std::fs::read_to_string(f).ok()?.trim().parse().ok() }
        })
        .await;
        Self { child, port }
    }

    /// The endpoint to give the operator as `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The endpoint as seen from `host` (a pod reaches the proxy at the node's address).
    #[allow(dead_code)] // used by tests/node, which includes this harness
    pub fn url_via(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }

    /// Everything the proxy recorded: counters, callers, web identities.
    #[allow(dead_code)] // used by tests/node, which includes this harness
    pub async fn snapshot(&self) -> serde_json::Value {
        let (_, body) = http_get(&format!("{}/__faults", self.url()))
            .await
            .expect("fault proxy counters");
        serde_json::from_str(&body).expect("fault proxy json")
    }

    #[allow(dead_code)] // used by tests/node, which includes this harness
    pub async fn reset_counters(&self) {
        let (status, _) = http_request(
            "POST",
            &format!("{}/__faults/reset-counters", self.url()),
            "",
        )
        .await
        .expect("fault proxy control");
        assert_eq!(status, 200);
    }

    /// Replace the fault rules (see hack/faultproxy.py), with a fixed dice seed.
    pub async fn set_rules(&self, rules: serde_json::Value) {
        let body = serde_json::json!({"rules": rules, "seed": 7}).to_string();
        let (status, _) = http_request("PUT", &format!("{}/__faults", self.url()), &body)
            .await
            .expect("fault proxy control");
        assert_eq!(status, 200);
    }

    pub async fn clear(&self) {
        http_request("DELETE", &format!("{}/__faults", self.url()), "")
            .await
            .expect("fault proxy control");
    }

    /// How often `field` (requests, forwarded, throttled, errors5xx, lost) happened
    /// for `operation` ("*": all operations).
    pub async fn count(&self, operation: &str, field: &str) -> u64 {
        let (_, body) = http_get(&format!("{}/__faults", self.url()))
            .await
            .expect("fault proxy counters");
        let v: serde_json::Value = serde_json::from_str(&body).expect("counters json");
        v["counters"]
            .as_object()
            .expect("counters")
            .iter()
            .filter(|(op, _)| operation == "*" || op.as_str() == operation)
            .map(|(_, c)| c[field].as_u64().unwrap_or(0))
            .sum()
    }

    /// The operator's environment that sends its AWS calls through the proxy.
    pub fn operator_env(&self) -> (&'static str, String) {
        ("AWS_ENDPOINT_URL", self.url())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay between an operator and the API server that can be cut: every open
/// connection is dropped and new ones are closed at once — a replica partitioned
/// from the API server while its own process, and AWS, stay reachable.
pub struct Cutter {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cutter {
    /// Relay to the API server of the operator's kubeconfig.
    pub async fn start() -> Self {
        let config = std::fs::read_to_string(operator_kubeconfig()).unwrap();
        let upstream = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .expect("server in the kubeconfig")
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() {
                    continue; // dropped: the connection closes
                }
                let (upstream, mut cut) = (upstream.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self { port, cut, task }
    }

    /// A kubeconfig like the operator's that goes through this relay (the bed's
    /// certificate is for 127.0.0.1, so TLS still verifies).
    pub fn kubeconfig(&self) -> String {
        let config = std::fs::read_to_string(operator_kubeconfig()).unwrap();
        let relayed: String = config
            .lines()
            .map(|l| match l.trim().strip_prefix("server: https://") {
                Some(_) => format!("    server: https://127.0.0.1:{}", self.port),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = bed_dir().join(format!("kubeconfig-cut-{}", random_suffix()));
        std::fs::write(&path, relayed + "\n").unwrap();
        path.display().to_string()
    }

    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bed's Kubernetes version: `helm template` and `helm lint` work offline and need
/// it for the chart's kubeVersion constraint.
pub fn server_version() -> String {
    let (ok, out, err) = kubectl(&["version", "-o", "json"], None);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Run helm from the repository root; returns (success, stdout, stderr).
pub fn helm(args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if matches!(args[0], "template" | "lint") {
        all.extend(["--kube-version".to_string(), server_version()]);
    }
    let out = Command::new("helm")
        .args(&all)
        .current_dir(repo_root())
        .output()
        .expect("helm on PATH");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
