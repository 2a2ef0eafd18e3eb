//! Observe → plan → report for a binding: its instance profile (tags, the one role),
//! the associations EC2 should hold, and the status EC2's answer leads to. Pure: every
//! decision here is a unit test from fixtures.

use std::collections::BTreeMap;

use crate::api::{InstanceBindingStatus, InstanceProfileBindingStatus};
use crate::aws::tag_diff;
use crate::controllers::Error;
use crate::controllers::instances::{Association, Targets};
use crate::reason::Reason;

/// The binding's instance profile as the spec wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    /// The AWS name of the role the profile holds.
    pub role: String,
    /// `roleRef` or `roleName`: the field a role problem is reported on.
    pub role_field: &'static str,
    pub replace_existing: bool,
}

pub use crate::aws::profiles::Profile;

/// One IAM write to the binding's profile.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileWrite {
    Untag(Vec<String>),
    Tag(BTreeMap<String, String>),
    /// Take another role out (a profile holds at most one).
    RemoveRole(String),
    AddRole,
}

impl ProfileWrite {
    pub fn field(&self, d: &Desired) -> String {
        match self {
            ProfileWrite::Untag(_) | ProfileWrite::Tag(_) => "spec.tags".into(),
            ProfileWrite::RemoveRole(_) | ProfileWrite::AddRole => d.role_field.into(),
        }
    }
}

/// The profile's tags exactly the spec's, and the spec's role its only role.
pub fn plan_profile(d: &Desired, p: &Profile) -> Vec<ProfileWrite> {
    let mut writes = vec![];
    let (remove, set) = tag_diff(&p.tags, &d.tags);
    if !remove.is_empty() {
        writes.push(ProfileWrite::Untag(remove));
    }
    if !set.is_empty() {
        writes.push(ProfileWrite::Tag(set));
    }
    for other in p.roles.iter().filter(|r| **r != d.role) {
        writes.push(ProfileWrite::RemoveRole(other.clone()));
    }
    if !p.roles.contains(&d.role) {
        writes.push(ProfileWrite::AddRole);
    }
    writes
}

/// One EC2 write.
#[derive(Debug, Clone, PartialEq)]
pub enum AssocWrite {
    Associate(String),
    /// Replace the association `association` (of profile `had`) on the instance.
    Replace {
        instance: String,
        association: String,
        had: String,
    },
    /// The instance is no longer targeted.
    Disassociate {
        instance: String,
        association: String,
    },
}

/// Targets that cannot be associated now: instance → (state, why).
pub type Pending = BTreeMap<String, (&'static str, String)>;

/// The associations that make EC2 match the targets. `owners` names the iamwright
/// owner of each other profile found on a target (looked up only for replaceExisting):
/// another owner's profile is never replaced.
pub fn plan_associations(
    profile_arn: &str,
    targets: &Targets,
    assocs: &BTreeMap<String, Association>,
    replace_existing: bool,
    owners: &BTreeMap<String, String>,
) -> (Vec<AssocWrite>, Pending) {
    let mut writes = vec![];
    let mut pending = Pending::new();
    for id in &targets.live {
        match assocs.get(id) {
            None => writes.push(AssocWrite::Associate(id.clone())),
            Some(a) if a.profile_arn == profile_arn && a.is_active() => {}
            Some(a) if a.state == "disassociating" => {
                let why = format!("waiting for the previous association {} to end", a.id);
                pending.insert(id.clone(), ("Associating", why));
            }
            // A conflict is reported from the associations, not written.
            Some(_) if !replace_existing => {}
            Some(a) => match owners.get(&a.profile_arn) {
                Some(who) => {
                    let why = format!(
                        "instance carries instance profile {} of another iamwright object ({who}); spec.replaceExisting never replaces it",
                        a.profile_arn
                    );
                    pending.insert(id.clone(), ("Conflict", why));
                }
                None => writes.push(AssocWrite::Replace {
                    instance: id.clone(),
                    association: a.id.clone(),
                    had: a.profile_arn.clone(),
                }),
            },
        }
    }
    for a in assocs.values() {
        if a.profile_arn == profile_arn && a.is_active() && !targets.live.contains(&a.instance_id) {
            writes.push(AssocWrite::Disassociate {
                instance: a.instance_id.clone(),
                association: a.id.clone(),
            });
        }
    }
    (writes, pending)
}

/// The other profiles on targeted instances whose owner must be known before a
/// replace (only with replaceExisting).
pub fn profiles_to_check(
    profile_arn: &str,
    targets: &Targets,
    assocs: &BTreeMap<String, Association>,
    replace_existing: bool,
) -> Vec<String> {
    if !replace_existing {
        return vec![];
    }
    let mut arns: Vec<String> = targets
        .live
        .iter()
        .filter_map(|id| assocs.get(id))
        .filter(|a| a.profile_arn != profile_arn && a.is_active())
        .map(|a| a.profile_arn.clone())
        .collect();
    arns.sort();
    arns.dedup();
    arns
}

/// The status of a binding, from what EC2 reports, and what keeps it from Ready.
pub struct Report {
    pub status: InstanceProfileBindingStatus,
    pub message: String,
    pub problem: Option<Error>,
    /// Some association is still `associating`.
    pub associating: bool,
}

/// The status rows from what EC2 reports, and the condition they lead to.
pub fn report(
    arn: &str,
    role: &str,
    targets: &Targets,
    assocs: &BTreeMap<String, Association>,
    pending: &Pending,
) -> Report {
    let mut rows = vec![];
    for id in &targets.live {
        let row = |state: &str, association_id: Option<String>, message: Option<String>| {
            InstanceBindingStatus {
                instance_id: id.clone(),
                association_id,
                state: state.to_string(),
                message,
            }
        };
        rows.push(match (assocs.get(id), pending.get(id)) {
            (Some(a), _) if a.profile_arn == arn && a.state == "associated" => {
                row("Associated", Some(a.id.clone()), None)
            }
            (Some(a), _) if a.profile_arn == arn && a.state == "associating" => {
                row("Associating", Some(a.id.clone()), None)
            }
            (_, Some((state, message))) => row(state, None, Some(message.clone())),
            (Some(a), None) if a.is_active() => row(
                "Conflict",
                None,
                Some(format!(
                    "instance carries instance profile {} ({}); set spec.replaceExisting: true to replace it",
                    a.profile_arn, a.id
                )),
            ),
            _ => row(
                "Associating",
                None,
                Some("not associated yet; retrying".into()),
            ),
        });
    }
    for (state, listed) in [
        ("NotPermitted", &targets.not_permitted),
        ("NotFound", &targets.not_found),
    ] {
        for (id, message) in listed {
            rows.push(InstanceBindingStatus {
                instance_id: id.clone(),
                association_id: None,
                state: state.into(),
                message: Some(message.clone()),
            });
        }
    }
    rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));

    let bound = rows.iter().filter(|r| r.association_id.is_some()).count();
    let count = |state: &str| rows.iter().filter(|r| r.state == state).count();
    let first = |state: &str| {
        rows.iter()
            .find(|r| r.state == state)
            .map(|r| {
                format!(
                    "{}: {}",
                    r.instance_id,
                    r.message.as_deref().unwrap_or_default()
                )
            })
            .unwrap_or_default()
    };
    let waiting = |reason, message| {
        Some(Error::Waiting {
            field: None,
            reason,
            message,
        })
    };
    let problem = if count("Conflict") > 0 {
        waiting(
            Reason::InstanceConflict,
            format!(
                "{} instance(s) carry another instance profile; {}",
                count("Conflict"),
                first("Conflict")
            ),
        )
    } else if count("NotPermitted") > 0 {
        waiting(
            Reason::NotPermitted,
            format!(
                "{} instance(s) may not be bound from this namespace; {}",
                count("NotPermitted"),
                first("NotPermitted")
            ),
        )
    } else if count("NotFound") > 0 {
        waiting(
            Reason::DependencyNotReady,
            format!(
                "{} instance(s) cannot be bound; {}",
                count("NotFound"),
                first("NotFound")
            ),
        )
    } else if rows
        .iter()
        .any(|r| r.state == "Associating" && r.association_id.is_none())
    {
        waiting(
            Reason::Updating,
            format!("associating; {}", first("Associating")),
        )
    } else {
        None
    };
    Report {
        message: format!(
            "instance profile {arn} holds role {role} and is associated with {bound} instance(s)"
        ),
        associating: count("Associating") > 0,
        status: InstanceProfileBindingStatus {
            instance_profile_arn: Some(arn.to_string()),
            instances: rows,
            bound_count: Some(bound as i32),
            ..Default::default()
        },
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const OURS: &str = "arn:aws:iam::1:instance-profile/ours";

    fn assoc(instance: &str, profile: &str, state: &str) -> (String, Association) {
        (
            instance.into(),
            Association {
                id: format!("assoc-{instance}"),
                instance_id: instance.into(),
                profile_arn: profile.into(),
                state: state.into(),
            },
        )
    }

    fn targets(ids: &[&str]) -> Targets {
        Targets {
            live: ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            ..Default::default()
        }
    }

    fn desired() -> Desired {
        Desired {
            name: "ours".into(),
            path: "/".into(),
            tags: BTreeMap::from([("team".into(), "a".into())]),
            role: "app".into(),
            role_field: "spec.roleRef",
            replace_existing: false,
        }
    }

    #[test]
    fn the_profile_holds_exactly_the_role_and_the_tags() {
        let d = desired();
        let mut p = Profile {
            arn: OURS.into(),
            tags: d.tags.clone(),
            roles: vec!["app".into()],
        };
        assert_eq!(plan_profile(&d, &p), vec![]);
        p.roles = vec!["old".into()];
        p.tags.insert("stray".into(), "x".into());
        let writes = plan_profile(&d, &p);
        assert_eq!(
            writes,
            vec![
                ProfileWrite::Untag(vec!["stray".into()]),
                ProfileWrite::RemoveRole("old".into()),
                ProfileWrite::AddRole
            ]
        );
        assert_eq!(writes[2].field(&d), "spec.roleRef");
    }

    #[test]
    fn associations_follow_the_targets_and_never_replace_another_owner() {
        let assocs = BTreeMap::from([
            assoc("i-ours", OURS, "associated"),
            assoc(
                "i-other",
                "arn:aws:iam::1:instance-profile/other",
                "associated",
            ),
            assoc(
                "i-tenant",
                "arn:aws:iam::1:instance-profile/tenant",
                "associated",
            ),
            assoc("i-leaving", OURS, "associated"),
            assoc(
                "i-ending",
                "arn:aws:iam::1:instance-profile/x",
                "disassociating",
            ),
        ]);
        let t = targets(&["i-ours", "i-other", "i-tenant", "i-new", "i-ending"]);
        // Without replaceExisting: only the free instance, and the one no longer targeted.
        let (writes, pending) = plan_associations(OURS, &t, &assocs, false, &BTreeMap::new());
        assert_eq!(
            writes,
            vec![
                AssocWrite::Associate("i-new".into()),
                AssocWrite::Disassociate {
                    instance: "i-leaving".into(),
                    association: "assoc-i-leaving".into()
                }
            ]
        );
        assert_eq!(pending["i-ending"].0, "Associating");
        let r = report(OURS, "app", &t, &assocs, &pending);
        assert!(matches!(
            r.problem,
            Some(Error::Waiting {
                reason: Reason::InstanceConflict,
                ..
            })
        ));
        // With it: the untagged profile is replaced, another owner's never.
        assert_eq!(
            profiles_to_check(OURS, &t, &assocs, true),
            vec![
                "arn:aws:iam::1:instance-profile/other",
                "arn:aws:iam::1:instance-profile/tenant"
            ]
        );
        let owners = BTreeMap::from([(
            "arn:aws:iam::1:instance-profile/tenant".to_string(),
            "ns/b".to_string(),
        )]);
        let (writes, pending) = plan_associations(OURS, &t, &assocs, true, &owners);
        assert!(writes.contains(&AssocWrite::Replace {
            instance: "i-other".into(),
            association: "assoc-i-other".into(),
            had: "arn:aws:iam::1:instance-profile/other".into()
        }));
        assert_eq!(pending["i-tenant"].0, "Conflict");
    }

    #[test]
    fn the_report_is_ready_only_when_every_target_is_associated() {
        let assocs = BTreeMap::from([
            assoc("i-1", OURS, "associated"),
            assoc("i-2", OURS, "associating"),
        ]);
        let r = report(
            OURS,
            "app",
            &targets(&["i-1", "i-2"]),
            &assocs,
            &Pending::new(),
        );
        assert!(r.problem.is_none());
        assert!(r.associating);
        assert_eq!(r.status.bound_count, Some(2));
        let r = report(
            OURS,
            "app",
            &targets(&["i-1", "i-3"]),
            &assocs,
            &Pending::new(),
        );
        assert!(matches!(
            r.problem,
            Some(Error::Waiting {
                reason: Reason::Updating,
                ..
            })
        ));
    }
}
