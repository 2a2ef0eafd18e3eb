use serde_json::Value;

use super::model::Document;

/// The canonical form of a document: what AWS means by it, independent of how it was
/// written or how AWS returns it (re-ordered keys, single values unwrapped, condition
/// numbers and booleans as strings). Two documents are the same policy when their
/// canonical forms are equal. See [`Document::canonical`]. A value that is not a
/// policy document is its own canonical form.
pub fn canonicalize(doc: &Value) -> Value {
    match Document::parse(doc, "document") {
        Ok(parsed) => parsed.canonical().to_value(),
        Err(_) => doc.clone(),
    }
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
