#!/usr/bin/env bash
# Builds the operator's container image from the project's Dockerfile, offline: the
# static binary with the same cargo command as the Dockerfile's build stage, then the
# Dockerfile's final stage fed that binary (`--build-arg BINARY=prebuilt`) by buildah,
# written as an OCI archive. Prints the archive's path; the image inside is named
# localhost/iamwright:$IAMWRIGHT_IMAGE_TAG (default `dev`).
#
# usage: hack/image.sh      needs hack/testbed/node-deps.sh's packages (buildah, musl-tools)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"
tag="${IAMWRIGHT_IMAGE_TAG:-dev}"
out="${IAMWRIGHT_CACHE:-$HOME/.cache/iamwright}/image"
log() { echo "image: $*" >&2; }

log "static binary (cargo build --release --target x86_64-unknown-linux-musl)"
cargo build --locked --release --target x86_64-unknown-linux-musl --bin iamwright >&2
ctx="$out/context"
rm -rf "$ctx"
mkdir -p "$ctx"
cp "$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/iamwright" "$ctx/iamwright"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"

# A storage of our own (vfs: no overlay-on-overlay surprises), so nothing of the host's
# containers is touched.
b=(buildah --root "$out/storage" --runroot "$out/run" --storage-driver vfs)
log "image localhost/iamwright:$tag from Dockerfile (BINARY=prebuilt)"
"${b[@]}" bud --quiet --pull-never --build-arg BINARY=prebuilt -f "$repo/Dockerfile" \
  -t "localhost/iamwright:$tag" "$ctx" >&2
archive="$out/iamwright-$tag.tar"
rm -f "$archive.tmp"
"${b[@]}" push --quiet "localhost/iamwright:$tag" "oci-archive:$archive.tmp:localhost/iamwright:$tag" >&2
mv "$archive.tmp" "$archive"
# Keep the storage small: only the latest build is needed.
"${b[@]}" rmi --prune >/dev/null 2>&1 || true
echo "$archive"
