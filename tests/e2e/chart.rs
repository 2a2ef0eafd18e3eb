//! The Helm chart against the real apiserver: lint, then `helm template` output
//! accepted by `kubectl apply --dry-run=server` for the default values and for a values
//! file that turns every option on; a misspelled value fails.

use crate::harness::*;

fn dry_run(manifests: &str) {
    let (ok, out, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(manifests));
    assert!(ok, "the apiserver refused the rendered chart: {err}\n{out}");
}

#[tokio::test]
async fn the_chart_renders_objects_the_apiserver_accepts() {
    let ns = Namespace::new("chart").await;
    let (ok, out, err) = helm(&["lint", "--strict", "charts/iamwright"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = helm(&[
        "lint",
        "--strict",
        "charts/iamwright",
        "-f",
        "charts/iamwright/ci/all-options-values.yaml",
    ]);
    assert!(ok, "{out}{err}");

    // The cluster name has no default: the chart says so instead of rendering.
    let (ok, _, err) = helm(&[
        "template",
        "iamwright",
        "charts/iamwright",
        "--namespace",
        &ns.name,
    ]);
    assert!(
        !ok && err.contains("operator.clusterName is required"),
        "{err}"
    );
    let (ok, rendered, err) = helm(&[
        "template",
        "iamwright",
        "charts/iamwright",
        "--namespace",
        &ns.name,
        "--set",
        "operator.clusterName=e2e",
    ]);
    assert!(ok, "{err}");
    dry_run(&rendered);

    // Every option on. Its watched namespaces and the ServiceMonitor kind must exist.
    let watched = [
        Namespace::new("chart-a").await,
        Namespace::new("chart-b").await,
    ];
    let values =
        std::fs::read_to_string(repo_root().join("charts/iamwright/ci/all-options-values.yaml"))
            .unwrap()
            .replace("WATCH_A", &watched[0].name)
            .replace("WATCH_B", &watched[1].name);
    let values_file = bed_dir().join(format!("values-{}.yaml", ns.name));
    std::fs::write(&values_file, values).unwrap();
    let crds = format!(
        "{}\n---\n{}",
        stand_in_crd("ServiceMonitor", "servicemonitors"),
        stand_in_crd("PrometheusRule", "prometheusrules")
    );
    let (ok, out, err) = kubectl(&["apply", "--server-side", "-f", "-"], Some(&crds));
    assert!(ok, "{out}{err}");
    kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        None,
    );
    let (ok, rendered, err) = helm(&[
        "template",
        "full",
        "charts/iamwright",
        "--namespace",
        &ns.name,
        "-f",
        values_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for kind in [
        "kind: PodDisruptionBudget",
        "kind: ServiceMonitor",
        "kind: PrometheusRule",
        "iamwright.json:",
        "kind: Role",
        "kind: RoleBinding",
        "--leader-elect",
        "eks.amazonaws.com/role-arn",
        "--deny-action=iam:*",
        "--allow-adoption",
        "--allow-existing-user=ci-*",
        "--allow-existing-role=legacy-*",
        "--allow-public-trust",
        "--allow-service-account-namespace=shared",
        "--allow-service-account-namespace={namespace}-jobs",
        "--oidc-issuer=https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        "--pod-identity",
        "--object-selector=shard in (a,b)",
    ] {
        assert!(
            rendered.contains(kind),
            "{kind} missing from the rendered chart"
        );
    }
    dry_run(&rendered);

    // values.schema.json has additionalProperties: false, so a typo fails the install.
    let (ok, _, err) = helm(&[
        "template",
        "x",
        "charts/iamwright",
        "--set",
        "operator.clusterName=e2e",
        "--set",
        "operator.clustername=typo",
    ]);
    assert!(!ok && err.contains("clustername"), "{err}");
    let (ok, _, err) = helm(&[
        "template",
        "x",
        "charts/iamwright",
        "--set",
        "operator.clusterName=e2e",
        "--set",
        "replicaCount=2",
    ]);
    assert!(!ok && err.contains("leaderElection.enabled"), "{err}");
}

/// A stand-in for one of prometheus-operator's CRDs: just enough for the dry run.
fn stand_in_crd(kind: &str, plural: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.monitoring.coreos.com}}
spec:
  group: monitoring.coreos.com
  names: {{kind: {kind}, plural: {plural}, listKind: {kind}List, singular: {singular}}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
        singular = kind.to_lowercase()
    )
}

/// The alerts and the dashboard query only metrics the operator exports (a renamed
/// metric would silently never fire), and the dashboard is valid JSON.
#[tokio::test]
async fn alerts_and_dashboard_use_the_operators_metrics() {
    let ns = Namespace::new("chart-obs").await;
    let op = Operator::start(&ns.name, &[]).await;
    // One object, so the AWS call counter has a sample too.
    apply(
        &ns.name,
        &serde_json::json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
            "metadata": {"name": "p"}, "spec": {"document": {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}})
        .to_string(),
    );
    eventually(
        std::time::Duration::from_secs(60),
        "an AWS call counted",
        || async { (op.aws_requests(|_, _| true).await > 0).then_some(()) },
    )
    .await;
    let exported: std::collections::BTreeSet<String> = op
        .metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (name, kind) = (parts.next()?, parts.next()?);
            Some(match kind {
                "counter" => format!("{name}_total"),
                "histogram" => format!("{name}_bucket"),
                _ => name.to_string(),
            })
        })
        .collect();
    let rule =
        std::fs::read_to_string(repo_root().join("charts/iamwright/templates/prometheusrule.yaml"))
            .unwrap();
    let dashboard =
        std::fs::read_to_string(repo_root().join("charts/iamwright/dashboards/iamwright.json"))
            .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 6));
    let used = regex::Regex::new(r"iamwright_[a-z_]+").unwrap();
    let mut checked = 0;
    for text in [&rule, &dashboard] {
        for m in used.find_iter(text) {
            assert!(
                exported.contains(m.as_str()),
                "{} is not exported: {exported:?}",
                m.as_str()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} metric uses found");
}
