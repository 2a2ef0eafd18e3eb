//! Policy documents as the controllers send them to AWS: read from ConfigMaps where the
//! spec references one (`IamPolicy.spec.documentFrom`, `IamRole.spec.inlinePoliciesFrom`),
//! with the operator's variables replaced (see [`crate::policy::variables`]), and
//! checked against the grammar with messages that name the field and the ConfigMap key.
//! Drift detection compares AWS with these resolved documents.
//!
//! Also the ConfigMap watch: a metadata-only watch (no ConfigMap data is held in
//! memory) whose changes re-trigger the objects that reference the ConfigMap; the
//! reconcile then reads the one ConfigMap it needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::reconciler::{Guarded, Managed, scoped_api};
use super::{Context, Error, watch_config};
use crate::api::{Document, DocumentSource, IamGroup, IamPolicy, IamRole, IamRoleSpec};
use crate::policy::{DocKind, Variables, substitute, uses_variables, validate_document};
use crate::reason::Reason;

/// The account, partition and region whose values the variables take, for objects
/// governed by `ctx`. The one place they are read from, so that objects living in
/// another account (an IamScope's) can be pointed at theirs.
pub async fn variables(ctx: &Context) -> Result<Variables, Error> {
    Ok(Variables {
        account_id: ctx.aws().await.account_id().await?,
        partition: ctx.aws().await.partition().await?,
        region: ctx.aws().await.region(),
    })
}

/// A role's spec with every document resolved: `assumeRolePolicy` and
/// `inlinePolicies` substituted, and each of `inlinePoliciesFrom` read from its
/// ConfigMap, substituted, checked and added to `inlinePolicies` (its name stays in
/// `inlinePoliciesFrom`, so [`inline_field`] names it as the user wrote it). The role's
/// own checks (`role::validate`) then run on the result.
pub async fn role_spec(ctx: &Context, r: &IamRole) -> Result<IamRoleSpec, Error> {
    let mut spec = r.spec.clone();
    if let Some(name) = spec
        .inline_policies_from
        .keys()
        .find(|n| spec.inline_policies.contains_key(*n))
    {
        return Err(Error::at(
            Reason::InvalidSpec,
            format!("spec.inlinePoliciesFrom.{name}"),
            crate::crds::INLINE_POLICY_IN_BOTH,
        ));
    }
    let ns = r.namespace().unwrap_or_default();
    let maps = fetch(ctx, &ns, spec.inline_policies_from.values()).await?;
    let mut from = BTreeMap::new();
    for (name, source) in &spec.inline_policies_from {
        let field = format!("spec.inlinePoliciesFrom.{name}");
        from.insert(name.clone(), read_source(&field, &ns, source, &maps)?);
    }
    let trust = spec.assume_role_policy.as_ref().map(Document::value);
    let inline: BTreeMap<String, Value> = spec
        .inline_policies
        .iter()
        .map(|(name, doc)| (name.clone(), doc.value()))
        .collect();
    let vars = variables_if_used(
        ctx,
        trust.iter().chain(inline.values()).chain(from.values()),
    )
    .await?;
    let vars = vars.as_ref();
    if let Some(trust) = &trust {
        spec.assume_role_policy =
            Some(substitute_field("spec.assumeRolePolicy", trust, vars)?.into());
    }
    for (name, doc) in inline {
        let doc = substitute_field(&format!("spec.inlinePolicies.{name}"), &doc, vars)?;
        spec.inline_policies.insert(name, doc.into());
    }
    for (name, doc) in from {
        let field = format!("spec.inlinePoliciesFrom.{name}");
        let doc = substitute_field(&field, &doc, vars)?;
        validate_document(&doc, &field, DocKind::Inline).map_err(|e| {
            invalid(
                e.path,
                format!(
                    "{}{}",
                    e.message,
                    from_source(&spec.inline_policies_from[&name])
                ),
            )
        })?;
        spec.inline_policies.insert(name, doc.into());
    }
    Ok(spec)
}

/// A group's inline policies as AWS gets them: variables replaced (the grammar is
/// checked with the group's other checks, `group::validate`).
pub async fn group_inline(ctx: &Context, g: &IamGroup) -> Result<BTreeMap<String, Value>, Error> {
    let inline: BTreeMap<String, Value> = g
        .spec
        .inline_policies
        .iter()
        .map(|(name, doc)| (name.clone(), doc.value()))
        .collect();
    let vars = variables_if_used(ctx, inline.values()).await?;
    inline
        .into_iter()
        .map(|(name, doc)| {
            let doc =
                substitute_field(&format!("spec.inlinePolicies.{name}"), &doc, vars.as_ref())?;
            Ok((name, doc))
        })
        .collect()
}

/// The field an inline policy of a (resolved) role spec is reported under.
pub fn inline_field(spec: &IamRoleSpec, name: &str) -> String {
    if spec.inline_policies_from.contains_key(name) {
        format!("spec.inlinePoliciesFrom.{name}")
    } else {
        format!("spec.inlinePolicies.{name}")
    }
}

/// Every document of a (resolved) role spec, with its field: the trust policy (when
/// written), then the inline policies.
pub fn role_documents(spec: &IamRoleSpec) -> Vec<(String, Value)> {
    spec.assume_role_policy
        .iter()
        .map(|trust| ("spec.assumeRolePolicy".to_string(), trust.value()))
        .chain(
            spec.inline_policies
                .iter()
                .map(|(name, doc)| (inline_field(spec, name), doc.value())),
        )
        .collect()
}

fn invalid(field: impl Into<String>, message: String) -> Error {
    Error::at(Reason::InvalidPolicyDocument, field, message)
}

/// ` (from ConfigMap "x" key "y")`: where a document that fails came from.
fn from_source(source: &DocumentSource) -> String {
    let r = &source.config_map_key_ref;
    format!(" (from ConfigMap {:?} key {:?})", r.name, r.key)
}

/// The variables' values, read only when a document uses one (no account lookup for
/// documents without variables).
pub async fn variables_if_used<'a>(
    ctx: &Context,
    docs: impl IntoIterator<Item = &'a Value>,
) -> Result<Option<Variables>, Error> {
    if docs.into_iter().any(uses_variables) {
        Ok(Some(variables(ctx).await?))
    } else {
        Ok(None)
    }
}

/// `doc` with its variables replaced; a variable without a value (no region) is
/// an invalid document, named by its field.
pub fn substitute_field(
    field: &str,
    doc: &Value,
    vars: Option<&Variables>,
) -> Result<Value, Error> {
    match vars {
        Some(vars) => substitute(doc, vars).map_err(|u| invalid(field, u.to_string())),
        None => Ok(doc.clone()),
    }
}

/// The ConfigMaps the sources name, read once each from `namespace`; a missing one is
/// absent from the map.
pub async fn fetch<'a>(
    ctx: &Context,
    namespace: &str,
    sources: impl IntoIterator<Item = &'a DocumentSource>,
) -> Result<BTreeMap<String, ConfigMap>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let mut maps = BTreeMap::new();
    for s in sources {
        let name = &s.config_map_key_ref.name;
        if maps.contains_key(name) {
            continue;
        }
        if let Some(cm) = api.get_opt(name).await? {
            maps.insert(name.clone(), cm);
        }
    }
    Ok(maps)
}

/// The document a source names, from the ConfigMaps read. Pure.
pub fn read_source(
    field: &str,
    namespace: &str,
    source: &DocumentSource,
    maps: &BTreeMap<String, ConfigMap>,
) -> Result<Value, Error> {
    let r = &source.config_map_key_ref;
    let waiting = |why: String| Error::Waiting {
        field: Some(format!("{field}.configMapKeyRef")),
        reason: Reason::DependencyNotReady,
        message: why,
    };
    let Some(cm) = maps.get(&r.name) else {
        return Err(waiting(format!(
            "ConfigMap {:?} does not exist in namespace {namespace:?}",
            r.name
        )));
    };
    let text = match (
        cm.data.as_ref().and_then(|d| d.get(&r.key)),
        cm.binary_data.as_ref().and_then(|d| d.get(&r.key)),
    ) {
        (Some(text), _) => text.clone(),
        (None, Some(bytes)) => String::from_utf8(bytes.0.clone()).map_err(|_| {
            invalid(
                field,
                format!(
                    "ConfigMap {:?} key {:?} (binaryData) is not UTF-8 text",
                    r.name, r.key
                ),
            )
        })?,
        (None, None) => {
            return Err(waiting(format!(
                "ConfigMap {:?} has no key {:?}",
                r.name, r.key
            )));
        }
    };
    parse_document(&text).map_err(|why| {
        invalid(
            field,
            format!("ConfigMap {:?} key {:?} {why}", r.name, r.key),
        )
    })
}

/// A document as a file holds it: JSON (as vendors ship policies), else YAML. Must be
/// an object. The error says why, for a message that goes on with it.
pub fn parse_document(text: &str) -> Result<Value, String> {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(json) => {
            // Text that looks like JSON gets the JSON parser's message (with its line
            // and column); anything else is read as YAML.
            if text.trim_start().starts_with(['{', '[']) {
                return Err(format!("is not valid JSON: {json}"));
            }
            serde_yaml::from_str::<Value>(text)
                .map_err(|yaml| format!("is neither JSON nor YAML: {yaml}"))?
        }
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(format!(
            "must hold a policy document (a JSON object), got {}",
            kind_of(&value)
        ))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The ConfigMaps an IamPolicy reads.
pub fn policy_config_maps(p: &IamPolicy) -> Vec<&str> {
    p.spec
        .document_from
        .iter()
        .map(|s| s.config_map_key_ref.name.as_str())
        .collect()
}

/// The ConfigMaps an IamRole reads.
pub fn role_config_maps(r: &IamRole) -> Vec<&str> {
    r.spec
        .inline_policies_from
        .values()
        .map(|s| s.config_map_key_ref.name.as_str())
        .collect()
}

/// Re-trigger the objects that read a ConfigMap when it is created, changed or deleted.
/// The watch is metadata-only and limited to the controller's namespace (`scope`); the
/// mapping uses the controller's own store. An object held after an invalid document
/// is let through at once: a ConfigMap change is the change it waits for.
pub fn watch_config_maps<K: Managed>(
    c: Controller<Guarded<K>>,
    ctx: Arc<Context>,
    scope: Option<&str>,
    reads: for<'a> fn(&'a K) -> Vec<&'a str>,
) -> Controller<Guarded<K>> {
    let store = c.store();
    // kube-runtime's metadata watcher makes metadata-only list and watch requests.
    let api = scoped_api::<ConfigMap>(&ctx.client, scope);
    c.watches_stream(changes(api), move |cm: PartialObjectMeta<ConfigMap>| {
        let objects: Vec<ObjectRef<Guarded<K>>> = super::refs::referencing(&store, &cm, reads);
        for o in &objects {
            ctx.lift_hold(&format!(
                "{}/{}",
                o.namespace.as_deref().unwrap_or_default(),
                o.name
            ));
        }
        objects
    })
}

/// The ConfigMaps created, changed (a new resourceVersion) or deleted. A re-list after
/// a lost watch re-delivers every ConfigMap unchanged; those are dropped, so only real
/// changes reconcile.
fn changes(
    api: Api<ConfigMap>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<ConfigMap>, watcher::Error>> + Send + 'static
{
    let mut seen: HashMap<String, String> = HashMap::new();
    // kube-runtime's own metadata watcher, not `watcher(Api<PartialObjectMeta<_>>)`
    // (which it now recommends instead): with the latter, the controller's watches did
    // not recover from an API server restart within 90 s (tests/e2e/ha.rs
    // `the_operator_rides_out_an_api_server_restart` fails with it, passes with this).
    #[allow(deprecated)]
    kube::runtime::metadata_watcher(api, watch_config())
        .default_backoff()
        .filter_map(move |event| {
            let uid = |o: &PartialObjectMeta<ConfigMap>| o.meta().uid.clone().unwrap_or_default();
            let out = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    let rv = o.resource_version().unwrap_or_default();
                    (seen.insert(uid(&o), rv.clone()) != Some(rv)).then_some(Ok(o))
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.remove(&uid(&o));
                    Some(Ok(o))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        })
}

/// One inline policy as every kind checks it before any AWS call: its name (AWS's
/// rule), its grammar, and the denied actions. `root` is its field.
pub fn check_inline(root: &str, name: &str, doc: &Value, deny: &[String]) -> Result<(), Error> {
    crate::policy::check_policy_name(name).map_err(|m| Error::at(Reason::InvalidSpec, root, m))?;
    validate_document(doc, root, DocKind::Inline)
        .map_err(|e| Error::invalid(Reason::InvalidPolicyDocument, e))?;
    if let Some((field, msg)) = crate::policy::allowed_actions_matching(doc, root, deny) {
        return Err(Error::at(Reason::GuardrailViolation, field, msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(name: &str, key: &str) -> DocumentSource {
        serde_json::from_value(json!({"configMapKeyRef": {"name": name, "key": key}})).unwrap()
    }

    fn maps(data: Value) -> BTreeMap<String, ConfigMap> {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "vendor"}, "data": data})).unwrap();
        BTreeMap::from([("vendor".to_string(), cm)])
    }

    fn outcome(e: Error) -> (String, String, &'static str) {
        match e {
            Error::Waiting { reason, .. } => (reason.to_string(), e.to_string(), "waiting"),
            Error::Stalled { reason, .. } => (reason.to_string(), e.to_string(), "stalled"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reads_json_or_yaml_from_the_key() {
        let m = maps(json!({
            "policy.json": r#"{"Version": "2012-10-17", "Statement": []}"#,
            "policy.yaml": "Version: '2012-10-17'\nStatement: []\n",
        }));
        let f = "spec.documentFrom";
        let want = json!({"Version": "2012-10-17", "Statement": []});
        assert_eq!(
            read_source(f, "ns", &source("vendor", "policy.json"), &m).unwrap(),
            want
        );
        assert_eq!(
            read_source(f, "ns", &source("vendor", "policy.yaml"), &m).unwrap(),
            want
        );
    }

    #[test]
    fn a_missing_config_map_or_key_waits_naming_the_field() {
        let m = maps(json!({"policy.json": "{}"}));
        let f = "spec.documentFrom";
        assert_eq!(
            outcome(read_source(f, "team", &source("other", "policy.json"), &m).unwrap_err()),
            (
                "DependencyNotReady".into(),
                r#"spec.documentFrom.configMapKeyRef: ConfigMap "other" does not exist in namespace "team""#.into(),
                "waiting"
            )
        );
        assert_eq!(
            outcome(read_source(f, "team", &source("vendor", "nope.json"), &m).unwrap_err()),
            (
                "DependencyNotReady".into(),
                r#"spec.documentFrom.configMapKeyRef: ConfigMap "vendor" has no key "nope.json""#
                    .into(),
                "waiting"
            )
        );
    }

    #[test]
    fn an_unreadable_document_is_invalid_naming_the_field_and_the_key() {
        let m = maps(
            json!({"bad.json": "{\"Version\": \"2012-10-17\",", "list": "[1, 2]",
                            "text": "just words"}),
        );
        let f = "spec.inlinePoliciesFrom.s3";
        let (reason, message, kind) =
            outcome(read_source(f, "ns", &source("vendor", "bad.json"), &m).unwrap_err());
        assert_eq!(
            (reason.as_str(), kind),
            ("InvalidPolicyDocument", "stalled")
        );
        assert!(
            message.starts_with(
                r#"spec.inlinePoliciesFrom.s3: ConfigMap "vendor" key "bad.json" is not valid JSON: EOF"#
            ),
            "{message}"
        );
        let (_, message, _) =
            outcome(read_source(f, "ns", &source("vendor", "list"), &m).unwrap_err());
        assert_eq!(
            message,
            r#"spec.inlinePoliciesFrom.s3: ConfigMap "vendor" key "list" must hold a policy document (a JSON object), got an array"#
        );
        let (_, message, _) =
            outcome(read_source(f, "ns", &source("vendor", "text"), &m).unwrap_err());
        assert!(message.ends_with("must hold a policy document (a JSON object), got a string"));
    }

    #[test]
    fn inline_policies_are_named_by_the_map_they_come_from() {
        let spec: IamRoleSpec = serde_json::from_value(json!({
            "assumeRolePolicy": {"Statement": []},
            "inlinePolicies": {"a": {"Statement": []}, "b": {"Statement": []}},
            "inlinePoliciesFrom": {"b": {"configMapKeyRef": {"name": "x", "key": "y"}}},
        }))
        .unwrap();
        let fields: Vec<String> = role_documents(&spec).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "spec.assumeRolePolicy",
                "spec.inlinePolicies.a",
                "spec.inlinePoliciesFrom.b"
            ]
        );
    }

    #[test]
    fn a_region_less_operator_refuses_a_document_using_the_region() {
        let vars = Variables {
            region: None,
            ..Variables::placeholders()
        };
        let (reason, message, _) = outcome(
            substitute_field(
                "spec.document",
                &json!({"Resource": "arn:aws:logs:${AWS_REGION}:*:*"}),
                Some(&vars),
            )
            .unwrap_err(),
        );
        assert_eq!(reason, "InvalidPolicyDocument");
        assert!(
            message.starts_with("spec.document: uses ${AWS_REGION}"),
            "{message}"
        );
    }
}
