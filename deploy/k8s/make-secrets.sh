#!/usr/bin/env bash
# make-secrets.sh — makes the credentials the deploy/k8s base needs, outside the repository's
# history: one token per role, a private CA with a server certificate for jobqd and a client
# certificate for the worker (and any other client you name), and a kustomization that turns them
# into the Secrets the base mounts:
#
#   jobq-token-producer, -worker, -reader, -admin   key `token` (and `previous` while a rotation
#                                                   overlaps: jobqd accepts both)
#   jobq-tls          kubernetes.io/tls: jobqd's certificate (tls.crt, tls.key) and the CA (ca.crt)
#   jobq-tls-worker   kubernetes.io/tls: the worker's client certificate, and the CA
#   jobq-tls-NAME     the same for each --client NAME
#
# The CA's key (ca.key) stays in DIR and never goes into a Secret: keep DIR in your password
# manager or vault, not in git (deploy/k8s/secrets/ is git-ignored and kept out of image builds).
#
#   deploy/k8s/make-secrets.sh [OPTIONS]      make whatever is missing (nothing existing is replaced)
#   kubectl apply --server-side -k DIR        create or update the Secrets (jobqd reloads them)
#
# Options:
#   --dir DIR              where the files go (default deploy/k8s/secrets, created mode 0700)
#   --namespace NS         the namespace of the Secrets and of the Service in the server
#                          certificate's names (default jobq; remembered in DIR/settings)
#   --service NAME         the Service clients dial (default jobq; remembered)
#   --days N               validity of new server and client certificates (default 365)
#   --client NAME          also make a client certificate for NAME (Secret jobq-tls-NAME)
#   --rotate-token ROLE    a new token for ROLE; the current one moves to `previous` and stays
#                          valid until --retire-previous ROLE
#   --retire-previous ROLE drop ROLE's previous token
#   --renew-cert WHO       a new key and certificate from the same CA: `server` or a client name
# Every option that acts may be repeated. Tokens are `openssl rand -hex 32`; keys are EC P-256.
set -euo pipefail
umask 077

here=$(cd "$(dirname "$0")" && pwd)
ROLES=(producer worker reader admin)
dir=$here/secrets ns="" svc="" days=365 ca_days=3650
clients=() rotate=() retire=() renew=()

die() { printf 'make-secrets: %s\n' "$*" >&2; exit 2; }
say() { printf 'make-secrets: %s\n' "$*"; }
is_role() { case $1 in producer|worker|reader|admin) return 0 ;; esac; return 1; }
# A client name becomes part of a Secret's name (a DNS label) and of file names.
is_name() { [[ $1 =~ ^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$ ]] && [ "$1" != server ] && [ "$1" != ca ]; }

while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || case $1 in -h|--help) ;; *) die "$1 needs a value (see --help)" ;; esac
  case $1 in
    --dir) dir=$2 ;;
    --namespace) ns=$2 ;;
    --service) svc=$2 ;;
    --days) days=$2 ;;
    --client) is_name "$2" || die "--client $2: use lower-case letters, digits and '-'"; clients+=("$2") ;;
    --rotate-token) is_role "$2" || die "--rotate-token $2: not a role (${ROLES[*]})"; rotate+=("$2") ;;
    --retire-previous) is_role "$2" || die "--retire-previous $2: not a role (${ROLES[*]})"; retire+=("$2") ;;
    --renew-cert) { [ "$2" = server ] || is_name "$2"; } || die "--renew-cert $2: 'server' or a client name"; renew+=("$2") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift 2
done
[[ $days =~ ^[1-9][0-9]{0,4}$ ]] || die "--days $days: a number of days"
command -v openssl >/dev/null || die "openssl not found"

mkdir -p "$dir"
chmod 700 "$dir"
dir=$(cd "$dir" && pwd)
settings=$dir/settings
if [ -f "$settings" ]; then
  old_ns=$(sed -n 's/^namespace=//p' "$settings") old_svc=$(sed -n 's/^service=//p' "$settings")
  [ -z "$ns" ] || [ "$ns" = "$old_ns" ] || die "$dir was made for namespace $old_ns: use another --dir for $ns"
  [ -z "$svc" ] || [ "$svc" = "$old_svc" ] || die "$dir was made for service $old_svc: use another --dir for $svc"
  ns=$old_ns svc=$old_svc
fi
ns=${ns:-jobq} svc=${svc:-jobq}
[[ $ns =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || die "--namespace $ns: not a namespace name"
[[ $svc =~ ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || die "--service $svc: not a Service name"
printf 'namespace=%s\nservice=%s\n' "$ns" "$svc" >"$settings"

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

new_token() { openssl rand -hex 32 | tr -d '\n' >"$tmp/token" && mv "$tmp/token" "$1"; }
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() {
  new_key "$tmp/ca.key"
  openssl req -x509 -new -key "$tmp/ca.key" -out "$tmp/ca.crt" -days "$ca_days" -sha256 \
    -subj "/O=jobq/CN=jobq CA $ns $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>"$tmp/err" || die "openssl (CA): $(cat "$tmp/err")"
  mv "$tmp/ca.key" "$dir/ca.key"
  mv "$tmp/ca.crt" "$dir/ca.crt"
  say "made a CA, valid $ca_days days: ca.crt (ca.key signs certificates: keep it out of the cluster)"
}

# issue FILE CN EXTENSIONS: a new key and a certificate signed by the CA (the pair replaced together).
issue() {
  local file=$1 cn=$2
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" "$3" >"$tmp/ext"
  new_key "$tmp/$file.key"
  openssl req -new -key "$tmp/$file.key" -subj "/O=jobq/CN=$cn" -out "$tmp/$file.csr" 2>"$tmp/err" &&
    openssl x509 -req -in "$tmp/$file.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$tmp/ext" \
      -out "$tmp/$file.crt" 2>"$tmp/err" || die "openssl ($file): $(cat "$tmp/err")"
  mv "$tmp/$file.key" "$dir/$file.key"
  mv "$tmp/$file.crt" "$dir/$file.crt"
}

# The names clients dial: the Service within the namespace, across namespaces, and localhost for
# `kubectl port-forward` (nng's TLS checks DNS names only, not IP addresses).
issue_server() {
  issue server "$svc" "extendedKeyUsage=serverAuth
subjectAltName=DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local,DNS:localhost"
  say "issued server.crt for $svc.$ns.svc (and $svc, localhost), valid $days days"
}

issue_client() {
  issue "client-$1" "$1" "extendedKeyUsage=clientAuth"
  say "issued client-$1.crt (client certificate '$1'), valid $days days"
}

[ -f "$dir/ca.key" ] && [ -f "$dir/ca.crt" ] || {
  [ ! -f "$dir/ca.crt" ] || die "$dir/ca.crt exists without ca.key: restore the key, or move the folder away"
  make_ca
}
for r in "${ROLES[@]}"; do
  [ -f "$dir/$r.token" ] || { new_token "$dir/$r.token"; say "made the $r token: $r.token"; }
done
[ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ] || issue_server
for c in worker "${clients[@]}"; do
  [ -f "$dir/client-$c.crt" ] && [ -f "$dir/client-$c.key" ] || issue_client "$c"
done

for r in "${rotate[@]}"; do
  [ ! -f "$dir/$r.previous.token" ] ||
    die "$r already has a previous token: --retire-previous $r first (once nothing uses it)"
  mv "$dir/$r.token" "$dir/$r.previous.token"
  new_token "$dir/$r.token"
  say "new $r token; the old one stays valid as '$r.previous' until --retire-previous $r"
done
for r in "${retire[@]}"; do
  if [ -f "$dir/$r.previous.token" ]; then rm -f "$dir/$r.previous.token"; say "retired $r's previous token"
  else say "$r has no previous token"; fi
done
for w in "${renew[@]}"; do
  if [ "$w" = server ]; then issue_server
  elif [ -f "$dir/client-$w.crt" ]; then issue_client "$w"
  else die "--renew-cert $w: no client certificate '$w' in $dir (make one with --client $w)"; fi
done

# The kustomization, written whole each time from what DIR holds.
{
  printf '%s\n' \
    "# Written by deploy/k8s/make-secrets.sh; it names files with credentials: never commit this folder." \
    "# Apply: kubectl apply --server-side -k $dir" \
    "apiVersion: kustomize.config.k8s.io/v1beta1" \
    "kind: Kustomization" \
    "namespace: $ns" \
    "generatorOptions:" \
    "  # Fixed names, updated in place: the pods' volumes follow and jobqd reloads without a restart." \
    "  disableNameSuffixHash: true" \
    "  labels:" \
    "    app.kubernetes.io/name: jobq" \
    "    app.kubernetes.io/part-of: jobq" \
    "secretGenerator:"
  for r in "${ROLES[@]}"; do
    printf '  - name: jobq-token-%s\n    type: Opaque\n    files:\n      - token=%s.token\n' "$r" "$r"
    [ ! -f "$dir/$r.previous.token" ] || printf '      - previous=%s.previous.token\n' "$r"
  done
  printf '  - name: jobq-tls\n    type: kubernetes.io/tls\n    files:\n'
  printf '      - tls.crt=server.crt\n      - tls.key=server.key\n      - ca.crt=ca.crt\n'
  for f in "$dir"/client-*.crt; do
    c=${f##*/client-} c=${c%.crt}
    printf '  - name: jobq-tls-%s\n    type: kubernetes.io/tls\n    files:\n' "$c"
    printf '      - tls.crt=client-%s.crt\n      - tls.key=client-%s.key\n      - ca.crt=ca.crt\n' "$c" "$c"
  done
} >"$tmp/kustomization.yaml"
mv "$tmp/kustomization.yaml" "$dir/kustomization.yaml"
say "wrote $dir/kustomization.yaml; apply it with: kubectl apply --server-side -k $dir"
