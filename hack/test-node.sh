#!/usr/bin/env bash
# The install path on a real node: builds the operator's image (hack/image.sh), starts a
# test bed with a node (up.sh --node) that imports it, and runs the `node` test suite
# (helm install / upgrade / rollback / uninstall, two replicas, the image itself, and
# the chart with its CRDs and objects in one Argo CD Application: Argo CD is added to the
# bed by gitops-up.sh --argocd-only, built or reused by gitops-build.sh).
# hack/test.sh runs this after the fast suite; alone it is the quick loop for the
# install path. Needs root (the node's runtime, network and cgroups).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"

echo "== node: packages (containerd, runc, CNI plugins, iptables, buildah, musl) and binaries"
hack/testbed/node-deps.sh
hack/testbed/build.sh node >/dev/null

echo "== node: Argo CD $(sed -n 's/^ARGOCD_VERSION=//p' hack/testbed/gitops-versions.env) and Redis (the one-app test)"
hack/testbed/gitops-build.sh redis >/dev/null
hack/testbed/gitops-build.sh argocd >/dev/null

echo "== node: the operator's image from the Dockerfile"
archive="$(hack/image.sh)"
ls -l "$archive"

bed="$(mktemp -d "${TMPDIR:-/tmp}/iamwright-nodebed.XXXXXX")"
cleanup() {
  local rc=$?
  "$repo/hack/testbed/down.sh" "$bed" || true
  [ $rc -eq 0 ] || echo "== node tests failed; the bed's logs are in $bed/logs" >&2
  exit $rc
}
trap cleanup EXIT

echo "== node: test bed with a node"
IAMWRIGHT_TESTBED_IMAGES="$archive" "$repo/hack/testbed/up.sh" "$bed" --node >/dev/null
"$repo/hack/testbed/gitops-up.sh" "$bed" --argocd-only
# shellcheck source=/dev/null
source "$bed/env"
export IAMWRIGHT_IMAGE="localhost/iamwright:${IAMWRIGHT_IMAGE_TAG:-dev}"
export IAMWRIGHT_IMAGE_ARCHIVE="$archive"

echo "== node: e2e (one at a time: the tests share the release; figures printed)"
cargo test --locked --test node -- --test-threads 1 --nocapture "$@"
