#!/usr/bin/env bash
# Stops the test bed started by up.sh: every process that has a pid file DIR/<name>.pid,
# by that pid only (TERM, up to $IAMWRIGHT_TESTBED_STOP_GRACE=10 s, then KILL), clients
# before servers (controller-manager and moto, then kube-apiserver, then etcd), and
# removes the pid files. Safe to run twice, and on a DIR with no bed. Leaves DIR's
# logs, kubeconfigs and data in place for post-mortems; up.sh wipes them on next start.
#
# usage: down.sh [DIR]   DIR defaults to $IAMWRIGHT_TESTBED_DIR, else <repo>/.testbed
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${1:-${IAMWRIGHT_TESTBED_DIR:-$repo/.testbed}}"
log() { echo "testbed-down: $*" >&2; }
if [ ! -d "$dir" ]; then
  log "no test bed directory $dir; nothing to stop"
  exit 0
fi
dir="$(cd "$dir" && pwd)"

# tb_pid_alive DIR NAME: DIR/NAME.pid names a live (not zombie) process that is still
# the program we started (argv[0] or, for Python entry points, argv[1] begins with
# NAME), so a pid reused by an unrelated process is never signalled.
# (Same function in up.sh, so each script stands alone.)
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

shopt -s nullglob
names=()
for f in "$dir"/*.pid; do
  n="$(basename "$f" .pid)"
  if tb_pid_alive "$dir" "$n"; then
    names+=("$n")
  else
    rm -f "$f" # stale: process gone (or pid now belongs to something else)
  fi
done
if [ ${#names[@]} -eq 0 ]; then
  log "nothing running in $dir"
  exit 0
fi

grace="${IAMWRIGHT_TESTBED_STOP_GRACE:-10}"

# stop_group NAME...: TERM them all, wait up to $grace s for them to exit, then KILL.
stop_group() {
  local n pid left deadline=$((SECONDS + grace))
  for n in "$@"; do
    pid="$(tr -dc 0-9 <"$dir/$n.pid")"
    log "stopping $n (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
  done
  while :; do
    left=()
    for n in "$@"; do tb_pid_alive "$dir" "$n" && left+=("$n"); done
    [ ${#left[@]} -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for n in "${left[@]}"; do
        pid="$(tr -dc 0-9 <"$dir/$n.pid")"
        log "$n (pid $pid) still running after ${grace}s; KILL"
        kill -KILL "$pid" 2>/dev/null || true
      done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  for n in "$@"; do rm -f "$dir/$n.pid"; done
}

# A node first: the kubelet (so it restarts nothing), then every container through
# containerd (their shims outlive containerd otherwise), then containerd, the node's
# mounts and kube-proxy's iptables rules.
stop_node() {
  local sock="$dir/node/containerd.sock" bin="" ctr id m
  for n in kubelet kube-scheduler; do has "$n" && stop_group "$n"; done
  if has containerd; then
    ctr=(ctr --address "$sock" --namespace k8s.io)
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks delete --force "$id" >/dev/null 2>&1 || true
    done
    stop_group containerd
  fi
  if has kube-proxy; then
    bin="$(dirname "$(readlink -f "/proc/$(tr -dc 0-9 <"$dir/kube-proxy.pid")/exe")")"
    stop_group kube-proxy
    "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  # Deepest first: volumes inside pods' directories, overlay and shm mounts.
  grep -F " $dir/node/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  ip link delete iamwright0 2>/dev/null || true
  local left=()
  for n in "${names[@]}"; do
    case "$n" in kubelet | kube-scheduler | containerd | kube-proxy) ;; *) left+=("$n") ;; esac
  done
  names=("${left[@]}")
}
has() { local m; for m in "${names[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }
! has containerd && ! has kubelet || stop_node

# In stages, clients before servers: the apiserver, when TERMed, still talks to etcd
# (it removes its own endpoint lease); with etcd gone first it hangs until KILLed.
first=()
for m in "${names[@]}"; do
  case "$m" in kube-apiserver | etcd) ;; *) first+=("$m") ;; esac
done
[ ${#first[@]} -eq 0 ] || stop_group "${first[@]}"
! has kube-apiserver || stop_group kube-apiserver
! has etcd || stop_group etcd
log "stopped: ${names[*]}"
