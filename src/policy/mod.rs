//! The IAM policy document model: one typed parser ([`model`]) under validation with
//! messages that name the field, canonical form for semantic comparison, and action
//! matching for guardrails.

mod canonical;
pub mod catalog;
mod error;
mod guardrail;
pub mod model;
mod validate;
pub mod variables;

#[cfg(test)]
mod proptests;
/// The grammar table (AWS's accepted and refused documents), shared with the e2e
/// test that sends the accepted ones to moto.
#[doc(hidden)]
pub mod table;

pub use canonical::{canonicalize, decode_aws_document, same_document};
pub use catalog::{
    ActionCheck, Unrecognized, actions_recognized, actions_recognized_in_spec, check_action,
    unrecognized_actions, unrecognized_in_spec,
};
pub use error::DocumentError;
pub use guardrail::{allowed_actions_matching, glob_match};
pub use model::Document;
pub use validate::{
    DocKind, InlineOwner, KindRules, MAX_MANAGED_POLICY_CHARS, MAX_ROLE_INLINE_AGGREGATE_CHARS,
    MAX_TRUST_POLICY_CHARS, MAX_USER_INLINE_AGGREGATE_CHARS, check_arn, check_inline_aggregate,
    check_inline_aggregate_for, check_policy_arn, check_policy_name, minified_len,
    validate_document,
};
pub use variables::{Variables, substitute, uses_variables};
