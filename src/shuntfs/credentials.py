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
import threading
from typing import Iterator

_SYSCALLS = {
    # machine: (setgroups, setfsuid, setfsgid, capget, capset)
    "x86_64": (116, 122, 123, 125, 126),
    "aarch64": (159, 151, 152, 90, 91),
    "riscv64": (159, 151, 152, 90, 91),
    "ppc64le": (81, 138, 139, 183, 184),
    "s390x": (206, 215, 216, 184, 185),
}

_libc = ctypes.CDLL(None, use_errno=True)
#: (setgroups, setfsuid, setfsgid, capget, capset) syscall numbers; zeros where unknown (then AVAILABLE is False
#: and none is used)
_numbers = _SYSCALLS.get(platform.machine(), (0, 0, 0, 0, 0))
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
# or the writer is not in the file's group. With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to the server, so
# the library does it for the files it serves I/O for.

_CAP_FSETID = 4
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_thread = threading.local()


def _capabilities() -> tuple[_CapHeader, ctypes.Array] | None:
    """The calling thread's capability sets (buffers reused per thread), or None where capget is unknown or fails."""
    if not _numbers[3]:
        return None
    bufs = getattr(_thread, "caps", None)
    if bufs is None:
        bufs = _thread.caps = (_CapHeader(), (_CapData * 2)())
    header, data = bufs
    header.version = _CAP_VERSION_3
    header.pid = 0
    if _syscall(_numbers[3], ctypes.byref(header), data) != 0:
        return None
    return header, data


def has_fsetid() -> bool:
    """Whether the calling thread may keep set-id bits when it writes (CAP_FSETID in its effective set)."""
    caps = _capabilities()
    if caps is None:
        return os.geteuid() == 0
    return bool(caps[1][0].effective & (1 << _CAP_FSETID))


#: Whether :func:`without_fsetid` can work here: a daemon holding CAP_FSETID needs capset to put it down.
CAN_DROP_FSETID = _capabilities() is not None


@contextlib.contextmanager
def without_fsetid() -> Iterator[None]:
    """Run the body with CAP_FSETID out of the calling thread's effective set (capset acts on one thread).

    Credentials the kernel captures inside (FUSE_DEV_IOC_BACKING_OPEN keeps them for all I/O on the backing file)
    then write like an unprivileged process: every write clears the set-id bits, as FUSE_HANDLE_KILLPRIV_V2
    requires of the server for passthrough writes that never reach it.
    """
    caps = _capabilities()
    if caps is None or not caps[1][0].effective & (1 << _CAP_FSETID):
        yield
        return
    header, data = caps
    saved = data[0].effective
    data[0].effective = saved & ~(1 << _CAP_FSETID)
    if _syscall(_numbers[4], ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    try:
        yield
    finally:
        data[0].effective = saved
        _syscall(_numbers[4], ctypes.byref(header), data)


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


def clear_setid_bits(fd: int, gid: int, pid: int) -> None:
    """Do to the file at ``fd`` what a write by that caller would do to its set-id bits. ``fd`` may be O_PATH:
    the rare chmod goes through its /proc link, which fchmod on O_PATH would refuse."""
    st = os.fstat(fd)
    mode = mode_after_write(st, gid, pid)
    if mode != st.st_mode:
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
