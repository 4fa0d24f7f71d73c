#!/usr/bin/env bash
# migrate.sh — runs Liquibase on migrations/changelog.yaml against $JOBQ_DATABASE_URL.
#
#   migrate.sh update          apply every pending changeset
#   migrate.sh rollback-all    roll every changeset back (tests use it to prove each rollback works)
#   migrate.sh status          list pending changesets
#   migrate.sh -- ARGS...      any other Liquibase command
#
# JOBQ_DATABASE_URL may be a postgres:// URI or a libpq "key=value" string; Liquibase speaks JDBC,
# so both are translated here (host, port, dbname, user, password, sslmode).
set -euo pipefail

die() { printf 'migrate: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd)
JOBQ_CACHE=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
LB=${JOBQ_LIQUIBASE:-$JOBQ_CACHE/liquibase-4.28.1/node_modules/liquibase/dist/liquibase/liquibase}
[ -x "$LB" ] || die "Liquibase not found at $LB (run deploy/bootstrap.sh)"
url=${JOBQ_DATABASE_URL:-}
[ -n "$url" ] || die "JOBQ_DATABASE_URL is not set"

host=127.0.0.1 port=5432 db="" user=${USER:-postgres} password="" sslmode=""
urldecode() { local s=${1//+/ }; printf '%b' "${s//%/\\x}"; }

if [[ $url =~ ^postgres(ql)?:// ]]; then
  rest=${url#*://}
  query=""; [[ $rest == *\?* ]] && { query=${rest#*\?}; rest=${rest%%\?*}; }
  hostpart=${rest%%/*}; [[ $rest == */* ]] && db=${rest#*/}
  if [[ $hostpart == *@* ]]; then
    cred=${hostpart%@*}; hostpart=${hostpart##*@}
    user=$(urldecode "${cred%%:*}"); [[ $cred == *:* ]] && password=$(urldecode "${cred#*:}")
  fi
  [[ $hostpart == *:* ]] && { port=${hostpart##*:}; hostpart=${hostpart%:*}; }
  [ -n "$hostpart" ] && host=$hostpart
  IFS='&' read -ra kvs <<<"$query"
  for kv in "${kvs[@]}"; do
    case ${kv%%=*} in
      sslmode) sslmode=${kv#*=} ;; user) user=$(urldecode "${kv#*=}") ;;
      password) password=$(urldecode "${kv#*=}") ;; host) host=$(urldecode "${kv#*=}") ;;
      port) port=${kv#*=} ;; dbname) db=${kv#*=} ;;
    esac
  done
else
  # key=value pairs; values may be single-quoted.
  while read -r kv; do
    [ -n "$kv" ] || continue
    v=${kv#*=}; v=${v#\'}; v=${v%\'}
    case ${kv%%=*} in
      host|hostaddr) host=$v ;; port) port=$v ;; dbname) db=$v ;; user) user=$v ;;
      password) password=$v ;; sslmode) sslmode=$v ;;
    esac
  done < <(grep -oE "[a-z_]+=('[^']*'|[^ ]*)" <<<"$url")
fi
[ -n "$db" ] || db=$user
[[ $host == /* ]] && die "Liquibase (JDBC) cannot use a Unix socket ($host); give a TCP host in JOBQ_DATABASE_URL"

jdbc="jdbc:postgresql://$host:$port/$db"
[ -n "$sslmode" ] && jdbc="$jdbc?sslmode=$sslmode"

run_lb() {
  # Liquibase's banner and analytics prompt are noise in logs.
  JAVA_OPTS="${JAVA_OPTS:-} -Xss4m" "$LB" --show-banner=false \
    --log-level=WARNING \
    --search-path="$here/migrations" --changelog-file=changelog.yaml \
    --url="$jdbc" --username="$user" ${password:+--password="$password"} "$@"
}

case ${1:-} in
  update) run_lb update ;;
  rollback-all) run_lb rollback-count --count=100000 ;;
  status) run_lb status --verbose ;;
  --) shift; run_lb "$@" ;;
  *) die "usage: migrate.sh update|rollback-all|status|-- ARGS" ;;
esac
