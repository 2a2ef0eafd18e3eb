use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

/// How the operator treats an AWS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The entity does not exist.
    NotFound,
    /// The entity exists already.
    AlreadyExists,
    /// A quota was reached (e.g. 5 policy versions, 2 access keys).
    LimitExceeded,
    /// Rate limited: retried with backoff.
    Throttled,
    /// The operator's identity may not do this: reported, retried slowly.
    AccessDenied,
    /// AWS refused the input: reported, not retried until the spec changes.
    Invalid,
    /// A concurrent change or a transient conflict: retried.
    Conflict,
    /// Network errors, timeouts, 5xx: retried with backoff.
    Transient,
    /// Anything else: retried with backoff.
    Other,
}

/// A classified AWS error. Its text holds the operation, the AWS error code and AWS's
/// message; nothing from the request (so never a secret).
#[derive(Debug, Clone, thiserror::Error)]
#[error("AWS {operation} failed: {code}: {message}")]
pub struct AwsError {
    pub kind: AwsErrorKind,
    pub operation: &'static str,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(_) => {
                let code = err.code().unwrap_or("Unknown").to_string();
                let message = err.message().unwrap_or("").to_string();
                Self {
                    kind: classify(&code),
                    operation,
                    code,
                    message,
                }
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Self {
                kind: AwsErrorKind::Transient,
                operation,
                code: "Unreachable".into(),
                message: "AWS endpoint unreachable or timed out".into(),
            },
            SdkError::ResponseError(_) => Self {
                kind: AwsErrorKind::Transient,
                operation,
                code: "BadResponse".into(),
                message: "AWS returned a response that could not be read".into(),
            },
            _ => Self {
                kind: AwsErrorKind::Other,
                operation,
                code: "ClientError".into(),
                message: "the request could not be built".into(),
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == AwsErrorKind::NotFound
    }
}

/// Reads where "it does not exist" is an answer, not an error.
pub trait Found<T> {
    /// `Ok(None)` for NotFound, the value or the other error otherwise.
    fn found(self) -> Result<Option<T>, AwsError>;
}

impl<T> Found<T> for Result<T, AwsError> {
    fn found(self) -> Result<Option<T>, AwsError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Map an AWS error code to how it is treated.
pub fn classify(code: &str) -> AwsErrorKind {
    match code {
        "NoSuchEntity"
        | "NoSuchEntityException"
        | "InvalidInstanceID.NotFound"
        | "InvalidAssociationID.NotFound" => AwsErrorKind::NotFound,
        "EntityAlreadyExists" | "EntityAlreadyExistsException" => AwsErrorKind::AlreadyExists,
        "LimitExceeded" | "LimitExceededException" => AwsErrorKind::LimitExceeded,
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => AwsErrorKind::Throttled,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => AwsErrorKind::AccessDenied,
        "MalformedPolicyDocument"
        | "MalformedPolicyDocumentException"
        | "ValidationError"
        | "InvalidInput"
        | "InvalidInputException"
        | "InvalidParameterValue" => AwsErrorKind::Invalid,
        "ConcurrentModification"
        | "ConcurrentModificationException"
        | "DeleteConflict"
        | "IncorrectState"
        | "IncorrectInstanceState" => AwsErrorKind::Conflict,
        "ServiceFailure"
        | "ServiceFailureException"
        | "InternalError"
        | "ServiceUnavailable"
        | "Unavailable"
        | "InternalFailure" => AwsErrorKind::Transient,
        _ => AwsErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_codes_that_change_behaviour() {
        assert_eq!(classify("Throttling"), AwsErrorKind::Throttled);
        assert_eq!(classify("AccessDenied"), AwsErrorKind::AccessDenied);
        assert_eq!(classify("MalformedPolicyDocument"), AwsErrorKind::Invalid);
        assert_eq!(classify("NoSuchEntity"), AwsErrorKind::NotFound);
        assert_eq!(classify("ServiceFailure"), AwsErrorKind::Transient);
        assert_eq!(classify("SomethingNew"), AwsErrorKind::Other);
    }
}
