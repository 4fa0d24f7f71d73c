#!/usr/bin/env bash
# The operator's console in a real headless Chromium (Debian's package, driven by puppeteer-core
# from deploy/bootstrap.sh's cache) against a real jobqd on a private copy of the migrated
# database: the overview's counts and chart of completed jobs, a failed job retried from the page, bulk retry and cancel,
# payloads, outputs and errors that hold markup shown as text with no script run (dialogs are
# watched), a queue paused and resumed and its limits set from the overview, a running job's
# progress and its cancel from the page, a reader who sees no action and whose actions answer 403
# and change nothing, and no page error or Content-Security-Policy violation. The checks are in console_check.mjs.
#
# On a failure the page's screenshot is saved in the test's temporary folder (kept then; its path
# is printed). JOBQ_CONSOLE_SCREENSHOT=FILE saves the overview for the README (docs/console.png).
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_console_browser
url=${base%/*}/$db
J=$build/bin/jobq
cache=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
ver() { sed -n "s/^$1=//p" "$root/deploy/bootstrap.sh"; }
puppeteer_dir=$cache/puppeteer-core-$(ver PUPPETEER_CORE_VERSION)
tmp=$(mktemp -d /tmp/jq-console-browser.XXXXXX)
keep_tmp=0
pids=()

. "$root/tests/harness/shlib.sh"

cleanup() {
  local rc=$?
  kill_all "${pids[@]}"
  if [ "$rc" -ne 0 ] && [ -f "$tmp/jobqd.log" ]; then
    echo "--- jobqd log (last 30 lines)"; tail -n 30 "$tmp/jobqd.log"
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && ls "$tmp"/*.png >/dev/null 2>&1; then
    echo "screenshots kept in $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

command -v node >/dev/null || fail "node not found (deploy/bootstrap.sh installs npm)"
chromium=$(command -v chromium || true)
[ -n "$chromium" ] || fail "chromium not found (deploy/bootstrap.sh installs it)"
[ -f "$puppeteer_dir/node_modules/puppeteer-core/package.json" ] ||
  fail "puppeteer-core not in $puppeteer_dir (run deploy/bootstrap.sh)"

# ------------------------------------------------------------------ the service
PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
admin=admin-token-$RANDOM$RANDOM-0123456789
reader=reader-token-$RANDOM$RANDOM-0123456789
printf 'ops admin %s\nlook reader %s\n' "$admin" "$reader" >"$tmp/credentials"
chmod 600 "$tmp/credentials"
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
console=127.0.0.1:$(free_port)
"$build/bin/jobqd" --database-url="$url" --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" \
  --http-addr="127.0.0.1:$(free_port)" --console-addr="$console" --credentials-file="$tmp/credentials" \
  --log-format=text >"$tmp/jobqd.log" 2>&1 &
pids+=($!)
up() { curl -sf -H "Authorization: Bearer $admin" "http://$console/api/v1/whoami" >/dev/null; }
wait_until 20 up || fail "the console did not answer at $console"
ok "jobqd with its console at $console"

# ------------------------------------------------------------------ jobs to look at
# mail: 3 pending, one of them the markup payload; bills: 4 failed (one by a markup error), 1 pending.
export JOBQ_AUTH_TOKEN=$admin
"$J" enqueue --queue mail --payload "hello" >/dev/null
"$J" enqueue --queue mail --payload "second" >/dev/null
xss_id=$("$J" enqueue --queue mail --payload '<script>alert(1)</script>')
for i in 1 2 3 4; do "$J" enqueue --queue bills --payload "bill $i" >/dev/null; done
"$J" claim --queue bills --limit 4 --lease 300 --json >"$tmp/claimed.json"
n=0
while read -r line; do
  id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' <<<"$line")
  token=$(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' <<<"$line")
  [ -n "$id" ] && [ -n "$token" ] || fail "claim printed: $line"
  err="card declined $n"
  [ $n -eq 0 ] && { err='<img src=x onerror=alert(1)>'; bad_error_id=$id; }
  "$J" fail --id "$id" --token "$token" --error "$err" --final >/dev/null
  n=$((n + 1))
done <"$tmp/claimed.json"
[ $n -eq 4 ] || fail "claimed $n jobs of bills, not 4"
"$J" enqueue --queue bills --payload "bill 5" >/dev/null
for i in 1 2; do
  "$J" enqueue --queue done --payload "done $i" >/dev/null
  line=$("$J" claim --queue done --json)
  id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' <<<"$line")
  out=()
  [ $i -eq 2 ] && { out=(--output '<img src=x onerror=alert(1)>'); output_id=$id; }
  "$J" complete --id "$id" --token "$(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' <<<"$line")" "${out[@]}" >/dev/null
done
# run: two jobs processing, the first with progress; slow: one pending job, paused.
"$J" enqueue --queue run --payload "run 1" >/dev/null
"$J" enqueue --queue run --payload "run 2" >/dev/null
"$J" claim --queue run --limit 2 --lease 600 --json >"$tmp/running.json"
mapfile -t run_ids < <(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$tmp/running.json")
mapfile -t run_tokens < <(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' "$tmp/running.json")
[ "${#run_ids[@]}" = 2 ] || fail "claimed $(cat "$tmp/running.json")"
"$J" heartbeat --id "${run_ids[0]}" --token "${run_tokens[0]}" --lease 600 --progress 40 --message resizing >/dev/null
"$J" enqueue --queue slow --payload "slow 1" >/dev/null
"$J" pause slow >/dev/null
unset JOBQ_AUTH_TOKEN
ok "3 jobs in mail, 4 failed and 1 pending in bills, 2 completed in done (one with an output), 2 running in run, slow paused"

# ------------------------------------------------------------------ the browser
export CONSOLE_URL="http://$console" ADMIN_TOKEN=$admin READER_TOKEN=$reader SHOT_DIR=$tmp \
  PUPPETEER_DIR=$puppeteer_dir CHROMIUM=$chromium XSS_JOB=$xss_id XSS_ERROR_JOB=$bad_error_id \
  JOBQ_BIN=$J OUTPUT_JOB=$output_id PROGRESS_JOB=${run_ids[0]} RUNNING_JOB=${run_ids[1]}
node "$root/tests/browser/console_check.mjs"
