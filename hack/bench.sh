#!/usr/bin/env bash
# The benchmark (not a test): brings up its own test bed, runs the operator against it
# and prints convergence time beside the floor measured in the same run, AWS calls per
# object, Kubernetes writes, steady-state reads per resync, peak RSS and CPU.
#
# usage: hack/bench.sh [N] [--debug] [--resync SECONDS] [--steady-resyncs R] [--shards K] [--applier A]
#                       [--bindings B [--instances I] [--instance-resync SECONDS]]
#                       [--iam-like RATE,LATENCY]
#   N         IamPolicy + IamRole pairs (default 200; 0 with --bindings)
#   --debug   use the debug build (CI's smoke run; figures are not representative)
#   --shards  K operator processes, each with --object-selector shard=s<i> (pairs spread)
#   --applier kubectl (default: 4 `kubectl apply --server-side` processes) or direct (4 API clients)
#   --bindings B roles and B InstanceProfileBindings over I tagged EC2 instances (default 500):
#             EC2 reads per --instance-resync-interval tick (default 30 s) in steady state
#   --iam-like RATE,LATENCY  through hack/faultproxy.py acting as IAM: LATENCY seconds per
#             call, one account-wide bucket of RATE calls/s answering Throttling above it
#             (e.g. 20,0.1); the floor is a perfectly paced client (3 writes per pair at RATE)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"
n=200 profile=release extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --resync) extra+=(--resync "$2"); shift ;;
    --steady-resyncs) extra+=(--steady-resyncs "$2"); shift ;;
    --shards) extra+=(--shards "$2"); shift ;;
    --applier) extra+=(--applier "$2"); shift ;;
    --bindings) extra+=(--bindings "$2"); shift ;;
    --instances) extra+=(--instances "$2"); shift ;;
    --instance-resync) extra+=(--instance-resync "$2"); shift ;;
    --iam-like) extra+=(--iam-like "$2"); shift ;;
    *) n="$1" ;;
  esac
  shift
done
if [ "$profile" = release ]; then
  cargo build --locked --release --bin iamwright
else
  cargo build --locked --bin iamwright
fi
bed="$(mktemp -d "${TMPDIR:-/tmp}/iamwright-bench.XXXXXX")"
trap '"$repo/hack/testbed/down.sh" "$bed" >/dev/null 2>&1 || true' EXIT
"$repo/hack/testbed/up.sh" "$bed" >/dev/null
# shellcheck source=/dev/null
source "$bed/env"
# The chart brings the CRDs and the RBAC of the ServiceAccount the operator runs as.
helm upgrade --install iamwright charts/iamwright --namespace iamwright-system \
  --create-namespace --set operator.clusterName=bench --wait=false >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
"$IAMWRIGHT_TESTBED_BIN/../venv/bin/python" hack/bench.py "$n" \
  --binary "$CARGO_TARGET_DIR/$profile/iamwright" "${extra[@]}"
