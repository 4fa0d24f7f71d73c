#!/usr/bin/env bash
# test_k8s.sh — the deploy/k8s kustomize base renders offline and its objects are valid.
#
# 1. Render: `kubectl kustomize deploy/k8s` when kubectl is installed (it embeds kustomize and
#    needs no cluster); the built-in renderer of k8s_check.mjs (resources, labels, images,
#    namespace, fixed-name secretGenerator) otherwise. With kubectl, both are run and must agree,
#    so the fallback stays honest.
# 2. Validate every object against the Kubernetes API schemas, offline: the npm package
#    kubernetes-models (installed by deploy/bootstrap.sh into the cache) carries them as compiled
#    validators; unknown fields are caught from its type declarations.
# 3. jobq's rules (k8s_check.mjs): security contexts, probes, drain timing, Service/PDB selectors,
#    ports against the ConfigMap, ConfigMap keys against `jobqd --help`, worker flags against
#    `jobq worker --help`, the image's uid, the NetworkPolicies, and access: the base listens
#    with mutual TLS on RPC and PUB, mounts one Secret per role as jobqd's credentials, closes
#    /metrics to all but reader tokens, and the worker holds only the worker token and its own
#    client certificate, and the operator's console stays off.
# 4. Each rule of 3 about access catches the mistake it is for (a broken copy of the base).
# 5. The development overlay and components of deploy/k8s-dev/ render (kubectl needed: they use
#    patches) and say what they turn off on every object they weaken.
# 6. deploy/k8s/make-secrets.sh: its Secrets are what the base mounts (tokens, certificates that
#    verify for the Service's names and the right purpose, no CA key), a token rotation keeps the
#    old token as `previous` until retired, a re-run replaces nothing.
# 7. The repository holds no private key or credential, and the secrets folder is ignored by git
#    and by image builds.
# No cluster, no network. The container image itself is checked by test_dockerfile.sh, and the
# base's settings are run for real by test_k8s_run.sh.
set -euo pipefail
root=${JOBQ_TEST_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${JOBQ_TEST_BUILD:-$root/build}
cache=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
# The folder deploy/bootstrap.sh installs the npm packages into (its versions, read from it).
ver() { sed -n "s/^$1=//p" "$root/deploy/bootstrap.sh"; }
export JOBQ_K8S_VALIDATE_DIR=${JOBQ_K8S_VALIDATE_DIR:-$cache/k8s-validate-$(ver K8S_MODELS_VERSION)-yaml-$(ver YAML_VERSION)}
check=$root/tests/deploy/k8s_check.mjs
kubectl=${JOBQ_KUBECTL:-kubectl} # JOBQ_KUBECTL=none forces the built-in renderer
tmp=$(mktemp -d /tmp/jobq-k8s.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

command -v node >/dev/null || { echo "test_k8s: node not found (deploy/bootstrap.sh installs npm)"; exit 1; }
[ -d "$JOBQ_K8S_VALIDATE_DIR/node_modules/kubernetes-models" ] ||
  { echo "test_k8s: kubernetes-models not in $JOBQ_K8S_VALIDATE_DIR (run deploy/bootstrap.sh)"; exit 1; }

node "$check" render "$root/deploy/k8s" >"$tmp/builtin.json"
opts=(--same-as "$tmp/builtin.json")
if command -v "$kubectl" >/dev/null && "$kubectl" kustomize "$root/deploy/k8s" >"$tmp/rendered.yaml" 2>"$tmp/kubectl.err"; then
  echo "test_k8s: rendered with kubectl kustomize ($("$kubectl" version --client 2>/dev/null | grep -i kustomize || echo "version unknown"))"
elif command -v "$kubectl" >/dev/null && ! grep -qi 'unknown command' "$tmp/kubectl.err"; then
  cat "$tmp/kubectl.err"; echo "test_k8s: kubectl kustomize failed"; exit 1
else
  echo "test_k8s: kubectl not available: rendered with the built-in renderer (resources, labels, images)"
  cp "$tmp/builtin.json" "$tmp/rendered.yaml"; opts=()
fi

# What the checks compare against: the image's uid and migrations folder (deploy/Dockerfile) and
# the binaries' own --help, when they are built.
df=$root/deploy/Dockerfile
uid=$(sed -n 's/^USER \([0-9][0-9]*\).*/\1/p' "$df" | tail -n1)
migdir=$(sed -n 's#^COPY migrations/ \(/[^ ]*\)/\{0,1\}$#\1#p' "$df" | tail -n1)
[ -n "$uid" ] && opts+=(--uid "$uid")
[ -n "$migdir" ] && opts+=(--migrations-dir "${migdir%/}")
if [ -x "$build/bin/jobqd" ] && [ -x "$build/bin/jobq" ]; then
  "$build/bin/jobqd" --help >"$tmp/jobqd.help"
  "$build/bin/jobq" worker --help >"$tmp/worker.help" 2>&1 || true
  opts+=(--jobqd-help "$tmp/jobqd.help" --worker-help "$tmp/worker.help")
else
  echo "test_k8s: $build/bin has no jobqd/jobq: ConfigMap keys and worker flags not checked against --help"
fi

node "$check" check "$tmp/rendered.yaml" "${opts[@]}" --secure yes
echo "test_k8s: the base is valid and secure"

# ---------------------------------------------------------------------------------------------
# 4. The access rules bite: each broken copy of the base must fail with its message.
mutate() { # NAME JS EXPECTED
  node -e '
    const fs = require("fs");
    const o = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const by = (k, n) => o.find((x) => x.kind === k && x.metadata.name === n);
    const cm = by("ConfigMap", "jobq-config").data;
    const srv = by("Deployment", "jobqd").spec.template.spec, wrk = by("Deployment", "jobq-worker").spec.template.spec;
    const vol = (ps, n) => ps.volumes.find((v) => v.name === n);
    const wenv = (n) => wrk.containers[0].env.find((e) => e.name === n);
    eval(process.argv[3]);
    fs.writeFileSync(process.argv[2], JSON.stringify(o));' "$tmp/builtin.json" "$tmp/mutant.json" "$2"
  if node "$check" check "$tmp/mutant.json" --secure yes >"$tmp/mutant.out" 2>&1; then
    echo "FAIL: the check passed a base where $1"; exit 1
  fi
  grep -qF -- "$3" "$tmp/mutant.out" || { cat "$tmp/mutant.out"; echo "FAIL: $1: no finding '$3'"; exit 1; }
}
mutate "RPC is plain tcp" 'cm.JOBQ_RPC_URL = "tcp://0.0.0.0:7100"; wenv("JOBQ_RPC_URL").value = "tcp://jobq:7100"' "the base must listen with TLS"
mutate "PUB is plain tcp" 'cm.JOBQ_PUB_URL = "tcp://0.0.0.0:7101"' "PUB must be behind the same TLS as RPC"
mutate "the worker dials plain tcp" 'wenv("JOBQ_RPC_URL").value = "tcp://jobq:7100"' "worker: JOBQ_RPC_URL must dial the Service as jobqd listens"
mutate "credentials are off" 'delete cm.JOBQ_CREDENTIALS_FILE' "the base must set JOBQ_CREDENTIALS_FILE"
mutate "the worker mounts the admin token" 'vol(wrk, "token").secret.secretName = "jobq-token-admin"' "a worker holds the worker credential and nothing else"
mutate "the worker mounts the server certificate" 'vol(wrk, "tls").secret.secretName = "jobq-tls"' "a worker holds the worker credential and nothing else"
mutate "the worker Secret projects as admin" 'vol(srv, "credentials").projected.sources.find((x) => x.secret.name === "jobq-token-worker" && !x.secret.optional).secret.items[0].path = "admin"' "want token -> worker (required)"
mutate "a role Secret is optional" 'vol(srv, "credentials").projected.sources.find((x) => x.secret.name === "jobq-token-reader").secret.optional = true' "jobq-token-reader key token -> reader (optional)"
mutate "a role is missing" 'vol(srv, "credentials").projected.sources = vol(srv, "credentials").projected.sources.filter((x) => x.secret.name !== "jobq-token-admin")' "lacks the admin token"
mutate "the TLS Secret is optional" 'vol(srv, "tls").secret.optional = true' "must be key tls.crt of the Secret jobq-tls, mounted (not optional)"
mutate "the credentials are readable by all" 'vol(srv, "credentials").projected.defaultMode = 0o444' "at most 0440"
mutate "a certificate alone grants a role" 'cm.JOBQ_TLS_CLIENT_ROLE = "worker"' "JOBQ_TLS_CLIENT_ROLE must not be set"
mutate "/metrics is open" 'delete cm.JOBQ_METRICS_AUTH' "JOBQ_METRICS_AUTH must be on"
mutate "the worker token is a literal" 'wenv("JOBQ_AUTH_TOKEN_FILE").name = "JOBQ_AUTH_TOKEN"' "JOBQ_AUTH_TOKEN must not be set"
mutate "the worker token file is not the worker Secret" 'wenv("JOBQ_AUTH_TOKEN_FILE").value = "/tmp/token"' "JOBQ_AUTH_TOKEN_FILE=/tmp/token must be key token of the Secret jobq-token-worker"
mutate "the worker lacks fsGroup" 'delete wrk.securityContext.fsGroup' "without fsGroup"
mutate "the console is on" 'cm.JOBQ_CONSOLE_ADDR = "0.0.0.0:7103"' "the console stays off in the base"
echo "test_k8s: 17 broken copies of the base were each caught"

# ---------------------------------------------------------------------------------------------
# 5. Development overlay and components (kustomize patches: kubectl only).
if [ "${opts[0]:-}" = --same-as ]; then
  kubectl kustomize "$root/deploy/k8s-dev/plaintext" >"$tmp/dev.yaml"
  node "$check" check "$tmp/dev.yaml" --secure no
  grep -q "tls+tcp\|JOBQ_TLS_\|JOBQ_CREDENTIALS_FILE\|jobq-token-\|jobq-tls" "$tmp/dev.yaml" &&
    { echo "FAIL: deploy/k8s-dev/plaintext still names TLS or credentials"; exit 1; }
  for comp in no-tls no-credentials; do
    mkdir "$tmp/only-$comp"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n' \
      "$(realpath --relative-to="$tmp/only-$comp" "$root/deploy/k8s")" \
      "$(realpath --relative-to="$tmp/only-$comp" "$root/deploy/k8s-dev/$comp")" >"$tmp/only-$comp/kustomization.yaml"
    kubectl kustomize "$tmp/only-$comp" >"$tmp/only-$comp.yaml"
    node "$check" check "$tmp/only-$comp.yaml" --secure no
  done
  grep -q "tls+tcp://" "$tmp/only-no-credentials.yaml" || { echo "FAIL: no-credentials turned TLS off too"; exit 1; }
  grep -q "JOBQ_CREDENTIALS_FILE" "$tmp/only-no-tls.yaml" || { echo "FAIL: no-tls turned credentials off too"; exit 1; }
  # The annotations are what marks a weakened object: without them the check must object.
  node -e '
    const fs = require("fs"), YAML = require(process.argv[3]);
    const o = YAML.parseAllDocuments(fs.readFileSync(process.argv[1], "utf8")).map((d) => d.toJS());
    for (const x of o) delete x.metadata.annotations;
    fs.writeFileSync(process.argv[2], JSON.stringify(o));' "$tmp/dev.yaml" "$tmp/dev-bare.json" "$JOBQ_K8S_VALIDATE_DIR/node_modules/yaml"
  ! node "$check" check "$tmp/dev-bare.json" --secure no >"$tmp/out" 2>&1 && grep -q "must carry the annotation jobq/insecure-no-tls" "$tmp/out" &&
    grep -q "must carry the annotation jobq/insecure-no-credentials" "$tmp/out" ||
    { cat "$tmp/out"; echo "FAIL: an unannotated plain-text overlay passed"; exit 1; }
  echo "test_k8s: deploy/k8s-dev: plaintext, no-tls alone and no-credentials alone render, each weakened object annotated"
else
  echo "test_k8s: SKIPPED deploy/k8s-dev (its patches need kubectl kustomize)"
fi

# ---------------------------------------------------------------------------------------------
# 6. make-secrets.sh.
ms=$root/deploy/k8s/make-secrets.sh
sd=$tmp/secrets
render_secrets() { # OUT: kubectl and the built-in renderer must agree
  node "$check" render "$sd" >"$tmp/secrets-builtin.json"
  if [ "${opts[0]:-}" = --same-as ]; then
    kubectl kustomize "$sd" >"$1"
    node "$check" secrets "$1" --base "$tmp/rendered.yaml" --same-as "$tmp/secrets-builtin.json"
  else
    cp "$tmp/secrets-builtin.json" "$1"
    node "$check" secrets "$1" --base "$tmp/rendered.yaml"
  fi
}
secret_value() { # RENDERED SECRET KEY: the decoded value ("" when absent)
  node -e '
    const fs = require("fs"), YAML = require(process.argv[4]);
    const t = fs.readFileSync(process.argv[1], "utf8");
    const o = t.trimStart().startsWith("[") ? JSON.parse(t) : YAML.parseAllDocuments(t).map((d) => d.toJS());
    const s = o.find((x) => x.kind === "Secret" && x.metadata.name === process.argv[2]);
    const v = s?.data?.[process.argv[3]];
    process.stdout.write(v ? Buffer.from(String(v).replace(/\s/g, ""), "base64").toString() : "");' \
    "$1" "$2" "$3" "$JOBQ_K8S_VALIDATE_DIR/node_modules/yaml"
}
"$ms" --dir "$sd" --namespace team-a >"$tmp/ms.out"
render_secrets "$tmp/s1.yaml"
[ "$(stat -c %a "$sd")" = 700 ] || { echo "FAIL: the secrets folder is not 0700"; exit 1; }
loose=$(find "$sd" -type f ! -perm 600)
[ -z "$loose" ] || { echo "FAIL: files in the secrets folder not 0600: $loose"; exit 1; }
grep -q "ca.key" "$sd/kustomization.yaml" && { echo "FAIL: the CA key is in the kustomization"; exit 1; }
for n in jobq jobq.team-a jobq.team-a.svc jobq.team-a.svc.cluster.local localhost; do
  openssl verify -CAfile "$sd/ca.crt" -purpose sslserver -verify_hostname "$n" "$sd/server.crt" >/dev/null 2>&1 ||
    { echo "FAIL: server.crt is not valid for $n"; exit 1; }
done
openssl verify -CAfile "$sd/ca.crt" -purpose sslserver -verify_hostname jobq.other.svc "$sd/server.crt" >/dev/null 2>&1 &&
  { echo "FAIL: server.crt is valid for another namespace's Service"; exit 1; }
openssl verify -CAfile "$sd/ca.crt" -purpose sslclient "$sd/client-worker.crt" >/dev/null 2>&1 || { echo "FAIL: client-worker.crt is no client certificate"; exit 1; }
openssl verify -CAfile "$sd/ca.crt" -purpose sslclient "$sd/server.crt" >/dev/null 2>&1 && { echo "FAIL: server.crt works as a client certificate"; exit 1; }
openssl verify -CAfile "$sd/ca.crt" -purpose sslserver "$sd/client-worker.crt" >/dev/null 2>&1 && { echo "FAIL: client-worker.crt works as a server certificate"; exit 1; }
for c in server client-worker; do
  [ "$(openssl pkey -in "$sd/$c.key" -pubout)" = "$(openssl x509 -in "$sd/$c.crt" -noout -pubkey)" ] || { echo "FAIL: $c.key does not match $c.crt"; exit 1; }
done
[ "$(secret_value "$tmp/s1.yaml" jobq-tls tls.crt)" = "$(cat "$sd/server.crt")" ] || { echo "FAIL: jobq-tls does not hold server.crt"; exit 1; }
grep -q "namespace: team-a" "$sd/kustomization.yaml" || { echo "FAIL: the Secrets' namespace is not team-a"; exit 1; }
echo "test_k8s: make-secrets.sh: tokens, a CA, server.crt for the Service's names (serverAuth only), client-worker.crt (clientAuth only)"

sums() { (cd "$sd" && sha256sum $(ls)); }
before=$(sums)
"$ms" --dir "$sd" >/dev/null
[ "$(sums)" = "$before" ] || { echo "FAIL: a re-run of make-secrets.sh replaced files"; diff <(echo "$before") <(sums); exit 1; }
"$ms" --dir "$sd" --namespace team-b >/dev/null 2>&1 && { echo "FAIL: make-secrets.sh reused a folder for another namespace"; exit 1; }
old=$(cat "$sd/worker.token")
"$ms" --dir "$sd" --rotate-token worker >/dev/null
render_secrets "$tmp/s2.yaml"
[ "$(secret_value "$tmp/s2.yaml" jobq-token-worker previous)" = "$old" ] || { echo "FAIL: the rotated worker token is not kept as previous"; exit 1; }
new=$(secret_value "$tmp/s2.yaml" jobq-token-worker token)
[ -n "$new" ] && [ "$new" != "$old" ] || { echo "FAIL: --rotate-token worker made no new token"; exit 1; }
[ "$(secret_value "$tmp/s2.yaml" jobq-token-producer token)" = "$(secret_value "$tmp/s1.yaml" jobq-token-producer token)" ] ||
  { echo "FAIL: rotating the worker token changed the producer's"; exit 1; }
"$ms" --dir "$sd" --rotate-token worker >/dev/null 2>&1 && { echo "FAIL: a second rotation dropped a previous token still in use"; exit 1; }
"$ms" --dir "$sd" --retire-previous worker >/dev/null
render_secrets "$tmp/s3.yaml"
[ -z "$(secret_value "$tmp/s3.yaml" jobq-token-worker previous)" ] || { echo "FAIL: --retire-previous kept the old token"; exit 1; }
serial=$(openssl x509 -in "$sd/server.crt" -noout -serial)
"$ms" --dir "$sd" --renew-cert server --client billing >/dev/null
[ "$(openssl x509 -in "$sd/server.crt" -noout -serial)" != "$serial" ] || { echo "FAIL: --renew-cert server kept the certificate"; exit 1; }
openssl verify -CAfile "$sd/ca.crt" -purpose sslserver -verify_hostname jobq "$sd/server.crt" >/dev/null 2>&1 || { echo "FAIL: the renewed server.crt does not verify"; exit 1; }
render_secrets "$tmp/s4.yaml"
[ -n "$(secret_value "$tmp/s4.yaml" jobq-tls-billing tls.crt)" ] || { echo "FAIL: --client billing made no Secret jobq-tls-billing"; exit 1; }
echo "test_k8s: make-secrets.sh: a re-run keeps everything; rotate keeps the old token as previous until retired; renew and --client work"

# ---------------------------------------------------------------------------------------------
# 7. No credential in the repository.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$root" check-ignore -q deploy/k8s/secrets/worker.token || { echo "FAIL: deploy/k8s/secrets/ is not git-ignored"; exit 1; }
  keys=$(git -C "$root" grep -lE -e "-----BEGIN ([A-Z]+ )?PRIVATE KEY-----" || true)
  [ -z "$keys" ] || { echo "FAIL: private keys committed: $keys"; exit 1; }
  named=$(git -C "$root" ls-files | grep -E '\.(token|key|pem|p12)$|(^|/)deploy/k8s/secrets/' || true)
  [ -z "$named" ] || { echo "FAIL: credential files committed: $named"; exit 1; }
  echo "test_k8s: no private key or credential file is tracked; deploy/k8s/secrets/ is ignored"
else
  echo "test_k8s: not a git checkout: tracked files not checked"
fi
grep -qx "deploy/k8s/secrets/" "$root/.dockerignore" || { echo "FAIL: .dockerignore does not exclude deploy/k8s/secrets/"; exit 1; }
echo "test_k8s: ok"
