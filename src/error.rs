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
    #[error("{message}")]
    Stalled { reason: Reason, message: String },
    /// Waiting for something outside the object (a dependency, AWS consistency).
    #[error("{message}")]
    Waiting { reason: Reason, message: String },
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

impl Error {
    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason,
            message: message.into(),
        }
    }

    /// The conditions this error shows, after `failures` failures in a row before it.
    /// Errors a retry cannot fix show `Stalled=True` (kstatus: Failed) — AWS refusing
    /// the input, a quota, access denied that persists; the rest `Reconciling=True`.
    pub fn outcome(&self, failures: u32) -> Outcome {
        match self {
            Error::Stalled { reason, message } => Outcome::stalled(*reason, message.clone()),
            Error::Waiting { reason, message } => Outcome::progressing(*reason, message.clone()),
            Error::Reference { message, .. } => {
                Outcome::progressing(Reason::DependencyNotReady, message.clone())
            }
            Error::Aws(e) => {
                let m = e.to_string();
                match e.kind {
                    AwsErrorKind::Throttled => Outcome::failing(Reason::AwsThrottled, m),
                    AwsErrorKind::AccessDenied if failures + 1 >= ACCESS_DENIED_STALLS_AFTER => {
                        Outcome::stalled(Reason::AwsAccessDenied, m)
                    }
                    AwsErrorKind::AccessDenied => Outcome::failing(Reason::AwsAccessDenied, m),
                    AwsErrorKind::LimitExceeded => Outcome::stalled(Reason::LimitExceeded, m),
                    AwsErrorKind::Invalid => Outcome::stalled(Reason::AwsError, m),
                    _ => Outcome::failing(Reason::AwsError, m),
                }
            }
            Error::Kube(e) => Outcome::failing(
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
