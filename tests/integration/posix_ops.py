"""POSIX operations run the same way on two trees, with outcomes reduced to what must be equal on both.

Shared by the differential conformance tests: an outcome is ``("ok", value)`` or ``("err", "ENOENT")``, and values
carry no inode numbers, device numbers or timestamps unless the caller asked for them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_libc.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                    ctypes.c_int]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_HANDLE_HEAD = struct.Struct("Ii")  # struct file_handle: handle_bytes, handle_type

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
STATX_BASIC_STATS, STATX_BTIME = 0x7FF, 0x800
SEEK_DATA, SEEK_HOLE = 3, 4

Outcome = tuple


def outcome(fn: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def renameat2(old: str, new: str, flags: int) -> None:
    _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    _check(_libc.fallocate(fd, mode, offset, length))


def name_to_handle(path: str) -> bytes:
    """name_to_handle_at(AT_FDCWD, path): the file handle (struct file_handle, whole) of what ``path`` names."""
    buf = ctypes.create_string_buffer(_HANDLE_HEAD.pack(128, 0), _HANDLE_HEAD.size + 128)
    mount_id = ctypes.c_int()
    _check(_libc.name_to_handle_at(AT_FDCWD, os.fsencode(path), buf, ctypes.byref(mount_id), 0))
    return buf.raw[: _HANDLE_HEAD.size + _HANDLE_HEAD.unpack_from(buf.raw)[0]]


def open_by_handle(mount: str, handle: bytes, flags: int) -> int:
    """open_by_handle_at with a directory fd of ``mount`` (needs CAP_DAC_READ_SEARCH)."""
    mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _check(_libc.open_by_handle_at(mount_fd, handle, flags))
    finally:
        os.close(mount_fd)


def link_fd(fd: int, new: str) -> None:
    """linkat(fd, "", AT_FDCWD, new, AT_EMPTY_PATH): how a root program names an O_TMPFILE."""
    _check(_libc.linkat(fd, b"", AT_FDCWD, os.fsencode(new), AT_EMPTY_PATH))


def statx(path: str, wanted: int = STATX_BASIC_STATS | STATX_BTIME) -> dict:
    buf = ctypes.create_string_buffer(256)
    _check(_libc.statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW, wanted, buf))
    raw = buf.raw
    mask = int.from_bytes(raw[0:4], "little")
    return {
        "mask": mask & wanted,
        "nlink": int.from_bytes(raw[16:20], "little"),
        "uid": int.from_bytes(raw[20:24], "little"),
        "gid": int.from_bytes(raw[24:28], "little"),
        "mode": int.from_bytes(raw[28:30], "little"),
        "size": int.from_bytes(raw[40:48], "little"),
    }


def shape(st: os.stat_result) -> tuple:
    """What a stat result must share with its twin in another tree."""
    size = st.st_size if not stat.S_ISDIR(st.st_mode) else None  # directory sizes are the filesystem's business
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink, size, st.st_uid, st.st_gid)


def snapshot(root: str) -> dict:
    """Every name under ``root`` with its shape, data or target, and extended attributes."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    body: Any = f.read()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            else:
                body = None
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(path, k, follow_symlinks=False)
                for k in sorted(os.listxattr(path, follow_symlinks=False))
            }
            out[rel] = (shape(st), body, xattrs)
    return out


def times(root: str) -> dict:
    """(mtime, ctime) of every name under ``root``: the mirror must report exactly its source's."""
    top = os.lstat(root)
    out = {".": (top.st_mtime_ns, top.st_ctime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_ctime_ns)
    return out


_OWN_GROUPS = os.getgroups()


@contextmanager
def identity(uid: int, gid: int) -> Iterator[None]:
    """Act as ``uid``/``gid`` with no supplementary groups (effective ids only, so root can come back).

    The test process has no other threads, so changing its ids is safe."""
    if uid == 0:
        yield
        return
    os.setgroups([])
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(_OWN_GROUPS)
