#!/usr/bin/python3
"""Loads a seccomp filter as systemd builds one from a unit, then execs CMD.

usage: seccomp_filter.py WORD... -- CMD...

WORDs are the unit's SystemCallFilter= words in order: the first names the
allow list, a "~" word removes from it, a later plain word adds again, as
systemd reads consecutive SystemCallFilter= lines; a group (@name) is
expanded by `systemd-analyze syscall-filter`. Refused calls fail with EPERM
(SystemCallErrorNumber=EPERM). Besides:
  af=AF_X,AF_Y   RestrictAddressFamilies=: socket(2) only for these families
  mdwe           MemoryDenyWriteExecute=: no writable and executable mapping,
                 no mprotect(2) to executable
Needs NoNewPrivileges (setpriv --no-new-privs) or CAP_SYS_ADMIN to load.
"""

import errno
import mmap
import os
import socket
import subprocess
import sys

import seccomp


def expand(name, seen):
    """The system calls of a group, nested groups included."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                         capture_output=True, text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if word.startswith("@"):
            if word not in seen:
                seen.add(word)
                calls |= expand(word, seen)
        else:
            calls.add(word)
    return calls


def calls_of(word):
    return expand(word, set()) if word.startswith("@") else {word}


def read_spec(words):
    calls = [w for w in words if not w.startswith("af=") and w != "mdwe"]
    if calls and calls[0].startswith("~"):
        sys.exit("seccomp_filter.py: a filter that starts as a deny list is not read here")
    allow, families, mdwe = set(), [], False
    for word in words:
        if word.startswith("af="):
            families = [getattr(socket, f) for f in word[3:].split(",") if f]
        elif word == "mdwe":
            mdwe = True
        elif word.startswith("~"):
            allow -= calls_of(word[1:])
        else:
            allow |= calls_of(word)
    return allow, families, mdwe


def build(allow, families, mdwe):
    conditioned = {"socket"} if families else set()
    if mdwe:
        conditioned |= {"mmap", "mprotect", "pkey_mprotect"}
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in sorted(allow - conditioned):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture
    for family in families if "socket" in allow else []:
        f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
    if mdwe:
        w, x = mmap.PROT_WRITE, mmap.PROT_EXEC
        if "mmap" in allow:
            f.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, x, 0))
            f.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, w, 0))
        for name in ("mprotect", "pkey_mprotect"):
            if name in allow:
                f.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, x, 0))
    return f


def main():
    sep = sys.argv.index("--")
    words, cmd = sys.argv[1:sep], sys.argv[sep + 1:]
    build(*read_spec(words)).load()
    os.execvp(cmd[0], cmd)


main()
