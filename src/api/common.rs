use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What happens to the AWS resources when the object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the AWS resources the object manages.
    #[default]
    Delete,
    /// Leave the AWS resources in place.
    Retain,
}

/// Whether the operator manages the AWS resources or only watches them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and delete the AWS resources to match the spec.
    #[default]
    Manage,
    /// Read and report only: the status mirrors AWS, condition `Drifted` names the
    /// fields where AWS differs from the spec; nothing is ever created, changed or
    /// deleted in AWS, also when the object is deleted.
    Observe,
}

pub(crate) fn is_manage(p: &ManagementPolicy) -> bool {
    *p == ManagementPolicy::Manage
}

/// A reference to an object of another kind in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the referenced object, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where a policy document comes from when it is not written in the object: a key of
/// a ConfigMap in the object's namespace (a document as a vendor ships it, e.g. from a
/// kustomize `configMapGenerator`). Followed when the ConfigMap changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentSource {
    /// The ConfigMap key that holds the document, as JSON or YAML. The operator's
    /// variables (`$AWS_ACCOUNT_ID`, `${AWS_PARTITION}`, `${AWS_REGION}`) are replaced
    /// in it as in a document written in the object.
    pub config_map_key_ref: ConfigMapKeyRef,
}

/// A key of a ConfigMap in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap, in the object's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// The key in the ConfigMap's `data` (or `binaryData`, UTF-8) holding the document.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A condition in the shape of metav1.Condition (kstatus compatible).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition: Ready, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason for the condition's last transition.
    pub reason: String,
    /// A human readable message: what is wrong and where.
    #[serde(default)]
    pub message: String,
    /// The .metadata.generation the condition was set from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the condition last changed status (RFC 3339).
    pub last_transition_time: String,
}

pub(crate) fn default_path() -> String {
    "/".to_string()
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Tags map type shared by every kind.
pub type Tags = BTreeMap<String, String>;

/// A policy document as a spec holds it: its JSON text, compact. Every watched object
/// stays in the operator's cache, where a parsed tree (a B-tree node of about 600 bytes
/// per JSON object) took several times the text: 8 MB of the 5,000-object benchmark's
/// heap. The tree is built when a reconcile needs it ([`Document::value`]). Equal
/// documents have equal text (a parsed object's keys are sorted).
#[derive(Clone, PartialEq, Eq)]
pub struct Document(Box<str>);

impl Document {
    /// The document as JSON (parsed anew on each call).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).expect("a Document holds the JSON it was made from")
    }
}

impl From<&serde_json::Value> for Document {
    fn from(v: &serde_json::Value) -> Self {
        Document(v.to_string().into_boxed_str())
    }
}

impl From<serde_json::Value> for Document {
    fn from(v: serde_json::Value) -> Self {
        Document::from(&v)
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Document {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Document::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_keeps_its_json_as_compact_text_and_gives_it_back() {
        let written: Document = serde_yaml::from_str(
            "Version: '2012-10-17'\nStatement:\n- Effect: Allow\n  Action: s3:GetObject\n  Resource: '*'\n",
        )
        .unwrap();
        let value = json!({"Statement": [{"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}],
                           "Version": "2012-10-17"});
        assert_eq!(written.value(), value);
        assert_eq!(
            format!("{written:?}"),
            r#"{"Statement":[{"Action":"s3:GetObject","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}"#
        );
        // The same document written in another key order is the same document.
        assert_eq!(Document::from(&value), written);
        assert_eq!(serde_json::to_value(&written).unwrap(), value);
    }
}
