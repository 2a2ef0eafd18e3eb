//! A problem in a policy document, shared by the parser (`model`) and the grammar
//! (`validate`), which each report them.

use serde_json::Value;

/// A problem in a document, located by its path, e.g.
/// `document.Statement[1].Effect: must be "Allow" or "Deny", got "allow"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DocumentError {
    pub path: String,
    pub message: String,
}

pub(super) fn err(path: impl Into<String>, message: impl Into<String>) -> DocumentError {
    DocumentError {
        path: path.into(),
        message: message.into(),
    }
}

/// A short rendering of a value for messages (never a whole document).
pub(super) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}
