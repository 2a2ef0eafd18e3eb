//! `iamwright validate` as CI runs it: exit codes and one line per problem.

use std::process::Command;

fn validate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iamwright"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn clean_manifests_exit_zero() {
    let boundary = "--required-permissions-boundary=arn:aws:iam::123456789012:policy/boundary";
    assert_eq!(
        validate(&[
            "-f",
            "tests/fixtures/validate/good",
            "--deny-action",
            "iam:*",
            boundary
        ]),
        (0, String::new())
    );
    let issuer = "--oidc-issuer=https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";
    assert_eq!(
        validate(&["-f", "examples", issuer, "--pod-identity"]),
        (0, String::new()),
        "the shipped examples validate"
    );
    // The EKS example needs one of the operator's EKS flags, offline as in the operator.
    let (code, out) = validate(&["-f", "examples"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(
            "examples/eks/role-for-pods.yaml:IamRole/reports-app: spec.serviceAccounts: the operator runs without --oidc-issuer"
        ) && out.lines().count() == 1,
        "{out}"
    );
}

#[test]
fn every_problem_is_reported_with_file_object_and_field() {
    let (code, out) = validate(&[
        "-f",
        "tests/fixtures/validate/bad",
        "--deny-action",
        "iam:PassRole",
    ]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "tests/fixtures/validate/bad/binding.json:InstanceProfileBinding/both: spec.replaceExisting: must be of type boolean, got string",
            "tests/fixtures/validate/bad/policies.yaml:IamPolicy/lowercase-effect: spec.document.Statement[0].Effect: must be \"Allow\" or \"Deny\", got \"allow\"",
            "tests/fixtures/validate/bad/policies.yaml:IamPolicy/admin: spec.document.Statement[0].NotAction: allows every action it does not list, including \"iam:PassRole\", which the operator's --deny-action forbids",
        ]
    );
}

/// The grammar table (`src/policy/table.rs`) through the CLI: the documents AWS accepts
/// in `grammar/` print nothing, each one it refuses prints one line naming the field.
#[test]
fn the_policy_grammar_agrees_with_aws() {
    let (code, out) = validate(&["-f", "tests/fixtures/validate/grammar"]);
    assert_eq!(code, 1);
    let p = "tests/fixtures/validate/grammar/policies.yaml:IamPolicy";
    let r = "tests/fixtures/validate/grammar/roles.yaml:IamRole";
    let c = "spec.document.Statement[0].Condition";
    let res = "spec.document.Statement[0].Resource[0]";
    let types = "user/, federated-user/, role/, group/, instance-profile/, mfa/, server-certificate/, policy/, sms-mfa/, saml-provider/, oidc-provider/, report/, access-report/";
    let date = "takes ISO 8601 dates or times (2024-01-31, 2024-01-31T12:00:00Z) or epoch seconds";
    let k = "tests/fixtures/validate/grammar/keys.yaml:IamUserAccessKey";
    let want = [
        format!(
            r#"{k}/boundary-type: spec.permissionsBoundary: must be a policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess, got "arn:aws:iam::123456789012:policies/boundary""#
        ),
        format!(
            r#"{k}/managed-policy-region: spec.managedPolicyArns[1]: iam ARNs have no region, got region "us-east-1" in "arn:aws:iam:us-east-1:aws:policy/x""#
        ),
        format!(
            r#"{p}/string-equal: {c}.StringEqual: unknown condition operator "StringEqual"; did you mean "StringEquals"?"#
        ),
        format!(
            r#"{p}/for-any-values: {c}.ForAnyValues:StringLike: unknown qualifier "ForAnyValues"; did you mean "ForAnyValue"?"#
        ),
        format!(
            r#"{p}/arn-equal: {c}.ArnEqual: unknown condition operator "ArnEqual"; did you mean "ArnEquals"?"#
        ),
        format!(
            r#"{p}/bool-if-exist: {c}.BoolIfExist: unknown condition operator "BoolIfExist"; did you mean "BoolIfExists"?"#
        ),
        format!(
            r#"{p}/date-yesterday: {c}.DateGreaterThan.aws:CurrentTime: DateGreaterThan {date}, got "yesterday""#
        ),
        format!(
            r#"{p}/date-month-13: {c}.DateGreaterThan.aws:CurrentTime: DateGreaterThan {date}, got "2024-13-01""#
        ),
        format!(
            r#"{p}/numeric-ten: {c}.NumericLessThan.s3:max-keys: NumericLessThan takes numbers, got "ten""#
        ),
        format!(
            r#"{p}/ip-300: {c}.IpAddress.aws:SourceIp: IpAddress takes IPv4 or IPv6 addresses or CIDR ranges (203.0.113.0/24), got "300.1.1.1""#
        ),
        format!(
            r#"{p}/bool-yes: {c}.Bool.aws:SecureTransport: Bool takes "true" or "false", got "yes""#
        ),
        format!(
            r#"{p}/arn-too-short: {res}: an ARN has 6 parts, arn:partition:service:region:account:resource, got "arn:aws:s3""#
        ),
        format!(
            r#"{p}/arn-partition: {res}: unknown partition "amazon" in "arn:amazon:s3:::b"; AWS partitions are aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc"#
        ),
        format!(
            r#"{p}/s3-region: {res}: S3 bucket and object ARNs have no region (access points have region and account), got region "us-east-1" in "arn:aws:s3:us-east-1::b""#
        ),
        format!(
            r#"{p}/iam-region: {res}: iam ARNs have no region, got region "us-east-1" in "arn:aws:iam:us-east-1:123456789012:role/x""#
        ),
        format!(
            r#"{p}/iam-resource-type: spec.document.Statement[0].Resource[1]: unknown IAM resource type "users" in "arn:aws:iam::123456789012:users/x" (IAM resources are root or start with {types}); did you mean "user"?"#
        ),
        format!(
            r#"{p}/managed-2008: spec.document.Version: must be "2012-10-17" (a managed policy takes only the current version), got "2008-10-17""#
        ),
        format!(
            r#"{r}/principal-not-arn: spec.assumeRolePolicy.Statement[0].Principal.AWS: must be "*", a 12-digit account id or an ARN, got "ci-user""#
        ),
        format!(
            r#"{r}/principal-resource-type: spec.assumeRolePolicy.Statement[0].Principal.AWS: unknown IAM resource type "roles" in "arn:aws:iam::123456789012:roles/ci" (IAM resources are root or start with {types}); did you mean "role"?"#
        ),
        format!(
            r#"{r}/managed-policy-region: spec.managedPolicyArns[0]: iam ARNs have no region, got region "us-east-1" in "arn:aws:iam:us-east-1:123456789012:policy/x""#
        ),
        format!(
            "{r}/inline-too-big: spec.inlinePolicies: the 2 inline policies are 15162 characters without whitespace together, more than the 10240 AWS allows for a role"
        ),
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, want, "{out}");
    // The accepted rows (upper-case prefixes, policy variables, IfExists, set
    // qualifiers, IP/date/null/ARN operators, every principal type, 2008-10-17 inline)
    // print nothing.
    for name in [
        "upper-case-prefixes",
        "home-folder",
        "mfa",
        "conditions",
        "principals",
        "inline-2008",
        "iam-resource-types",
    ] {
        assert!(!out.contains(&format!("/{name}:")), "{name}: {out}");
    }
}

/// Every action is checked against the AWS service authorization catalog shipped in the
/// binary: an action no service has (AWS accepts it, and it grants nothing) is an error,
/// with the closest real action.
#[test]
fn unknown_actions_are_errors_with_the_closest_real_action() {
    let (code, out) = validate(&["-f", "tests/fixtures/validate/catalog"]);
    assert_eq!(code, 1);
    let p = "tests/fixtures/validate/catalog/policies.yaml:IamPolicy";
    let r = "tests/fixtures/validate/catalog/roles.yaml:IamRole";
    let want = [
        format!(
            "{p}/typo: spec.document.Statement[0].Action[1]: `s3:GetObjects`: unknown action; did you mean `s3:GetObject`?"
        ),
        format!(
            "{p}/not-action: spec.document.Statement.NotAction[0]: `iam:PasRole`: unknown action; did you mean `iam:PassRole`?"
        ),
        format!(
            "{p}/wildcard-and-service: spec.document.Statement[0].Action[0]: `s3:Gett*`: matches no action"
        ),
        format!(
            "{p}/wildcard-and-service: spec.document.Statement[0].Action[1]: `s4:GetObject`: unknown service prefix `s4`; did you mean `s3:GetObject`?"
        ),
        format!(
            "{p}/wildcard-and-service: spec.document.Statement[1].Action[0]: `s3:AssumeRole`: unknown action; did you mean `sts:AssumeRole`?"
        ),
        format!(
            "{r}/inline-typo: spec.inlinePolicies.logs.Statement[0].Action[1]: `logs:PutLogEvent`: unknown action; did you mean `logs:PutLogEvents`?"
        ),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

/// `kustomize build . | iamwright validate -`: the documents of the ConfigMaps in the
/// stream are checked; a reference to a ConfigMap not in it is a note on stderr.
#[test]
fn documents_from_config_maps_are_checked_from_stdin() {
    use std::io::Write;
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iamwright"))
            .args(["validate", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policy-from-configmap.yaml"
    ))
    .unwrap();
    assert_eq!(run(&example), (0, String::new(), String::new()));

    let broken = example.replace(r#""Effect": "Allow""#, r#""Effect": "allow""#);
    let (code, out, _) = run(&broken);
    assert_eq!(code, 1);
    assert_eq!(
        out.lines().next().unwrap(),
        r#"<stdin>:IamPolicy/vendor-log-reader: spec.documentFrom.Statement[0].Effect: must be "Allow" or "Deny", got "allow" (from ConfigMap "vendor-log-reader" key "policy.json")"#
    );

    let policy_only = &example[example.find("apiVersion: iamwright.dev").unwrap()..];
    let (code, out, err) = run(policy_only);
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(
        err.contains(r#"note: <stdin>:IamPolicy/vendor-log-reader: spec.documentFrom.configMapKeyRef: ConfigMap "vendor-log-reader" is not among the inputs; the document is checked when the operator reconciles"#),
        "{err}"
    );
}
