//! The chart, its CRDs and iamwright objects in one Argo CD Application, synced from
//! git onto the node: the README's one-app Application
//! (`examples/gitops/argocd-application-with-chart.yaml`) with the sync waves of
//! `examples/gitops/sync-waves.yaml`. Argo CD's repo server renders the chart with helm,
//! the operator's pod runs from the image on the node, and everything converges in one
//! sync operation: no retry, no manual re-sync. `hack/test-node.sh` starts Argo CD
//! against the node bed (`gitops-up.sh --argocd-only`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::git::Repo;
use crate::harness::*;
use crate::release::*;
use crate::table::{application_with_chart, sync_wave_annotation};

const SYNC: Duration = Duration::from_secs(300);

/// The Application and the objects' namespace; `remove` (or the drop) takes them away:
/// the objects first, while the operator still runs (so their finalizers are handled),
/// then the app with its resources through Argo CD's cascading delete.
struct OneApp {
    name: String,
    objects: String,
    removed: bool,
}

impl OneApp {
    fn get(&self) -> Value {
        let (ok, out, err) = kubectl(
            &[
                "get",
                "application",
                "-n",
                "argocd",
                &self.name,
                "-o",
                "json",
            ],
            None,
        );
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    fn remove(&mut self) {
        self.removed = true;
        let app = format!("application/{}", self.name);
        // No self-heal putting the objects back while they are deleted.
        kubectl(
            &[
                "patch",
                "-n",
                "argocd",
                &app,
                "--type=json",
                "-p",
                r#"[{"op": "remove", "path": "/spec/syncPolicy/automated"}]"#,
            ],
            None,
        );
        // A sync still running (a failed test) holds the app's deletion: end it as
        // `argocd app terminate-op` does.
        let (_, out, _) = kubectl(
            &[
                "get",
                "-n",
                "argocd",
                &app,
                "-o",
                "jsonpath={.status.operationState.phase}",
            ],
            None,
        );
        if out == "Running" {
            kubectl(
                &[
                    "patch",
                    "-n",
                    "argocd",
                    &app,
                    "--type=merge",
                    "-p",
                    r#"{"status": {"operationState": {"phase": "Terminating"}}}"#,
                ],
                None,
            );
        }
        kubectl(
            &[
                "delete",
                "iamwright",
                "--all",
                "-n",
                &self.objects,
                "--timeout=90s",
            ],
            None,
        );
        kubectl(&["delete", "-n", "argocd", &app, "--timeout=120s"], None);
        kubectl(
            &["delete", "namespace", &self.objects, "--wait=false"],
            None,
        );
    }
}

impl Drop for OneApp {
    fn drop(&mut self) {
        if !self.removed {
            self.remove();
            no_crds();
        }
    }
}

/// The iamwright CRDs in the cluster.
fn crds() -> Vec<String> {
    let (ok, out, err) = kubectl(&["get", "crd", "-o", "name"], None);
    assert!(ok, "{err}");
    out.lines()
        .filter(|l| l.ends_with(".iamwright.dev"))
        .map(str::to_string)
        .collect()
}

/// Leftover iamwright CRDs deleted: at the start, so the app begins from a cluster
/// without them, as a first install does (helm's `keep` leaves them after the other
/// node tests); at the end, because CRDs Argo CD created carry no helm release
/// annotations, so the next test's `helm install` would refuse to adopt them.
fn no_crds() {
    let ours = crds();
    if !ours.is_empty() {
        let mut args = vec!["delete", "--timeout=60s"];
        args.extend(ours.iter().map(String::as_str));
        let (ok, out, err) = kubectl(&args, None);
        assert!(ok, "{out}{err}");
    }
}

/// The app synced to `rev` (both sources) and Healthy, its operation finished. Fails
/// at once when the sync failed or Argo CD retried it: the point is no retry.
async fn synced(app: &OneApp, rev: &str) -> Value {
    let mut last = Value::Null;
    let got = tokio::time::timeout(SYNC, async {
        loop {
            let a = app.get();
            let s = &a["status"];
            let op = &s["operationState"];
            assert!(
                op["retryCount"].as_i64().unwrap_or(0) == 0
                    && !matches!(op["phase"].as_str(), Some("Failed" | "Error")),
                "the sync failed or was retried: {:#}",
                s
            );
            // Objects in a wave before the chart's: Argo CD waits for their health,
            // which only the operator it has not applied yet could give.
            let waiting = op["message"].as_str().unwrap_or_default();
            if waiting.starts_with("waiting for healthy state of iamwright.dev/") {
                let (deployed, _, _) = kubectl(
                    &["get", "deployment", "-n", RELEASE_NAMESPACE, "iamwright"],
                    None,
                );
                assert!(deployed, "deadlock: {waiting}, and no operator deployed");
            }
            if s["sync"]["status"] == "Synced"
                && s["sync"]["revisions"] == json!([rev, rev])
                && s["health"]["status"] == "Healthy"
                && op["phase"] == "Succeeded"
            {
                return a;
            }
            last = a;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    got.unwrap_or_else(|_| {
        panic!(
            "timed out after {SYNC:?} waiting for the one app Synced and Healthy; status:\n{:#}",
            last["status"]
        )
    })
}

fn object(kind: &str, name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: iamwright.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n{}spec:\n{spec}",
        sync_wave_annotation(kind)
    )
}

/// When `kind/name` in `ns` was created (second resolution).
fn created(kind: &str, ns: &str, name: &str) -> String {
    let (ok, out, err) = kubectl(
        &[
            "get",
            kind,
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.metadata.creationTimestamp}",
        ],
        None,
    );
    assert!(ok, "{err}");
    out
}

/// When the Ready condition of `kind/name` last turned True.
fn ready_since(kind: &str, ns: &str, name: &str) -> String {
    let (ok, out, err) = kubectl(
        &[
            "get",
            kind,
            "-n",
            ns,
            name,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    out
}

#[tokio::test]
async fn argocd_one_app_with_the_chart_crds_and_objects_converges_in_one_sync() {
    no_crds();
    let proxy = FaultProxy::start_on("0.0.0.0").await;
    let ns = format!("node-oneapp-{}", random_suffix());
    let repo = Repo::new(&ns);
    repo.copy(&repo_root().join("charts/iamwright"), "charts/iamwright");
    let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    let policy = object(
        "IamPolicy",
        "deploy",
        &ns,
        "  document:\n    Version: \"2012-10-17\"\n    Statement:\n      - Effect: Allow\n        Action: [\"s3:PutObject\"]\n        Resource: \"*\"\n",
    );
    let role = object(
        "IamRole",
        "deployer",
        &ns,
        "  assumeRolePolicy:\n    Version: \"2012-10-17\"\n    Statement:\n      - Effect: Allow\n        Principal: {Service: ec2.amazonaws.com}\n        Action: sts:AssumeRole\n  policyRefs: [{name: deploy}]\n",
    );
    let user = format!("{ns}-deployer");
    let key = object(
        "IamUserAccessKey",
        "deployer",
        &ns,
        &format!(
            "  userName: {user}\n  policyRefs: [{{name: deploy}}]\n  secretName: deployer-aws\n"
        ),
    );
    let (image_repo, tag) = image();
    let values = json!({
        "image": {"repository": image_repo, "tag": tag, "pullPolicy": "Never"},
        "operator": {"clusterName": "node-e2e", "region": "us-east-1",
            "extraEnv": [{"name": "AWS_ENDPOINT_URL", "value": proxy.url_via(&host_ip())}]},
        "aws": {"webIdentity": {"roleArn": OPERATOR_ROLE}},
    });
    let mut manifest = application_with_chart(
        &ns,
        &repo.url(),
        "charts/iamwright",
        values,
        "iam",
        RELEASE_NAMESPACE,
    );
    // The test's own cleanup deletes the app's resources with it (see OneApp's drop).
    manifest["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);

    let t0 = Instant::now();
    let rev = repo.commit(
        "the chart, the CRDs and the objects",
        &[
            ("iam/namespace.yaml", Some(&namespace)),
            ("iam/policy.yaml", Some(&policy)),
            ("iam/role.yaml", Some(&role)),
            ("iam/key.yaml", Some(&key)),
        ],
    );
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&manifest.to_string()));
    assert!(ok, "{out}{err}");
    let mut app = OneApp {
        name: ns.clone(),
        objects: ns.clone(),
        removed: false,
    };
    let done = synced(&app, &rev).await;
    println!(
        "figure: one app (chart, CRDs, objects) from `git commit` to Synced+Healthy: {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // One sync operation, every resource Synced, ours and the operator's Healthy.
    let history = done["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "one sync: {history:#?}");
    let resources = done["status"]["resources"].as_array().unwrap();
    let find = |kind: &str, name: &str| {
        resources
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} in the app: {resources:#?}"))
    };
    for r in resources {
        assert_eq!(r["status"], "Synced", "{r}");
    }
    for (kind, name) in [
        ("CustomResourceDefinition", "iampolicies.iamwright.dev"),
        ("CustomResourceDefinition", "iamroles.iamwright.dev"),
        (
            "CustomResourceDefinition",
            "iamuseraccesskeys.iamwright.dev",
        ),
    ] {
        find(kind, name);
    }
    for (kind, name) in [
        ("Deployment", "iamwright"),
        ("IamPolicy", "deploy"),
        ("IamRole", "deployer"),
        ("IamUserAccessKey", "deployer"),
    ] {
        assert_eq!(
            find(kind, name)["health"]["status"],
            "Healthy",
            "{kind}/{name}"
        );
    }

    // The operator is the chart's pod on the node, from the image.
    let pod = ready_pods(1).await.remove(0);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(env("IAMWRIGHT_IMAGE").as_str())
    );
    assert!(spec.node_name.is_some());

    // The waves held: no object was created before the operator's pod was Ready, and
    // each was created only once what it references was Ready (timestamps in seconds;
    // without the waves the policy is created a second or more before the pod is Ready).
    let pod_ready = pod
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone()
        .unwrap()
        .0
        .to_string();
    let rfc =
        |s: String| chrono::DateTime::parse_from_rfc3339(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let pod_ready = rfc(pod_ready);
    let policy_created = rfc(created("iampolicy", &ns, "deploy"));
    assert!(
        policy_created >= pod_ready,
        "the policy was created at {policy_created}, before the operator was Ready at {pod_ready}"
    );
    let policy_ready = rfc(ready_since("iampolicy", &ns, "deploy"));
    for kind in ["iamrole", "iamuseraccesskey"] {
        let at = rfc(created(kind, &ns, "deployer"));
        assert!(
            at >= policy_ready,
            "{kind} created at {at}, before the policy was Ready at {policy_ready}"
        );
    }
    // AWS: the policy, the role with it attached, the user with one key, in its Secret.
    let iam = iam().await;
    let policies = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    let arn = policies
        .policies()
        .iter()
        .find(|p| p.policy_name() == Some(format!("{ns}-deploy").as_str()))
        .and_then(|p| p.arn())
        .expect("the policy in AWS")
        .to_string();
    let attached = iam
        .list_attached_role_policies()
        .role_name(format!("{ns}-deployer"))
        .send()
        .await
        .expect("the role in AWS");
    assert_eq!(
        attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn())
            .collect::<Vec<_>>(),
        vec![arn.as_str()]
    );
    let keys = iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .expect("the user in AWS");
    assert_eq!(keys.access_key_metadata().len(), 1);
    let id = keys.access_key_metadata()[0].access_key_id().unwrap();
    let secret: Secret = get(&ns, "deployer-aws").await.expect("the key's Secret");
    let data = secret.data.unwrap_or_default();
    assert_eq!(
        data.get("AWS_ACCESS_KEY_ID").map(|b| b.0.as_slice()),
        Some(id.as_bytes()),
        "the Secret holds the key in AWS"
    );

    // Deleting the app (cascading, after its objects): the chart's resources go, the
    // CRDs stay (their helm.sh/resource-policy: keep is Argo CD's Delete=false).
    let before = crds();
    let chart =
        std::fs::read_to_string(repo_root().join("charts/iamwright/templates/crds.yaml")).unwrap();
    assert_eq!(
        before.len(),
        chart.matches("kind: CustomResourceDefinition").count(),
        "every CRD of the chart applied: {before:?}"
    );
    app.remove();
    let (gone, _, _) = kubectl(&["get", "application", "-n", "argocd", &ns], None);
    assert!(!gone, "the app is deleted");
    let (deployment, _, _) = kubectl(
        &["get", "deployment", "-n", RELEASE_NAMESPACE, "iamwright"],
        None,
    );
    assert!(
        !deployment,
        "the cascading delete took the operator's Deployment"
    );
    assert_eq!(crds(), before, "the CRDs stay");
    no_crds();
}
