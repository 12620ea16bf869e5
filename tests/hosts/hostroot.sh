#!/usr/bin/env bash
# tests/hosts/hostroot.sh -- a Debian root in a folder, built with debootstrap, in which the
# real GIMP 3 and Krita run, batch or under Xvfb. One root per suite, one shared .deb cache:
#   trixie        Debian 13: GIMP 3.0.4, Krita 5.2.9 (PyQt5), Python 3.13
#   sid           unstable: GIMP 3.2.x, Krita 5.3.x (PyQt5)
#   experimental  sid + experimental's Krita 6.0.x (Qt6, PyQt6); no GIMP
# Our host tests and benchmarks use it to run bokehkit against the real applications.
#
#   tests/hosts/hostroot.sh [--suite SUITE] setup       build the root, or reuse it (idempotent)
#   tests/hosts/hostroot.sh [--suite SUITE] run CMD...  run CMD inside the root (builds it first):
#                                          /bokehkit  this repository, read-only
#                                          /job       $JOB_DIR, writable (a scratch tmpfs if unset)
#                                          cwd=/job, clean environment, $HOME=/root
#   tests/hosts/hostroot.sh [--suite SUITE] status      "ready" (exit 0) or "hostroot: unavailable: ..." (77)
#   tests/hosts/hostroot.sh [--suite SUITE] versions    the GIMP, Krita, Python and Qt binding versions inside
#   tests/hosts/hostroot.sh [--suite SUITE] umount      unmount anything left mounted under the root
#
# When the root cannot be had (not root, no debootstrap, no network...) it prints
# "hostroot: unavailable: <reason>" and exits 77 (the usual "skip" code), so callers
# can skip instead of failing.
#
# Environment (defaults):
#   HOSTROOT_SUITE=trixie                   the suite when --suite is not given
#   HOSTROOT_BASE=/var/cache/bokehkit-hostroot  where the roots and the cache live:
#   HOSTROOT=$HOSTROOT_BASE/root            the trixie root (others: $HOSTROOT_BASE/root-<suite>)
#   HOSTROOT_CACHE=$HOSTROOT_BASE/debs      .deb cache, kept between builds, shared by the roots
#   HOSTROOT_MIRROR=<host's Debian mirror>
#   HOSTROOT_EXTRA_PKGS=""                  more packages to install in the root
#   HOSTROOT_USER=root                      run: user inside the root (or "bokeh", uid 1000;
#                                           then $JOB_DIR must be writable by uid 1000)
#   HOSTROOT_PASSENV="GEGL_THREADS ..."     run: host variables passed into the root
#   JOB_DIR                                 run: host folder mounted at /job
#   BOKEHKIT_SRC=<repo root>                run: folder mounted at /bokehkit
#
# Mounts are made in a private mount namespace (unshare) that dies with the command, so
# nothing stays mounted on the host and parallel `run`s don't see each other's /job.
# Without unshare it falls back to host mounts, serialised by a lock and undone by a trap.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
REPO=${BOKEHKIT_SRC:-$(cd "$HERE/../.." && pwd)}
SUITE=${HOSTROOT_SUITE:-trixie}
if [ "${1:-}" = --suite ]; then SUITE=${2:?--suite needs a suite}; shift 2; fi
export HOSTROOT_SUITE=$SUITE                 # for the re-exec in the namespace
# --no-install-recommends: python3-pyqt5/6 is only a Recommends of krita but pykrita needs
# it; xauth for xvfb-run, imagemagick for screenshots (import), python3-pil to read PNGs,
# xdotool to drive the GUIs with the mouse, a font (text layers, and the GUIs' text).
TOOLS="xvfb xauth imagemagick python3-pil python3-numpy xdotool fonts-dejavu-core"
GIMP_PKGS="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4"
case $SUITE in
  trixie|sid)   BASE_SUITE=$SUITE; EXTRA_SUITE=;  PKGS="$GIMP_PKGS krita python3-pyqt5 $TOOLS" ;;
  # Krita 6 is only in experimental; apt takes the rest from sid (-t experimental: the
  # Qt6 and PyQt6 builds it needs where experimental has newer ones)
  experimental) BASE_SUITE=sid; EXTRA_SUITE=experimental; PKGS="krita python3-pyqt6 $TOOLS" ;;
  *) printf 'hostroot: ERROR: unknown suite %s (trixie, sid or experimental)\n' "$SUITE" >&2; exit 2 ;;
esac
BASE=${HOSTROOT_BASE:-/var/cache/bokehkit-hostroot}
if [ "$SUITE" = trixie ]; then ROOT=$(realpath -m "${HOSTROOT:-$BASE/root}")
else ROOT=$(realpath -m "$BASE/root-$SUITE"); fi
CACHE=$(realpath -m "${HOSTROOT_CACHE:-$BASE/debs}")
LOCK=$ROOT.lock
CACHE_LOCK=$CACHE.lock                       # roots share the cache: one apt at a time
PKGS=$(echo $PKGS ${HOSTROOT_EXTRA_PKGS:-})  # one line, single spaces
READY=$ROOT/.bokehkit-hostroot-ready        # holds $PKGS once everything is installed
BOOTSTRAPPED=$ROOT/.bokehkit-hostroot-bootstrap-done
PASSENV="GEGL_THREADS GEGL_SWAP GEGL_CACHE_SIZE GEGL_TILE_SIZE OMP_NUM_THREADS ${HOSTROOT_PASSENV:-}"

log()         { printf 'hostroot: %s\n' "$*" >&2; }
die()         { printf 'hostroot: ERROR: %s\n' "$*" >&2; exit 1; }
unavailable() { printf 'hostroot: unavailable: %s\n' "$*"; exit 77; }

is_ready() {   # every package we need is in the ready list (another checkout may want more)
  [ -f "$READY" ] || return 1
  local p; for p in $PKGS; do grep -qw -- "$p" "$READY" || return 1; done
}

# why we can't build or use a root here, or nothing
check_host() {
  [ "$(id -u)" = 0 ] || { echo "not root (needs chroot and mount)"; return; }
  command -v chroot >/dev/null || { echo "no chroot command"; return; }
  unshare --mount true 2>/dev/null && return
  local d; d=$(mktemp -d)          # no namespaces: can we mount at all?
  if mount -t tmpfs probe "$d" 2>/dev/null; then umount "$d"; else echo "cannot mount here (no CAP_SYS_ADMIN)"; fi
  rmdir "$d"
}

mirror() {   # the host's own Debian mirror: first apt URI that is not the security archive
  local m=${HOSTROOT_MIRROR:-}
  [ -n "$m" ] || m=$(awk '/^URIs:/ && $2 !~ /-security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '/^deb / && $2 !~ /-security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}
have_network() {   # can we fetch the suite's Release file?
  local url; url="$(mirror)/dists/$SUITE/Release"
  if command -v curl >/dev/null; then curl -fsS -m 30 -o /dev/null "$url" 2>/dev/null
  elif command -v wget >/dev/null; then wget -q -T 30 -O /dev/null "$url"
  else return 0; fi   # can't probe: let debootstrap/apt tell
}

# ------------------------------------------------------------------ mounts
MOUNTED=()        # what this process mounted, in order (undone in reverse)
mnt() {           # mnt TARGET mount-args...: mount unless already a mount point
  local t=$1; shift
  mountpoint -q "$t" && return 0
  mkdir -p "$t"; mount "$@" "$t"; MOUNTED+=("$t")
}
mount_base() {    # what chroot'ed programs need: /proc, /sys, /dev, a fresh /tmp
  mnt "$ROOT/proc" -t proc proc
  mnt "$ROOT/sys" -t sysfs sys
  if ! mountpoint -q "$ROOT/dev"; then
    mkdir -p "$ROOT/dev"; mount --rbind /dev "$ROOT/dev"; MOUNTED+=("$ROOT/dev")
    mount --make-rslave "$ROOT/dev"   # so unmounting can never propagate to the host's /dev
  fi
}
umount_ours() {   # undo our own mounts, newest first
  local i
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do
    umount -R "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
  done
  MOUNTED=()
}
umount_all() {    # everything under $ROOT in this namespace, deepest first
  local m
  for m in $(findmnt -rn -o TARGET | grep "^$ROOT/" | sort -r); do
    umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  ! findmnt -rn -o TARGET | grep -q "^$ROOT/" || die "still mounted under $ROOT"
}
trap 'umount_ours' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# In a private mount namespace when possible: re-exec ourselves there ("ns-" commands).
in_namespace() {   # in_namespace CMD ARGS...
  if [ -z "${HOSTROOT_NO_UNSHARE:-}" ] && unshare --mount true 2>/dev/null; then
    exec unshare --mount --propagation private /bin/bash "$SELF" "$@"
  fi
  exec /bin/bash "$SELF" "$@"   # fallback: host namespace; its trap unmounts
}

root_mb() { du -sxm "$ROOT" 2>/dev/null | cut -f1; }   # run with nothing mounted inside

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
              DEBIAN_FRONTEND=noninteractive "$@"; }
pkgs_installed() {   # true when every package in $PKGS is installed in the root
  local n; n=$(in_root dpkg-query -W -f='${Status}\n' $PKGS 2>/dev/null | grep -c 'install ok installed' || true)
  [ "$n" = "$(wc -w <<<"$PKGS")" ]
}

# ------------------------------------------------------------------ setup
host_debootstrap() {   # debootstrap on the host, installed if missing
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    { apt-get update -q && apt-get install -y -q debootstrap; } >&2 \
      || unavailable "debootstrap is missing and could not be installed"
  fi
  [ -e "/usr/share/debootstrap/scripts/$BASE_SUITE" ] || unavailable "debootstrap knows no suite '$BASE_SUITE'"
  ls /usr/share/keyrings/debian-archive-keyring.gpg >/dev/null 2>&1 \
    || apt-get install -y -q debian-archive-keyring >&2 || unavailable "no Debian archive keyring"
}

ns_setup() {   # runs in the private namespace, with the lock held
  local t0=$SECONDS
  renice -n 10 $$ >/dev/null 2>&1 || true    # shared machine: unpacking is CPU-heavy
  mkdir -p "$CACHE/debootstrap" "$CACHE/apt/partial"
  exec 8>"$CACHE_LOCK"; flock 8                # other suites' setups wait for the cache
  if [ ! -e "$BOOTSTRAPPED" ]; then
    host_debootstrap
    have_network || unavailable "no network (cannot reach $(mirror))"
    if [ -d "$ROOT" ]; then   # half-built: start again (nothing can be mounted in it here)
      findmnt -rn -o TARGET | grep -q "^$ROOT/" && die "$ROOT has mounts; run '$0 umount' first"
      log "removing incomplete $ROOT"; rm -rf --one-file-system "$ROOT"
    fi
    log "debootstrap --variant=minbase $BASE_SUITE $ROOT $(mirror)"
    debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" "$BASE_SUITE" "$ROOT" "$(mirror)" >&2 \
      || { have_network || unavailable "no network (debootstrap failed)"; die "debootstrap failed"; }
    touch "$BOOTSTRAPPED"
  fi
  # no daemons in the root; keep .debs; never pull Recommends; a mirror that is a dated
  # snapshot serves sid/experimental Release files past their Valid-Until: take them anyway
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Keep-Downloaded-Packages "true";\nDpkg::Options { "--force-unsafe-io"; };\nAcquire::Check-Valid-Until "false";\n' \
    > "$ROOT/etc/apt/apt.conf.d/90bokehkit"
  local was_ready=""; [ -f "$READY" ] && was_ready=$(cat "$READY")
  if ! pkgs_installed; then
    rm -f "$READY"
    have_network || unavailable "no network (cannot reach $(mirror))"
    mount_base
    mnt "$ROOT/var/cache/apt/archives" --bind "$CACHE/apt"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    local target=()
    if [ -n "$EXTRA_SUITE" ]; then
      echo "deb $(mirror) $EXTRA_SUITE main" > "$ROOT/etc/apt/sources.list.d/$EXTRA_SUITE.list"
      target=(-t "$EXTRA_SUITE")
    fi
    log "apt-get install ${target[*]} $PKGS"
    local update_log; update_log=$(mktemp)
    if ! in_root apt-get update -q 2>&1 | tee "$update_log" >&2 || grep -q '^E:' "$update_log"; then
      local why; why=$(grep -m1 '^E:' "$update_log" || echo "network?"); rm -f "$update_log"
      have_network || unavailable "apt-get update failed in the root: $why"
      die "apt-get update failed in the root: $why"
    fi
    rm -f "$update_log"
    in_root apt-get install -y -q "${target[@]}" $PKGS >&2 || die "apt-get install failed"
    rm -f "$ROOT"/var/cache/apt/*.bin              # apt's package cache, rebuilt on demand
    umount_ours
  fi
  # an unprivileged user for runs that want one (HOSTROOT_USER=bokeh)
  in_root id -u bokeh >/dev/null 2>&1 || in_root useradd -m -u 1000 -s /bin/bash bokeh
  mkdir -p "$ROOT/bokehkit" "$ROOT/job"
  # keep what other checkouts installed in the list, so that each sees its own set ready
  echo "$was_ready $PKGS" | tr ' ' '\n' | sort -u | xargs > "$READY.new"
  mv "$READY.new" "$READY"
  flock -u 8
  log "ready: $ROOT ($(root_mb) MB; .deb cache $(du -sm "$CACHE" | cut -f1) MB; $((SECONDS - t0)) s)"
}

# ------------------------------------------------------------------ run
ns_run() {   # runs in the private namespace (or under an exclusive lock in the fallback)
  local user=${HOSTROOT_USER:-root} home=/root uspec=() envs=() v
  [ "$user" = root ] || { home=/home/$user; uspec=(--userspec="$user:$user"); }
  mount_base
  mnt "$ROOT/tmp" -t tmpfs -o mode=1777 tmpfs           # fresh /tmp per run
  mnt "$ROOT/bokehkit" --bind "$REPO"
  mount -o remount,bind,ro "$ROOT/bokehkit"
  if [ -n "${JOB_DIR:-}" ]; then
    [ -d "$JOB_DIR" ] || die "JOB_DIR=$JOB_DIR is not a folder"
    mnt "$ROOT/job" --bind "$(realpath "$JOB_DIR")"
  else
    mnt "$ROOT/job" -t tmpfs -o mode=1777 tmpfs
  fi
  install -d -m 700 "$ROOT/tmp/runtime-$user"
  [ "$user" = root ] || in_root chown "$user:$user" "/tmp/runtime-$user"
  # Host folders wanted at their own paths inside (HOSTROOT_BINDS, one per line, read-only),
  # mounted after the fresh /tmp so that a checkout under /tmp stays visible.
  local bind
  while IFS= read -r bind; do
    [ -n "$bind" ] || continue
    mnt "$ROOT$bind" --bind "$bind"
    mount -o remount,bind,ro "$ROOT$bind"
  done <<< "${HOSTROOT_BINDS:-}"
  for v in $PASSENV; do if [ -n "${!v+x}" ]; then envs+=("$v=${!v}"); fi; done
  # in the background (stdin kept) so that a signal to us reaches the command at once,
  # and we unmount as soon as it is gone; without the root's lock (fd 9), so that a server
  # the command left running (an Xvfb of a killed test) cannot hold off the next setup
  local rc=0 child
  chroot "${uspec[@]}" "$ROOT" /usr/bin/env -i -C /job \
    HOME="$home" USER="$user" LOGNAME="$user" LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin \
    XDG_RUNTIME_DIR="/tmp/runtime-$user" PYTHONDONTWRITEBYTECODE=1 \
    BOKEHKIT_SRC=/bokehkit JOB=/job "${envs[@]}" "$@" <&0 9>&- &
  child=$!
  trap 'kill -TERM $child 2>/dev/null' INT TERM HUP
  while :; do   # wait returns early (>128) when a trapped signal arrives
    rc=0; wait $child || rc=$?
    kill -0 $child 2>/dev/null || break
  done
  trap - INT TERM HUP
  umount_ours
  return $rc
}

# ------------------------------------------------------------------ main
cmd=${1:-}; shift || true
case $cmd in
  setup|run|status|versions)
    why=$(check_host); [ -z "$why" ] || unavailable "$why" ;;
esac
case $cmd in
  setup)
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$LOCK"; flock 9                       # one setup at a time, no run meanwhile
    in_namespace ns-setup ;;
  run)
    [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS...]"
    if ! is_ready; then /bin/bash "$SELF" setup >&2 || exit $?; fi
    exec 9>"$LOCK"
    if [ -z "${HOSTROOT_NO_UNSHARE:-}" ] && unshare --mount true 2>/dev/null; then
      flock -s 9                                  # parallel runs are fine in namespaces
    else
      flock 9                                     # host mounts: one run at a time
    fi
    in_namespace ns-run "$@" ;;
  status)
    if is_ready; then echo ready
    elif [ -e "$BOOTSTRAPPED" ]; then unavailable "$ROOT is not complete (run: $0 setup)"
    else unavailable "$ROOT is not built (run: $0 setup)"; fi ;;
  versions)   # what the tests name their ids after; root must be ready
    is_ready || unavailable "$ROOT is not built (run: $0 --suite $SUITE setup)"
    in_root /bin/sh -c 'for p in gimp krita python3 python3-pyqt5 python3-pyqt6; do
        printf "%s %s\n" "$p" "$(dpkg-query -W -f="\${Version}" "$p" 2>/dev/null || echo -)"; done' ;;
  umount)
    umount_all ;;
  # internal: the same, inside the private mount namespace
  ns-setup) [ "$(id -u)" = 0 ] || exit 1; ns_setup ;;
  ns-run)   [ "$(id -u)" = 0 ] || exit 1; ns_run "$@" ;;
  *) sed -n '2,36p' "$0" >&2; exit 2 ;;
esac
