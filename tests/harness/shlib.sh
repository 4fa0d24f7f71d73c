# shlib.sh — helpers the shell tests share (source it; it defines functions only).
#   fail MSG           print "FAIL: MSG" to stderr and exit 1
#   ok MSG             print "ok: MSG"
#   free_port          print a free 127.0.0.1 TCP port
#   wait_until S CMD   run CMD every 0.1 s until it succeeds; give up (status 1) after S seconds,
#                      times $slow (set slow=3 for sanitizer builds; default 1). CMD runs again
#                      on each try, but its words were expanded once, before the first:
#                      `wait_until 5 test "$(f)" = 2` compares one stale value fifty times. Put
#                      a condition that reads state in a function: `f_is() { [ "$(f)" = "$1" ]; }`
#                      and `wait_until 5 f_is 2`.
#   kill_all PID...    SIGKILL these processes (a test's leftovers, in its cleanup) and wait
#                      until they are gone, without bash's "Killed" notice for each

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

free_port() {
  # Binding port 0 asks the kernel; without python3, probe random ports instead.
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    return
  fi
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

kill_all() {
  local p n
  for p in "$@"; do
    # bash reports a job that a signal killed when it next reaps it, on stderr, which after a
    # test's "all passed" reads like a failure; a disowned job is not reported. A pid that is no
    # longer a job (already waited for) has nothing to report.
    disown "$p" 2>/dev/null || true
    kill -KILL "$p" 2>/dev/null || true
  done
  for p in "$@"; do
    n=0
    while kill -0 "$p" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  done
}

wait_until() {
  # Tries every 0.1 s; also gives up after twice its seconds of wall time, so that a condition
  # that is itself slow to fail (a client waiting out its timeout) cannot stretch the wait past
  # the test's own time limit and end it without a word.
  local limit=$(( $1 * 10 * ${slow:-1} )) i=0 end=$(( ${EPOCHSECONDS:-$(date +%s)} + $1 * 2 * ${slow:-1} )); shift
  until "$@"; do
    i=$((i + 1)); [ $i -ge $limit ] && return 1
    [ "${EPOCHSECONDS:-$(date +%s)}" -ge "$end" ] && return 1
    sleep 0.1
  done
}
