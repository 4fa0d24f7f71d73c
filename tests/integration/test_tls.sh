#!/usr/bin/env bash
# TLS on jobqd's RPC and PUB listeners (tls+tcp://), with certificates made by openssl right here:
# a CA, the service's certificate, a client certificate, and a second "rogue" CA with its own
# client certificate. With --tls-ca the service requires client certificates (mutual TLS): a
# client without one, or with one the CA did not sign, is refused; the right one works, through
# flags and through JOBQ_TLS_* alike, for RPC and for `jobq watch` on the PUB socket. A
# tls+tcp:// address without a certificate is a clear start-up error. Certificates rotate without
# a restart, when the files change (as a Kubernetes Secret volume changes them) or on SIGHUP: new
# connections get the new certificate at once, open ones keep working, and files that do not
# load leave the old certificate in place.
set -euo pipefail
build=${JOBQ_TEST_BUILD:?run through tests/run.sh}
base=${JOBQ_TEST_DATABASE_URL:?}
maint=${base%/*}/postgres
db=jq_tls_test
url=${base%/*}/$db
J=$build/bin/jobq
tmp=$(mktemp -d /tmp/jq-tls-test.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  kill_all "${pids[@]}"
  if [ "$rc" -ne 0 ]; then
    for f in "$tmp"/jobqd*.log; do [ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }; done
  fi
  psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

. "${JOBQ_TEST_ROOT:?run through tests/run.sh}/tests/harness/shlib.sh"



# ------------------------------------------------------------------ certificates (P-256, 1 day)
cd "$tmp"
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
mkca() {
  newkey "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 1 -subj "/CN=$2" 2>/dev/null
}
# mkcert NAME CA CN EXT: a key and a certificate signed by CA.
mkcert() {
  newkey "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
  printf '%b' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days 1 -extfile "$1.ext" 2>/dev/null
}
mkca ca "jobq test CA"
mkca rogue "someone else's CA"
mkcert server ca 127.0.0.1 "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
mkcert client ca jobq-test-client "extendedKeyUsage=clientAuth\n"
mkcert intruder rogue jobq-test-client "extendedKeyUsage=clientAuth\n"
mkca ca2 "jobq test CA, next year's"
mkcert server2 ca2 127.0.0.1 "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
mkcert client2 ca2 jobq-test-client "extendedKeyUsage=clientAuth\n"
for f in ca server client intruder; do [ -s "$f.pem" ] || fail "openssl did not make $f.pem"; done
ok "certificates made with $(openssl version | cut -d' ' -f1-2)"

# ------------------------------------------------------------------ jobqd with mutual TLS
PGOPTIONS="-c client_min_messages=warning" psql -qX "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
  -c "CREATE DATABASE $db TEMPLATE jobq" >/dev/null
unset JOBQ_AUTH_TOKEN JOBQ_TLS_CERT JOBQ_TLS_KEY JOBQ_TLS_CA
rpc=tls+tcp://127.0.0.1:$(free_port)
pub=tls+tcp://127.0.0.1:$(free_port)
http=127.0.0.1:$(free_port)
"$build/bin/jobqd" --database-url="$url" --rpc-url="$rpc" --pub-url="$pub" --http-addr="$http" \
  --tls-cert="$tmp/server.pem" --tls-key="$tmp/server.key" --tls-ca="$tmp/ca.pem" \
  --log-format=text >"$tmp/jobqd.log" 2>&1 &
pids+=($!)
good=(--rpc-url "$rpc" --pub-url "$pub" --tls-ca "$tmp/ca.pem" --tls-cert "$tmp/client.pem" --tls-key "$tmp/client.key")
# What the RPC port and jobqd saw, printed when the first call gets no answer after "ready" (a
# rare failure not understood yet: this is what to look at).
port_state() {
  echo "sockets on ${rpc##*:}:"; ss -tanpo "( sport = :${rpc##*:} or dport = :${rpc##*:} )" 2>&1 | head -20
  echo "jobqd metrics:"; curl -s -m 2 "http://$http/metrics" | grep -E '^jobq_rpc_(connections|requests_total)' | head -20
}
wait_until 20 "$J" stats "${good[@]}" --timeout-ms 500 >/dev/null 2>&1 \
  || fail "a client with the right certificate gets no answer: $("$J" stats "${good[@]}" --timeout-ms 500 2>&1)
$(port_state)"
grep -q "TLS on $rpc (client certificates required)" "$tmp/jobqd.log" || fail "no TLS log line for rpc"
ok "jobqd listens with mutual TLS on $rpc and $pub"

id=$("$J" enqueue "${good[@]}" --queue tq --payload secret-payload) || fail "enqueue with the right certificate"
[[ $id =~ ^[0-9]+$ ]] || fail "enqueue printed '$id'"
ok "a client with the CA-signed certificate works (enqueued job $id)"

# refused: no certificate; a certificate from another CA; plain tcp to the TLS port
refused() { ! "$J" stats --rpc-url "$rpc" --timeout-ms 1500 "$@" >"$tmp/out" 2>"$tmp/err"; }
refused --tls-ca "$tmp/ca.pem" || fail "a client without a certificate was served: $(cat "$tmp/out")"
grep -Eq "UNAVAILABLE|DEADLINE_EXCEEDED" "$tmp/err" || fail "unexpected error without a certificate: $(cat "$tmp/err")"
ok "a client without a certificate is refused ($(cut -c1-80 "$tmp/err"))"
refused --tls-ca "$tmp/ca.pem" --tls-cert "$tmp/intruder.pem" --tls-key "$tmp/intruder.key" \
  || fail "a client with a certificate from another CA was served"
ok "a client whose certificate another CA signed is refused"
refused --tls-ca "$tmp/rogue.pem" --tls-cert "$tmp/client.pem" --tls-key "$tmp/client.key" \
  || fail "a client that does not trust the service's CA still talked to it"
ok "a client that does not trust the service's certificate does not talk to it"
! "$J" stats --rpc-url "tcp://${rpc#tls+tcp://}" --timeout-ms 1500 >/dev/null 2>&1 || fail "plain tcp was served"
ok "plain tcp:// to the TLS port gets nothing"
! "$J" stats --rpc-url "$rpc" --tls-cert "$tmp/nope.pem" --tls-key "$tmp/client.key" >/dev/null 2>"$tmp/err" \
  || fail "a missing certificate file was accepted"
grep -q "nope.pem" "$tmp/err" || fail "a missing file is not named: $(cat "$tmp/err")"
ok "a missing certificate file is named in the error"

# the environment, and the PUB socket over TLS
export JOBQ_TLS_CA=$tmp/ca.pem JOBQ_TLS_CERT=$tmp/client.pem JOBQ_TLS_KEY=$tmp/client.key
"$J" watch --rpc-url "$rpc" --pub-url "$pub" --queue wq --json >"$tmp/watch.json" 2>"$tmp/watch.err" &
wp=$!; pids+=($wp)
sleep 1 # the subscription's TLS handshake is asynchronous; an announcement before it is lost
wid=$("$J" enqueue --rpc-url "$rpc" --queue wq --payload w) || fail "enqueue with JOBQ_TLS_* failed"
wait_until 10 grep -q "\"queue\":\"wq\"" "$tmp/watch.json" || fail "watch over TLS heard nothing: $(cat "$tmp/watch.err")"
kill -INT $wp; wait $wp || fail "watch exited $?"
grep -q "$wid" "$tmp/watch.json" || fail "watch ids: $(cat "$tmp/watch.json")"
ok "JOBQ_TLS_* work, and jobq watch hears announcements over TLS"
unset JOBQ_TLS_CA JOBQ_TLS_CERT JOBQ_TLS_KEY
grep -q "secret-payload" "$tmp/jobqd.log" && fail "a payload reached jobqd's log"
kill -TERM "${pids[0]}"; wait "${pids[0]}" || fail "jobqd exited $? on SIGTERM"
pids=("${pids[@]:1}")
ok "jobqd stopped cleanly"

# ------------------------------------------------------------------ certificate rotation
# The files live where a Kubernetes Secret volume puts them: behind a symbolic link to a folder,
# switched in one rename when the Secret changes. jobqd notices by itself (checked every 300 ms
# here) or on SIGHUP.
mkdir "$tmp/v1" "$tmp/v2" "$tmp/v3"
cp server.pem server.key ca.pem "$tmp/v1/"
cp server2.pem "$tmp/v2/server.pem"; cp server2.key "$tmp/v2/server.key"; cp ca2.pem "$tmp/v2/ca.pem"
echo "not a certificate" >"$tmp/v3/server.pem"; cp server2.key "$tmp/v3/server.key"; cp ca2.pem "$tmp/v3/ca.pem"
ln -s v1 "$tmp/live"
switch_to() { ln -sfn "$1" "$tmp/live.new" && mv -T "$tmp/live.new" "$tmp/live"; }
reloads() { grep -c "rpc: TLS certificate reloaded" "$tmp/jobqd4.log" || true; }
reloads_are() { [ "$(reloads)" = "$1" ]; }
rpc4=tls+tcp://127.0.0.1:$(free_port)
pub4=tls+tcp://127.0.0.1:$(free_port)
"$build/bin/jobqd" --database-url="$url" --rpc-url="$rpc4" --pub-url="$pub4" --http-addr="127.0.0.1:$(free_port)" \
  --tls-cert="$tmp/live/server.pem" --tls-key="$tmp/live/server.key" --tls-ca="$tmp/live/ca.pem" \
  --tls-reload-interval-ms=300 --log-format=text >"$tmp/jobqd4.log" 2>&1 &
j4=$!; pids+=($j4)
old=(--rpc-url "$rpc4" --pub-url "$pub4" --tls-ca "$tmp/ca.pem" --tls-cert "$tmp/client.pem" --tls-key "$tmp/client.key")
new=(--rpc-url "$rpc4" --pub-url "$pub4" --tls-ca "$tmp/ca2.pem" --tls-cert "$tmp/client2.pem" --tls-key "$tmp/client2.key")
wait_until 20 "$J" stats "${old[@]}" --timeout-ms 500 >/dev/null 2>&1 || fail "jobqd4 does not answer"
"$J" watch "${old[@]}" --queue rot --json >"$tmp/watch4.json" 2>"$tmp/watch4.err" &
w4=$!; pids+=($w4)
sleep 1 # the subscription's handshake
switch_to v2
wait_until 10 grep -q "publisher: TLS certificate reloaded" "$tmp/jobqd4.log" || fail "the new files were not picked up"
grep -q "TLS files changed, reloading" "$tmp/jobqd4.log" || fail "the reload was not logged as a file change"
[ "$(reloads)" = 1 ] || fail "rpc reloaded $(reloads) times"
ok "new files behind the Secret-style link are picked up without a signal"
# The very first connection after the reload must get the new certificate. openssl looks at one
# handshake; jobq's client would redial and hide a first connection that got the old one.
issuer() {
  timeout 10 openssl s_client -connect "127.0.0.1:${1##*:}" -CAfile "$tmp/ca2.pem" \
    -cert "$tmp/client2.pem" -key "$tmp/client2.key" </dev/null >"$tmp/s_client.out" 2>&1; grep -a -m1 "^issuer=" "$tmp/s_client.out" || { cat "$tmp/s_client.out" >&2; true; }
}
first=$(issuer "$rpc4")
[[ $first == *"next year's"* ]] || fail "the first RPC connection after the reload got: '$first'"
first_pub=$(issuer "$pub4")
[[ $first_pub == *"next year's"* ]] || fail "the first PUB connection after the reload got: '$first_pub'"
rid=$("$J" enqueue "${new[@]}" --timeout-ms 3000 --queue rot --payload r) \
  || fail "a client of the new CA was refused right after the reload"
ok "the first new connection gets the new certificate ($first; enqueued job $rid)"
refused4() { ! "$J" stats "$@" --timeout-ms 1500 >/dev/null 2>&1; }
refused4 "${old[@]}" || fail "a client that trusts only the old CA still talked to the service"
refused4 --rpc-url "$rpc4" --tls-ca "$tmp/ca2.pem" --tls-cert "$tmp/client.pem" --tls-key "$tmp/client.key" \
  || fail "a client certificate of the old CA was still accepted after the CA was rotated"
ok "after the rotation the old CA's certificates are refused, both ways"
wait_until 10 grep -q "$rid" "$tmp/watch4.json" || fail "the subscription opened before the reload heard nothing: $(cat "$tmp/watch4.err")"
ok "a connection opened before the reload keeps working (watch heard job $rid)"
kill -HUP $j4
wait_until 10 reloads_are 2 || fail "SIGHUP did not reload: $(reloads) reloads"
grep -q "SIGHUP received, reloading" "$tmp/jobqd4.log" || fail "the SIGHUP reload was not logged"
"$J" stats "${new[@]}" --timeout-ms 3000 >/dev/null || fail "no answer after the SIGHUP reload"
ok "SIGHUP reloads too"
switch_to v3
wait_until 10 grep -q "TLS reload failed" "$tmp/jobqd4.log" || fail "a bad certificate file was not reported"
"$J" stats "${new[@]}" --timeout-ms 3000 >/dev/null || fail "a failed reload broke the service"
kill -0 $j4 || fail "jobqd exited after a failed reload"
ok "files that do not load are reported and the service keeps its certificate"
kill -INT $w4; wait $w4 || true
kill -TERM $j4; wait $j4 || fail "jobqd4 exited $? on SIGTERM"
pids=("${pids[@]:0:${#pids[@]}-2}")

# ------------------------------------------------------------------ without --tls-ca; misconfigurations
rpc2=tls+tcp://127.0.0.1:$(free_port)
"$build/bin/jobqd" --database-url="$url" --rpc-url="$rpc2" --pub-url="tcp://127.0.0.1:$(free_port)" \
  --http-addr="127.0.0.1:$(free_port)" --tls-cert="$tmp/server.pem" --tls-key="$tmp/server.key" \
  --log-format=text >"$tmp/jobqd2.log" 2>&1 &
pids+=($!)
wait_until 20 "$J" stats --rpc-url "$rpc2" --tls-ca "$tmp/ca.pem" --timeout-ms 500 >/dev/null 2>&1 \
  || fail "without --tls-ca, a client without a certificate should be served"
ok "without --tls-ca the service asks for no client certificate (the client still verifies it)"

set +e
"$build/bin/jobqd" --database-url="$url" --rpc-url="tls+tcp://127.0.0.1:$(free_port)" \
  --pub-url="tcp://127.0.0.1:$(free_port)" --http-addr="127.0.0.1:$(free_port)" --log-format=text \
  >"$tmp/jobqd3.log" 2>&1
st=$?
set -e
[ "$st" -ne 0 ] || fail "jobqd started on tls+tcp:// without a certificate"
grep -q "needs --tls-cert and --tls-key" "$tmp/jobqd3.log" || fail "no clear error: $(cat "$tmp/jobqd3.log")"
ok "tls+tcp:// without a certificate: jobqd exits $st with a clear error"
echo "test_tls: all passed"
