//! `helm install` on the node: Pod Security `restricted` admits the pod, it becomes
//! Ready through its own probes, runs as non-root on a read-only root filesystem with no
//! capabilities, takes AWS credentials from its own ServiceAccount token, serves
//! `/metrics` through the Service, and reconciles objects applied afterwards.

use std::time::Duration;

use crate::harness::*;
use crate::release::*;

/// A pod the restricted standard forbids is refused in the release namespace, so the
/// operator's pod being admitted there means something.
fn restricted_is_enforced() {
    release_namespace();
    let privileged = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": RELEASE_NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "localhost/pause:iamwright",
            "securityContext": {"privileged": true}}]}})
    .to_string();
    let (ok, out, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&privileged));
    assert!(
        !ok && err.contains("violates PodSecurity \"restricted"),
        "a privileged pod was not refused: {out}{err}"
    );
}

/// `/proc/PID/status` field (e.g. "Uid").
fn proc_status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn the_chart_installs_and_the_pod_reconciles_on_the_node() {
    restricted_is_enforced();
    let proxy = FaultProxy::start_on("0.0.0.0").await;
    let _release = Release::install(&base_values(&proxy));

    // Ready through its own probes (helm --wait), never restarted.
    let pod = ready_pods(1).await.remove(0);
    let status = pod.status.clone().unwrap();
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 0, "the operator container restarted");
    let created = pod.metadata.creation_timestamp.clone().unwrap().0;
    let ready_at = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .unwrap()
        .0;
    eprintln!(
        "figure: pod created to Ready in {} s (second resolution)",
        ready_at.duration_since(created).as_secs_f64()
    );

    // What the runtime enforces, read off the container's process on the host.
    let pid = container_pid(&pod);
    let uids = proc_status(pid, "Uid");
    assert!(
        uids.split_whitespace().all(|u| u == "65532"),
        "the operator runs as {uids}, not the non-root user 65532"
    );
    assert_eq!(
        proc_status(pid, "CapEff"),
        "0000000000000000",
        "capabilities left"
    );
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split_whitespace().nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "the root filesystem is writable: {root}"
    );

    // Objects applied after the install become Ready in moto: the pod reconciles.
    let ns = objects_namespace("install");
    apply(&ns.name, &policy("first"));
    let arn = policy_ready(&ns.name, "first").await;
    iam()
        .await
        .get_policy()
        .policy_arn(&arn)
        .send()
        .await
        .expect("the policy exists in moto");

    // AWS credentials came from the pod's own ServiceAccount token: the only
    // AssumeRoleWithWebIdentity carried a token for iamwright-system/iamwright with the
    // chart's audience, and every IAM call was signed with temporary credentials.
    let seen = proxy.snapshot().await;
    let identities = seen["webIdentities"].as_array().unwrap();
    assert!(
        !identities.is_empty(),
        "no AssumeRoleWithWebIdentity: {seen}"
    );
    for id in identities {
        assert_eq!(id["roleArn"], OPERATOR_ROLE, "{id}");
        assert_eq!(
            id["sub"], "system:serviceaccount:iamwright-system:iamwright",
            "{id}"
        );
        assert_eq!(id["aud"], serde_json::json!(["sts.amazonaws.com"]), "{id}");
    }
    let iam_keys: Vec<&String> = seen["callers"]["iam"].as_object().unwrap().keys().collect();
    assert!(
        !iam_keys.is_empty(),
        "no IAM call went through the proxy: {seen}"
    );
    assert!(
        iam_keys.iter().all(|k| k.starts_with("ASIA")),
        "IAM calls signed with long-lived keys {iam_keys:?}, not the web identity's session"
    );

    // /metrics through the Service's cluster IP (kube-proxy's rules on the host).
    let svc: k8s_openapi::api::core::v1::Service = get(RELEASE_NAMESPACE, "iamwright-metrics")
        .await
        .expect("metrics Service");
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    let body = eventually(Duration::from_secs(30), "/metrics via the Service", || {
        let url = format!("http://{ip}:8080/metrics");
        async move {
            let (code, body) = http_get(&url).await.ok()?;
            (code == 200).then_some(body)
        }
    })
    .await;
    let created: u64 = parse_aws_requests(&body)
        .into_iter()
        .filter(|(op, _, _)| op == "CreatePolicy")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(
        created, 1,
        "the scraped metrics do not count this pod's CreatePolicy:\n{body}"
    );
    delete_objects(&ns.name);
}
