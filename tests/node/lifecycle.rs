//! `helm upgrade` and `helm rollback` roll the operator's pod and cost no AWS write on
//! objects that did not change; `helm uninstall` removes the operator and leaves the
//! CRDs, the objects and their AWS resources (docs/install.md says so).

use crate::harness::*;
use crate::release::*;

fn log_level_arg(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .args
        .as_ref()
        .unwrap()
        .iter()
        .find(|a| a.starts_with("--log-level="))
        .cloned()
        .unwrap()
}

/// The one Ready pod once it is not `old` and has reconciled both objects of the
/// example: a positive sign that it looked at them (with no write, asserted after).
async fn rolled_and_caught_up(old: &str) -> k8s_openapi::api::core::v1::Pod {
    eventually(
        std::time::Duration::from_secs(120),
        "a new pod that reconciled the role and the policy",
        || async {
            let pods = pods().await;
            let pod = pods.into_iter().find(|p| name(p) != old && is_ready(p))?;
            (pod_reconciles(&pod, "IamRole").await > 0
                && pod_reconciles(&pod, "IamPolicy").await > 0)
                .then_some(pod)
        },
    )
    .await
}

#[tokio::test]
async fn upgrade_and_rollback_roll_the_pod_without_aws_writes_and_uninstall_keeps_aws() {
    let proxy = FaultProxy::start_on("0.0.0.0").await;
    let base = base_values(&proxy);
    let mut release = Release::install(&base);
    let first = ready_pods(1).await.remove(0);

    let ns = objects_namespace("lifecycle");
    let example = std::fs::read_to_string(repo_root().join("examples/role-ec2.yaml")).unwrap();
    apply(&ns.name, &example);
    wait_ready(&ns.name, "iamrole/ec2-app");
    wait_ready(&ns.name, "iampolicy/app-logs");

    // Upgrade with a changed value: a new pod (new template), nothing written to AWS.
    proxy.reset_counters().await;
    let mut debug = base.clone();
    debug.push("operator.logLevel=debug".into());
    release.upgrade(&debug);
    let second = rolled_and_caught_up(&name(&first)).await;
    assert_eq!(log_level_arg(&second), "--log-level=debug");
    assert_eq!(
        proxied_writes(&proxy).await,
        vec![],
        "AWS writes during the upgrade"
    );

    // Rollback to the first revision: again a new pod, again no write.
    let (ok, out, err) = helm(&[
        "rollback",
        RELEASE,
        "1",
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "180s",
    ]);
    assert!(ok, "helm rollback: {out}{err}");
    let third = rolled_and_caught_up(&name(&second)).await;
    assert_eq!(log_level_arg(&third), "--log-level=info");
    assert_eq!(
        proxied_writes(&proxy).await,
        vec![],
        "AWS writes during the rollback"
    );
    let (_, history, _) = helm(&["history", RELEASE, "--namespace", RELEASE_NAMESPACE]);
    assert!(history.contains("Rollback to 1"), "{history}");

    // Uninstall: the operator goes; CRDs, objects and AWS resources stay.
    let role_arn = {
        let r: iamwright::api::IamRole = get(&ns.name, "ec2-app").await.unwrap();
        r.status.unwrap().arn.unwrap()
    };
    release.uninstall();
    assert!(
        pods().await.is_empty(),
        "operator pods left after uninstall"
    );
    let (kept, _, _) = kubectl(&["get", "crd", "iamroles.iamwright.dev"], None);
    assert!(kept, "helm uninstall removed the CRDs");
    let role: iamwright::api::IamRole = get(&ns.name, "ec2-app").await.expect("object kept");
    assert!(role.metadata.deletion_timestamp.is_none());
    let role_name = role_arn.rsplit('/').next().unwrap();
    iam()
        .await
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .expect("the AWS role stays after uninstall");
    // Without an operator the finalizer stays: deleting the objects is for before an
    // uninstall (documented). Release them so the namespace can go.
    for what in ["iamrole/ec2-app", "iampolicy/app-logs"] {
        kubectl(
            &[
                "patch",
                "-n",
                &ns.name,
                what,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
            None,
        );
    }
}
