//! `iamwright policy [--scope FILE...]`: the least-privilege IAM policy for the
//! operator's own role. With no scope it is docs/operator-iam-policy.json. With scopes,
//! every IAM resource is confined to the scopes' paths (and name prefixes), creating or
//! changing the boundary of a role or user requires the scope's boundary
//! (`iam:PermissionsBoundary`), removing it is denied, and `iam:PassRole` reaches only
//! roles under those paths: AWS itself then refuses what a scope forbids, even to a
//! compromised operator. See docs/trust-model.md.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::IamScope;
use crate::config::TrustArgs;

/// The unconfined policy (every call the operator makes, on every IAM resource).
pub const UNSCOPED: &str = include_str!("../../docs/operator-iam-policy.json");

/// Actions on policies the guardrails read anywhere (AWS-managed policies included):
/// reading a document grants nothing.
const POLICY_READS: &[&str] = &["iam:GetPolicy", "iam:GetPolicyVersion"];
const POLICY_ACTIONS: &[&str] = &[
    "iam:ListPolicyVersions",
    "iam:ListPolicyTags",
    "iam:ListEntitiesForPolicy",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:TagPolicy",
    "iam:UntagPolicy",
    "iam:DeletePolicy",
];
/// Role actions that set a boundary: conditioned on the scope's boundary.
const ROLE_BOUNDARY_SETTERS: &[&str] = &["iam:CreateRole", "iam:PutRolePermissionsBoundary"];
const ROLE_ACTIONS: &[&str] = &[
    "iam:GetRole",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "iam:GetRolePolicy",
    "iam:ListInstanceProfilesForRole",
    "iam:UpdateRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:DeleteRole",
];
const PROFILE_ACTIONS: &[&str] = &[
    "iam:GetInstanceProfile",
    "iam:CreateInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:UntagInstanceProfile",
    "iam:DeleteInstanceProfile",
];
const USER_BOUNDARY_SETTERS: &[&str] = &["iam:CreateUser", "iam:PutUserPermissionsBoundary"];
const USER_ACTIONS: &[&str] = &[
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListGroupsForUser",
    "iam:TagUser",
    "iam:UntagUser",
    "iam:AttachUserPolicy",
    "iam:DetachUserPolicy",
    "iam:DeleteUserPolicy",
    "iam:GetLoginProfile",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:DeleteLoginProfile",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:DeleteUser",
];
/// Group actions. IAM authorizes membership changes (`iam:RemoveUserFromGroup`)
/// against the group's ARN, not the user's: they are here, on groups.
const GROUP_ACTIONS: &[&str] = &[
    "iam:GetGroup",
    "iam:ListAttachedGroupPolicies",
    "iam:ListGroupPolicies",
    "iam:GetGroupPolicy",
    "iam:CreateGroup",
    "iam:UpdateGroup",
    "iam:AttachGroupPolicy",
    "iam:DetachGroupPolicy",
    "iam:PutGroupPolicy",
    "iam:DeleteGroupPolicy",
    "iam:AddUserToGroup",
    "iam:RemoveUserFromGroup",
    "iam:DeleteGroup",
];
/// What the operator does with a granted existing group: reads its policies (the
/// denied actions hold through it) and puts users in and out.
const EXISTING_GROUP_ACTIONS: &[&str] = &[
    "iam:GetGroup",
    "iam:ListAttachedGroupPolicies",
    "iam:ListGroupPolicies",
    "iam:GetGroupPolicy",
    "iam:AddUserToGroup",
    "iam:RemoveUserFromGroup",
];
/// What the operator does to a granted existing user it does not own: its key only.
const EXISTING_USER_ACTIONS: &[&str] = &[
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListGroupsForUser",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:GetLoginProfile",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:DeleteLoginProfile",
];
const BOUNDARY_REMOVERS: &[&str] = &[
    "iam:DeleteRolePermissionsBoundary",
    "iam:DeleteUserPermissionsBoundary",
];
/// EC2 reads: no resource-level permissions.
const EC2_READS: &[&str] = &[
    "ec2:DescribeInstances",
    "ec2:DescribeIamInstanceProfileAssociations",
];
/// EC2 association changes: authorized against the instance, so a scope's
/// `instanceTags` can condition them (`ec2:ResourceTag/<key>`).
const EC2_ASSOCIATIONS: &[&str] = &[
    "ec2:AssociateIamInstanceProfile",
    "ec2:DisassociateIamInstanceProfile",
    "ec2:ReplaceIamInstanceProfileAssociation",
];

/// Read every IamScope in `paths` (other kinds are skipped).
pub fn read_scopes(paths: &[PathBuf]) -> Result<Vec<IamScope>, String> {
    let mut scopes = vec![];
    for file in crate::inputs::collect_files(paths).map_err(|e| e.to_string())? {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", file.display()))?;
            if v["kind"] == "IamScope" {
                let s: IamScope = serde_json::from_value(v)
                    .map_err(|e| format!("{}: IamScope: {e}", file.display()))?;
                scopes.push(s);
            }
        }
    }
    Ok(scopes)
}

/// `{namespace}` matches any namespace in an ARN pattern.
fn pattern(s: &str) -> String {
    s.replace("{namespace}", "*")
}

/// The ARN pattern of `kind` resources a scope confines objects to.
fn confined(scope: &IamScope, kind: &str) -> String {
    let path = scope.spec.path.as_deref().unwrap_or("/");
    let prefix = scope.spec.name_prefix.as_deref().unwrap_or("");
    format!("arn:aws:iam::*:{kind}{}{}*", pattern(path), pattern(prefix))
}

fn one_or_many(mut v: Vec<String>) -> Value {
    v.sort();
    v.dedup();
    if v.len() == 1 { json!(v[0]) } else { json!(v) }
}

fn allow(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": one_or_many(resources)})
}

/// The operator's policy for `scopes` (plus the cluster-wide grants of `trust`).
pub fn policy(scopes: &[IamScope], trust: &TrustArgs) -> Value {
    if scopes.is_empty() {
        return serde_json::from_str(UNSCOPED).expect("the documented policy is JSON");
    }
    let all = |kind: &str| scopes.iter().map(|s| confined(s, kind)).collect::<Vec<_>>();
    let mut statements = vec![
        json!({"Sid": "Identity", "Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}),
        // The resync snapshot and the password policy console passwords are generated
        // for: account-level reads with no resource-level permissions.
        json!({"Sid": "AccountSnapshot", "Effect": "Allow",
               "Action": ["iam:GetAccountAuthorizationDetails", "iam:ListRoles",
                          "iam:GetAccountPasswordPolicy"], "Resource": "*"}),
        allow(
            "ReadPolicyDocuments",
            POLICY_READS,
            vec!["arn:aws:iam::*:policy/*".into()],
        ),
        allow("ManagedPolicies", POLICY_ACTIONS, all("policy")),
        allow("Roles", ROLE_ACTIONS, all("role")),
        allow("InstanceProfiles", PROFILE_ACTIONS, all("instance-profile")),
        allow("UsersAndKeys", USER_ACTIONS, all("user")),
        allow("Groups", GROUP_ACTIONS, all("group")),
    ];
    // IamRole.spec.credentials: the operator assumes the roles it owns (tagged with
    // its ownership uid), and no other, to issue their session credentials.
    statements.push(
        json!({"Sid": "AssumeOwnedRolesForCredentials", "Effect": "Allow",
        "Action": "sts:AssumeRole", "Resource": one_or_many(all("role")),
        "Condition": {"Null": {"aws:ResourceTag/iamwright.dev/uid": "false"}}}),
    );
    // Scopes in other accounts: the operator's role may assume exactly their roles
    // (the same policy then belongs on each of those roles, in its account).
    let assumed: Vec<String> = scopes
        .iter()
        .filter_map(|s| s.spec.account.as_ref().map(|a| a.role_arn.clone()))
        .collect();
    if !assumed.is_empty() {
        statements.push(allow("AssumeScopeAccounts", &["sts:AssumeRole"], assumed));
    }
    // Creating a role or user, or setting its boundary, only with the scope's boundary.
    for (i, s) in scopes.iter().enumerate() {
        let cond = s
            .spec
            .permissions_boundary
            .as_ref()
            .map(|b| json!({"StringEquals": {"iam:PermissionsBoundary": b}}));
        for (sid, actions, kind) in [
            ("CreateRoles", ROLE_BOUNDARY_SETTERS, "role"),
            ("CreateUsers", USER_BOUNDARY_SETTERS, "user"),
        ] {
            let mut st = allow(&format!("{sid}{i}"), actions, vec![confined(s, kind)]);
            if let Some(c) = &cond {
                st["Condition"] = c.clone();
            }
            statements.push(st);
        }
    }
    let (bounded, free): (Vec<&IamScope>, Vec<&IamScope>) = scopes
        .iter()
        .partition(|s| s.spec.permissions_boundary.is_some());
    let resources = |set: &[&IamScope]| {
        set.iter()
            .flat_map(|s| [confined(s, "role"), confined(s, "user")])
            .collect::<Vec<_>>()
    };
    if !free.is_empty() {
        statements.push(allow(
            "RemoveBoundaries",
            BOUNDARY_REMOVERS,
            resources(&free),
        ));
    }
    if !bounded.is_empty() {
        statements.push(json!({
            "Sid": "KeepBoundaries", "Effect": "Deny", "Action": BOUNDARY_REMOVERS,
            "Resource": one_or_many(resources(&bounded)),
        }));
    }
    // Granted existing users and roles live outside the paths: named by their globs.
    let users: Vec<String> = scopes
        .iter()
        .flat_map(|s| s.spec.existing_users.iter())
        .chain(&trust.allow_existing_users)
        .map(|g| format!("arn:aws:iam::*:user/*{g}"))
        .collect();
    if !users.is_empty() {
        statements.push(allow("GrantedExistingUsers", EXISTING_USER_ACTIONS, users));
    }
    // Granted existing groups: named by their globs (users join them from any path).
    let groups: Vec<String> = scopes
        .iter()
        .flat_map(|s| s.spec.existing_groups.iter())
        .chain(&trust.allow_existing_groups)
        .map(|g| format!("arn:aws:iam::*:group/*{g}"))
        .collect();
    if !groups.is_empty() {
        statements.push(allow(
            "GrantedExistingGroups",
            EXISTING_GROUP_ACTIONS,
            groups,
        ));
    }
    let granted_roles: Vec<String> = scopes
        .iter()
        .flat_map(|s| s.spec.existing_roles.iter())
        .chain(&trust.allow_existing_roles)
        .map(|g| format!("arn:aws:iam::*:role/*{g}"))
        .collect();
    if !granted_roles.is_empty() {
        statements.push(allow(
            "GrantedExistingRoles",
            &["iam:GetRole"],
            granted_roles.clone(),
        ));
    }
    let mut passable = all("role");
    passable.extend(granted_roles);
    statements.push(json!({
        "Sid": "PassRolesToEc2", "Effect": "Allow", "Action": "iam:PassRole",
        "Resource": one_or_many(passable),
        "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
    }));
    statements.push(json!({
        "Sid": "DetachPoliciesFromGroupsOnPolicyDelete", "Effect": "Allow",
        "Action": "iam:DetachGroupPolicy", "Resource": "arn:aws:iam::*:group/*",
        "Condition": {"ArnLike": {"iam:PolicyARN": one_or_many(all("policy"))}},
    }));
    statements.push(allow("DescribeInstances", EC2_READS, vec!["*".into()]));
    statements.extend(bind_instances(scopes));
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The association statements: one per scope, conditioned on the scope's
/// `instanceTags` (`{namespace}` becomes `*`, under `StringLike`), so AWS refuses to
/// bind an instance the scope's namespaces may not touch. A scope without
/// instanceTags allows every instance (as the operator itself does then); scopes with
/// the same tags share one statement.
fn bind_instances(scopes: &[IamScope]) -> Vec<Value> {
    let instances = vec!["arn:aws:ec2:*:*:instance/*".to_string()];
    let mut conditions: Vec<Option<Value>> = vec![];
    for s in scopes {
        let tags = &s.spec.instance_tags;
        let cond = (!tags.is_empty()).then(|| {
            let values: serde_json::Map<String, Value> = tags
                .iter()
                .map(|(k, v)| (format!("ec2:ResourceTag/{k}"), json!(pattern(v))))
                .collect();
            json!({"StringLike": values})
        });
        if !conditions.contains(&cond) {
            conditions.push(cond);
        }
    }
    if conditions.contains(&None) {
        // One scope allows every instance: a conditioned statement would add nothing.
        return vec![allow("BindInstances", EC2_ASSOCIATIONS, instances)];
    }
    conditions
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let mut st = allow(
                &format!("BindTaggedInstances{i}"),
                EC2_ASSOCIATIONS,
                instances.clone(),
            );
            st["Condition"] = c;
            st
        })
        .collect()
}

/// `doc` for another partition (`aws-cn`, `aws-us-gov`, ...): every `arn:aws:` ARN the
/// policy names becomes `arn:PARTITION:`, as the operator's own ARNs do at run time.
pub fn in_partition(doc: &Value, partition: &str) -> Value {
    match doc {
        Value::String(s) => match s.strip_prefix("arn:aws:") {
            Some(rest) => Value::String(format!("arn:{partition}:{rest}")),
            None => doc.clone(),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| in_partition(v, partition)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), in_partition(v, partition)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DocKind, validate_document};
    use std::collections::BTreeSet;

    fn scope() -> IamScope {
        serde_json::from_value(json!({
            "apiVersion": "iamwright.dev/v1alpha1", "kind": "IamScope",
            "metadata": {"name": "tenants"},
            "spec": {"namespaceSelector": {}, "path": "/tenants/{namespace}/",
                     "namePrefix": "{namespace}-",
                     "permissionsBoundary": "arn:aws:iam::123456789012:policy/tenant-boundary",
                     "existingUsers": ["ci-*"]}
        }))
        .unwrap()
    }

    fn actions(doc: &Value, effect: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for st in doc["Statement"].as_array().unwrap() {
            if st["Effect"] != effect {
                continue;
            }
            match &st["Action"] {
                Value::String(a) => {
                    out.insert(a.clone());
                }
                list => out.extend(
                    list.as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string()),
                ),
            }
        }
        out
    }

    /// The scoped policy allows the same calls as the unconfined one (the coverage test
    /// in validate.rs holds that one to the code), only on fewer resources.
    #[test]
    fn the_scoped_policy_allows_the_same_calls_on_the_scopes_resources() {
        let scoped = policy(&[scope()], &TrustArgs::default());
        validate_document(&scoped, "policy", DocKind::Managed).unwrap();
        let unscoped: Value = serde_json::from_str(UNSCOPED).unwrap();
        // Removing a scope's boundary is denied, not allowed; everything else is allowed.
        let denied: BTreeSet<String> = BOUNDARY_REMOVERS.iter().map(|s| s.to_string()).collect();
        assert_eq!(actions(&scoped, "Deny"), denied);
        let both: BTreeSet<String> = actions(&scoped, "Allow").union(&denied).cloned().collect();
        assert_eq!(both, actions(&unscoped, "Allow"));
        let text = scoped.to_string();
        assert!(text.contains("arn:aws:iam::*:role/tenants/*/*-*"), "{text}");
        assert!(!text.contains("role/*\""), "{text}");
        let create = scoped["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "CreateRoles0")
            .unwrap();
        assert_eq!(
            create["Condition"]["StringEquals"]["iam:PermissionsBoundary"],
            "arn:aws:iam::123456789012:policy/tenant-boundary"
        );
        assert_eq!(policy(&[], &TrustArgs::default()), unscoped);
    }

    /// The association actions are conditioned on the scopes' instance tags, one
    /// statement per distinct set; a scope without tags leaves them unconditioned.
    #[test]
    fn associations_are_conditioned_on_the_scopes_instance_tags() {
        let tagged = |tags: Value| {
            let mut s = scope();
            s.spec.instance_tags = serde_json::from_value(tags).unwrap();
            s
        };
        let binds = |doc: &Value| -> Vec<Value> {
            doc["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| {
                    s["Action"]
                        .to_string()
                        .contains("AssociateIamInstanceProfile")
                })
                .cloned()
                .collect()
        };
        let doc = policy(
            &[
                tagged(json!({"team": "{namespace}"})),
                tagged(json!({"env": "prod"})),
            ],
            &TrustArgs::default(),
        );
        let st = binds(&doc);
        assert_eq!(st.len(), 2, "{st:#?}");
        assert_eq!(st[0]["Resource"], "arn:aws:ec2:*:*:instance/*");
        assert_eq!(
            st[0]["Condition"],
            json!({"StringLike": {"ec2:ResourceTag/team": "*"}})
        );
        assert_eq!(
            st[1]["Condition"],
            json!({"StringLike": {"ec2:ResourceTag/env": "prod"}})
        );
        // A scope that allows any instance: one unconditioned statement.
        let doc = policy(
            &[tagged(json!({"team": "a"})), scope()],
            &TrustArgs::default(),
        );
        let st = binds(&doc);
        assert_eq!(st.len(), 1);
        assert!(st[0].get("Condition").is_none());
        // Describe calls have no resource-level permissions and stay on "*".
        assert!(doc.to_string().contains(r#""Sid":"DescribeInstances""#));
    }

    /// A scope in another account adds exactly the right to assume its role.
    #[test]
    fn a_scope_in_another_account_adds_only_assuming_its_role() {
        let mut other = scope();
        other.spec.account = Some(crate::api::ScopeAccount {
            role_arn: "arn:aws:iam::111122223333:role/iamwright".into(),
            external_id: None,
            session_name: None,
        });
        let doc = policy(&[other], &TrustArgs::default());
        let assume: Vec<&Value> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Sid"] == "AssumeScopeAccounts")
            .collect();
        assert_eq!(assume.len(), 1);
        assert_eq!(
            assume[0]["Resource"],
            "arn:aws:iam::111122223333:role/iamwright"
        );
        assert!(
            !policy(&[scope()], &TrustArgs::default())
                .to_string()
                .contains("AssumeScopeAccounts")
        );
    }

    /// Every ARN of the printed policy is in the partition asked for.
    #[test]
    fn the_policy_is_printed_for_another_partition() {
        for doc in [
            policy(&[scope()], &TrustArgs::default()),
            policy(&[], &TrustArgs::default()),
        ] {
            let gov = in_partition(&doc, "aws-us-gov");
            let text = gov.to_string();
            assert!(!text.contains("arn:aws:"), "{text}");
            assert!(text.contains("arn:aws-us-gov:iam::*:"), "{text}");
            assert_eq!(
                text.matches("arn:").count(),
                doc.to_string().matches("arn:").count()
            );
            validate_document(&gov, "policy", DocKind::Managed).unwrap();
            assert_eq!(in_partition(&doc, "aws"), doc);
        }
    }
}
