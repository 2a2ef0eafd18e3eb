//! Validate: the checks an IamPolicy must pass before any AWS call, without any I/O, so
//! that `iamwright validate` runs the same checks offline and gives the operator's
//! answer in the operator's words.

use serde_json::Value;

use crate::api::{Document, DocumentSource, IamPolicySpec};
use crate::controllers::{Error, Settings};
use crate::policy::{DocKind, allowed_actions_matching, validate_document};
use crate::reason::Reason;

/// A policy's document as AWS gets it: read from its source, variables replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The field the document is reported under (`spec.document`, `spec.documentFrom`).
    pub field: String,
    pub document: Value,
    /// `ConfigMap "x" key "y"` for a document from a ConfigMap: a difference with AWS
    /// then usually follows an edit of the ConfigMap, not drift.
    pub source: Option<String>,
}

impl Resolved {
    /// `document` reported under `field`, read from `source` when it came from a
    /// ConfigMap.
    pub fn new(field: &str, document: Value, source: Option<&DocumentSource>) -> Self {
        Self {
            field: field.to_string(),
            document,
            source: source.map(|s| {
                let r = &s.config_map_key_ref;
                format!("ConfigMap {:?} key {:?}", r.name, r.key)
            }),
        }
    }
}

/// Where a policy's document comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source<'a> {
    /// `spec.document`, written in the object.
    Written(&'a Document),
    /// `spec.documentFrom`: a ConfigMap key of the object's namespace.
    ConfigMap(&'a DocumentSource),
}

/// The one source of the document: exactly one of `spec.document` and
/// `spec.documentFrom`. The CRD's CEL rule refuses both and neither; an older CRD may
/// not, and `iamwright validate` reads files the apiserver never saw.
pub fn source(spec: &IamPolicySpec) -> Result<Source<'_>, Error> {
    match (&spec.document, &spec.document_from) {
        (Some(doc), None) => Ok(Source::Written(doc)),
        (None, Some(from)) => Ok(Source::ConfigMap(from)),
        _ => Err(Error::at(
            Reason::InvalidSpec,
            "spec",
            crate::crds::POLICY_DOCUMENT_ONE_OF,
        )),
    }
}

/// The checks a policy's document must pass before any AWS call: its grammar as a
/// managed policy (a problem in a document from a ConfigMap names the key), then the
/// denied actions of `settings` (`--deny-action`, plus the governing IamScope's in the
/// operator). `doc` is the document as AWS gets it: resolved by
/// `policy::document` in the operator; offline, read from the ConfigMaps
/// among the inputs with the variables' placeholder values. The governance's name and
/// path rules are the controller's build step (they need the namespace's IamScope).
pub fn validate(doc: &Resolved, settings: &Settings) -> Result<(), Error> {
    validate_document(&doc.document, &doc.field, DocKind::Managed).map_err(|e| {
        let origin = doc
            .source
            .as_ref()
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        Error::at(
            Reason::InvalidPolicyDocument,
            e.path,
            format!("{}{origin}", e.message),
        )
    })?;
    if let Some((field, msg)) =
        allowed_actions_matching(&doc.document, &doc.field, &settings.deny_actions)
    {
        return Err(Error::at(Reason::GuardrailViolation, field, msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(deny: &[&str]) -> Settings {
        let deny = deny.iter().map(|s| s.to_string()).collect();
        Settings::guardrails(deny, None, Default::default())
    }

    fn spec(yaml: &str) -> IamPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// The answer for one spec, as `(reason, condition message)`; the document from a
    /// ConfigMap is given as if read from `ConfigMap "vendor" key "p.json"`.
    fn answer(yaml: &str, from: &str, deny: &[&str]) -> Result<(), (String, String)> {
        let spec = spec(yaml);
        let shown = |e: Error| match &e {
            Error::Stalled { reason, .. } => (reason.to_string(), e.to_string()),
            other => panic!("not stalled: {other:?}"),
        };
        let doc = match source(&spec).map_err(shown)? {
            Source::Written(doc) => Resolved::new("spec.document", doc.value(), None),
            Source::ConfigMap(s) => Resolved::new(
                "spec.documentFrom",
                serde_json::from_str(from).unwrap(),
                Some(s),
            ),
        };
        validate(&doc, &settings(deny)).map_err(shown)
    }

    #[test]
    fn grammar_then_denied_actions_each_naming_the_field() {
        let admin = r#"document: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "iam:*", Resource: "*"}}"#;
        assert_eq!(answer(admin, "", &[]), Ok(()));
        let (reason, message) = answer(admin, "", &["iam:PassRole"]).unwrap_err();
        assert_eq!(reason, "GuardrailViolation");
        assert!(
            message.starts_with("spec.document.Statement.Action[0]: allows \"iam:*\""),
            "{message}"
        );
        let lower = r#"document: {Version: "2012-10-17", Statement: [{Effect: allow, Action: "iam:*", Resource: "*"}]}"#;
        assert_eq!(
            answer(lower, "", &["iam:PassRole"]),
            Err((
                "InvalidPolicyDocument".into(),
                r#"spec.document.Statement[0].Effect: must be "Allow" or "Deny", got "allow""#
                    .into()
            ))
        );
    }

    #[test]
    fn a_document_from_a_config_map_names_its_key() {
        let from = "documentFrom: {configMapKeyRef: {name: vendor, key: p.json}}";
        let doc = r#"{"Version": "2008-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#;
        assert_eq!(
            answer(from, doc, &[]),
            Err((
                "InvalidPolicyDocument".into(),
                r#"spec.documentFrom.Version: must be "2012-10-17" (a managed policy takes only the current version), got "2008-10-17" (from ConfigMap "vendor" key "p.json")"#.into()
            ))
        );
    }

    #[test]
    fn exactly_one_source() {
        let both =
            r#"{document: {Statement: []}, documentFrom: {configMapKeyRef: {name: v, key: k}}}"#;
        for yaml in [both, "{}"] {
            assert_eq!(
                answer(yaml, "{}", &[]),
                Err((
                    "InvalidSpec".into(),
                    format!("spec: {}", crate::crds::POLICY_DOCUMENT_ONE_OF)
                ))
            );
        }
    }
}
