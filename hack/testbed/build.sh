#!/usr/bin/env bash
# Builds (once) the test bed's binaries from pinned Go modules and a Python venv with
# moto, into ~/.cache/iamwright/testbed-<hash of versions.env>/. A warm cache is reused
# without touching the network. Prints the cache directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
source "$here/versions.env"
key="$(sha256sum <"$here/versions.env" | cut -c1-12)"
cache="${IAMWRIGHT_CACHE:-$HOME/.cache/iamwright}/testbed-$key"
bin="$cache/bin"
mkdir -p "$bin"
# One build per cache at a time (two beds started at once with a cold cache would
# otherwise both write the same binaries). Free when the cache is warm.
exec 8>"$cache/.build.lock"
flock 8

export GOTOOLCHAIN=local   # no toolchain download is possible here
export GOFLAGS="-mod=mod -buildvcs=false"
# The checksum database is not reachable from every machine; the module proxy is.
export GOSUMDB=off
export CGO_ENABLED=0

log() { echo "testbed-build: $*" >&2; }

# build_kube [CMD...]: the k8s.io/kubernetes commands to build (default: the control
# plane the fast bed needs); each is built once and reused.
build_kube() {
  local want=() cmds=("$@")
  [ ${#cmds[@]} -gt 0 ] || cmds=(kube-apiserver kube-controller-manager kubectl)
  for b in "${cmds[@]}"; do
    [ -x "$bin/$b" ] || want+=("$b")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  local mod="$cache/src/kube"
  mkdir -p "$mod"
  local kgomod
  kgomod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  local minor="${KUBE_VERSION#v1.}"
  {
    echo "module iamwright.dev/testbed/kube"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$kgomod" | awk -v v="v0.$minor" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  for b in "${want[@]}"; do
    log "building $b $KUBE_VERSION (minutes on a cold machine)"
    (cd "$mod" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}" -o "$bin/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$bin/$b.tmp" "$bin/$b"
  done
}

build_etcd() {
  [ -x "$bin/etcd" ] && return 0
  local mod="$cache/src/etcd"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<GOMOD
module iamwright.dev/testbed/etcd

go 1.24.0

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
GOMOD
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_helm() {
  [ -x "$bin/helm" ] && return 0
  log "building helm $HELM_VERSION"
  (cd "$cache" && GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
}

build_moto() {
  [ -x "$cache/venv/bin/moto_server" ] && return 0
  log "installing moto[server]==$MOTO_VERSION into a venv"
  rm -rf "$cache/venv"
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# The node's own parts: kubelet, kube-proxy and kube-scheduler from the same module and
# version as the API server, and the pod sandbox ("pause") program, a few lines of C of
# our own built static (no registry to pull a pause image from). containerd, runc, the
# CNI plugins, iptables and buildah come from Debian (node-deps.sh).
build_node() {
  build_kube kubelet kube-proxy kube-scheduler
  if [ ! -x "$bin/pause" ]; then
    log "building the pod sandbox program (pause)"
    local cc=gcc
    command -v musl-gcc >/dev/null && cc=musl-gcc
    "$cc" -static -Os -o "$bin/pause.tmp" "$here/pause.c"
    strip "$bin/pause.tmp"
    mv "$bin/pause.tmp" "$bin/pause"
  fi
  [ -f "$cache/images/pause.tar" ] && return 0
  log "building the pause image (buildah, from scratch)"
  mkdir -p "$cache/images"
  local b=(buildah --root "$cache/images/storage" --runroot "$cache/images/run" --storage-driver vfs) c
  c="$("${b[@]}" from scratch)"
  "${b[@]}" copy "$c" "$bin/pause" /pause >/dev/null
  "${b[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  "${b[@]}" commit --quiet "$c" localhost/pause:iamwright >/dev/null
  "${b[@]}" rm "$c" >/dev/null
  "${b[@]}" push --quiet localhost/pause:iamwright "oci-archive:$cache/images/pause.tar.tmp:localhost/pause:iamwright"
  mv "$cache/images/pause.tar.tmp" "$cache/images/pause.tar"
  rm -rf "$cache/images/storage" "$cache/images/run"
}

what="${1:-all}"
case "$what" in
  all) build_moto; build_etcd; build_kube; build_helm ;;
  kube) build_kube ;;
  etcd) build_etcd ;;
  helm) build_helm ;;
  moto) build_moto ;;
  node) build_node ;;
  *) echo "usage: $0 [all|kube|etcd|helm|moto|node]" >&2; exit 2 ;;
esac
echo "$cache"
