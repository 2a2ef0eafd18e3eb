//! Flux syncing iamwright objects from git: the README's GitRepository and Kustomization
//! (`wait: true`: Ready only when kstatus finds every object Current).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::git::{Repo, example_objects, examples};
use crate::harness::*;
use crate::table::{expected, flux_objects};

/// The README's Flux objects for the test's namespace, deleted when dropped.
struct Sync {
    name: String,
}

impl Sync {
    fn create(ns: &str, repo: &Repo) -> Self {
        for d in flux_objects(ns, &repo.url(), "./iam", ns) {
            let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&d.to_string()));
            assert!(ok, "{out}{err}");
        }
        Self {
            name: ns.to_string(),
        }
    }

    fn kustomization(&self) -> Value {
        let (ok, out, err) = kubectl(
            &[
                "get",
                "kustomization.kustomize.toolkit.fluxcd.io",
                "-n",
                "flux-system",
                &self.name,
                "-o",
                "json",
            ],
            None,
        );
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// Wait for the Kustomization's Ready condition at `revision` to be `status`;
    /// returns its message.
    async fn wait_ready(&self, revision: &str, status: &str) -> String {
        let timeout = Duration::from_secs(180);
        let deadline = Instant::now() + timeout;
        loop {
            let k = self.kustomization();
            let ready = k["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .cloned()
                .unwrap_or(Value::Null);
            let attempted = k["status"]["lastAttemptedRevision"]
                .as_str()
                .unwrap_or_default();
            if attempted.ends_with(revision) && ready["status"] == status {
                return ready["message"].as_str().unwrap_or_default().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for Ready={status} at {revision}: {:#}",
                k["status"]
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        for kind in [
            "kustomization.kustomize.toolkit.fluxcd.io",
            "gitrepository.source.toolkit.fluxcd.io",
        ] {
            kubectl(
                &[
                    "delete",
                    kind,
                    "-n",
                    "flux-system",
                    &self.name,
                    "--wait=false",
                ],
                None,
            );
        }
    }
}

/// The README's examples through a Kustomization with `wait: true`: Ready, which
/// kstatus grants only when every object is Current (Ready=True, nothing Reconciling),
/// and the AWS objects are in moto by then.
#[tokio::test]
async fn flux_applies_the_examples_and_waits_until_ready() {
    let ns = Namespace::new("flux-examples").await;
    let op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let files: Vec<(String, String)> = examples(&ns.name)
        .into_iter()
        .map(|(f, t)| (format!("iam/{f}"), t))
        .collect();
    let refs: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(f, t)| (f.as_str(), Some(t.as_str())))
        .collect();
    let t0 = Instant::now();
    let rev = repo.commit("the README's examples", &refs);
    let sync = Sync::create(&ns.name, &repo);
    let (_, current) = expected("ready");
    assert_eq!(current, "Current");
    let msg = sync.wait_ready(&rev, "True").await;
    println!(
        "gitops: examples from `git commit` to Flux Ready: {:.1}s ({msg})",
        t0.elapsed().as_secs_f64()
    );
    // wait: true (with the health checks of the README's Kustomization) means every
    // object was Ready for its generation when the Kustomization became Ready. Without
    // them kstatus takes an object the operator has not written a status to yet for
    // Current, and this fails.
    let (ok, out, err) = kubectl(&["get", "iamwright", "-n", &ns.name, "-o", "json"], None);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        example_objects(&files),
        "the examples' iamwright objects"
    );
    for o in items {
        let ready = o["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
        assert!(
            ready.is_some_and(|c| c["status"] == "True")
                && o["status"]["observedGeneration"] == o["metadata"]["generation"],
            "{} {} not Ready when Flux said Ready: {:#}",
            o["kind"],
            o["metadata"]["name"],
            o["status"]
        );
    }
    let iam = iam().await;
    iam.get_role()
        .role_name(format!("{}-ec2-app", ns.name))
        .send()
        .await
        .expect("role in AWS");
    let keys = iam
        .list_access_keys()
        .user_name(format!("{}-ci-uploader", ns.name))
        .send()
        .await
        .expect("user in AWS");
    assert_eq!(keys.access_key_metadata().len(), 1);
    drop(op);
}

/// A Stalled object (a broken document) fails the Kustomization's health check at once
/// (kstatus reads Stalled=True as Failed, so Flux does not wait out its timeout), naming
/// the object; the object's Stalled condition holds the field-naming message.
#[tokio::test]
async fn flux_a_stalled_object_fails_the_kustomization_with_our_message() {
    let ns = Namespace::new("flux-stalled").await;
    let op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let broken = "apiVersion: iamwright.dev/v1alpha1\nkind: IamPolicy\nmetadata:\n  name: broken\nspec:\n  document:\n    Version: \"2012-10-17\"\n    Statement:\n      - Effect: allow\n        Action: s3:GetObject\n        Resource: \"*\"\n";
    let rev = repo.commit("a broken document", &[("iam/broken.yaml", Some(broken))]);
    let sync = Sync::create(&ns.name, &repo);
    let (_, failed) = expected("stalled");
    let msg = sync.wait_ready(&rev, "False").await;
    // Flux names the object and its kstatus; the operator's message is the object's
    // Stalled condition, which kstatus read to decide.
    assert!(
        msg.contains("stalled resources")
            && msg.contains(&format!("IamPolicy/{}/broken status: '{failed}'", ns.name)),
        "{msg}"
    );
    let p: iamwright::api::IamPolicy = get(&ns.name, "broken").await.unwrap();
    let (stalled, reason, why, _) = condition(&p.status.unwrap().conditions, "Stalled").unwrap();
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "InvalidPolicyDocument")
    );
    assert!(
        why.contains("Statement[0].Effect") && why.contains("\"allow\""),
        "{why}"
    );
    assert_eq!(op.aws_writes().await, 0, "no AWS write for the broken spec");
}
