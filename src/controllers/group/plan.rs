//! Observe → plan: what AWS holds for a group, and the writes that make it the spec.
//! Pure: every decision here is a unit test from fixtures.

use std::collections::BTreeMap;

use serde_json::Value;

use super::marker;
use super::spec::Desired;
use crate::api::IamGroupStatus;
use crate::policy::same_document;

/// A group as AWS holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub arn: String,
    pub group_id: String,
    pub path: String,
    /// The ownership its marker policy records (empty: no marker).
    pub owner: BTreeMap<String, String>,
    pub attached: Vec<String>,
    /// Every inline policy's name but the marker's, with its document where it was read
    /// (the ones the spec names: the others are deleted whatever they hold).
    pub inline: BTreeMap<String, Option<Value>>,
    /// The group's members (user names), where they were listed.
    pub members: Vec<String>,
}

impl Observed {
    /// The group exactly as CreateGroup just made it from `d`: no marker yet, nothing
    /// attached, no member. Planning against it needs no read after a create.
    pub fn created(d: &Desired, arn: String, group_id: String) -> Self {
        Self {
            arn,
            group_id,
            path: d.path.clone(),
            owner: BTreeMap::new(),
            attached: vec![],
            inline: BTreeMap::new(),
            members: vec![],
        }
    }

    /// The group as this process last saw it in sync with `d`, with the identity its
    /// status recorded (members as the status lists them). None without an identity.
    pub fn in_sync(d: &Desired, status: &IamGroupStatus) -> Option<Self> {
        Some(Self {
            owner: d.owner.clone(),
            attached: d.attached.clone(),
            inline: d
                .inline
                .iter()
                .map(|(name, doc)| (name.clone(), Some(doc.clone())))
                .collect(),
            members: status.members.clone(),
            ..Self::created(d, status.arn.clone()?, status.group_id.clone()?)
        })
    }

    /// Whether the group holds nothing: no policy, no member. What a create interrupted
    /// before its marker leaves behind.
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
            && self.attached.is_empty()
            && self.inline.is_empty()
            && self.members.is_empty()
    }
}

/// One AWS write of a group reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Record (or bring up to date) the ownership marker; always first, so a group
    /// holding anything of the spec's is provably this object's.
    Marker,
    /// Move the group to the spec's path.
    Path,
    Attach(String),
    Detach(String),
    PutInline(String),
    DeleteInline(String),
}

impl Write {
    /// The spec field this write brings AWS to: what `Drifted` names.
    pub fn field(&self) -> String {
        match self {
            Write::Marker => "ownership marker".into(),
            Write::Path => "spec.path".into(),
            Write::Attach(_) | Write::Detach(_) => "spec.managedPolicyArns/spec.policyRefs".into(),
            Write::PutInline(name) | Write::DeleteInline(name) => {
                format!("spec.inlinePolicies.{name}")
            }
        }
    }

    /// What the write did, for the Updated / DriftCorrected event.
    pub fn note(&self, d: &Desired) -> String {
        match self {
            Write::Marker => format!("recorded the ownership in inline policy {}", marker::POLICY),
            Write::Path => format!("moved the group to path {}", d.path),
            Write::Attach(arn) => format!("attached policy {arn}"),
            Write::Detach(arn) => format!("detached policy {arn}"),
            Write::PutInline(name) => format!("put inline policy {name}"),
            Write::DeleteInline(name) => format!("deleted inline policy {name}"),
        }
    }
}

/// The writes, in order, that make `seen` the group `d` describes; none when in sync.
/// Members are not the group's to decide (users join from their side).
pub fn plan(d: &Desired, seen: &Observed) -> Vec<Write> {
    let mut writes = vec![];
    if seen.owner != d.owner {
        writes.push(Write::Marker);
    }
    if seen.path != d.path {
        writes.push(Write::Path);
    }
    for arn in d.attached.iter().filter(|a| !seen.attached.contains(a)) {
        writes.push(Write::Attach(arn.clone()));
    }
    for arn in seen.attached.iter().filter(|a| !d.attached.contains(a)) {
        writes.push(Write::Detach(arn.clone()));
    }
    for (name, doc) in &d.inline {
        let same = matches!(seen.inline.get(name), Some(Some(have)) if same_document(have, doc));
        if !same {
            writes.push(Write::PutInline(name.clone()));
        }
    }
    for name in seen.inline.keys().filter(|n| !d.inline.contains_key(*n)) {
        writes.push(Write::DeleteInline(name.clone()));
    }
    writes
}

/// The fields named by `writes`, once each, for the `Drifted` condition (the marker is
/// not a spec field: an observed group need not carry it).
pub fn drifted_fields(writes: &[Write]) -> Vec<String> {
    crate::controllers::observe::fields(
        writes
            .iter()
            .filter(|w| **w != Write::Marker)
            .map(Write::field),
    )
}

/// Whether a group without a marker is the one this object's own create left before it
/// could record the marker (a crash or a lost answer between CreateGroup and
/// PutGroupPolicy): created after the object, and holding nothing. Such a group is
/// claimed as ours; any other unmarked group is someone else's (adopt it, or not).
/// Times are Unix seconds.
pub fn interrupted_create(
    seen: &Observed,
    group_created: Option<i64>,
    object_created: Option<i64>,
) -> bool {
    match (group_created, object_created) {
        (Some(g), Some(o)) => seen.is_empty() && g >= o,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Desired {
        Desired {
            name: "ns-admins".into(),
            path: "/".into(),
            owner: BTreeMap::from([("iamwright.dev/name".into(), "admins".into())]),
            attached: vec!["arn:aws:iam::aws:policy/A".into()],
            inline: BTreeMap::from([(
                "s3".into(),
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": "s3:GetObject", "Resource": "*"}]}),
            )]),
        }
    }

    fn status() -> IamGroupStatus {
        IamGroupStatus {
            arn: Some("arn:aws:iam::1:group/ns-admins".into()),
            group_id: Some("G".into()),
            members: vec!["alice".into()],
            ..Default::default()
        }
    }

    #[test]
    fn in_sync_plans_nothing() {
        let d = desired();
        let seen = Observed::in_sync(&d, &status()).unwrap();
        assert_eq!(plan(&d, &seen), vec![]);
        assert_eq!(seen.members, vec!["alice"]);
        assert_eq!(Observed::in_sync(&d, &IamGroupStatus::default()), None);
    }

    #[test]
    fn a_new_group_gets_its_marker_first_then_its_policies() {
        let d = desired();
        let seen = Observed::created(&d, "arn".into(), "id".into());
        assert_eq!(
            plan(&d, &seen),
            vec![
                Write::Marker,
                Write::Attach("arn:aws:iam::aws:policy/A".into()),
                Write::PutInline("s3".into())
            ]
        );
    }

    #[test]
    fn drift_of_every_field_is_planned_back_and_named() {
        let d = desired();
        let mut seen = Observed::in_sync(&d, &status()).unwrap();
        seen.path = "/elsewhere/".into();
        seen.attached = vec!["arn:aws:iam::aws:policy/B".into()];
        seen.inline.insert(
            "s3".into(),
            Some(json!({"Version": "2012-10-17", "Statement": []})),
        );
        seen.inline.insert("stray".into(), None);
        // Members added by hand are left: membership is decided from the users' side.
        seen.members.push("mallory".into());
        let writes = plan(&d, &seen);
        assert_eq!(
            writes,
            vec![
                Write::Path,
                Write::Attach("arn:aws:iam::aws:policy/A".into()),
                Write::Detach("arn:aws:iam::aws:policy/B".into()),
                Write::PutInline("s3".into()),
                Write::DeleteInline("stray".into()),
            ]
        );
        assert_eq!(
            drifted_fields(&writes),
            vec![
                "spec.path",
                "spec.managedPolicyArns/spec.policyRefs",
                "spec.inlinePolicies.s3",
                "spec.inlinePolicies.stray",
            ]
        );
    }

    #[test]
    fn a_marker_of_an_earlier_form_is_rewritten_but_is_no_drift() {
        let d = desired();
        let mut seen = Observed::in_sync(&d, &status()).unwrap();
        seen.owner.remove("iamwright.dev/name");
        seen.owner
            .insert("iamwright.dev/cluster".into(), "c".into());
        let writes = plan(&d, &seen);
        assert_eq!(writes, vec![Write::Marker]);
        assert!(drifted_fields(&writes).is_empty());
    }

    #[test]
    fn only_an_empty_group_made_after_the_object_is_an_interrupted_create() {
        let d = desired();
        let empty = Observed::created(&d, "arn".into(), "id".into());
        assert!(interrupted_create(&empty, Some(100), Some(90)));
        assert!(interrupted_create(&empty, Some(90), Some(90)));
        // Older than the object: it was there before; someone else's.
        assert!(!interrupted_create(&empty, Some(80), Some(90)));
        assert!(!interrupted_create(&empty, None, Some(90)));
        // Holding anything: not what a bare create leaves.
        let mut used = empty.clone();
        used.members.push("bob".into());
        assert!(!interrupted_create(&used, Some(100), Some(90)));
        let mut used = empty;
        used.attached.push("arn:aws:iam::aws:policy/A".into());
        assert!(!interrupted_create(&used, Some(100), Some(90)));
    }
}
