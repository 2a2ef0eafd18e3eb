//! The operator runs with exactly the chart's RBAC: the suite's operators authenticate
//! as the chart's ServiceAccount, and what the chart does not grant is refused.

use crate::harness::*;

fn can_i(args: &[&str]) -> String {
    let kubeconfig = operator_kubeconfig();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str(), "auth", "can-i"];
    all.extend_from_slice(args);
    let (_, out, _) = kubectl(&all, None);
    out.trim().to_string()
}

#[tokio::test]
async fn the_operator_identity_has_only_the_charts_verbs() {
    let ns = Namespace::new("rbac").await;
    let n = ns.name.as_str();
    let kubeconfig = operator_kubeconfig();
    let (ok, out, _) = kubectl(
        &[
            "--kubeconfig",
            &kubeconfig,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert!(ok);
    assert_eq!(out, "system:serviceaccount:iamwright-system:iamwright");

    // What the operator uses is granted...
    for (verb, resource) in [
        ("watch", "iampolicies.iamwright.dev"),
        ("patch", "iamroles.iamwright.dev"),
        ("patch", "iamuseraccesskeys.iamwright.dev/status"),
        ("watch", "iamgroups.iamwright.dev"),
        ("patch", "iamgroups.iamwright.dev/status"),
        ("create", "secrets"),
        ("create", "events.events.k8s.io"),
        ("watch", "configmaps"),
        ("get", "configmaps"),
    ] {
        assert_eq!(
            can_i(&[verb, resource, "-n", n]),
            "yes",
            "{verb} {resource}"
        );
    }
    // ...and what it does not use is refused, by the apiserver itself.
    for (verb, resource) in [
        ("delete", "iampolicies.iamwright.dev"),
        ("create", "iamroles.iamwright.dev"),
        ("delete", "iamgroups.iamwright.dev"),
        ("create", "configmaps"),
        ("list", "pods"),
        ("create", "clusterroles"),
    ] {
        assert_eq!(can_i(&[verb, resource, "-n", n]), "no", "{verb} {resource}");
    }
    let (ok, _, err) = kubectl(
        &[
            "--kubeconfig",
            &kubeconfig,
            "create",
            "configmap",
            "x",
            "-n",
            n,
        ],
        None,
    );
    assert!(!ok && err.contains("forbidden"), "{err}");
    // Leases only in the release namespace.
    assert_eq!(
        can_i(&[
            "create",
            "leases.coordination.k8s.io",
            "-n",
            RELEASE_NAMESPACE
        ]),
        "yes"
    );
    assert_eq!(
        can_i(&["create", "leases.coordination.k8s.io", "-n", n]),
        "no"
    );
}
