//! The condition reasons of the API contract, as a type: a reason is one of these or
//! it does not compile, and each says whether it needs a human (`Stalled`) or not.

/// A stable CamelCase reason of `Ready` / `Reconciling` / `Stalled` and of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Synced,
    Creating,
    Updating,
    Deleting,
    DependencyNotReady,
    InvalidSpec,
    InvalidPolicyDocument,
    GuardrailViolation,
    AlreadyExists,
    OwnedByAnother,
    LimitExceeded,
    InstanceConflict,
    AwsAccessDenied,
    AwsThrottled,
    AwsError,
    Rotating,
    /// A new access key is checked with STS before it is delivered.
    Verifying,
    SecretRecreated,
    NotPermitted,
    ScopeConflict,
    /// `managementPolicy: Observe`: the AWS resource to observe does not exist.
    NotFound,
    /// `managementPolicy: Observe`: AWS differs from the spec (the operator will not
    /// change it; condition `Drifted` names the fields).
    Drifted,
    /// The Kubernetes API failed (not part of the first contract's list: the contract
    /// is silent on it, and `AwsError` would send a reader to the wrong system).
    KubernetesError,
    /// A bug in the operator, caught on one object (a panic): reported, never fatal.
    InternalError,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Synced => "Synced",
            Reason::Creating => "Creating",
            Reason::Updating => "Updating",
            Reason::Deleting => "Deleting",
            Reason::DependencyNotReady => "DependencyNotReady",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InvalidPolicyDocument => "InvalidPolicyDocument",
            Reason::GuardrailViolation => "GuardrailViolation",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::OwnedByAnother => "OwnedByAnother",
            Reason::LimitExceeded => "LimitExceeded",
            Reason::InstanceConflict => "InstanceConflict",
            Reason::AwsAccessDenied => "AwsAccessDenied",
            Reason::AwsThrottled => "AwsThrottled",
            Reason::AwsError => "AwsError",
            Reason::Rotating => "Rotating",
            Reason::Verifying => "Verifying",
            Reason::SecretRecreated => "SecretRecreated",
            Reason::NotPermitted => "NotPermitted",
            Reason::ScopeConflict => "ScopeConflict",
            Reason::NotFound => "NotFound",
            Reason::Drifted => "Drifted",
            Reason::KubernetesError => "KubernetesError",
            Reason::InternalError => "InternalError",
        }
    }

    /// Reasons that only a change of the spec can clear: the operator waits for one
    /// instead of retrying (other stalled reasons are re-checked at the resync).
    pub const fn waits_for_spec_change(self) -> bool {
        matches!(
            self,
            Reason::InvalidPolicyDocument | Reason::GuardrailViolation | Reason::InvalidSpec
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
