//! `managementPolicy: Observe`: the report of an object that only reads AWS. The
//! status mirrors AWS; `Drifted` names the spec fields AWS differs in. A drifted
//! object is `Stalled` (reason `Drifted`): the operator will not change AWS, so only a
//! human can bring the two together, and kstatus tools (Flux, Argo CD) should say so.

use super::Error;
use super::reconciler::Applied;
use crate::reason::Reason;
use crate::status::Extra;

/// The condition type that says whether AWS differs from the spec.
pub const DRIFTED: &str = "Drifted";

/// The report of an observe-only reconcile of `what` (e.g. `role arn:...`), whose
/// plan would have written to the spec `fields`.
pub fn report<S>(what: &str, status: S, fields: &[String]) -> Applied<S> {
    if fields.is_empty() {
        return Applied::synced(
            status,
            format!("{what} matches the spec (managementPolicy: Observe)"),
        )
        .with_extra([Extra {
            type_: DRIFTED,
            status: false,
            problem: false,
            reason: "InSync",
            message: "AWS matches the spec".into(),
        }]);
    }
    let listed = fields.join(", ");
    Applied::failed(
        Some(status),
        Error::stalled(
            Reason::Drifted,
            format!(
                "{what} differs from the spec in {listed}; managementPolicy: Observe never changes AWS (set it to Manage to let the operator)"
            ),
        ),
    )
    .with_extra([Extra {
        type_: DRIFTED,
        status: true,
        problem: false,
        reason: "Drifted",
        message: format!("AWS differs from the spec in {listed}"),
    }])
}

/// The error of an observe-only object whose AWS resource does not exist.
pub fn not_found(what: &str) -> Error {
    Error::stalled(
        Reason::NotFound,
        format!("{what} does not exist; managementPolicy: Observe never creates it"),
    )
}

/// An observed resource need not carry the operator's ownership tags (it only gets
/// them when managed): observe compares the user's tags alone.
pub fn user_tags_only(tags: &mut std::collections::BTreeMap<String, String>) {
    tags.retain(|k, _| !k.starts_with("iamwright.dev/"));
}

/// The spec fields named by a plan's writes, once each and in order.
pub fn fields(named: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for f in named {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}
