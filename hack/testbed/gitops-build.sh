#!/usr/bin/env bash
# Builds (once) the GitOps tools the gitops suite drives, from their pinned Go modules,
# into ~/.cache/iamwright/gitops-<hash of gitops-versions.env and gitops-argocd-main.go>/:
# one `argocd` binary holding only the application controller, the repo server and the
# git askpass helper (it dispatches on its name or ARGOCD_BINARY_NAME like the upstream
# one; gitops-up.sh links the names), the repo server's git-verify-wrapper.sh from the
# same module, Flux's source-controller
# and kustomize-controller, and the CRDs of all three taken from the same module
# sources. Redis comes from Debian (apt). A warm cache is reused without touching the
# network. Prints the cache directory on stdout.
#
# The modules carry `replace ... => ./gitops-engine` / `=> ./api` directives, so they
# cannot be `go install`ed: each is downloaded with `go mod download`, copied, its
# nested module (also downloaded from the proxy at the same version) put where the
# replace points, and built inside that copy with -trimpath.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
source "$here/gitops-versions.env"
key="$(cat "$here/gitops-versions.env" "$here/gitops-argocd-main.go" | sha256sum | cut -c1-12)"
cache="${IAMWRIGHT_CACHE:-$HOME/.cache/iamwright}/gitops-$key"
bin="$cache/bin"
mkdir -p "$bin" "$cache/crds" "$cache/src"
exec 8>"$cache/.build.lock"
flock 8

export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false -modcacherw"
export GOSUMDB=off
export CGO_ENABLED=0
# Go's module and build caches of these builds (about 9 GB, nothing else uses them)
# live under the cache directory while building and are removed once all is built.
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"

log() { echo "gitops-build: $(date -u +%H:%M:%S) $*" >&2; }

# moddir MODULE@VERSION: downloads a module and prints its (read-only) directory.
moddir() {
  (cd "$cache" && go mod download -json "$1") | python3 -c '
import json, sys
m = json.load(sys.stdin)
if "Error" in m or "Dir" not in m:
    sys.exit("gitops-build: " + m.get("Error", "no directory for " + sys.argv[1]))
print(m["Dir"])' "$1"
}

# stage NAME MODULE@VERSION [NESTED_DIR NESTED_MODULE@VERSION]: a writable copy of the
# module, with the nested module the main one replaces by a relative path.
stage() {
  local dst="$cache/src/$1" src
  rm -rf "$dst"
  src="$(moddir "$2")"
  cp -r "$src" "$dst"
  chmod -R u+w "$dst"
  if [ $# -ge 4 ]; then
    rm -rf "${dst:?}/$3"
    src="$(moddir "$4")"
    cp -r "$src" "$dst/$3"
    chmod -R u+w "$dst/$3"
  fi
}

build_argocd() {
  [ -x "$bin/argocd" ] && return 0
  log "fetching the Go toolchain $ARGOCD_GOTOOLCHAIN (a module on the proxy) and argo-cd $ARGOCD_VERSION"
  # The go command verifies a toolchain against the checksum database even when the
  # rest of the build has it off; once fetched, that toolchain's own go is run
  # directly (GOTOOLCHAIN=local), so nothing else needs the database.
  local goroot
  goroot="$(cd "$cache" && env -u GOSUMDB GOTOOLCHAIN="$ARGOCD_GOTOOLCHAIN" go env GOROOT)"
  local -x PATH="$goroot/bin:$PATH"
  stage argocd "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" \
    gitops-engine "github.com/argoproj/argo-cd/gitops-engine/v3@$ARGOCD_VERSION"
  local src="$cache/src/argocd"
  # Our own main: the upstream one links the API server, UI, Dex, CLI and the other
  # controllers too, which the suite does not run.
  mkdir -p "$src/cmd/iamwright-argocd"
  cp "$here/gitops-argocd-main.go" "$src/cmd/iamwright-argocd/main.go"
  log "building argocd $ARGOCD_VERSION (application-controller, repo-server) with $ARGOCD_GOTOOLCHAIN"
  (cd "$src" && go build -trimpath \
    -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" \
    -o "$bin/argocd.tmp" ./cmd/iamwright-argocd)
  cp "$src/manifests/crds/application-crd.yaml" "$src/manifests/crds/appproject-crd.yaml" "$cache/crds/"
  # The repo server runs this helper of upstream's image for every revision (commit
  # signature check; with no GnuPG keys configured it verifies nothing).
  install -m 0755 "$src/hack/git-verify-wrapper.sh" "$bin/git-verify-wrapper.sh"
  mv "$bin/argocd.tmp" "$bin/argocd"
  rm -rf "$src"
  log "argocd done"
}

# build_flux NAME VERSION: one of Flux's controllers (main package at the module root).
build_flux() {
  local name="$1" version="$2"
  [ -x "$bin/$name" ] && return 0
  log "fetching $name $version"
  stage "$name" "github.com/fluxcd/$name@$version" api "github.com/fluxcd/$name/api@$version"
  local src="$cache/src/$name" r
  # Dependencies of the release the module proxy here does not serve, each replaced by
  # the nearest version it does (FLUX_REPLACE in gitops-versions.env).
  for r in ${FLUX_REPLACE:-}; do
    (cd "$src" && go mod edit -replace "$r")
  done
  log "building $name $version"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" .)
  cp "$src"/config/crd/bases/*.yaml "$cache/crds/"
  mv "$bin/$name.tmp" "$bin/$name"
  rm -rf "$src"
  log "$name done"
}

install_redis() {
  command -v redis-server >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || { log "need root to install $REDIS_DEBIAN_PACKAGE"; exit 1; }
  log "installing $REDIS_DEBIAN_PACKAGE (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$REDIS_DEBIAN_PACKAGE" >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "$REDIS_DEBIAN_PACKAGE" >/dev/null
  }
  # Debian starts its own instance; the suite runs its own on a free port.
  systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
}

what="${1:-all}"
case "$what" in
  all) install_redis; build_flux source-controller "$FLUX_SOURCE_VERSION"; build_flux kustomize-controller "$FLUX_KUSTOMIZE_VERSION"; build_argocd ;;
  argocd) build_argocd ;;
  flux) build_flux source-controller "$FLUX_SOURCE_VERSION"; build_flux kustomize-controller "$FLUX_KUSTOMIZE_VERSION" ;;
  redis) install_redis ;;
  *) echo "usage: $0 [all|argocd|flux|redis]" >&2; exit 2 ;;
esac
if [ -d "$cache/go" ] && [ -x "$bin/argocd" ] && [ -x "$bin/source-controller" ] && [ -x "$bin/kustomize-controller" ]; then
  rm -rf "$cache/go" "$cache/src"
fi
echo "$cache"
