use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

fn default_max_session() -> i32 {
    3600
}

/// An IAM role with its trust policy and permissions.
#[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iamwright.dev",
    version = "v1alpha1",
    kind = "IamRole",
    plural = "iamroles",
    shortname = "iamrole",
    category = "iamwright",
    category = "aws",
    namespaced,
    status = "IamRoleStatus",
    doc = "An AWS IAM role: trust policy, attached and inline policies, boundary and tags.",
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
    printcolumn(name = "ARN", type_ = "string", json_path = ".status.arn"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IamRoleSpec {
    /// The AWS role name. Default `<namespace>-<metadata.name>` (cut to 64 characters
    /// with a hash suffix when longer). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub name: Option<String>,
    /// The IAM path of the role. Immutable.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/([\x21-\x7e]*/)?$"))]
    pub path: String,
    /// The role description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// Maximum session duration in seconds, 3600..43200.
    #[serde(default = "default_max_session")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: i32,
    /// The trust policy document; `Principal` is required in each statement. Optional
    /// when `serviceAccounts` is set: the statements generated for them are merged into
    /// it (docs/eks.md). At least one of the two must be set. `$AWS_ACCOUNT_ID`,
    /// `${AWS_PARTITION}` and `${AWS_REGION}` are replaced by the account, partition and
    /// region the role lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub assume_role_policy: Option<Document>,
    /// Kubernetes service accounts whose pods may assume the role on EKS: the trust
    /// statements for IRSA (operator flag `--oidc-issuer`) and/or EKS Pod Identity
    /// (`--pod-identity`) are generated and merged into `assumeRolePolicy` (docs/eks.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountRef>,
    /// ARNs of AWS-managed or external policies to attach, managed exclusively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policy_arns: Vec<String>,
    /// IamPolicy objects in the same namespace to attach; the role waits until each is Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_refs: Vec<LocalObjectRef>,
    /// Inline policies by name, managed exclusively (with `inlinePoliciesFrom`).
    /// Variables are replaced as in `assumeRolePolicy`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::api::schema::map_of_free_form_objects")]
    pub inline_policies: BTreeMap<String, Document>,
    /// Inline policies by name whose documents come from ConfigMap keys in the
    /// object's namespace (JSON or YAML), followed when a ConfigMap changes. A name is
    /// in `inlinePolicies` or here, not both.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline_policies_from: BTreeMap<String, DocumentSource>,
    /// ARN of the permissions boundary policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// Tags of the role, managed exclusively. Keys starting `iamwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// `Delete` (default) removes the role when the object is deleted; `Retain` leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (default) creates, updates and deletes the AWS resources; `Observe` only
    /// reads them: the status mirrors AWS and condition `Drifted` names the fields that
    /// differ from the spec. Observe never writes to AWS, also not on deletion.
    #[serde(default, skip_serializing_if = "is_manage")]
    pub management_policy: ManagementPolicy,
    /// Take over an existing role of that name that carries no iamwright ownership tags.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
    /// Also keep an instance profile of the role's name and path holding the role (as
    /// the console does for an EC2 role), for launch templates and installers that take
    /// an instance-profile name. Deleted with the role, or when set back to false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub instance_profile: bool,
    /// Short-lived credentials instead of access keys: the operator assumes the role
    /// (from its own identity; the trust statement that lets it is added to the trust
    /// policy) and keeps STS session credentials in a Secret of the namespace,
    /// refreshed when a quarter of their duration is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RoleCredentials>,
}

/// Where and for how long the role's session credentials are kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleCredentials {
    /// The Secret that receives `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_CREDENTIAL_EXPIRATION` and `credentials` (an INI file,
    /// profile `default`). It must not exist, or be this object's.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: String,
    /// Session length, a duration between `15m` and `12h` and at most
    /// `maxSessionDuration`. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub duration: Option<String>,
}

/// A Kubernetes service account trusted to assume a role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ServiceAccountRef {
    /// Namespace of the service account; default the IamRole's own. Another namespace
    /// needs a grant (IamScope `serviceAccountNamespaces` or the operator flag
    /// `--allow-service-account-namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// Name of the service account.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// The observed state of an IamRole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamRoleStatus {
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The IamScope that governs the object's namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The AWS account the object's resources live in (from their ARN): the
    /// operator's own, or its IamScope's `spec.account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The role ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The role id AWS assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// ARNs of the managed policies attached to the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached_policy_arns: Vec<String>,
    /// The ARN of the role's own instance profile (`spec.instanceProfile: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    /// When the session credentials now in `spec.credentials.secretName` expire
    /// (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_expire_at: Option<String>,
}
