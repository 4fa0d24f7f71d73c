#!/usr/bin/env bash
# run.sh BUILD — runs every test against a throwaway PostgreSQL that it starts and always stops
# (also on failure or Ctrl-C). Test binaries come from BUILD/tests/{unit,integration,chaos}; shell tests
# are tests/**/test_*.sh. Each cmocka binary's own summary is shown; the last line is the total:
# "N passed, N failed". Exit status 0 only when nothing failed.
#
# Tests find their world through the environment: JOBQ_TEST_DATABASE_URL (a migrated database,
# also a template for private copies), JOBQ_TEST_PG_DIR (the cluster, for restart tests),
# JOBQ_TEST_BUILD (binaries under $JOBQ_TEST_BUILD/bin), JOBQ_TEST_ROOT (the repository).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$root/${1:-build}" && pwd) || { echo "run.sh: no build folder ${1:-build}" >&2; exit 2; }
filter=${JOBQ_TEST_FILTER:-}
skip=" ${JOBQ_TEST_SKIP:-} " # names (as printed after ===) not to run, for `make check-asan`
pgctl=$root/tests/harness/pgctl.sh

tmp=$(mktemp -d /tmp/jobq-test.XXXXXX)
chmod 755 "$tmp" # the cluster inside runs as the postgres user when we are root
cleanup() { "$pgctl" destroy "$tmp/pg" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

url=$(JOBQ_PG_FSYNC=off "$pgctl" start "$tmp/pg") || { echo "run.sh: PostgreSQL did not start" >&2; exit 1; }
export JOBQ_TEST_DATABASE_URL=$url JOBQ_TEST_PG_DIR=$tmp/pg JOBQ_TEST_BUILD=$build JOBQ_TEST_ROOT=$root
echo "run.sh: PostgreSQL at $url"
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update >"$tmp/migrate.log" 2>&1 \
  || { cat "$tmp/migrate.log"; echo "run.sh: migrations failed" >&2; exit 1; }

passed=0 failed=0 failed_names=()

run_one() {
  local name=$1; shift
  local out=$tmp/out.txt rc p f
  local started=$SECONDS
  echo "=== $name"
  timeout --kill-after=10 "${JOBQ_TEST_TIMEOUT:-300}" "$@" >"$out" 2>&1
  rc=$?
  cat "$out"
  echo "--- $name: $((SECONDS - started)) s"
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n1)
  if [ -n "$p" ] || [ -n "$f" ]; then
    p=${p:-0} f=${f:-0}
    # A binary that reported success but exited non-zero (sanitizer at exit, leak) still fails.
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  elif [ "$rc" -eq 0 ]; then
    p=1 f=0
  else
    p=0 f=1
  fi
  [ "$rc" -eq 124 ] && echo "run.sh: $name timed out"
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -gt 0 ] && failed_names+=("$name (exit $rc)")
}

for t in "$build"/tests/unit/test_* "$build"/tests/integration/test_* "$build"/tests/chaos/test_* "$root"/tests/*/test_*.sh; do
  [ -x "$t" ] || continue
  case $t in *.d|*.o) continue ;; esac
  name=${t#"$build"/tests/}; name=${name#"$root"/tests/}
  [ -n "$filter" ] && [[ $name != *$filter* ]] && continue
  [[ $skip == *" $name "* ]] && { echo "=== $name: skipped (JOBQ_TEST_SKIP)"; continue; }
  run_one "$name" "$t"
done

echo
for n in "${failed_names[@]}"; do echo "FAILED: $n"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
