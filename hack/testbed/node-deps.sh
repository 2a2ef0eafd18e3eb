#!/usr/bin/env bash
# Installs (once) the Debian packages the bed's node needs: containerd and runc (the
# container runtime), the CNI plugins (bridge, host-local, loopback), iptables and
# conntrack (kube-proxy), buildah (assembles the operator's image without a daemon or a
# registry) and musl-tools (the static binary and the pause program). Needs root and
# apt; a no-op when all are present. The versions installed are printed; the ones this
# was proven with are in node-versions.env.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
source "$here/node-versions.env"
log() { echo "testbed-node-deps: $*" >&2; }

missing=()
for pkg in $NODE_DEBIAN_PACKAGES; do
  name="${pkg%%=*}"
  dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed" || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { log "need root to install: ${missing[*]}"; exit 1; }
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  }
fi
for pkg in $NODE_DEBIAN_PACKAGES; do
  name="${pkg%%=*}" want="${pkg#*=}"
  have="$(dpkg-query -W -f='${Version}' "$name")"
  [ "$have" = "$want" ] || log "note: $name $have (proven with $want)"
done
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  log "adding the Rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl >/dev/null
fi
