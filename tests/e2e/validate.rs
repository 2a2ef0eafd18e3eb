//! `iamwright validate` and the cluster give one answer. Every object of the CLI's
//! fixtures (tests/fixtures/validate/good, bad and grammar) is checked by the CLI and
//! applied to the bed, with the operator running under the same flags the CLI is given:
//!
//! - the CLI reports a problem at field F ⇔ the API server refuses the object naming F
//!   (schema, CEL), or the operator stalls it with a condition whose message is the
//!   CLI's `F: message` (the typed field is the message's prefix) — and the operator
//!   made no AWS write for any of them;
//! - the CLI is clean ⇔ the API server admits the object and the operator brings it to
//!   Ready.
//!
//! So the test fails when either path changes its answer for one fixture. Each
//! directory runs in a namespace of its own (the AWS names are `<namespace>-<name>`),
//! so the three tests run beside each other and beside the rest of the suite.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde::Deserialize;
use serde_json::Value;

use crate::harness::*;

const T: Duration = Duration::from_secs(90);

/// One object of a fixture directory.
struct Fixture {
    kind: String,
    name: String,
    manifest: Value,
}

impl Fixture {
    /// `Kind/name`, as the CLI prints it.
    fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The iamwright objects of every file of `dir`, in file order.
fn fixtures(dir: &str) -> Vec<Fixture> {
    let root = repo_root().join("tests/fixtures/validate").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap();
            let ours = v["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("iamwright.dev/"));
            if !ours {
                continue; // a kind iamwright ignores (the CLI does too)
            }
            out.push(Fixture {
                kind: v["kind"].as_str().unwrap().to_string(),
                name: v["metadata"]["name"].as_str().unwrap().to_string(),
                manifest: v,
            });
        }
    }
    out
}

/// Why the bed cannot hold an object the CLI (and AWS) accept: moto's own validator is
/// stricter than AWS's documented grammar there (`grammar::MOTO_STRICTER`), so the
/// operator would report moto's refusal, which says nothing about the two validators.
fn moto_refuses(f: &Fixture) -> Option<&'static str> {
    let spec = f.manifest["spec"].to_string();
    crate::grammar::MOTO_STRICTER
        .iter()
        .find(|(fragment, _)| spec.contains(fragment))
        .map(|(_, why)| *why)
}

/// The CLI's problems for `dir` under `flags`, by `Kind/name`: (field, message).
fn cli(dir: &str, flags: &[&str]) -> BTreeMap<String, Vec<(String, String)>> {
    let out = Command::new(env!("CARGO_BIN_EXE_iamwright"))
        .current_dir(repo_root())
        .args(["validate", "-f", &format!("tests/fixtures/validate/{dir}")])
        .args(flags)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut problems: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in stdout.lines() {
        // file:Kind/name: field: message
        let (_, rest) = line.split_once(':').expect("file:");
        let (object, rest) = rest.split_once(": ").expect("object: ");
        let (field, message) = rest.split_once(": ").expect("field: message");
        problems
            .entry(object.to_string())
            .or_default()
            .push((field.to_string(), message.to_string()));
    }
    assert_eq!(
        out.status.code(),
        Some(if problems.is_empty() { 0 } else { 1 }),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    problems
}

/// The object's (generation, conditions by type: (status, reason, message)) once its
/// status reports its current generation.
async fn reported(
    ns: &str,
    f: &Fixture,
) -> Option<(Option<i64>, BTreeMap<String, (String, String, String)>)> {
    let gvk = GroupVersionKind::gvk("iamwright.dev", "v1alpha1", &f.kind);
    let api: Api<DynamicObject> =
        Api::namespaced_with(kube().await, ns, &ApiResource::from_gvk(&gvk));
    let obj = api.get_opt(&f.name).await.expect("get object")?;
    let status = obj.data.get("status")?;
    let generation = obj.metadata.generation;
    if status["observedGeneration"].as_i64() != generation {
        return None;
    }
    let conditions = status["conditions"]
        .as_array()?
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("type"), (s("status"), s("reason"), s("message")))
        })
        .collect();
    Some((generation, conditions))
}

/// The cluster's answer on an admitted object: Ok on Ready, Err(Ready's message) once
/// it is Stalled.
async fn operator_answer(ns: &str, f: &Fixture) -> Result<(), (String, String)> {
    eventually(
        T,
        &format!("{} answered by the operator", f.key()),
        || async {
            let (_, conditions) = reported(ns, f).await?;
            let (ready, reason, message) = conditions.get("Ready")?.clone();
            let stalled = conditions.get("Stalled").is_some_and(|c| c.0 == "True");
            match (ready.as_str(), stalled) {
                ("True", _) => Some(Ok(())),
                (_, true) => Some(Err((reason, message))),
                _ => None, // still progressing (e.g. waiting for a referenced policy)
            }
        },
    )
    .await
}

/// Check every object of `dir` through both paths, the operator and the CLI under
/// `flags`.
async fn both_paths_agree(dir: &str, flags: &[&str]) {
    let ns = Namespace::new(&format!("validate-{dir}")).await;
    let op = Operator::start(&ns.name, flags).await;
    let problems = cli(dir, flags);
    let all = fixtures(dir);
    let mut known: Vec<String> = all.iter().map(Fixture::key).collect();
    known.sort();
    for object in problems.keys() {
        assert!(
            known.contains(object),
            "the CLI names {object}, not an object of {dir}"
        );
    }
    let (mut refused, mut clean) = (vec![], vec![]);
    for f in all {
        if problems.contains_key(&f.key()) {
            refused.push(f);
        } else if let Some(why) = moto_refuses(&f) {
            // (An object the CLI refuses never reaches AWS: moto does not matter there.)
            eprintln!("{}: skipped, the bed cannot hold it: {why}", f.key());
        } else {
            clean.push(f);
        }
    }
    let mut disagree = vec![];

    // The CLI's problems first, each alone: the API server or the operator must refuse
    // it at the field the CLI names, and the operator writes nothing to AWS.
    for f in &refused {
        let cli_says = &problems[&f.key()];
        let (admitted, out, err) = kubectl(
            &["apply", "-n", &ns.name, "-f", "-"],
            Some(&f.manifest.to_string()),
        );
        if !admitted {
            if !cli_says
                .iter()
                .any(|(field, _)| err.contains(field.as_str()))
            {
                disagree.push(format!(
                    "{}: the API server refused it without naming the CLI's field {cli_says:?}: {err}",
                    f.key()
                ));
            }
            continue;
        }
        assert!(out.contains(&f.name), "{out}");
        match operator_answer(&ns.name, f).await {
            Ok(()) => disagree.push(format!(
                "{}: Ready in the cluster, the CLI reports {cli_says:?}",
                f.key()
            )),
            Err((reason, message)) => {
                let same = cli_says
                    .iter()
                    .any(|(field, m)| message == format!("{field}: {m}"));
                if !same {
                    disagree.push(format!(
                        "{}: the operator says {reason} {message:?}, the CLI {cli_says:?}",
                        f.key()
                    ));
                }
            }
        }
    }
    let writes = op.aws_writes().await;
    if writes != 0 {
        disagree.push(format!(
            "the operator made {writes} AWS writes for objects the CLI refuses"
        ));
    }

    // Then the clean ones, together (a role's policyRefs name a policy among them):
    // admitted, and Ready.
    if !clean.is_empty() {
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": clean.iter().map(|f| f.manifest.clone()).collect::<Vec<_>>(),
        });
        let (admitted, out, err) = kubectl(
            &["apply", "-n", &ns.name, "-f", "-"],
            Some(&list.to_string()),
        );
        if !admitted {
            disagree.push(format!(
                "the API server refused objects the CLI finds clean: {out}{err}"
            ));
        } else {
            for f in &clean {
                if let Err((reason, message)) = operator_answer(&ns.name, f).await {
                    disagree.push(format!(
                        "{}: clean for the CLI, the operator says {reason} {message:?}",
                        f.key()
                    ));
                }
            }
        }
    }
    assert!(
        disagree.is_empty(),
        "the CLI and the cluster disagree:\n{}",
        disagree.join("\n")
    );
    assert!(
        !refused.is_empty() || !clean.is_empty(),
        "no object of {dir} was compared"
    );
    eprintln!(
        "{dir}: {} refused by both, {} clean for both",
        refused.len(),
        clean.len()
    );
}

/// The flags tests/validate_cli.rs gives the CLI for each directory.
#[tokio::test]
async fn validate_good_fixtures_agree_with_the_cluster() {
    both_paths_agree(
        "good",
        &[
            "--deny-action",
            "iam:*",
            "--required-permissions-boundary=arn:aws:iam::123456789012:policy/boundary",
        ],
    )
    .await;
}

#[tokio::test]
async fn validate_bad_fixtures_agree_with_the_cluster() {
    both_paths_agree("bad", &["--deny-action", "iam:PassRole"]).await;
}

#[tokio::test]
async fn validate_grammar_fixtures_agree_with_the_cluster() {
    both_paths_agree("grammar", &[]).await;
}
