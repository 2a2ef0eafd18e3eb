//! The files users copy, read by the tests as they are: the Argo CD Application and the
//! Flux objects (`examples/gitops/`), with only names, URL and namespaces replaced, and
//! the health table (condition -> Argo CD health -> kstatus) the tests expect.

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
