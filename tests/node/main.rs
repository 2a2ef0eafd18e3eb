//! The install path on the bed's real node: the image built from the project's
//! Dockerfile, and the chart installed, upgraded, rolled back and uninstalled with helm,
//! its pods run by kubelet + containerd + runc. Run by `hack/test.sh` on a bed started
//! with `up.sh --node`; one test at a time (they share the release `iamwright`).

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

mod handover;
mod image;
mod install;
mod lifecycle;
mod release;
mod rotation;
