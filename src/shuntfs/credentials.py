"""Acting as the caller: per-thread filesystem credentials for a daemon running as root.

The kernel does no permission check on a passthrough backing file and a root daemon bypasses every check on the
source, so creation and open run under the caller's fsuid, fsgid and supplementary groups: the source filesystem
then decides ownership (setgid directories, default ACLs) and access (mode bits and ACLs) exactly as for the caller.

glibc's setgroups() changes every thread of the process, so the raw syscalls are used: they act on the calling
thread only, which is what a multi-threaded server needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import stat
from typing import Iterator

_SYSCALLS = {
    # machine: (setgroups, setfsuid, setfsgid)
    "x86_64": (116, 122, 123),
    "aarch64": (159, 151, 152),
    "riscv64": (159, 151, 152),
    "ppc64le": (81, 138, 139),
    "s390x": (206, 215, 216),
}

_libc = ctypes.CDLL(None, use_errno=True)
#: (setgroups, setfsuid, setfsgid) syscall numbers; zeros where unknown (then AVAILABLE is False and none is used)
_numbers = _SYSCALLS.get(platform.machine(), (0, 0, 0))
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

#: Whether this process can act as other users at all.
AVAILABLE = os.geteuid() == 0 and platform.machine() in _SYSCALLS
#: The daemon's own groups, put back after each act.
_OWN_GROUPS = os.getgroups()


def caller_groups(pid: int, gid: int) -> list[int]:
    """Supplementary groups of thread ``pid`` (the kernel reports thread ids), or just ``gid`` if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return [gid]


def _set_groups(groups: list[int]) -> None:
    arr = (ctypes.c_uint * max(1, len(groups)))(*groups)
    if _syscall(_numbers[0], len(groups), arr) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _set_fsid(number: int, value: int) -> None:
    # setfsuid/setfsgid never fail with an errno; they return the previous value.
    _syscall(number, value)


@contextlib.contextmanager
def acting_as(uid: int, gid: int, pid: int) -> Iterator[None]:
    """Run the body with the calling thread's filesystem identity set to the caller's; restore root after."""
    if not AVAILABLE or uid == 0:
        yield
        return
    _set_groups(caller_groups(pid, gid))
    _set_fsid(_numbers[2], gid)
    _set_fsid(_numbers[1], uid)
    try:
        yield
    finally:
        _set_fsid(_numbers[1], 0)
        _set_fsid(_numbers[2], 0)
        _set_groups(_OWN_GROUPS)


# ---- CAP_FSETID and the set-id bits
#
# A write or truncate by a process without CAP_FSETID clears S_ISUID, and S_ISGID when the file is group-executable
# or the writer is not in the file's group. With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to the server: it
# says so with a kill flag (WRITE, O_TRUNC opens, truncating SETATTR) or, before a passthrough write that never
# reaches us, with an otherwise empty SETATTR; the library then does it.

def mode_after_write(st: os.stat_result, gid: int, pid: int) -> int:
    """The mode of file ``st`` after a write or truncate by a caller without CAP_FSETID (fsgid ``gid``, thread
    ``pid``): S_ISUID goes; S_ISGID goes if the file is group-executable or the caller is not in its group."""
    mode = st.st_mode
    if not has_setid_bits(mode):
        return mode
    mode &= ~stat.S_ISUID
    if mode & stat.S_ISGID and (
        mode & stat.S_IXGRP or (st.st_gid != gid and st.st_gid not in caller_groups(pid, gid))
    ):
        mode &= ~stat.S_ISGID
    return mode


def has_setid_bits(mode: int) -> bool:
    return stat.S_ISREG(mode) and bool(mode & (stat.S_ISUID | stat.S_ISGID))


def clear_setid_bits(fd: int, gid: int, pid: int) -> int | None:
    """Do to the file at ``fd`` what a write by that caller would do to its set-id bits; the new mode, or None if
    nothing changed. ``fd`` may be O_PATH: the rare chmod goes through its /proc link, which fchmod on O_PATH
    would refuse."""
    st = os.fstat(fd)
    mode = mode_after_write(st, gid, pid)
    if mode == st.st_mode:
        return None
    os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
    return mode
