#!/usr/bin/env bash
# Regenerates every generated file: crds/crds.yaml and the chart's CRD template.
# Unit tests fail when the committed files differ from what this writes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"
cargo build --locked --quiet --bin iamwright
"$CARGO_TARGET_DIR/debug/iamwright" crds >crds/crds.yaml
"$CARGO_TARGET_DIR/debug/iamwright" crds --helm >charts/iamwright/templates/crds.yaml
echo "generated crds/crds.yaml and charts/iamwright/templates/crds.yaml"
