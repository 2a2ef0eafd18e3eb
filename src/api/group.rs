use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// An IAM group with its attached and inline policies. Users join it from their side
/// (IamUserAccessKey `spec.groupRefs`).
#[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iamwright.dev",
    version = "v1alpha1",
    kind = "IamGroup",
    plural = "iamgroups",
    shortname = "iamg",
    category = "iamwright",
    category = "aws",
    namespaced,
    status = "IamGroupStatus",
    doc = "An AWS IAM group: attached and inline policies; users join it from their IamUserAccessKey.",
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
pub struct IamGroupSpec {
    /// The AWS group name. Default `<namespace>-<metadata.name>` (cut to 128 characters
    /// with a hash suffix when longer). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub group_name: Option<String>,
    /// The IAM path of the group. Immutable.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/([\x21-\x7e]*/)?$"))]
    pub path: String,
    /// ARNs of AWS-managed or external policies to attach, managed exclusively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policy_arns: Vec<String>,
    /// IamPolicy objects in the same namespace to attach; the group waits until each is Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_refs: Vec<LocalObjectRef>,
    /// Inline policies by name, managed exclusively (the operator's ownership marker,
    /// `iamwright-owner`, aside). `$AWS_ACCOUNT_ID`, `${AWS_PARTITION}` and
    /// `${AWS_REGION}` are replaced by the account, partition and region.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::api::schema::map_of_free_form_objects")]
    pub inline_policies: BTreeMap<String, Document>,
    /// `Delete` (default) removes the group (after taking every member out and removing
    /// its policies) when the object is deleted; `Retain` leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (default) creates, updates and deletes the group; `Observe` only reads
    /// it: the status mirrors AWS and condition `Drifted` names the fields that differ.
    #[serde(default, skip_serializing_if = "is_manage")]
    pub management_policy: ManagementPolicy,
    /// Take over an existing group of that name that carries no iamwright ownership marker.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
}

/// The observed state of an IamGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamGroupStatus {
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The IamScope that governs the object's namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The AWS account the group lives in (from its ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The group ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The group id AWS assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// ARNs of the managed policies attached to the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached_policy_arns: Vec<String>,
    /// The IAM users iamwright put in the group (IamUserAccessKeys of the namespace
    /// whose `spec.groupRefs` name it), as AWS lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}
