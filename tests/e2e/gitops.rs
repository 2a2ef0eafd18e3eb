//! GitOps tools see no drift: the operator writes only its finalizer and status, so the
//! spec, labels and annotations stay exactly what was applied.

use std::time::Duration;

use iamwright::api::IamPolicy;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn spec_labels_and_annotations_stay_as_applied() {
    let ns = Namespace::new("gitops").await;
    let _op = Operator::start(&ns.name, &[]).await;
    let manifest = json!({
        "apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
        "metadata": {"name": "tracked",
            "labels": {"app.kubernetes.io/instance": "team-iam", "team": "data"},
            "annotations": {"argocd.argoproj.io/tracking-id": "team-iam:iamwright.dev/IamPolicy:x/tracked",
                            "argocd.argoproj.io/sync-wave": "-1"}},
        "spec": {"tags": {"team": "data"}, "document": {"Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}}}});
    // Server-side apply, as Argo CD does: no last-applied annotation is added.
    let (ok, out, err) = kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "argocd-controller",
            "-n",
            &ns.name,
            "-f",
            "-",
        ],
        Some(&manifest.to_string()),
    );
    assert!(ok, "{out}{err}");
    let p: IamPolicy = eventually(Duration::from_secs(60), "Ready", || async {
        let p: IamPolicy = get(&ns.name, "tracked").await?;
        let ready = condition(&p.status.as_ref()?.conditions, "Ready")?;
        (ready.0 == "True").then_some(p)
    })
    .await;
    let live = serde_json::to_value(&p).unwrap();
    // Apiserver defaults (path, deletionPolicy) are the only additions to the spec.
    let mut want_spec = manifest["spec"].clone();
    want_spec["path"] = json!("/");
    want_spec["deletionPolicy"] = json!("Delete");
    assert_eq!(live["spec"], want_spec);
    assert_eq!(live["metadata"]["labels"], manifest["metadata"]["labels"]);
    assert_eq!(
        live["metadata"]["annotations"],
        manifest["metadata"]["annotations"]
    );
    assert_eq!(
        live["metadata"]["finalizers"],
        json!(["iamwright.dev/cleanup"])
    );

    // What the operator's field manager owns: the finalizer and the status, nothing else.
    let ours: Vec<&Value> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["manager"] != "argocd-controller")
        .collect();
    for m in &ours {
        let fields = &m["fieldsV1"];
        let keys: Vec<&String> = fields
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        let only_finalizers = keys.iter().all(|k| *k == "f:metadata")
            && fields["f:metadata"]
                .as_object()
                .map(|o| o.keys().all(|k| k == "f:finalizers"))
                .unwrap_or(false);
        let only_status = m["subresource"] == "status";
        assert!(
            only_finalizers || only_status,
            "a manager touched more than finalizers/status: {m}"
        );
    }
}
