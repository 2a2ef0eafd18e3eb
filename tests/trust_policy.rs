//! The operator's own IAM policy under a real IAM evaluation engine: the output of
//! `iamwright policy --scope tests/fixtures/trust/scope.yaml` is evaluated by
//! @cloud-copilot/iam-simulate (installed by hack/iam-simulate.sh, which hack/test.sh
//! runs) — AWS itself must refuse what the scope forbids, and allow the calls the
//! operator makes for an object in scope. The trust policy generated for
//! `IamRole.spec.serviceAccounts` is evaluated the same way (tests/simulate/trust.mjs).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/tenant-boundary";

/// Where hack/iam-simulate.sh installed the engine; None (the test is skipped) when it
/// is missing outside CI. Under CI=true a missing engine fails the test.
fn engine() -> Option<PathBuf> {
    let dir = std::env::var("IAMWRIGHT_IAM_SIMULATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/iamwright/node-0.1.173")
        });
    let installed = dir
        .join("node_modules/@cloud-copilot/iam-simulate/package.json")
        .exists();
    let node = Command::new("node").arg("--version").output().is_ok();
    if installed && node {
        return Some(dir);
    }
    let why = format!(
        "the IAM evaluation engine is missing ({}; node found: {node}): run hack/iam-simulate.sh",
        dir.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("skipped: {why}");
    None
}

fn operator_policy() -> Value {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trust/scope.yaml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_iamwright"))
        .args(["policy", "--scope", fixture])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (name, expected result) → the engine's answer for each request.
fn simulate(dir: &PathBuf, policy: &Value, requests: &[Value]) -> Vec<(String, String)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/simulate/check.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"policy": policy, "requests": requests}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["name"].as_str().unwrap().to_string(),
                v["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn req(name: &str, action: &str, resource: &str, context: Value) -> Value {
    json!({"name": name, "action": action, "resource": resource, "context": context})
}

const ROLE: &str = "arn:aws:iam::123456789012:role/tenants/team-a/team-a-app";
const USER: &str = "arn:aws:iam::123456789012:user/tenants/team-a/team-a-ci";
const PROFILE: &str = "arn:aws:iam::123456789012:instance-profile/tenants/team-a/team-a-web";
const POLICY: &str = "arn:aws:iam::123456789012:policy/tenants/team-a/team-a-s3";
const GROUP: &str = "arn:aws:iam::123456789012:group/tenants/team-a/team-a-admins";
/// A group granted by the scope's `existingGroups: [Admins-*]`.
const GRANTED_GROUP: &str = "arn:aws:iam::123456789012:group/Admins-ops";
const INSTANCE: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";

#[test]
fn aws_refuses_what_the_scope_forbids_and_allows_the_operators_calls() {
    let Some(dir) = engine() else { return };
    let policy = operator_policy();
    let with_boundary = json!({"iam:PermissionsBoundary": BOUNDARY});
    let ec2 = json!({"iam:PassedToService": "ec2.amazonaws.com"});
    let denied = [
        req(
            "CreateRole outside the path",
            "iam:CreateRole",
            "arn:aws:iam::123456789012:role/team-a-app",
            with_boundary.clone(),
        ),
        req(
            "CreateRole without the boundary",
            "iam:CreateRole",
            ROLE,
            json!({}),
        ),
        req(
            "CreateRole with another boundary",
            "iam:CreateRole",
            ROLE,
            json!({"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/admin"}),
        ),
        req(
            "CreateRole without the name prefix",
            "iam:CreateRole",
            "arn:aws:iam::123456789012:role/tenants/team-a/app",
            with_boundary.clone(),
        ),
        req(
            "PassRole of a role outside the path",
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/admin",
            ec2.clone(),
        ),
        req(
            "CreateAccessKey for a user outside the path",
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/admin",
            json!({}),
        ),
        req(
            "CreateUser without the boundary",
            "iam:CreateUser",
            USER,
            json!({}),
        ),
        req(
            "DeleteRolePermissionsBoundary in the path",
            "iam:DeleteRolePermissionsBoundary",
            ROLE,
            json!({}),
        ),
        req(
            "AttachRolePolicy to a role outside the path",
            "iam:AttachRolePolicy",
            "arn:aws:iam::123456789012:role/admin",
            json!({}),
        ),
        req(
            "AssumeRole of a role in the path iamwright does not own",
            "sts:AssumeRole",
            ROLE,
            json!({}),
        ),
        req(
            "AssumeRole of an owned-looking role outside the path",
            "sts:AssumeRole",
            "arn:aws:iam::123456789012:role/admin",
            json!({"aws:ResourceTag/iamwright.dev/uid": "0f0e"}),
        ),
        req(
            "CreateGroup outside the path",
            "iam:CreateGroup",
            "arn:aws:iam::123456789012:group/team-a-admins",
            json!({}),
        ),
        req(
            "AddUserToGroup of a group neither in the path nor granted",
            "iam:AddUserToGroup",
            "arn:aws:iam::123456789012:group/PowerUsers",
            json!({}),
        ),
        req(
            "AttachGroupPolicy to a granted existing group (only membership is granted)",
            "iam:AttachGroupPolicy",
            GRANTED_GROUP,
            json!({}),
        ),
        req(
            "AssociateIamInstanceProfile with an instance without the scope's tags",
            "ec2:AssociateIamInstanceProfile",
            INSTANCE,
            json!({}),
        ),
        req(
            "ReplaceIamInstanceProfileAssociation with an instance of another team",
            "ec2:ReplaceIamInstanceProfileAssociation",
            INSTANCE,
            json!({"ec2:ResourceTag/owner": "team-a"}),
        ),
    ];
    let allowed = [
        req(
            "CreateRole with the boundary",
            "iam:CreateRole",
            ROLE,
            with_boundary.clone(),
        ),
        req(
            "PutRolePermissionsBoundary",
            "iam:PutRolePermissionsBoundary",
            ROLE,
            with_boundary.clone(),
        ),
        req("GetRole", "iam:GetRole", ROLE, json!({})),
        req(
            "AssumeRole of an owned role (spec.credentials)",
            "sts:AssumeRole",
            ROLE,
            json!({"aws:ResourceTag/iamwright.dev/uid": "0f0e"}),
        ),
        req("TagRole", "iam:TagRole", ROLE, json!({})),
        req(
            "UpdateAssumeRolePolicy",
            "iam:UpdateAssumeRolePolicy",
            ROLE,
            json!({}),
        ),
        req("AttachRolePolicy", "iam:AttachRolePolicy", ROLE, json!({})),
        req("PutRolePolicy", "iam:PutRolePolicy", ROLE, json!({})),
        req("DeleteRole", "iam:DeleteRole", ROLE, json!({})),
        req("PassRole in the path", "iam:PassRole", ROLE, ec2),
        req(
            "CreateUser with the boundary",
            "iam:CreateUser",
            USER,
            with_boundary,
        ),
        req("CreateAccessKey", "iam:CreateAccessKey", USER, json!({})),
        req(
            "CreateAccessKey for a granted existing user",
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/ci-deploy",
            json!({}),
        ),
        req(
            "CreateInstanceProfile",
            "iam:CreateInstanceProfile",
            PROFILE,
            json!({}),
        ),
        req(
            "AddRoleToInstanceProfile",
            "iam:AddRoleToInstanceProfile",
            PROFILE,
            json!({}),
        ),
        req("CreatePolicy", "iam:CreatePolicy", POLICY, json!({})),
        req(
            "CreatePolicyVersion",
            "iam:CreatePolicyVersion",
            POLICY,
            json!({}),
        ),
        req(
            "GetPolicyVersion of an AWS managed policy (the deny-action guardrail)",
            "iam:GetPolicyVersion",
            "arn:aws:iam::aws:policy/AdministratorAccess",
            json!({}),
        ),
        req(
            "AssociateIamInstanceProfile with an instance carrying the scope's tags",
            "ec2:AssociateIamInstanceProfile",
            INSTANCE,
            json!({"ec2:ResourceTag/team": "team-a"}),
        ),
        req(
            "DisassociateIamInstanceProfile with an instance carrying the scope's tags",
            "ec2:DisassociateIamInstanceProfile",
            INSTANCE,
            json!({"ec2:ResourceTag/team": "team-a"}),
        ),
        req(
            "DescribeInstances (no resource-level permissions)",
            "ec2:DescribeInstances",
            "*",
            json!({}),
        ),
    ];
    // The group, membership, console and user-delete paths: every call on the resource
    // IAM checks it against (membership changes: the group's ARN, not the user's).
    let mut allowed = allowed.to_vec();
    for action in [
        "iam:CreateGroup",
        "iam:GetGroup",
        "iam:PutGroupPolicy",
        "iam:GetGroupPolicy",
        "iam:ListGroupPolicies",
        "iam:ListAttachedGroupPolicies",
        "iam:AttachGroupPolicy",
        "iam:DetachGroupPolicy",
        "iam:DeleteGroupPolicy",
        "iam:UpdateGroup",
        "iam:AddUserToGroup",
        "iam:RemoveUserFromGroup",
        "iam:DeleteGroup",
    ] {
        allowed.push(req(
            &format!("{action} in the path"),
            action,
            GROUP,
            json!({}),
        ));
    }
    for action in [
        "iam:GetGroup",
        "iam:ListAttachedGroupPolicies",
        "iam:ListGroupPolicies",
        "iam:GetGroupPolicy",
        "iam:AddUserToGroup",
        "iam:RemoveUserFromGroup",
    ] {
        allowed.push(req(
            &format!("{action} of a granted existing group"),
            action,
            GRANTED_GROUP,
            json!({}),
        ));
    }
    for action in [
        "iam:ListGroupsForUser",
        "iam:GetLoginProfile",
        "iam:CreateLoginProfile",
        "iam:UpdateLoginProfile",
        "iam:DeleteLoginProfile",
        "iam:DeleteUser",
    ] {
        allowed.push(req(
            &format!("{action} in the path"),
            action,
            USER,
            json!({}),
        ));
    }
    for action in [
        "iam:ListGroupsForUser",
        "iam:CreateLoginProfile",
        "iam:UpdateLoginProfile",
        "iam:DeleteLoginProfile",
    ] {
        allowed.push(req(
            &format!("{action} of a granted existing user"),
            action,
            "arn:aws:iam::123456789012:user/ci-deploy",
            json!({}),
        ));
    }
    allowed.push(req(
        "GetAccountPasswordPolicy (account-level)",
        "iam:GetAccountPasswordPolicy",
        "*",
        json!({}),
    ));
    let requests: Vec<Value> = denied.iter().chain(&allowed).cloned().collect();
    let results = simulate(&dir, &policy, &requests);
    assert_eq!(results.len(), requests.len(), "{results:?}");
    let mut wrong = vec![];
    for (i, (name, result)) in results.iter().enumerate() {
        let want_allowed = i >= denied.len();
        let ok = if want_allowed {
            result == "Allowed"
        } else {
            result == "ImplicitlyDenied" || result == "ExplicitlyDenied"
        };
        if !ok {
            wrong.push(format!("{name}: {result}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the engine disagrees: {wrong:#?}\npolicy: {policy:#}"
    );
    // Removing the boundary is refused explicitly, not just not granted.
    assert_eq!(results[7].1, "ExplicitlyDenied");
}

/// (name, result) for each AssumeRole* request against a role's trust policy.
fn simulate_trust(dir: &PathBuf, policy: &Value, requests: &[Value]) -> Vec<(String, String)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/simulate/trust.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"policy": policy, "role": ROLE, "requests": requests}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["name"].as_str().unwrap().to_string(),
                v["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assume(name: &str, principal: &str, action: &str, context: Value) -> Value {
    json!({"name": name, "principal": principal, "action": action, "context": context})
}

/// The trust policy generated for `IamRole.spec.serviceAccounts` (src/trust/eks.rs) lets
/// exactly the named service accounts assume the role: IRSA web identities with the
/// right `sub` and `aud`, Pod Identity sessions with the right namespace and service
/// account tags, no cross pairs of two namespaces, and the user's own statement stays.
#[test]
fn generated_service_account_trust_admits_only_the_named_service_accounts() {
    use iamwright::config::EksArgs;
    use iamwright::trust::eks::{Account, trust_document};
    let Some(dir) = engine() else { return };
    const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let provider = format!("arn:aws:iam::123456789012:oidc-provider/{ISSUER}");
    let other_provider =
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/OTHERCLUSTER";
    let spec: iamwright::api::IamRoleSpec = serde_json::from_value(json!({
        "assumeRolePolicy": {"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}},
        "serviceAccounts": [{"name": "app"}, {"namespace": "jobs", "name": "batch"}]
    }))
    .unwrap();
    let eks = EksArgs {
        oidc_issuer: Some(ISSUER.into()),
        pod_identity: true,
    };
    let account = Account {
        id: "123456789012".into(),
        partition: "aws".into(),
    };
    let policy = trust_document(&spec, "team-a", &eks, Some(&account)).unwrap();

    let web =
        |sub: &str, aud: &str| json!({format!("{ISSUER}:sub"): sub, format!("{ISSUER}:aud"): aud});
    let pod = |ns: &str, sa: &str| {
        json!({"aws:RequestTag/kubernetes-namespace": ns,
               "aws:RequestTag/kubernetes-service-account": sa,
               "aws:TagKeys": ["kubernetes-namespace", "kubernetes-service-account"]})
    };
    let irsa = "sts:AssumeRoleWithWebIdentity";
    let eks_pods = "pods.eks.amazonaws.com";
    let allowed = [
        assume(
            "IRSA team-a:app",
            &provider,
            irsa,
            web("system:serviceaccount:team-a:app", "sts.amazonaws.com"),
        ),
        assume(
            "IRSA jobs:batch",
            &provider,
            irsa,
            web("system:serviceaccount:jobs:batch", "sts.amazonaws.com"),
        ),
        assume(
            "Pod Identity team-a:app",
            eks_pods,
            "sts:AssumeRole",
            pod("team-a", "app"),
        ),
        assume(
            "Pod Identity tags team-a:app",
            eks_pods,
            "sts:TagSession",
            pod("team-a", "app"),
        ),
        assume(
            "Pod Identity jobs:batch",
            eks_pods,
            "sts:AssumeRole",
            pod("jobs", "batch"),
        ),
        assume(
            "EC2 (the user's statement)",
            "ec2.amazonaws.com",
            "sts:AssumeRole",
            json!({}),
        ),
    ];
    let denied = [
        assume(
            "IRSA another service account",
            &provider,
            irsa,
            web("system:serviceaccount:team-a:other", "sts.amazonaws.com"),
        ),
        assume(
            "IRSA app of another namespace",
            &provider,
            irsa,
            web("system:serviceaccount:team-b:app", "sts.amazonaws.com"),
        ),
        assume(
            "IRSA cross pair jobs:app",
            &provider,
            irsa,
            web("system:serviceaccount:jobs:app", "sts.amazonaws.com"),
        ),
        assume(
            "IRSA another audience",
            &provider,
            irsa,
            web("system:serviceaccount:team-a:app", "example.com"),
        ),
        assume(
            "IRSA another cluster's provider",
            other_provider,
            irsa,
            web("system:serviceaccount:team-a:app", "sts.amazonaws.com"),
        ),
        assume("IRSA without a token's claims", &provider, irsa, json!({})),
        assume(
            "Pod Identity another service account",
            eks_pods,
            "sts:AssumeRole",
            pod("team-a", "other"),
        ),
        assume(
            "Pod Identity cross pair jobs:app",
            eks_pods,
            "sts:AssumeRole",
            pod("jobs", "app"),
        ),
        assume(
            "Pod Identity cross pair team-a:batch",
            eks_pods,
            "sts:AssumeRole",
            pod("team-a", "batch"),
        ),
        assume(
            "Pod Identity without session tags",
            eks_pods,
            "sts:AssumeRole",
            json!({}),
        ),
        assume(
            "another service principal",
            "lambda.amazonaws.com",
            "sts:AssumeRole",
            json!({}),
        ),
    ];
    let requests: Vec<Value> = allowed.iter().chain(&denied).cloned().collect();
    let results = simulate_trust(&dir, &policy, &requests);
    assert_eq!(results.len(), requests.len(), "{results:?}");
    let wrong: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(i, (_, result))| (*i < allowed.len()) != (result == "Allowed"))
        .map(|(_, (name, result))| format!("{name}: {result}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "the engine disagrees: {wrong:#?}\ntrust policy: {policy:#}"
    );
}

/// The statement `IamRole.spec.credentials` adds to a trust policy
/// (src/controllers/role/credentials.rs) lets the operator's sessions — and nobody
/// else — assume the role, and only under the object's session name.
#[test]
fn the_credentials_trust_statement_admits_only_the_operator_under_the_objects_session() {
    use iamwright::aws::principal_of_caller;
    use iamwright::controllers::role::credentials::with_operator_statement;
    let Some(dir) = engine() else { return };
    let user_trust = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}});
    let session = "arn:aws:sts::123456789012:assumed-role/iamwright/iamwright-0";
    let policy = with_operator_statement(&user_trust, &principal_of_caller(session), "team-a.app");
    let named = |n: &str| json!({"sts:RoleSessionName": n});
    let allowed = [
        assume(
            "the operator's session, the object's session name",
            session,
            "sts:AssumeRole",
            named("team-a.app"),
        ),
        assume(
            "EC2 (the user's statement)",
            "ec2.amazonaws.com",
            "sts:AssumeRole",
            json!({}),
        ),
    ];
    let denied = [
        assume(
            "the operator under another object's session name",
            session,
            "sts:AssumeRole",
            named("team-b.app"),
        ),
        assume(
            "the operator without a session name",
            session,
            "sts:AssumeRole",
            json!({}),
        ),
        assume(
            "another role of the account",
            "arn:aws:sts::123456789012:assumed-role/other/s",
            "sts:AssumeRole",
            named("team-a.app"),
        ),
        assume(
            "a user of the account",
            "arn:aws:iam::123456789012:user/someone",
            "sts:AssumeRole",
            named("team-a.app"),
        ),
        assume(
            "a role of that name in another account",
            "arn:aws:sts::210987654321:assumed-role/iamwright/s",
            "sts:AssumeRole",
            named("team-a.app"),
        ),
    ];
    let requests: Vec<Value> = allowed.iter().chain(&denied).cloned().collect();
    let results = simulate_trust(&dir, &policy, &requests);
    assert_eq!(results.len(), requests.len(), "{results:?}");
    let wrong: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(i, (_, result))| (*i < allowed.len()) != (result == "Allowed"))
        .map(|(_, (name, result))| format!("{name}: {result}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "the engine disagrees: {wrong:#?}\ntrust policy: {policy:#}"
    );
}
