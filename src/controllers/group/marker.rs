//! How a group's owner is recorded. IAM groups take no tags, so the ownership that the
//! other kinds keep in tags is kept in an inline policy of the group, `iamwright-owner`:
//! one statement that can match no request (`Deny` with `NotAction: "*"`), whose
//! `Condition` holds the four ownership values under `aws:PrincipalTag/<tag key>`. It
//! grants and denies nothing; it is as strong a proof as a tag (whoever may put a
//! group's inline policy may forge it, as whoever may tag a role may forge that), and
//! it counts toward the group's 5,120-character inline-policy aggregate.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The inline policy that carries the ownership; never part of `spec.inlinePolicies`.
pub const POLICY: &str = "iamwright-owner";
const SID: &str = "IamwrightOwnershipMarker";
const KEY: &str = "aws:PrincipalTag/";

/// The marker document for the ownership tags `tags` (see `Owner::tags`).
pub fn document(tags: &BTreeMap<String, String>) -> Value {
    let values: serde_json::Map<String, Value> = tags
        .iter()
        .map(|(k, v)| (format!("{KEY}{k}"), Value::String(v.clone())))
        .collect();
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": SID, "Effect": "Deny", "NotAction": "*", "Resource": "*",
        "Condition": {"StringEquals": values}}]})
}

/// The ownership tags a marker document records; empty when `doc` is not a marker.
pub fn tags_of(doc: &Value) -> BTreeMap<String, String> {
    let statements = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(single) => vec![single],
        None => vec![],
    };
    let Some(st) = statements
        .into_iter()
        .find(|s| s.get("Sid").and_then(Value::as_str) == Some(SID))
    else {
        return BTreeMap::new();
    };
    st.pointer("/Condition/StringEquals")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(KEY)?.to_string(), v.as_str()?.into())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{Owner, Ownership};

    fn owner(uid: &str) -> Owner {
        Owner {
            cluster: "c1".into(),
            namespace: "ns".into(),
            name: "admins".into(),
            uid: Some(uid.into()),
        }
    }

    #[test]
    fn the_marker_round_trips_the_ownership_and_matches_no_request() {
        let o = owner("u1");
        let doc = document(&o.tags());
        assert_eq!(o.ownership(&tags_of(&doc)), Ownership::Ours);
        // Another object (or a re-created one) reads it as another's.
        assert!(matches!(
            owner("u2").ownership(&tags_of(&doc)),
            Ownership::Another(_)
        ));
        // It denies nothing and allows nothing: Deny on no action.
        assert_eq!(doc["Statement"][0]["Effect"], "Deny");
        assert_eq!(doc["Statement"][0]["NotAction"], "*");
        // The grammar AWS accepts (as the controllers check it).
        crate::policy::validate_document(&doc, "marker", crate::policy::DocKind::Inline).unwrap();
    }

    #[test]
    fn a_policy_that_is_not_a_marker_records_no_owner() {
        let doc = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalTag/iamwright.dev/cluster": "c1"}}}});
        assert!(tags_of(&doc).is_empty());
        assert_eq!(owner("u").ownership(&tags_of(&doc)), Ownership::Untagged);
    }
}
