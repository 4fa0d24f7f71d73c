#!/usr/bin/env bash
# test_k8s_run.sh — the deploy/k8s base's settings, run with the build's jobqd and jobq: the
# Secrets from deploy/k8s/make-secrets.sh mounted as the kubelet would, jobqd with the
# ConfigMap's environment (mutual TLS on RPC and PUB, role credentials, /metrics for a reader
# token), and the worker Deployment's own command and environment completing a job. The steps are
# in tests/deploy/k8s_scenario.sh, which `make image-check` runs with the image's binaries too.
set -euo pipefail
build=${JOBQ_TEST_BUILD:?run through tests/run.sh}
base=${JOBQ_TEST_DATABASE_URL:?}
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
maint=${base%/*}/postgres
db=jq_k8s_run_test
tmp=$(mktemp -d /tmp/jq-k8s-run.XXXXXX)
cache=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
ver() { sed -n "s/^$1=//p" "$root/deploy/bootstrap.sh"; }
export JOBQ_K8S_VALIDATE_DIR=${JOBQ_K8S_VALIDATE_DIR:-$cache/k8s-validate-$(ver K8S_MODELS_VERSION)-yaml-$(ver YAML_VERSION)}
. "$root/tests/harness/shlib.sh"
. "$root/tests/deploy/k8s_scenario.sh"

cleanup() {
  local rc=$? p
  for p in "${K8S_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    for f in "$tmp"/work/*.log; do [ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }; done
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

command -v node >/dev/null || fail "node not found (deploy/bootstrap.sh installs npm)"
PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null

mkdir "$tmp/work" "$tmp/pods"
K8S_REPO=$root K8S_TOOLS=$root K8S_WORK=$tmp/work K8S_FILES=$tmp/pods K8S_SEEN=$tmp/pods
K8S_DB_URL=${base%/*}/$db
k8s_ok() { ok "$@"; }
k8s_fail() { fail "$@"; }
k8s_free_port() { free_port; }
# The image's paths are the build's binaries here; /bin/sh and the rest are the machine's.
k8s_cmd() {
  local -a env
  mapfile -d '' env <"$1"
  shift
  case $1 in
    /usr/local/bin/jobqd) set -- "$build/bin/jobqd" "${@:2}" ;;
    /usr/local/bin/jobq) set -- "$build/bin/jobq" "${@:2}" ;;
  esac
  K8S_CMD=(env -i "${env[@]}" "$@")
}
k8s_scenario
echo "test_k8s_run: all passed"
