#!/usr/bin/env bash
# Restarts the bed's kube-apiserver with the same command line (etcd keeps the state),
# for the e2e test that shows the operator recovering from an API server restart.
# usage: restart-apiserver.sh DIR
set -euo pipefail
dir="$(cd "${1:?usage: restart-apiserver.sh DIR}" && pwd)"
pid="$(tr -dc 0-9 <"$dir/kube-apiserver.pid")"
mapfile -d '' args <"/proc/$pid/cmdline"
kill -TERM "$pid"
for _ in $(seq 1 100); do
  [ -e "/proc/$pid" ] || break
  sleep 0.1
done
[ -e "/proc/$pid" ] && kill -KILL "$pid"
setsid "${args[@]}" </dev/null >>"$dir/logs/kube-apiserver.log" 2>&1 9>&- &
echo $! >"$dir/kube-apiserver.pid"
for _ in $(seq 1 300); do
  if KUBECONFIG="$dir/kubeconfig" "$(dirname "${args[0]}")/kubectl" get --raw /readyz >/dev/null 2>&1; then
    echo "restart-apiserver: ready" >&2
    exit 0
  fi
  sleep 0.2
done
echo "restart-apiserver: not ready after 60s" >&2
exit 1
