//! The CRDs as the apiserver enforces them: bad manifests are refused at apply time.

use crate::harness::*;

fn rejected(ns: &str, yaml: &str) -> String {
    let (ok, out, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(yaml));
    assert!(
        !ok,
        "expected the apiserver to refuse:\n{yaml}\nbut it said: {out}"
    );
    err
}

#[tokio::test]
async fn bad_manifests_are_refused_at_apply_time() {
    let ns = Namespace::new("crds").await;
    let ns = ns.name.as_str();

    let err = rejected(
        ns,
        r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: reserved-tag}
spec:
  tags: {"iamwright.dev/owner": me}
  document: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "s3:GetObject", Resource: "*"}]}
"#,
    );
    assert!(
        err.contains("tag keys starting with iamwright.dev/ are reserved"),
        "{err}"
    );

    let err = rejected(
        ns,
        r#"
apiVersion: iamwright.dev/v1alpha1
kind: InstanceProfileBinding
metadata: {name: both-roles}
spec:
  roleRef: {name: app}
  roleName: app
  instanceIds: [i-0123456789abcdef0]
"#,
    );
    assert!(
        err.contains("exactly one of spec.roleRef and spec.roleName must be set"),
        "{err}"
    );

    let err = rejected(
        ns,
        r#"
apiVersion: iamwright.dev/v1alpha1
kind: InstanceProfileBinding
metadata: {name: no-targets}
spec:
  roleName: app
"#,
    );
    assert!(
        err.contains("at least one of spec.instanceIds and spec.instanceSelector"),
        "{err}"
    );

    let err = rejected(
        ns,
        r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: short-session}
spec:
  maxSessionDuration: 60
  assumeRolePolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: "sts:AssumeRole"}]}
"#,
    );
    assert!(
        err.contains("spec.maxSessionDuration") && err.contains("3600"),
        "{err}"
    );

    let err = rejected(
        ns,
        r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: short-credentials}
spec:
  credentials: {secretName: app-aws, duration: 5m}
  assumeRolePolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: "sts:AssumeRole"}]}
"#,
    );
    assert!(
        err.contains("spec.credentials.duration must be between 15m and 12h"),
        "{err}"
    );

    let err = rejected(
        ns,
        r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: string-document}
spec:
  document: "not an object"
"#,
    );
    assert!(err.contains("spec.document"), "{err}");

    // Immutable fields: a changed userName on an existing object is refused.
    let key = r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamUserAccessKey
metadata: {name: ci}
spec:
  userName: ci-bot
"#;
    apply(ns, key);
    let err = rejected(ns, &key.replace("ci-bot", "other-bot"));
    assert!(err.contains("spec.userName is immutable"), "{err}");

    let policy = r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: named}
spec:
  name: first-name
  document: {Version: "2012-10-17", Statement: [{Effect: Allow, Action: "s3:GetObject", Resource: "*"}]}
"#;
    apply(ns, policy);
    let err = rejected(ns, &policy.replace("first-name", "second-name"));
    assert!(err.contains("spec.name is immutable"), "{err}");

    // Defaults are applied by the apiserver, so `kubectl get -o yaml` shows them.
    let (ok, out, _) = kubectl(
        &[
            "get",
            "-n",
            ns,
            "iampolicy",
            "named",
            "-o",
            "jsonpath={.spec.path} {.spec.deletionPolicy}",
        ],
        None,
    );
    assert!(ok);
    assert_eq!(out, "/ Delete");
}
