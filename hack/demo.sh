#!/usr/bin/env bash
# The demo: start the test bed (kube-apiserver + etcd + moto), install the CRDs, run the
# operator against it, apply examples/ and show the objects Ready.
# Everything stays running afterwards so you can explore; stop it with
#   hack/testbed/down.sh .testbed
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"
bed="${IAMWRIGHT_TESTBED_DIR:-$repo/.testbed}"
ns=iamwright-demo

echo "== building the operator"
cargo build --locked --bin iamwright
echo "== starting the test bed in $bed"
env_file="$(hack/testbed/up.sh "$bed")"
# shellcheck source=/dev/null
source "$env_file"

kubectl apply --server-side -f crds/crds.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/iampolicies.iamwright.dev crd/iamroles.iamwright.dev \
  crd/instanceprofilebindings.iamwright.dev crd/iamuseraccesskeys.iamwright.dev \
  crd/iamscopes.iamwright.dev >/dev/null

# The operator runs as a process of the bed (its pid file beside the others'), so
# down.sh stops it too.
if [ -f "$bed/iamwright.pid" ] && kill -0 "$(cat "$bed/iamwright.pid")" 2>/dev/null; then
  echo "== operator already running (pid $(cat "$bed/iamwright.pid"))"
else
  echo "== starting the operator (log: $bed/logs/operator.log)"
  metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  health_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  setsid "$CARGO_TARGET_DIR/debug/iamwright" run --cluster-name demo \
    --metrics-bind-address "127.0.0.1:$metrics_port" \
    --health-probe-bind-address "127.0.0.1:$health_port" \
    >"$bed/logs/operator.log" 2>&1 &
  echo $! >"$bed/iamwright.pid"
  echo "http://127.0.0.1:$metrics_port/metrics" >"$bed/operator.metrics-url"
fi

echo "== launching two EC2 instances tagged app=example-web in moto (for examples/binding-by-tag.yaml)"
"$IAMWRIGHT_TESTBED_BIN/../venv/bin/python" - <<'PY'
import boto3
ec2 = boto3.client("ec2")
tagged = ec2.describe_instances(Filters=[{"Name": "tag:app", "Values": ["example-web"]},
                                         {"Name": "instance-state-name", "Values": ["pending", "running"]}])
if not any(r["Instances"] for r in tagged["Reservations"]):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.micro",
                      TagSpecifications=[{"ResourceType": "instance",
                                          "Tags": [{"Key": "app", "Value": "example-web"}]}])
PY

echo "== applying examples/ to namespace $ns"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$ns" -f examples/
echo "== waiting for Ready"
kubectl wait -n "$ns" --for=condition=Ready --timeout=180s iamwright --all
kubectl get iamwright -n "$ns"
if kubectl get secret -n "$ns" -l app.kubernetes.io/managed-by=iamwright -o name 2>/dev/null | grep -q .; then
  echo "== Secrets written by the operator (values not shown)"
  kubectl get secret -n "$ns" -l app.kubernetes.io/managed-by=iamwright
fi
cat <<MSG

The bed is still running. Try:
  source $env_file
  kubectl get iamwright -n $ns -o wide
  kubectl describe iampolicy -n $ns s3-reader
  curl -s \$(cat $bed/operator.metrics-url) | grep iamwright_
Stop everything with: hack/testbed/down.sh $bed
MSG
