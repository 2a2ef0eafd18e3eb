//! The one ownership decision every kind makes about an AWS resource that already
//! exists: ours → manage it, another iamwright object's → never touch it, untagged →
//! adopt it only when the spec asks and the platform granted adoption.

use super::Error;
use crate::aws::Ownership;
use crate::reason::Reason;

/// What the operator may do with an existing resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Tagged for this object: manage it.
    Ours,
    /// Untagged, `adopt: true` and adoption granted: take it over (tagging it).
    Adopt,
    /// `managementPolicy: Observe`: read it, never write.
    Observe,
}

/// Decide on `what` (e.g. `role arn:...`) from its ownership tags. Pure, so every
/// branch is a unit test; the grant check is passed in (`crate::trust`'s).
pub fn claim(
    ownership: &Ownership,
    what: &str,
    adopt: bool,
    observe: bool,
    adopt_granted: impl FnOnce() -> Result<(), Error>,
) -> Result<Claim, Error> {
    match ownership {
        // Another object's resource is not ours to change nor to mirror into this
        // namespace's status: a tenant learns nothing of another's through Observe.
        Ownership::Another(who) => Err(Error::stalled(
            Reason::OwnedByAnother,
            format!("{what} is managed by another iamwright object ({who}); it is left untouched"),
        )),
        Ownership::Ours if observe => Ok(Claim::Observe),
        Ownership::Ours => Ok(Claim::Ours),
        // Observing an unmanaged resource is the step before adopting it: same grant.
        Ownership::Untagged if observe => adopt_granted().map(|()| Claim::Observe),
        Ownership::Untagged if !adopt => Err(Error::stalled(
            Reason::AlreadyExists,
            format!(
                "{what} already exists and is not managed by iamwright; set spec.adopt: true to take it over"
            ),
        )),
        Ownership::Untagged => adopt_granted().map(|()| Claim::Adopt),
    }
}

/// Whether the object's last answer (its Ready condition) was that the name is taken by
/// a resource not its own (`AlreadyExists`, `OwnedByAnother`). Such an object retries
/// with a read, not with the create that answered it: the create would only be refused
/// again, at the cost of a write of the account's shared rate, while the read tells
/// whether the name became free (then it creates) or the claim's answer changed.
pub fn held_by_existing(conditions: &[crate::api::Condition]) -> bool {
    crate::status::ready_of(conditions)
        .is_some_and(|(reason, _)| matches!(reason, "AlreadyExists" | "OwnedByAnother"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_taken_is_retried_with_a_read() {
        let ready = |reason: &str| {
            vec![crate::api::Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: String::new(),
            }]
        };
        assert!(held_by_existing(&ready("AlreadyExists")));
        assert!(held_by_existing(&ready("OwnedByAnother")));
        assert!(!held_by_existing(&ready("AwsThrottled")));
        assert!(!held_by_existing(&ready("DependencyNotReady")));
        assert!(!held_by_existing(&[]));
    }

    fn granted() -> Result<(), Error> {
        Ok(())
    }
    fn refused() -> Result<(), Error> {
        Err(Error::at(Reason::NotPermitted, "spec.adopt", "not granted"))
    }
    fn reason(r: Result<Claim, Error>) -> String {
        match r {
            Err(Error::Stalled { reason, .. }) => reason.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn every_branch_of_the_claim() {
        let untagged = Ownership::Untagged;
        let another = Ownership::Another("x".into());
        assert_eq!(
            claim(&Ownership::Ours, "r", false, false, refused).unwrap(),
            Claim::Ours
        );
        assert_eq!(
            claim(&Ownership::Ours, "r", false, true, refused).unwrap(),
            Claim::Observe
        );
        assert_eq!(
            reason(claim(&another, "r", true, false, granted)),
            "OwnedByAnother"
        );
        assert_eq!(
            reason(claim(&another, "r", false, true, granted)),
            "OwnedByAnother"
        );
        assert_eq!(
            reason(claim(&untagged, "r", false, false, granted)),
            "AlreadyExists"
        );
        assert_eq!(
            reason(claim(&untagged, "r", true, false, refused)),
            "NotPermitted"
        );
        assert_eq!(
            claim(&untagged, "r", true, false, granted).unwrap(),
            Claim::Adopt
        );
        assert_eq!(
            reason(claim(&untagged, "r", false, true, refused)),
            "NotPermitted"
        );
        assert_eq!(
            claim(&untagged, "r", false, true, granted).unwrap(),
            Claim::Observe
        );
    }
}
