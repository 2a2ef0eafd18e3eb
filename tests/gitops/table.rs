//! The files users copy, read by the tests as they are: the Argo CD Applications and the
//! Flux objects (`examples/gitops/`), with only names, URL, namespaces (and the bed's
//! chart values) replaced, the sync waves, and the health table (condition -> Argo CD
//! health -> kstatus) the tests expect.

use serde::Deserialize;
use serde_json::Value;

use crate::harness::repo_root;

#[derive(Deserialize)]
pub struct Row {
    pub case: String,
    pub argocd: String,
    pub kstatus: String,
}

/// The expected (Argo CD health, kstatus status) of a case of `examples/gitops/health.yaml`.
pub fn expected(case: &str) -> (String, String) {
    let text = std::fs::read_to_string(repo_root().join("examples/gitops/health.yaml")).unwrap();
    let rows: Vec<Row> = serde_yaml::from_str(&text).unwrap();
    let row = rows
        .into_iter()
        .find(|r| r.case == case)
        .unwrap_or_else(|| panic!("no case {case} in examples/gitops/health.yaml"));
    (row.argocd, row.kstatus)
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("examples/gitops").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(Value::deserialize(d).unwrap()).unwrap())
        .collect()
}

/// The README's Application for `repo_url`, syncing `path` into `namespace`, named `name`.
pub fn application(name: &str, repo_url: &str, path: &str, namespace: &str) -> Value {
    let mut app = documents("argocd-application.yaml").remove(0);
    app["metadata"]["name"] = name.into();
    app["spec"]["source"]["repoURL"] = repo_url.into();
    app["spec"]["source"]["path"] = path.into();
    app["spec"]["destination"]["namespace"] = namespace.into();
    app
}

/// The README's one-app Application (`argocd-application-with-chart.yaml`), named
/// `name`, with both sources at `repo_url`: the chart at `chart_path` with helm values
/// `values` (replacing the file's), the objects at `path`; the chart into `namespace`.
#[allow(dead_code)] // used by tests/node (the one-app test)
pub fn application_with_chart(
    name: &str,
    repo_url: &str,
    chart_path: &str,
    values: Value,
    path: &str,
    namespace: &str,
) -> Value {
    let mut app = documents("argocd-application-with-chart.yaml").remove(0);
    app["metadata"]["name"] = name.into();
    let sources = app["spec"]["sources"].as_array_mut().unwrap();
    assert_eq!(sources.len(), 2, "the chart and the objects");
    sources[0]["repoURL"] = repo_url.into();
    sources[0]["path"] = chart_path.into();
    sources[0]["helm"]["valuesObject"] = values;
    sources[1]["repoURL"] = repo_url.into();
    sources[1]["path"] = path.into();
    app["spec"]["destination"]["namespace"] = namespace.into();
    app
}

#[derive(Deserialize)]
struct Wave {
    kind: String,
    wave: i32,
}

/// The sync wave `examples/gitops/sync-waves.yaml` gives `kind`.
pub fn sync_wave(kind: &str) -> i32 {
    let text =
        std::fs::read_to_string(repo_root().join("examples/gitops/sync-waves.yaml")).unwrap();
    let waves: Vec<Wave> = serde_yaml::from_str(&text).unwrap();
    waves
        .into_iter()
        .find(|w| w.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in examples/gitops/sync-waves.yaml"))
        .wave
}

/// The annotation that puts an object of `kind` in its wave, as YAML lines under
/// `metadata:`.
pub fn sync_wave_annotation(kind: &str) -> String {
    format!(
        "  annotations:\n    argocd.argoproj.io/sync-wave: \"{}\"\n",
        sync_wave(kind)
    )
}

/// The README's GitRepository and Kustomization, named `name` (in flux-system), for
/// `repo_url`, applying `path` into `namespace`; `interval` shortens the git poll.
pub fn flux_objects(name: &str, repo_url: &str, path: &str, namespace: &str) -> Vec<Value> {
    let mut docs = documents("flux-kustomization.yaml");
    for d in docs.iter_mut() {
        d["metadata"]["name"] = name.into();
        match d["kind"].as_str() {
            Some("GitRepository") => {
                d["spec"]["url"] = repo_url.into();
                d["spec"]["interval"] = "5s".into();
            }
            Some("Kustomization") => {
                d["spec"]["sourceRef"]["name"] = name.into();
                d["spec"]["path"] = path.into();
                d["spec"]["targetNamespace"] = namespace.into();
                d["spec"]["interval"] = "10s".into();
                d["spec"]["timeout"] = "60s".into();
            }
            _ => {}
        }
    }
    docs
}
