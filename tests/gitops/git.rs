//! A git repository per test: bare under the git server's root (what Argo CD and Flux
//! fetch over HTTP), written through a work tree of its own, one commit per change.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{env, repo_root};

pub struct Repo {
    pub name: String,
    work: PathBuf,
    _tmp: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=iamwright-e2e",
            "-c",
            "user.email=e2e@iamwright.dev",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git on PATH");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    /// An empty repository `name` with a `main` branch.
    pub fn new(name: &str) -> Self {
        let root = PathBuf::from(env("IAMWRIGHT_GIT_ROOT"));
        let bare = root.join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--quiet", "--bare"]);
        git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet"]);
        git(&work, &["checkout", "--quiet", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Self {
            name: name.to_string(),
            work,
            _tmp: tmp,
        }
    }

    /// Copies the directory `from` (recursively) to `to` in the work tree, for the next
    /// commit.
    #[allow(dead_code)] // used by tests/node (the one-app test)
    pub fn copy(&self, from: &Path, to: &str) {
        fn walk(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), &to.join(e.file_name()));
                } else {
                    std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
                }
            }
        }
        walk(from, &self.work.join(to));
    }

    /// The URL Argo CD and Flux clone.
    pub fn url(&self) -> String {
        format!("{}/{}.git", env("IAMWRIGHT_GIT_URL"), self.name)
    }

    /// One commit pushed to `main`: each (path, Some(text)) written, each (path, None)
    /// removed. Returns the commit's sha.
    pub fn commit(&self, message: &str, files: &[(&str, Option<&str>)]) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            match text {
                Some(t) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, t).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        git(&self.work, &["add", "--all"]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// The README's examples as (file name, text): every top-level `examples/*.yaml`. The
/// Job of `ci-user.yaml` (a pod that uploads with the key) is left out: the bed runs no
/// pods, so Argo CD would wait on it forever. The fixed AWS names (the users
/// `ci-uploader` and `alice`, the group `AdminUsers`) get the namespace as a prefix, so
/// tests syncing the examples at once do not claim the same user or group (the second
/// would rightly be OwnedByAnother).
pub fn examples(ns: &str) -> Vec<(String, String)> {
    let out = example_files(ns);
    for (file, text) in &out {
        for fixed in [
            "userName: ci-uploader",
            "userName: alice",
            "groupName: AdminUsers",
        ] {
            assert!(!text.contains(fixed), "{file} still names {fixed}");
        }
    }
    out
}

/// The number of iamwright objects among the examples.
pub fn example_objects(files: &[(String, String)]) -> usize {
    files
        .iter()
        .map(|(_, t)| t.matches("apiVersion: iamwright.dev/").count())
        .sum()
}

fn example_files(ns: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = repo_root().join("examples");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    for p in entries {
        let text = std::fs::read_to_string(&p).unwrap();
        let docs: Vec<&str> = text
            .split("\n---\n")
            .filter(|d| !d.lines().any(|l| l.trim() == "kind: Job"))
            .collect();
        out.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            docs.join("\n---\n")
                .replace(
                    "userName: ci-uploader",
                    &format!("userName: {ns}-ci-uploader"),
                )
                .replace("userName: alice", &format!("userName: {ns}-alice"))
                .replace(
                    "groupName: AdminUsers",
                    &format!("groupName: {ns}-AdminUsers"),
                ),
        ));
    }
    out
}
