#!/usr/bin/env bash
# bootstrap.sh — installs what building, testing and running jobq need on Debian 12, and nothing
# when it is all there already (one dpkg query, well under a second). Safe to run again and again.
#
# Prints the path of nothing; its contract is the exit status: 0 when everything is present.
# Liquibase comes from the npm package liquibase@4.28.1 (which ships the real CLI) and is kept in
# a cache outside the clone ($JOBQ_CACHE, default ~/.cache/jobq) so new clones do not download it.
set -euo pipefail

LIQUIBASE_VERSION=4.28.1
JOBQ_CACHE=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
LIQUIBASE_DIR=$JOBQ_CACHE/liquibase-$LIQUIBASE_VERSION
# Offline validation of deploy/k8s (tests/deploy/test_k8s.sh): the Kubernetes API schemas compiled
# to validators (npm kubernetes-models) and a YAML parser (npm yaml), cached beside Liquibase.
K8S_MODELS_VERSION=5.1.0
YAML_VERSION=2.9.1
K8S_VALIDATE_DIR=$JOBQ_CACHE/k8s-validate-$K8S_MODELS_VERSION-yaml-$YAML_VERSION
# The console's browser tests (tests/browser/): puppeteer-core drives Debian's chromium (it
# downloads no browser of its own), cached beside Liquibase. Its 24.x line runs on node 18 (Debian
# 12's); 25.x wants node 22.
PUPPETEER_CORE_VERSION=24.43.1
PUPPETEER_DIR=$JOBQ_CACHE/puppeteer-core-$PUPPETEER_CORE_VERSION

# Debian packages, by what needs them: build, PostgreSQL server, tests, Liquibase's runtime.
PACKAGES=(
  gcc make pkg-config libc6-dev
  libnng-dev libprotobuf-c-dev protobuf-c-compiler libpq-dev
  postgresql postgresql-client
  libcmocka-dev valgrind
  openssl procps
  pgbouncer
  chromium
)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

missing_packages() {
  local status
  # One dpkg-query for all packages keeps the "nothing to do" path fast.
  status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
  for p in "${PACKAGES[@]}"; do
    grep -qE "^$p ii" <<<"$status" || printf '%s\n' "$p"
  done
}

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [ -n "$v" ] && [ "$v" -ge 17 ]
}

# `bootstrap.sh fuzz` also wants clang with libFuzzer (make fuzz); nothing else needs it.
[ "${1:-}" = fuzz ] && PACKAGES+=(clang libclang-rt-14-dev)
# `bootstrap.sh image` (make image-check): buildah builds deploy/Dockerfile (chroot isolation and
# vfs storage: none of its recommended runtimes or fuse-overlayfs), debootstrap makes its base.
[ "${1:-}" = image ] && PACKAGES+=(buildah debootstrap)

want=()
mapfile -t want < <(missing_packages)
java_ok || want+=(openjdk-17-jre-headless)
command -v npm >/dev/null 2>&1 || want+=(npm)

if [ "${#want[@]}" -gt 0 ]; then
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${want[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${want[*]}"
    log "run this once as root, then try again:"
    printf '  sudo sh -c "%s"\n' "$cmd" >&2
    exit 1
  fi
  log "installing: ${want[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

LB=$LIQUIBASE_DIR/node_modules/liquibase/dist/liquibase/liquibase
if [ ! -x "$LB" ]; then
  log "installing Liquibase $LIQUIBASE_VERSION (npm) into $LIQUIBASE_DIR"
  mkdir -p "$LIQUIBASE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$LIQUIBASE_DIR" "liquibase@$LIQUIBASE_VERSION" >/dev/null
  # The npm tarball does not keep the launcher's execute bit.
  chmod +x "$LB"
fi

if [ ! -f "$K8S_VALIDATE_DIR/node_modules/kubernetes-models/package.json" ] ||
   [ ! -f "$K8S_VALIDATE_DIR/node_modules/yaml/package.json" ]; then
  log "installing kubernetes-models@$K8S_MODELS_VERSION and yaml@$YAML_VERSION (npm) into $K8S_VALIDATE_DIR"
  mkdir -p "$K8S_VALIDATE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$K8S_VALIDATE_DIR" \
    "kubernetes-models@$K8S_MODELS_VERSION" "yaml@$YAML_VERSION" >/dev/null
fi
if [ ! -f "$PUPPETEER_DIR/node_modules/puppeteer-core/package.json" ]; then
  log "installing puppeteer-core@$PUPPETEER_CORE_VERSION (npm) into $PUPPETEER_DIR"
  mkdir -p "$PUPPETEER_DIR"
  npm install --silent --no-audit --no-fund --prefix "$PUPPETEER_DIR" "puppeteer-core@$PUPPETEER_CORE_VERSION" >/dev/null
fi
exit 0
