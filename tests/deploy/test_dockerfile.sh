#!/usr/bin/env bash
# test_dockerfile.sh — static checks of deploy/Dockerfile and .dockerignore (no Docker engine is
# needed or used; hadolint is not packaged for Debian 12). `make image-check` builds the image with
# buildah and runs it; this test only reads the files:
#   - multi-stage on debian:12-slim: a "build" stage that installs the -dev packages and runs make,
#     and a final stage with no -dev package, no compiler, apt lists removed;
#   - the final stage: the runtime libraries, both binaries copied from the build stage, a numeric
#     non-root USER, EXPOSE 7100 7101 7102, ENTRYPOINT jobqd, listen addresses on 0.0.0.0;
#   - every library jobqd and jobq are linked against (readelf NEEDED, dpkg -S) is installed in the
#     final stage (or is libc6), and every -dev package of deploy/bootstrap.sh's build is in the
#     build stage;
#   - everything the Dockerfile COPYs exists and is not excluded by .dockerignore, which keeps out
#     build/, build-asan/ and .jobq/.
set -uo pipefail
root=${JOBQ_TEST_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${JOBQ_TEST_BUILD:-$root/build}
df=$root/deploy/Dockerfile
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

[ -f "$df" ] || { echo "FAIL: no deploy/Dockerfile"; exit 1; }
# Instructions one per line (continuations joined, comments dropped), prefixed by the stage number.
instr=$(awk '
  /^[[:space:]]*#/ { next }
  { line = line $0 }
  /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, " ", line); next }
  line ~ /^[[:space:]]*$/ { line = ""; next }
  { gsub(/[[:space:]]+/, " ", line); sub(/^ /, "", line)
    if (toupper(line) ~ /^FROM /) stage++
    print stage "\t" line; line = "" }' "$df")
nstages=$(awk -F'\t' 'END { print $1 + 0 }' <<<"$instr")
stage() { awk -F'\t' -v s="$1" '$1 == s { print $2 }' <<<"$instr"; }
first=$(stage 1) final=$(stage "$nstages")

[ "$nstages" -ge 2 ] || fail "not multi-stage ($nstages FROM)"
grep -Eq '^FROM debian:12-slim AS build$' <<<"$first" || fail "first stage must be 'FROM debian:12-slim AS build'"
grep -Eq '^FROM debian:12-slim( AS [a-z]+)?$' <<<"$final" || fail "final stage must be FROM debian:12-slim"
grep -Eq '^RUN .*\bmake\b' <<<"$first" || fail "build stage does not run make"

# Packages installed per stage.
pkgs() { grep -E '^RUN .*apt-get install' <<<"$1" | sed 's/.*apt-get install//; s/&&.*//' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u; }
build_pkgs=$(pkgs "$first") final_pkgs=$(pkgs "$final")
for p in $(grep -oE '\b[a-z0-9.+-]+-dev\b' "$root/deploy/bootstrap.sh" | grep -v -e cmocka -e libclang-rt | sort -u) gcc make pkg-config protobuf-c-compiler; do
  grep -qx "$p" <<<"$build_pkgs" || fail "build stage does not install $p (deploy/bootstrap.sh builds with it)"
done
for p in libnng1 libprotobuf-c1 libpq5 ca-certificates; do
  grep -qx "$p" <<<"$final_pkgs" || fail "final stage does not install $p"
done
grep -E -- '-dev$|^(gcc|g\+\+|clang|make|cpp|build-essential|protobuf-c-compiler|pkg-config)$' <<<"$final_pkgs" \
  | while read -r p; do echo "FAIL: final stage installs build-only package $p"; done | grep . && fails=$((fails + 1))
awk '/^RUN .*apt-get install/ && !/--no-install-recommends/ { found = 1 } END { exit !found }' <<<"$final" &&
  fail "final stage: apt-get install without --no-install-recommends"
grep -Eq '^RUN .*rm -rf /var/lib/apt/lists' <<<"$final" || fail "final stage keeps the apt lists"

# Runtime libraries actually needed by the binaries (when built here).
if [ -x "$build/bin/jobqd" ] && [ -x "$build/bin/jobq" ] && command -v readelf >/dev/null; then
  # Sanitizer runtimes appear only in the make check-asan build, never in the image's.
  for so in $(readelf -d "$build/bin/jobqd" "$build/bin/jobq" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
              grep -v -e '^libasan\.' -e '^libubsan\.' | sort -u); do
    file=$(ldconfig -p | awk -v so="$so" '$1 == so && /x86-64|x86_64|AArch64|aarch64/ { print $NF; exit }')
    [ -n "$file" ] || file=$(ldconfig -p | awk -v so="$so" '$1 == so { print $NF; exit }')
    pkg=$(dpkg -S "$(readlink -f "$file")" 2>/dev/null | head -n1 | cut -d: -f1)
    [ -n "$pkg" ] || pkg=$(dpkg -S "$file" 2>/dev/null | head -n1 | cut -d: -f1)
    case $pkg in
      libc6) ;;
      "") fail "cannot tell which package ships $so" ;;
      *) grep -qx "$pkg" <<<"$final_pkgs" || fail "jobqd/jobq need $so from $pkg, not installed in the final stage" ;;
    esac
  done
else
  echo "test_dockerfile: $build/bin not built: runtime libraries not checked against the binaries"
fi

# The final stage's contents and settings.
grep -Eq '^COPY --from=build .*/jobqd( |$)' <<<"$final" && grep -Eq '^COPY --from=build .*/jobq( |$)' <<<"$final" \
  || fail "final stage must COPY --from=build both jobqd and jobq"
user=$(grep -E '^USER ' <<<"$final" | tail -n1 | cut -d' ' -f2)
[[ $user =~ ^[0-9]+(:[0-9]+)?$ ]] || fail "USER must be numeric (uid[:gid]) so Kubernetes can check runAsNonRoot; got '$user'"
[[ ${user%%:*} =~ ^[0-9]+$ ]] && [ "${user%%:*}" -ne 0 ] || fail "USER must not be root"
[ "$(cut -f2 <<<"$instr" | grep -E '^(USER|FROM) ' | tail -n1 | cut -d' ' -f1)" = USER ] || fail "the last USER must come after the last FROM"
grep -Eq "^RUN .*useradd .*--uid ${user%%:*}\b" <<<"$final" || fail "final stage creates no user with uid ${user%%:*}"
for port in 7100 7101 7102; do
  grep -Eq "^EXPOSE .*\b$port\b" <<<"$final" || fail "final stage does not EXPOSE $port"
done
grep -Eq '^ENTRYPOINT \["[^"]*/jobqd"' <<<"$final" || fail 'ENTRYPOINT must be exec form ["/.../jobqd"]'
for kv in JOBQ_RPC_URL=tcp://0.0.0.0:7100 JOBQ_PUB_URL=tcp://0.0.0.0:7101 JOBQ_HTTP_ADDR=0.0.0.0:7102; do
  grep -Eq "^ENV .*\b$kv\b" <<<"$final" || fail "final stage must set ENV $kv"
done
grep -Eq '^(ADD|COPY) .*(https?://|\.\./)' <<<"$(cut -f2 <<<"$instr")" && fail "no remote or parent-directory sources"

# The build context: every COPY source exists and is not ignored.
di=$root/.dockerignore
[ -f "$di" ] || fail "no .dockerignore at the repository root"
for d in build/ build-asan/ .jobq/; do grep -qx "$d" "$di" 2>/dev/null || fail ".dockerignore does not exclude $d"; done
while read -r src; do
  [ -e "$root/$src" ] || fail "COPY source $src does not exist"
  top=${src%%/*}
  grep -Eqx "/?$top/?" "$di" 2>/dev/null && fail "COPY source $src is excluded by .dockerignore"
done < <(cut -f2 <<<"$instr" | grep -E '^COPY ' | grep -v -- '--from=' | awk '{ for (i = 2; i < NF; i++) print $i }')

if [ "$fails" -gt 0 ]; then echo "test_dockerfile: $fails problem(s)"; exit 1; fi
echo "test_dockerfile: ok ($nstages stages; final: $(tr '\n' ' ' <<<"$final_pkgs"); USER $user)"
