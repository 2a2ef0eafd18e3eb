#!/usr/bin/env bash
# Adds the GitOps tools to a running test bed (up.sh DIR): a git server on the loopback
# (gitserver.py: `git http-backend`), Redis (Debian's), Argo CD's application controller
# and repo server, and Flux's source-controller and kustomize-controller, all as host
# processes against the bed's API server (admin kubeconfig), built or reused by
# gitops-build.sh. Installs their CRDs, the `argocd` namespace with argocd-cm carrying
# the chart's health checks exactly as the README tells users to (the merge of
# charts/iamwright/argocd/argocd-cm.yaml), and the `default` AppProject (which Argo CD's
# API server, not run here, would create). The repo server renders Helm sources with
# the bed's helm (HELM_VERSION in versions.env, on PATH from DIR/env), as upstream's
# image renders them with the helm it ships.
#
# usage: gitops-up.sh DIR [--argocd-only]   (after up.sh DIR; down.sh DIR stops these
#        too: pid files). --argocd-only starts no Flux (the node suite's one-app test).
#
# Appends to DIR/env: IAMWRIGHT_GIT_ROOT (bare repositories; tests commit there through
# the file system), IAMWRIGHT_GIT_URL (the same, as Argo CD and Flux fetch it), and the
# tools' ports. ARGOCD_APP_RESYNC (default 10 s) is how often the controller polls git
# and how long the repo server keeps a branch's resolved revision (Argo CD's defaults:
# 120 s and 3 min; a git webhook makes both immediate): the suite's commit-to-sync
# time depends on it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="$(cd "${1:?usage: gitops-up.sh DIR [--argocd-only]}" && pwd)"
with_flux=1
[ "${2:-}" = --argocd-only ] && with_flux=0
# shellcheck source=/dev/null
source "$dir/env"
log() { echo "gitops-up: $*" >&2; }
timeout_s="${IAMWRIGHT_TESTBED_TIMEOUT:-120}"

if [ "$with_flux" = 1 ]; then
  cache="$("$here/gitops-build.sh" all | tail -n 1)"
else
  "$here/gitops-build.sh" redis >/dev/null
  cache="$("$here/gitops-build.sh" argocd | tail -n 1)"
fi
gbin="$cache/bin"
# Argo CD's binary picks its command by the name it is started as (upstream's image
# has the same links).
ln -sf argocd "$gbin/argocd-application-controller"
ln -sf argocd "$gbin/argocd-repo-server"
ln -sf argocd "$gbin/argocd-git-ask-pass"

start() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
  log "started $name (pid $!)"
}
wait_for() {
  local name="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null || { log "$name exited before $what"; tail -n 30 "$dir/logs/$name.log" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { log "$name not $what after ${timeout_s}s"; tail -n 30 "$dir/logs/$name.log" >&2; exit 1; }
    sleep 0.2
  done
  log "$name $what"
}

read -r redis_port repo_port repo_metrics ctl_metrics src_storage src_metrics src_health kc_metrics kc_health < <(python3 - <<'PY'
import socket
ss = []
for _ in range(9):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
PY
)

# --- git -----------------------------------------------------------------------------
mkdir -p "$dir/git"
rm -f "$dir/git.port"
start gitserver python3 "$here/gitserver.py" --root "$dir/git" --port-file "$dir/git.port"
wait_for gitserver "listening" test -s "$dir/git.port"
git_url="http://127.0.0.1:$(cat "$dir/git.port")"

# --- Redis (Argo CD's cache) -----------------------------------------------------------
start redis-server redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no
wait_for redis-server "answering" sh -c "redis-cli -p $redis_port ping | grep -q PONG"

# --- CRDs, namespaces, Argo CD's settings ----------------------------------------------
kubectl apply --server-side -f "$cache/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f "$cache/crds/" >/dev/null
kubectl create namespace argocd --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create namespace flux-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n argocd -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  labels: {app.kubernetes.io/part-of: argocd}
data: {}
---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  labels: {app.kubernetes.io/part-of: argocd}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
spec:
  sourceRepos: ["*"]
  destinations: [{namespace: "*", server: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
EOF
# The README's instruction, verbatim: merge the chart's snippet into argocd-cm.
kubectl -n argocd patch configmap argocd-cm --patch-file "$repo/charts/iamwright/argocd/argocd-cm.yaml" >/dev/null

# --- Argo CD -------------------------------------------------------------------------
# --persist-resource-health: each resource's health in the Application's status (what
# the UI shows from the resource tree, which needs Argo CD's API server to read).
argo_env=(env ARGOCD_FAKE_IN_CLUSTER=true KUBECONFIG="$KUBECONFIG" ARGOCD_GPG_ENABLED=false
  ARGOCD_TLS_DATA_PATH="$dir/argocd/tls" ARGOCD_SSH_DATA_PATH="$dir/argocd/ssh"
  ARGOCD_GNUPGHOME="$dir/argocd/gpg" ARGOCD_GPG_DATA_PATH="$dir/argocd/gpg-source"
  PATH="$gbin:$PATH" HOME="$dir/argocd/home" TMPDIR="$dir/argocd/tmp")
# TMPDIR: the repo server keeps its clones there (_argocd-repo), one place per bed.
mkdir -p "$dir/argocd/tls" "$dir/argocd/ssh" "$dir/argocd/gpg" "$dir/argocd/gpg-source" "$dir/argocd/home" "$dir/argocd/tmp"
start argocd-repo-server "${argo_env[@]}" "$gbin/argocd-repo-server" \
  --address 127.0.0.1 --port "$repo_port" --metrics-address 127.0.0.1 --metrics-port "$repo_metrics" \
  --redis "127.0.0.1:$redis_port" --disable-tls --client-ca-path "" --loglevel info --logformat text \
  --revision-cache-expiration "${ARGOCD_APP_RESYNC:-10}s"
wait_for argocd-repo-server "serving" curl -sf "http://127.0.0.1:$repo_metrics/metrics"
start argocd-application-controller "${argo_env[@]}" "$gbin/argocd-application-controller" \
  --kubeconfig "$KUBECONFIG" --namespace argocd \
  --repo-server "127.0.0.1:$repo_port" --repo-server-plaintext \
  --redis "127.0.0.1:$redis_port" --metrics-port "$ctl_metrics" \
  --app-resync "${ARGOCD_APP_RESYNC:-10}" --app-resync-jitter 0 \
  --self-heal-timeout-seconds 2 --loglevel info --logformat text \
  --persist-resource-health=true
wait_for argocd-application-controller "serving" curl -sf "http://127.0.0.1:$ctl_metrics/metrics"

# --- Flux ------------------------------------------------------------------------------
if [ "$with_flux" = 1 ]; then
  mkdir -p "$dir/flux/storage"
  flux_env=(env KUBECONFIG="$KUBECONFIG" RUNTIME_NAMESPACE=flux-system HOME="$dir/flux")
  start source-controller "${flux_env[@]}" "$gbin/source-controller" \
    --storage-path "$dir/flux/storage" --storage-addr "127.0.0.1:$src_storage" \
    --storage-adv-addr "127.0.0.1:$src_storage" \
    --metrics-addr "127.0.0.1:$src_metrics" --health-addr "127.0.0.1:$src_health" \
    --enable-leader-election=false --watch-all-namespaces=true --log-level info
  wait_for source-controller "ready" curl -sf "http://127.0.0.1:$src_health/readyz"
  start kustomize-controller "${flux_env[@]}" "$gbin/kustomize-controller" \
    --metrics-addr "127.0.0.1:$kc_metrics" --health-addr "127.0.0.1:$kc_health" \
    --enable-leader-election=false --watch-all-namespaces=true --log-level info
  wait_for kustomize-controller "ready" curl -sf "http://127.0.0.1:$kc_health/readyz"
fi

{
  echo "export IAMWRIGHT_GIT_ROOT=$(printf '%q' "$dir/git")"
  echo "export IAMWRIGHT_GIT_URL=$git_url"
  echo "export IAMWRIGHT_ARGOCD_METRICS=http://127.0.0.1:$ctl_metrics"
  echo "export IAMWRIGHT_GITOPS_BIN=$(printf '%q' "$gbin")"
} >>"$dir/env"
log "ready: git $git_url, redis :$redis_port, argocd repo-server :$repo_port$([ "$with_flux" = 1 ] && echo ", source-controller :$src_storage")"
