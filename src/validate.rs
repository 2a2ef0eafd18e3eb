//! `iamwright validate -f PATH...`: check manifests offline, as a CI step before a
//! GitOps sync — the CRD schema (from the generated CRDs, as the apiserver would with
//! strict field validation), the rules the CRDs express in CEL that need no old object,
//! the policy grammar and the operator's guardrail flags. Kinds that are not ours are
//! ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use k8s_openapi::api::core::v1::ConfigMap;

pub use crate::inputs::collect_files;

use crate::controllers::documents::{read_source, role_documents};
use crate::controllers::role::credentials::{operator_statement, session_name};
use crate::policy::{DocKind, Variables, substitute, unrecognized_actions, validate_document};

/// One problem, printed as `file:Kind/name: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub object: String,
    pub field: String,
    pub message: String,
    /// A note is no problem: something only the operator can check (a document in a
    /// ConfigMap that is not among the inputs). It does not fail the run.
    pub severity: Severity,
}

/// Whether a [`Problem`] fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Note,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.object, self.field, self.message
        )
    }
}

/// The guardrail flags, as `iamwright run` takes them.
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    pub deny_actions: Vec<String>,
    pub required_permissions_boundary: Option<String>,
    /// The trust grants (`--allow-public-trust` is the one that matters offline).
    pub trust: crate::config::TrustArgs,
    /// `--operator-principal`: who the `spec.credentials` trust statement names.
    pub operator_principal: Option<String>,
}

/// The principal shown for the operator when `--operator-principal` is not given.
pub const OPERATOR_PLACEHOLDER: &str = "arn:aws:iam::000000000000:role/OPERATOR";

impl Guardrails {
    /// The operator settings these flags stand for (the rest does not matter offline).
    fn settings(&self) -> crate::controllers::Settings {
        crate::controllers::Settings::guardrails(
            self.deny_actions.clone(),
            self.required_permissions_boundary.clone(),
            self.trust.clone(),
        )
    }
}

/// Check every document of every file. The ConfigMaps among all the inputs resolve
/// `documentFrom` / `inlinePoliciesFrom` of the objects of any file.
pub fn validate_paths(paths: &[PathBuf], guardrails: &Guardrails) -> std::io::Result<Vec<Problem>> {
    let schemas = schemas();
    let mut inputs = vec![];
    for file in collect_files(paths)? {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(&file)?
        };
        let name = if file.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            file.display().to_string()
        };
        inputs.push((name, parse(&file, &text)));
    }
    let config_maps = ConfigMaps::from_inputs(inputs.iter().flat_map(|(_, (docs, _))| docs));
    let mut problems = vec![];
    for (name, (docs, error)) in &inputs {
        problems.extend(check_all(
            name,
            docs,
            error.clone(),
            &schemas,
            guardrails,
            &config_maps,
        ));
    }
    Ok(problems)
}

/// The ConfigMaps among the inputs, to resolve document references offline.
#[derive(Default)]
struct ConfigMaps(Vec<(Option<String>, ConfigMap)>);

impl ConfigMaps {
    fn from_inputs<'a>(docs: impl IntoIterator<Item = &'a Value>) -> Self {
        Self(
            docs.into_iter()
                .filter(|v| v["apiVersion"] == "v1" && v["kind"] == "ConfigMap")
                .filter_map(|v| serde_json::from_value::<ConfigMap>(v.clone()).ok())
                .map(|cm| (cm.metadata.namespace.clone(), cm))
                .collect(),
        )
    }

    /// The ConfigMaps an object in `namespace` can read, by name: those of its
    /// namespace, or with none given on either side (`kubectl apply -n` puts both in
    /// the same one).
    fn for_namespace(&self, namespace: Option<&str>) -> BTreeMap<String, ConfigMap> {
        self.0
            .iter()
            .filter(|(ns, _)| ns.is_none() || namespace.is_none() || ns.as_deref() == namespace)
            .filter_map(|(_, cm)| Some((cm.metadata.name.clone()?, cm.clone())))
            .collect()
    }
}

/// The YAML documents of a file, and the problem that stopped the reading, if any.
fn parse(file: &Path, text: &str) -> (Vec<Value>, Option<Problem>) {
    let mut docs = vec![];
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(doc) {
            Ok(v) if v.is_null() => {}
            Ok(v) => docs.push(v),
            Err(e) => {
                let problem = Problem {
                    file: file.display().to_string(),
                    object: format!("document {}", i + 1),
                    field: "(yaml)".into(),
                    message: e.to_string(),
                    severity: Severity::Error,
                };
                // the rest of the stream cannot be read reliably
                return (docs, Some(problem));
            }
        }
    }
    (docs, None)
}

/// The openAPIV3Schema of each kind, from the generated CRDs.
fn schemas() -> BTreeMap<String, Value> {
    crate::crds::all()
        .into_iter()
        .map(|crd| {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap_or_default();
            (
                crd.spec.names.kind.clone(),
                schema["openAPIV3Schema"].clone(),
            )
        })
        .collect()
}

/// Check the documents of one text (the ConfigMaps it holds resolve its references).
pub fn validate_text(
    file: &Path,
    text: &str,
    schemas: &BTreeMap<String, Value>,
    guardrails: &Guardrails,
) -> Vec<Problem> {
    let (docs, error) = parse(file, text);
    let config_maps = ConfigMaps::from_inputs(&docs);
    check_all(
        &file.display().to_string(),
        &docs,
        error,
        schemas,
        guardrails,
        &config_maps,
    )
}

fn check_all(
    file_name: &str,
    docs: &[Value],
    error: Option<Problem>,
    schemas: &BTreeMap<String, Value>,
    guardrails: &Guardrails,
    config_maps: &ConfigMaps,
) -> Vec<Problem> {
    let mut problems = vec![];
    for value in docs {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        if api_version.split('/').next() != Some(crate::api::GROUP) {
            continue; // not ours
        }
        let name = value["metadata"]["name"].as_str().unwrap_or("<unnamed>");
        let namespace = value["metadata"]["namespace"].as_str();
        let object = format!("{kind}/{name}");
        let mut push_as = |severity: Severity, field: String, message: String| {
            problems.push(Problem {
                file: file_name.to_string(),
                object: object.clone(),
                field,
                message,
                severity,
            })
        };
        let mut push = |field: String, message: String| push_as(Severity::Error, field, message);
        if api_version != "iamwright.dev/v1alpha1" {
            push(
                "apiVersion".into(),
                format!("unknown version {api_version:?}; this iamwright serves v1alpha1"),
            );
            continue;
        }
        let Some(schema) = schemas.get(kind) else {
            push(
                "kind".into(),
                format!("unknown kind {kind:?} in iamwright.dev/v1alpha1"),
            );
            continue;
        };
        let spec = value.get("spec").cloned().unwrap_or(Value::Null);
        let mut schema_problems = vec![];
        check_schema(
            &spec,
            &schema["properties"]["spec"],
            "spec",
            &mut schema_problems,
        );
        if spec.is_null() {
            schema_problems.push(("spec".into(), "is required".into()));
        }
        let clean = schema_problems.is_empty();
        for (f, m) in schema_problems {
            push(f, m);
        }
        if clean {
            let maps = config_maps.for_namespace(namespace);
            let object = Object {
                kind,
                name,
                namespace,
            };
            let checks = semantic_checks(&object, &spec, guardrails, &maps);
            for (f, m) in checks.problems {
                push_as(Severity::Error, f, m);
            }
            for (f, m) in checks.notes {
                push_as(Severity::Note, f, m);
            }
        }
    }
    problems.extend(error);
    problems
}

/// The subset of OpenAPI v3 the generated CRDs use, checked as the apiserver does.
fn check_schema(value: &Value, schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if value.is_null() {
        return; // absent or null: `required` of the parent reports it
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let type_ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push((
            path.into(),
            format!("must be of type {ty}, got {}", json_type(value)),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        out.push((
            path.into(),
            format!("must be one of {}, got {value}", list.join(", ")),
        ));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64()
            && len < min
        {
            out.push((path.into(), format!("must be at least {min} characters")));
        }
        if let Some(max) = schema["maxLength"].as_u64()
            && len > max
        {
            out.push((path.into(), format!("must be at most {max} characters")));
        }
        if let Some(p) = schema["pattern"].as_str()
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(s)
        {
            out.push((path.into(), format!("{s:?} does not match {p}")));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && n < min
        {
            out.push((path.into(), format!("must be at least {min}")));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && n > max
        {
            out.push((path.into(), format!("must be at most {max}")));
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check_schema(item, &schema["items"], &format!("{path}[{i}]"), out);
        }
    }
    if let Some(obj) = value.as_object() {
        if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
            return;
        }
        if let Some(min) = schema["minProperties"].as_u64()
            && (obj.len() as u64) < min
        {
            out.push((path.into(), format!("must have at least {min} entries")));
        }
        for req in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if obj.get(req).is_none_or(Value::is_null) {
                out.push((format!("{path}.{req}"), "is required".into()));
            }
        }
        let props = schema["properties"].as_object();
        for (k, v) in obj {
            let sub = format!("{path}.{k}");
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => check_schema(v, s, &sub, out),
                (None, Some(extra)) if extra.is_object() => check_schema(v, extra, &sub, out),
                _ => out.push((sub, "unknown field".into())),
            }
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The object a manifest describes, as far as the checks need it.
struct Object<'a> {
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

/// What [`semantic_checks`] found: problems, and notes on what only the operator can
/// check.
#[derive(Default)]
struct Checks {
    problems: Vec<(String, String)>,
    notes: Vec<(String, String)>,
}

/// The note for a document in a ConfigMap that is not among the inputs.
fn checked_at_reconcile(field: &str, name: &str) -> (String, String) {
    (
        format!("{field}.configMapKeyRef"),
        format!(
            "ConfigMap {name:?} is not among the inputs; the document is checked when the operator reconciles (give its manifest too, e.g. kustomize build . | iamwright validate -f -)"
        ),
    )
}

/// A controller error as (field, message); `spec` when it names no one field.
fn split_error(e: &crate::controllers::Error) -> (String, String) {
    (e.field().unwrap_or("spec").to_string(), e.detail())
}

/// The CRDs' create-time CEL rules, the policy grammar and the guardrails. Documents
/// are checked as the operator sends them: read from the ConfigMaps among the inputs,
/// with the variables replaced by [`Variables::placeholders`].
fn semantic_checks(
    object: &Object,
    spec: &Value,
    g: &Guardrails,
    config_maps: &BTreeMap<String, ConfigMap>,
) -> Checks {
    let kind = object.kind;
    let mut checks = Checks::default();
    let out = &mut checks.problems;
    let notes = &mut checks.notes;
    if let Some(tags) = spec["tags"].as_object() {
        for k in tags.keys().filter(|k| k.starts_with("iamwright.dev/")) {
            out.push((
                format!("spec.tags.{k}"),
                "tag keys starting with iamwright.dev/ are reserved for the operator".into(),
            ));
        }
    }
    let vars = Variables::placeholders();
    let placeholders = |doc: &Value| substitute(doc, &vars).unwrap_or_else(|_| doc.clone());
    // (field, document) as the operator would send them, for the action catalog.
    let mut resolved: Vec<(String, Value)> = vec![];
    match kind {
        "IamPolicy" => {
            // The controller's own checks, so the offline answer is the operator's answer.
            use crate::controllers::policy::{Resolved, Source, source, validate};
            if let Ok(policy) = serde_json::from_value::<crate::api::IamPolicySpec>(spec.clone()) {
                let doc = match source(&policy) {
                    Ok(Source::Written(doc)) => Some(Resolved::new(
                        "spec.document",
                        placeholders(&doc.value()),
                        None,
                    )),
                    Ok(Source::ConfigMap(from)) => {
                        let field = "spec.documentFrom";
                        let name = &from.config_map_key_ref.name;
                        if !config_maps.contains_key(name) {
                            notes.push(checked_at_reconcile(field, name));
                            None
                        } else {
                            match read_source(field, "", from, config_maps) {
                                Ok(doc) => {
                                    Some(Resolved::new(field, placeholders(&doc), Some(from)))
                                }
                                Err(e) => {
                                    out.push(split_error(&e));
                                    None
                                }
                            }
                        }
                    }
                    Err(e) => {
                        out.push(split_error(&e));
                        None
                    }
                };
                if let Some(doc) = doc {
                    if let Err(e) = validate(&doc, &g.settings()) {
                        out.push(split_error(&e));
                    }
                    resolved.push((doc.field, doc.document));
                }
            }
        }
        "IamRole" => {
            // The controller's own checks, so the offline answer is the operator's answer.
            if let Ok(mut role) = serde_json::from_value::<crate::api::IamRoleSpec>(spec.clone()) {
                role.assume_role_policy = role
                    .assume_role_policy
                    .as_ref()
                    .map(|d| placeholders(&d.value()).into());
                for doc in role.inline_policies.values_mut() {
                    *doc = placeholders(&doc.value()).into();
                }
                let sources = std::mem::take(&mut role.inline_policies_from);
                for (name, source) in &sources {
                    let field = format!("spec.inlinePoliciesFrom.{name}");
                    let cm = &source.config_map_key_ref;
                    if role.inline_policies.contains_key(name) {
                        out.push((field, crate::crds::INLINE_POLICY_IN_BOTH.into()));
                    } else if !config_maps.contains_key(&cm.name) {
                        notes.push(checked_at_reconcile(&field, &cm.name));
                    } else {
                        match read_source(&field, "", source, config_maps) {
                            Ok(doc) => {
                                let doc = placeholders(&doc);
                                if let Err(e) = validate_document(&doc, &field, DocKind::Inline) {
                                    out.push((
                                        e.path,
                                        format!(
                                            "{} (from ConfigMap {:?} key {:?})",
                                            e.message, cm.name, cm.key
                                        ),
                                    ));
                                } else {
                                    role.inline_policies.insert(name.clone(), doc.into());
                                    role.inline_policies_from
                                        .insert(name.clone(), source.clone());
                                }
                            }
                            Err(e) => out.push(split_error(&e)),
                        }
                    }
                }
                let principal = g
                    .operator_principal
                    .as_deref()
                    .unwrap_or(OPERATOR_PLACEHOLDER);
                // As kubectl applies a manifest without a namespace: to `default`.
                let session = session_name(object.namespace.unwrap_or("default"), object.name);
                if role.credentials.is_some() {
                    notes.push((
                        "spec.credentials".into(),
                        format!(
                            "the operator adds this statement to the trust policy (naming its own principal; give it with --operator-principal): {}",
                            operator_statement(principal, &session)
                        ),
                    ));
                }
                // The namespace and account only shape the generated statements' values;
                // the operator's principal only --operator-principal tells offline.
                let checked = |role: &crate::api::IamRoleSpec| {
                    let account = crate::trust::eks::Account::placeholder();
                    let trust = crate::controllers::role::trust_policy(
                        role,
                        "default",
                        &g.trust.eks,
                        Some(&account),
                        Some((principal, &session)),
                    )?;
                    let inline = crate::controllers::role::inline_documents(role);
                    crate::controllers::role::validate(role, &trust, &inline, &g.settings())
                };
                if let Err(e) = checked(&role) {
                    out.push(split_error(&e));
                }
                resolved.extend(
                    role_documents(&role)
                        .into_iter()
                        .map(|(f, d)| (f, d.clone())),
                );
            }
        }
        "IamGroup" => {
            // The controller's own checks (the managed policies' documents and the
            // scope's grants are checked when the operator reconciles).
            if let Ok(group) = serde_json::from_value::<crate::api::IamGroupSpec>(spec.clone()) {
                let inline: BTreeMap<String, Value> = group
                    .inline_policies
                    .iter()
                    .map(|(name, doc)| (name.clone(), placeholders(&doc.value())))
                    .collect();
                if let Err(e) = crate::controllers::group::validate(&group, &inline, &g.settings())
                {
                    out.push(split_error(&e));
                }
                resolved.extend(
                    inline
                        .into_iter()
                        .map(|(name, doc)| (format!("spec.inlinePolicies.{name}"), doc)),
                );
            }
        }
        "InstanceProfileBinding" => {
            // The controller's own check, so the offline answer is the operator's answer.
            if let Ok(b) =
                serde_json::from_value::<crate::api::InstanceProfileBindingSpec>(spec.clone())
                && let Err(e) = crate::controllers::binding::validate(&b)
            {
                out.push(split_error(&e));
            }
        }
        _ => {}
    }
    // Actions no AWS service has (AWS accepts them, and they grant nothing), once the
    // object is otherwise clean.
    if out.is_empty() {
        for (field, doc) in &resolved {
            out.extend(
                unrecognized_actions(doc, field)
                    .into_iter()
                    .map(|u| (u.field, u.message)),
            );
        }
    }
    if kind == "IamUserAccessKey" {
        access_key_checks(spec, g, &mut checks);
    }
    checks
}

/// An IamUserAccessKey: the controller's own validation (schedule, required boundary,
/// policy ARNs) under the governance the flags alone give, and a note for each
/// existing group to join that only an IamScope could grant.
fn access_key_checks(spec: &Value, g: &Guardrails, checks: &mut Checks) {
    let gov = crate::trust::Governance::new(&g.settings(), "", None);
    if let Ok(key) = serde_json::from_value::<crate::api::IamUserAccessKeySpec>(spec.clone())
        && let Err(e) = crate::controllers::access_key::validate(&key, &gov)
    {
        checks.problems.push(split_error(&e));
    }
    // Joining an existing group is a grant: the flags are known here, an IamScope may
    // grant it too (checked when the operator reconciles).
    let groups = spec["groups"].as_array().into_iter().flatten();
    for (i, group) in groups.filter_map(Value::as_str).enumerate() {
        let field = format!("spec.groups[{i}]");
        if gov.check_existing_group(&field, group).is_err() {
            checks.notes.push((
                field,
                format!(
                    "joining the existing IAM group {group:?} needs a grant: --allow-existing-group does not match it, so an IamScope of the namespace must (existingGroups), else the operator answers NotPermitted"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, g: &Guardrails) -> Vec<String> {
        validate_text(Path::new("m.yaml"), yaml, &schemas(), g)
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn groups_and_memberships_are_checked_as_the_operator_checks_them() {
        let yaml = r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamGroup
metadata: {name: admins}
spec:
  inlinePolicies:
    users: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "iam:CreateUser", Resource: "*"}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamGroup
metadata: {name: marked}
spec:
  inlinePolicies:
    iamwright-owner: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "s3:GetObject", Resource: "*"}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamUserAccessKey
metadata: {name: alice}
spec:
  userName: alice
  groups: [Ops, Admins]
  console: {enabled: true, passwordResetRequired: true}
"#;
        let g = Guardrails {
            deny_actions: vec!["iam:*".into()],
            trust: crate::config::TrustArgs {
                allow_existing_groups: vec!["Adm*".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let got = validate_text(Path::new("m.yaml"), yaml, &schemas(), &g);
        let errors: Vec<String> = got
            .iter()
            .filter(|p| p.is_error())
            .map(|p| p.to_string())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "m.yaml:IamGroup/admins: spec.inlinePolicies.users.Statement.Action[0]: allows \"iam:CreateUser\""
            ),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("m.yaml:IamGroup/marked: spec.inlinePolicies.iamwright-owner: ")
                && errors[1].contains("reserved"),
            "{errors:#?}"
        );
        // The existing group the flags do not grant: a note (an IamScope may grant it).
        let notes: Vec<String> = got
            .iter()
            .filter(|p| !p.is_error())
            .map(|p| p.to_string())
            .collect();
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(
            notes[0].starts_with("m.yaml:IamUserAccessKey/alice: spec.groups[0]: "),
            "{notes:#?}"
        );
    }

    #[test]
    fn clean_manifests_and_foreign_kinds_pass() {
        let yaml = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
data: {a: b}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: ok}
spec:
  document: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "s3:GetObject", Resource: "*"}}
"#;
        assert_eq!(check(yaml, &Guardrails::default()), Vec::<String>::new());
    }

    #[test]
    fn reports_schema_cel_grammar_and_guardrail_problems() {
        let yaml = r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: p}
spec:
  deletionPolicy: Keep
  tags: {"iamwright.dev/x": y}
  colour: blue
  document: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "s3:GetObject", Resource: "*"}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: q}
spec:
  document: {Version: "2012-10-17", Statement: [{Effect: allow, Action: "s3:GetObject", Resource: "*"}]}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: r}
spec:
  permissionsBoundary: arn:aws:iam::111122223333:policy/other
  maxSessionDuration: 10
  assumeRolePolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: "sts:AssumeRole"}]}
---
apiVersion: iamwright.dev/v1alpha1
kind: InstanceProfileBinding
metadata: {name: b}
spec: {roleName: x}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: admin}
spec:
  document: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "iam:*", Resource: "*"}}
"#;
        let g = Guardrails {
            deny_actions: vec!["iam:CreateUser".into()],
            required_permissions_boundary: Some("arn:aws:iam::111122223333:policy/boundary".into()),
            ..Default::default()
        };
        let got = check(yaml, &g);
        let want = [
            r#"m.yaml:IamPolicy/p: spec.colour: unknown field"#,
            r#"m.yaml:IamPolicy/p: spec.deletionPolicy: must be one of "Delete", "Retain", got "Keep""#,
            r#"m.yaml:IamPolicy/q: spec.document.Statement[0].Effect: must be "Allow" or "Deny", got "allow""#,
            r#"m.yaml:IamRole/r: spec.maxSessionDuration: must be at least 3600"#,
            r#"m.yaml:InstanceProfileBinding/b: spec: at least one of spec.instanceIds and spec.instanceSelector must be set"#,
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
        }
        assert!(
            got.iter().any(|g| g.starts_with(
                "m.yaml:IamPolicy/admin: spec.document.Statement.Action[0]: allows \"iam:*\""
            )),
            "{got:#?}"
        );
        // Schema problems come first; the reserved tag is reported once the schema is clean.
        let tag = check(
            r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: t}
spec:
  tags: {"iamwright.dev/x": y}
  permissionsBoundary: arn:aws:iam::111122223333:policy/other
  assumeRolePolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: "*", Action: "sts:AssumeRole"}]}
"#,
            &Guardrails {
                trust: crate::config::TrustArgs {
                    allow_public_trust: true,
                    ..Default::default()
                },
                ..g.clone()
            },
        );
        assert_eq!(tag, vec![
            "m.yaml:IamRole/t: spec.tags.iamwright.dev/x: tag keys starting with iamwright.dev/ are reserved for the operator".to_string(),
            r#"m.yaml:IamRole/t: spec.permissionsBoundary: must be "arn:aws:iam::111122223333:policy/boundary" (the operator's --required-permissions-boundary), got "arn:aws:iam::111122223333:policy/other"; remove the field or set it to the required boundary"#.to_string(),
        ]);
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;
    use serde_json::json;

    /// `iamwright validate`'s problems for one manifest, as the CLI prints them.
    fn problems(file: &str, yaml: &str) -> Vec<String> {
        validate_text(Path::new(file), yaml, &schemas(), &Guardrails::default())
            .iter()
            .filter(|p| p.is_error())
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_deactivation_that_does_not_fit_inside_every_is_refused() {
        let key = |rotation: &str| {
            let yaml = format!(
                "apiVersion: iamwright.dev/v1alpha1\nkind: IamUserAccessKey\nmetadata: {{name: k}}\nspec:\n  userName: u\n  rotation: {rotation}\n"
            );
            problems("k.yaml", &yaml)
        };
        let got = key("{every: 20h, gracePeriod: 10h, deactivatedFor: 10h}");
        assert!(
            got.iter().any(|g| g.starts_with(
                "k.yaml:IamUserAccessKey/k: spec.rotation.deactivatedFor: gracePeriod + deactivatedFor must be shorter than spec.rotation.every"
            )),
            "{got:#?}"
        );
        assert_eq!(
            key("{every: 20h, gracePeriod: 10h, deactivatedFor: 9h}"),
            Vec::<String>::new()
        );
        // Without deactivatedFor the default is shortened to fit: no problem.
        assert_eq!(key("{every: 1h}"), Vec::<String>::new());
    }

    /// Every access key of the fixtures (and a few more), through the CLI and through
    /// the controller's validation under the same flags: the same field and message,
    /// or nothing from both.
    #[test]
    fn access_keys_get_the_controllers_answer() {
        let g = Guardrails {
            required_permissions_boundary: Some("arn:aws:iam::123456789012:policy/boundary".into()),
            ..Default::default()
        };
        let fixture = std::fs::read_to_string("tests/fixtures/validate/grammar/keys.yaml")
            .expect("the key fixtures");
        let more = [
            "userName: u",
            "userName: u\npermissionsBoundary: arn:aws:iam::123456789012:policy/boundary",
            "userName: u\npermissionsBoundary: arn:aws:iam::123456789012:policy/other",
            "userName: u\nrotation: {every: 30m}",
            "userName: u\nrotation: {every: 2h, gracePeriod: 3h}",
        ];
        let docs = fixture.split("\n---\n").map(str::to_string).chain(
            more.iter().enumerate().map(|(i, spec)| {
                format!(
                    "apiVersion: iamwright.dev/v1alpha1\nkind: IamUserAccessKey\nmetadata: {{name: k{i}}}\nspec:\n  {}\n",
                    spec.replace('\n', "\n  ")
                )
            }),
        );
        let gov = crate::trust::Governance::new(&g.settings(), "", None);
        let mut refused = 0;
        for doc in docs {
            let value: Value = serde_yaml::from_str(&doc).unwrap();
            let name = value["metadata"]["name"].as_str().unwrap().to_string();
            let spec = serde_json::from_value(value["spec"].clone()).unwrap();
            let controller: Vec<String> = crate::controllers::access_key::validate(&spec, &gov)
                .err()
                .map(|e| {
                    let (field, message) = split_error(&e);
                    format!("m.yaml:IamUserAccessKey/{name}: {field}: {message}")
                })
                .into_iter()
                .collect();
            refused += controller.len();
            let cli: Vec<String> = validate_text(Path::new("m.yaml"), &doc, &schemas(), &g)
                .iter()
                .map(|p| p.to_string())
                .collect();
            assert_eq!(cli, controller, "{doc}");
        }
        assert_eq!(
            refused, 5,
            "the fixtures' two, the boundary and two schedules"
        );
    }

    #[test]
    fn role_credentials_must_fit_sts_and_the_session_limit() {
        let role = |extra: &str| {
            let yaml = format!(
                "apiVersion: iamwright.dev/v1alpha1\nkind: IamRole\nmetadata: {{name: r}}\nspec:\n  assumeRolePolicy: {{Version: \"2012-10-17\", Statement: [{{Effect: Allow, Principal: {{Service: ec2.amazonaws.com}}, Action: \"sts:AssumeRole\"}}]}}\n{extra}"
            );
            problems("r.yaml", &yaml)
        };
        assert_eq!(
            role("  credentials: {secretName: app-aws}\n"),
            Vec::<String>::new()
        );
        let got = role("  credentials: {secretName: app-aws, duration: 2h}\n");
        assert!(
            got.iter().any(|g| g
                .contains("spec.credentials.duration: must not exceed spec.maxSessionDuration")),
            "{got:#?}"
        );
        let got = role(
            "  maxSessionDuration: 43200\n  credentials: {secretName: app-aws, duration: 5m}\n",
        );
        assert!(
            got.iter()
                .any(|g| g.contains("spec.credentials.duration") && g.contains("15m and 12h")),
            "{got:#?}"
        );
    }

    /// A role with `spec.credentials` needs no other trust: the operator's statement is
    /// its trust policy, and validate shows that statement, naming the operator as
    /// `--operator-principal` says and the session as the operator binds it.
    #[test]
    fn the_credentials_trust_statement_is_shown_and_suffices() {
        let yaml = "apiVersion: iamwright.dev/v1alpha1\nkind: IamRole\nmetadata: {name: app, namespace: team-a}\nspec:\n  credentials: {secretName: app-aws}\n";
        let g = Guardrails {
            operator_principal: Some("arn:aws:iam::111122223333:role/iamwright".into()),
            ..Guardrails::default()
        };
        let found = validate_text(Path::new("r.yaml"), yaml, &schemas(), &g);
        assert!(found.iter().all(|p| !p.is_error()), "{found:#?}");
        let [note] = &found[..] else {
            panic!("one note expected: {found:#?}")
        };
        assert_eq!(note.field, "spec.credentials");
        let shown: Value =
            serde_json::from_str(&note.message[note.message.find('{').expect("a statement")..])
                .expect("the statement is JSON");
        assert_eq!(
            shown,
            json!({"Sid": "IamwrightCredentials", "Effect": "Allow",
                   "Principal": {"AWS": "arn:aws:iam::111122223333:role/iamwright"},
                   "Action": "sts:AssumeRole",
                   "Condition": {"StringEquals": {"sts:RoleSessionName": "team-a.app"}}})
        );
        // Without the flag: a placeholder principal, still no problem.
        let found = validate_text(
            Path::new("r.yaml"),
            yaml,
            &schemas(),
            &Guardrails::default(),
        );
        assert!(found.iter().all(|p| !p.is_error()), "{found:#?}");
        assert!(
            found[0].message.contains(OPERATOR_PLACEHOLDER),
            "{found:#?}"
        );
        // Neither trust nor credentials: the CEL rule's words.
        let bare = "apiVersion: iamwright.dev/v1alpha1\nkind: IamRole\nmetadata: {name: app}\nspec: {maxSessionDuration: 3600}\n";
        assert_eq!(
            problems("r.yaml", bare),
            vec![format!(
                "r.yaml:IamRole/app: spec: {}",
                crate::trust::eks::REQUIRE_ONE
            )]
        );
    }
}

#[cfg(test)]
mod document_from_tests {
    use super::*;

    fn check(yaml: &str, g: &Guardrails) -> Vec<String> {
        validate_text(Path::new("k.yaml"), yaml, &schemas(), g)
            .iter()
            .map(|p| {
                let prefix = if p.is_error() { "" } else { "note: " };
                format!("{prefix}{p}")
            })
            .collect()
    }

    /// `kustomize build` output: the ConfigMaps resolve the references, documents are
    /// checked with the variables' placeholder values, and a reference to a ConfigMap
    /// that is not among the inputs is a note, not a problem.
    #[test]
    fn documents_from_config_maps_among_the_inputs_are_checked() {
        let yaml = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: vendor-policy-5h8k2, namespace: team}
data:
  good.json: |
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
     "Resource": "arn:${AWS_PARTITION}:sqs:${AWS_REGION}:$AWS_ACCOUNT_ID:q"}]}
  bad.json: |
    {"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}]}
  broken.json: '{"Version": '
  admin.yaml: |
    Version: "2012-10-17"
    Statement: {Effect: Allow, Action: "iam:*", Resource: "*"}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: good, namespace: team}
spec:
  documentFrom: {configMapKeyRef: {name: vendor-policy-5h8k2, key: good.json}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: bad, namespace: team}
spec:
  documentFrom: {configMapKeyRef: {name: vendor-policy-5h8k2, key: bad.json}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: broken, namespace: team}
spec:
  documentFrom: {configMapKeyRef: {name: vendor-policy-5h8k2, key: broken.json}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: nokey, namespace: team}
spec:
  documentFrom: {configMapKeyRef: {name: vendor-policy-5h8k2, key: missing.json}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: elsewhere, namespace: other}
spec:
  documentFrom: {configMapKeyRef: {name: vendor-policy-5h8k2, key: good.json}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: both, namespace: team}
spec:
  document: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "s3:GetObject", Resource: "*"}}
  documentFrom: {configMapKeyRef: {name: vendor-policy-5h8k2, key: good.json}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamPolicy
metadata: {name: written, namespace: team}
spec:
  document: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "sns:Publish", Resource: "arn:${AWS_PARTITION}:sns:${AWS_REGION}:${AWS_ACCOUNT_ID}:t"}}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: r, namespace: team}
spec:
  assumeRolePolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "arn:${AWS_PARTITION}:iam::$AWS_ACCOUNT_ID:root"}, Action: "sts:AssumeRole"}]}
  inlinePolicies:
    own: {Version: "2012-10-17", Statement: {Effect: Allow, Action: "s3:GetObject", Resource: "*"}}
  inlinePoliciesFrom:
    own: {configMapKeyRef: {name: vendor-policy-5h8k2, key: good.json}}
    good: {configMapKeyRef: {name: vendor-policy-5h8k2, key: good.json}}
    admin: {configMapKeyRef: {name: vendor-policy-5h8k2, key: admin.yaml}}
"#;
        let g = Guardrails {
            deny_actions: vec!["iam:CreateUser".into()],
            ..Default::default()
        };
        let cm = r#"(from ConfigMap "vendor-policy-5h8k2" key "bad.json")"#;
        assert_eq!(
            check(yaml, &g),
            vec![
                format!(
                    r#"k.yaml:IamPolicy/bad: spec.documentFrom.Statement[0].Effect: must be "Allow" or "Deny", got "allow" {cm}"#
                ),
                r#"k.yaml:IamPolicy/broken: spec.documentFrom: ConfigMap "vendor-policy-5h8k2" key "broken.json" is not valid JSON: EOF while parsing a value at line 1 column 12"#.to_string(),
                r#"k.yaml:IamPolicy/nokey: spec.documentFrom.configMapKeyRef: ConfigMap "vendor-policy-5h8k2" has no key "missing.json""#.to_string(),
                r#"note: k.yaml:IamPolicy/elsewhere: spec.documentFrom.configMapKeyRef: ConfigMap "vendor-policy-5h8k2" is not among the inputs; the document is checked when the operator reconciles (give its manifest too, e.g. kustomize build . | iamwright validate -f -)"#.to_string(),
                "k.yaml:IamPolicy/both: spec: exactly one of spec.document and spec.documentFrom must be set".to_string(),
                "k.yaml:IamRole/r: spec.inlinePoliciesFrom.own: each inline policy name must be in only one of spec.inlinePolicies and spec.inlinePoliciesFrom".to_string(),
                r#"k.yaml:IamRole/r: spec.inlinePoliciesFrom.admin.Statement.Action[0]: allows "iam:*", which the operator's --deny-action "iam:CreateUser" forbids"#.to_string(),
            ]
        );
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    /// A trust policy anyone may use is refused offline too, unless --allow-public-trust.
    #[test]
    fn public_trust_is_refused_without_the_flag() {
        let yaml = r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: open}
spec:
  assumeRolePolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "*"}, Action: "sts:AssumeRole"}]}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamScope
metadata: {name: team-a}
spec:
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: team-a}}
  path: /tenants/{namespace}/
  colour: blue
"#;
        let got: Vec<String> = validate_text(
            Path::new("m.yaml"),
            yaml,
            &schemas(),
            &Guardrails::default(),
        )
        .iter()
        .map(|p| p.to_string())
        .collect();
        assert_eq!(got, vec![
            "m.yaml:IamRole/open: spec.assumeRolePolicy.Statement[0].Principal: lets anyone assume the role (Principal \"*\" without a Condition); name the principals, add a Condition, or run the operator with --allow-public-trust".to_string(),
            "m.yaml:IamScope/team-a: spec.colour: unknown field".to_string(),
        ]);
        let allowed = Guardrails {
            trust: crate::config::TrustArgs {
                allow_public_trust: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let got = validate_text(Path::new("m.yaml"), yaml, &schemas(), &allowed);
        assert_eq!(got.len(), 1, "{got:?}");
    }
}

#[cfg(test)]
mod eks_tests {
    use super::*;

    /// Service accounts need one of the EKS flags offline as in the operator, and a
    /// role needs a trust policy or service accounts, as the CRD's CEL rule says.
    #[test]
    fn service_accounts_need_an_eks_flag_and_one_of_the_two_fields_is_required() {
        let yaml = r#"
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: irsa, namespace: team}
spec:
  serviceAccounts: [{name: app}, {namespace: jobs, name: batch}]
---
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: nothing}
spec: {maxSessionDuration: 3600}
---
apiVersion: iamwright.dev/v1alpha1
kind: IamRole
metadata: {name: bad-sa}
spec:
  serviceAccounts: [{name: App_1}]
"#;
        let check = |g: &Guardrails| -> Vec<String> {
            validate_text(Path::new("m.yaml"), yaml, &schemas(), g)
                .iter()
                .map(|p| p.to_string())
                .collect()
        };
        let got = check(&Guardrails::default());
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with(
                "m.yaml:IamRole/irsa: spec.serviceAccounts: the operator runs without --oidc-issuer"
            ),
            "{got:#?}"
        );
        assert_eq!(
            got[1],
            "m.yaml:IamRole/nothing: spec: at least one of spec.assumeRolePolicy, spec.serviceAccounts and spec.credentials must be set"
        );
        assert!(
            got[2].starts_with(
                "m.yaml:IamRole/bad-sa: spec.serviceAccounts[0].name: \"App_1\" does not match"
            ),
            "{got:#?}"
        );
        let eks = Guardrails {
            trust: crate::config::TrustArgs {
                eks: crate::config::EksArgs {
                    oidc_issuer: Some("oidc.eks.eu-west-1.amazonaws.com/id/ABC".into()),
                    pod_identity: true,
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let got = check(&eks);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("m.yaml:IamRole/nothing: "), "{got:#?}");
    }
}

#[cfg(test)]
mod operator_policy_tests {
    use crate::policy::{DocKind, validate_document};

    /// The least-privilege policy the README gives for the operator's own role is a
    /// valid document that fits a managed policy.
    #[test]
    fn the_documented_operator_policy_is_valid() {
        let text = include_str!("../docs/operator-iam-policy.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        validate_document(&doc, "docs/operator-iam-policy.json", DocKind::Managed).unwrap();
    }
}

#[cfg(test)]
mod operator_policy_coverage {
    use std::collections::BTreeSet;

    /// Every AWS operation the code calls (all go through `Aws::call`, `Aws::pages` or
    /// `Aws::each_page`).
    fn called_operations() -> BTreeSet<String> {
        let re = regex::Regex::new(r#"(?:call|pages|each_page)\(\s*"(iam|ec2|sts)",\s*"(\w+)""#)
            .unwrap();
        let mut ops = BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    ops.extend(
                        re.captures_iter(&text)
                            .map(|c| format!("{}:{}", &c[1], &c[2])),
                    );
                }
            }
        }
        ops
    }

    /// The documented policy allows exactly what the operator calls (plus iam:PassRole,
    /// which AWS checks inside ec2:AssociateIamInstanceProfile).
    #[test]
    fn the_operator_policy_grants_exactly_the_calls_made() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../docs/operator-iam-policy.json")).unwrap();
        let mut allowed = BTreeSet::new();
        for st in doc["Statement"].as_array().unwrap() {
            match &st["Action"] {
                serde_json::Value::String(a) => {
                    allowed.insert(a.clone());
                }
                list => allowed.extend(
                    list.as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string()),
                ),
            }
        }
        let called = called_operations();
        assert!(called.len() > 40, "found only {called:?}");
        let missing: Vec<_> = called.difference(&allowed).collect();
        assert!(
            missing.is_empty(),
            "docs/operator-iam-policy.json lacks {missing:?}"
        );
        let unused: Vec<_> = allowed
            .difference(&called)
            .filter(|a| *a != "iam:PassRole")
            .collect();
        assert!(
            unused.is_empty(),
            "docs/operator-iam-policy.json grants unused {unused:?}"
        );
    }
}
