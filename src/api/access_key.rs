use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

fn default_true() -> bool {
    true
}

fn default_profile() -> String {
    "default".to_string()
}

/// A new value of this annotation rotates the key now (`status.rotateRequest` echoes
/// the value handled).
pub const ROTATE_ANNOTATION: &str = "iamwright.dev/rotate";
/// While set, the previous key is kept (set Active again if it was deactivated) and
/// not deleted.
pub const REACTIVATE_ANNOTATION: &str = "iamwright.dev/reactivate-previous";

/// Whether the access key may be used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyStatus {
    #[default]
    Active,
    Inactive,
}

/// When to rotate the access key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Age at which the key is replaced, as a duration between `1h` and `87600h`
    /// (10 years), e.g. `720h`.
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub every: String,
    /// How long the previous key stays active after a rotation (e.g. `1h`); shorter
    /// than `every`. Default: 1h, or half of `every` when that is shorter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub grace_period: Option<String>,
    /// How long the previous key stays `Inactive` after the grace period before it is
    /// deleted (AWS's procedure: deactivate, confirm nothing breaks, then delete).
    /// Default: 24h, shortened to half of what `every` leaves after `gracePeriod`;
    /// `gracePeriod + deactivatedFor` must be shorter than `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub deactivated_for: Option<String>,
    /// After a new key is delivered, roll the Deployments, StatefulSets and DaemonSets
    /// of the namespace whose pod template reads the Secret (env, envFrom, volumes,
    /// projected volumes): their pod template gets the annotation
    /// `iamwright.dev/access-key-id: <new key id>`. Needs the chart value
    /// `rbac.restartWorkloads: true`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub restart_workloads: bool,
}

/// Where the key is in its rotation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RotationPhase {
    /// One key, in the Secret.
    Stable,
    /// A new key is being checked with STS GetCallerIdentity before delivery.
    Verifying,
    /// Workloads reading the Secret are rolling to the new key.
    RestartingWorkloads,
    /// The new key is delivered; the previous one is still Active.
    Grace,
    /// The previous key is Inactive and is deleted at `nextRotationAt`.
    Deactivated,
}

/// An access key of an IAM user, delivered into a Secret.
#[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "iamwright.dev",
    version = "v1alpha1",
    kind = "IamUserAccessKey",
    plural = "iamuseraccesskeys",
    shortname = "iamkey",
    category = "iamwright",
    category = "aws",
    namespaced,
    status = "IamUserAccessKeyStatus",
    doc = "An IAM user's access key, written into a Secret and optionally rotated.",
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
    printcolumn(name = "Key", type_ = "string", json_path = ".status.accessKeyId"),
    printcolumn(name = "Last Used", type_ = "date", json_path = ".status.lastUsedAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IamUserAccessKeySpec {
    /// The IAM user name. Immutable.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub user_name: String,
    /// Create the user if it does not exist (it is then owned and deleted with the object).
    #[serde(default = "default_true")]
    pub create_user: bool,
    /// The IAM path of a created user. Immutable.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^/([\x21-\x7e]*/)?$"))]
    pub path: String,
    /// Managed policies attached to an owned user, exclusively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policy_arns: Vec<String>,
    /// IamPolicy objects in the same namespace attached to an owned user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_refs: Vec<LocalObjectRef>,
    /// Permissions boundary of an owned user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// The Secret that receives the key (a DNS-1123 subdomain name). Default: the
    /// object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,
    /// Profile name in the Secret's `credentials` file.
    #[serde(default = "default_profile")]
    pub credentials_profile: String,
    /// `Active` (default) or `Inactive`.
    #[serde(default)]
    pub key_status: KeyStatus,
    /// Rotate the key on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Tags of an owned user, managed exclusively. Keys starting `iamwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// `Delete` (default) deletes the key (and an owned user); `Retain` leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (default) creates, updates and deletes the AWS resources; `Observe` only
    /// reads them: the status mirrors AWS and condition `Drifted` names the fields that
    /// differ from the spec. Observe never writes to AWS, also not on deletion.
    #[serde(default, skip_serializing_if = "is_manage")]
    pub management_policy: ManagementPolicy,
    /// Take over an existing user that carries no iamwright ownership tags.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
    /// IamGroups of the same namespace the user joins (each waited for until Ready).
    /// Their policies are the user's too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_refs: Vec<LocalObjectRef>,
    /// Existing IAM groups, by name, the user joins. Joining a group gains its
    /// policies, so each needs a grant (IamScope `spec.existingGroups` or the operator
    /// flag `--allow-existing-group`), and the group's policies are held to the denied
    /// actions like the user's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 128), regex(pattern = r"^[\w+=,.@-]+$")))]
    pub groups: Vec<String>,
    /// AWS Management Console sign-in: a login profile with a generated password that
    /// meets the account's password policy, delivered only into the Secret as
    /// `AWS_CONSOLE_PASSWORD`, with the account's sign-in URL as
    /// `AWS_CONSOLE_SIGNIN_URL`. Removed when turned off; created again when deleted in
    /// AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<Console>,
}

/// Console sign-in of the user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Console {
    /// Keep a login profile (console password) for the user.
    pub enabled: bool,
    /// The user must choose a new password at the next sign-in (the password in the
    /// Secret is then a one-time password).
    #[serde(default, skip_serializing_if = "is_false")]
    pub password_reset_required: bool,
}

/// Whether the user can sign in to the console with the password in the Secret.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConsoleAccess {
    Enabled,
    Disabled,
}

/// The observed state of an IamUserAccessKey. Never holds the secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamUserAccessKeyStatus {
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
    /// The user ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_arn: Option<String>,
    /// The current access key id (the secret is only in the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The Secret holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the current key was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_created_at: Option<String>,
    /// The key being retired during a rotation's grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_access_key_id: Option<String>,
    /// When the next rotation step is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<String>,
    /// When the current key was last used to sign an AWS request (RFC 3339), as
    /// GetAccessKeyLastUsed reports it, read at most once per resync: an unused key is
    /// a key to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// The AWS service the current key was last used with (e.g. `s3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_service: Option<String>,
    /// Set just before CreateAccessKey and cleared once the new key is in the Secret:
    /// after a crash in between, the key it created is recognised and deleted, so AWS
    /// never keeps a key that no Secret holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_key: Option<PendingKey>,
    /// The last value of the annotation `iamwright.dev/rotate` that was handled: a new
    /// value rotates the key now, the same value never twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_request: Option<String>,
    /// The previous key's state (`Active` during the grace period, then `Inactive`)
    /// while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_status: Option<KeyStatus>,
    /// When the previous key was last used (RFC 3339, GetAccessKeyLastUsed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_last_used_at: Option<String>,
    /// `Stable`, `Verifying`, `RestartingWorkloads`, `Grace` or `Deactivated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_phase: Option<RotationPhase>,
    /// With `spec.rotation.restartWorkloads`: when the new key was delivered and the
    /// rollouts of the workloads reading the Secret began to be awaited (RFC 3339).
    /// The previous key's grace period waits for them (phase `RestartingWorkloads`)
    /// until `graceStartedAt` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollouts_awaited_since: Option<String>,
    /// When the previous key's grace period started (RFC 3339): when the workloads'
    /// rollouts completed, or when the bound for them passed. Without it the grace
    /// period counts from `keyCreatedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_started_at: Option<String>,
    /// The workloads whose rollout had not completed when the bound passed and the
    /// grace period started anyway (`Kind/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads_not_rolled_out: Vec<String>,
    /// The IAM groups this object put the user in (recorded before each join): the
    /// memberships it removes again when the spec drops them or the object goes, also
    /// for a user it does not own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `Enabled` while the user has a login profile whose password is in the Secret
    /// (`spec.console.enabled`), `Disabled` once it was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_access: Option<ConsoleAccess>,
    /// Set just before a console password is set and cleared once it is in the Secret:
    /// a reconcile that finds it set (a crash or a lost answer in between) sets a new
    /// password and delivers it, so no password is left that no Secret holds (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_password_pending: Option<String>,
}

/// The record of a key creation in progress (never the key's secret).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingKey {
    /// When the creation started (RFC 3339, the operator's clock).
    pub started_at: String,
    /// The user's access key ids just before the creation. A key not in this list,
    /// created around `startedAt` and not in the Secret is the interrupted creation's.
    #[serde(default)]
    pub keys_before: Vec<String>,
    /// The id of the key the creation made, recorded as soon as AWS answered: the
    /// orphan is then exactly this key, never another object's key on the same user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_key_id: Option<String>,
    /// The `iamwright.dev/rotate` value this creation answers, recorded as handled
    /// once the key is delivered (also when delivery is recovered after a crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_request: Option<String>,
}
