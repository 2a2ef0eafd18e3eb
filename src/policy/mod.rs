//! The IAM policy document model: validation with messages that name the field,
//! canonical form for semantic comparison, and action matching for guardrails.

mod canonical;
mod guardrail;
mod validate;

pub use canonical::{canonicalize, decode_aws_document, same_document};
pub use guardrail::{allowed_actions_matching, glob_match};
pub use validate::{DocKind, DocumentError, validate_document};
