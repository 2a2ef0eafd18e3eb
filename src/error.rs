//! Why a reconcile did not reach Ready, and what that shows in the conditions. Below
//! the trust model and the controllers, so that both return the same error without
//! importing each other (the retry policy, which needs the controllers' context, is
//! `controllers::retry`).

use crate::aws::{AwsError, AwsErrorKind};
use crate::reason::Reason;
use crate::status::Outcome;

/// Consecutive AccessDenied answers after which an object shows `Stalled`: the
/// operator's role lacks a permission and a human has to grant it.
const ACCESS_DENIED_STALLS_AFTER: u32 = 3;

/// What a reference wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    /// No object of that name in the namespace (yet).
    Missing,
    /// The object exists and is not Ready for its current generation yet.
    NotReady,
}

/// Why a reconcile did not reach Ready.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot succeed without a change by the user; no AWS write was made.
    /// `field` names the spec field at fault, when one is (`iamwright validate`
    /// reports it as such; the condition message starts with it).
    #[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Stalled {
        reason: Reason,
        field: Option<String>,
        message: String,
    },
    /// Waiting for something outside the object (a dependency, AWS consistency);
    /// `field` as for `Stalled`.
    #[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Waiting {
        reason: Reason,
        field: Option<String>,
        message: String,
    },
    /// Waiting for an object of the namespace that a reference names (`policyRefs`,
    /// `roleRef`); condition reason `DependencyNotReady`. A type of its own, so that no
    /// other wait (e.g. AWS's own "does not exist") can be taken for one by its text.
    #[error("{message}")]
    Reference { awaited: Awaited, message: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A bug caught on one object (a panic in its reconcile).
    #[error("{0}")]
    Internal(String),
}

/// A problem with one field of a spec: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<crate::policy::DocumentError> for FieldError {
    fn from(e: crate::policy::DocumentError) -> Self {
        Self::new(e.path, e.message)
    }
}

impl Error {
    /// Stalled on something that is no one field (ownership, a conflict of scopes).
    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason,
            field: None,
            message: message.into(),
        }
    }

    /// Stalled on the spec field `field`.
    pub fn at(reason: Reason, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// Stalled on a [`FieldError`] (or anything that converts to one, such as a
    /// policy document's problem).
    pub fn invalid(reason: Reason, e: impl Into<FieldError>) -> Self {
        let e = e.into();
        Self::at(reason, e.field, e.message)
    }

    /// The spec field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Stalled { field, .. } | Error::Waiting { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The message without the field.
    pub fn detail(&self) -> String {
        match self {
            Error::Stalled { message, .. } | Error::Waiting { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The conditions this error shows, after `failures` failures in a row before it.
    /// Errors a retry cannot fix show `Stalled=True` (kstatus: Failed) — AWS refusing
    /// the input, a quota, access denied that persists; the rest `Reconciling=True`.
    pub fn outcome(&self, failures: u32) -> Outcome {
        match self {
            Error::Stalled { reason, .. } => Outcome::stalled(*reason, self.to_string()),
            Error::Waiting { reason, .. } => Outcome::progressing(*reason, self.to_string()),
            Error::Reference { message, .. } => {
                Outcome::progressing(Reason::DependencyNotReady, message.clone())
            }
            Error::Aws(e) => {
                let m = e.to_string();
                match e.kind {
                    AwsErrorKind::Throttled => Outcome::progressing(Reason::AwsThrottled, m),
                    AwsErrorKind::AccessDenied if failures + 1 >= ACCESS_DENIED_STALLS_AFTER => {
                        Outcome::stalled(Reason::AwsAccessDenied, m)
                    }
                    AwsErrorKind::AccessDenied => Outcome::progressing(Reason::AwsAccessDenied, m),
                    AwsErrorKind::LimitExceeded => Outcome::stalled(Reason::LimitExceeded, m),
                    AwsErrorKind::Invalid => Outcome::stalled(Reason::AwsError, m),
                    _ => Outcome::progressing(Reason::AwsError, m),
                }
            }
            Error::Kube(e) => Outcome::progressing(
                Reason::KubernetesError,
                format!("Kubernetes API error: {e}"),
            ),
            Error::Internal(m) => Outcome::stalled(Reason::InternalError, m.clone()),
        }
    }

    /// Waiting for an object of the namespace that a reference names (a `policyRefs`
    /// IamPolicy, a `roleRef` IamRole): missing, or not Ready yet.
    pub fn is_reference_wait(&self) -> bool {
        matches!(self, Error::Reference { .. })
    }

    /// Waiting for a referenced object that exists and is not Ready yet: progress,
    /// not a problem worth a warning event (a missing one is).
    pub fn is_dependency_in_progress(&self) -> bool {
        matches!(
            self,
            Error::Reference {
                awaited: Awaited::NotReady,
                ..
            }
        )
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Stalled { .. } => "stalled",
            Error::Waiting { .. } | Error::Reference { .. } => "waiting",
            Error::Aws(_) => "aws_error",
            Error::Kube(_) => "kube_error",
            Error::Internal(_) => "internal_error",
        }
    }
}

/// The error type of the command-line entry points (`run`, leader election): any error,
/// printed once by `main`.
pub mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
