#!/usr/bin/env bash
# run-dev.sh BUILD — `make run`: the embedded PostgreSQL under .jobq/ (kept between runs), the
# migrations applied, and jobqd in the foreground. Ctrl-C stops jobqd, then the database.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
pgctl=$root/tests/harness/pgctl.sh
dir=$root/.jobq/pg

url=$("$pgctl" start "$dir")
trap '"$pgctl" stop "$dir"; echo "make run: PostgreSQL stopped" >&2' EXIT
echo "make run: PostgreSQL at $url (data in .jobq/pg, log in .jobq/pg/server.log)" >&2
JOBQ_DATABASE_URL=$url "$root/deploy/migrate.sh" update
export JOBQ_DATABASE_URL=$url
echo "make run: starting jobqd; Ctrl-C stops it and the database" >&2
"$root/$build/bin/jobqd" --log-format="${JOBQ_LOG_FORMAT:-text}" || true
