#!/usr/bin/env bash
# image-check.sh — builds the filesystem of deploy/Dockerfile's image WITHOUT a Docker engine and
# checks that it works: a release check for machines where `docker build` is not available
# (tests/deploy/test_dockerfile.sh only reads the Dockerfile; this one executes it).
#
# How: a Debian 12 minbase rootfs made by debootstrap and shaped like debian:12-slim (the slim
# dpkg excludes and apt settings of the official image, bookworm-updates/-security applied) is
# cached under ~/.cache/jobq/image-check/. Every stage of the Dockerfile runs in its own copy of
# it: RUN through `chroot ROOT /bin/sh -c` with the stage's ENV, WORKDIR and USER (and /proc,
# /dev, resolv.conf and hosts mounted only for the command's duration); COPY from the build context
# (honouring .dockerignore) or --from an earlier stage. The instructions it implements are FROM
# (debian:12-slim / debian:bookworm-slim or an earlier stage) [AS name], ARG, ENV, LABEL, WORKDIR,
# COPY [--from] [--chown], RUN, USER, EXPOSE, ENTRYPOINT and CMD; anything else (another
# instruction, flag, image, heredoc, ${VAR:-...} form, wildcard source) stops it with an error, so
# it never passes a Dockerfile it did not really execute.
#
# Checks on the final stage:
#   - every ELF file the final stage COPYs resolves all its libraries (ldd in the chroot);
#   - the ENTRYPOINT runs as the USER's uid:gid (chroot --userspec), non-root, with --help (or
#     --version) and exits 0;
#   - no compiler, toolchain or *-dev package is installed (dpkg in the chroot), no cc/gcc/ld on
#     PATH, and the apt lists are gone;
#   - unless IMAGE_CHECK_HEALTHZ=0: jobqd from the rootfs, as the USER, against a throwaway
#     PostgreSQL (tests/harness/pgctl.sh, migrated by deploy/migrate.sh) answers 200 on /healthz
#     and /readyz. Only the listen addresses are overridden (free loopback ports, like
#     `docker run -e`): the chroot shares the host's network. When PostgreSQL or the migrations
#     cannot be set up (not an image problem) this part is reported as SKIPPED, never as passed;
#   - then the deploy/k8s base's own settings with the image's binaries, as uid 10001
#     (tests/deploy/k8s_scenario.sh, also run by `make test` with the build's): Secrets from
#     deploy/k8s/make-secrets.sh laid out in the rootfs as the kubelet would mount them, jobqd with
#     the ConfigMap's environment (mutual TLS on RPC and PUB, role credentials, /metrics for a
#     reader token), role checks, clients without a certificate refused, and the worker
#     Deployment's command and environment completing a job. SKIPPED (never passed) without node
#     and the npm packages of deploy/bootstrap.sh, or for a --ref without make-secrets.sh.
#
#   deploy/image-check.sh [--ref REV] [--refresh] [--keep]   (root: debootstrap, chroot, mount)
#     --ref REV   build the committed tree REV (git archive; its Dockerfile and .dockerignore)
#                 instead of the working tree: a release tag, or a stable source while the
#                 working tree is being edited
#     --refresh   debootstrap the base again (like `docker pull` of a newer debian:12-slim)
#     --keep      keep the stage rootfs folders (path printed at the end)
#
# Environment: IMAGE_CHECK_MIRROR (default: the machine's bookworm apt mirror),
# IMAGE_CHECK_SECURITY_MIRROR, IMAGE_CHECK_CONTEXT (build context, default the repository),
# IMAGE_CHECK_DOCKERFILE (default deploy/Dockerfile of the context), IMAGE_CHECK_TMP (where the
# stage rootfs folders go, default /var/tmp; ~400 MB while it runs), IMAGE_CHECK_VERBOSE=1 (stream
# RUN output too), IMAGE_CHECK_HEALTHZ=0. Every command's output goes to
# ~/.cache/jobq/image-check/last-run.log.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
CONTEXT=${IMAGE_CHECK_CONTEXT:-$here}
DOCKERFILE=${IMAGE_CHECK_DOCKERFILE:-}
CACHE=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}/image-check
LOG=$CACHE/last-run.log
SUITE=bookworm
# Bump when the base preparation changes, so an old cached base is rebuilt rather than reused.
BASE_RECIPE=1
# The config of debian:12-slim itself (docker inspect): what a stage starting FROM it inherits.
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

REFRESH=0 KEEP=0 REF=""
WORK="" PG_DIR="" JOBQD_PID=""
MOUNTS=() CREATED=()

die() { printf 'image-check: %s\n' "$*" >&2; exit 1; }
say() { printf 'image-check: %s\n' "$*"; }
now() { date +%s; }

# ---------------------------------------------------------------------------------------------
# Cleanup: whatever the exit path, stop what we started, unmount, and only then delete.

cleanup() {
  local rc=$? m
  set +e
  stop_jobqd
  [ -n "$PG_DIR" ] && "$here/tests/harness/pgctl.sh" destroy "$PG_DIR" >>"$LOG" 2>&1
  unmount_under "${WORK:-/nonexistent}"
  unmount_under "$CACHE"
  # Belt and braces: anything still mounted below our folders (e.g. mounted by a subshell).
  for m in $(awk -v a="${WORK:-/nonexistent}/" -v b="$CACHE/" \
               'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ]; then
      say "kept $WORK" >&8
    else
      # --one-file-system: should a mount have survived, rm stops at it instead of going into /dev.
      rm -rf --one-file-system "$WORK"
    fi
  fi
  # To the original stderr: a signal can arrive while a command's output goes to the log.
  [ "$rc" -eq 0 ] || printf 'image-check: FAILED (log: %s)\n' "$LOG" >&9
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# Mounts: a RUN sees /proc, /dev and the host's resolv.conf and hosts (as a build container does),
# only while it runs, so a stage folder is never copied or deleted with something mounted in it.

mount_runtime() {
  local root=$1 f
  # Explicit checks: callers run this under || where set -e does not apply.
  mount -t proc proc "$root/proc" || die "cannot mount /proc in $root"
  MOUNTS+=("$root/proc")
  mount --bind /dev "$root/dev" || die "cannot bind-mount /dev in $root"
  MOUNTS+=("$root/dev")
  for f in etc/resolv.conf etc/hosts; do
    # A symlink would be followed on the host side of the chroot: never mount over one.
    [ ! -L "$root/$f" ] || die "/$f is a symlink in $root: refusing to bind-mount over it"
    if [ ! -e "$root/$f" ]; then
      : >"$root/$f"
      CREATED+=("$root/$f")
    fi
    mount --bind "/$f" "$root/$f" || die "cannot bind-mount /$f in $root"
    MOUNTS+=("$root/$f")
  done
}

unmount_under() {
  local prefix=$1 i m keep=() kept_files=()
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${MOUNTS[i]}
    if [[ $m == "$prefix"/* ]]; then
      umount "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount $m"
    else
      keep=("$m" "${keep[@]}")
    fi
  done
  MOUNTS=("${keep[@]}")
  # Mount points we had to create (the image has no resolv.conf/hosts of its own) go again.
  for m in "${CREATED[@]}"; do
    if [[ $m == "$prefix"/* ]]; then rm -f "$m"; else kept_files+=("$m"); fi
  done
  CREATED=("${kept_files[@]}")
}

# chroot_run ROOT [chroot options] -- COMMAND...: COMMAND in ROOT with the runtime mounts.
chroot_run() {
  local root=$1 rc=0 opts=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  mount_runtime "$root"
  chroot "${opts[@]}" "$root" "$@" </dev/null || rc=$?
  unmount_under "$root"
  return "$rc"
}

# Output of long commands goes to the log; IMAGE_CHECK_VERBOSE=1 streams it as well.
logged() {
  if [ "${IMAGE_CHECK_VERBOSE:-0}" = 1 ]; then
    "$@" 2>&1 | tee -a "$LOG"
  else
    "$@" >>"$LOG" 2>&1
  fi
}

show_log_tail() { printf -- '--- last lines of %s ---\n' "$LOG" >&2; tail -n 40 "$LOG" >&2; }

# ---------------------------------------------------------------------------------------------
# The base: debian:12-slim rebuilt with debootstrap, cached, copied for every stage.

# Prints "MAIN SECURITY": the machine's own bookworm mirrors (deb822 .sources or one-line lists).
find_mirrors() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v suite="$SUITE" '
    function pick(uri, s) {
      sub(/\/+$/, "", uri)
      if (s == suite && main == "") main = uri
      if (s == suite "-security" && sec == "") sec = uri
    }
    function flush(   n, i, s, u) {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
        n = split(suites, s, /[ \t]+/); split(uris, u, /[ \t]+/)
        for (i = 1; i <= n; i++) pick(u[1], s[i])
      }
      types = uris = suites = enabled = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*#/) next
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if (match($0, /^[A-Za-z-]+:/)) {
        key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val; else if (key == "uris") uris = val
        else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
      }
      next
    }
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      pick($i, $(i + 1))
    }
    END { flush(); print main, sec }' "${files[@]}"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return 0
  say "installing debootstrap (apt-get)"
  logged apt-get install -y --no-install-recommends debootstrap \
    || { logged apt-get update && logged apt-get install -y --no-install-recommends debootstrap; } \
    || { show_log_tail; die "could not install debootstrap"; }
}

# What debuerreotype (the tool behind the official image) adds to a debootstrap for a "slim"
# Docker image; without it packages would ship docs the real image drops, and apt/dpkg would
# behave differently (services started by postinst scripts, caches kept).
shape_like_debian_slim() {
  local root=$1 main=$2 sec=$3 d
  rm -f "$root/etc/apt/sources.list" "$root/etc/resolv.conf" "$root/etc/hostname"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$main" "$SUITE" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$sec" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$sec" "$SUITE"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  # No service may start from a package's postinst: in a chroot it would run on the host.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  printf 'force-unsafe-io\n' >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
  printf 'DPkg::Post-Invoke { %s };\nAPT::Update::Post-Invoke { %s };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
    "$clean" "$clean" >"$root/etc/apt/apt.conf.d/docker-clean"
  printf 'Acquire::GzipIndexes "true";\n' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# This is the "slim" variant of the Debian base image (as debuerreotype makes it).
path-exclude /usr/share/doc/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-include /usr/share/doc/*/copyright
path-include /usr/share/locale/all_languages
path-include /usr/share/locale/currency/*
path-include /usr/share/locale/l10n/*
path-include /usr/share/locale/languages
path-include /usr/share/locale/locale.alias
EOF
  # The published image is regenerated with the point release and security updates applied.
  logged chroot_run "$root" -- /usr/bin/env -i PATH="$BASE_PATH" DEBIAN_FRONTEND=noninteractive \
    /bin/sh -c 'apt-get update && apt-get -y upgrade' \
    || { show_log_tail; die "apt-get upgrade of the base failed"; }
  # Files installed before the excludes existed go the way slimify removes them.
  for d in usr/share/doc usr/share/groff usr/share/info usr/share/linda usr/share/lintian/overrides \
           usr/share/locale usr/share/man; do
    [ -d "$root/$d" ] || continue
    find "$root/$d" -mindepth 1 ! -type d ! -path "$root/usr/share/doc/*/copyright" \
      ! -path "$root/usr/share/locale/all_languages" ! -path "$root/usr/share/locale/currency/*" \
      ! -path "$root/usr/share/locale/l10n/*" ! -path "$root/usr/share/locale/languages" \
      ! -path "$root/usr/share/locale/locale.alias" -delete
    find "$root/$d" -mindepth 1 -depth -type d -empty -delete
  done
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  find "$root/var/log" -type f -exec truncate -s 0 {} +
}

# Sets BASE to a ready base rootfs (cached) and BASE_NOTE to how it was obtained.
ensure_base() {
  local arch mirrors main sec t0 stamp want
  arch=$(dpkg --print-architecture)
  BASE=$CACHE/base-$SUITE-slim-$arch
  stamp=$BASE.stamp
  mirrors=$(find_mirrors)
  main=${IMAGE_CHECK_MIRROR:-${mirrors%% *}}
  sec=${IMAGE_CHECK_SECURITY_MIRROR:-${mirrors#* }}
  [ -n "$main" ] || die "no $SUITE mirror in /etc/apt/sources.list{,.d}; set IMAGE_CHECK_MIRROR"
  [ -n "$sec" ] || say "warning: no $SUITE-security mirror found; the base gets no security updates"
  want="recipe=$BASE_RECIPE mirror=$main security=$sec"
  if [ "$REFRESH" = 0 ] && [ -d "$BASE" ] && [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$want" ]; then
    BASE_NOTE="cached base from $(sed -n 2p "$stamp")"
    say "base: $BASE_NOTE ($BASE)"
    return 0
  fi
  ensure_debootstrap
  # Built aside and renamed when complete, so an interrupted debootstrap is never taken for a base.
  rm -rf --one-file-system "$BASE" "$BASE.tmp" "$stamp"
  say "base: debootstrap --variant=minbase $SUITE from $main (a few minutes, once)"
  t0=$(now)
  logged debootstrap --variant=minbase --arch="$arch" "$SUITE" "$BASE.tmp" "$main" \
    || { show_log_tail; die "debootstrap failed"; }
  shape_like_debian_slim "$BASE.tmp" "$main" "$sec"
  mv "$BASE.tmp" "$BASE"
  printf '%s\n%s\n' "$want" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$stamp"
  BASE_NOTE="base debootstrapped in $(($(now) - t0)) s"
  say "base: ready ($BASE_NOTE, $(du -sxm "$BASE" | cut -f1) MB)"
}

# ---------------------------------------------------------------------------------------------
# Dockerfile parsing: instructions with continuations joined and comments dropped, as Docker does.

KW=() ARGS=() LN=()

add_instruction() {
  local lineno=$1 text=$2
  text=${text#"${text%%[![:space:]]*}"}
  text=${text%"${text##*[![:space:]]}"}
  local kw=${text%%[[:space:]]*} rest=""
  [[ $text == *[[:space:]]* ]] && rest=${text#*[[:space:]]}
  rest=${rest#"${rest%%[![:space:]]*}"}
  KW+=("${kw^^}") ARGS+=("$rest") LN+=("$lineno")
}

parse_dockerfile() {
  local file=$1 line lineno=0 buf="" start=0 directives=1 in_cont=0
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    if [ "$in_cont" = 0 ]; then
      if [ "$directives" = 1 ] && [[ $line =~ ^#[[:space:]]*([A-Za-z]+)[[:space:]]*=[[:space:]]*([^[:space:]]*)[[:space:]]*$ ]]; then
        # Another escape character or frontend would change the rules implemented here;
        # Docker treats unknown directives as comments.
        case ${BASH_REMATCH[1],,}=${BASH_REMATCH[2]} in
          'escape=\'|syntax=docker/dockerfile:1*) continue ;;
          escape=*|syntax=*) die "$file:$lineno: parser directive '${BASH_REMATCH[1]}=${BASH_REMATCH[2]}' not implemented" ;;
          *) continue ;;
        esac
      fi
      directives=0
      [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
      start=$lineno
    else
      # Inside a continuation Docker drops comment and empty lines.
      [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    fi
    if [[ $line =~ ^(.*)\\[[:space:]]*$ ]]; then
      buf+=${BASH_REMATCH[1]}
      in_cont=1
      continue
    fi
    add_instruction "$start" "$buf$line"
    buf="" in_cont=0
  done <"$file"
  [ -z "$buf" ] || add_instruction "$start" "$buf"
  [ ${#KW[@]} -gt 0 ] || die "$file: no instructions"
}

# Before spending minutes on stages: refuse what this script cannot execute faithfully.
validate_instructions() {
  local i kw args first seen_from=0
  for i in "${!KW[@]}"; do
    kw=${KW[i]} args=${ARGS[i]}
    case $kw in
      FROM|ARG|ENV|LABEL|WORKDIR|COPY|RUN|USER|EXPOSE|ENTRYPOINT|CMD) ;;
      *) die "line ${LN[i]}: $kw is not implemented by image-check.sh (refusing rather than skipping it)" ;;
    esac
    [ "$kw" != FROM ] || seen_from=1
    [ "$seen_from" = 1 ] || [ "$kw" = ARG ] || die "line ${LN[i]}: $kw before the first FROM"
    if [[ $kw == RUN || $kw == COPY ]] && [[ $args =~ \<\<-?[\"\']?[A-Za-z_] ]]; then
      die "line ${LN[i]}: heredocs (<<WORD) are not implemented"
    fi
    read -r first _ <<<"$args" || true
    [[ $kw != RUN || $first != --* ]] || die "line ${LN[i]}: RUN ${first%%=*} is not implemented"
  done
}

# ---------------------------------------------------------------------------------------------
# Words and variables: Docker's shell-word rules for ENV, LABEL, ARG, COPY, USER, EXPOSE, WORKDIR
# and FROM (quotes, backslashes, $VAR and ${VAR}); RUN is left to the shell, as Docker does.

declare -A G_ARGS=() S_ENV=() S_ARGS=() S_LABELS=()
VAR_SCOPE=stage

lookup_var() {
  local name=$1
  if [ "$VAR_SCOPE" = global ]; then
    printf '%s' "${G_ARGS[$name]-}"
  elif [ -n "${S_ENV[$name]+x}" ]; then
    printf '%s' "${S_ENV[$name]}"
  else
    printf '%s' "${S_ARGS[$name]-}"
  fi
}

# Expands the variable reference at position I of S; sets EXP_VALUE and EXP_LEN (chars consumed).
expand_at() {
  local rest=${1:$2+1} name
  if [[ $rest =~ ^\{([^}]*)\} ]]; then
    name=${BASH_REMATCH[1]}
    EXP_LEN=$((${#BASH_REMATCH[0]} + 1))
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
      || die "line $CUR_LINE: \${$name} (modifiers) is not implemented"
    EXP_VALUE=$(lookup_var "$name")
  elif [[ $rest =~ ^[A-Za-z_][A-Za-z0-9_]* ]]; then
    EXP_VALUE=$(lookup_var "${BASH_REMATCH[0]}")
    EXP_LEN=$((${#BASH_REMATCH[0]} + 1))
  else
    EXP_VALUE='$' EXP_LEN=1
  fi
}

# Splits S into WORDS.
split_words() {
  local s=$1 n=${#1} i=0 c nx q="" word="" inword=0
  WORDS=()
  while [ "$i" -lt "$n" ]; do
    c=${s:i:1}
    if [ "$q" = "'" ]; then
      if [ "$c" = "'" ]; then q=""; else word+=$c; fi
      i=$((i + 1))
      continue
    fi
    case $c in
      '$')
        expand_at "$s" "$i"
        word+=$EXP_VALUE inword=1
        i=$((i + EXP_LEN))
        continue ;;
      '\')
        nx=${s:i+1:1}
        if [ -z "$q" ] || [[ $nx == [\"\$\\] ]]; then word+=$nx; else word+=$c$nx; fi
        inword=1 i=$((i + 2))
        continue ;;
    esac
    if [ "$q" = '"' ]; then
      if [ "$c" = '"' ]; then q=""; else word+=$c; fi
    else
      case $c in
        ' '|$'\t') [ "$inword" = 0 ] || WORDS+=("$word"); word="" inword=0 ;;
        '"'|"'") q=$c inword=1 ;;
        *) word+=$c inword=1 ;;
      esac
    fi
    i=$((i + 1))
  done
  [ -z "$q" ] || die "line $CUR_LINE: unterminated quote"
  [ "$inword" = 0 ] || WORDS+=("$word")
}

# Parses a JSON array of strings (exec form) into JSON; returns 1 when S is not one.
parse_json_array() {
  local s=$1 n=${#1} i=0 c str
  JSON=()
  skip_ws() { while [ "$i" -lt "$n" ] && [[ ${s:i:1} == [[:space:]] ]]; do i=$((i + 1)); done; }
  skip_ws
  [ "${s:i:1}" = '[' ] || return 1
  i=$((i + 1)); skip_ws
  if [ "${s:i:1}" = ']' ]; then i=$((i + 1)); skip_ws; [ "$i" -eq "$n" ]; return; fi
  while :; do
    [ "${s:i:1}" = '"' ] || return 1
    i=$((i + 1)) str=""
    while :; do
      [ "$i" -lt "$n" ] || return 1
      c=${s:i:1}
      if [ "$c" = '"' ]; then break; fi
      if [ "$c" = '\' ]; then
        i=$((i + 1))
        case ${s:i:1} in
          '"'|'\'|/) str+=${s:i:1} ;;
          n) str+=$'\n' ;; t) str+=$'\t' ;; r) str+=$'\r' ;; b) str+=$'\b' ;; f) str+=$'\f' ;;
          *) die "line $CUR_LINE: JSON escape \\${s:i:1} is not implemented" ;;
        esac
      else
        str+=$c
      fi
      i=$((i + 1))
    done
    JSON+=("$str")
    i=$((i + 1)); skip_ws
    case ${s:i:1} in
      ,) i=$((i + 1)); skip_ws ;;
      ']') i=$((i + 1)); skip_ws; [ "$i" -eq "$n" ]; return ;;
      *) return 1 ;;
    esac
  done
}

# Exec form when the arguments are a JSON array, else shell form (Docker's fallback, with its
# warning): sets FORM_ARGV.
exec_or_shell_form() {
  local args=$1 kw=$2
  if parse_json_array "$args"; then
    FORM_ARGV=("${JSON[@]}")
  else
    [[ $args != \[* ]] || say "warning: line $CUR_LINE: $kw is not valid JSON; used as shell form, as Docker does"
    FORM_ARGV=(/bin/sh -c "$args")
  fi
}

# ---------------------------------------------------------------------------------------------
# .dockerignore: moby's patternmatcher rules (Go filepath.Match syntax plus **, "!" exceptions,
# the last matching pattern wins, a pattern matching a parent folder matches its contents).

IGN_RE=() IGN_NEG=()

load_dockerignore() {
  local f=$CONTEXT/.dockerignore line neg re ch i n p
  [ -f "$f" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    [[ $line == \#* ]] && continue
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    [ -n "$line" ] || continue
    neg=0
    if [[ $line == !* ]]; then neg=1 line=${line#!}; fi
    # filepath.Clean, then no leading slash (patterns are relative to the context root).
    while [[ $line == */ && $line != / ]]; do line=${line%/}; done
    while [[ $line == *//* ]]; do line=${line//\/\//\/}; done
    while [[ $line == ./* ]]; do line=${line#./}; done
    [[ $line == /?* ]] && line=${line#/}
    [[ /$line/ != */../* ]] || die ".dockerignore: '..' in pattern '$line' is not implemented"
    re="" i=0 n=${#line}
    while [ "$i" -lt "$n" ]; do
      ch=${line:i:1}
      case $ch in
        '*')
          if [ "${line:i+1:1}" = '*' ]; then
            i=$((i + 1))
            [ "${line:i+1:1}" = / ] && i=$((i + 1))
            if [ $((i + 1)) -ge "$n" ]; then re+='.*'; else re+='(.*/)?'; fi
          else
            re+='[^/]*'
          fi ;;
        '?') re+='[^/]' ;;
        '.'|'+'|'('|')'|'|'|'{'|'}'|'$') re+="\\$ch" ;;
        '\') i=$((i + 1)); p=${line:i:1}; re+="\\$p" ;;
        *) re+=$ch ;;
      esac
      i=$((i + 1))
    done
    IGN_RE+=("^$re\$") IGN_NEG+=("$neg")
  done <"$f"
}

# is_ignored PATH (relative to the context): 0 when .dockerignore keeps it out of the context.
is_ignored() {
  local path=$1 k matched=0 hit parent prefix part parts
  for k in "${!IGN_RE[@]}"; do
    hit=0
    if [[ $path =~ ${IGN_RE[k]} ]]; then
      hit=1
    elif [[ $path == */* ]]; then
      parent=${path%/*} prefix=""
      IFS=/ read -ra parts <<<"$parent"
      for part in "${parts[@]}"; do
        prefix=${prefix:+$prefix/}$part
        if [[ $prefix =~ ${IGN_RE[k]} ]]; then hit=1; break; fi
      done
    fi
    [ "$hit" = 0 ] || { [ "${IGN_NEG[k]}" = 1 ] && matched=0 || matched=1; }
  done
  [ "$matched" = 1 ]
}

# ---------------------------------------------------------------------------------------------
# Stages.

S_INDEX=-1 S_ROOT="" S_WORKDIR=/ S_USER="" S_START=0
S_EP=() S_CMD=() S_EXPOSE=()
declare -A STAGE_ROOT=() STAGE_BY_NAME=()
STAGE_SECONDS=() STAGE_LABEL=()
CUR_LINE=0

# Where PATH (inside ROOT) really is on the host, symlinks resolved inside ROOT (an absolute
# symlink such as /bin -> /usr/bin must not be followed on the host).
host_path() {
  local root=$1 path=$2 mode=${3:--m} inner
  inner=$(chroot "$root" /usr/bin/realpath "$mode" -- "$path") || return 1
  printf '%s%s' "$root" "$inner"
}

# resolve_user ROOT SPEC: prints uid:gid for user[:group], looked up in ROOT's passwd/group.
resolve_user() {
  local root=$1 spec=$2 user group uid gid=""
  user=${spec%%:*} group=""
  [[ $spec == *:* ]] && group=${spec#*:}
  if [[ $user =~ ^[0-9]+$ ]]; then
    uid=$user
    gid=$(awk -F: -v u="$uid" '$3 == u { print $4; exit }' "$root/etc/passwd")
  else
    uid=$(awk -F: -v u="$user" '$1 == u { print $3; exit }' "$root/etc/passwd")
    [ -n "$uid" ] || die "line $CUR_LINE: user '$user' not found in the stage's /etc/passwd"
    gid=$(awk -F: -v u="$user" '$1 == u { print $4; exit }' "$root/etc/passwd")
  fi
  if [ -n "$group" ]; then
    if [[ $group =~ ^[0-9]+$ ]]; then
      gid=$group
    else
      gid=$(awk -F: -v g="$group" '$1 == g { print $3; exit }' "$root/etc/group")
      [ -n "$gid" ] || die "line $CUR_LINE: group '$group' not found in the stage's /etc/group"
    fi
  fi
  printf '%s:%s' "$uid" "${gid:-0}"
}

# The environment a process of the stage gets: ENV and the stage's ARGs, HOME from the user.
stage_env() {
  local root=$1 uid=$2 k home
  ENVV=()
  for k in "${!S_ARGS[@]}"; do [ -n "${S_ENV[$k]+x}" ] || ENVV+=("$k=${S_ARGS[$k]}"); done
  for k in "${!S_ENV[@]}"; do ENVV+=("$k=${S_ENV[$k]}"); done
  [ -n "${S_ENV[PATH]+x}" ] || ENVV+=("PATH=$BASE_PATH")
  if [ -z "${S_ENV[HOME]+x}" ]; then
    home=$(awk -F: -v u="$uid" '$3 == u { print $6; exit }' "$root/etc/passwd")
    ENVV+=("HOME=${home:-/}")
  fi
}

save_stage_config() {
  declare -p S_ENV S_LABELS S_WORKDIR S_USER S_EP S_CMD S_EXPOSE \
    | sed -e 's/^declare -- /declare -g /' -e 's/^declare -\([A-Za-z]*\) /declare -g\1 /' \
    >"$WORK/stage-$S_INDEX.config"
}

finish_stage() {
  [ "$S_INDEX" -ge 0 ] || return 0
  save_stage_config
  STAGE_SECONDS[S_INDEX]=$(($(now) - S_START))
  say "stage ${STAGE_LABEL[S_INDEX]}: done in ${STAGE_SECONDS[S_INDEX]} s"
}

do_from() {
  local img name="" src_index
  VAR_SCOPE=global
  split_words "$1"
  VAR_SCOPE=stage
  [[ ${WORDS[0]-} != --* ]] || die "line $CUR_LINE: FROM ${WORDS[0]} is not implemented"
  case ${#WORDS[@]} in
    1) ;;
    3) [ "${WORDS[1],,}" = as ] || die "line $CUR_LINE: FROM IMAGE [AS NAME] expected"; name=${WORDS[2],,} ;;
    *) die "line $CUR_LINE: FROM IMAGE [AS NAME] expected" ;;
  esac
  img=${WORDS[0]}
  finish_stage
  S_INDEX=$((S_INDEX + 1)) S_START=$(now)
  STAGE_LABEL[S_INDEX]=${name:-$S_INDEX}
  S_ROOT=$WORK/stage-$S_INDEX
  S_ARGS=()
  if [ -n "${STAGE_BY_NAME[${img,,}]+x}" ]; then
    src_index=${STAGE_BY_NAME[${img,,}]}
    say "stage ${STAGE_LABEL[S_INDEX]}: FROM stage ${STAGE_LABEL[src_index]}"
    cp -a "${STAGE_ROOT[$src_index]}" "$S_ROOT"
    # shellcheck disable=SC1090
    source "$WORK/stage-$src_index.config"
  else
    case ${img#docker.io/} in
      debian:12-slim|debian:bookworm-slim|library/debian:12-slim|library/debian:bookworm-slim) ;;
      *) die "line $CUR_LINE: FROM $img: only debian:12-slim/debian:bookworm-slim (rebuilt here with debootstrap) or an earlier stage are implemented" ;;
    esac
    say "stage ${STAGE_LABEL[S_INDEX]}: FROM $img (a copy of the base)"
    cp -a "$BASE" "$S_ROOT"
    S_ENV=([PATH]=$BASE_PATH) S_LABELS=() S_WORKDIR=/ S_USER="" S_EP=() S_CMD=(bash) S_EXPOSE=()
  fi
  STAGE_ROOT[$S_INDEX]=$S_ROOT
  [ -z "$name" ] || STAGE_BY_NAME[$name]=$S_INDEX
  STAGE_BY_NAME[$S_INDEX]=$S_INDEX
}

do_arg() {
  local w k
  split_words "$1"
  [ ${#WORDS[@]} -gt 0 ] || die "line $CUR_LINE: ARG needs a name"
  for w in "${WORDS[@]}"; do
    k=${w%%=*}
    [[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "line $CUR_LINE: bad ARG name '$k'"
    if [ "$S_INDEX" -lt 0 ]; then
      G_ARGS[$k]=${w#*=}
      [[ $w == *=* ]] || G_ARGS[$k]=""
    elif [[ $w == *=* ]]; then
      S_ARGS[$k]=${w#*=}
    else
      # A bare ARG in a stage brings in the global value (no --build-arg here).
      S_ARGS[$k]=${G_ARGS[$k]-}
    fi
  done
}

# ENV and LABEL: KEY=VALUE pairs only (the legacy "KEY VALUE" form is refused).
key_values() {
  local kw=$1 w
  split_words "$2"
  [ ${#WORDS[@]} -gt 0 ] || die "line $CUR_LINE: $kw needs KEY=VALUE"
  KV_KEYS=() KV_VALUES=()
  for w in "${WORDS[@]}"; do
    [[ $w == ?*=* ]] || die "line $CUR_LINE: $kw '$w': only the KEY=VALUE form is implemented"
    KV_KEYS+=("${w%%=*}") KV_VALUES+=("${w#*=}")
  done
}

do_env() {
  local i
  key_values ENV "$1"
  for i in "${!KV_KEYS[@]}"; do S_ENV[${KV_KEYS[i]}]=${KV_VALUES[i]}; done
}

do_label() {
  local i
  key_values LABEL "$1"
  for i in "${!KV_KEYS[@]}"; do S_LABELS[${KV_KEYS[i]}]=${KV_VALUES[i]}; done
}

do_workdir() {
  local dir hp
  split_words "$1"
  [ ${#WORDS[@]} -eq 1 ] || die "line $CUR_LINE: WORKDIR takes one path"
  dir=${WORDS[0]}
  [[ $dir == /* ]] || dir=${S_WORKDIR%/}/$dir
  hp=$(host_path "$S_ROOT" "$dir")
  mkdir -p "$hp"
  # BuildKit creates a missing WORKDIR owned by the current USER.
  [ -z "$S_USER" ] || chown "$(resolve_user "$S_ROOT" "$S_USER")" "$hp"
  # Kept as written (cleaned, symlinks not resolved), as Docker records it.
  S_WORKDIR=$(chroot "$S_ROOT" /usr/bin/realpath -m -s -- "$dir")
}

do_user() {
  split_words "$1"
  [ ${#WORDS[@]} -eq 1 ] || die "line $CUR_LINE: USER takes one user[:group]"
  S_USER=${WORDS[0]}
}

do_expose() {
  local w
  split_words "$1"
  for w in "${WORDS[@]}"; do
    [[ $w =~ ^[0-9]+(-[0-9]+)?(/(tcp|udp|sctp))?$ ]] || die "line $CUR_LINE: bad EXPOSE '$w'"
    S_EXPOSE+=("$w")
  done
}

do_entrypoint() {
  exec_or_shell_form "$1" ENTRYPOINT
  S_EP=("${FORM_ARGV[@]}")
  # Docker: an ENTRYPOINT resets the CMD inherited from the base image.
  S_CMD=()
}

do_cmd() {
  exec_or_shell_form "$1" CMD
  S_CMD=("${FORM_ARGV[@]}")
}

do_run() {
  local args=$1 uidgid="0:0" rc=0 t0
  if parse_json_array "$args"; then
    FORM_ARGV=("${JSON[@]}")
  else
    FORM_ARGV=(/bin/sh -c "$args")
  fi
  [ -z "$S_USER" ] || uidgid=$(resolve_user "$S_ROOT" "$S_USER")
  stage_env "$S_ROOT" "${uidgid%%:*}"
  t0=$(now)
  printf '\n### stage %s line %s: RUN %s\n' "${STAGE_LABEL[S_INDEX]}" "$CUR_LINE" "$args" >>"$LOG"
  # env -i: nothing of this script's environment leaks into the build, as in a container.
  logged chroot_run "$S_ROOT" --userspec="$uidgid" -- \
    /usr/bin/env -i -C "$S_WORKDIR" "${ENVV[@]}" "${FORM_ARGV[@]}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    show_log_tail
    die "line $CUR_LINE: RUN failed (exit $rc) in stage ${STAGE_LABEL[S_INDEX]}"
  fi
  say "    ... $(($(now) - t0)) s"
}

# Normalises a COPY source to a path relative to the context root ("." for the root itself).
context_rel() {
  local p=$1
  while [[ $p == */ && $p != / ]]; do p=${p%/}; done
  while [[ $p == *//* ]]; do p=${p//\/\//\/}; done
  p=${p#/}
  while [[ $p == ./* ]]; do p=${p#./}; done
  [ -n "$p" ] && [ "$p" != . ] || p=.
  [[ /$p/ != */../* ]] || die "line $CUR_LINE: COPY source '$1' is outside the build context"
  printf '%s' "$p"
}

# The files of context folder REL that .dockerignore lets through, NUL-separated, relative to REL.
context_listing() {
  local rel=$1 p full
  while IFS= read -r -d '' p; do
    p=${p#./}
    if [ "$rel" = . ]; then full=$p; else full=$rel/$p; fi
    is_ignored "$full" || printf '%s\0' "$p"
  done < <(cd "$CONTEXT/$rel" && find . -mindepth 1 -print0)
}

# copy_one SRC_HOST DEST DEST_IS_DIR OWNER LISTING: one COPY source into the stage.
copy_one() {
  local src=$1 dest=$2 dest_is_dir=$3 owner=$4 listing=$5 target hp
  if [ -d "$src" ]; then
    # A folder's contents are copied, not the folder itself.
    hp=$(host_path "$S_ROOT" "$dest")
    mkdir -p "$hp"
    if [ -n "$listing" ]; then
      tar -C "$src" --null --no-recursion -T "$listing" --numeric-owner \
        --owner="${owner%%:*}" --group="${owner#*:}" -cf - | tar -C "$hp" -xpf -
      tr '\0' '\n' <"$listing" | sed "s|^|${dest%/}/|" >>"$WORK/copied.$S_INDEX"
    else
      tar -C "$src" --numeric-owner --owner="${owner%%:*}" --group="${owner#*:}" -cf - . | tar -C "$hp" -xpf -
      (cd "$src" && find . -mindepth 1) | sed "s|^\./|${dest%/}/|" >>"$WORK/copied.$S_INDEX"
    fi
  else
    target=$dest
    hp=$(host_path "$S_ROOT" "$dest")
    if [ "$dest_is_dir" = 1 ] || [ -d "$hp" ]; then target=${dest%/}/$(basename "$src"); fi
    hp=$(host_path "$S_ROOT" "$target")
    mkdir -p "$(dirname "$hp")"
    cp --preserve=mode,timestamps -- "$src" "$hp"
    chown "$owner" "$hp"
    printf '%s\n' "$target" >>"$WORK/copied.$S_INDEX"
  fi
}

do_copy() {
  local from="" chown="" owner="0:0" dest dest_is_dir=0 src rel srchost listing="" n from_root
  [[ $1 != \[* ]] || die "line $CUR_LINE: COPY in JSON form is not implemented"
  split_words "$1"
  while [ ${#WORDS[@]} -gt 0 ] && [[ ${WORDS[0]} == --* ]]; do
    case ${WORDS[0]} in
      --from=*) from=${WORDS[0]#--from=} ;;
      --chown=*) chown=${WORDS[0]#--chown=} ;;
      *) die "line $CUR_LINE: COPY ${WORDS[0]%%=*} is not implemented" ;;
    esac
    WORDS=("${WORDS[@]:1}")
  done
  n=${#WORDS[@]}
  [ "$n" -ge 2 ] || die "line $CUR_LINE: COPY needs a source and a destination"
  dest=${WORDS[n - 1]}
  [[ $dest == */ ]] && dest_is_dir=1
  [ "$n" -eq 2 ] || [ "$dest_is_dir" = 1 ] \
    || die "line $CUR_LINE: COPY with several sources needs a destination ending in /"
  [[ $dest == /* ]] || dest=${S_WORKDIR%/}/$dest
  [ -z "$chown" ] || owner=$(resolve_user "$S_ROOT" "$chown")
  if [ -n "$from" ]; then
    [ -n "${STAGE_BY_NAME[${from,,}]+x}" ] && [ "${STAGE_BY_NAME[${from,,}]}" -lt "$S_INDEX" ] \
      || die "line $CUR_LINE: COPY --from=$from: only an earlier stage is implemented (no images)"
    from_root=${STAGE_ROOT[${STAGE_BY_NAME[${from,,}]}]}
  fi
  for src in "${WORDS[@]:0:n-1}"; do
    [[ $src != *[\*\?\[]* ]] || die "line $CUR_LINE: COPY wildcard '$src' is not implemented"
    if [ -n "$from" ]; then
      srchost=$(host_path "$from_root" "$src" -e) \
        || die "line $CUR_LINE: COPY --from=$from: $src not found in that stage"
      listing=""
    else
      rel=$(context_rel "$src")
      srchost=$CONTEXT/$rel
      [ -e "$srchost" ] || die "line $CUR_LINE: COPY: $src not found in the build context"
      if [ -d "$srchost" ]; then
        listing=$WORK/listing
        context_listing "$rel" >"$listing"
        if [ ! -s "$listing" ] && { [ "$rel" = . ] || is_ignored "$rel"; }; then
          die "line $CUR_LINE: COPY: $src is excluded by .dockerignore"
        fi
      else
        [ "$rel" = . ] || ! is_ignored "$rel" || die "line $CUR_LINE: COPY: $src is excluded by .dockerignore"
        listing=""
      fi
    fi
    copy_one "$srchost" "$dest" "$dest_is_dir" "$owner" "$listing"
  done
}

run_dockerfile() {
  local i n=${#KW[@]} args short
  for ((i = 0; i < n; i++)); do
    CUR_LINE=${LN[i]} args=${ARGS[i]}
    short=$args
    [ ${#short} -le 90 ] || short="${short:0:87}..."
    [ "$S_INDEX" -lt 0 ] || [ "${KW[i]}" = FROM ] || say "[${STAGE_LABEL[S_INDEX]}] ${KW[i]} $short"
    case ${KW[i]} in
      FROM) do_from "$args" ;;
      ARG) do_arg "$args" ;;
      ENV) do_env "$args" ;;
      LABEL) do_label "$args" ;;
      WORKDIR) do_workdir "$args" ;;
      COPY) do_copy "$args" ;;
      RUN) do_run "$args" ;;
      USER) do_user "$args" ;;
      EXPOSE) do_expose "$args" ;;
      ENTRYPOINT) do_entrypoint "$args" ;;
      CMD) do_cmd "$args" ;;
      *) die "line $CUR_LINE: ${KW[i]} is not implemented" ;;
    esac
  done
  finish_stage
}

# ---------------------------------------------------------------------------------------------
# Checks on the final stage (its state is still in the S_* variables).

FAILS=0
fail() { printf 'image-check: FAIL: %s\n' "$*" >&2; FAILS=$((FAILS + 1)); }

is_elf() { [ "$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')" = 7f454c46 ]; }

check_libraries() {
  local f hp out=$WORK/ldd.out n=0
  while IFS= read -r f; do
    hp=$(host_path "$S_ROOT" "$f" -e) || continue
    [ -f "$hp" ] && is_elf "$hp" || continue
    n=$((n + 1))
    if ! chroot_run "$S_ROOT" -- /usr/bin/ldd "$f" >"$out" 2>&1; then
      grep -q 'not a dynamic executable' "$out" || { fail "ldd $f failed: $(cat "$out")"; continue; }
    fi
    if grep -q 'not found' "$out"; then
      fail "$f: missing libraries: $(grep 'not found' "$out" | awk '{ print $1 }' | tr '\n' ' ')"
    else
      say "ok: $f resolves all its libraries ($(grep -c '=>' "$out") via ldd)"
    fi
  done < <(sort -u "$WORK/copied.$S_INDEX" 2>/dev/null)
  [ "$n" -gt 0 ] || fail "the final stage copies no ELF binary"
}

check_entrypoint() {
  local uidgid out=$WORK/ep.out flag ok=0
  [ ${#S_EP[@]} -gt 0 ] || { fail "the final stage has no ENTRYPOINT"; return; }
  [ -n "$S_USER" ] || { fail "the final stage has no USER: the container would run as root"; return; }
  uidgid=$(resolve_user "$S_ROOT" "$S_USER")
  [ "${uidgid%%:*}" != 0 ] || { fail "USER $S_USER is root"; return; }
  stage_env "$S_ROOT" "${uidgid%%:*}"
  chroot_run "$S_ROOT" --userspec="$uidgid" -- /usr/bin/env -i "${ENVV[@]}" /usr/bin/id -u >"$out" 2>&1 || true
  [ "$(cat "$out")" = "${uidgid%%:*}" ] || { fail "cannot run as $uidgid in the rootfs: $(cat "$out")"; return; }
  for flag in --help --version; do
    if chroot_run "$S_ROOT" --userspec="$uidgid" -- \
         /usr/bin/env -i -C "$S_WORKDIR" "${ENVV[@]}" "${S_EP[@]}" "$flag" >"$out" 2>&1; then
      say "ok: ENTRYPOINT ${S_EP[*]} $flag exits 0 as uid:gid $uidgid ($(head -n1 "$out"))"
      ok=1
      break
    fi
  done
  [ "$ok" = 1 ] || fail "ENTRYPOINT ${S_EP[*]} --help/--version fails as $uidgid: $(head -n5 "$out")"
}

check_no_toolchain() {
  local out=$WORK/dpkg.out bad lists
  # dpkg-query reads the same database as `dpkg -l`, in a format safe to parse.
  chroot_run "$S_ROOT" -- /usr/bin/dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' >"$out" 2>&1 \
    || { fail "dpkg-query failed in the final stage: $(cat "$out")"; return; }
  bad=$(awk '$1 ~ /^.i/ { print $2 }' "$out" |
        grep -E -e '-dev$' -e '^(gcc|g\+\+|cpp|clang|llvm|tcc)(-[0-9.]+)?$' \
                -e '^(binutils.*|make|pkg-config|pkgconf|protobuf-c-compiler|build-essential|libc-dev-bin)$' || true)
  if [ -n "$bad" ]; then
    fail "build-only packages in the final stage: $(tr '\n' ' ' <<<"$bad")"
  else
    say "ok: no compiler, toolchain or -dev package among $(awk '$1 ~ /^.i/' "$out" | wc -l) installed packages"
  fi
  chroot_run "$S_ROOT" -- /usr/bin/env -i PATH="$BASE_PATH" /bin/sh -c \
    'for c in cc gcc c++ g++ clang ld as make; do command -v "$c"; done; true' >"$out" 2>&1
  [ ! -s "$out" ] || fail "toolchain commands on PATH in the final stage: $(tr '\n' ' ' <"$out")"
  lists=$(find "$S_ROOT/var/lib/apt/lists" -mindepth 1 ! -name lock ! -name partial 2>/dev/null | head -n3)
  [ -z "$lists" ] || fail "the final stage keeps apt lists ($lists ...)"
}

# free_port picks a port nothing listens on, below the kernel's range for outgoing connections'
# local ports: a port inside it can be probed free and then taken by a connection (PostgreSQL's,
# Liquibase's) before jobqd binds it (seen once: "rpc: cannot listen on ...: Address in use").
free_port() {
  local p tries=0 lo=20000 hi
  hi=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [[ $hi =~ ^[0-9]+$ ]] && [ "$hi" -gt $((lo + 1000)) ] || hi=50000
  while [ "$tries" -lt 50 ]; do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { printf '%s' "$p"; return 0; }
    tries=$((tries + 1))
  done
  return 1
}

# Polls URL until it answers 200 (or jobqd exits); prints the last status code.
wait_200() {
  local url=$1 deadline=$(($(now) + $2)) code=000
  while [ "$(now)" -lt "$deadline" ]; do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
    [ "$code" != 200 ] || break
    kill -0 "$JOBQD_PID" 2>/dev/null || break
    sleep 0.3
  done
  printf '%s' "$code"
}

HEALTHZ_NOTE="not run" STOP_NOTE="" K8S_NOTE="not run"

# SIGTERM (what Kubernetes sends), SIGKILL if jobqd is still there after 15 s.
stop_jobqd() {
  local i t0 rc=0
  [ -n "$JOBQD_PID" ] || return 0
  t0=$(now)
  kill "$JOBQD_PID" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$JOBQD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$JOBQD_PID" 2>/dev/null; then
    kill -9 "$JOBQD_PID" 2>/dev/null || true
    STOP_NOTE="still running 15 s after SIGTERM, killed"
  fi
  wait "$JOBQD_PID" 2>/dev/null || rc=$?
  [ -n "$STOP_NOTE" ] || STOP_NOTE="stopped on SIGTERM in $(($(now) - t0)) s (exit $rc)"
  JOBQD_PID=""
}

check_healthz() {
  local url uidgid rpc pub http code
  if [ "${IMAGE_CHECK_HEALTHZ:-1}" = 0 ]; then HEALTHZ_NOTE="skipped (IMAGE_CHECK_HEALTHZ=0)"; return; fi
  command -v curl >/dev/null || { HEALTHZ_NOTE="SKIPPED: no curl"; say "healthz: $HEALTHZ_NOTE"; return; }
  [ -x "$S_ROOT/usr/local/bin/jobqd" ] || { fail "no /usr/local/bin/jobqd in the final stage"; return; }
  PG_DIR=$(mktemp -d /tmp/jobq-image-check-pg.XXXXXX)
  if ! url=$(JOBQ_PG_FSYNC=off "$here/tests/harness/pgctl.sh" start "$PG_DIR" 2>>"$LOG"); then
    HEALTHZ_NOTE="SKIPPED: PostgreSQL (tests/harness/pgctl.sh) did not start"
    say "healthz: $HEALTHZ_NOTE"; return
  fi
  if ! JOBQ_DATABASE_URL=$url logged "$here/deploy/migrate.sh" update; then
    HEALTHZ_NOTE="SKIPPED: deploy/migrate.sh update failed (see the log)"
    say "healthz: $HEALTHZ_NOTE"; return
  fi
  rpc=$(free_port) && pub=$(free_port) && http=$(free_port) || { HEALTHZ_NOTE="SKIPPED: no free port"; return; }
  uidgid=$(resolve_user "$S_ROOT" "$S_USER")
  stage_env "$S_ROOT" "${uidgid%%:*}"
  # Mounted for jobqd's whole life; cleanup() unmounts if anything below fails.
  mount_runtime "$S_ROOT"
  chroot --userspec="$uidgid" "$S_ROOT" /usr/bin/env -i -C "$S_WORKDIR" "${ENVV[@]}" \
    JOBQ_DATABASE_URL="$url" JOBQ_RPC_URL="tcp://127.0.0.1:$rpc" JOBQ_PUB_URL="tcp://127.0.0.1:$pub" \
    JOBQ_HTTP_ADDR="127.0.0.1:$http" "${S_EP[@]}" </dev/null >"$WORK/jobqd.log" 2>&1 &
  JOBQD_PID=$!
  code=$(wait_200 "http://127.0.0.1:$http/healthz" 20)
  if [ "$code" = 200 ]; then
    say "ok: jobqd from the rootfs (uid:gid $uidgid) answers 200 on /healthz"
    code=$(wait_200 "http://127.0.0.1:$http/readyz" 20)
    if [ "$code" = 200 ]; then
      say "ok: /readyz 200 (the image's libpq reached PostgreSQL)"
      HEALTHZ_NOTE="healthz+readyz 200"
    else
      fail "/readyz answered $code: $(curl -s -m 2 "http://127.0.0.1:$http/readyz" || true)"
    fi
  else
    fail "/healthz answered $code; jobqd log: $(tail -n 5 "$WORK/jobqd.log")"
  fi
  stop_jobqd
  say "jobqd: $STOP_NOTE"
  check_k8s_base "$url" "$uidgid"
  unmount_under "$S_ROOT"
  "$here/tests/harness/pgctl.sh" destroy "$PG_DIR" >>"$LOG" 2>&1 || true
  PG_DIR=""
}

# check_k8s_base DB_URL UIDGID: the base's settings with the image's binaries (see the header).
# Runs in a subshell, so the scenario's failure stops only itself; the runtime mounts of
# check_healthz are in place.
check_k8s_base() {
  local url=$1 uidgid=$2 rc=0 vdir
  vdir=${JOBQ_K8S_VALIDATE_DIR:-${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}/k8s-validate-$(sed -n 's/^K8S_MODELS_VERSION=//p' "$here/deploy/bootstrap.sh")-yaml-$(sed -n 's/^YAML_VERSION=//p' "$here/deploy/bootstrap.sh")}
  if [ ! -x "$CONTEXT/deploy/k8s/make-secrets.sh" ]; then
    K8S_NOTE="SKIPPED: the context has no deploy/k8s/make-secrets.sh"
  elif ! command -v node >/dev/null || ! command -v openssl >/dev/null || [ ! -d "$vdir/node_modules/yaml" ]; then
    K8S_NOTE="SKIPPED: node, openssl or the npm packages of deploy/bootstrap.sh missing"
  fi
  if [ "$K8S_NOTE" != "not run" ]; then say "k8s base: $K8S_NOTE"; return; fi
  mkdir -m 755 "$S_ROOT/k8s" "$WORK/k8s"
  (
    export JOBQ_K8S_VALIDATE_DIR=$vdir
    . "$here/tests/deploy/k8s_scenario.sh"
    K8S_REPO=$CONTEXT K8S_TOOLS=$here K8S_WORK=$WORK/k8s K8S_FILES=$S_ROOT/k8s K8S_SEEN=/k8s K8S_DB_URL=$url
    k8s_ok() { say "ok: k8s base: $*"; }
    k8s_fail() { printf 'image-check: FAIL: k8s base: %s\n' "$*" >&2; exit 1; }
    k8s_free_port() { free_port; }
    k8s_cmd() {
      local -a env
      mapfile -d '' env <"$1"
      shift
      K8S_CMD=(chroot --userspec="$uidgid" "$S_ROOT" /usr/bin/env -i "${env[@]}" "$@")
    }
    trap 'for p in "${K8S_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
    k8s_scenario
  ) || rc=$?
  for f in "$WORK"/k8s/*.log; do [ -f "$f" ] && { printf -- '--- %s\n' "$f"; cat "$f"; } >>"$LOG"; done
  rm -rf "$S_ROOT/k8s"
  if [ "$rc" = 0 ]; then
    K8S_NOTE="its TLS, credentials and worker work in the image"
  else
    K8S_NOTE="FAILED"
    fail "the deploy/k8s base's settings do not work with the image (above; logs in $LOG)"
  fi
}

# ---------------------------------------------------------------------------------------------

main() {
  local t_start build_s final_s size last what i
  while [ $# -gt 0 ]; do
    case $1 in
      --refresh) REFRESH=1 ;;
      --keep) KEEP=1 ;;
      --ref) [ $# -ge 2 ] || die "--ref needs a revision"; REF=$2; shift ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
  [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mount do); run it with sudo"
  t_start=$(now)
  exec 8>&1 9>&2
  mkdir -p "$CACHE"
  : >"$LOG"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  WORK=$(mktemp -d "${IMAGE_CHECK_TMP:-/var/tmp}/jobq-image-check.XXXXXX")

  if [ -n "$REF" ]; then
    # git archive only reads the repository: nothing in the working tree or the index changes.
    mkdir "$WORK/context"
    git -C "$here" archive --format=tar "$REF" | tar -C "$WORK/context" -xf - \
      || die "git archive $REF failed"
    CONTEXT=$WORK/context
  fi
  DOCKERFILE=${DOCKERFILE:-$CONTEXT/deploy/Dockerfile}
  [ -f "$DOCKERFILE" ] || die "no Dockerfile at $DOCKERFILE"
  parse_dockerfile "$DOCKERFILE"
  validate_instructions
  load_dockerignore
  say "${#KW[@]} instructions in $DOCKERFILE; context ${REF:+$REF = }$CONTEXT (${#IGN_RE[@]} .dockerignore patterns)"

  ensure_base
  run_dockerfile

  say "checking the final stage (${STAGE_LABEL[S_INDEX]})"
  check_libraries
  check_entrypoint
  check_no_toolchain
  check_healthz
  [ "$FAILS" -eq 0 ] || die "$FAILS check(s) failed"

  last=$S_INDEX
  size=$(du -sxm "$S_ROOT" | cut -f1)
  build_s=0
  for ((i = 0; i < last; i++)); do build_s=$((build_s + STAGE_SECONDS[i])); done
  final_s=${STAGE_SECONDS[last]}
  what="build stage"
  [ "$last" -eq 1 ] || what="$last stages before the final one"
  say "$BASE_NOTE; USER $S_USER; EXPOSE ${S_EXPOSE[*]:-none}; /healthz: $HEALTHZ_NOTE; k8s base: $K8S_NOTE; total $(($(now) - t_start)) s"
  echo "image-check: OK ($what $build_s s, final stage $final_s s, final rootfs $size MB)"
}

main "$@"
