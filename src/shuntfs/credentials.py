"""Acting as the caller: per-thread filesystem credentials for a daemon running as root.

A root daemon bypasses every permission check on the source, and the kernel does none on a passthrough backing file.
So each operation that the source checks runs under the caller's fsuid, fsgid and supplementary groups, which drops
the capabilities that bypass file permissions (and, where asked, all other effective capabilities): the source
filesystem then decides ownership (setgid directories, default ACLs) and access (mode bits, ACLs, the sticky bit,
``trusted.*`` and ``security.*`` xattrs) exactly as for the caller, on the real inode.

glibc's setgroups() changes every thread of the process, and capset() has no wrapper, so the raw syscalls are used:
they act on the calling thread only, which is what a multi-threaded server needs.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
import threading
import time

from .libc import libc

_SYSCALLS = {
    # machine: (setgroups, setfsuid, setfsgid, capget, capset, faccessat2, unshare)
    "x86_64": (116, 122, 123, 125, 126, 439, 272),
    "aarch64": (159, 151, 152, 90, 91, 439, 97),
    "riscv64": (159, 151, 152, 90, 91, 439, 97),
    "ppc64le": (81, 138, 139, 183, 184, 439, 282),
    "s390x": (206, 215, 216, 184, 185, 439, 303),
}

_libc = libc
_numbers = _SYSCALLS.get(platform.machine(), (0,) * 7)
_SETGROUPS, _SETFSUID, _SETFSGID, _CAPGET, _CAPSET, _FACCESSAT2, _UNSHARE = _numbers
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

#: Whether this process can act as other users at all.
AVAILABLE = os.geteuid() == 0 and platform.machine() in _SYSCALLS

_CAP_V3 = 0x20080522
_CapHeader = ctypes.c_uint32 * 2  # version, pid (0: this thread)
_CapData = ctypes.c_uint32 * 6  # two of {effective, permitted, inheritable}
_AT_EMPTY_PATH = 0x1000
_AT_EACCESS = 0x200
_CLONE_FS = 0x200

#: How long the supplementary groups read for a caller thread are trusted. A process without CAP_SETGID cannot
#: change its groups, and one with it that drops privileges changes its uid or gid, which the cache checks too.
GROUPS_TTL = 1.0
_groups_cache: dict[int, tuple[int, int, tuple[int, ...], float]] = {}


def _own_capabilities() -> tuple[ctypes.Array, ctypes.Array, ctypes.Array]:
    header = _CapHeader(_CAP_V3, 0)
    full = _CapData()
    if AVAILABLE and _syscall(_CAPGET, header, full) != 0:
        full = _CapData()
    dropped = _CapData(*full)
    dropped[0] = dropped[3] = 0  # effective sets of both halves
    return header, full, dropped


_CAP_HEADER, _CAPS_FULL, _CAPS_NONE = _own_capabilities()


def caller_groups(pid: int, uid: int, gid: int) -> tuple[int, ...]:
    """Supplementary groups of thread ``pid`` (the kernel reports thread ids), or just ``gid`` if it is gone."""
    now = time.monotonic()
    cached = _groups_cache.get(pid)
    if cached is not None and cached[0] == uid and cached[1] == gid and cached[3] > now:
        return cached[2]
    groups: tuple[int, ...] = (gid,)
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 16384)
        finally:
            os.close(fd)
        start = data.index(b"\nGroups:") + 8
        groups = tuple(int(g) for g in data[start: data.index(b"\n", start)].split())
    except (OSError, ValueError):
        pass
    if len(_groups_cache) > 4096:
        _groups_cache.clear()  # dead threads' entries; cheaper than tracking them
    _groups_cache[pid] = (uid, gid, groups, now + GROUPS_TTL)
    return groups


def _fail() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


class _Thread(threading.local):
    groups: tuple[int, ...] | None = None  # the groups set on this thread, None: the daemon's own
    own_fs: bool = False  # unshare(CLONE_FS) done: umask is this thread's own
    umask: int = -1  # this thread's umask once own_fs


_thread = _Thread()


class Caller:
    """``with Caller(uid, gid, pid):`` runs the body as that caller on this thread; root stays root. Cheap to
    enter: two syscalls in, two out, one more when the groups differ from the thread's last caller's (the daemon's
    own groups never matter while it is root, so they are not put back).

    Setting the fsuid drops the capabilities that bypass file permission checks (CAP_FS_MASK: DAC override, chown,
    fowner, fsetid, mknod, ...), which is all that most calls consult. ``drop_capabilities`` drops the rest of the
    effective set too (two syscalls more), for calls that consult others: xattrs, where CAP_SYS_ADMIN opens
    ``trusted.*`` and ``security.*``."""

    __slots__ = ("uid", "gid", "pid", "drop", "active")

    def __init__(self, uid: int, gid: int, pid: int, drop_capabilities: bool = False) -> None:
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.drop = drop_capabilities
        self.active = 0  # 1: ids set; 2: capabilities dropped too

    def __enter__(self) -> Caller:
        if not AVAILABLE or self.uid == 0:
            return self
        groups = caller_groups(self.pid, self.uid, self.gid)
        if groups != _thread.groups:
            arr = (ctypes.c_uint * max(1, len(groups)))(*groups)
            if _syscall(_SETGROUPS, len(groups), arr) != 0:
                raise _fail()
            _thread.groups = groups
        # setfsuid/setfsgid never fail with an errno; they need CAP_SETUID/CAP_SETGID, so they come before capset
        _syscall(_SETFSGID, self.gid)
        _syscall(_SETFSUID, self.uid)
        self.active = 1
        if self.drop:
            if _syscall(_CAPSET, _CAP_HEADER, _CAPS_NONE) != 0:
                err = _fail()
                self.__exit__()
                raise err
            self.active = 2
        return self

    def __exit__(self, *exc: object) -> None:
        active = self.active
        if active:
            self.active = 0
            if active == 2:
                _syscall(_CAPSET, _CAP_HEADER, _CAPS_FULL)
            _syscall(_SETFSUID, 0)
            _syscall(_SETFSGID, 0)


def may_search_all(fds: list) -> bool:
    """Whether the current (caller's) credentials may search every directory in ``fds`` (ints, or objects with an
    ``fd``): one faccessat2 each."""
    syscall, number, search, flags = _syscall, _FACCESSAT2, os.X_OK, _AT_EMPTY_PATH | _AT_EACCESS
    for fd in fds:
        if syscall(number, fd if type(fd) is int else fd.fd, b"", search, flags) != 0:
            return False
    return True


def may_access(fd: int, mode: int) -> bool:
    """Whether the current (caller's) credentials give ``mode`` (R_OK, W_OK, X_OK) on the inode of ``fd``."""
    return _syscall(_FACCESSAT2, fd, b"", mode, _AT_EMPTY_PATH | _AT_EACCESS) == 0


def set_thread_umask(umask: int) -> None:
    """Make ``umask`` this thread's (and only this thread's) file mode creation mask, so a file created next gets
    the mode the source gives it for that caller: the umask applies unless the parent has a default ACL."""
    thread = _thread
    if thread.umask == umask:
        return
    if not thread.own_fs:
        if _UNSHARE and _syscall(_UNSHARE, _CLONE_FS) != 0:
            raise _fail()
        thread.own_fs = True
    os.umask(umask)
    thread.umask = umask


# ---- CAP_FSETID and the set-id bits
#
# A write or truncate by a process without CAP_FSETID clears S_ISUID, and S_ISGID when the file is group-executable
# or the writer is not in the file's group. With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to the server: it
# says so with a kill flag (WRITE, O_TRUNC opens, truncating SETATTR) or, before a passthrough write that never
# reaches us, with an otherwise empty SETATTR; the library then does it.

def mode_after_write(st: os.stat_result, gid: int, pid: int, uid: int = -1) -> int:
    """The mode of file ``st`` after a write or truncate by a caller without CAP_FSETID (fsgid ``gid``, thread
    ``pid``): S_ISUID goes; S_ISGID goes if the file is group-executable or the caller is not in its group."""
    mode = st.st_mode
    if not has_setid_bits(mode):
        return mode
    mode &= ~stat.S_ISUID
    if mode & stat.S_ISGID and (
        mode & stat.S_IXGRP or (st.st_gid != gid and st.st_gid not in caller_groups(pid, uid, gid))
    ):
        mode &= ~stat.S_ISGID
    return mode


def has_setid_bits(mode: int) -> bool:
    return stat.S_ISREG(mode) and bool(mode & (stat.S_ISUID | stat.S_ISGID))


def clear_setid_bits(fd: int, gid: int, pid: int, uid: int = -1) -> int | None:
    """Do to the file at ``fd`` what a write by that caller would do to its set-id bits; the new mode, or None if
    nothing changed. ``fd`` may be O_PATH: the rare chmod goes through its /proc link, which fchmod on O_PATH
    would refuse."""
    st = os.fstat(fd)
    mode = mode_after_write(st, gid, pid, uid)
    if mode == st.st_mode:
        return None
    os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
    return mode
