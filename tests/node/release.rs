//! The chart's release on the node: install with the values a user must set on this
//! bed, the pods it runs, and what the node's runtime knows about them.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::harness::*;

pub const RELEASE: &str = "iamwright";

/// The host's address as pods see it.
pub fn host_ip() -> String {
    env("IAMWRIGHT_TESTBED_HOST_IP")
}

/// The image hack/image.sh built and the bed imported (`localhost/iamwright:TAG`).
pub fn image() -> (String, String) {
    let image = env("IAMWRIGHT_IMAGE");
    let (repo, tag) = image.rsplit_once(':').expect("IMAGE is repo:tag");
    (repo.to_string(), tag.to_string())
}

/// The release namespace, with the `restricted` Pod Security Standard enforced, as a
/// platform team would label it.
pub fn release_namespace() {
    let (exists, _, _) = kubectl(&["get", "namespace", RELEASE_NAMESPACE], None);
    if !exists {
        let (ok, _, err) = kubectl(&["create", "namespace", RELEASE_NAMESPACE], None);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = kubectl(
        &[
            "label",
            "--overwrite",
            "namespace",
            RELEASE_NAMESPACE,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ],
        None,
    );
    assert!(ok, "{err}");
}

/// A helm release of the chart, uninstalled when dropped (if the test did not).
pub struct Release {
    pub installed: bool,
}

/// The values every install on this bed sets: the image built here (never pulled), the
/// cluster name, and AWS through the web-identity path the chart wires (the pod's own
/// projected ServiceAccount token), with the endpoint of `proxy` in front of moto.
pub fn base_values(proxy: &FaultProxy) -> Vec<String> {
    let (repo, tag) = image();
    [
        format!("image.repository={repo}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".to_string(),
        "operator.clusterName=node-e2e".to_string(),
        "operator.region=us-east-1".to_string(),
        format!("aws.webIdentity.roleArn={OPERATOR_ROLE}"),
        "operator.extraEnv[0].name=AWS_ENDPOINT_URL".to_string(),
        format!("operator.extraEnv[0].value={}", proxy.url_via(&host_ip())),
    ]
    .into()
}

pub const OPERATOR_ROLE: &str = "arn:aws:iam::123456789012:role/iamwright-operator";

/// `helm install|upgrade` of the chart with `values`, waiting until the Deployment's
/// pods are Ready through their own readiness probes.
fn helm_apply(verb: &str, values: &[String]) {
    let mut args = vec![
        verb,
        RELEASE,
        "charts/iamwright",
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "180s",
    ];
    for v in values {
        args.extend(["--set", v.as_str()]);
    }
    let (ok, out, err) = helm(&args);
    assert!(ok, "helm {verb} failed: {out}{err}\n{}", describe_pods());
}

impl Release {
    pub fn install(values: &[String]) -> Self {
        release_namespace();
        helm_apply("install", values);
        Self { installed: true }
    }

    pub fn upgrade(&self, values: &[String]) {
        helm_apply("upgrade", values);
    }

    pub fn uninstall(&mut self) {
        let (ok, out, err) = helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            RELEASE_NAMESPACE,
            "--wait",
            "--timeout",
            "120s",
        ]);
        assert!(ok, "helm uninstall failed: {out}{err}");
        self.installed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            helm(&[
                "uninstall",
                RELEASE,
                "--namespace",
                RELEASE_NAMESPACE,
                "--wait",
                "--timeout",
                "120s",
            ]);
        }
    }
}

fn describe_pods() -> String {
    let (_, out, err) = kubectl(
        &["describe", "pods", "--namespace", RELEASE_NAMESPACE],
        None,
    );
    format!("{out}{err}")
}

/// The release's pods that are not being deleted.
pub async fn pods() -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(kube().await, RELEASE_NAMESPACE);
    let lp = ListParams::default().labels("app.kubernetes.io/instance=iamwright");
    api.list(&lp)
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Wait until exactly `n` pods of the release run and are Ready; their names.
pub async fn ready_pods(n: usize) -> Vec<Pod> {
    eventually(
        Duration::from_secs(120),
        &format!("{n} Ready pods"),
        || async {
            let pods = pods().await;
            (pods.len() == n && pods.iter().all(is_ready)).then_some(pods)
        },
    )
    .await
}

pub fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap()
}

/// The host pid of the pod's operator container, from containerd.
pub fn container_pid(pod: &Pod) -> u32 {
    let id = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .container_id
        .clone()
        .expect("container id");
    let id = id.trim_start_matches("containerd://");
    let out = Command::new("ctr")
        .args([
            "--address",
            &env("IAMWRIGHT_TESTBED_CONTAINERD"),
            "--namespace",
            "k8s.io",
            "tasks",
            "ls",
        ])
        .output()
        .expect("ctr");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == id).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("container {id} not among containerd's tasks:\n{text}"))
}

/// The Lease's current holder, if any.
pub async fn lease_holder() -> Option<String> {
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(kube().await, RELEASE_NAMESPACE);
    api.get_opt("iamwright-leader")
        .await
        .expect("get lease")?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// An IamPolicy with one statement, as YAML for `apply`.
pub fn policy(name: &str) -> String {
    serde_json::json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": name},
        "spec": {"document": {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}})
    .to_string()
}

/// Wait until the IamPolicy is Ready; its ARN.
pub async fn policy_ready(ns: &str, name: &str) -> String {
    eventually(
        Duration::from_secs(90),
        &format!("IamPolicy {ns}/{name} Ready"),
        || async {
            let p: iamwright::api::IamPolicy = get(ns, name).await?;
            let st = p.status?;
            (condition(&st.conditions, "Ready")?.0 == "True").then_some(st.arn?)
        },
    )
    .await
}

/// A namespace for the test's objects (not `Namespace::new`: that installs the
/// chart the host-process way).
pub fn objects_namespace(prefix: &str) -> Namespace {
    let name = format!("node-{prefix}-{}", random_suffix());
    let (ok, _, err) = kubectl(&["create", "namespace", &name], None);
    assert!(ok, "{err}");
    Namespace { name }
}

/// `kubectl wait --for=condition=Ready` on `kind/name` in `ns`.
pub fn wait_ready(ns: &str, what: &str) {
    let (ok, out, err) = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "--timeout=90s",
            "-n",
            ns,
            what,
        ],
        None,
    );
    assert!(ok, "{what} not Ready: {out}{err}");
}

/// The pod's own /metrics, at its address on the pod network.
pub async fn pod_metrics(pod: &Pod) -> String {
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().expect("pod IP");
    http_get(&format!("http://{ip}:8080/metrics"))
        .await
        .expect("pod metrics")
        .1
}

/// Successful reconciles of `kind` the pod made (`iamwright_reconcile_total`).
pub async fn pod_reconciles(pod: &Pod, kind: &str) -> u64 {
    successful_reconciles(&pod_metrics(pod).await, kind)
}

/// AWS writes that reached moto through the proxy since its counters were reset
/// (operations other than Get*, List*, Describe* and STS's credential calls).
pub async fn proxied_writes(proxy: &FaultProxy) -> Vec<(String, u64)> {
    let seen = proxy.snapshot().await;
    seen["counters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| !is_read(op) && !op.starts_with("AssumeRole"))
        .map(|(op, c)| (op.clone(), c["forwarded"].as_u64().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Delete every iamwright object of `ns` and wait until they are gone, while the
/// operator still runs: a later test's operator must not find them terminating.
pub fn delete_objects(ns: &str) {
    let (ok, out, err) = kubectl(
        &["delete", "iamwright", "--all", "-n", ns, "--timeout=90s"],
        None,
    );
    assert!(ok, "deleting the test's objects: {out}{err}");
}
