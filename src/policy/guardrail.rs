use serde_json::Value;

use super::model::{Document, Effect, OneOrMany};

/// IAM action glob matching (`*`, `?`), case-insensitive as IAM is.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether two globs match at least one common action.
fn globs_overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    overlap(&a, &b, 0, 0, &mut memo)
}

fn overlap(a: &[char], b: &[char], i: usize, j: usize, memo: &mut [Vec<Option<bool>>]) -> bool {
    if let Some(v) = memo[i][j] {
        return v;
    }
    let v = if i == a.len() && j == b.len() {
        true
    } else if i < a.len() && a[i] == '*' {
        overlap(a, b, i + 1, j, memo) || (j < b.len() && overlap(a, b, i, j + 1, memo))
    } else if j < b.len() && b[j] == '*' {
        overlap(a, b, i, j + 1, memo) || (i < a.len() && overlap(a, b, i + 1, j, memo))
    } else if i < a.len() && j < b.len() && (a[i] == '?' || b[j] == '?' || a[i] == b[j]) {
        overlap(a, b, i + 1, j + 1, memo)
    } else {
        false
    };
    memo[i][j] = Some(v);
    v
}

/// The first way `doc` (found at field `root`) allows an action matching one of
/// `deny` — through a wildcard such as `*` or `iam:*`, or through `NotAction` that
/// does not exclude it — as `(field path, message)`. `None` when the document is clean.
/// Actions are compared case-insensitively, as IAM does (`IAM:PassRole` is
/// `iam:PassRole`). A document that cannot be read is reported, never passed.
pub fn allowed_actions_matching(
    doc: &Value,
    root: &str,
    deny: &[String],
) -> Option<(String, String)> {
    if deny.is_empty() {
        return None;
    }
    let parsed = match Document::parse(doc, root) {
        Ok(d) => d,
        Err(e) => {
            return Some((
                e.path,
                format!(
                    "cannot be checked against the operator's --deny-action: {}",
                    e.message
                ),
            ));
        }
    };
    let many = matches!(parsed.statement, OneOrMany::Many(_));
    for (i, st) in parsed.statements().iter().enumerate() {
        if st.effect != Effect::Allow {
            continue;
        }
        let path = if many {
            format!("{root}.Statement[{i}]")
        } else {
            format!("{root}.Statement")
        };
        if let Some(actions) = &st.action {
            for (i, action) in actions.iter().enumerate() {
                if let Some(glob) = deny.iter().find(|g| globs_overlap(g, action)) {
                    return Some((
                        format!("{path}.Action[{i}]"),
                        format!(
                            "allows {action:?}, which the operator's --deny-action {glob:?} forbids"
                        ),
                    ));
                }
            }
        }
        if let Some(excluded) = &st.not_action {
            // NotAction allows everything it does not name: a denied glob is only safe
            // when one of the excluded patterns covers it entirely.
            if let Some(glob) = deny
                .iter()
                .find(|g| !excluded.iter().any(|ex| glob_match(ex, g)))
            {
                return Some((
                    format!("{path}.NotAction"),
                    format!(
                        "allows every action it does not list, including {glob:?}, which the operator's --deny-action forbids"
                    ),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deny(globs: &[&str]) -> Vec<String> {
        globs.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn glob_matching_is_case_insensitive_with_wildcards() {
        assert!(glob_match("iam:Create*", "iam:CreateUser"));
        assert!(glob_match("iam:*", "IAM:createuser"));
        assert!(glob_match("s3:Get?bject", "s3:GetObject"));
        assert!(!glob_match("iam:Create*", "iam:DeleteUser"));
    }

    #[test]
    fn finds_denied_actions_through_wildcards() {
        let d = deny(&["iam:CreateUser"]);
        for action in [
            "*",
            "iam:*",
            "iam:Create*",
            "iam:CreateUser",
            "IAM:createuser",
        ] {
            let doc =
                json!({"Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]});
            let (path, msg) = allowed_actions_matching(&doc, "document", &d).expect(action);
            assert_eq!(path, "document.Statement[0].Action[0]");
            assert!(msg.contains("iam:CreateUser"), "{msg}");
        }
        let ok = json!({"Statement": [{"Effect": "Allow", "Action": ["iam:Get*", "s3:*"], "Resource": "*"},
                                      {"Effect": "Deny", "Action": "*", "Resource": "*"}]});
        assert_eq!(allowed_actions_matching(&ok, "document", &d), None);
    }

    #[test]
    fn not_action_allows_what_it_does_not_exclude() {
        let d = deny(&["iam:*"]);
        let bad = json!({"Statement": {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}});
        assert_eq!(
            allowed_actions_matching(&bad, "document", &d).unwrap().0,
            "document.Statement.NotAction"
        );
        let ok = json!({"Statement": {"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "*"}});
        assert_eq!(allowed_actions_matching(&ok, "document", &d), None);
    }

    #[test]
    fn service_prefixes_match_case_insensitively() {
        let d = deny(&["iam:PassRole"]);
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["S3:GetObject", "IAM:PassRole"], "Resource": "*"}]});
        let (path, msg) = allowed_actions_matching(&doc, "spec.document", &d).unwrap();
        assert_eq!(path, "spec.document.Statement[0].Action[1]");
        assert!(msg.contains("\"IAM:PassRole\""), "{msg}");
        let upper = deny(&["IAM:*"]);
        let ok = json!({"Statement": {"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "*"}});
        assert_eq!(allowed_actions_matching(&ok, "d", &upper), None);
    }

    #[test]
    fn a_document_that_cannot_be_read_is_reported() {
        let (path, msg) =
            allowed_actions_matching(&json!({"Statement": 1}), "d", &deny(&["iam:*"])).unwrap();
        assert_eq!(path, "d.Statement");
        assert!(msg.starts_with("cannot be checked"), "{msg}");
    }
}
