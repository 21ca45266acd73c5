"""Kernel requests: the header and each opcode's argument, decoded from bytes (names stay ``bytes``)."""

from __future__ import annotations

import functools
import struct
from typing import Any, Callable, NamedTuple

from .. import abi
from ..abi import InitFlag, SetattrValid

#: SETATTR's time fields say "now" with this value (the kernel's FATTR_ATIME_NOW/MTIME_NOW): no time is this early
NOW = -(1 << 63)


class ProtocolError(Exception):
    """A request the decoder cannot make sense of (truncated, oversized, malformed)."""


class Request:
    """One decoded kernel request: header fields and the opcode's typed argument."""

    __slots__ = ("opcode", "unique", "nodeid", "uid", "gid", "pid", "arg", "out", "blocking")

    def __init__(self, opcode: int, unique: int, nodeid: int, uid: int, gid: int, pid: int, arg: Any) -> None:
        self.opcode = opcode
        self.unique = unique
        self.nodeid = nodeid
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.arg = arg
        #: where the transport lets a handler put a reply payload in place (a writable view of at least max_write
        #: bytes), or None; a handler that fills it returns the byte count instead of a payload
        self.out: memoryview | None = None
        #: set by the transport when the request runs again on a thread that may wait (see operations.WouldBlock)
        self.blocking = False

    def __repr__(self) -> str:
        name = abi.OPCODE_NAMES.get(self.opcode, str(self.opcode))
        return f"<{name} unique={self.unique} nodeid={self.nodeid} uid={self.uid} pid={self.pid} {self.arg!r}>"



class Empty(NamedTuple):
    pass


class Name(NamedTuple):
    name: bytes


class Forget(NamedTuple):
    nlookup: int


class BatchForget(NamedTuple):
    items: list  # [(nodeid, nlookup), ...]


class Getattr(NamedTuple):
    flags: int
    fh: int


class Setattr(NamedTuple):
    """SETATTR with its FATTR bits decoded: each field is None unless the kernel asks to change it. Times are
    nanoseconds since the epoch, or NOW for "the current time"."""

    mode: int | None
    uid: int | None
    gid: int | None
    size: int | None
    atime_ns: int | None
    mtime_ns: int | None
    ctime_ns: int | None
    fh: int | None
    #: FATTR_KILL_SUIDGID: the change (a truncate) is by a caller without CAP_FSETID
    kill_suidgid: bool
    #: none of the attribute bits: the kernel's own way of asking to drop set-id bits (or chown(f, -1, -1))
    changes_nothing: bool


class Symlink(NamedTuple):
    name: bytes
    target: bytes


class Mknod(NamedTuple):
    mode: int
    rdev: int
    umask: int
    name: bytes


class Mkdir(NamedTuple):
    mode: int
    umask: int
    name: bytes


class Rename(NamedTuple):
    newdir: int
    flags: int
    old: bytes
    new: bytes


class Link(NamedTuple):
    oldnodeid: int
    newname: bytes


class Open(NamedTuple):
    flags: int
    open_flags: int


class Read(NamedTuple):
    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


class Write(NamedTuple):
    fh: int
    offset: int
    size: int
    write_flags: int
    lock_owner: int
    flags: int
    data: memoryview


class Ioctl(NamedTuple):
    fh: int
    flags: int
    cmd: int
    arg: int
    in_size: int
    out_size: int
    data: bytes


class Release(NamedTuple):
    fh: int
    flags: int
    release_flags: int
    lock_owner: int


class Flush(NamedTuple):
    fh: int
    lock_owner: int


class Fsync(NamedTuple):
    fh: int
    fsync_flags: int


class Setxattr(NamedTuple):
    name: bytes
    value: bytes
    flags: int


class Getxattr(NamedTuple):
    size: int
    name: bytes


class Listxattr(NamedTuple):
    size: int


class Init(NamedTuple):
    major: int
    minor: int
    max_readahead: int
    flags: int  # 64-bit: flags | flags2 << 32


class Access(NamedTuple):
    mask: int


class Create(NamedTuple):
    flags: int
    mode: int
    umask: int
    open_flags: int
    name: bytes


class Interrupt(NamedTuple):
    unique: int


class Fallocate(NamedTuple):
    fh: int
    offset: int
    length: int
    mode: int


class Lseek(NamedTuple):
    fh: int
    offset: int
    whence: int


class CopyFileRange(NamedTuple):
    fh_in: int
    off_in: int
    nodeid_out: int
    fh_out: int
    off_out: int
    length: int
    flags: int


class Statx(NamedTuple):
    getattr_flags: int
    fh: int
    sx_flags: int
    sx_mask: int


class Unsupported(NamedTuple):
    """An opcode we do not implement: the session answers ENOSYS (or nothing, for replies-less ones)."""

    body: bytes



# ---- decoders: a memoryview of the argument area in, an argument out
Decoder = Callable[[memoryview], Any]
_PATH_MAX = 4096


def _cstr(body: memoryview, start: int = 0) -> tuple[bytes, int]:
    """A NUL-terminated name at ``start``; returns it and the offset after its NUL."""
    # Names and symlink targets are at most PATH_MAX, so only that much is copied to search for the NUL.
    chunk = body[start : start + _PATH_MAX + 1].tobytes()
    end = chunk.find(b"\0")
    if end < 0:
        raise ProtocolError("name is not NUL-terminated")
    return chunk[:end], start + end + 1


def _need(body: memoryview, size: int) -> None:
    if len(body) < size:
        raise ProtocolError(f"argument is {len(body)} bytes, need {size}")


def _maker(kind: Any, layout: struct.Struct, extra: int = 0) -> Callable[[tuple], Any]:
    # tuple.__new__ builds the named tuple without _make's Python-level call and length check: the count is checked
    # once here instead, against what the struct unpacks
    if len(kind._fields) != len(layout.unpack(bytes(layout.size))) + extra:
        raise ValueError(f"{kind.__name__} does not have the fields of its struct")
    return functools.partial(tuple.__new__, kind)


def fixed(kind: Any, layout: struct.Struct) -> Decoder:
    """The decoder of an argument that is one struct, its fields in ``kind``'s order."""
    size, unpack, make = layout.size, layout.unpack_from, _maker(kind, layout)

    def decode(body: memoryview) -> Any:
        if len(body) < size:
            raise ProtocolError(f"argument is {len(body)} bytes, need {size}")
        return make(unpack(body))

    return decode


def fixed_then_name(kind: Any, layout: struct.Struct) -> Decoder:
    """The decoder of a struct followed by one NUL-terminated name (``kind``'s last field)."""
    size, unpack, make = layout.size, layout.unpack_from, _maker(kind, layout, 1)

    def decode(body: memoryview) -> Any:
        if len(body) < size:
            raise ProtocolError(f"argument is {len(body)} bytes, need {size}")
        return make((*unpack(body), _cstr(body, size)[0]))

    return decode


def name(body: memoryview) -> Name:
    return Name(_cstr(body)[0])


_EMPTY = Empty()


def empty(body: memoryview) -> Empty:
    return _EMPTY


def batch_forget(body: memoryview) -> BatchForget:
    _need(body, abi.BATCH_FORGET_IN.size)
    (count,) = abi.BATCH_FORGET_IN.unpack_from(body)
    start = abi.BATCH_FORGET_IN.size
    _need(body, start + count * abi.FORGET_ONE.size)
    return BatchForget(list(abi.FORGET_ONE.iter_unpack(body[start : start + count * abi.FORGET_ONE.size])))


def getattr_(body: memoryview) -> Getattr:
    if len(body) < abi.GETATTR_IN.size:  # minor < 9 sent no argument
        return Getattr(0, 0)
    return Getattr(*abi.GETATTR_IN.unpack_from(body))


#: SETATTR bits that change something; a SETATTR with none of them is the kernel's request to drop set-id bits
_ATTRIBUTE_BITS = (
    SetattrValid.MODE | SetattrValid.UID | SetattrValid.GID | SetattrValid.SIZE | SetattrValid.ATIME
    | SetattrValid.MTIME | SetattrValid.ATIME_NOW | SetattrValid.MTIME_NOW | SetattrValid.CTIME
)


def _time(valid: int, now_bit: int, set_bit: int, sec: int, nsec: int) -> int | None:
    if valid & now_bit:
        return NOW
    if valid & set_bit:
        return (sec - (1 << 64) if sec >= 1 << 63 else sec) * 1_000_000_000 + nsec  # the kernel's time64_t
    return None


def setattr_(body: memoryview) -> Setattr:
    _need(body, abi.SETATTR_IN.size)
    v, fh, size, _lock, atime, mtime, ctime, ansec, mnsec, cnsec, mode, uid, gid = abi.SETATTR_IN.unpack_from(body)
    return Setattr(
        mode if v & SetattrValid.MODE else None,
        uid if v & SetattrValid.UID else None,
        gid if v & SetattrValid.GID else None,
        size if v & SetattrValid.SIZE else None,
        _time(v, SetattrValid.ATIME_NOW, SetattrValid.ATIME, atime, ansec),
        _time(v, SetattrValid.MTIME_NOW, SetattrValid.MTIME, mtime, mnsec),
        _time(v, 0, SetattrValid.CTIME, ctime, cnsec),
        fh if v & SetattrValid.FH else None,
        bool(v & SetattrValid.KILL_SUIDGID),
        not v & _ATTRIBUTE_BITS,
    )


def symlink(body: memoryview) -> Symlink:
    link, pos = _cstr(body)
    return Symlink(link, _cstr(body, pos)[0])


def rename(body: memoryview) -> Rename:
    _need(body, abi.RENAME_IN.size)
    (newdir,) = abi.RENAME_IN.unpack_from(body)
    old, pos = _cstr(body, abi.RENAME_IN.size)
    return Rename(newdir, 0, old, _cstr(body, pos)[0])


def rename2(body: memoryview) -> Rename:
    _need(body, abi.RENAME2_IN.size)
    newdir, flags = abi.RENAME2_IN.unpack_from(body)
    old, pos = _cstr(body, abi.RENAME2_IN.size)
    return Rename(newdir, flags, old, _cstr(body, pos)[0])


def write(body: memoryview) -> Write:
    _need(body, abi.WRITE_IN.size)
    fh, offset, size, write_flags, lock_owner, flags = abi.WRITE_IN.unpack_from(body)
    data = body[abi.WRITE_IN.size : abi.WRITE_IN.size + size]
    if len(data) != size:
        raise ProtocolError(f"WRITE carries {len(data)} bytes, header says {size}")
    return Write(fh, offset, size, write_flags, lock_owner, flags, data)


def ioctl(body: memoryview) -> Ioctl:
    _need(body, abi.IOCTL_IN.size)
    fh, flags, cmd, arg, in_size, out_size = abi.IOCTL_IN.unpack_from(body)
    data = body[abi.IOCTL_IN.size : abi.IOCTL_IN.size + in_size].tobytes()
    if len(data) != in_size:
        raise ProtocolError(f"IOCTL carries {len(data)} bytes, header says {in_size}")
    return Ioctl(fh, flags, cmd, arg, in_size, out_size, data)


def setxattr(body: memoryview) -> Setxattr:
    _need(body, abi.SETXATTR_IN.size)
    size, flags = abi.SETXATTR_IN.unpack_from(body)
    key, pos = _cstr(body, abi.SETXATTR_IN.size)
    value = body[pos : pos + size].tobytes()
    if len(value) != size:
        raise ProtocolError("SETXATTR value is truncated")
    return Setxattr(key, value, flags)


def init(body: memoryview) -> Init:
    _need(body, 16)
    if len(body) >= abi.INIT_IN.size:
        major, minor, readahead, flags, flags2 = abi.INIT_IN.unpack_from(body)
    else:
        major, minor, readahead, flags = abi.INIT_IN_SHORT.unpack_from(body)
        flags2 = 0
    if flags & InitFlag.INIT_EXT:
        flags |= flags2 << 32
    return Init(major, minor, readahead, flags)


def unsupported(body: memoryview) -> Unsupported:
    return Unsupported(body[:64].tobytes())
