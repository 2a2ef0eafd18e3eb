use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// Selects EC2 instances by tag.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct InstanceSelector {
    /// EC2 tags an instance must all carry (pending, running, stopping and stopped instances).
    #[schemars(extend("minProperties" = 1))]
    pub tags: Tags,
}

/// Binds an IAM role to EC2 instances through an instance profile.
#[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iamwright.dev",
    version = "v1alpha1",
    kind = "InstanceProfileBinding",
    plural = "instanceprofilebindings",
    shortname = "ipb",
    category = "iamwright",
    category = "aws",
    namespaced,
    status = "InstanceProfileBindingStatus",
    doc = "An instance profile holding a role, associated with EC2 instances chosen by id or tag.",
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
        name = "Profile",
        type_ = "string",
        json_path = ".status.instanceProfileArn"
    ),
    printcolumn(name = "Bound", type_ = "integer", json_path = ".status.boundCount"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProfileBindingSpec {
    /// An IamRole in the same namespace. Exactly one of roleRef and roleName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ref: Option<LocalObjectRef>,
    /// The name of an existing AWS role. Exactly one of roleRef and roleName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub role_name: Option<String>,
    /// The instance profile name. Default `<namespace>-<metadata.name>`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub instance_profile_name: Option<String>,
    /// The IAM path of the instance profile. Immutable.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/([\x21-\x7e]*/)?$"))]
    pub path: String,
    /// EC2 instance ids (`i-…`) to associate the profile with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^i-[0-9a-f]{8,17}$")))]
    pub instance_ids: Vec<String>,
    /// Instances chosen by EC2 tags, re-evaluated every --instance-resync-interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_selector: Option<InstanceSelector>,
    /// Replace another instance profile already associated with a targeted instance.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replace_existing: bool,
    /// The region of the instances. Default: the operator's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Tags of the instance profile, managed exclusively. Keys starting `iamwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// `Delete` (default) removes the profile and its associations; `Retain` leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (default) creates, updates and deletes the AWS resources; `Observe` only
    /// reads them: the status mirrors AWS and condition `Drifted` names the fields that
    /// differ from the spec. Observe never writes to AWS, also not on deletion.
    #[serde(default, skip_serializing_if = "is_manage")]
    pub management_policy: ManagementPolicy,
    /// Take over an existing instance profile of that name that carries no ownership tags.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
}

/// The association state of one targeted instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceBindingStatus {
    /// The EC2 instance id.
    pub instance_id: String,
    /// The association id, when associated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// Associated, Associating, Conflict, NotFound, NotPermitted (the namespace's IamScope
    /// requires instance tags it lacks) or Error.
    pub state: String,
    /// Details, e.g. the conflicting profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The observed state of an InstanceProfileBinding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProfileBindingStatus {
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
    /// The instance profile ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile_arn: Option<String>,
    /// Every targeted instance and its association, as EC2 reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceBindingStatus>,
    /// How many instances carry the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_count: Option<i32>,
}
