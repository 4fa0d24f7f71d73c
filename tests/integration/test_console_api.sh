#!/usr/bin/env bash
# The console's JSON API (/api/v1 on --console-addr) with curl against a real jobqd on a private
# copy of the migrated database: off unless asked for, and never on --http-addr; the RPC's roles
# (401 without or with an unknown token, 403 outside the role); the RPC's validation, with the
# very message the CLI gets over the RPC; every route's answer; keyset paging; JSON output that
# stays valid and inert for any payload (quotes, control characters, markup, U+2028, bytes that
# are not UTF-8); security headers on every answer.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_console_api
url=${base%/*}/$db
J=$build/bin/jobq
tmp=$(mktemp -d /tmp/jq-console-api.XXXXXX)
pids=()

. "$root/tests/harness/shlib.sh"

cleanup() {
  local rc=$?
  kill_all "${pids[@]}"
  if [ "$rc" -ne 0 ] && [ -f "$tmp/jobqd.log" ]; then
    echo "--- jobqd log (last 30 lines)"; tail -n 30 "$tmp/jobqd.log"
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

command -v node >/dev/null || fail "node not found (deploy/bootstrap.sh installs npm)"

# j FILE EXPR: EXPR evaluated over the JSON document in FILE (as d); fails on text that is not JSON.
j() { node -e 'const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const v = eval(process.argv[2]); console.log(typeof v === "string" ? v : JSON.stringify(v));' "$1" "$2"; }

# call TOKEN METHOD PATH [BODY]: the answer's body in $tmp/body, headers in $tmp/headers; prints the status.
call() {
  local token=$1 method=$2 path=$3 body=${4-}
  local auth=()
  [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
  if [ -n "$body" ]; then
    curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -X "$method" "${auth[@]}" \
      -H 'Content-Type: application/json' --data-binary "$body" "http://$console$path"
  else
    curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -X "$method" "${auth[@]}" "http://$console$path"
  fi
}

# expect STATUS CODE TOKEN METHOD PATH [BODY]: the call answers STATUS with error code CODE ("" for OK).
expect() {
  local want=$1 code=$2; shift 2
  local got
  got=$(call "$@")
  [ "$got" = "$want" ] || fail "$2 $3 answered $got, not $want: $(head -c 300 "$tmp/body")"
  if [ -n "$code" ]; then
    [ "$(j "$tmp/body" d.code)" = "$code" ] || fail "$2 $3: code $(j "$tmp/body" d.code), not $code"
  fi
}

PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null

# ------------------------------------------------------------------ off by default, own address
http=127.0.0.1:$(free_port)
rc=0
"$build/bin/jobqd" --database-url="$url" --http-addr="$http" --console-addr="$http" >"$tmp/same.log" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q -- "--console-addr must differ from --http-addr" "$tmp/same.log" ||
  fail "--console-addr equal to --http-addr: exit $rc, $(cat "$tmp/same.log")"
"$build/bin/jobqd" --help >"$tmp/help.txt"
grep -q "env JOBQ_CONSOLE_ADDR, default off" <<<"$(grep -A3 -- "--console-addr" "$tmp/help.txt")" ||
  fail "--help: no --console-addr, off by default, from JOBQ_CONSOLE_ADDR"
ok "--console-addr must differ from --http-addr; --help lists it"

admin=admin-token-$RANDOM$RANDOM-0123456789
reader=reader-token-$RANDOM$RANDOM-0123456789
producer=producer-token-$RANDOM$RANDOM-01234567
worker=worker-token-$RANDOM$RANDOM-012345678
printf 'ops admin %s\nlook reader %s\napp producer %s\nw worker %s\n' "$admin" "$reader" "$producer" "$worker" >"$tmp/credentials"
chmod 600 "$tmp/credentials"
export JOBQ_RPC_URL=tcp://127.0.0.1:$(free_port) JOBQ_PUB_URL=tcp://127.0.0.1:$(free_port)
start_jobqd() {
  "$build/bin/jobqd" --database-url="$url" --rpc-url="$JOBQ_RPC_URL" --pub-url="$JOBQ_PUB_URL" \
    --http-addr="$http" --credentials-file="$tmp/credentials" --max-payload-bytes=4096 \
    --max-reply-bytes=65536 --log-format=text "$@" >>"$tmp/jobqd.log" 2>&1 &
  pids+=($!)
}
start_jobqd
rpc_up() { JOBQ_AUTH_TOKEN=$reader "$J" stats --timeout-ms 300 >/dev/null 2>&1; }
wait_until 20 rpc_up || fail "jobqd did not answer"
console=127.0.0.1:$(free_port)
st=$(call "$admin" GET /api/v1/whoami || true)
[ "$st" = 000 ] || fail "something answers at $console without --console-addr: $st"
grep -q "console: listening" "$tmp/jobqd.log" && fail "a console started without --console-addr"
kill_all "${pids[@]}"; pids=()
start_jobqd --console-addr="$console"
up() { [ "$(call "$admin" GET /api/v1/whoami)" = 200 ]; }
wait_until 20 up || fail "the console did not answer at $console"
ok "no console by default; --console-addr=$console serves it"

# ------------------------------------------------------------------ authentication and roles
expect 401 UNAUTHENTICATED "" GET /api/v1/queues
grep -qi '^WWW-Authenticate: Bearer' "$tmp/headers" || fail "401 without WWW-Authenticate"
expect 401 UNAUTHENTICATED "no-such-token-0123456789" GET /api/v1/queues
st=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: Basic $admin" "http://$console/api/v1/queues")
[ "$st" = 401 ] || fail "a Basic header answered $st"
expect 200 "" "$reader" GET /api/v1/whoami
[ "$(j "$tmp/body" d.role)" = reader ] || fail "whoami: $(cat "$tmp/body")"
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/jobs '{"jobs":[{"queue":"a","payload":"x"}]}'
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/retry '{"ids":[1]}'
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/jobs/1/cancel
expect 403 PERMISSION_DENIED "$producer" GET /api/v1/queues
expect 403 PERMISSION_DENIED "$producer" GET "/api/v1/jobs?queue=a"
expect 403 PERMISSION_DENIED "$worker" GET /api/v1/queues
expect 200 "" "$reader" GET /api/v1/queues
[ "$(j "$tmp/body" 'd.queues.length')" = 0 ] || fail "a reader's refused calls left jobs: $(cat "$tmp/body")"
ok "401 without or with an unknown token, 403 outside the role (reader, producer, worker), and nothing changed"

# ------------------------------------------------------------------ enqueue and get (a service without nng)
expect 200 "" "$producer" POST /api/v1/jobs '{"jobs":[{"queue":"mail","payload":"hello","priority":5},{"queue":"mail","payload_base64":"AP8B","delay_ms":3600000}]}'
id1=$(j "$tmp/body" 'd.ids[0]'); id2=$(j "$tmp/body" 'd.ids[1]')
[[ $id1 =~ ^[0-9]+$ && $id2 -gt $id1 ]] || fail "enqueue answered $(cat "$tmp/body")"
expect 200 "" "$producer" GET "/api/v1/jobs/$id1"
[ "$(j "$tmp/body" '[d.job.queue, d.job.payload, d.job.priority, d.job.status, d.failures.length].join()')" = "mail,hello,5,pending,0" ] ||
  fail "get: $(cat "$tmp/body")"
expect 200 "" "$producer" GET "/api/v1/jobs/$id2"
[ "$(j "$tmp/body" 'd.job.payload_base64 + "," + (d.job.payload === undefined) + "," + d.job.payload_bytes')" = "AP8B,true,3" ] ||
  fail "a payload that is not UTF-8: $(cat "$tmp/body")"
JOBQ_AUTH_TOKEN=$reader "$J" get "$id2" --json >"$tmp/cli.json"
grep -q '"status":"archive_pending"\|"status":"pending"' "$tmp/cli.json" || fail "the RPC sees $(cat "$tmp/cli.json")"
expect 200 "" "$producer" POST /api/v1/jobs '{"jobs":[{"queue":"mail","payload":"once","idempotency_key":"k1"}]}'
k1=$(j "$tmp/body" 'd.ids[0]')
expect 200 "" "$producer" POST /api/v1/jobs '{"jobs":[{"queue":"mail","payload":"twice","idempotency_key":"k1"}]}'
[ "$(j "$tmp/body" 'd.ids[0]')" = "$k1" ] || fail "the idempotency key made a second job"
ok "a producer enqueues (text and base64 payloads, priority, delay, idempotency key) and reads its jobs"

# ------------------------------------------------------------------ the RPC's validation, code and message
cli_error() { JOBQ_AUTH_TOKEN=$admin "$J" enqueue "$@" 2>&1 >/dev/null | sed 's/^jobq: enqueue: INVALID_ARGUMENT: //'; }
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"bad queue","payload":"x"}]}'
[ "$(j "$tmp/body" d.message)" = "$(cli_error --queue 'bad queue' --payload x)" ] ||
  fail "bad queue: API says '$(j "$tmp/body" d.message)', the RPC '$(cli_error --queue 'bad queue' --payload x)'"
big=$(head -c 5000 /dev/zero | tr '\0' a)
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs "{\"jobs\":[{\"queue\":\"a\",\"payload\":\"$big\"}]}"
[ "$(j "$tmp/body" d.message)" = "$(cli_error --queue a --payload "$big")" ] ||
  fail "payload too large: API says '$(j "$tmp/body" d.message)', the RPC '$(cli_error --queue a --payload "$big")'"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"<script>alert(1)</script>","payload":"x"}]}'
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs?queue=%3Cscript%3E"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","priority":40000}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","max_attempts":5000}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","extra":1}]}'
[ "$(j "$tmp/body" d.message)" = "jobs[0]: unknown field 'extra'" ] || fail "unknown field: $(cat "$tmp/body")"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","payload":"x","payload_base64":"eA=="}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","payload_base64":"eA="}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","delay_ms":-1}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a\u0000b"}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a"}],}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '{"jobs":[{"queue":"a","queue":"b"}]}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs "$(printf '{"jobs":[{"queue":"a","payload":"\xff"}]}')"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/jobs '[1]'
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs?state=done"
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs?limit=1001"
[ "$(j "$tmp/body" d.message)" = "limit: at most 1000" ] || fail "limit: $(cat "$tmp/body")"
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs?after_id=x"
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs?colour=red"
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs/abc"
expect 400 INVALID_ARGUMENT "$admin" GET "/api/v1/jobs/0"
[ "$(j "$tmp/body" d.message)" = "id: must be positive" ] || fail "id 0: $(cat "$tmp/body")"
expect 404 NOT_FOUND "$admin" GET "/api/v1/jobs/987654321"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/retry '{"ids":[1],"all_failed":true,"queue":"mail"}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/cancel '{}'
expect 404 NOT_FOUND "$admin" GET /api/v1/nothing
expect 405 UNIMPLEMENTED "$admin" DELETE "/api/v1/jobs/$id1"
expect 200 "" "$admin" GET /api/v1/queues
[ "$(j "$tmp/body" 'd.queues.map(q => q.queue + ":" + q.pending).join()')" = "mail:3" ] ||
  fail "refused enqueues left jobs: $(cat "$tmp/body")"
ok "the RPC's validation and messages (CLI and API say the same; no markup in a queue name), strict JSON, and nothing enqueued by a refused call"

# ------------------------------------------------------------------ cancel, retry, failed jobs
JOBQ_AUTH_TOKEN=$admin "$J" enqueue --queue work --payload a >/dev/null
JOBQ_AUTH_TOKEN=$admin "$J" enqueue --queue work --payload b >/dev/null
JOBQ_AUTH_TOKEN=$admin "$J" enqueue --queue work --payload c >/dev/null
JOBQ_AUTH_TOKEN=$admin "$J" claim --queue work --limit 3 --json >"$tmp/claimed.json"
mapfile -t ids < <(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$tmp/claimed.json")
mapfile -t tokens < <(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' "$tmp/claimed.json")
[ "${#ids[@]}" = 3 ] || fail "claimed $(cat "$tmp/claimed.json")"
JOBQ_AUTH_TOKEN=$admin "$J" complete --id "${ids[2]}" --token "${tokens[2]}" >/dev/null
expect 400 FAILED_PRECONDITION "$admin" POST "/api/v1/jobs/${ids[2]}/cancel"
for i in 0 1; do
  JOBQ_AUTH_TOKEN=$admin "$J" fail --id "${ids[$i]}" --token "${tokens[$i]}" --final --error "broke \"$i\" <b>" >/dev/null
done
expect 200 "" "$reader" GET "/api/v1/jobs/${ids[0]}"
[ "$(j "$tmp/body" '[d.job.status, d.failures.length, d.failures[0].error, d.job.lease_owner !== ""].join("|")')" = 'failed|1|broke "0" <b>|true' ] ||
  fail "a failed job: $(cat "$tmp/body")"
grep -q '\\u003cb\\u003e' "$tmp/body" || fail "markup in an error is not escaped in the JSON text: $(cat "$tmp/body")"
expect 200 "" "$reader" GET "/api/v1/jobs?queue=work&state=failed"
[ "$(j "$tmp/body" 'd.jobs.map(x => x.id).join()')" = "${ids[0]},${ids[1]}" ] || fail "failed list: $(cat "$tmp/body")"
expect 200 "" "$admin" POST "/api/v1/jobs/${ids[0]}/retry"
[ "$(j "$tmp/body" '[d.retried, d.results[0].status].join()')" = "1,pending" ] || fail "retry one: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/retry '{"queue":"work","all_failed":true}'
[ "$(j "$tmp/body" d.retried)" = 1 ] || fail "retry all failed: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/cancel "{\"ids\":[${ids[0]},${ids[1]},987654321]}"
[ "$(j "$tmp/body" 'd.results.map(r => r.code + ":" + (r.status || "")).join()')" = "OK:cancelled,OK:cancelled,NOT_FOUND:" ] ||
  fail "bulk cancel: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/retry "{\"ids\":[${ids[0]},${ids[1]}]}"
[ "$(j "$tmp/body" d.retried)" = 2 ] || fail "bulk retry: $(cat "$tmp/body")"
expect 200 "" "$admin" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" '[d.queues[0].pending, d.queues[0].processing, d.queues[0].failed].join()')" = "2,0,0" ] ||
  fail "work after retries: $(cat "$tmp/body")"
expect 403 PERMISSION_DENIED "$producer" GET /api/v1/throughput
expect 200 "" "$reader" GET /api/v1/throughput
[ "$(j "$tmp/body" 'd.minutes.length + "," + d.minutes.every((m, i) => i == 0 || m.at_ms - d.minutes[i - 1].at_ms == 60000)')" = "60,true" ] ||
  fail "throughput: $(head -c 300 "$tmp/body")"
ok "cancel refuses a completed job; failed jobs listed, retried one by one, all at once and in bulk; bulk cancel answers per job; throughput as Stats"

# ------------------------------------------------------------------ flow settings (Pause, Resume, ConfigureQueue)
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/queues/pause '{"queue":"work"}'
expect 403 PERMISSION_DENIED "$producer" POST /api/v1/queues/pause '{"queue":"work"}'
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/queues/configure '{"queue":"work","set_concurrency_limit":true,"concurrency_limit":2}'
expect 200 "" "$reader" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" '[d.queues[0].paused, d.queues[0].concurrency_limit === undefined].join()')" = "false,true" ] ||
  fail "a reader's refused pause or limit changed work: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/queues/pause '{"queue":"work"}'
[ "$(j "$tmp/body" '[d.settings.queue, d.settings.paused].join()')" = "work,true" ] || fail "pause: $(cat "$tmp/body")"
expect 200 "" "$reader" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" 'd.queues[0].paused')" = true ] || fail "Stats after pause: $(cat "$tmp/body")"
n=$(JOBQ_AUTH_TOKEN=$admin "$J" claim --queue work --limit 5 --json | grep -c '"id"' || true)
[ "$n" = 0 ] || fail "a paused queue gave $n jobs to a claim"
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/queues/resume '{"queue":"work"}'
expect 200 "" "$reader" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" 'd.queues[0].paused')" = true ] || fail "a reader's resume resumed work"
expect 200 "" "$admin" POST /api/v1/queues/resume '{"queue":"work"}'
[ "$(j "$tmp/body" 'd.settings.paused')" = false ] || fail "resume: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/queues/configure '{"queue":"work","set_concurrency_limit":true,"concurrency_limit":3,"set_rate_limit":true,"rate_limit":10,"rate_period_ms":1000}'
[ "$(j "$tmp/body" '[d.settings.concurrency_limit, d.settings.rate_limit, d.settings.rate_period_ms].join()')" = "3,10,1000" ] ||
  fail "configure: $(cat "$tmp/body")"
expect 200 "" "$reader" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" '[d.queues[0].concurrency_limit, d.queues[0].rate_limit, d.queues[0].rate_period_ms].join()')" = "3,10,1000" ] ||
  fail "Stats after configure: $(cat "$tmp/body")"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/configure '{"queue":"work","set_concurrency_limit":true,"concurrency_limit":0}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/configure '{"queue":"work","set_concurrency_limit":true,"concurrency_limit":1,"clear_concurrency_limit":true}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/configure '{"queue":"work","set_rate_limit":true,"rate_limit":5,"rate_period_ms":86400001}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/configure '{"queue":"work","concurrency":2}'
[ "$(j "$tmp/body" d.message)" = "body: unknown field 'concurrency'" ] || fail "unknown field: $(cat "$tmp/body")"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/configure '{"queue":"work","set_rate_limit":"yes"}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/pause '{"queue":"bad queue"}'
cli_msg=$(JOBQ_AUTH_TOKEN=$admin "$J" pause 'bad queue' 2>&1 >/dev/null | sed 's/^jobq: pause: INVALID_ARGUMENT: //' || true)
[ "$(j "$tmp/body" d.message)" = "$cli_msg" ] || fail "bad queue: API says '$(j "$tmp/body" d.message)', the RPC '$cli_msg'"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/queues/pause '{}'
expect 405 UNIMPLEMENTED "$admin" GET /api/v1/queues/pause
expect 200 "" "$reader" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" '[d.queues[0].paused, d.queues[0].concurrency_limit, d.queues[0].rate_limit].join()')" = "false,3,10" ] ||
  fail "refused settings changed work: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/queues/configure '{"queue":"work","set_key_concurrency_limit":true,"key_concurrency_limit":1}'
[ "$(j "$tmp/body" 'd.settings.key_concurrency_limit')" = 1 ] || fail "key limit: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/queues/configure '{"queue":"work","clear_concurrency_limit":true,"clear_rate_limit":true,"clear_key_concurrency_limit":true}'
expect 200 "" "$reader" GET "/api/v1/queues?queue=work"
[ "$(j "$tmp/body" '[d.queues[0].concurrency_limit === undefined, d.queues[0].rate_limit === undefined].join()')" = "true,true" ] ||
  fail "cleared limits: $(cat "$tmp/body")"
ok "pause, resume and limits: admin only (a reader's or producer's 403 changes nothing), Stats shows them, the RPC's validation"

# ------------------------------------------------------------------ running jobs: progress, output, cancel
JOBQ_AUTH_TOKEN=$admin "$J" enqueue --queue run --payload r1 >/dev/null
JOBQ_AUTH_TOKEN=$admin "$J" enqueue --queue run --payload r2 >/dev/null
JOBQ_AUTH_TOKEN=$admin "$J" claim --queue run --limit 2 --lease 300 --json >"$tmp/claimed.json"
mapfile -t ids < <(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$tmp/claimed.json")
mapfile -t tokens < <(sed -n 's/.*"lease_token":\([0-9]*\).*/\1/p' "$tmp/claimed.json")
[ "${#ids[@]}" = 2 ] || fail "claimed $(cat "$tmp/claimed.json")"
JOBQ_AUTH_TOKEN=$admin "$J" heartbeat --id "${ids[0]}" --token "${tokens[0]}" --progress 40 --message 'resizing <b>' >/dev/null
expect 200 "" "$reader" GET "/api/v1/jobs?queue=run&state=processing"
[ "$(j "$tmp/body" 'd.jobs.map(x => x.id + ":" + x.progress_percent + ":" + x.progress_message).join()')" = "${ids[0]}:40:resizing <b>,${ids[1]}:undefined:undefined" ] ||
  fail "progress in the list: $(cat "$tmp/body")"
JOBQ_AUTH_TOKEN=$admin "$J" complete --id "${ids[0]}" --token "${tokens[0]}" --output '<img src=x onerror=alert(1)>' >/dev/null
expect 200 "" "$reader" GET "/api/v1/jobs/${ids[0]}"
[ "$(j "$tmp/body" '[d.job.status, d.job.output, d.job.output_bytes].join("|")')" = "completed|<img src=x onerror=alert(1)>|28" ] ||
  fail "output: $(cat "$tmp/body")"
LC_ALL=C grep -q '[<>]' "$tmp/body" && fail "raw markup in the output's JSON text: $(cat "$tmp/body")"
expect 403 PERMISSION_DENIED "$reader" POST "/api/v1/jobs/${ids[1]}/cancel"
expect 200 "" "$reader" GET "/api/v1/jobs/${ids[1]}"
[ "$(j "$tmp/body" 'd.job.status + "," + (d.job.output === undefined)')" = "processing,true" ] || fail "a reader's cancel changed the running job: $(cat "$tmp/body")"
expect 200 "" "$admin" POST "/api/v1/jobs/${ids[1]}/cancel"
[ "$(j "$tmp/body" 'd.results[0].code + ":" + d.results[0].status')" = "OK:cancelled" ] || fail "cancel running: $(cat "$tmp/body")"
st=$(JOBQ_AUTH_TOKEN=$admin "$J" heartbeat --id "${ids[1]}" --token "${tokens[1]}" 2>&1 >/dev/null || true)
grep -q FAILED_PRECONDITION <<<"$st" || fail "the cancelled job's lease still holds: $st"
ok "running jobs: progress in the list, output in Get (escaped), a running job cancelled by an admin only (its lease ends)"

# ------------------------------------------------------------------ schedules
sched='{"name":"nightly","cron":"0 3 * * *","time_zone":"Europe/Berlin","missed":"once","job":{"queue":"reports","payload":"<b>run</b>","priority":2}}'
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/schedules "$sched"
expect 403 PERMISSION_DENIED "$producer" GET /api/v1/schedules
expect 200 "" "$reader" GET /api/v1/schedules
[ "$(j "$tmp/body" 'd.schedules.length')" = 0 ] || fail "a reader's refused add left a schedule: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/schedules "$sched"
[ "$(j "$tmp/body" '[d.schedule.name, d.schedule.missed, d.schedule.job.queue, d.schedule.next_run_at_ms > Date.now()].join()')" = "nightly,once,reports,true" ] ||
  fail "add schedule: $(cat "$tmp/body")"
expect 200 "" "$reader" GET "/api/v1/schedules?payload=true"
[ "$(j "$tmp/body" 'd.schedules.map(s => [s.name, s.cron, s.time_zone, s.job.payload, s.job.priority, s.last_run_at_ms].join("|")).join()')" = "nightly|0 3 * * *|Europe/Berlin|<b>run</b>|2|0" ] ||
  fail "list schedules: $(cat "$tmp/body")"
expect 200 "" "$reader" GET /api/v1/schedules
[ "$(j "$tmp/body" 'd.schedules[0].job.payload === undefined')" = true ] || fail "a list without payload=true carries payloads"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/schedules '{"name":"bad","cron":"61 * * * *","job":{"queue":"reports"}}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/schedules '{"name":"bad","cron":"* * * * *"}'
[ "$(j "$tmp/body" d.message)" = "schedule.job: required (at least its queue)" ] || fail "no job: $(cat "$tmp/body")"
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/schedules '{"name":"bad","cron":"* * * * *","time_zone":"Mars/Base","job":{"queue":"reports"}}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/schedules '{"name":"bad","cron":"* * * * *","job":{"queue":"reports","delay_ms":5}}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/schedules '{"name":"bad","cron":"* * * * *","missed":"twice","job":{"queue":"reports"}}'
expect 400 INVALID_ARGUMENT "$admin" POST /api/v1/schedules '{"name":"bad","cron":"* * * * *","job":{"queue":"reports","colour":1}}'
[ "$(j "$tmp/body" d.message)" = "job: unknown field 'colour'" ] || fail "unknown job field: $(cat "$tmp/body")"
expect 403 PERMISSION_DENIED "$reader" POST /api/v1/schedules/remove '{"name":"nightly"}'
expect 200 "" "$reader" GET /api/v1/schedules
[ "$(j "$tmp/body" 'd.schedules.map(s => s.name).join()')" = nightly ] || fail "refused calls changed the schedules: $(cat "$tmp/body")"
expect 200 "" "$admin" POST /api/v1/schedules/remove '{"name":"nightly"}'
expect 404 NOT_FOUND "$admin" POST /api/v1/schedules/remove '{"name":"nightly"}'
expect 200 "" "$reader" GET /api/v1/schedules
[ "$(j "$tmp/body" 'd.schedules.length')" = 0 ] || fail "remove left $(cat "$tmp/body")"
ok "schedules: listed by a reader with their next run, added and removed by an admin only, the RPC's validation"

# ------------------------------------------------------------------ keyset paging
body='{"jobs":['
for i in $(seq 1 25); do body+="{\"queue\":\"pages\",\"payload\":\"p$i\"}"; [ "$i" -lt 25 ] && body+=','; done
expect 200 "" "$admin" POST /api/v1/jobs "$body]}"
first=$(j "$tmp/body" 'd.ids[0]')
after=0 seen=()
for page in 1 2 3 4; do
  expect 200 "" "$reader" GET "/api/v1/jobs?queue=pages&state=pending&limit=10&after_id=$after"
  mapfile -t got < <(j "$tmp/body" 'd.jobs.map(x => x.id).join("\n")')
  seen+=("${got[@]}")
  after=$(j "$tmp/body" d.next_after_id)
  [ "$after" = 0 ] && break
done
[ "$page" = 3 ] && [ "${#seen[@]}" = 25 ] && [ "${seen[0]}" = "$first" ] ||
  fail "paging: $page pages, ${#seen[@]} jobs from ${seen[0]:-none}"
[ "$(printf '%s\n' "${seen[@]}" | sort -n | uniq | wc -l)" = 25 ] || fail "paging repeated a job"
[ "$(j "$tmp/body" 'd.jobs[0].payload === undefined')" = true ] || fail "a list without payload=true carries payloads"
expect 200 "" "$reader" GET "/api/v1/jobs?queue=pages&limit=1&payload=true"
[ "$(j "$tmp/body" 'd.jobs[0].payload')" = p1 ] || fail "payload=true: $(cat "$tmp/body")"
ok "keyset paging: 25 jobs in pages of 10, 10 and 5, each once, in id order"

# ------------------------------------------------------------------ JSON output for any payload
# Quotes, backslash, control characters, markup, U+2028: read back byte for byte, none raw in the text.
nasty=$(printf 'q"b\\s\tt\x01c</script><img src=x>&\xe2\x80\xa8end')
payload_json=$(NASTY=$nasty node -e 'console.log(JSON.stringify(process.env.NASTY))')
expect 200 "" "$admin" POST /api/v1/jobs "{\"jobs\":[{\"queue\":\"esc\",\"payload\":$payload_json}]}"
nid=$(j "$tmp/body" 'd.ids[0]')
expect 200 "" "$reader" GET "/api/v1/jobs/$nid"
[ "$(j "$tmp/body" 'd.job.payload')" = "$nasty" ] || fail "payload read back as $(j "$tmp/body" 'd.job.payload')"
LC_ALL=C grep -q '[<>&]' "$tmp/body" && fail "raw markup characters in the JSON text: $(cat "$tmp/body")"
LC_ALL=C grep -q $'\xe2\x80\xa8' "$tmp/body" && fail "a raw U+2028 in the JSON text"
JOBQ_AUTH_TOKEN=$reader "$J" get "$nid" --json >"$tmp/cli.json"
[ "$(j "$tmp/cli.json" 'd.payload')" = "$nasty" ] || fail "the RPC reads the payload as $(j "$tmp/cli.json" 'd.payload')"
ok "JSON output: a payload of quotes, control characters, markup and U+2028 round-trips and is escaped"

# ------------------------------------------------------------------ headers, pages, limits
call "$reader" GET /api/v1/queues >/dev/null
for h in "Content-Security-Policy: default-src 'none'" "X-Content-Type-Options: nosniff" \
         "X-Frame-Options: DENY" "Content-Type: application/json" "Cache-Control: no-store"; do
  grep -qi "^$h" "$tmp/headers" || fail "the API answers without '$h': $(cat "$tmp/headers")"
done
[ "$(call "" GET /)" = 200 ] && grep -q '<script src="/app.js"' "$tmp/body" || fail "GET / is not the console's page"
grep -qi "^Content-Security-Policy: .*frame-ancestors 'none'" "$tmp/headers" || fail "the page has no frame-ancestors 'none'"
grep -qi "^Content-Type: text/html" "$tmp/headers" || fail "the page's type: $(cat "$tmp/headers")"
[ "$(call "" GET /app.js)" = 200 ] && grep -qi "^Content-Type: text/javascript" "$tmp/headers" || fail "GET /app.js"
[ "$(call "" GET /style.css)" = 200 ] || fail "GET /style.css"
[ "$(call "" GET /etc/passwd)" = 404 ] || fail "GET /etc/passwd was not 404"
[ "$(call "" POST / x)" = 405 ] || fail "POST / was not 405"
head -c $((9 * 1024 * 1024)) /dev/zero | tr '\0' a >"$tmp/huge"
st=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin" --data-binary "@$tmp/huge" "http://$console/api/v1/jobs")
[ "$st" = 400 ] || [ "$st" = 413 ] || fail "a 9 MiB body answered $st"
expect 200 "" "$reader" GET /api/v1/whoami
ok "security headers on pages and API, static files only, an oversized body refused"

# ------------------------------------------------------------------ a clean stop
# SIGTERM while the console serves: jobqd ends with status 0 (under ASan: no leak, no use after free).
pid=${pids[-1]}
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pids=()
[ $rc -eq 0 ] || fail "jobqd exited $rc after SIGTERM: $(tail -n 20 "$tmp/jobqd.log")"
ok "SIGTERM with the console on: jobqd exits 0"
