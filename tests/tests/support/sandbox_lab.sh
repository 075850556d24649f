#!/usr/bin/env bash
# A host on which each capability of the agent's unit decides a check, staged
# in private mount, PID and network namespaces (nothing of it is visible
# outside, and it all ends with CMD), then CMD inside it. Each part is staged
# when its variable is 1:
#   LAB_FIREWALL  IPv4 input filtered by legacy iptables alone (policy DROP, ssh
#                 open), IPv6 by nftables: CAP_NET_RAW and CAP_NET_ADMIN
#   LAB_KDE       KDE Plasma, and a user whose home is 0700 (as Debian 12 makes
#                 them) with a compliant kscreenlockerrc: CAP_DAC_READ_SEARCH
#   LAB_CLAMAV    clamd as Debian runs it (user clamav) with a fresh one-signature
#                 database, and clamonacc scanning a directory: CAP_SYS_PTRACE
#
# usage: sandbox_lab.sh DIR CMD...   (DIR: an empty directory for the lab's files)
set -eu
dir=$1
shift
chmod 0755 "$dir"

if [ "${LAB_KDE:-}" = 1 ]; then
  mkdir -p "$dir/xsessions" "$dir/home/alice/.config"
  touch "$dir/xsessions/plasma.desktop"
  printf '[Daemon]\nAutolock=true\nTimeout=5\nLockGrace=5\n' >"$dir/home/alice/.config/kscreenlockerrc"
  chown -R 1000:1000 "$dir/home/alice"
  chmod 0700 "$dir/home/alice"
  # The session directory must exist to be mounted over (an empty one changes nothing).
  mkdir -p /usr/share/xsessions
fi

if [ "${LAB_CLAMAV:-}" = 1 ]; then
  mkdir -p "$dir/db" "$dir/run" "$dir/watched"
  printf 'Custos test database\n' >"$dir/db/COPYING"
  printf 'Custos.Test.Sig:0:*:637573746f732d74657374\n' >"$dir/db/daily.ndb"
  # sigtool asks for the builder's name; it complains of the database it has not yet written.
  (cd "$dir/db" && echo custos | sigtool --unsigned --build=daily.cud --cvd-version=7 --datadir="$dir/db" \
    >"$dir/sigtool.log" 2>&1) || true
  [ -s "$dir/db/daily.cud" ] || { cat "$dir/sigtool.log" >&2; exit 1; }
  rm "$dir/db/COPYING" "$dir/db/daily.ndb"
  chown -R clamav:clamav "$dir/db" "$dir/run"
  cat >"$dir/clamd.conf" <<EOF
LocalSocket /run/clamav/clamd.ctl
FixStaleSocket true
User clamav
DatabaseDirectory /var/lib/clamav
LogFile /run/clamav/clamd.log
Foreground true
OnAccessIncludePath $dir/watched
OnAccessExcludeUname clamav
OnAccessPrevention no
EOF
  mkdir -p /run/clamav
fi

exec unshare -m -p -n -f --mount-proc --propagation private bash -c '
  set -eu
  dir=$1
  shift
  ip link set lo up
  if [ "${LAB_FIREWALL:-}" = 1 ]; then
    iptables-legacy -A INPUT -i lo -j ACCEPT
    iptables-legacy -A INPUT -p tcp --dport 22 -j ACCEPT
    iptables-legacy -P INPUT DROP
    nft "table ip6 lab { chain input { type filter hook input priority 0; policy drop; iif lo accept; tcp dport 22 accept; }; }"
  fi
  if [ "${LAB_KDE:-}" = 1 ]; then
    mount --bind "$dir/xsessions" /usr/share/xsessions
    mount --bind "$dir/home" /home
  fi
  if [ "${LAB_CLAMAV:-}" = 1 ]; then
    mount --bind "$dir/clamd.conf" /etc/clamav/clamd.conf
    mount --bind "$dir/db" /var/lib/clamav
    mount --bind "$dir/run" /run/clamav
    clamd -c /etc/clamav/clamd.conf >/dev/null 2>&1 &
    for _ in $(seq 300); do [ -S /run/clamav/clamd.ctl ] && break; sleep 0.1; done
    [ -S /run/clamav/clamd.ctl ] || { echo "lab: clamd did not start" >&2; exit 1; }
    clamonacc -F --log=/run/clamav/clamonacc.log >/dev/null 2>&1 &
    sleep 2
  fi
  "$@"' lab "$dir" "$@"
