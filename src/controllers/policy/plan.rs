//! Observe → plan for a managed policy: its tags and its default version's document.
//! Pure: every decision is a unit test.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::tag_diff;
use crate::policy::same_document;

/// AWS keeps at most this many versions of a managed policy.
pub const MAX_VERSIONS: usize = 5;

/// The policy as the spec wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub path: String,
    pub arn: String,
    pub document: Value,
    /// `ConfigMap "x" key "y"` when the document comes from one (`spec.documentFrom`).
    pub source: Option<String>,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The policy as AWS holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub arn: String,
    pub policy_id: Option<String>,
    pub default_version_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// The default version's document (None: it did not decode).
    pub document: Option<Value>,
}

/// One write of a policy reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Untag(Vec<String>),
    Tag(BTreeMap<String, String>),
    /// Make the spec's document the default version (see [`version_step`]).
    Document,
}

impl Write {
    pub fn field(&self) -> &'static str {
        match self {
            Write::Untag(_) | Write::Tag(_) => "spec.tags",
            Write::Document => "spec.document",
        }
    }

    pub fn note(&self, d: &Desired) -> String {
        match (self, &d.source) {
            (Write::Untag(keys), _) => format!("removed tags {keys:?}"),
            (Write::Tag(tags), _) => format!("set tags {:?}", tags.keys().collect::<Vec<_>>()),
            (Write::Document, None) => "made the spec's document the default version".into(),
            (Write::Document, Some(source)) => {
                format!("made the document from {source} the default version")
            }
        }
    }
}

pub fn plan(d: &Desired, seen: &Observed) -> Vec<Write> {
    let mut writes = vec![];
    let (remove, set) = tag_diff(&seen.tags, &d.tags);
    if !remove.is_empty() {
        writes.push(Write::Untag(remove));
    }
    if !set.is_empty() {
        writes.push(Write::Tag(set));
    }
    if !seen
        .document
        .as_ref()
        .is_some_and(|have| same_document(have, &d.document))
    {
        writes.push(Write::Document);
    }
    writes
}

/// A non-default version of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: String,
    /// Creation time (seconds), for "oldest".
    pub created: Option<i64>,
    pub document: Option<Value>,
}

/// How the document becomes the default version.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionStep {
    /// A version already holds it: make that one the default (no new version).
    MakeDefault(String),
    /// Create a new default version, deleting the oldest non-default one first when
    /// AWS's limit of five versions is reached.
    Create { delete_first: Option<String> },
}

/// `others` are the non-default versions; `total` counts the default one too.
pub fn version_step(doc: &Value, others: &[Version], total: usize) -> VersionStep {
    if let Some(v) = others
        .iter()
        .find(|v| v.document.as_ref().is_some_and(|d| same_document(d, doc)))
    {
        return VersionStep::MakeDefault(v.id.clone());
    }
    let delete_first = (total >= MAX_VERSIONS)
        .then(|| {
            others
                .iter()
                .min_by_key(|v| (v.created, version_number(&v.id)))
                .map(|v| v.id.clone())
        })
        .flatten();
    VersionStep::Create { delete_first }
}

fn version_number(id: &str) -> u64 {
    id.trim_start_matches('v').parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(action: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
    }

    fn desired() -> Desired {
        Desired {
            name: "ns-p".into(),
            path: "/".into(),
            arn: "arn:aws:iam::1:policy/ns-p".into(),
            document: doc("s3:GetObject"),
            source: None,
            description: None,
            tags: BTreeMap::from([("team".into(), "a".into())]),
        }
    }

    #[test]
    fn in_sync_plans_nothing_and_drift_is_planned_back() {
        let d = desired();
        let mut seen = Observed {
            arn: d.arn.clone(),
            policy_id: None,
            default_version_id: Some("v1".into()),
            tags: d.tags.clone(),
            document: Some(d.document.clone()),
        };
        assert_eq!(plan(&d, &seen), vec![]);
        seen.tags.insert("stray".into(), "x".into());
        seen.document = Some(doc("*"));
        assert_eq!(
            plan(&d, &seen),
            vec![Write::Untag(vec!["stray".into()]), Write::Document]
        );
        seen.document = None;
        seen.tags = BTreeMap::new();
        let writes = plan(&d, &seen);
        assert_eq!(writes[0], Write::Tag(d.tags.clone()));
        assert_eq!(writes[1], Write::Document);
    }

    #[test]
    fn an_old_version_is_reused_and_the_oldest_goes_at_the_limit() {
        let v = |id: &str, created: i64, action: &str| Version {
            id: id.into(),
            created: Some(created),
            document: Some(doc(action)),
        };
        let others = vec![v("v2", 20, "a:B"), v("v1", 10, "a:A"), v("v3", 30, "a:C")];
        assert_eq!(
            version_step(&doc("a:A"), &others, 4),
            VersionStep::MakeDefault("v1".into())
        );
        assert_eq!(
            version_step(&doc("a:Z"), &others, 4),
            VersionStep::Create { delete_first: None }
        );
        let full = [others.clone(), vec![v("v4", 40, "a:D")]].concat();
        assert_eq!(
            version_step(&doc("a:Z"), &full, 5),
            VersionStep::Create {
                delete_first: Some("v1".into())
            }
        );
        // Same second: the lower version number is the older.
        let tie = vec![v("v10", 5, "a:X"), v("v9", 5, "a:Y")];
        assert_eq!(
            version_step(&doc("a:Z"), &tie, 5),
            VersionStep::Create {
                delete_first: Some("v9".into())
            }
        );
    }
}
