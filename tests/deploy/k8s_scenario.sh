# k8s_scenario.sh — the deploy/k8s base run for real, without a cluster (source it; it defines
# functions only). Sourced by tests/deploy/test_k8s_run.sh (the build's binaries) and
# deploy/image-check.sh (the image's, in its rootfs).
#
# The Secrets come from deploy/k8s/make-secrets.sh; `k8s_check.mjs materialize` lays out what
# the kubelet would mount for the jobqd and worker containers (files, modes, fsGroup, the ..data
# links) and their environment from the rendered manifests. Only the addresses change: jobqd
# listens on free loopback ports, clients dial localhost (the certificate names it too; the
# Service names are checked with openssl). Then:
#   - /healthz and /readyz answer without a token, /metrics only to a reader token (401 / 403);
#   - the worker's credential may not call Stats or Enqueue; the producer's may enqueue;
#   - no client certificate, or plain tcp://, gets no answer; the PUB port wants a certificate
#     too, and presents one valid for the Service's names;
#   - `jobq watch` with the worker's files hears the announcement over PUB;
#   - the worker Deployment's own command line, with its own environment, completes the job;
#   - jobqd stops cleanly on SIGTERM and never logged a token.
#
# The caller defines, then calls k8s_scenario (status 0 when every step passed):
#   K8S_REPO           the repository whose deploy/k8s is run
#   K8S_TOOLS          the repository whose tests/deploy/k8s_check.mjs is used
#   K8S_WORK           an empty scratch folder
#   K8S_FILES          where the pods' files go (host path) and K8S_SEEN: that folder as the
#                      processes see it ("" when the same)
#   K8S_DB_URL         a migrated database
#   k8s_cmd ENVFILE ARGV...    sets the array K8S_CMD to the command line that runs ARGV (argv[0]
#                      as in the image: /usr/local/bin/jobq, ...) with exactly the environment
#                      in ENVFILE (NUL-separated KEY=VALUE), so that the process started from
#                      it is the program itself (its pid gets the signals)
#   k8s_ok MSG / k8s_fail MSG  report (k8s_fail must not return)
#   k8s_free_port      prints a free loopback port
# Processes started here are in K8S_PIDS (the caller's cleanup kills what is left).

K8S_PIDS=()

k8s_exec() { k8s_cmd "$@"; "${K8S_CMD[@]}"; }

# k8s_start LOG ENVFILE ARGV...: starts it in the background; its pid in K8S_PID.
k8s_start() {
  local log=$1
  shift
  k8s_cmd "$@"
  "${K8S_CMD[@]}" >"$log" 2>&1 </dev/null &
  K8S_PID=$!
  K8S_PIDS+=("$K8S_PID")
}

# k8s_env_edit IN OUT [KEY=VALUE | -KEY]...: a copy of an environment file with keys set or removed.
k8s_env_edit() {
  local in=$1 out=$2 kv k
  local -a env
  shift 2
  mapfile -d '' env <"$in"
  for kv in "$@"; do
    k=${kv#-}; k=${k%%=*}
    local -a keep=()
    for e in "${env[@]}"; do [ "${e%%=*}" = "$k" ] || keep+=("$e"); done
    env=("${keep[@]}")
    [[ $kv == -* ]] || env+=("$kv")
  done
  printf '%s\0' "${env[@]}" >"$out"
}

k8s_env_get() { # FILE KEY
  local e
  while IFS= read -r -d '' e; do [ "${e%%=*}" != "$2" ] || { printf '%s' "${e#*=}"; return 0; }; done <"$1"
  return 1
}

# k8s_http PORT PATH [AUTHORIZATION]: the status code of GET http://127.0.0.1:PORT/PATH.
k8s_http() {
  local line
  { exec 7<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || { echo 000; return; }
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n' "$2" \
    "${3:+Authorization: $3$'\r\n'}" >&7
  IFS=' ' read -r -t 5 _ line _ <&7 || line=000
  exec 7<&- 7>&-
  printf '%s' "$line"
}

k8s_wait_http() { # PORT PATH STATUS SECONDS
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    [ "$(k8s_http "$1" "$2")" = "$3" ] && return 0
    sleep 0.1
  done
  return 1
}

k8s_scenario() {
  local W=$K8S_WORK check=$K8S_TOOLS/tests/deploy/k8s_check.mjs rendered secrets
  local rpc pub http e pid id i out rc role tok
  # Render the base and the Secrets (kubectl kustomize, or the built-in renderer).
  "$K8S_REPO/deploy/k8s/make-secrets.sh" --dir "$W/secrets" --namespace jobq >"$W/make-secrets.log" 2>&1 ||
    k8s_fail "make-secrets.sh failed: $(cat "$W/make-secrets.log")"
  for d in base secrets; do
    [ "$d" = base ] && src=$K8S_REPO/deploy/k8s || src=$W/secrets
    if command -v kubectl >/dev/null && kubectl kustomize "$src" >"$W/$d.yaml" 2>"$W/kubectl.err"; then :
    else node "$check" render "$src" >"$W/$d.yaml" || k8s_fail "cannot render $src"; fi
  done
  rendered=$W/base.yaml secrets=$W/secrets.yaml
  for c in jobqd:Deployment/jobqd worker:Deployment/jobq-worker; do
    node "$check" materialize "$rendered" "$secrets" "${c#*:}" "${c%%:*}" "$K8S_FILES/${c%%:*}" "$K8S_SEEN/${c%%:*}" \
      2>"$W/materialize.err" || k8s_fail "materialize ${c#*:}: $(cat "$W/materialize.err")"
  done
  k8s_ok "the base's Secrets made by make-secrets.sh, mounted as the kubelet would (jobqd: $(ls "$K8S_FILES/jobqd/etc/jobq/credentials" | tr '\n' ' '))"

  # jobqd: the ConfigMap's settings; only the addresses move to loopback, keeping their scheme.
  rpc=$(k8s_free_port) pub=$(k8s_free_port) http=$(k8s_free_port)
  local srv_rpc srv_pub
  srv_rpc=$(k8s_env_get "$K8S_FILES/jobqd/env" JOBQ_RPC_URL) srv_pub=$(k8s_env_get "$K8S_FILES/jobqd/env" JOBQ_PUB_URL)
  k8s_env_edit "$K8S_FILES/jobqd/env" "$W/jobqd.env" "JOBQ_DATABASE_URL=$K8S_DB_URL" \
    "JOBQ_RPC_URL=${srv_rpc%%://*}://127.0.0.1:$rpc" "JOBQ_PUB_URL=${srv_pub%%://*}://127.0.0.1:$pub" \
    "JOBQ_HTTP_ADDR=127.0.0.1:$http"
  k8s_start "$W/jobqd.log" "$W/jobqd.env" /usr/local/bin/jobqd
  pid=$K8S_PID
  k8s_wait_http "$http" /healthz 200 20 || k8s_fail "/healthz: $(k8s_http "$http" /healthz); jobqd: $(tail -n 5 "$W/jobqd.log")"
  k8s_wait_http "$http" /readyz 200 20 || k8s_fail "/readyz: $(k8s_http "$http" /readyz); jobqd: $(tail -n 5 "$W/jobqd.log")"
  k8s_ok "jobqd runs with the base's settings (RPC $srv_rpc, PUB $srv_pub); /healthz and /readyz 200 without a token"

  local creds=$K8S_FILES/jobqd/etc/jobq/credentials
  [ "$(k8s_http "$http" /metrics)" = 401 ] || k8s_fail "/metrics without a token: $(k8s_http "$http" /metrics)"
  [ "$(k8s_http "$http" /metrics "Bearer $(cat "$creds/worker")")" = 403 ] || k8s_fail "/metrics with the worker token is not 403"
  [ "$(k8s_http "$http" /metrics "Bearer $(cat "$creds/reader")")" = 200 ] || k8s_fail "/metrics with the reader token is not 200"
  k8s_ok "/metrics: 401 without a token, 403 for the worker's, 200 for the reader's"

  # Clients: the worker container's environment, dialling localhost instead of the Service.
  local wrpc wpub
  wrpc=$(k8s_env_get "$K8S_FILES/worker/env" JOBQ_RPC_URL) wpub=$(k8s_env_get "$K8S_FILES/worker/env" JOBQ_PUB_URL)
  [ "${wrpc%%://*}" = "${srv_rpc%%://*}" ] && [ "${wpub%%://*}" = "${srv_pub%%://*}" ] ||
    k8s_fail "the worker dials $wrpc / $wpub, jobqd listens on $srv_rpc / $srv_pub"
  k8s_env_edit "$K8S_FILES/worker/env" "$W/worker.env" "JOBQ_RPC_URL=${wrpc%%://*}://localhost:$rpc" \
    "JOBQ_PUB_URL=${wpub%%://*}://localhost:$pub" "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=/tmp"
  for role in producer reader; do
    k8s_env_edit "$W/worker.env" "$W/$role.env" "JOBQ_AUTH_TOKEN_FILE=$K8S_SEEN/jobqd/etc/jobq/credentials/$role"
  done
  k8s_env_edit "$W/reader.env" "$W/nocert.env" -JOBQ_TLS_CERT -JOBQ_TLS_KEY
  k8s_env_edit "$W/reader.env" "$W/plain.env" "JOBQ_RPC_URL=tcp://localhost:$rpc"

  for ((i = 0; i < 100; i++)); do
    k8s_exec "$W/reader.env" /usr/local/bin/jobq stats --timeout-ms 1000 >"$W/out" 2>&1 && break
    sleep 0.2
  done
  [ "$i" -lt 100 ] || k8s_fail "the reader (worker's certificate, reader token) gets no answer: $(cat "$W/out")"
  for cmd in "stats" "enqueue --queue default --payload x"; do
    ! k8s_exec "$W/worker.env" /usr/local/bin/jobq $cmd --timeout-ms 5000 >"$W/out" 2>&1 &&
      grep -q PERMISSION_DENIED "$W/out" || k8s_fail "the worker's credential ran '$cmd': $(cat "$W/out")"
  done
  k8s_ok "the worker's credential may not call Stats or Enqueue (PERMISSION_DENIED); the reader's may call Stats"
  ! k8s_exec "$W/nocert.env" /usr/local/bin/jobq stats --timeout-ms 1500 >"$W/out" 2>&1 &&
    grep -Eq "UNAVAILABLE|DEADLINE_EXCEEDED" "$W/out" || k8s_fail "a client without a certificate: $(cat "$W/out")"
  ! k8s_exec "$W/plain.env" /usr/local/bin/jobq stats --timeout-ms 1500 >"$W/out" 2>&1 || k8s_fail "plain tcp:// was served"
  k8s_ok "a client without a certificate, or in plain tcp://, gets no answer"

  # The PUB port: TLS with the Service's names, and only for a client certificate.
  local wtls=$K8S_FILES/worker/etc/jobq/tls name
  for name in jobq jobq.jobq.svc jobq.jobq.svc.cluster.local; do
    timeout 10 openssl s_client -connect "127.0.0.1:$pub" -servername "$name" -verify_hostname "$name" \
      -CAfile "$wtls/ca.crt" -cert "$wtls/tls.crt" -key "$wtls/tls.key" -verify_return_error </dev/null \
      >"$W/out" 2>&1 || k8s_fail "PUB over TLS for $name with the worker's certificate: $(tail -n 5 "$W/out")"
  done
  ! timeout 10 openssl s_client -connect "127.0.0.1:$pub" -servername jobq -CAfile "$wtls/ca.crt" </dev/null \
    >"$W/out" 2>&1 || k8s_fail "PUB completed a handshake without a client certificate: $(tail -n 5 "$W/out")"
  k8s_ok "PUB speaks TLS with a certificate valid for the Service's names, and refuses a client without a certificate"

  k8s_start "$W/watch.json" "$W/worker.env" /usr/local/bin/jobq watch --queue default --json
  local wp=$K8S_PID
  sleep 1 # the subscription's TLS handshake is asynchronous; an announcement before it is lost
  id=$(k8s_exec "$W/producer.env" /usr/local/bin/jobq enqueue --queue default --payload k8s-scenario 2>"$W/out") ||
    k8s_fail "the producer could not enqueue: $(cat "$W/out")"
  [[ $id =~ ^[0-9]+$ ]] || k8s_fail "enqueue printed '$id'"
  local heard="\"queue\":\"default\",\"ids\":\[([0-9]+,)*$id[],]"
  for ((i = 0; i < 100; i++)); do grep -Eq "$heard" "$W/watch.json" && break; sleep 0.1; done
  kill -INT "$wp" 2>/dev/null || true
  wait "$wp" 2>/dev/null || true
  grep -Eq "$heard" "$W/watch.json" || k8s_fail "jobq watch with the worker's files heard nothing of job $id: $(cat "$W/watch.json")"
  k8s_ok "the producer's credential enqueued job $id; jobq watch with the worker's files heard it over PUB"

  local -a argv
  mapfile -d '' argv <"$K8S_FILES/worker/argv"
  [ "${#argv[@]}" -gt 0 ] || k8s_fail "the worker container has no command"
  k8s_start "$W/worker.log" "$W/worker.env" "${argv[@]}"
  local wk=$K8S_PID
  for ((i = 0; i < 200; i++)); do
    k8s_exec "$W/reader.env" /usr/local/bin/jobq get "$id" --json >"$W/out" 2>&1 &&
      grep -q '"status":"archive_completed"' "$W/out" && break
    sleep 0.1
  done
  kill -TERM "$wk" 2>/dev/null || true; rc=0; wait "$wk" 2>/dev/null || rc=$?
  grep -q '"status":"archive_completed"' "$W/out" || k8s_fail "the worker did not complete job $id: $(cat "$W/out"); worker: $(tail -n 5 "$W/worker.log")"
  [ "$rc" = 0 ] || k8s_fail "the worker exited $rc on SIGTERM: $(tail -n 5 "$W/worker.log")"
  k8s_ok "the worker Deployment's command (${argv[*]:0:3} ...) completed job $id and stopped on SIGTERM"

  kill -TERM "$pid" 2>/dev/null || true; rc=0; wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" = 0 ] || k8s_fail "jobqd exited $rc on SIGTERM: $(tail -n 5 "$W/jobqd.log")"
  for role in producer worker reader admin; do
    tok=$(cat "$creds/$role")
    ! grep -qF "$tok" "$W/jobqd.log" "$W/worker.log" || k8s_fail "the $role token appears in a log"
  done
  k8s_ok "jobqd stopped cleanly; no token in its log or the worker's"
}
