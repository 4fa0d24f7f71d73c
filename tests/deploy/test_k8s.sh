#!/usr/bin/env bash
# test_k8s.sh — the deploy/k8s kustomize base renders offline and its objects are valid.
#
# 1. Render: `kubectl kustomize deploy/k8s` when kubectl is installed (it embeds kustomize and
#    needs no cluster); the built-in renderer of k8s_check.mjs (resources, labels, images only)
#    otherwise. With kubectl, both are run and must agree, so the fallback stays honest.
# 2. Validate every object against the Kubernetes API schemas, offline: the npm package
#    kubernetes-models (installed by deploy/bootstrap.sh into the cache) carries them as compiled
#    validators; unknown fields are caught from its type declarations.
# 3. jobq's rules (k8s_check.mjs): security contexts, probes, drain timing, Service/PDB selectors,
#    ports against the ConfigMap, ConfigMap keys against `jobqd --help`, worker flags against
#    `jobq worker --help`, the image's uid, Secret references, the NetworkPolicies.
# No cluster, no network. The container image itself is checked by test_dockerfile.sh.
set -euo pipefail
root=${JOBQ_TEST_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${JOBQ_TEST_BUILD:-$root/build}
cache=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
# The folder deploy/bootstrap.sh installs the npm packages into (its versions, read from it).
ver() { sed -n "s/^$1=//p" "$root/deploy/bootstrap.sh"; }
export JOBQ_K8S_VALIDATE_DIR=${JOBQ_K8S_VALIDATE_DIR:-$cache/k8s-validate-$(ver K8S_MODELS_VERSION)-yaml-$(ver YAML_VERSION)}
check=$root/tests/deploy/k8s_check.mjs
kubectl=${JOBQ_KUBECTL:-kubectl} # JOBQ_KUBECTL=none forces the built-in renderer
tmp=$(mktemp -d /tmp/jobq-k8s.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

command -v node >/dev/null || { echo "test_k8s: node not found (deploy/bootstrap.sh installs npm)"; exit 1; }
[ -d "$JOBQ_K8S_VALIDATE_DIR/node_modules/kubernetes-models" ] ||
  { echo "test_k8s: kubernetes-models not in $JOBQ_K8S_VALIDATE_DIR (run deploy/bootstrap.sh)"; exit 1; }

node "$check" render "$root/deploy/k8s" >"$tmp/builtin.json"
opts=(--same-as "$tmp/builtin.json")
if command -v "$kubectl" >/dev/null && "$kubectl" kustomize "$root/deploy/k8s" >"$tmp/rendered.yaml" 2>"$tmp/kubectl.err"; then
  echo "test_k8s: rendered with kubectl kustomize ($("$kubectl" version --client 2>/dev/null | grep -i kustomize || echo "version unknown"))"
elif command -v "$kubectl" >/dev/null && ! grep -qi 'unknown command' "$tmp/kubectl.err"; then
  cat "$tmp/kubectl.err"; echo "test_k8s: kubectl kustomize failed"; exit 1
else
  echo "test_k8s: kubectl not available: rendered with the built-in renderer (resources, labels, images)"
  cp "$tmp/builtin.json" "$tmp/rendered.yaml"; opts=()
fi

# What the checks compare against: the image's uid and migrations folder (deploy/Dockerfile) and
# the binaries' own --help, when they are built.
df=$root/deploy/Dockerfile
uid=$(sed -n 's/^USER \([0-9][0-9]*\).*/\1/p' "$df" | tail -n1)
migdir=$(sed -n 's#^COPY migrations/ \(/[^ ]*\)/\{0,1\}$#\1#p' "$df" | tail -n1)
[ -n "$uid" ] && opts+=(--uid "$uid")
[ -n "$migdir" ] && opts+=(--migrations-dir "${migdir%/}")
if [ -x "$build/bin/jobqd" ] && [ -x "$build/bin/jobq" ]; then
  "$build/bin/jobqd" --help >"$tmp/jobqd.help"
  "$build/bin/jobq" worker --help >"$tmp/worker.help" 2>&1 || true
  opts+=(--jobqd-help "$tmp/jobqd.help" --worker-help "$tmp/worker.help")
else
  echo "test_k8s: $build/bin has no jobqd/jobq: ConfigMap keys and worker flags not checked against --help"
fi

node "$check" check "$tmp/rendered.yaml" "${opts[@]}"
echo "test_k8s: ok"
