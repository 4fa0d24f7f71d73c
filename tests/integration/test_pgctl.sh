#!/usr/bin/env bash
# tests/harness/pgctl.sh as `make run` uses it: a cluster in a folder whose parents do not exist
# yet (a fresh clone has no .jobq/) is created exactly there, answers, and stops; a second start
# reuses it.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
. "$root/tests/harness/shlib.sh"
pgctl=$root/tests/harness/pgctl.sh
tmp=$(mktemp -d /tmp/jq-pgctl-test.XXXXXX)
chmod 755 "$tmp" # the cluster runs as the postgres user when we are root
dir=$tmp/fresh-clone/.jobq/pg
trap '"$pgctl" destroy "$dir" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

url=$(JOBQ_PG_FSYNC=off "$pgctl" start "$dir") || fail "start in a folder that does not exist yet"
[ -f "$dir/data/PG_VERSION" ] || fail "the cluster is not in $dir: $(ls -R "$tmp" | head -20)"
[ "$(psql -qAtX "$url" -c 'SELECT 1')" = 1 ] || fail "no answer at $url"
ok "a cluster made under missing parent folders lives there and answers ($url)"
"$pgctl" stop "$dir"
! psql -qAtX "$url" -c 'SELECT 1' >/dev/null 2>&1 || fail "still answering after stop"
url2=$("$pgctl" start "$dir") || fail "restart"
[ "$(psql -qAtX "$url2" -c 'SELECT 1')" = 1 ] || fail "no answer after restart"
ok "stop stops it, and a second start reuses it"
echo "test_pgctl: all passed"
