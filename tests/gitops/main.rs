//! GitOps for real: a real Argo CD (application controller and repo server) and Flux
//! (source-controller and kustomize-controller) sync iamwright objects from a git
//! repository served on the loopback, on the test bed. Run by `hack/test-gitops.sh`
//! (which adds the tools to a bed with `hack/testbed/gitops-up.sh`); `hack/test.sh`
//! runs it after the fast suite.

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

mod argocd;
mod flux;
mod git;
mod table;
