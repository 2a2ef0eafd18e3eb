//! Argo CD syncing iamwright objects from git: an Application per test (the README's,
//! automated sync with prune and self-heal), the chart's health checks in argocd-cm.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::git::{Repo, examples};
use crate::harness::*;
use crate::table::{application, expected, sync_wave_annotation};

const SYNC: Duration = Duration::from_secs(180);

/// An Argo CD Application of the test's namespace, deleted when dropped.
pub struct App {
    pub name: String,
}

impl App {
    pub fn create(ns: &str, repo: &Repo) -> Self {
        Self::create_with(ns, repo, |_| {})
    }

    /// The README's Application, changed by `edit` first (for the variants users may run).
    pub fn create_with(ns: &str, repo: &Repo, edit: impl FnOnce(&mut Value)) -> Self {
        let mut app = application(ns, &repo.url(), "iam", ns);
        edit(&mut app);
        let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&app.to_string()));
        assert!(ok, "{out}{err}");
        Self {
            name: ns.to_string(),
        }
    }

    pub fn get(&self) -> Value {
        let (ok, out, err) = kubectl(
            &[
                "get",
                "application",
                "-n",
                "argocd",
                &self.name,
                "-o",
                "json",
            ],
            None,
        );
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// Wait until the app is synced to `revision` with health `health`; returns the app.
    pub async fn wait(&self, revision: &str, health: &str) -> Value {
        let what = format!("{} synced to {revision} and {health}", self.name);
        let mut last = Value::Null;
        let got = tokio::time::timeout(SYNC, async {
            loop {
                let app = self.get();
                let s = &app["status"];
                if s["sync"]["status"] == "Synced"
                    && s["sync"]["revision"] == revision
                    && s["health"]["status"] == health
                    && s["operationState"]["phase"] != "Running"
                {
                    return app;
                }
                last = app;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        got.unwrap_or_else(|_| {
            panic!(
                "timed out after {SYNC:?} waiting for {what}; status:\n{:#}",
                last["status"]
            )
        })
    }
}

impl Drop for App {
    fn drop(&mut self) {
        kubectl(
            &[
                "delete",
                "application",
                "-n",
                "argocd",
                &self.name,
                "--wait=false",
            ],
            None,
        );
    }
}

/// The app's resource of `kind`/`name` from `status.resources`.
pub fn resource<'a>(app: &'a Value, kind: &str, name: &str) -> &'a Value {
    app["status"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:#}", app["status"]["resources"]))
}

/// Sync operations Argo CD ran (one per applied revision; a diff it had to correct
/// would add one).
pub fn syncs(app: &Value) -> usize {
    app["status"]["history"].as_array().map_or(0, |h| h.len())
}

/// Every resource of the app Synced, and every iamwright one with health `health`.
fn assert_all(app: &Value, health: &str) {
    for r in app["status"]["resources"].as_array().unwrap() {
        assert_eq!(r["status"], "Synced", "{r}");
        if r["group"] == "iamwright.dev" {
            assert_eq!(r["health"]["status"], health, "{r}");
        }
    }
}

fn policy_yaml(name: &str, effect: &str, actions: &[&str], extra: &str) -> String {
    format!(
        "apiVersion: iamwright.dev/v1alpha1\nkind: IamPolicy\nmetadata:\n  name: {name}\nspec:\n{extra}  document:\n    Version: \"2012-10-17\"\n    Statement:\n      - Effect: {effect}\n        Action: {actions:?}\n        Resource: \"*\"\n"
    )
}

async fn policy_versions(arn: &str) -> Vec<(String, bool)> {
    iam()
        .await
        .list_policy_versions()
        .policy_arn(arn)
        .send()
        .await
        .expect("list policy versions")
        .versions()
        .iter()
        .map(|v| {
            (
                v.version_id().unwrap_or_default().to_string(),
                v.is_default_version(),
            )
        })
        .collect()
}

async fn policy_arn(aws_name: &str) -> Option<String> {
    iam()
        .await
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap()
        .policies()
        .iter()
        .find(|p| p.policy_name() == Some(aws_name))
        .and_then(|p| p.arn().map(str::to_string))
}

/// The README's examples synced from git: every object Healthy and Synced, the AWS
/// objects in moto; then no diff noise: two more resyncs and an operator restart leave
/// the app Synced and Healthy with no sync operation beyond the first.
#[tokio::test]
async fn argocd_syncs_the_examples_and_they_stay_synced() {
    examples_stay_synced("argo-examples", |_| {}).await;
}

/// The same with Argo CD's default client-side apply (no `ServerSideApply=true`): the
/// API server's defaults and the operator's finalizer and status are no diff either.
#[tokio::test]
async fn argocd_client_side_apply_also_stays_synced() {
    examples_stay_synced("argo-csa", |app| {
        let opts = app["spec"]["syncPolicy"]["syncOptions"]
            .as_array_mut()
            .unwrap();
        opts.retain(|o| o != "ServerSideApply=true");
    })
    .await;
}

async fn examples_stay_synced(prefix: &str, edit: impl FnOnce(&mut Value)) {
    let ns = Namespace::new(prefix).await;
    let mut op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let files = examples(&ns.name);
    let mut commit: Vec<(String, Option<&str>)> = files
        .iter()
        .map(|(f, t)| (format!("iam/{f}"), Some(t.as_str())))
        .collect();
    commit.sort();
    let refs: Vec<(&str, Option<&str>)> = commit.iter().map(|(f, t)| (f.as_str(), *t)).collect();
    let t0 = Instant::now();
    let rev = repo.commit("the README's examples", &refs);
    let app = App::create_with(&ns.name, &repo, edit);
    let (healthy, _) = expected("ready");
    let synced = app.wait(&rev, &healthy).await;
    println!(
        "gitops: {prefix}: examples from `git commit` to Synced+{healthy}: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    assert_all(&synced, &healthy);
    for (kind, name) in [
        ("IamPolicy", "s3-reader"),
        ("IamPolicy", "app-logs"),
        ("IamRole", "ec2-app"),
        ("InstanceProfileBinding", "web-instances"),
        ("IamPolicy", "ci-artifacts"),
        ("IamUserAccessKey", "ci-uploader"),
        ("IamPolicy", "vendor-log-reader"),
        ("IamGroup", "admin-users"),
        ("IamUserAccessKey", "alice"),
    ] {
        assert_eq!(resource(&synced, kind, name)["health"]["status"], healthy);
    }
    // The AWS objects, in moto.
    let iam = iam().await;
    for p in ["s3-reader", "app-logs", "ci-artifacts", "vendor-log-reader"] {
        let n = format!("{}-{p}", ns.name);
        assert!(policy_arn(&n).await.is_some(), "policy {n} in AWS");
    }
    let role = iam
        .get_role()
        .role_name(format!("{}-ec2-app", ns.name))
        .send()
        .await
        .expect("role in AWS");
    assert!(role.role().is_some());
    let keys = iam
        .list_access_keys()
        .user_name(format!("{}-ci-uploader", ns.name))
        .send()
        .await
        .expect("user in AWS");
    assert_eq!(keys.access_key_metadata().len(), 1);
    iam.get_instance_profile()
        .instance_profile_name(format!("{}-web-instances", ns.name))
        .send()
        .await
        .expect("instance profile in AWS");
    // The console walk-through: the group with the user in it, who can sign in.
    let group = iam
        .get_group()
        .group_name(format!("{}-AdminUsers", ns.name))
        .send()
        .await
        .expect("group in AWS");
    let members: Vec<&str> = group.users().iter().map(|u| u.user_name()).collect();
    assert_eq!(members, [format!("{}-alice", ns.name)]);
    iam.get_login_profile()
        .user_name(format!("{}-alice", ns.name))
        .send()
        .await
        .expect("alice's console sign-in in AWS");
    assert_eq!(syncs(&synced), 1);
    // The key's Secret is the operator's, not the app's: untracked, so never pruned.
    let tracked = |a: &Value| {
        a["status"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "Secret")
    };
    assert!(!tracked(&synced), "{:#}", synced["status"]["resources"]);

    // Stays Synced: two resyncs of the app, an operator restart, two more.
    let reconciled = |a: &Value| a["status"]["reconciledAt"].as_str().map(str::to_string);
    let mut seen = reconciled(&synced);
    for round in 0..4 {
        if round == 2 {
            op.stop();
            op = Operator::start(&ns.name, &[]).await;
        }
        let now = eventually(Duration::from_secs(60), "an Argo CD resync", || {
            let before = seen.clone();
            let a = app.get();
            async move { (reconciled(&a) != before).then_some(a) }
        })
        .await;
        seen = reconciled(&now);
        assert_eq!(now["status"]["sync"]["status"], "Synced", "round {round}");
        assert_eq!(now["status"]["health"]["status"], healthy, "round {round}");
        assert_all(&now, &healthy);
        assert_eq!(
            syncs(&now),
            1,
            "no sync beyond the first: {:#}",
            now["status"]
        );
        assert!(!tracked(&now));
    }
    let secret: Option<k8s_openapi::api::core::v1::Secret> =
        get(&ns.name, "ci-aws-credentials").await;
    assert!(secret.is_some(), "the key's Secret survives the syncs");
    drop(op);
}

/// A commit that changes a policy document: one new default version in AWS, the app
/// Synced and Healthy on the new revision.
#[tokio::test]
async fn argocd_a_changed_document_is_one_new_default_version() {
    let ns = Namespace::new("argo-change").await;
    let op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let app = App::create(&ns.name, &repo);
    let (healthy, _) = expected("ready");
    let v1 = policy_yaml("reader", "Allow", &["s3:GetObject"], "");
    let rev = repo.commit("reader", &[("iam/policy.yaml", Some(&v1))]);
    app.wait(&rev, &healthy).await;
    let arn = policy_arn(&format!("{}-reader", ns.name)).await.unwrap();
    assert_eq!(policy_versions(&arn).await, vec![("v1".to_string(), true)]);

    let v2 = policy_yaml("reader", "Allow", &["s3:GetObject", "s3:ListBucket"], "");
    let t0 = Instant::now();
    let rev2 = repo.commit("reader may list", &[("iam/policy.yaml", Some(&v2))]);
    let synced = app.wait(&rev2, &healthy).await;
    println!(
        "gitops: a changed document from `git commit` to Synced+{healthy}: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let mut versions = policy_versions(&arn).await;
    versions.sort();
    assert_eq!(
        versions,
        vec![("v1".to_string(), false), ("v2".to_string(), true)]
    );
    let doc = iam()
        .await
        .get_policy_version()
        .policy_arn(&arn)
        .version_id("v2")
        .send()
        .await
        .unwrap();
    let text = urlencoding::decode(doc.policy_version().unwrap().document().unwrap())
        .unwrap()
        .into_owned();
    assert!(text.contains("s3:ListBucket"), "{text}");
    assert_eq!(syncs(&synced), 2);
    drop(op);
}

/// A broken document committed: the app Degraded with the field-naming message from
/// the object's conditions and no AWS write; the next commit fixes it.
#[tokio::test]
async fn argocd_a_broken_document_degrades_the_app_until_fixed() {
    let ns = Namespace::new("argo-broken").await;
    let op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let app = App::create(&ns.name, &repo);
    let (healthy, _) = expected("ready");
    let (degraded, _) = expected("stalled");
    let good = policy_yaml("reader", "Allow", &["s3:GetObject"], "");
    let rev = repo.commit("reader", &[("iam/policy.yaml", Some(&good))]);
    app.wait(&rev, &healthy).await;
    let arn = policy_arn(&format!("{}-reader", ns.name)).await.unwrap();
    let writes = op.aws_writes().await;

    let broken = policy_yaml("reader", "allow", &["s3:GetObject", "s3:PutObject"], "");
    let rev2 = repo.commit("lowercase effect", &[("iam/policy.yaml", Some(&broken))]);
    let bad = app.wait(&rev2, &degraded).await;
    let msg = resource(&bad, "IamPolicy", "reader")["health"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("InvalidPolicyDocument")
            && msg.contains("Statement[0].Effect")
            && msg.contains("\"allow\""),
        "{msg}"
    );
    assert_eq!(
        op.aws_writes().await,
        writes,
        "no AWS write for the broken spec"
    );
    assert_eq!(policy_versions(&arn).await, vec![("v1".to_string(), true)]);

    let fixed = policy_yaml("reader", "Allow", &["s3:GetObject", "s3:PutObject"], "");
    let rev3 = repo.commit("fix the effect", &[("iam/policy.yaml", Some(&fixed))]);
    app.wait(&rev3, &healthy).await;
    let mut versions = policy_versions(&arn).await;
    versions.sort();
    assert_eq!(
        versions,
        vec![("v1".to_string(), false), ("v2".to_string(), true)]
    );
    drop(op);
}

/// A policy, a role that references it and an access key whose user gets it, in one
/// commit with the README's sync waves (`examples/gitops/sync-waves.yaml`): they
/// converge in one sync, without a retry.
#[tokio::test]
async fn argocd_policy_role_and_key_in_one_commit_converge() {
    one_commit_converges("argo-order", true).await;
}

/// The same without sync waves (Argo CD applies them together): references wait, so
/// the waves only make the order visible, as the README says.
#[tokio::test]
async fn argocd_one_commit_converges_without_sync_waves_too() {
    one_commit_converges("argo-nowave", false).await;
}

async fn one_commit_converges(prefix: &str, waves: bool) {
    let ns = Namespace::new(prefix).await;
    let op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let app = App::create(&ns.name, &repo);
    let (healthy, _) = expected("ready");
    let wave = |kind: &str| {
        if waves {
            sync_wave_annotation(kind)
        } else {
            String::new()
        }
    };
    let policy = policy_yaml("deploy", "Allow", &["s3:PutObject"], "").replace(
        "  name: deploy\n",
        &format!("  name: deploy\n{}", wave("IamPolicy")),
    );
    let role = format!(
        "apiVersion: iamwright.dev/v1alpha1\nkind: IamRole\nmetadata:\n  name: deployer\n{}spec:\n  assumeRolePolicy:\n    Version: \"2012-10-17\"\n    Statement:\n      - Effect: Allow\n        Principal: {{Service: ec2.amazonaws.com}}\n        Action: sts:AssumeRole\n  policyRefs: [{{name: deploy}}]\n",
        wave("IamRole")
    );
    let user = format!("{}-deployer", ns.name);
    let key = format!(
        "apiVersion: iamwright.dev/v1alpha1\nkind: IamUserAccessKey\nmetadata:\n  name: deployer\n{}spec:\n  userName: {user}\n  policyRefs: [{{name: deploy}}]\n  secretName: deployer-aws\n",
        wave("IamUserAccessKey")
    );
    let rev = repo.commit(
        "policy, role and key together",
        &[
            ("iam/policy.yaml", Some(&policy)),
            ("iam/role.yaml", Some(&role)),
            ("iam/key.yaml", Some(&key)),
        ],
    );
    let synced = app.wait(&rev, &healthy).await;
    assert_all(&synced, &healthy);
    assert_eq!(synced["status"]["operationState"]["phase"], "Succeeded");
    assert_eq!(syncs(&synced), 1, "one sync");
    assert_eq!(
        synced["status"]["operationState"]["retryCount"]
            .as_i64()
            .unwrap_or(0),
        0,
        "no retry"
    );
    let arn = policy_arn(&format!("{}-deploy", ns.name)).await.unwrap();
    let iam = iam().await;
    let attached = iam
        .list_attached_role_policies()
        .role_name(format!("{}-deployer", ns.name))
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn())
            .collect::<Vec<_>>(),
        vec![arn.as_str()]
    );
    let keys = iam
        .list_access_keys()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(keys.access_key_metadata().len(), 1);
    let secret: Option<k8s_openapi::api::core::v1::Secret> = get(&ns.name, "deployer-aws").await;
    assert!(secret.is_some(), "the key's Secret");
    drop(op);
}

/// Removed from git with prune on: the default deletionPolicy deletes the AWS
/// resource, `Retain` keeps it.
#[tokio::test]
async fn argocd_prune_deletes_or_retains_as_documented() {
    let ns = Namespace::new("argo-prune").await;
    let op = Operator::start(&ns.name, &[]).await;
    let repo = Repo::new(&ns.name);
    let app = App::create(&ns.name, &repo);
    let (healthy, _) = expected("ready");
    let gone = policy_yaml("temporary", "Allow", &["s3:GetObject"], "");
    let kept = policy_yaml(
        "keeper",
        "Allow",
        &["s3:GetObject"],
        "  deletionPolicy: Retain\n",
    );
    let stays = policy_yaml("stays", "Allow", &["s3:GetObject"], "");
    let rev = repo.commit(
        "three policies",
        &[
            ("iam/temporary.yaml", Some(&gone)),
            ("iam/keeper.yaml", Some(&kept)),
            ("iam/stays.yaml", Some(&stays)),
        ],
    );
    app.wait(&rev, &healthy).await;
    let temporary = format!("{}-temporary", ns.name);
    let keeper = format!("{}-keeper", ns.name);
    assert!(policy_arn(&temporary).await.is_some());
    assert!(policy_arn(&keeper).await.is_some());

    let rev2 = repo.commit(
        "remove both",
        &[("iam/temporary.yaml", None), ("iam/keeper.yaml", None)],
    );
    let synced = app.wait(&rev2, &healthy).await;
    let left: Vec<&Value> = synced["status"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(left, vec!["stays"]);
    eventually(Duration::from_secs(60), "the objects deleted", || async {
        let a: Option<iamwright::api::IamPolicy> = get(&ns.name, "temporary").await;
        let b: Option<iamwright::api::IamPolicy> = get(&ns.name, "keeper").await;
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    assert_eq!(policy_arn(&temporary).await, None, "Delete: gone from AWS");
    assert!(policy_arn(&keeper).await.is_some(), "Retain: still in AWS");
    drop(op);
}

/// The health users see for the rows of the documented table that a steady object can
/// show: an observed role in sync (Healthy), an observed role that drifted (Degraded,
/// the fields named), a role waiting for a policy not in git (Progressing).
#[tokio::test]
async fn argocd_health_follows_the_documented_table() {
    let ns = Namespace::new("argo-health").await;
    let op = Operator::start(&ns.name, &["--allow-adoption"]).await;
    let iam = iam().await;
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    for (aws, description) in [("same", "web servers"), ("drifted", "hand made")] {
        iam.create_role()
            .role_name(format!("{}-{aws}", ns.name))
            .assume_role_policy_document(trust.to_string())
            .description(description)
            .send()
            .await
            .unwrap();
    }
    let observe = |name: &str| {
        format!(
            "apiVersion: iamwright.dev/v1alpha1\nkind: IamRole\nmetadata:\n  name: {name}\nspec:\n  managementPolicy: Observe\n  name: {}-{name}\n  description: web servers\n  assumeRolePolicy: {trust}\n",
            ns.name
        )
    };
    let waiting = "apiVersion: iamwright.dev/v1alpha1\nkind: IamRole\nmetadata:\n  name: waiting\nspec:\n  assumeRolePolicy: {\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Principal\": {\"Service\": \"ec2.amazonaws.com\"}, \"Action\": \"sts:AssumeRole\"}]}\n  policyRefs: [{name: not-in-git}]\n";
    let repo = Repo::new(&ns.name);
    let rev = repo.commit(
        "observe two roles, one role waiting",
        &[
            ("iam/same.yaml", Some(&observe("same"))),
            ("iam/drifted.yaml", Some(&observe("drifted"))),
            ("iam/waiting.yaml", Some(waiting)),
        ],
    );
    let app = App::create(&ns.name, &repo);
    let (in_sync, _) = expected("observed-in-sync");
    let (drifted, _) = expected("observed-drifted");
    let (progressing, _) = expected("progressing");
    let seen = eventually(Duration::from_secs(120), "the three healths", || {
        let a = app.get();
        let rev = rev.clone();
        let want = [
            ("same", in_sync.clone()),
            ("drifted", drifted.clone()),
            ("waiting", progressing.clone()),
        ];
        async move {
            let resources = a["status"]["resources"].as_array()?;
            // The waiting role shows no status for its first seconds (the operator
            // gives a reference on its way time to arrive), then DependencyNotReady.
            let ok = a["status"]["sync"]["revision"] == rev.as_str()
                && want.iter().all(|(n, h)| {
                    resources
                        .iter()
                        .any(|r| r["name"] == *n && r["health"]["status"] == h.as_str())
                })
                && resources.iter().any(|r| {
                    r["name"] == "waiting"
                        && r["health"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("DependencyNotReady"))
                });
            ok.then_some(a)
        }
    })
    .await;
    let msg = resource(&seen, "IamRole", "drifted")["health"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("Drifted") && msg.contains("spec.description"),
        "{msg}"
    );
    let msg = resource(&seen, "IamRole", "waiting")["health"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("DependencyNotReady") && msg.contains("not-in-git"),
        "{msg}"
    );
    // The app's health is the worst of its resources'.
    assert_eq!(seen["status"]["health"]["status"], drifted);
    // Observe never writes, not even under Argo CD's syncs.
    assert_eq!(
        iam.get_role()
            .role_name(format!("{}-drifted", ns.name))
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .description(),
        Some("hand made")
    );
    drop(op);
}
