#!/usr/bin/env bash
# The documentation agrees with the programs: every flag `jobqd --help` lists has a row in the
# configuration table (the one after the "jobqd configuration" marker, in README.md or docs/)
# with its environment variable and default, and the table has no row for a flag jobqd does not
# know; the Liquibase versions the README names are the npm package bootstrap.sh installs and the
# version that package's CLI reports.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
build=${JOBQ_TEST_BUILD:?}
tmp=$(mktemp -d /tmp/jq-readme-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
. "$root/tests/harness/shlib.sh"

# ------------------------------------------------------------------ the configuration table
marker='<!-- jobqd configuration:'
doc=$(grep -l -F -- "$marker" "$root/README.md" "$root"/docs/*.md 2>/dev/null | head -n1 || true)
[ -n "$doc" ] || fail "no file under README.md or docs/ has the marker '$marker'"

# The table's rows as "flag<TAB>env<TAB>default", from the first table after the marker.
awk -v m="$marker" '
  index($0, m) == 1 { on = 1; next }
  on && /^\|/ { seen = 1; print; next }
  on && seen { exit }
' "$doc" | awk -F'|' 'NR > 2 {
    for (i = 2; i <= 4; i++) { gsub(/^ +| +$/, "", $i) }
    print $2 "\t" $3 "\t" $4
  }' >"$tmp/table.tsv"
[ -s "$tmp/table.tsv" ] || fail "no table after the marker in $doc"

# jobqd --help's options as "`--flag`<TAB>`ENV`<TAB>`default`" (or an empty default).
"$build/bin/jobqd" --help | awk '
  /^  --[a-z0-9-]+=VALUE$/ { flag = $1; sub(/=VALUE$/, "", flag); want = 2; next }
  want == 2 { want = 1; next }
  want == 1 {
    want = 0
    line = $0; sub(/^ +env /, "", line)
    env = line; sub(/,.*/, "", env)
    def = ""
    if (index(line, ", default ")) { def = line; sub(/^[^,]*, default /, "", def); def = "`" def "`" }
    print "`" flag "`\t`" env "`\t" def
  }' >"$tmp/help.tsv"
[ "$(wc -l <"$tmp/help.tsv")" -ge 30 ] || fail "parsed only $(wc -l <"$tmp/help.tsv") options from jobqd --help"

problems=0
while IFS=$'\t' read -r flag env def; do
  row=$(awk -F'\t' -v f="$flag" '$1 == f' "$tmp/table.tsv")
  if [ -z "$row" ]; then
    echo "missing: $flag ($env) has no row in $doc's configuration table" >&2; problems=$((problems + 1)); continue
  fi
  IFS=$'\t' read -r _ renv rdef <<<"$row"
  if [ "$renv" != "$env" ]; then
    echo "wrong: $flag's variable is $env, the table says '$renv'" >&2; problems=$((problems + 1))
  fi
  if [ -n "$def" ] && [ "$rdef" != "$def" ]; then
    echo "wrong: $flag's default is $def, the table says '$rdef'" >&2; problems=$((problems + 1))
  fi
  if [ -z "$def" ] && [[ $rdef == \`* ]]; then
    echo "wrong: $flag has no default in jobqd, the table says $rdef" >&2; problems=$((problems + 1))
  fi
done <"$tmp/help.tsv"
while IFS=$'\t' read -r flag _; do
  grep -q -F -- "$flag"$'\t' "$tmp/help.tsv" || { echo "stale: the table lists $flag, jobqd --help does not" >&2; problems=$((problems + 1)); }
done <"$tmp/table.tsv"
[ "$problems" -eq 0 ] || fail "$problems difference(s) between jobqd --help and $doc (above)"
ok "$doc's configuration table has each of jobqd's $(wc -l <"$tmp/help.tsv") options with its variable and default"

# ------------------------------------------------------------------ Liquibase's versions
pkg=$(sed -n 's/^LIQUIBASE_VERSION=//p' "$root/deploy/bootstrap.sh")
[ -n "$pkg" ] || fail "no LIQUIBASE_VERSION in deploy/bootstrap.sh"
grep -q "npm \`liquibase@$pkg\`" "$root/README.md" || fail "README does not name the npm package liquibase@$pkg that bootstrap.sh installs"
cache=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}
lb=${JOBQ_LIQUIBASE:-$cache/liquibase-$pkg/node_modules/liquibase/dist/liquibase/liquibase}
[ -x "$lb" ] || fail "no Liquibase at $lb (the test run's migrations use it)"
cli=$("$lb" --version 2>/dev/null | sed -n 's/^Liquibase Version: //p' | head -n1)
[ -n "$cli" ] || fail "$lb --version printed no 'Liquibase Version:'"
grep -q "npm \`liquibase@$pkg\`.* ships Liquibase $cli," "$root/README.md" \
  || fail "README does not say that liquibase@$pkg reports Liquibase $cli"
ok "README: npm liquibase@$pkg, which reports Liquibase $cli"
