#!/usr/bin/env bash
# The test command: unit tests, then the e2e suite against a test bed this script
# starts (building or reusing the cached bed binaries) and stops again, also on failure.
# Extra arguments go to the e2e test binary, e.g. `hack/test.sh policy` runs the
# e2e tests whose names contain "policy" (and skips the slow phases: the API server
# restart, the benchmark smoke run, the node suite hack/test-node.sh and the gitops
# suite hack/test-gitops.sh).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
# Rust builds are cached outside the checkout, so a fresh clone on a warm machine is fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"

echo "== build"
cargo build --locked --all-targets

echo "== IAM evaluation engine for the operator-policy proof"
IAMWRIGHT_IAM_SIMULATE_DIR="$("$repo/hack/iam-simulate.sh")"
export IAMWRIGHT_IAM_SIMULATE_DIR

echo "== unit tests (incl. generated CRDs drift check, operator policy under a real IAM evaluator)"
cargo test --locked --lib --bins --test argocd_health --test validate_cli --test trust_policy --test layers

bed="$(mktemp -d "${TMPDIR:-/tmp}/iamwright-bed.XXXXXX")"
cleanup() {
  local rc=$?
  "$repo/hack/testbed/down.sh" "$bed" || true
  if [ $rc -ne 0 ]; then
    echo "== e2e failed; operator and bed logs are in $bed/logs" >&2
    for f in "$bed"/logs/operator-*.log; do
      [ -f "$f" ] || continue
      if grep -qE ' (ERROR|WARN) ' "$f"; then
        echo "--- $f (warnings and errors)" >&2
        grep -E ' (ERROR|WARN) ' "$f" | tail -n 20 >&2
      fi
    done
  fi
  exit $rc
}
trap cleanup EXIT

echo "== test bed"
"$repo/hack/testbed/up.sh" "$bed" >/dev/null
# shellcheck source=/dev/null
source "$bed/env"

echo "== fault proxy self-test (a fake upstream, and the bed's moto)"
python3 "$repo/hack/faultproxy_test.py" 2>&1 | tail -n 3

echo "== e2e"
cargo test --locked --test e2e -- --test-threads "${E2E_THREADS:-8}" "$@"

if [ $# -eq 0 ]; then
  echo "== e2e, alone: API server restart"
  cargo test --locked --test e2e -- --ignored --test-threads 1
  echo "== benchmark smoke run (tiny N, debug build: checks the script, not the figures)"
  "$repo/hack/bench.sh" 3 --debug --resync 5 --steady-resyncs 1 | tail -n 8
  "$repo/hack/bench.sh" 0 --debug --bindings 2 --instances 4 --resync 10 --steady-resyncs 1 \
    --instance-resync 5 | tail -n 6
  "$repo/hack/bench.sh" 3 --debug --iam-like 20,0.1 --resync 5 --steady-resyncs 1 | tail -n 8
  # The install path on a real node: a bed of its own, so the fast one stops first.
  "$repo/hack/testbed/down.sh" "$bed" >/dev/null 2>&1 || true
  "$repo/hack/test-node.sh"
  # Argo CD and Flux syncing from git: a bed of its own, after the node's is down.
  "$repo/hack/test-gitops.sh"
fi
