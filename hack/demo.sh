#!/usr/bin/env bash
# The demo: start the test bed (kube-apiserver + etcd + moto, and a real node), install
# the chart with the operator's image built from the Dockerfile, apply examples/ and
# show the objects Ready.
#
#   hack/demo.sh             the operator as the chart's pod on the bed's node (needs root;
#                            falls back to the next line when the node cannot start)
#   hack/demo.sh --process   the operator as a host process (fast; no image, no node)
#
# Everything stays running afterwards so you can explore; stop it with
#   hack/testbed/down.sh .testbed
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"
bed="${IAMWRIGHT_TESTBED_DIR:-$repo/.testbed}"
ns=iamwright-demo
mode=pod
[ "${1:-}" = --process ] && mode=process
if [ "$mode" = pod ] && [ "$(id -u)" -ne 0 ]; then
  echo "== not root: the node cannot start here; running the operator as a process"
  mode=process
fi

start_as_pod() {
  hack/testbed/node-deps.sh || return 1
  echo "== building the operator's image (hack/image.sh: static binary + Dockerfile, offline)"
  archive="$(hack/image.sh)" || return 1
  echo "== starting the test bed with a node in $bed"
  env_file="$(IAMWRIGHT_TESTBED_IMAGES="$archive" hack/testbed/up.sh "$bed" --node)" || return 1
  # shellcheck source=/dev/null
  source "$env_file"
  echo "== helm install iamwright (namespace iamwright-system, Pod Security restricted)"
  kubectl create namespace iamwright-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label --overwrite namespace iamwright-system pod-security.kubernetes.io/enforce=restricted >/dev/null
  # On the bed: the image built here (never pulled), moto at the host's address, and AWS
  # credentials through the pod's own ServiceAccount token (the chart's web identity).
  helm upgrade --install iamwright charts/iamwright --namespace iamwright-system --wait --timeout 180s \
    --set image.repository=localhost/iamwright --set image.tag=dev --set image.pullPolicy=Never \
    --set operator.clusterName=demo --set operator.region=us-east-1 \
    --set aws.webIdentity.roleArn=arn:aws:iam::123456789012:role/iamwright-operator \
    --set "operator.extraEnv[0].name=AWS_ENDPOINT_URL" \
    --set "operator.extraEnv[0].value=http://$IAMWRIGHT_TESTBED_HOST_IP:${MOTO_URL##*:}" >/dev/null || return 1
  kubectl get pods -n iamwright-system -o wide
  svc_ip="$(kubectl get service -n iamwright-system iamwright-metrics -o jsonpath='{.spec.clusterIP}')"
  echo "http://$svc_ip:8080/metrics" >"$bed/operator.metrics-url"
}

start_as_process() {
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
    crd/iamscopes.iamwright.dev crd/iamgroups.iamwright.dev >/dev/null
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
}

if [ "$mode" = pod ]; then
  if ! start_as_pod; then
    echo "== the node could not start here (see $bed/logs); running the operator as a process instead"
    hack/testbed/down.sh "$bed" >/dev/null 2>&1 || true
    mode=process
  fi
fi
[ "$mode" = process ] && start_as_process

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
  kubectl logs -n iamwright-system deploy/iamwright    (when the operator runs as a pod)
Stop everything with: hack/testbed/down.sh $bed
MSG
