//! Observe → plan: what AWS holds for a role, and the writes that make it the spec.
//! Pure: every decision here is a unit test from fixtures.

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::Desired;
use crate::api::IamRoleStatus;
use crate::aws::tag_diff;
use crate::policy::same_document;

/// A role as AWS holds it (and, when looked at, its own instance profile).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub arn: String,
    pub role_id: String,
    pub tags: BTreeMap<String, String>,
    /// The trust policy, decoded; None when AWS returned none or it did not decode.
    pub trust: Option<Value>,
    pub description: String,
    pub max_session: i32,
    pub boundary: Option<String>,
    pub attached: Vec<String>,
    /// Every inline policy's name, with its document where it was read (the ones the
    /// spec names: the others are deleted whatever they hold).
    pub inline: BTreeMap<String, Option<Value>>,
    /// The instance profile of the role's name, when the spec wants one or the status
    /// says there was one, and it is this object's; None when absent or not looked at.
    pub profile: Option<Profile>,
}

pub use crate::aws::profiles::Profile;

impl Observed {
    /// The role exactly as CreateRole just made it from `d`: nothing attached, no
    /// inline policy, no profile. Planning against it needs no read after a create.
    pub fn created(d: &Desired, arn: String, role_id: String) -> Self {
        Self {
            arn,
            role_id,
            tags: d.tags.clone(),
            trust: Some(d.trust.clone()),
            description: d.description.clone(),
            max_session: d.max_session,
            boundary: d.boundary.clone(),
            attached: vec![],
            inline: BTreeMap::new(),
            profile: None,
        }
    }

    /// The role as this process last saw it in sync with `d` (written or read since
    /// the account snapshot began), with the identity its status recorded. None when
    /// the status lacks an identity the role needs.
    pub fn in_sync(d: &Desired, status: &IamRoleStatus) -> Option<Self> {
        let profile = match (d.instance_profile, &status.instance_profile_arn) {
            (false, _) => None,
            (true, Some(arn)) => Some(Profile {
                arn: arn.clone(),
                tags: BTreeMap::new(),
                roles: vec![d.name.clone()],
            }),
            (true, None) => return None,
        };
        Some(Self {
            attached: d.attached.clone(),
            inline: d
                .inline
                .iter()
                .map(|(name, doc)| (name.clone(), Some(doc.clone())))
                .collect(),
            profile,
            ..Self::created(d, status.arn.clone()?, status.role_id.clone()?)
        })
    }

    fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or("aws")
    }
}

/// One AWS write of a role reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Untag(Vec<String>),
    Tag(BTreeMap<String, String>),
    Trust,
    Settings,
    PutBoundary(String),
    DeleteBoundary(String),
    Attach(String),
    Detach(String),
    PutInline(String),
    DeleteInline(String),
    CreateProfile,
    /// Take another role out of the role's own profile (a profile holds one role).
    RemoveFromProfile(String),
    AddToProfile,
    DeleteProfile,
}

impl Write {
    /// The spec field this write brings AWS to: what `Drifted` names.
    pub fn field(&self) -> String {
        match self {
            Write::Untag(_) | Write::Tag(_) => "spec.tags".into(),
            Write::Trust => "spec.assumeRolePolicy".into(),
            Write::Settings => "spec.description/spec.maxSessionDuration".into(),
            Write::PutBoundary(_) | Write::DeleteBoundary(_) => "spec.permissionsBoundary".into(),
            Write::Attach(_) | Write::Detach(_) => "spec.managedPolicyArns/spec.policyRefs".into(),
            Write::PutInline(name) | Write::DeleteInline(name) => {
                format!("spec.inlinePolicies.{name}")
            }
            Write::CreateProfile
            | Write::RemoveFromProfile(_)
            | Write::AddToProfile
            | Write::DeleteProfile => "spec.instanceProfile".into(),
        }
    }

    /// What the write did, for the Updated / DriftCorrected event.
    pub fn note(&self, d: &Desired) -> String {
        match self {
            Write::Untag(keys) => format!("removed tags {keys:?}"),
            Write::Tag(tags) => format!("set tags {:?}", tags.keys().collect::<Vec<_>>()),
            Write::Trust => "updated the trust policy".into(),
            Write::Settings => format!(
                "set description {:?} and maxSessionDuration {}",
                d.description, d.max_session
            ),
            Write::PutBoundary(arn) => format!("set the permissions boundary {arn}"),
            Write::DeleteBoundary(arn) => format!("removed the permissions boundary {arn}"),
            Write::Attach(arn) => format!("attached policy {arn}"),
            Write::Detach(arn) => format!("detached policy {arn}"),
            Write::PutInline(name) if d.inline_from.contains(name) => {
                format!("put inline policy {name} from its ConfigMap")
            }
            Write::PutInline(name) => format!("put inline policy {name}"),
            Write::DeleteInline(name) => format!("deleted inline policy {name}"),
            Write::CreateProfile => format!("created instance profile {}", d.name),
            Write::RemoveFromProfile(role) => {
                format!("removed role {role} from instance profile {}", d.name)
            }
            Write::AddToProfile => format!("added the role to instance profile {}", d.name),
            Write::DeleteProfile => format!("deleted instance profile {}", d.name),
        }
    }
}

/// The writes, in order, that make `seen` the role `d` describes; none when in sync.
pub fn plan(d: &Desired, seen: &Observed) -> Vec<Write> {
    let mut writes = vec![];
    let (remove, set) = tag_diff(&seen.tags, &d.tags);
    if !remove.is_empty() {
        writes.push(Write::Untag(remove));
    }
    if !set.is_empty() {
        writes.push(Write::Tag(set));
    }
    let partition = seen.partition();
    let same_trust = seen.trust.as_ref().is_some_and(|t| {
        same_document(
            &normalize_trust(t, partition),
            &normalize_trust(&d.trust, partition),
        )
    });
    if !same_trust {
        writes.push(Write::Trust);
    }
    if seen.description != d.description || seen.max_session != d.max_session {
        writes.push(Write::Settings);
    }
    match (&d.boundary, &seen.boundary) {
        (Some(want), have) if Some(want) != have.as_ref() => {
            writes.push(Write::PutBoundary(want.clone()))
        }
        (None, Some(have)) => writes.push(Write::DeleteBoundary(have.clone())),
        _ => {}
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
    writes.extend(plan_profile(d, seen.profile.as_ref()));
    writes
}

/// The role's own instance profile: present holding exactly the role, or gone.
fn plan_profile(d: &Desired, profile: Option<&Profile>) -> Vec<Write> {
    let others = |p: &Profile| -> Vec<Write> {
        p.roles
            .iter()
            .filter(|r| **r != d.name)
            .map(|r| Write::RemoveFromProfile(r.clone()))
            .collect()
    };
    match (d.instance_profile, profile) {
        (true, None) => vec![Write::CreateProfile, Write::AddToProfile],
        (true, Some(p)) => {
            let mut writes = others(p);
            if !p.roles.contains(&d.name) {
                writes.push(Write::AddToProfile);
            }
            writes
        }
        (false, Some(p)) => {
            let mut writes: Vec<Write> = p
                .roles
                .iter()
                .map(|r| Write::RemoveFromProfile(r.clone()))
                .collect();
            writes.push(Write::DeleteProfile);
            writes
        }
        (false, None) => vec![],
    }
}

/// The fields named by `writes`, once each, for the `Drifted` condition.
pub fn drifted_fields(writes: &[Write]) -> Vec<String> {
    crate::controllers::observe::fields(writes.iter().map(Write::field))
}

/// A trust policy as AWS stores it: an account id principal (`"AWS": "123456789012"`)
/// becomes the account's root ARN. Compared in that form, a spec naming an account id
/// is not rewritten on every reconcile.
pub fn normalize_trust(doc: &Value, partition: &str) -> Value {
    let mut doc = doc.clone();
    let statements: Vec<&mut Value> = match doc.get_mut("Statement") {
        Some(Value::Array(list)) => list.iter_mut().collect(),
        Some(single) => vec![single],
        None => vec![],
    };
    let root = |v: &mut Value| {
        if let Value::String(s) = v
            && s.len() == 12
            && s.chars().all(|c| c.is_ascii_digit())
        {
            *s = format!("arn:{partition}:iam::{s}:root");
        }
    };
    for st in statements {
        match st.pointer_mut("/Principal/AWS") {
            Some(Value::Array(items)) => items.iter_mut().for_each(root),
            Some(single) => root(single),
            None => {}
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Desired {
        Desired {
            name: "ns-app".into(),
            path: "/".into(),
            trust: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            description: "app".into(),
            max_session: 3600,
            boundary: None,
            tags: BTreeMap::from([("iamwright.dev/name".into(), "app".into())]),
            attached: vec!["arn:aws:iam::aws:policy/A".into()],
            inline: BTreeMap::from([(
                "s3".into(),
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": "s3:GetObject", "Resource": "*"}]}),
            )]),
            inline_from: Default::default(),
            instance_profile: false,
        }
    }

    fn status() -> IamRoleStatus {
        IamRoleStatus {
            arn: Some("arn:aws:iam::1:role/ns-app".into()),
            role_id: Some("R".into()),
            ..Default::default()
        }
    }

    fn in_sync(d: &Desired) -> Observed {
        Observed::in_sync(d, &status()).expect("identity in status")
    }

    #[test]
    fn in_sync_plans_nothing() {
        let d = desired();
        assert_eq!(plan(&d, &in_sync(&d)), vec![]);
    }

    #[test]
    fn a_role_seen_in_sync_with_its_profile_plans_nothing_and_needs_its_arn() {
        let mut d = desired();
        d.instance_profile = true;
        assert_eq!(Observed::in_sync(&d, &status()), None);
        let st = IamRoleStatus {
            instance_profile_arn: Some("arn:aws:iam::1:instance-profile/ns-app".into()),
            ..status()
        };
        let seen = Observed::in_sync(&d, &st).expect("profile ARN in status");
        assert_eq!(plan(&d, &seen), vec![]);
        assert_eq!(seen.arn, "arn:aws:iam::1:role/ns-app");
        // What it saw is what `d` wants: another spec plans the difference.
        let mut other = d.clone();
        other.attached.push("arn:aws:iam::aws:policy/B".into());
        assert_eq!(
            plan(&other, &seen),
            vec![Write::Attach("arn:aws:iam::aws:policy/B".into())]
        );
    }

    #[test]
    fn a_new_role_needs_only_its_attachments_and_inline_policies() {
        let d = desired();
        let seen = Observed::created(&d, "arn".into(), "id".into());
        assert_eq!(
            plan(&d, &seen),
            vec![
                Write::Attach("arn:aws:iam::aws:policy/A".into()),
                Write::PutInline("s3".into())
            ]
        );
    }

    #[test]
    fn drift_of_every_field_is_planned_back() {
        let d = desired();
        let mut seen = in_sync(&d);
        seen.tags.insert("extra".into(), "x".into());
        seen.tags
            .insert("iamwright.dev/name".into(), "other".into());
        seen.trust = Some(json!({"Version": "2012-10-17", "Statement": []}));
        seen.max_session = 7200;
        seen.boundary = Some("arn:aws:iam::1:policy/b".into());
        seen.attached = vec!["arn:aws:iam::aws:policy/B".into()];
        seen.inline.insert(
            "s3".into(),
            Some(json!({"Version": "2012-10-17", "Statement": []})),
        );
        seen.inline.insert("stray".into(), None);
        let writes = plan(&d, &seen);
        assert_eq!(
            writes,
            vec![
                Write::Untag(vec!["extra".into()]),
                Write::Tag(BTreeMap::from([(
                    "iamwright.dev/name".into(),
                    "app".into()
                )])),
                Write::Trust,
                Write::Settings,
                Write::DeleteBoundary("arn:aws:iam::1:policy/b".into()),
                Write::Attach("arn:aws:iam::aws:policy/A".into()),
                Write::Detach("arn:aws:iam::aws:policy/B".into()),
                Write::PutInline("s3".into()),
                Write::DeleteInline("stray".into()),
            ]
        );
        assert_eq!(
            drifted_fields(&writes),
            vec![
                "spec.tags",
                "spec.assumeRolePolicy",
                "spec.description/spec.maxSessionDuration",
                "spec.permissionsBoundary",
                "spec.managedPolicyArns/spec.policyRefs",
                "spec.inlinePolicies.s3",
                "spec.inlinePolicies.stray",
            ]
        );
    }

    #[test]
    fn the_instance_profile_is_created_repaired_and_removed() {
        // The role in sync, with no profile yet.
        let mut seen = in_sync(&desired());
        let mut d = desired();
        d.instance_profile = true;
        assert_eq!(
            plan(&d, &seen),
            vec![Write::CreateProfile, Write::AddToProfile]
        );
        seen.profile = Some(Profile {
            arn: "p".into(),
            roles: vec!["ns-app".into()],
            ..Default::default()
        });
        assert_eq!(plan(&d, &seen), vec![]);
        seen.profile = Some(Profile {
            arn: "p".into(),
            roles: vec!["intruder".into()],
            ..Default::default()
        });
        assert_eq!(
            plan(&d, &seen),
            vec![
                Write::RemoveFromProfile("intruder".into()),
                Write::AddToProfile
            ]
        );
        d.instance_profile = false;
        seen.profile = Some(Profile {
            arn: "p".into(),
            roles: vec!["ns-app".into()],
            ..Default::default()
        });
        assert_eq!(
            plan(&d, &seen),
            vec![
                Write::RemoveFromProfile("ns-app".into()),
                Write::DeleteProfile
            ]
        );
    }

    #[test]
    fn account_id_principals_compare_as_root_arns() {
        let spec = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": ["111122223333", "arn:aws:iam::444455556666:role/x"]},
            "Action": "sts:AssumeRole"}]});
        let stored = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::444455556666:role/x", "arn:aws:iam::111122223333:root"]},
            "Action": "sts:AssumeRole"}});
        assert!(!same_document(&spec, &stored));
        assert!(same_document(
            &normalize_trust(&spec, "aws"),
            &normalize_trust(&stored, "aws")
        ));
        let mut d = desired();
        d.trust = spec;
        let mut seen = in_sync(&d);
        seen.trust = Some(stored);
        assert_eq!(plan(&d, &seen), vec![]);
    }
}
