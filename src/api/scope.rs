use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// What a set of namespaces may do in AWS (docs/trust-model.md). Written by the platform
/// team; app teams must get no write access to IamScopes.
#[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iamwright.dev",
    version = "v1alpha1",
    kind = "IamScope",
    plural = "iamscopes",
    shortname = "iamscope",
    status = "IamScopeStatus",
    doc = "What the iamwright objects of a set of namespaces may do in AWS: path, name prefix, boundary, grants.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".status.namespaces"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IamScopeSpec {
    /// The namespaces this scope governs (`kubernetes.io/metadata.name` selects one by
    /// name). A namespace governed by two scopes: every object in it is `ScopeConflict`.
    pub namespace_selector: LabelSelector,
    /// IAM path every policy, role, instance profile and user of these namespaces must
    /// live under (`{namespace}` is replaced), e.g. `/tenants/{namespace}/`. It is the
    /// default `spec.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/([\x21-\x7e]*/)?$"))]
    pub path: Option<String>,
    /// AWS names must start with it (`{namespace}` allowed), e.g. `{namespace}-`.
    /// Default names are `<namespace>-<name>`, or `<prefix><name>` when that would not
    /// start with the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name_prefix: Option<String>,
    /// Permissions boundary set on every role and user created; a spec naming another is
    /// `GuardrailViolation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// Action globs no document of these namespaces may allow, added to `--deny-action`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_actions: Vec<String>,
    /// ARN globs of the managed policies that may be attached. Default:
    /// `arn:*:iam::aws:policy/*`; the namespace's own IamPolicies are always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policy_arns: Vec<String>,
    /// Grant `adopt: true` (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_adopt: bool,
    /// Name globs of existing IAM users an IamUserAccessKey may issue keys for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub existing_users: Vec<String>,
    /// Name globs of existing IAM roles an InstanceProfileBinding may name in roleName.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub existing_roles: Vec<String>,
    /// Name globs of existing IAM groups an IamUserAccessKey may join (`spec.groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub existing_groups: Vec<String>,
    /// Namespace globs (`{namespace}` allowed, e.g. `{namespace}-*`) whose service
    /// accounts an IamRole of these namespaces may name in `spec.serviceAccounts`; its
    /// own namespace needs no grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_account_namespaces: Vec<String>,
    /// EC2 tags an instance must carry to be bound from these namespaces (`{namespace}`
    /// allowed in values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_tags: BTreeMap<String, String>,
    /// The AWS account of these namespaces: the operator assumes this role (from its own
    /// credentials, through STS; credentials cached and refreshed before they expire)
    /// for every AWS call made for their objects. `status.accountId` of each object
    /// shows where it lives. Unset: the operator's own account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<ScopeAccount>,
}

/// The role the operator assumes to act in another AWS account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeAccount {
    /// ARN of the role to assume, e.g. `arn:aws:iam::111122223333:role/iamwright`. Its
    /// trust policy must let the operator's own role assume it.
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"))]
    pub role_arn: String,
    /// The external id the role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    pub external_id: Option<String>,
    /// The session name (default `iamwright`), seen in the account's CloudTrail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[\w+=,.@-]{2,64}$"))]
    pub session_name: Option<String>,
}

/// The observed state of an IamScope.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamScopeStatus {
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The namespaces it governs now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}
