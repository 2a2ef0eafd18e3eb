//! The CustomResourceDefinitions, generated from the types in `api/` and finished with
//! what derive macros cannot express: CEL rules (immutability, exclusivity, reserved
//! tag keys) and the list-map shape of `status.conditions`. `iamwright crds` prints
//! [`all`]; `crds/` and the chart hold its output and a test fails when they drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::api::{
    IamGroup, IamPolicy, IamRole, IamScope, IamUserAccessKey, InstanceProfileBinding,
};

const RESERVED_TAGS: (&str, &str) = (
    "self.all(k, !k.startsWith('iamwright.dev/'))",
    "tag keys starting with iamwright.dev/ are reserved for the operator",
);

fn immutable_optional(field: &str) -> (String, String) {
    (
        format!(
            "has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
        ),
        format!("spec.{field} is immutable"),
    )
}

fn immutable_required(field: &str) -> (String, String) {
    (
        format!("self.{field} == oldSelf.{field}"),
        format!("spec.{field} is immutable"),
    )
}

/// The message of the IamPolicy rule that a document is written in or referenced, not
/// both (`iamwright validate` prints it too).
pub const POLICY_DOCUMENT_ONE_OF: &str =
    "exactly one of spec.document and spec.documentFrom must be set";
/// The messages of the InstanceProfileBinding rules, which the controller's validate
/// (and so `iamwright validate`) repeats.
pub const BINDING_ROLE_ONE_OF: &str = "exactly one of spec.roleRef and spec.roleName must be set";
pub const BINDING_INSTANCES_REQUIRED: &str =
    "at least one of spec.instanceIds and spec.instanceSelector must be set";
/// The message of the IamRole rule that an inline policy name is in one map only.
pub const INLINE_POLICY_IN_BOTH: &str = "each inline policy name must be in only one of spec.inlinePolicies and spec.inlinePoliciesFrom";

/// All the CRDs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut policy = IamPolicy::crd();
    finish(
        &mut policy,
        vec![
            immutable_optional("name"),
            immutable_required("path"),
            immutable_optional("description"),
            (
                "has(self.document) != has(self.documentFrom)".into(),
                POLICY_DOCUMENT_ONE_OF.into(),
            ),
        ],
    );

    let mut role = IamRole::crd();
    finish(
        &mut role,
        vec![
            immutable_optional("name"),
            immutable_required("path"),
            (
                "has(self.assumeRolePolicy) || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0) || has(self.credentials)".into(),
                crate::trust::eks::REQUIRE_ONE.into(),
            ),
            (
                "!has(self.inlinePolicies) || !has(self.inlinePoliciesFrom) || self.inlinePoliciesFrom.all(k, !(k in self.inlinePolicies))".into(),
                INLINE_POLICY_IN_BOTH.into(),
            ),
        ],
    );

    add_rules(
        &mut role,
        &["spec", "credentials"],
        &[(
            "!has(self.duration) || (duration(self.duration) >= duration('15m') && duration(self.duration) <= duration('12h'))",
            "spec.credentials.duration must be between 15m and 12h",
            ".duration",
        )],
    );

    let mut binding = InstanceProfileBinding::crd();
    finish(
        &mut binding,
        vec![
            immutable_optional("instanceProfileName"),
            immutable_required("path"),
            (
                "has(self.roleRef) != has(self.roleName)".into(),
                BINDING_ROLE_ONE_OF.into(),
            ),
            (
                "(has(self.instanceIds) && size(self.instanceIds) > 0) || has(self.instanceSelector)".into(),
                BINDING_INSTANCES_REQUIRED.into(),
            ),
        ],
    );

    let mut key = IamUserAccessKey::crd();
    finish(
        &mut key,
        vec![immutable_required("userName"), immutable_required("path")],
    );
    add_rules(&mut key, &["spec", "rotation"], ROTATION_RULES);

    let mut scope = IamScope::crd();
    finish(&mut scope, vec![]);

    let mut group = IamGroup::crd();
    finish(
        &mut group,
        vec![immutable_optional("groupName"), immutable_required("path")],
    );

    vec![policy, role, binding, key, scope, group]
}

/// The rotation bounds, as `schedule::schedule` checks them too (CEL durations are
/// Go durations; an overflowing one is an evaluation error, so it is refused too).
const ROTATION_RULES: &[(&str, &str, &str)] = &[
    (
        "duration(self.every) >= duration('1h') && duration(self.every) <= duration('87600h')",
        "spec.rotation.every must be between 1h and 87600h (10 years)",
        ".every",
    ),
    (
        "!has(self.gracePeriod) || duration(self.gracePeriod) < duration(self.every)",
        "spec.rotation.gracePeriod must be shorter than spec.rotation.every",
        ".gracePeriod",
    ),
    (
        // The default grace period is 1h, or half of `every` below 2h (CEL durations
        // cannot be divided, so that half is compared as deactivatedFor twice).
        "!has(self.deactivatedFor) || (has(self.gracePeriod) ? duration(self.gracePeriod) + duration(self.deactivatedFor) < duration(self.every) : (duration(self.every) >= duration('2h') ? duration('1h') + duration(self.deactivatedFor) < duration(self.every) : duration(self.deactivatedFor) + duration(self.deactivatedFor) < duration(self.every)))",
        "spec.rotation.deactivatedFor: gracePeriod + deactivatedFor must be shorter than spec.rotation.every",
        ".deactivatedFor",
    ),
];

/// Add CEL rules to the object schema at `path` (below the version's root schema).
fn add_rules(crd: &mut CustomResourceDefinition, path: &[&str], rules: &[(&str, &str, &str)]) {
    let schema = crd.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .expect("derived CRDs carry a schema");
    let mut value = serde_json::to_value(&*schema).expect("schema serializes");
    let mut at = &mut value;
    for p in path {
        at = &mut at["properties"][*p];
    }
    at["x-kubernetes-validations"] = Value::Array(
        rules
            .iter()
            .map(|(rule, message, field)| json!({"rule": rule, "message": message, "fieldPath": field}))
            .collect(),
    );
    *schema = serde_json::from_value(value).expect("patched schema deserializes");
}

/// Patch one CRD's schema: spec-level CEL rules, reserved tag keys, list-map conditions.
fn finish(crd: &mut CustomResourceDefinition, spec_rules: Vec<(String, String)>) {
    let version = &mut crd.spec.versions[0];
    let schema = version
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .expect("derived CRDs carry a schema");
    let mut value = serde_json::to_value(&*schema).expect("schema serializes");

    let spec = &mut value["properties"]["spec"];
    // Transition rules (oldSelf) on spec only run on updates; creation is unaffected.
    let rules: Vec<Value> = spec_rules
        .into_iter()
        .map(|(rule, message)| {
            let field_path = message.split_whitespace().next().unwrap_or("spec");
            let mut r = json!({ "rule": rule, "message": message });
            // Point kubectl at the field for the one-field rules.
            if field_path.starts_with("spec.") && !message.starts_with("exactly") {
                r["fieldPath"] = json!(format!(".{}", &field_path["spec.".len()..]));
            }
            r
        })
        .collect();
    if !rules.is_empty() {
        spec["x-kubernetes-validations"] = Value::Array(rules);
    }
    if spec["properties"].get("tags").is_some() {
        spec["properties"]["tags"]["x-kubernetes-validations"] =
            json!([{ "rule": RESERVED_TAGS.0, "message": RESERVED_TAGS.1 }]);
    }

    let conditions = &mut value["properties"]["status"]["properties"]["conditions"];
    conditions["x-kubernetes-list-type"] = json!("map");
    conditions["x-kubernetes-list-map-keys"] = json!(["type"]);
    if let Some(instances) = value["properties"]["status"]["properties"].get_mut("instances") {
        instances["x-kubernetes-list-type"] = json!("map");
        instances["x-kubernetes-list-map-keys"] = json!(["instanceId"]);
    }

    *schema = serde_json::from_value(value).expect("patched schema deserializes");
}

/// The CRDs as one multi-document YAML stream, as `iamwright crds` prints it.
pub fn to_yaml() -> String {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("CRD serializes"));
    }
    out
}

/// The CRDs as the Helm chart's template: behind `crds.install`, and kept on `helm
/// uninstall` (deleting a CRD would delete every object of it, and so, through the
/// finalizers, the AWS resources).
pub fn to_helm_template() -> String {
    let mut out = String::from(
        "# Generated by `hack/generate.sh` (iamwright crds --helm); do not edit.\n{{- if .Values.crds.install }}\n",
    );
    for mut crd in all() {
        crd.metadata.annotations = Some(
            [("helm.sh/resource-policy".to_string(), "keep".to_string())]
                .into_iter()
                .collect(),
        );
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("CRD serializes"));
    }
    out.push_str("{{- end }}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_generated_ones() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == to_yaml(),
            "crds/crds.yaml is stale: regenerate it with `hack/generate.sh`"
        );
    }

    #[test]
    fn chart_crds_match_the_generated_ones() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/iamwright/templates/crds.yaml"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == to_helm_template(),
            "charts/iamwright/templates/crds.yaml is stale: regenerate it with `hack/generate.sh`"
        );
    }

    #[test]
    fn documents_are_structural_free_form_objects() {
        let yaml = to_yaml();
        assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));
        for crd in all() {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let conditions =
                &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
            assert_eq!(conditions["x-kubernetes-list-type"], "map");
            assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
        }
    }
}
