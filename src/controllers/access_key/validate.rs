//! The checks an access key's spec must pass before any read or write: pure, and the
//! one validation of the kind — the controller and `iamwright validate` both call
//! [`validate`], so the operator and the CLI cannot disagree.

use super::schedule::{self, Schedule};
use super::user::check_arns;
use crate::api::IamUserAccessKeySpec;
use crate::controllers::Error;
use crate::reason::Reason;
use crate::trust::Governance;

/// What a valid spec yields for the reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The rotation schedule (unscaled), None without `spec.rotation`.
    pub schedule: Option<Schedule>,
    /// The boundary a created user gets: the spec's, else the one governance requires.
    pub boundary: Option<String>,
}

/// Check `spec` under `gov` (the operator's flags and the namespace's IamScope; offline,
/// the flags alone): the rotation schedule, the boundary governance requires, the
/// policy ARNs' grammar.
pub fn validate(spec: &IamUserAccessKeySpec, gov: &Governance) -> Result<Validated, Error> {
    let schedule = schedule::schedule(spec.rotation.as_ref())
        .map_err(|e| Error::invalid(Reason::InvalidSpec, e))?;
    if let (Some(req), Some(b)) = (&gov.boundary, &spec.permissions_boundary)
        && req != b
    {
        return Err(Error::at(
            Reason::GuardrailViolation,
            "spec.permissionsBoundary",
            format!("must be {req} (--required-permissions-boundary), got {b}"),
        ));
    }
    check_arns(spec)?;
    Ok(Validated {
        schedule,
        boundary: spec.permissions_boundary.clone().or(gov.boundary.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> IamUserAccessKeySpec {
        serde_yaml::from_str(yaml).unwrap()
    }
    fn governed(boundary: Option<&str>) -> Governance {
        Governance {
            boundary: boundary.map(Into::into),
            ..Default::default()
        }
    }
    fn problem(yaml: &str, gov: &Governance) -> (Reason, String, String) {
        match validate(&spec(yaml), gov).unwrap_err() {
            Error::Stalled {
                reason,
                field,
                message,
            } => (reason, field.unwrap_or_default(), message),
            other => panic!("{other}"),
        }
    }

    const REQUIRED: &str = "arn:aws:iam::111122223333:policy/boundary";

    #[test]
    fn a_valid_spec_yields_its_schedule_and_boundary() {
        let v = validate(
            &spec("userName: u\nrotation: {every: 720h, gracePeriod: 1h}\n"),
            &governed(Some(REQUIRED)),
        )
        .unwrap();
        assert_eq!(v.boundary.as_deref(), Some(REQUIRED), "the required one");
        let s = v.schedule.unwrap();
        assert_eq!(s.every.as_secs(), 720 * 3600);
        assert_eq!(s.grace.as_secs(), 3600);
        let own = format!("userName: u\npermissionsBoundary: {REQUIRED}\n");
        let v = validate(&spec(&own), &governed(None)).unwrap();
        assert_eq!((v.boundary.as_deref(), v.schedule), (Some(REQUIRED), None));
    }

    #[test]
    fn each_problem_names_its_field() {
        let none = governed(None);
        let (reason, field, message) = problem("userName: u\nrotation: {every: 10m}\n", &none);
        assert_eq!(
            (reason, field.as_str()),
            (Reason::InvalidSpec, "spec.rotation.every")
        );
        assert!(
            message.starts_with("must be between 1h and 87600h"),
            "{message}"
        );

        let other = "userName: u\npermissionsBoundary: arn:aws:iam::111122223333:policy/other\n";
        assert_eq!(
            problem(other, &governed(Some(REQUIRED))),
            (
                Reason::GuardrailViolation,
                "spec.permissionsBoundary".into(),
                format!(
                    "must be {REQUIRED} (--required-permissions-boundary), got arn:aws:iam::111122223333:policy/other"
                )
            )
        );
        let (reason, field, _) = problem(
            "userName: u\nmanagedPolicyArns: [arn:aws:iam::aws:policy/A, arn:aws:iam:us-east-1:aws:policy/x]\n",
            &none,
        );
        assert_eq!(
            (reason, field.as_str()),
            (Reason::InvalidSpec, "spec.managedPolicyArns[1]")
        );
    }
}
