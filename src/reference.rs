//! The API reference (`docs/api.md`), rendered from the CRDs themselves, so that what
//! users read is what the API server enforces: every field with its type, default,
//! limits and the description written on the Rust type. `iamwright crds --reference`
//! prints it; a unit test fails when the committed file differs.

use serde_json::Value;

use crate::crds;

/// The whole reference, one section per kind.
pub fn markdown() -> String {
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the CRDs by `hack/generate.sh` (`iamwright crds --reference`); do not\n\
         edit. Each kind's page in this folder says how the operator behaves; this one lists\n\
         every field the API server accepts, with its type, default and limits. Behaviour\n\
         notes, conditions and reasons: [the README](../README.md) and the per-kind pages.\n",
    );
    for crd in crds::all() {
        let names = &crd.spec.names;
        let version = &crd.spec.versions[0];
        out.push_str(&format!("\n## {}\n\n", names.kind));
        out.push_str(&format!(
            "`{}/{}`, {}{}; `kubectl get {}`{}.\n",
            crd.spec.group,
            version.name,
            if crd.spec.scope == "Namespaced" {
                "namespaced"
            } else {
                "cluster-scoped"
            },
            names
                .categories
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| format!(" (categories: {})", c.join(", ")))
                .unwrap_or_default(),
            names.plural,
            names
                .short_names
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| format!(" or `{}`", s.join("`, `")))
                .unwrap_or_default(),
        ));
        let schema = serde_json::to_value(&version.schema).expect("schema serializes");
        let root = &schema["openAPIV3Schema"];
        if let Some(d) = root["description"].as_str() {
            out.push_str(&format!("\n{}\n", one_line(d)));
        }
        for part in ["spec", "status"] {
            let node = &root["properties"][part];
            if node.is_null() {
                continue;
            }
            out.push_str(&format!(
                "\n| `{part}` field | type | notes |\n|---|---|---|\n"
            ));
            rows(&mut out, part, node);
        }
        if let Some(rules) = root["properties"]["spec"]["x-kubernetes-validations"].as_array() {
            out.push_str("\nChecked at `kubectl apply` (CEL):\n");
            for r in rules {
                out.push_str(&format!(
                    "- {}\n",
                    one_line(r["message"].as_str().unwrap_or(""))
                ));
            }
        }
    }
    out
}

/// A table row per field below `node`, depth first, with dotted paths.
fn rows(out: &mut String, path: &str, node: &Value) {
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = node["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    for name in names {
        let field = &props[name];
        let here = format!("{path}.{name}");
        out.push_str(&format!(
            "| `{here}` | {} | {} |\n",
            type_of(field),
            notes(field, required.contains(&name.as_str()))
        ));
        rows(out, &here, field);
        if let Some(items) = field.get("items") {
            rows(out, &format!("{here}[]"), items);
        }
        if let Some(values) = field.get("additionalProperties").filter(|v| v.is_object()) {
            rows(out, &format!("{here}.<key>"), values);
        }
    }
}

fn type_of(field: &Value) -> String {
    if field["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return "object (free-form)".into();
    }
    match field["type"].as_str() {
        Some("array") => format!("list of {}", type_of(&field["items"])),
        Some("object") if field["additionalProperties"].is_object() => {
            format!("map of {}", type_of(&field["additionalProperties"]))
        }
        Some(t) => match field["format"].as_str() {
            Some(f) => format!("{t} ({f})"),
            None => t.to_string(),
        },
        None if field["anyOf"].is_array() || field["oneOf"].is_array() => "one of several".into(),
        None => "any".into(),
    }
}

fn notes(field: &Value, required: bool) -> String {
    let mut parts = Vec::new();
    if required {
        parts.push("**required**".to_string());
    }
    if let Some(d) = field["description"].as_str() {
        parts.push(one_line(d));
    }
    if !field["default"].is_null() {
        parts.push(format!("Default `{}`.", field["default"]));
    }
    if let Some(e) = field["enum"].as_array() {
        let values: Vec<String> = e.iter().map(|v| format!("`{}`", plain(v))).collect();
        parts.push(format!("One of {}.", values.join(", ")));
    }
    for (key, what) in [
        ("minLength", "At least {} characters"),
        ("maxLength", "At most {} characters"),
        ("minimum", "At least {}"),
        ("maximum", "At most {}"),
        ("minItems", "At least {} items"),
        ("maxItems", "At most {} items"),
        ("pattern", "Matches `{}`"),
    ] {
        if !field[key].is_null() {
            parts.push(format!("{}.", what.replace("{}", &plain(&field[key]))));
        }
    }
    if let Some(rules) = field["x-kubernetes-validations"].as_array() {
        for r in rules {
            parts.push(format!(
                "Checked: {}",
                one_line(r["message"].as_str().unwrap_or(""))
            ));
        }
    }
    parts.join(" ").replace('|', "\\|")
}

fn plain(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// A description on one table line (doc comments wrap at 90 columns).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_api_reference_matches_the_crds() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::markdown(),
            "docs/api.md is stale: regenerate it with `hack/generate.sh`"
        );
    }

    #[test]
    fn every_spec_field_of_every_kind_is_listed() {
        let md = super::markdown();
        for crd in crate::crds::all() {
            assert!(md.contains(&format!("\n## {}\n", crd.spec.names.kind)));
        }
        for field in [
            "`spec.document`",
            "`spec.assumeRolePolicy`",
            "`spec.rotation.every`",
            "`spec.instanceSelector",
            "`status.conditions[].reason`",
        ] {
            assert!(md.contains(field), "{field} missing from the reference");
        }
    }
}
