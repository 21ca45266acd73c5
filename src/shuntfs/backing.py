"""Passthrough: whether a session may use it (the policy), and which inodes the kernel serves from which backing
file (the registry).

The policy is decided once, here: passthrough needs CAP_SYS_ADMIN (BACKING_OPEN checks it), the kernel's offer at
INIT, and a stacking depth that covers the backing files' filesystem. Whether it is on, and why not, is written
only by this module.

The kernel allows one io mode per inode while any of its files is open: all passthrough with the same backing id,
or all cached. So the registry keeps, per inode, one backing id (or none, for a cached inode) and the number of
open files using it; the id is registered on the first open and closed on the last release.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union

from . import abi
from .libc import libc

log = logging.getLogger("shuntfs.backing")

#: Errors of BACKING_OPEN that mean "passthrough cannot work on this connection at all".
_CONNECTION_WIDE = {errno.EPERM, errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOSYS}


#: What a session is asked: "auto" (on where this daemon may use it), True (the same, said firmly), False (off).
Asked = Union[bool, Literal["auto"]]


def has_cap_sys_admin() -> bool:
    """Whether this process holds CAP_SYS_ADMIN, which FUSE_DEV_IOC_BACKING_OPEN requires."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 21))
    except OSError:
        pass
    return os.geteuid() == 0


def fs_magic(path: str) -> int:
    """statfs's f_type of the filesystem holding ``path`` (0 if unknown)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs, f_type first
    if libc.statfs(os.fsencode(path), buf) != 0:
        return 0
    return int.from_bytes(buf.raw[:8], sys.byteorder)


@dataclass
class Policy:
    """What a session asks for at INIT: passthrough or not (and why not), and the stacking depth."""

    wanted: bool
    max_stack_depth: int
    reason: str | None = None


def policy(asked: Asked = "auto", backing_source: str | None = None, max_stack_depth: int | None = None) -> Policy:
    """Decide passthrough for a session: off when not asked or when this daemon lacks CAP_SYS_ADMIN. The depth
    is ``max_stack_depth``, else 2 when ``backing_source`` (the directory the backing files come from) is on a
    stacked filesystem (overlayfs, FUSE, ecryptfs: the kernel needs it to back files there), else 1."""
    depth = max_stack_depth
    if depth is None:
        depth = 2 if backing_source and fs_magic(backing_source) in abi.STACKED_FS_MAGIC else 1
    if not asked:
        return Policy(False, depth, "passthrough was not requested")
    if not has_cap_sys_admin():
        return Policy(False, depth, "the daemon lacks CAP_SYS_ADMIN (passthrough needs root)")
    return Policy(True, depth)


@dataclass
class BackingFile:
    backing_id: int  # 0: this inode is served in cached (userspace) mode while it has opens
    opens: int


class BackingRegistry:
    """Per-inode backing ids for one FUSE connection (``devfd``)."""

    def __init__(
        self, devfd: int, enabled: bool = False, reason: str | None = None, ioctl: Callable[..., Any] = fcntl.ioctl
    ) -> None:
        self._devfd = devfd
        self._ioctl = ioctl  # the /dev/fuse ioctls go through this (tests give a fake)
        #: passthrough is on for this connection; else ``disabled_reason`` says why not
        self.enabled = enabled
        self.disabled_reason: str | None = None if enabled else reason or "INIT has not settled it yet"
        self._files: dict[int, BackingFile] = {}
        self._lock = threading.Lock()
        self._logged: set[int] = set()
        #: count of opens that asked for passthrough and got the fallback
        self.fallback_opens = 0

    def negotiated(self, offered: bool, granted: bool) -> None:
        """INIT settled: passthrough is on if we asked for it (``granted``: asked and offered); else say why not,
        unless the policy already did."""
        self.enabled = granted
        if granted:
            self.disabled_reason = None
        elif not offered:
            self.disabled_reason = "the kernel did not offer passthrough"
        elif self.disabled_reason is None or self.disabled_reason.startswith("INIT"):
            self.disabled_reason = "passthrough was not requested"

    def acquire(self, nodeid: int, fd: int | None) -> int:
        """Count one open of ``nodeid``; return its backing id, or 0 for a cached (userspace I/O) open.

        ``fd`` is the file to back it with, or None when the open does not ask for passthrough; such an open of an
        inode that already has a backing id still gets that id, because the kernel refuses mixed modes.
        """
        with self._lock:
            entry = self._files.get(nodeid)
            if entry is not None:
                entry.opens += 1
                return entry.backing_id
            backing_id = 0
            if fd is not None and self.enabled:
                backing_id = self._register(fd)
            if fd is not None and not backing_id:
                self.fallback_opens += 1
            self._files[nodeid] = BackingFile(backing_id, 1)
            return backing_id

    def release(self, nodeid: int) -> None:
        """One open of ``nodeid`` ended; close its backing id with the last one."""
        with self._lock:
            entry = self._files.get(nodeid)
            if entry is None:
                return
            entry.opens -= 1
            if entry.opens > 0:
                return
            del self._files[nodeid]
            if entry.backing_id:
                self._close(entry.backing_id)

    def snapshot(self, fd_of: Callable[[int], int | None] = lambda nodeid: None) -> list[dict]:
        """The registered backing files, for operators (the kernel shows them nowhere). ``fd_of(nodeid)`` gives
        an fd of an open of that inode, to name its file: paths are looked up here, not on the open path."""
        with self._lock:
            entries = [(n, e.backing_id, e.opens) for n, e in self._files.items() if e.backing_id]
        return [
            {"id": backing_id, "nodeid": n, "path": _fd_path(fd_of(n)), "opens": opens}
            for n, backing_id, opens in entries
        ]

    def close_all(self) -> None:
        with self._lock:
            for entry in self._files.values():
                if entry.backing_id:
                    self._close(entry.backing_id)
            self._files.clear()

    def _register(self, fd: int) -> int:
        # A mutable buffer with mutate_flag=True makes fcntl.ioctl return the syscall's result: the backing id.
        buf = bytearray(abi.BACKING_MAP.pack(fd, 0, 0))
        try:
            return self._ioctl(self._devfd, abi.FUSE_DEV_IOC_BACKING_OPEN, buf, True)
        except OSError as e:
            self._refused(e)
            return 0

    def _refused(self, e: OSError) -> None:
        code = e.errno or errno.EIO
        if code in _CONNECTION_WIDE:
            self.enabled = False
            self.disabled_reason = f"BACKING_OPEN: {os.strerror(code)}"
            log.warning("passthrough disabled for this mount (%s); using userspace I/O", self.disabled_reason)
        elif code not in self._logged:
            self._logged.add(code)
            why = "the source is stacked too deep" if code == errno.ELOOP else os.strerror(code)
            log.warning("passthrough refused for a file (%s); such files use userspace I/O", why)

    def _close(self, backing_id: int) -> None:
        try:
            self._ioctl(self._devfd, abi.FUSE_DEV_IOC_BACKING_CLOSE, abi.BACKING_ID.pack(backing_id))
        except OSError as e:
            log.warning("BACKING_CLOSE %d: %s", backing_id, e)


def _fd_path(fd: int | None) -> str:
    if fd is None:
        return "?"
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"
