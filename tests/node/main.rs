//! The install path on the bed's real node: the image built from the project's
//! Dockerfile, and the chart installed, upgraded, rolled back and uninstalled with helm,
//! its pods run by kubelet + containerd + runc; and the chart, its CRDs and objects in
//! one Argo CD Application. Run by `hack/test.sh` on a bed started with `up.sh --node`
//! (and Argo CD added by `gitops-up.sh --argocd-only`); one test at a time (they share
//! the release `iamwright`).

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

// The gitops suite's git repository and example files, for the one-app test.
#[allow(dead_code)]
#[path = "../gitops/git.rs"]
mod git;
#[allow(dead_code)]
#[path = "../gitops/table.rs"]
mod table;

mod argocd;
mod handover;
mod image;
mod install;
mod lifecycle;
mod release;
mod rotation;
