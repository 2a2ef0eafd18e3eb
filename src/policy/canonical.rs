use serde_json::{Map, Value};

/// Keys whose value is a set of strings: a single string and a one-element list mean
/// the same, and order does not matter.
const SET_KEYS: &[&str] = &["Action", "NotAction", "Resource", "NotResource"];

/// The canonical form of a document: what AWS means by it, independent of how it was
/// written or how AWS returns it (re-ordered keys, single values unwrapped). Two
/// documents are the same policy when their canonical forms are equal.
pub fn canonicalize(doc: &Value) -> Value {
    let Some(obj) = doc.as_object() else {
        return doc.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let v = if k == "Statement" {
            let list = match v {
                Value::Array(items) => items.iter().map(canonical_statement).collect(),
                single => vec![canonical_statement(single)],
            };
            Value::Array(list)
        } else {
            v.clone()
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

fn canonical_statement(st: &Value) -> Value {
    let Some(obj) = st.as_object() else {
        return st.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let v = match k.as_str() {
            "Sid" if v.as_str() == Some("") => continue,
            key if SET_KEYS.contains(&key) => string_set(v),
            "Principal" | "NotPrincipal" => match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .map(|(pk, pv)| (pk.clone(), string_set(pv)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "Condition" => match v {
                Value::Object(ops) => Value::Object(
                    ops.iter()
                        .map(|(op, keys)| {
                            let keys = match keys {
                                Value::Object(km) => Value::Object(
                                    km.iter()
                                        .map(|(ck, cv)| (ck.clone(), string_set(cv)))
                                        .collect(),
                                ),
                                other => other.clone(),
                            };
                            (op.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// A scalar or list as a sorted, de-duplicated list of strings (AWS stores condition
/// booleans and numbers as strings).
fn string_set(v: &Value) -> Value {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let mut strings: Vec<String> = items
        .into_iter()
        .map(|i| match i {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    strings.sort();
    strings.dedup();
    Value::Array(strings.into_iter().map(Value::String).collect())
}

/// Whether two documents are the same policy.
pub fn same_document(a: &Value, b: &Value) -> bool {
    canonicalize(a) == canonicalize(b)
}

/// Parse a document as AWS returns it: URL-encoded JSON (IAM's Query API), or plain JSON.
pub fn decode_aws_document(raw: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(raw) {
        Ok(v) => Ok(v),
        Err(e) => match urlencoding::decode(raw) {
            Ok(decoded) if decoded != raw => serde_json::from_str(&decoded),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aws_reordering_and_unwrapping_is_the_same_policy() {
        let ours = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": true}}}});
        let theirs = json!({"Statement": [{"Resource": ["*"], "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Condition": {"Bool": {"aws:SecureTransport": "true"}}}], "Version": "2012-10-17"});
        assert!(same_document(&ours, &theirs));
    }

    #[test]
    fn a_changed_action_is_a_different_policy() {
        let a = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}});
        let b = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}});
        assert!(!same_document(&a, &b));
    }

    #[test]
    fn decodes_url_encoded_documents() {
        let raw = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_aws_document(raw).unwrap(),
            json!({"Version": "2012-10-17", "Statement": []})
        );
        assert_eq!(decode_aws_document("{\"a\":1}").unwrap(), json!({"a": 1}));
    }
}
