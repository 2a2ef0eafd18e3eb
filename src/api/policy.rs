use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// A customer-managed IAM policy.
#[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iamwright.dev",
    version = "v1alpha1",
    kind = "IamPolicy",
    plural = "iampolicies",
    shortname = "iampol",
    category = "iamwright",
    category = "aws",
    namespaced,
    status = "IamPolicyStatus",
    doc = "A customer-managed AWS IAM policy, kept in sync with its document.",
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
pub struct IamPolicySpec {
    /// The AWS policy name. Default `<namespace>-<metadata.name>` (cut to 128 characters
    /// with a hash suffix when longer). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub name: Option<String>,
    /// The IAM path of the policy. Immutable.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/([\x21-\x7e]*/)?$"))]
    pub path: String,
    /// The policy description. Immutable (AWS cannot change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// The IAM policy document (AWS grammar: Version, Statement with Sid, Effect,
    /// Action/NotAction, Resource/NotResource, Condition), written as YAML or JSON.
    /// `$AWS_ACCOUNT_ID`, `${AWS_PARTITION}` and `${AWS_REGION}` are replaced by the
    /// account, partition and region the policy lives in. Exactly one of `document`
    /// and `documentFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub document: Option<Document>,
    /// The policy document from a ConfigMap key in the object's namespace (JSON or
    /// YAML, e.g. a file a vendor ships), followed when the ConfigMap changes. Exactly
    /// one of `document` and `documentFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_from: Option<DocumentSource>,
    /// Tags of the policy, managed exclusively. Keys starting `iamwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// `Delete` (default) removes the policy when the object is deleted; `Retain` leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (default) creates, updates and deletes the AWS resources; `Observe` only
    /// reads them: the status mirrors AWS and condition `Drifted` names the fields that
    /// differ from the spec. Observe never writes to AWS, also not on deletion.
    #[serde(default, skip_serializing_if = "is_manage")]
    pub management_policy: ManagementPolicy,
    /// Take over an existing policy of that name that carries no iamwright ownership tags.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
}

/// The observed state of an IamPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamPolicyStatus {
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
    /// The policy ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The policy id AWS assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// The id of the policy's default version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version_id: Option<String>,
}
