#!/usr/bin/env bash
# tests/hosts/run-with-engine.sh CMD...
#   `hostroot.sh run CMD...` with the HOST's bokehkit engine usable inside the root: the
#   host venv's base interpreter (sys.base_prefix, e.g. a pyenv build), the repository and
#   the venv are bind-mounted read-only at their own host paths, so the venv works there
#   unchanged, and BOKEHKIT_ENGINE points the plug-ins at "<venv>/bin/python -m bokehkit" (the client
#   adds "serve --stdio"). The binds live in a private mount namespace that dies with the command.
#
#   BOKEHKIT_VENV   the engine's venv (default: <repo>/.venv)
#   HOSTROOT_SUITE, HOSTROOT, JOB_DIR, HOSTROOT_*   as for hostroot.sh (the suite's root)
#
# Exits 77 with "hostroot: unavailable: ..." when this cannot work here (like hostroot.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=${BOKEHKIT_SRC:-$(cd "$HERE/../.." && pwd)}
VENV=$(realpath -m "${BOKEHKIT_VENV:-$REPO/.venv}")
unavailable() { printf 'hostroot: unavailable: %s\n' "$*"; exit 77; }

if [ -z "${_BOKEHKIT_ENGINE_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || unavailable "not root (needs chroot and mount)"
  [ -x "$VENV/bin/python" ] || unavailable "no engine venv at $VENV (run scripts/setup.sh)"
  "$HERE/hostroot.sh" status >/dev/null || exit $?
  unshare --mount true 2>/dev/null || unavailable "no mount namespaces (unshare --mount)"
  exec env _BOKEHKIT_ENGINE_NS=1 unshare --mount --propagation private /bin/bash "$0" "$@"
fi

base=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')
bound=()
for p in "$(realpath "$base")" "$REPO" "$VENV"; do
  case $p in
    /|/usr|/usr/*|/bin|/bin/*|/lib|/lib/*|/lib64|/lib64/*|/etc|/etc/*|/proc*|/sys*|/dev*)
      unavailable "the engine's Python lives in $p, which the root has its own of (use a venv" \
                  "made from a Python outside /usr, e.g. pyenv, or run the engine over TCP)" ;;
  esac
  skip=
  for b in "${bound[@]}"; do case $p/ in "$b"/*) skip=1 ;; esac; done
  [ -n "$skip" ] && continue
  bound+=("$p")
done
# hostroot.sh mounts these after its fresh /tmp (a CI checkout may live under /tmp).
HOSTROOT_BINDS=$(printf '%s\n' "${bound[@]}")
export HOSTROOT_BINDS
exec "$HERE/hostroot.sh" run env BOKEHKIT_ENGINE="$VENV/bin/python -m bokehkit" "$@"
