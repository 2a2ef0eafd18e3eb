#!/usr/bin/env bash
# Stops the test bed started by up.sh: every process that has a pid file DIR/<name>.pid,
# by that pid only (TERM, up to 10 s grace, then KILL), and removes the pid files.
# Safe to run twice, and on a DIR with no bed.
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

# Controller manager first so it does not log a storm of errors while the apiserver
# goes; the apiserver before etcd. Everything gets TERM at once otherwise.
order=()
for n in kube-controller-manager kube-apiserver; do
  for m in "${names[@]}"; do [ "$m" = "$n" ] && order+=("$n"); done
done
for m in "${names[@]}"; do
  case "$m" in kube-controller-manager | kube-apiserver) ;; *) order+=("$m") ;; esac
done

for n in "${order[@]}"; do
  pid="$(tr -dc 0-9 <"$dir/$n.pid")"
  log "stopping $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
done

deadline=$((SECONDS + ${IAMWRIGHT_TESTBED_STOP_GRACE:-10}))
while :; do
  left=()
  for n in "${order[@]}"; do tb_pid_alive "$dir" "$n" && left+=("$n"); done
  [ ${#left[@]} -eq 0 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    for n in "${left[@]}"; do
      pid="$(tr -dc 0-9 <"$dir/$n.pid")"
      log "$n (pid $pid) still running after grace period; KILL"
      kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 0.2
    break
  fi
  sleep 0.1
done

for n in "${order[@]}"; do rm -f "$dir/$n.pid"; done
log "stopped: ${order[*]}"
