#!/usr/bin/env bash
# GitOps for real: builds (or reuses) Argo CD and Flux from their pinned Go modules
# (hack/testbed/gitops-build.sh), starts a test bed of its own with them
# (up.sh + gitops-up.sh: a git server on the loopback, Redis, Argo CD's application
# controller and repo server, Flux's source-controller and kustomize-controller) and
# runs the `gitops` test suite. hack/test.sh runs this after the fast suite; alone it
# is the quick loop (extra arguments go to the test binary, e.g. `argocd`).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"

echo "== gitops: Argo CD $(sed -n 's/^ARGOCD_VERSION=//p' hack/testbed/gitops-versions.env), Flux source-controller $(sed -n 's/^FLUX_SOURCE_VERSION=//p' hack/testbed/gitops-versions.env) and kustomize-controller $(sed -n 's/^FLUX_KUSTOMIZE_VERSION=//p' hack/testbed/gitops-versions.env), Redis"
hack/testbed/gitops-build.sh all >/dev/null

bed="$(mktemp -d "${TMPDIR:-/tmp}/iamwright-gitopsbed.XXXXXX")"
cleanup() {
  local rc=$?
  "$repo/hack/testbed/down.sh" "$bed" || true
  [ $rc -eq 0 ] || echo "== gitops tests failed; the bed's logs (argocd-*, source-controller, kustomize-controller, operator-*) are in $bed/logs" >&2
  exit $rc
}
trap cleanup EXIT

echo "== gitops: test bed with Argo CD and Flux"
"$repo/hack/testbed/up.sh" "$bed" >/dev/null
"$repo/hack/testbed/gitops-up.sh" "$bed"
# shellcheck source=/dev/null
source "$bed/env"

echo "== gitops: e2e (figures printed)"
cargo test --locked --test gitops -- --test-threads "${GITOPS_THREADS:-4}" --nocapture "$@"
