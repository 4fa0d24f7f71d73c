#!/usr/bin/env bash
# image-check.sh — builds deploy/Dockerfile's image with a real builder (buildah, no daemon) and
# checks that it works: the release check of the image on machines without Docker or a registry
# (tests/deploy/test_dockerfile.sh only reads the Dockerfile).
#
# The base: no registry is reachable, so debian:12-slim is made here. debootstrap --variant=minbase
# from the machine's own bookworm mirror, the settings debuerreotype gives the official slim image
# (dpkg excludes, apt and dpkg config, policy-rc.d), imported with buildah, bookworm-updates and
# -security applied, tagged docker.io/library/debian:12-slim. It is kept in a containers-storage
# of its own, ~/.cache/jobq/image-check/storage (vfs driver: works on any file system, needs no
# overlay or fuse), and reused by later runs.
#
# The build: `buildah bud --isolation chroot --pull-never` of the Dockerfile (every instruction,
# both stages, .dockerignore: buildah's, not an imitation). Then, in a throwaway container of the
# image (its rootfs from `buildah mount`), with the image's own config (USER, ENTRYPOINT, Env,
# WorkingDir):
#   - every ELF file no Debian package installed (what the Dockerfile copied in) resolves all its
#     libraries (ldd in the rootfs);
#   - the ENTRYPOINT runs as the USER's uid:gid (chroot --userspec), non-root, with --help (or
#     --version) and exits 0;
#   - no compiler, toolchain or *-dev package is installed (dpkg in the rootfs), no cc/gcc/ld on
#     PATH, and the apt lists are gone;
#   - unless IMAGE_CHECK_HEALTHZ=0: the ENTRYPOINT, as the USER, against a throwaway PostgreSQL
#     (tests/harness/pgctl.sh, migrated by deploy/migrate.sh) answers 200 on /healthz and /readyz.
#     Only the listen addresses are overridden (free loopback ports, like `docker run -e`): the
#     processes share the host's network. When PostgreSQL or the migrations cannot be set up (not
#     an image problem) this part is reported as SKIPPED, never as passed;
#   - then the deploy/k8s base's own settings with the image's binaries, as the USER
#     (tests/deploy/k8s_scenario.sh, also run by `make test` with the build's): Secrets from
#     deploy/k8s/make-secrets.sh laid out in the rootfs as the kubelet would mount them, jobqd with
#     the ConfigMap's environment (mutual TLS on RPC and PUB, role credentials, /metrics for a
#     reader token), role checks, clients without a certificate refused, and the worker
#     Deployment's command and environment completing a job. SKIPPED (never passed) without node
#     and the npm packages of deploy/bootstrap.sh, or for a --ref without make-secrets.sh.
# Processes run in the rootfs through chroot, in a mount namespace of their own holding /proc, /dev
# and the host's resolv.conf and hosts: nothing stays mounted when they end.
#
#   deploy/image-check.sh [--ref REV] [--refresh] [--keep]   (root: debootstrap, buildah, chroot)
#     --ref REV   build the committed tree REV (git archive; its Dockerfile and .dockerignore)
#                 instead of the working tree: a release tag, or a stable source while the
#                 working tree is being edited
#     --refresh   make the base again (like `docker pull` of a newer debian:12-slim)
#     --keep      keep the image, tagged localhost/jobq:image-check (`buildah push` exports it),
#                 and the container the checks ran in (its rootfs path is printed)
#
# Environment: IMAGE_CHECK_MIRROR (default: the machine's bookworm apt mirror),
# IMAGE_CHECK_SECURITY_MIRROR, IMAGE_CHECK_CONTEXT (build context, default the repository),
# IMAGE_CHECK_DOCKERFILE (default deploy/Dockerfile of the context), IMAGE_CHECK_TMP (scratch
# folder, default /var/tmp; ~300 MB while the base is made), IMAGE_CHECK_VERBOSE=1 (stream the
# build's output too), IMAGE_CHECK_HEALTHZ=0. Every command's output goes to
# ~/.cache/jobq/image-check/last-run.log. To look at the store: export
# CONTAINERS_STORAGE_CONF=~/.cache/jobq/image-check/storage.conf, then `buildah images`.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
CONTEXT=${IMAGE_CHECK_CONTEXT:-$here}
DOCKERFILE=${IMAGE_CHECK_DOCKERFILE:-}
CACHE=${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}/image-check
LOG=$CACHE/last-run.log
SUITE=bookworm
BASE_TAG=docker.io/library/debian:12-slim
KEEP_TAG=localhost/jobq:image-check
# Bump when the base's recipe changes, so an old cached base is made again rather than reused.
BASE_RECIPE=2

REFRESH=0 KEEP=0 REF=""
WORK="" PG_DIR="" JOBQD_PID="" IMAGE="" CTR="" ROOT=""

# shellcheck source=tests/deploy/k8s_scenario.sh source-path=SCRIPTDIR/..
. "$here/tests/deploy/k8s_scenario.sh"

die() { printf 'image-check: %s\n' "$*" >&2; exit 1; }
say() { printf 'image-check: %s\n' "$*"; }
now() { date +%s; }

# Output of long commands goes to the log; IMAGE_CHECK_VERBOSE=1 streams it as well.
logged() {
  if [ "${IMAGE_CHECK_VERBOSE:-0}" = 1 ]; then
    "$@" 2>&1 | tee -a "$LOG"
  else
    "$@" >>"$LOG" 2>&1
  fi
}

show_log_tail() { printf -- '--- last lines of %s ---\n' "$LOG" >&2; tail -n 40 "$LOG" >&2; }

# Whatever the exit path: stop what we started, drop the container and the image, then the files.
cleanup() {
  local rc=$?
  set +e
  stop_jobqd
  [ -n "$PG_DIR" ] && "$here/tests/harness/pgctl.sh" destroy "$PG_DIR" >>"$LOG" 2>&1
  if [ "$KEEP" = 1 ] && [ -n "$IMAGE" ]; then
    buildah tag "$IMAGE" "$KEEP_TAG" >>"$LOG" 2>&1
    say "kept image $KEEP_TAG (${IMAGE:0:12})${CTR:+ and container $CTR (rootfs $ROOT)}; buildah needs CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF" >&8
  else
    [ -z "$CTR" ] || buildah rm "$CTR" >>"$LOG" 2>&1
    [ -z "$IMAGE" ] || buildah rmi "$IMAGE" >>"$LOG" 2>&1
  fi
  # --one-file-system: nothing is mounted below WORK, but should it be, rm stops there.
  [ -z "$WORK" ] || rm -rf --one-file-system "$WORK"
  # To the original stderr: a signal can arrive while a command's output goes to the log.
  [ "$rc" -eq 0 ] || printf 'image-check: FAILED (log: %s)\n' "$LOG" >&9
  exit "$rc"
}

# A storage of our own: the machine's containers (if any) are not touched, and vfs works on any
# file system (overlay would not on an overlay or some network file systems).
use_own_storage() {
  export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf
  # Replaced in one step: a concurrent run's buildah never reads a half-written file.
  printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$CACHE/storage" /run/jobq-image-check >"$CONTAINERS_STORAGE_CONF.$$"
  mv "$CONTAINERS_STORAGE_CONF.$$" "$CONTAINERS_STORAGE_CONF"
  # These would override the file.
  unset STORAGE_DRIVER STORAGE_OPTS
  # chroot isolation: no OCI runtime (runc/crun) and no network namespace needed for RUN.
  export BUILDAH_ISOLATION=chroot
  command -v buildah >/dev/null || die "no buildah: run deploy/bootstrap.sh image (as root)"
  command -v debootstrap >/dev/null || die "no debootstrap: run deploy/bootstrap.sh image (as root)"
}

# ---------------------------------------------------------------------------------------------
# The base: debian:12-slim made with debootstrap and buildah, cached in the storage.

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

# The files debuerreotype (the tool behind the official image) adds to a debootstrap for a slim
# image: without them packages would keep the docs the real image drops, and apt and dpkg would
# behave differently (services started by postinst scripts, caches kept).
slim_config() {
  local root=$1 main=$2 sec=$3
  rm -f "$root/etc/apt/sources.list" "$root/etc/resolv.conf" "$root/etc/hostname"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$main" "$SUITE" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$sec" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$sec" "$SUITE"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
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
}

# The published image is regenerated with the point release and security updates applied; files
# installed before the excludes existed go the way debuerreotype's slimify removes them.
base_containerfile() {
  cat <<'EOF'
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade \
 && for d in /usr/share/doc /usr/share/groff /usr/share/info /usr/share/linda \
             /usr/share/lintian/overrides /usr/share/locale /usr/share/man; do \
      [ -d "$d" ] || continue; \
      find "$d" -mindepth 1 ! -type d ! -path '/usr/share/doc/*/copyright' \
        ! -path /usr/share/locale/all_languages ! -path '/usr/share/locale/currency/*' \
        ! -path '/usr/share/locale/l10n/*' ! -path /usr/share/locale/languages \
        ! -path /usr/share/locale/locale.alias -delete; \
      find "$d" -mindepth 1 -depth -type d -empty -delete; \
    done \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && find /var/log -type f -exec truncate -s 0 {} +
CMD ["bash"]
EOF
}

# Makes sure BASE_TAG is in the storage; sets BASE_NOTE to how it was obtained.
ensure_base() {
  local arch mirrors main sec t0 debootstrap_s stamp=$CACHE/base.stamp want old="" id dir=$WORK/base
  arch=$(dpkg --print-architecture)
  mirrors=$(find_mirrors)
  main=${IMAGE_CHECK_MIRROR:-${mirrors%% *}}
  sec=${IMAGE_CHECK_SECURITY_MIRROR:-${mirrors#* }}
  [ -n "$main" ] || die "no $SUITE mirror in /etc/apt/sources.list{,.d}; set IMAGE_CHECK_MIRROR"
  [ -n "$sec" ] || say "warning: no $SUITE-security mirror found; the base gets no security updates"
  want="recipe=$BASE_RECIPE arch=$arch mirror=$main security=$sec"
  if [ -f "$stamp" ]; then
    old=$(sed -n 2p "$stamp")
    if [ "$REFRESH" = 0 ] && [ "$(head -n1 "$stamp")" = "$want" ] &&
       [ "$(buildah inspect --type image --format '{{.FromImageID}}' "$BASE_TAG" 2>/dev/null)" = "$old" ]; then
      BASE_NOTE="cached base from $(sed -n 3p "$stamp")"
      say "base: $BASE_NOTE ($BASE_TAG ${old:0:12})"
      return 0
    fi
  fi
  say "base: debootstrap --variant=minbase $SUITE from $main, then buildah (about a minute, once)"
  t0=$(now)
  mkdir "$dir"
  logged debootstrap --variant=minbase --arch="$arch" "$SUITE" "$dir/rootfs" "$main" \
    || { show_log_tail; die "debootstrap failed"; }
  debootstrap_s=$(($(now) - t0))
  slim_config "$dir/rootfs" "$main" "$sec"
  # /dev, /proc and /sys are the runtime's to fill, as in the official image.
  tar -C "$dir/rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$dir/rootfs.tar" .
  rm -rf --one-file-system "$dir/rootfs"
  base_containerfile >"$dir/Containerfile"
  # --squash: one layer (vfs stores every layer as a full copy of the tree).
  logged buildah bud --pull-never --squash --layers=false --iidfile "$dir/iid" -t "$BASE_TAG" \
    -f "$dir/Containerfile" "$dir" || { show_log_tail; die "buildah could not make the base image"; }
  id=$(sed 's/^sha256://' "$dir/iid")
  printf '%s\n%s\n%s\n' "$want" "$id" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$stamp"
  # The replaced base goes unless a container (another run's) still uses it.
  [ -z "$old" ] || [ "$old" = "$id" ] || buildah rmi "$old" >>"$LOG" 2>&1 || true
  rm -rf "$dir"
  BASE_NOTE="base made in $(($(now) - t0)) s, debootstrap $debootstrap_s s of it"
  say "base: ready ($BASE_NOTE)"
}

# ---------------------------------------------------------------------------------------------
# The build, and the container the checks run in.

build_image() {
  local t0 rc=0
  t0=$(now)
  say "buildah bud -f ${DOCKERFILE#"$CONTEXT"/} (context ${REF:+$REF = }$CONTEXT)"
  printf '\n### buildah bud -f %s %s\n' "$DOCKERFILE" "$CONTEXT" >>"$LOG"
  # --layers=false: one commit per stage (no cache of steps is kept between runs anyway).
  buildah bud --pull-never --layers=false --iidfile "$WORK/iid" -f "$DOCKERFILE" "$CONTEXT" 2>&1 |
    tee -a "$LOG" |
    if [ "${IMAGE_CHECK_VERBOSE:-0}" = 1 ]; then cat; else sed -un -E '/^(\[[0-9]+\/[0-9]+\] )?STEP /{s/^(.{110}).+/\1 .../;p}'; fi ||
    rc=$?
  [ "$rc" = 0 ] && [ -s "$WORK/iid" ] || { show_log_tail; die "buildah bud failed"; }
  IMAGE=$(sed 's/^sha256://' "$WORK/iid")
  BUILD_S=$(($(now) - t0))
  say "built image ${IMAGE:0:12} in $BUILD_S s"
}

image_config() { buildah inspect --type image --format "$1" "$IMAGE"; }

# Sets ROOT (the rootfs of a new container of IMAGE) and what Docker would run in it: EP (the
# ENTRYPOINT), USER_SPEC, UIDGID, WORKDIR, ENVV (Env, with HOME as the runtime adds it).
open_container() {
  local home e
  CTR=$(buildah from --pull-never "$IMAGE" 2>>"$LOG") || die "buildah from $IMAGE failed"
  ROOT=$(buildah mount "$CTR" 2>>"$LOG") || die "buildah mount $CTR failed"
  mapfile -t EP < <(image_config '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}')
  mapfile -t ENVV < <(image_config '{{range .OCIv1.Config.Env}}{{println .}}{{end}}')
  USER_SPEC=$(image_config '{{.OCIv1.Config.User}}')
  WORKDIR=$(image_config '{{.OCIv1.Config.WorkingDir}}')
  WORKDIR=${WORKDIR:-/}
  EXPOSED=$(image_config '{{range $p, $_ := .OCIv1.Config.ExposedPorts}}{{$p}} {{end}}')
  EXPOSED=${EXPOSED% }
  UIDGID=""
  [ -z "$USER_SPEC" ] || UIDGID=$(resolve_user "$USER_SPEC")
  for e in "${ENVV[@]}"; do [[ $e != HOME=* ]] || return 0; done
  home=$(awk -F: -v u="${UIDGID%%:*}" '$3 == u { print $6; exit }' "$ROOT/etc/passwd")
  ENVV+=("HOME=${home:-/}")
}

# resolve_user SPEC: prints uid:gid for user[:group], looked up in the image's passwd and group.
resolve_user() {
  local spec=$1 user group="" uid gid=""
  user=${spec%%:*}
  [[ $spec == *:* ]] && group=${spec#*:}
  if [[ $user =~ ^[0-9]+$ ]]; then
    uid=$user
    gid=$(awk -F: -v u="$uid" '$3 == u { print $4; exit }' "$ROOT/etc/passwd")
  else
    uid=$(awk -F: -v u="$user" '$1 == u { print $3; exit }' "$ROOT/etc/passwd")
    [ -n "$uid" ] || die "USER $spec: no user '$user' in the image's /etc/passwd"
    gid=$(awk -F: -v u="$user" '$1 == u { print $4; exit }' "$ROOT/etc/passwd")
  fi
  if [[ $group =~ ^[0-9]+$ ]]; then
    gid=$group
  elif [ -n "$group" ]; then
    gid=$(awk -F: -v g="$group" '$1 == g { print $3; exit }' "$ROOT/etc/group")
    [ -n "$gid" ] || die "USER $spec: no group '$group' in the image's /etc/group"
  fi
  printf '%s:%s' "$uid" "${gid:-0}"
}

# What a container runtime gives the process, in a mount namespace that ends with it. Refuses a
# symlinked resolv.conf or hosts: the bind mount would follow it on the host's side.
IN_IMAGE_SH='r=$1; shift
mount -t proc proc "$r/proc" && mount --bind /dev "$r/dev" || exit 125
for f in etc/resolv.conf etc/hosts; do
  if [ -L "$r/$f" ]; then echo "image-check: /$f is a symlink in the image" >&2; exit 125; fi
  { [ -e "$r/$f" ] || : >"$r/$f"; } && mount --bind "/$f" "$r/$f" || exit 125
done
exec chroot "$@"'

# image_cmd [chroot options] -- ARGV...: sets IMG_CMD to the command line running ARGV in the
# rootfs. Every step execs the next, so a process started from it is ARGV's program (its pid gets
# the signals).
image_cmd() {
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  IMG_CMD=(unshare --mount --propagation private /bin/sh -c "$IN_IMAGE_SH" sh "$ROOT" "${opts[@]}" "$ROOT" "$@")
}

in_image() { image_cmd "$@"; "${IMG_CMD[@]}" </dev/null; }

# ---------------------------------------------------------------------------------------------
# Checks on the image.

FAILS=0
fail() { printf 'image-check: FAIL: %s\n' "$*" >&2; FAILS=$((FAILS + 1)); }

is_elf() { [ "$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')" = 7f454c46 ]; }

# The image's files no package installed: what the Dockerfile copied or made. dpkg lists /bin,
# /lib, ... where merged-/usr has them under /usr.
unpackaged_files() {
  cat "$ROOT"/var/lib/dpkg/info/*.list | sed -E 's#^/(bin|sbin|lib|lib32|lib64|libx32)/#/usr/\1/#' |
    LC_ALL=C sort -u >"$WORK/packaged"
  (cd "$ROOT" && find . -xdev -type f ! -path './proc/*' ! -path './var/lib/dpkg/*' -printf '/%P\n') |
    LC_ALL=C sort >"$WORK/files"
  LC_ALL=C comm -23 "$WORK/files" "$WORK/packaged"
}

check_libraries() {
  local f out=$WORK/ldd.out n=0
  while IFS= read -r f; do
    is_elf "$ROOT$f" || continue
    n=$((n + 1))
    if ! in_image -- /usr/bin/ldd "$f" >"$out" 2>&1; then
      grep -q 'not a dynamic executable' "$out" || { fail "ldd $f failed: $(cat "$out")"; continue; }
    fi
    if grep -q 'not found' "$out"; then
      fail "$f: missing libraries: $(grep 'not found' "$out" | awk '{ print $1 }' | tr '\n' ' ')"
    else
      say "ok: $f resolves all its libraries ($(grep -c '=>' "$out") via ldd)"
    fi
  done < <(unpackaged_files)
  [ "$n" -gt 0 ] || fail "the image has no ELF file of its own (nothing copied from the build stage)"
}

check_entrypoint() {
  local out=$WORK/ep.out flag ok=0
  [ ${#EP[@]} -gt 0 ] || { fail "the image has no ENTRYPOINT"; return; }
  [ -n "$USER_SPEC" ] || { fail "the image has no USER: the container would run as root"; return; }
  [ "${UIDGID%%:*}" != 0 ] || { fail "USER $USER_SPEC is root"; return; }
  in_image --userspec="$UIDGID" -- /usr/bin/env -i "${ENVV[@]}" /usr/bin/id -u >"$out" 2>&1 || true
  [ "$(cat "$out")" = "${UIDGID%%:*}" ] || { fail "cannot run as $UIDGID in the rootfs: $(cat "$out")"; return; }
  for flag in --help --version; do
    if in_image --userspec="$UIDGID" -- /usr/bin/env -i -C "$WORKDIR" "${ENVV[@]}" "${EP[@]}" "$flag" >"$out" 2>&1; then
      say "ok: ENTRYPOINT ${EP[*]} $flag exits 0 as uid:gid $UIDGID ($(head -n1 "$out"))"
      ok=1
      break
    fi
  done
  [ "$ok" = 1 ] || fail "ENTRYPOINT ${EP[*]} --help/--version fails as $UIDGID: $(head -n5 "$out")"
}

check_no_toolchain() {
  local out=$WORK/dpkg.out bad lists
  # dpkg-query reads the same database as `dpkg -l`, in a format safe to parse.
  in_image -- /usr/bin/dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' >"$out" 2>&1 \
    || { fail "dpkg-query failed in the image: $(cat "$out")"; return; }
  bad=$(awk '$1 ~ /^.i/ { print $2 }' "$out" |
        grep -E -e '-dev$' -e '^(gcc|g\+\+|cpp|clang|llvm|tcc)(-[0-9.]+)?$' \
                -e '^(binutils.*|make|pkg-config|pkgconf|protobuf-c-compiler|build-essential|libc-dev-bin)$' || true)
  if [ -n "$bad" ]; then
    fail "build-only packages in the image: $(tr '\n' ' ' <<<"$bad")"
  else
    say "ok: no compiler, toolchain or -dev package among $(awk '$1 ~ /^.i/' "$out" | wc -l) installed packages"
  fi
  in_image -- /usr/bin/env -i "${ENVV[@]}" /bin/sh -c \
    'for c in cc gcc c++ g++ clang ld as make; do command -v "$c"; done; true' >"$out" 2>&1
  [ ! -s "$out" ] || fail "toolchain commands on PATH in the image: $(tr '\n' ' ' <"$out")"
  lists=$(find "$ROOT/var/lib/apt/lists" -mindepth 1 ! -name lock ! -name partial 2>/dev/null | head -n3)
  [ -z "$lists" ] || fail "the image keeps apt lists ($lists ...)"
}

# free_port picks a port nothing listens on, below the kernel's range for outgoing connections'
# local ports: a port inside it can be probed free and then taken by a connection (PostgreSQL's,
# Liquibase's) before jobqd binds it.
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
  local url rpc pub http
  if [ "${IMAGE_CHECK_HEALTHZ:-1}" = 0 ]; then HEALTHZ_NOTE="skipped (IMAGE_CHECK_HEALTHZ=0)"; return; fi
  [ ${#EP[@]} -gt 0 ] && [ -n "$UIDGID" ] && [ "${UIDGID%%:*}" != 0 ] || { HEALTHZ_NOTE="not run (no ENTRYPOINT or USER)"; return; }
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
  image_cmd --userspec="$UIDGID" -- /usr/bin/env -i -C "$WORKDIR" "${ENVV[@]}" \
    JOBQ_DATABASE_URL="$url" JOBQ_RPC_URL="tcp://127.0.0.1:$rpc" JOBQ_PUB_URL="tcp://127.0.0.1:$pub" \
    JOBQ_HTTP_ADDR="127.0.0.1:$http" "${EP[@]}"
  "${IMG_CMD[@]}" </dev/null >"$WORK/jobqd.log" 2>&1 &
  JOBQD_PID=$!
  if k8s_wait_http "$http" /healthz 200 20; then
    say "ok: the ENTRYPOINT (uid:gid $UIDGID) answers 200 on /healthz"
    if k8s_wait_http "$http" /readyz 200 20; then
      say "ok: /readyz 200 (the image's libpq reached PostgreSQL)"
      HEALTHZ_NOTE="healthz+readyz 200"
    else
      fail "/readyz answered $(k8s_http "$http" /readyz); jobqd log: $(tail -n 5 "$WORK/jobqd.log")"
    fi
  else
    fail "/healthz answered $(k8s_http "$http" /healthz); jobqd log: $(tail -n 5 "$WORK/jobqd.log")"
  fi
  stop_jobqd
  say "jobqd: $STOP_NOTE"
  check_k8s_base "$url"
  "$here/tests/harness/pgctl.sh" destroy "$PG_DIR" >>"$LOG" 2>&1 || true
  PG_DIR=""
}

# check_k8s_base DB_URL: the base's settings with the image's binaries (see the header). Runs in a
# subshell, so the scenario's failure stops only itself.
check_k8s_base() {
  local url=$1 rc=0 vdir
  vdir=${JOBQ_K8S_VALIDATE_DIR:-${JOBQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobq}/k8s-validate-$(sed -n 's/^K8S_MODELS_VERSION=//p' "$here/deploy/bootstrap.sh")-yaml-$(sed -n 's/^YAML_VERSION=//p' "$here/deploy/bootstrap.sh")}
  if [ ! -x "$CONTEXT/deploy/k8s/make-secrets.sh" ]; then
    K8S_NOTE="SKIPPED: the context has no deploy/k8s/make-secrets.sh"
  elif ! command -v node >/dev/null || ! command -v openssl >/dev/null || [ ! -d "$vdir/node_modules/yaml" ]; then
    K8S_NOTE="SKIPPED: node, openssl or the npm packages of deploy/bootstrap.sh missing"
  fi
  if [ "$K8S_NOTE" != "not run" ]; then say "k8s base: $K8S_NOTE"; return; fi
  mkdir -m 755 "$ROOT/k8s" "$WORK/k8s"
  (
    export JOBQ_K8S_VALIDATE_DIR=$vdir
    K8S_REPO=$CONTEXT K8S_TOOLS=$here K8S_WORK=$WORK/k8s K8S_FILES=$ROOT/k8s K8S_SEEN=/k8s K8S_DB_URL=$url
    k8s_ok() { say "ok: k8s base: $*"; }
    k8s_fail() { printf 'image-check: FAIL: k8s base: %s\n' "$*" >&2; exit 1; }
    k8s_free_port() { free_port; }
    k8s_cmd() {
      local -a env
      mapfile -d '' env <"$1"
      shift
      image_cmd --userspec="$UIDGID" -- /usr/bin/env -i "${env[@]}" "$@"
      K8S_CMD=("${IMG_CMD[@]}")
    }
    trap 'for p in "${K8S_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
    k8s_scenario
  ) || rc=$?
  for f in "$WORK"/k8s/*.log; do [ -f "$f" ] && { printf -- '--- %s\n' "$f"; cat "$f"; } >>"$LOG"; done
  rm -rf "$ROOT/k8s"
  if [ "$rc" = 0 ]; then
    K8S_NOTE="its TLS, credentials and worker work in the image"
  else
    K8S_NOTE="FAILED"
    fail "the deploy/k8s base's settings do not work with the image (above; logs in $LOG)"
  fi
}

# ---------------------------------------------------------------------------------------------

main() {
  local t_start size
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
  [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, buildah, chroot); run it with sudo"
  t_start=$(now)
  exec 8>&1 9>&2
  mkdir -p "$CACHE"
  : >"$LOG"
  use_own_storage
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

  # One run at a time makes or replaces the base; the others wait for it.
  exec 6>"$CACHE/base.lock"
  flock 6
  ensure_base
  exec 6>&-
  build_image
  open_container

  say "checking the image (USER ${USER_SPEC:-none}, ENTRYPOINT ${EP[*]:-none})"
  check_libraries
  check_entrypoint
  check_no_toolchain
  check_healthz
  [ "$FAILS" -eq 0 ] || die "$FAILS check(s) failed"

  size=$(du -sxm "$ROOT" | cut -f1)
  say "$BASE_NOTE; USER $USER_SPEC; EXPOSE ${EXPOSED:-none}; /healthz: $HEALTHZ_NOTE; k8s base: $K8S_NOTE; total $(($(now) - t_start)) s"
  echo "image-check: OK (buildah bud $BUILD_S s, image rootfs $size MB)"
}

main "$@"
