#!/usr/bin/env bash
# Installs the pinned IAM evaluation engine (@cloud-copilot/iam-simulate) that
# tests/trust_policy.rs runs the operator's generated policy through, into a cache
# keyed by its version; prints the install directory. A no-op when already there.
set -euo pipefail
version=0.1.173
dir="${IAMWRIGHT_CACHE:-$HOME/.cache/iamwright}/node-$version"
if [ ! -f "$dir/node_modules/@cloud-copilot/iam-simulate/package.json" ]; then
  command -v npm >/dev/null || { echo "iam-simulate: npm (Node 20+) is required" >&2; exit 1; }
  mkdir -p "$dir"
  (cd "$dir" && echo '{"private": true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error "@cloud-copilot/iam-simulate@$version" >&2)
fi
echo "$dir"
