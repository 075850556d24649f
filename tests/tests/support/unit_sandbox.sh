#!/usr/bin/env bash
# Runs CMD (the agent's `collect --json`, or one command a check runs) once per
# variant and writes OUT/NAME.out, OUT/NAME.err and a line "NAME STATUS" to
# OUT/exits. A variant is NAME=free (no sandbox at all) or NAME=CAPS: the agent
# unit's sandbox, as far as it can be reproduced without systemd as PID 1, with
# the bounding set CAPS (a comma list in setpriv's spelling, empty for none)
# and no inheritable or ambient capability.
#
# The rest of the sandbox comes from the environment, which
# tests/tests/agent_sandbox.rs fills from the unit file:
#   SANDBOX_STRICT=1   ProtectSystem=strict: every mount read-only but /dev, /proc, /sys
#   SANDBOX_RW         ReadWritePaths= (space separated; a missing path is skipped, as "-" does)
#   SANDBOX_TMP=1      PrivateTmp=: empty /tmp and /var/tmp
#   SANDBOX_NNP=1      NoNewPrivileges=
#   SANDBOX_FILTER     SystemCallFilter= and the rest, as seccomp_filter.py reads them; empty: none
#
# usage: unit_sandbox.sh OUT VARIANT... -- CMD...
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=$1
shift
variants=()
while [ "$1" != -- ]; do
  variants+=("$1")
  shift
done
shift

# PrivateTmp= hides /tmp and /var/tmp, where a checkout (and with it the
# built agent and seccomp_filter.py) may well live, as in CI's clean clone:
# the sandbox runs copies from /run, which it keeps visible, read-only.
stage=$(mktemp -d /run/custos-sandbox.XXXXXX)
trap 'rm -rf "$stage"' EXIT
cp "$here/seccomp_filter.py" "$stage/"
program=$1
shift
case "$program" in
  /tmp/* | /var/tmp/*)
    cp "$program" "$stage/"
    program="$stage/$(basename "$program")"
    ;;
esac
set -- "$program" "$@"

# So may tools the test puts on PATH (CI unpacks auditd under target/): each
# such PATH or LD_LIBRARY_PATH entry is copied into the stage too.
restage() { # COLON-LIST
  local entries out=() i=0
  IFS=: read -ra entries <<<"$1"
  for entry in "${entries[@]}"; do
    case "$entry" in
      /tmp/* | /var/tmp/*)
        i=$((i + 1))
        mkdir -p "$stage/dir$i"
        cp -a "$entry/." "$stage/dir$i/"
        out+=("$stage/dir$i")
        ;;
      *) out+=("$entry") ;;
    esac
  done
  (
    IFS=:
    echo "${out[*]}"
  )
}
PATH=$(restage "$PATH")
if [ -n "${LD_LIBRARY_PATH:-}" ]; then
  LD_LIBRARY_PATH=$(restage "$LD_LIBRARY_PATH")
  export LD_LIBRARY_PATH
fi

# The file system of the unit, then setpriv with the arguments given.
mounts_then_setpriv='
  set -e
  if [ "${SANDBOX_STRICT:-}" = 1 ]; then
    findmnt -rno TARGET | sort -u | while read -r m; do
      m=$(printf "%b" "$m")
      case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
      mount -o remount,bind,ro "$m"
    done
  fi
  for p in ${SANDBOX_RW:-}; do
    [ -e "$p" ] || continue
    mount --bind "$p" "$p"
    mount -o remount,bind,rw "$p"
  done
  if [ "${SANDBOX_TMP:-}" = 1 ]; then
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp
  fi
  exec setpriv "$@"'

sandboxed() { # CAPS CMD...
  local caps=$1
  shift
  local bounding=-all
  [ -n "$caps" ] && bounding="-all,+${caps//,/,+}"
  local args=()
  [ "${SANDBOX_NNP:-}" = 1 ] && args+=(--no-new-privs)
  args+=(--bounding-set="$bounding" --inh-caps=-all --ambient-caps=-all)
  # shellcheck disable=SC2206 # the filter is a list of words
  [ -n "${SANDBOX_FILTER:-}" ] && args+=(/usr/bin/python3 "$stage/seccomp_filter.py" $SANDBOX_FILTER --)
  unshare -m --propagation private bash -c "$mounts_then_setpriv" sandbox "${args[@]}" "$@"
}

for variant in "${variants[@]}"; do
  name=${variant%%=*} caps=${variant#*=}
  if [ "$caps" = free ]; then
    "$@" >"$out/$name.out" 2>"$out/$name.err"
  else
    sandboxed "$caps" "$@" >"$out/$name.out" 2>"$out/$name.err"
  fi
  echo "$name $?" >>"$out/exits"
done
