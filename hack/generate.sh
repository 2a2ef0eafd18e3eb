#!/usr/bin/env bash
# Regenerates every generated file: crds/crds.yaml, the chart's CRD template and the
# API reference docs/api.md.
# Unit tests fail when the committed files differ from what this writes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamwright/cargo-target}"
cargo build --locked --quiet --bin iamwright
"$CARGO_TARGET_DIR/debug/iamwright" crds >crds/crds.yaml
"$CARGO_TARGET_DIR/debug/iamwright" crds --helm >charts/iamwright/templates/crds.yaml
"$CARGO_TARGET_DIR/debug/iamwright" crds --reference >docs/api.md
echo "generated crds/crds.yaml, charts/iamwright/templates/crds.yaml and docs/api.md"
# The Argo CD snippet embeds the one health script once per kind.
python3 - "$repo/charts/iamwright/argocd" <<'PY'
import sys
d = sys.argv[1]
lua = open(f"{d}/health.lua").read()
out = ["# Argo CD health checks for iamwright: merge into the argocd-cm ConfigMap",
       "# (kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm.yaml).",
       "# Generated from health.lua by hack/generate.sh; a test checks they agree.",
       "data:"]
for kind in ["IamPolicy", "IamRole", "InstanceProfileBinding", "IamUserAccessKey", "IamGroup"]:
    out.append(f"  resource.customizations.health.iamwright.dev_{kind}: |")
    out += ["    " + l if l else "" for l in lua.rstrip("\n").split("\n")]
open(f"{d}/argocd-cm.yaml", "w").write("\n".join(out) + "\n")
PY
echo "generated charts/iamwright/argocd/argocd-cm.yaml"
# The README's GitOps section, from the files the gitops suite uses.
python3 "$repo/hack/gen-gitops-readme.py"
echo "generated README.md's GitOps section"
