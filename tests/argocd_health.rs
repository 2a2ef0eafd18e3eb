//! The Argo CD health script, run in a real Lua 5.1 interpreter without the `string`
//! library (Argo CD withholds it), on sample objects of every state.

use mlua::{Lua, LuaSerdeExt, Table};
use serde::Deserialize;
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../charts/iamwright/argocd/health.lua");
const KINDS: [&str; 5] = [
    "IamPolicy",
    "IamRole",
    "InstanceProfileBinding",
    "IamUserAccessKey",
    "IamGroup",
];

fn health(obj: Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals().set("string", mlua::Nil).unwrap();
    lua.globals()
        .set("obj", lua.to_value(&obj).unwrap())
        .unwrap();
    let hs: Table = lua.load(SCRIPT).eval().expect("script runs");
    (hs.get("status").unwrap(), hs.get("message").unwrap())
}

fn object(kind: &str, generation: i64, status: Option<Value>) -> Value {
    let mut o = json!({"apiVersion": "iamwright.dev/v1alpha1", "kind": kind,
                       "metadata": {"name": "x", "namespace": "ns", "generation": generation}});
    if let Some(s) = status {
        o["status"] = s;
    }
    o
}

fn cond(t: &str, s: &str, reason: &str, message: &str) -> Value {
    json!({"type": t, "status": s, "reason": reason, "message": message, "observedGeneration": 2,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[test]
fn every_state_maps_to_the_right_health() {
    for kind in KINDS {
        assert_eq!(
            health(object(kind, 1, None)).0,
            "Progressing",
            "{kind}: no status"
        );

        let ready = json!({"observedGeneration": 2, "conditions": [
            cond("Ready", "True", "Synced", "in sync"), cond("Reconciling", "False", "Idle", ""),
            cond("Stalled", "False", "Progressing", "")]});
        assert_eq!(
            health(object(kind, 2, Some(ready.clone()))),
            ("Healthy".into(), "in sync".into())
        );
        // Ready for an older generation: the new spec is not applied yet.
        assert_eq!(
            health(object(kind, 3, Some(ready))).0,
            "Progressing",
            "{kind}: stale"
        );

        let reconciling = json!({"observedGeneration": 2, "conditions": [
            cond("Ready", "False", "DependencyNotReady", "waiting for IamPolicy a"),
            cond("Reconciling", "True", "DependencyNotReady", "waiting for IamPolicy a"),
            cond("Stalled", "False", "Progressing", "")]});
        let (status, message) = health(object(kind, 2, Some(reconciling)));
        assert_eq!(status, "Progressing");
        assert_eq!(message, "DependencyNotReady: waiting for IamPolicy a");

        let stalled = json!({"observedGeneration": 2, "conditions": [
            cond("Ready", "False", "InvalidPolicyDocument", "spec.document.Statement[0].Effect: bad"),
            cond("Reconciling", "False", "Idle", ""),
            cond("Stalled", "True", "InvalidPolicyDocument", "spec.document.Statement[0].Effect: bad")]});
        assert_eq!(
            health(object(kind, 2, Some(stalled))),
            (
                "Degraded".into(),
                "InvalidPolicyDocument: spec.document.Statement[0].Effect: bad".into()
            )
        );
    }
}

/// `ActionsRecognized=False` (an action not in the shipped catalog) is a warning, not a
/// failure: the object is applied, and AWS may know actions newer than the catalog.
#[test]
fn an_unrecognized_action_is_not_degraded() {
    for kind in ["IamPolicy", "IamRole"] {
        let ready = json!({"observedGeneration": 2, "conditions": [
            cond("Ready", "True", "Synced", "in sync"), cond("Reconciling", "False", "Idle", ""),
            cond("Stalled", "False", "Progressing", ""),
            cond("ActionsRecognized", "False", "UnknownAction",
                 "spec.document.Statement[0].Action[1]: `s3:GetObjects`: unknown action")]});
        assert_eq!(
            health(object(kind, 2, Some(ready))),
            ("Healthy".into(), "in sync".into()),
            "{kind}"
        );
    }
}

#[test]
fn the_argocd_snippet_holds_the_script_for_every_kind() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/iamwright/argocd/argocd-cm.yaml"
    ))
    .unwrap();
    let cm: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for kind in KINDS {
        let key = format!("resource.customizations.health.iamwright.dev_{kind}");
        assert_eq!(
            cm["data"][key.as_str()].as_str(),
            Some(SCRIPT),
            "{key} differs from health.lua: run hack/generate.sh"
        );
    }
}

/// The README's GitOps section is generated from the files the gitops and node suites
/// use (the two Applications, the sync waves, the Flux objects, the health table and
/// this snippet).
#[test]
fn the_readme_gitops_section_is_generated_from_the_tested_files() {
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/hack/gen-gitops-readme.py"
        ))
        .arg("--check")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new kind without a health script would show as healthy at once in Argo CD (it
/// has no built-in check for it): every namespaced kind the CRDs define is listed.
#[test]
fn every_namespaced_kind_has_a_health_script() {
    for crd in iamwright::crds::all() {
        if crd.spec.scope != "Namespaced" {
            continue;
        }
        let kind = crd.spec.names.kind;
        assert!(
            KINDS.contains(&kind.as_str()),
            "{kind} has no Argo CD health script"
        );
    }
}

/// Flux's Kustomization waits with kstatus, which takes an object with no status yet
/// for Current: every kind the CRDs define has a health check expression in the
/// Kustomization the README shows (and the gitops suite applies).
#[test]
fn every_kind_has_a_flux_health_check() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gitops/flux-kustomization.yaml"
    ))
    .unwrap();
    let checked: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|doc| doc["kind"] == "Kustomization")
        .flat_map(|doc| {
            doc["spec"]["healthCheckExprs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["kind"].as_str().map(str::to_string))
        .collect();
    for crd in iamwright::crds::all() {
        let kind = crd.spec.names.kind;
        assert!(
            checked.contains(&kind),
            "{kind} has no healthCheckExprs entry in examples/gitops/flux-kustomization.yaml"
        );
    }
}
