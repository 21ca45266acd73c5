"""Replies to the kernel, and the notifications it takes unasked, as bytes."""

from __future__ import annotations

from .. import abi
from ..abi import Opcode

_pack_out = abi.OUT_HEADER.pack
_OUT = abi.OUT_HEADER.size


def reply_error(unique: int, errno: int) -> bytes:
    """An error reply: exactly 16 bytes, error = -errno."""
    if not 0 < errno < 512:
        errno = 5  # EIO: the kernel rejects anything outside (0, 512)
    return _pack_out(_OUT, -errno, unique)


def reply_empty(unique: int) -> bytes:
    return _pack_out(_OUT, 0, unique)


def reply_bytes(unique: int, payload: bytes | bytearray | memoryview) -> bytes:
    return _pack_out(_OUT + len(payload), 0, unique) + bytes(payload)


def reply_header(unique: int, payload_len: int) -> bytes:
    """Just the header, for replies written with writev(header, payload) to avoid copying payload."""
    return _pack_out(_OUT + payload_len, 0, unique)


def _split(seconds: float) -> tuple[int, int]:
    if seconds <= 0:
        return 0, 0
    whole = int(seconds)
    return whole, int((seconds - whole) * 1e9)


_SPLIT: dict[float, tuple[int, int]] = {}


def _split_timeout(seconds: float) -> tuple[int, int]:
    # A filesystem answers with a handful of timeouts, each split once (every entry and attribute reply has two).
    split = _SPLIT.get(seconds)
    if split is None:
        split = _split(seconds)
        if len(_SPLIT) < 64:
            _SPLIT[seconds] = split
    return split


def attr_fields(
    ino: int, size: int, blocks: int, atime_ns: int, mtime_ns: int, ctime_ns: int,
    mode: int, nlink: int, uid: int, gid: int, rdev: int, blksize: int,
) -> tuple:
    """fuse_attr field tuple in wire order, from nanosecond timestamps."""
    asec, ansec = divmod(atime_ns, 1_000_000_000)
    msec, mnsec = divmod(mtime_ns, 1_000_000_000)
    csec, cnsec = divmod(ctime_ns, 1_000_000_000)
    return (
        ino, size, blocks, asec & _U64, msec & _U64, csec & _U64, ansec, mnsec, cnsec,
        mode, nlink, uid, gid, rdev & 0xFFFFFFFF, blksize, 0,
    )


_U64 = 0xFFFFFFFFFFFFFFFF
NO_ATTR = (0,) * 16


_pack_entry = abi.ENTRY_OUT.pack
_pack_attr_out = abi.ATTR_OUT.pack


def entry_out(nodeid: int, generation: int, entry_timeout: float, attr_timeout: float, attr: tuple) -> bytes:
    """fuse_entry_out (128 bytes) from an attr_fields() tuple. nodeid 0 is a negative entry, cached for the timeout."""
    es, ens = _split_timeout(entry_timeout)
    as_, ans = _split_timeout(attr_timeout)
    return _pack_entry(nodeid, generation, es, as_, ens, ans, *attr)


def entry_out_of(
    nodeid: int, generation: int, entry_timeout: float, attr_timeout: float, ino: int, size: int, blocks: int,
    atime_ns: int, mtime_ns: int, ctime_ns: int, mode: int, nlink: int, uid: int, gid: int, rdev: int, blksize: int,
) -> bytes:
    """entry_out(nodeid, generation, entry_timeout, attr_timeout, attr_fields(...)) in one pack: the lookup and
    listing path, where it runs once per name."""
    es, ens = _split_timeout(entry_timeout)
    as_, ans = _split_timeout(attr_timeout)
    asec, ansec = divmod(atime_ns, 1_000_000_000)
    msec, mnsec = divmod(mtime_ns, 1_000_000_000)
    csec, cnsec = divmod(ctime_ns, 1_000_000_000)
    return _pack_entry(
        nodeid, generation, es, as_, ens, ans, ino, size, blocks, asec & _U64, msec & _U64, csec & _U64, ansec, mnsec,
        cnsec, mode, nlink, uid, gid, rdev & 0xFFFFFFFF, blksize, 0,
    )


def attr_out(attr_timeout: float, attr: tuple) -> bytes:
    as_, ans = _split_timeout(attr_timeout)
    return _pack_attr_out(as_, ans, 0, *attr)


def open_out(fh: int, open_flags: int, backing_id: int = 0) -> bytes:
    return abi.OPEN_OUT.pack(fh, open_flags, backing_id)


def write_out(size: int) -> bytes:
    return abi.WRITE_OUT.pack(size)


def statfs_out(
    blocks: int, bfree: int, bavail: int, files: int, ffree: int, bsize: int, namelen: int, frsize: int
) -> bytes:
    return abi.STATFS_OUT.pack(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize)


def xattr_size_out(size: int) -> bytes:
    return abi.GETXATTR_OUT.pack(size)


def ioctl_out(result: int, data: bytes) -> list:
    """The answer to a restricted ioctl: its return value and the bytes copied back to the caller."""
    return [abi.IOCTL_OUT.pack(result, 0, 0, 0), data]


def lseek_out(offset: int) -> bytes:
    return abi.LSEEK_OUT.pack(offset)


def copy_file_range_out(opcode: int, copied: int) -> bytes:
    if opcode == Opcode.COPY_FILE_RANGE_64:
        return abi.COPY_FILE_RANGE_OUT.pack(copied)
    return abi.WRITE_OUT.pack(min(copied, 0xFFFFFFFF))


def statx_out(attr_timeout: float, statx: bytes) -> bytes:
    """fuse_statx_out from a 256-byte fuse_statx (layout identical to the kernel's struct statx)."""
    if len(statx) != abi.STATX_SIZE:
        raise ValueError("fuse_statx must be 256 bytes")
    as_, ans = _split_timeout(attr_timeout)
    return abi.STATX_OUT_HEAD.pack(as_, ans, 0) + statx


_DIRENT = abi.DIRENT.pack
_PADS = tuple(b"\0" * (-n & 7) for n in range(8))  # the header is 24 bytes: the name alone decides the padding


def pack_dirent(out: bytearray, ino: int, next_offset: int, dtype: int, name: bytes) -> None:
    """Append one fuse_dirent record (padded to 8 bytes) to ``out``."""
    n = len(name)
    out += _DIRENT(ino, next_offset, n, dtype)
    out += name
    out += _PADS[n & 7]


def pack_direntplus(out: bytearray, entry: bytes, ino: int, next_offset: int, dtype: int, name: bytes) -> None:
    out += entry
    pack_dirent(out, ino, next_offset, dtype, name)



# ---- notifications (unique = 0, error = code)
def _notify(code: int, payload: bytes) -> bytes:
    return _pack_out(_OUT + len(payload), code, 0) + payload


def notify_inval_inode(nodeid: int, offset: int = -1, length: int = 0) -> bytes:
    return _notify(abi.NotifyCode.INVAL_INODE, abi.NOTIFY_INVAL_INODE.pack(nodeid, offset, length))


def notify_inval_entry(parent: int, name: bytes, expire_only: bool = False) -> bytes:
    flags = abi.EXPIRE_ONLY if expire_only else 0
    return _notify(abi.NotifyCode.INVAL_ENTRY, abi.NOTIFY_INVAL_ENTRY.pack(parent, len(name), flags) + name + b"\0")


def notify_delete(parent: int, child: int, name: bytes) -> bytes:
    return _notify(abi.NotifyCode.DELETE, abi.NOTIFY_DELETE.pack(parent, child, len(name)) + name + b"\0")


def notify_store(nodeid: int, offset: int, data: bytes) -> bytes:
    return _notify(abi.NotifyCode.STORE, abi.NOTIFY_STORE.pack(nodeid, offset, len(data)) + data)


