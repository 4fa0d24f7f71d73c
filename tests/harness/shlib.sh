# shlib.sh — helpers the shell tests share (source it; it defines functions only).
#   fail MSG           print "FAIL: MSG" to stderr and exit 1
#   ok MSG             print "ok: MSG"
#   free_port          print a free 127.0.0.1 TCP port
#   wait_until S CMD   run CMD every 0.1 s until it succeeds; give up (status 1) after S seconds,
#                      times $slow (set slow=3 for sanitizer builds; default 1)

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

wait_until() {
  local limit=$(( $1 * 10 * ${slow:-1} )) i=0; shift
  until "$@"; do
    i=$((i + 1)); [ $i -ge $limit ] && return 1
    sleep 0.1
  done
}
