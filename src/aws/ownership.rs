use std::collections::BTreeMap;

/// Tag keys that mark an AWS resource as managed by one iamwright object.
pub const OWNER_CLUSTER: &str = "iamwright.dev/cluster";
pub const OWNER_NAMESPACE: &str = "iamwright.dev/namespace";
pub const OWNER_NAME: &str = "iamwright.dev/name";
/// The UID of the owning object: a re-created object (or namespace) of the same name is
/// another owner. Resources tagged before this tag existed carry the other three only;
/// they are recognised as ours and get the UID tag on their next reconcile.
pub const OWNER_UID: &str = "iamwright.dev/uid";

/// The object that owns an AWS resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// The object's UID (always set for objects read from the API server).
    pub uid: Option<String>,
}

/// What the tags of an existing AWS resource say about who manages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Tagged for this object.
    Ours,
    /// Tagged for another object or cluster: never touched.
    Another(String),
    /// Carries no ownership tags: may be adopted.
    Untagged,
}

impl Owner {
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::from([
            (OWNER_CLUSTER.to_string(), self.cluster.clone()),
            (OWNER_NAMESPACE.to_string(), self.namespace.clone()),
            (OWNER_NAME.to_string(), self.name.clone()),
        ]);
        if let Some(uid) = &self.uid {
            tags.insert(OWNER_UID.to_string(), uid.clone());
        }
        tags
    }

    /// Classify an existing resource by its tags.
    pub fn ownership(&self, tags: &BTreeMap<String, String>) -> Ownership {
        let get = |k: &str| tags.get(k).map(String::as_str);
        let (c, ns, n) = (get(OWNER_CLUSTER), get(OWNER_NAMESPACE), get(OWNER_NAME));
        if c.is_none() && ns.is_none() && n.is_none() {
            return Ownership::Untagged;
        }
        let uid = get(OWNER_UID);
        if c == Some(&self.cluster) && ns == Some(&self.namespace) && n == Some(&self.name) {
            // No UID tag: made by a version before the tag existed (migrated as ours).
            match (uid, &self.uid) {
                (None, _) | (_, None) => return Ownership::Ours,
                (Some(u), Some(mine)) if u == mine => return Ownership::Ours,
                (Some(u), Some(_)) => {
                    return Ownership::Another(format!(
                        "cluster {:?}, object {}/{} with uid {u}, an earlier object of the same name",
                        self.cluster, self.namespace, self.name
                    ));
                }
            }
        }
        Ownership::Another(format!(
            "cluster {:?}, object {}/{}",
            c.unwrap_or(""),
            ns.unwrap_or(""),
            n.unwrap_or("")
        ))
    }

    /// The tags to set: the spec's own plus the ownership tags.
    pub fn desired_tags(&self, spec_tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut all = spec_tags.clone();
        all.extend(self.tags());
        all
    }
}

/// The writes that make `actual` tags equal `desired`: keys to remove, pairs to set.
pub fn tag_diff(
    actual: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let remove = actual
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    let set = desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (remove, set)
}

/// SDK tags as a map.
pub fn tag_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

/// Tags in the SDK's shape.
pub fn to_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_iam::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("key and value are set")
        })
        .collect()
}

/// Make a resource's tags exactly `desired` (exclusive tags): at most one untag call
/// for the extra keys and one tag call for the missing or changed ones, none when in
/// sync. Returns the keys it changed.
pub async fn sync_tags<UF, TF, A, B>(
    actual: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
    untag: impl FnOnce(Vec<String>) -> UF,
    tag: impl FnOnce(Vec<aws_sdk_iam::types::Tag>) -> TF,
) -> Result<Vec<String>, super::AwsError>
where
    UF: std::future::Future<Output = Result<A, super::AwsError>>,
    TF: std::future::Future<Output = Result<B, super::AwsError>>,
{
    let (remove, set) = tag_diff(actual, desired);
    let changed: Vec<String> = remove.iter().chain(set.keys()).cloned().collect();
    if !remove.is_empty() {
        untag(remove).await?;
    }
    if !set.is_empty() {
        tag(to_tags(&set)).await?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            cluster: "c1".into(),
            namespace: "ns".into(),
            name: "p".into(),
            uid: Some("u1".into()),
        }
    }

    #[test]
    fn the_uid_tag_tells_a_recreated_object_apart_and_old_tags_migrate() {
        let o = owner();
        let mut earlier = o.tags();
        earlier.insert(OWNER_UID.into(), "u0".into());
        assert!(matches!(o.ownership(&earlier), Ownership::Another(m) if m.contains("u0")));
        let mut legacy = o.tags();
        legacy.remove(OWNER_UID);
        assert_eq!(o.ownership(&legacy), Ownership::Ours);
        let (_, set) = tag_diff(&legacy, &o.desired_tags(&BTreeMap::new()));
        assert_eq!(set, BTreeMap::from([(OWNER_UID.into(), "u1".into())]));
    }

    #[test]
    fn recognises_ours_others_and_untagged() {
        let o = owner();
        assert_eq!(o.ownership(&o.tags()), Ownership::Ours);
        assert_eq!(
            o.ownership(&BTreeMap::from([("team".into(), "x".into())])),
            Ownership::Untagged
        );
        let mut other = o.tags();
        other.insert(OWNER_CLUSTER.into(), "c2".into());
        assert!(matches!(o.ownership(&other), Ownership::Another(m) if m.contains("c2")));
    }

    #[test]
    fn tag_diff_removes_extras_and_sets_changes() {
        let actual = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let desired = BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())]);
        let (remove, set) = tag_diff(&actual, &desired);
        assert_eq!(remove, vec!["b".to_string()]);
        assert_eq!(set, BTreeMap::from([("c".into(), "3".into())]));
    }
}
