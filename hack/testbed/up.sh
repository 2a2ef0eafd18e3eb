#!/usr/bin/env bash
# Starts the test bed: etcd, kube-apiserver, kube-controller-manager (garbage collector
# and namespace controllers only) and a moto server (AWS emulator), all on 127.0.0.1 on
# free ports picked at start. Builds or reuses the binaries via build.sh.
#
# usage: up.sh [DIR] [--node]   DIR defaults to $IAMWRIGHT_TESTBED_DIR, else <repo>/.testbed
#
# --node (or IAMWRIGHT_TESTBED_NODE=1) adds a real node (node-up.sh): containerd, runc
# and CNI, kubelet, kube-proxy and kube-scheduler, with the controllers pods need in the
# controller-manager; the API server and moto then also listen on the host's address so
# pods reach them. Needs root and node-deps.sh's packages; one node bed per machine at a
# time (the node's iptables rules and cgroups are host-wide). Images named in
# IAMWRIGHT_TESTBED_IMAGES (OCI archives, space-separated) are imported into the node.
#
# Writes into DIR: kubeconfig (admin, group system:masters), kubeconfig-operator (user
# system:serviceaccount:iamwright-system:iamwright, no permissions beyond what RBAC
# grants it), env (to `source`), <proc>.pid for every process, logs/<proc>.log.
# If DIR already holds a running bed, says so and starts nothing. The last line on
# stdout is always the path of the env file; everything else goes to stderr.
# Stop the bed with down.sh [DIR]. Every start is a fresh, empty bed (new etcd data,
# keys, tokens and ports).
#
# Environment: IAMWRIGHT_TESTBED_DIR (default DIR), IAMWRIGHT_TESTBED_TIMEOUT (seconds
# each component may take to get ready, default 120), IAMWRIGHT_TESTBED_APISERVER_ARGS
# (extra kube-apiserver flags), IAMWRIGHT_CACHE (build cache root, see build.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
with_node="${IAMWRIGHT_TESTBED_NODE:-0}"
args=()
for a in "$@"; do
  case "$a" in --node) with_node=1 ;; *) args+=("$a") ;; esac
done
dir="${args[0]:-${IAMWRIGHT_TESTBED_DIR:-$repo/.testbed}}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# up.sh wipes etcd/, pki/, logs/ ... inside DIR on every start, so it only takes a DIR
# that is empty or was made by up.sh (marked by .iamwright-testbed).
if [ ! -e "$dir/.iamwright-testbed" ]; then
  if [ -n "$(ls -A "$dir")" ]; then
    echo "testbed-up: $dir is not empty and not a test bed directory; refusing to use it" >&2
    exit 1
  fi
  touch "$dir/.iamwright-testbed"
fi
timeout_s="${IAMWRIGHT_TESTBED_TIMEOUT:-120}" # seconds each component may take to be ready
procs=(etcd kube-apiserver kube-controller-manager moto)
[ "$with_node" = 1 ] && procs+=(containerd kubelet kube-proxy kube-scheduler)

log() { echo "testbed-up: $*" >&2; }

# tb_pid_alive DIR NAME: DIR/NAME.pid names a live (not zombie) process that is still
# the program we started (argv[0] or, for Python entry points, argv[1] begins with
# NAME), so a pid reused by an unrelated process is never taken for ours.
# (Same function in down.sh, so each script stands alone.)
tb_pid_alive() {
  local f="$1/$2.pid" pid state a0 a1
  [ -f "$f" ] || return 1
  pid="$(tr -dc 0-9 <"$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] || return 1
  { IFS= read -r -d '' a0 && IFS= read -r -d '' a1; } <"/proc/$pid/cmdline" 2>/dev/null || true
  case "$(basename -- "${a0:-x}")" in "$2"*) return 0 ;; esac
  case "$(basename -- "${a1:-x}")" in "$2"*) return 0 ;; esac
  return 1
}

# One up.sh per DIR at a time. The lock fd is closed in every child (9>&-) so the
# long-running processes do not keep holding it after up.sh has exited.
exec 9>"$dir/.lock"
if ! flock -w "$timeout_s" 9; then
  log "another up.sh holds $dir/.lock"
  exit 1
fi

# --- Already running? --------------------------------------------------------------
alive=0 dead=0
for p in "${procs[@]}"; do
  if tb_pid_alive "$dir" "$p"; then alive=$((alive + 1)); else dead=$((dead + 1)); fi
done
if [ "$dead" -eq 0 ] && [ -f "$dir/env" ]; then
  log "a test bed is already running in $dir (pids: $(cat "$dir"/*.pid | tr '\n' ' '))"
  echo "$dir/env"
  exit 0
fi
if [ "$alive" -gt 0 ]; then
  log "found a partly running bed in $dir; stopping it and starting a fresh one"
  "$here/down.sh" "$dir" >&2
fi
rm -f "$dir"/*.pid

# --- Binaries ------------------------------------------------------------------------
cache="$("$here/build.sh" all | tail -n 1)"
bin="$cache/bin"
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b after build.sh"; exit 1; }
done
[ -x "$cache/venv/bin/moto_server" ] || { log "missing $cache/venv/bin/moto_server"; exit 1; }
# The node: where pods reach the host (the API server's advertised address, moto), the
# pods' own range, and the node's name.
listen=127.0.0.1
host_ip=127.0.0.1
pod_cidr=10.88.0.0/16
node_name=iamwright-node
if [ "$with_node" = 1 ]; then
  [ "$(id -u)" -eq 0 ] || { log "--node needs root (the kubelet, containerd, the pod network)"; exit 1; }
  "$here/node-deps.sh"
  "$here/build.sh" node >/dev/null
  host_ip="$(ip -4 route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
  [ -n "$host_ip" ] || host_ip="$(hostname -I | awk '{print $1}')"
  [ -n "$host_ip" ] && [ "$host_ip" != 127.0.0.1 ] || { log "--node: no non-loopback IPv4 address for pods to reach the host"; exit 1; }
  listen=0.0.0.0
fi

t0_us=${EPOCHREALTIME/[.,]/} # microseconds, for the "ready in" message

# --- Clean state: every bed starts empty, with new tokens, keys and ports -------------
rm -rf "$dir/etcd" "$dir/pki" "$dir/logs"
rm -f "$dir/env" "$dir/kubeconfig" "$dir/kubeconfig-operator" "$dir/tokens.csv"
mkdir -p "$dir/pki" "$dir/logs"
chmod 700 "$dir/pki"

# Stop what this run started if it does not get to the end (error, Ctrl-C, TERM).
started=()
ok=0
cleanup() {
  local rc=$?
  if [ "$ok" -ne 1 ] && [ ${#started[@]} -gt 0 ]; then
    log "start failed; stopping what was started: ${started[*]}"
    # Short grace: a half-started bed has nothing worth a graceful shutdown.
    IAMWRIGHT_TESTBED_STOP_GRACE=3 "$here/down.sh" "$dir" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Free ports: bind them all at once (so they are distinct) to port 0, then release.
read -r etcd_port etcd_peer_port api_port kcm_port moto_port < <(python3 - <<'PY'
import socket
ss = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
PY
)

# --- Keys, certificates, tokens ----------------------------------------------------
# Our own CA and serving certificate (instead of the apiserver's self-signed one) so
# the kubeconfig can carry a real CA that strict clients (rustls/webpki) accept: a
# CA:TRUE root, and a CA:FALSE leaf with serverAuth and IP/DNS SANs.
pki="$dir/pki"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
openssl req -x509 -new -key "$pki/ca.key" -sha256 -days 3650 -subj "/CN=iamwright-testbed-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$pki/ca.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/apiserver.key" 2>/dev/null
openssl req -new -key "$pki/apiserver.key" -subj "/CN=kube-apiserver" -out "$pki/apiserver.csr" 2>/dev/null
node_san=""
[ "$with_node" = 1 ] && node_san="IP:$host_ip,"
cat >"$pki/apiserver.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,${node_san}DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 3650 -sha256 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
# Service-account token signing key pair.
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

admin_token="$(openssl rand -hex 24)"
operator_token="$(openssl rand -hex 24)"
# Static token file: token,user,uid,"groups". The operator's identity is exactly what a
# projected service-account token of iamwright-system/iamwright would authenticate as,
# so the chart's RBAC is what decides what it may do.
cat >"$dir/tokens.csv" <<EOF
$admin_token,iamwright-admin,iamwright-admin,"system:masters"
$operator_token,system:serviceaccount:iamwright-system:iamwright,00000000-0000-4000-8000-000000000001,"system:serviceaccounts,system:serviceaccounts:iamwright-system,system:authenticated"
EOF
chmod 600 "$dir/tokens.csv"

api_url="https://127.0.0.1:$api_port"
moto_url="http://127.0.0.1:$moto_port"
write_kubeconfig() { # file user token
  local f="$1" user="$2" token="$3"
  (
    umask 077
    cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: iamwright-testbed
  cluster:
    server: $api_url
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    token: $token
contexts:
- name: iamwright-testbed
  context:
    cluster: iamwright-testbed
    user: $user
current-context: iamwright-testbed
EOF
  )
}
write_kubeconfig "$dir/kubeconfig" iamwright-admin "$admin_token"
write_kubeconfig "$dir/kubeconfig-operator" iamwright-operator "$operator_token"

# --- Processes -----------------------------------------------------------------------
# start NAME CMD...: in its own session (setsid, so a terminal's Ctrl-C/hang-up after
# up.sh has returned does not reach it), stdin from /dev/null, output to its log.
# `$!` is the pid of the program itself: setsid execs it without forking because a
# background job of a non-interactive shell is not a process-group leader.
start() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$dir/logs/$name.log" 2>&1 9>&- &
  echo $! >"$dir/$name.pid"
  started+=("$name")
  log "started $name (pid $!)"
}

fail() { # name message
  log "$1: $2"
  if [ -f "$dir/logs/$1.log" ]; then
    log "last lines of $dir/logs/$1.log:"
    tail -n 30 "$dir/logs/$1.log" >&2
  fi
  exit 1
}

# wait_for NAME DESCRIPTION CMD...: polls CMD until it succeeds, failing early if the
# process died, and after $timeout_s seconds.
wait_for() {
  local name="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout_s)) # SECONDS: no subprocess to be hit by Ctrl-C
  until "$@" >/dev/null 2>&1; do
    tb_pid_alive "$dir" "$name" || fail "$name" "exited before $what"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name" "not $what after ${timeout_s}s"
    sleep 0.2
  done
  log "$name $what"
}

# moto first: Python start-up is the slowest and it does not depend on anything.
# MOTO_IAM_LOAD_MANAGED_POLICIES: the AWS managed policies (AdministratorAccess, ...)
# exist, so the managed-policy guardrail reads real documents.
MOTO_IAM_LOAD_MANAGED_POLICIES=true \
  start moto "$cache/venv/bin/moto_server" -H "$listen" -p "$moto_port"

# --unsafe-no-fsync: a throw-away bed, so trade durability for speed.
start etcd "$bin/etcd" \
  --name=iamwright-testbed \
  --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="iamwright-testbed=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync \
  --log-level=warn
wait_for etcd "healthy" sh -c "curl -sf http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'"

# IAMWRIGHT_TESTBED_APISERVER_ARGS: extra flags, split on spaces (e.g. --feature-gates=...).
read -r -a extra_api_args <<<"${IAMWRIGHT_TESTBED_APISERVER_ARGS:-}"
# The admission plugins enabled by default need no node or kubelet; ServiceAccount
# admission stays on (it only matters for Pods, which nothing runs here anyway).
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address="$listen" \
  --advertise-address="$host_ip" \
  --kubelet-preferred-address-types=InternalIP \
  --secure-port="$api_port" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc \
  --token-auth-file="$dir/tokens.csv" \
  --authorization-mode=RBAC \
  --allow-privileged=true \
  --profiling=false \
  "${extra_api_args[@]}"
wait_for kube-apiserver "ready" \
  curl -sf --cacert "$pki/ca.crt" -H "Authorization: Bearer $admin_token" "$api_url/readyz"

# Only the garbage collector (ownerReferences), the namespace controller (namespace
# deletion) and the resource quota controller (quota usage, for the quota tests). Its own secure port serves /healthz (always allowed) for the readiness wait.
# With a node, also what running pods needs: Deployments and ReplicaSets (and the
# StatefulSets and DaemonSets the rotation test rolls), EndpointSlices
# for Services, each namespace's default ServiceAccount and kube-root-ca.crt ConfigMap
# (the projected token volume mounts it), PodDisruptionBudgets' status, and the node
# lifecycle (it lifts the not-ready taint the kubelet registers with).
kcm_controllers=garbagecollector,namespace,resourcequota
[ "$with_node" = 1 ] && kcm_controllers+=,deployment,replicaset,statefulset,daemonset,endpointslice,serviceaccount,root-ca-cert-publisher,disruption,nodelifecycle
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$dir/kubeconfig" \
  --authentication-kubeconfig="$dir/kubeconfig" \
  --authorization-kubeconfig="$dir/kubeconfig" \
  --controllers="$kcm_controllers" \
  --root-ca-file="$pki/ca.crt" \
  --leader-elect=false \
  --bind-address=127.0.0.1 \
  --secure-port="$kcm_port" \
  --cert-dir="$pki/kcm" \
  --profiling=false
wait_for kube-apiserver "serving namespace default" \
  "$bin/kubectl" --kubeconfig="$dir/kubeconfig" get namespace default
wait_for kube-controller-manager "healthy" curl -sfk "https://127.0.0.1:$kcm_port/healthz"
wait_for moto "answering" curl -sf "$moto_url/moto-api/"
if [ "$with_node" = 1 ]; then
  # shellcheck source=/dev/null
  source "$here/node-up.sh"
fi

# --- Env file ---------------------------------------------------------------------------
q() { printf '%q' "$1"; }
{
  echo "# iamwright test bed in $dir; source this file. Stop the bed with hack/testbed/down.sh $(q "$dir")"
  echo "export KUBECONFIG=$(q "$dir/kubeconfig")"
  echo "export IAMWRIGHT_OPERATOR_KUBECONFIG=$(q "$dir/kubeconfig-operator")"
  echo "export IAMWRIGHT_TESTBED_DIR=$(q "$dir")"
  echo "export IAMWRIGHT_TESTBED_BIN=$(q "$bin")"
  echo "export MOTO_URL=$moto_url"
  echo "export AWS_ENDPOINT_URL=$moto_url"
  echo "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1"
  # Keep SDKs from probing the EC2 instance metadata service (slow timeouts off EC2).
  echo "export AWS_EC2_METADATA_DISABLED=true"
  echo "export PATH=$(q "$bin"):\$PATH"
  if [ "$with_node" = 1 ]; then
    # Addresses as pods see them, and the node's runtime (for the image tests).
    echo "export IAMWRIGHT_TESTBED_NODE_NAME=$node_name"
    echo "export IAMWRIGHT_TESTBED_HOST_IP=$host_ip"
    echo "export IAMWRIGHT_TESTBED_CONTAINERD=$(q "$dir/node/containerd.sock")"
  fi
} >"$dir/env.tmp"
mv "$dir/env.tmp" "$dir/env"

ok=1
ds=$(((${EPOCHREALTIME/[.,]/} - t0_us) / 100000))
log "ready in $((ds / 10)).$((ds % 10))s: apiserver $api_url, etcd 127.0.0.1:$etcd_port, moto $moto_url"
echo "$dir/env"
