"""The opcode table: for each opcode the kernel may send, one record of what it takes.

Each record names its argument decoder, whether the kernel waits for a reply, whether its handler may block for long
(a disk flush, a large copy: io_uring queues serve those on a pool), and the dispatcher method that serves it. This
is the one place that knows these things per opcode; ``decode`` turns bytes into a :class:`Request` with it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .. import abi
from ..abi import Opcode
from . import requests as r
from .requests import ProtocolError, Request


class OpcodeInfo(NamedTuple):
    opcode: int
    name: str
    decode: r.Decoder
    #: the kernel waits for a reply
    replies: bool
    #: the handler may block for long: a transport whose threads must stay free hands it to a pool
    slow: bool
    #: the Dispatcher method that serves it; "" for opcodes we do not implement (ENOSYS)
    handler: str


def _info(opcode: Opcode, decode: r.Decoder, handler: str = "", replies: bool = True, slow: bool = False) -> OpcodeInfo:
    return OpcodeInfo(int(opcode), opcode.name, decode, replies, slow, handler)


_read = r.fixed(r.Read, abi.READ_IN)
_open = r.fixed(r.Open, abi.OPEN_IN)
_release = r.fixed(r.Release, abi.RELEASE_IN)
_fsync = r.fixed(r.Fsync, abi.FSYNC_IN)
_create = r.fixed_then_name(r.Create, abi.CREATE_IN)
_copy = r.fixed(r.CopyFileRange, abi.COPY_FILE_RANGE_IN)

_KNOWN = [
    _info(Opcode.LOOKUP, r.name, "lookup"),
    _info(Opcode.FORGET, r.fixed(r.Forget, abi.FORGET_IN), "forget", replies=False),
    _info(Opcode.GETATTR, r.getattr_, "getattr"),
    _info(Opcode.SETATTR, r.setattr_, "setattr"),
    _info(Opcode.READLINK, r.empty, "readlink"),
    _info(Opcode.SYMLINK, r.symlink, "symlink"),
    _info(Opcode.MKNOD, r.fixed_then_name(r.Mknod, abi.MKNOD_IN), "mknod"),
    _info(Opcode.MKDIR, r.fixed_then_name(r.Mkdir, abi.MKDIR_IN), "mkdir"),
    _info(Opcode.UNLINK, r.name, "unlink"),
    _info(Opcode.RMDIR, r.name, "rmdir"),
    _info(Opcode.RENAME, r.rename, "rename"),
    _info(Opcode.LINK, r.fixed_then_name(r.Link, abi.LINK_IN), "link"),
    _info(Opcode.OPEN, _open, "open"),
    _info(Opcode.READ, _read, "read"),
    _info(Opcode.WRITE, r.write, "write"),
    _info(Opcode.STATFS, r.empty, "statfs"),
    _info(Opcode.RELEASE, _release, "release"),
    _info(Opcode.FSYNC, _fsync, "fsync", slow=True),
    _info(Opcode.SETXATTR, r.setxattr, "setxattr"),
    _info(Opcode.GETXATTR, r.fixed_then_name(r.Getxattr, abi.GETXATTR_IN), "getxattr"),
    _info(Opcode.LISTXATTR, r.fixed(r.Listxattr, abi.GETXATTR_IN), "listxattr"),
    _info(Opcode.REMOVEXATTR, r.name, "removexattr"),
    _info(Opcode.FLUSH, r.fixed(r.Flush, abi.FLUSH_IN), "flush", slow=True),
    _info(Opcode.INIT, r.init, "init"),
    _info(Opcode.OPENDIR, _open, "opendir"),
    _info(Opcode.READDIR, _read, "readdir"),
    _info(Opcode.RELEASEDIR, _release, "releasedir"),
    _info(Opcode.FSYNCDIR, _fsync, "fsyncdir", slow=True),
    _info(Opcode.ACCESS, r.fixed(r.Access, abi.ACCESS_IN), "access"),
    _info(Opcode.CREATE, _create, "create"),
    _info(Opcode.INTERRUPT, r.fixed(r.Interrupt, abi.INTERRUPT_IN), "interrupt", replies=False),
    _info(Opcode.DESTROY, r.empty, "destroy"),
    _info(Opcode.NOTIFY_REPLY, r.unsupported, replies=False),
    _info(Opcode.BATCH_FORGET, r.batch_forget, "batch_forget", replies=False),
    _info(Opcode.FALLOCATE, r.fixed(r.Fallocate, abi.FALLOCATE_IN), "fallocate", slow=True),
    _info(Opcode.READDIRPLUS, _read, "readdirplus"),
    _info(Opcode.RENAME2, r.rename2, "rename"),
    _info(Opcode.LSEEK, r.fixed(r.Lseek, abi.LSEEK_IN), "lseek"),
    _info(Opcode.COPY_FILE_RANGE, _copy, "copy_file_range", slow=True),
    _info(Opcode.TMPFILE, _create, "tmpfile"),
    _info(Opcode.STATX, r.fixed(r.Statx, abi.STATX_IN), "statx"),
    _info(Opcode.COPY_FILE_RANGE_64, _copy, "copy_file_range", slow=True),
    _info(Opcode.IOCTL, r.ioctl, "ioctl"),
]

#: The table, indexed by opcode number (0..MAX_OPCODE): opcodes not listed above decode as Unsupported and get
#: ENOSYS.
OPCODES: list[OpcodeInfo] = [
    OpcodeInfo(n, abi.OPCODE_NAMES.get(n, f"OPCODE_{n}"), r.unsupported, True, False, "")
    for n in range(abi.MAX_OPCODE + 1)
]
for _entry in _KNOWN:
    OPCODES[_entry.opcode] = _entry

#: Requests the kernel expects no reply to.
NO_REPLY = frozenset(info.opcode for info in OPCODES if not info.replies)

_unpack_header = abi.IN_HEADER.unpack_from
_HEADER_SIZE = abi.IN_HEADER.size
_MAX = abi.MAX_OPCODE
#: each opcode's argument decoder, by opcode number (the table's, without a record lookup per request)
_DECODERS = [info.decode for info in OPCODES]


def decode(buf: bytes | bytearray | memoryview) -> Request:
    """Decode one request (exactly what one read(2) of /dev/fuse returned).

    Raises ProtocolError for bytes that do not form a request. The returned request may reference ``buf``
    (WRITE data is a memoryview into it), so the buffer must outlive the request.
    """
    view = buf if type(buf) is memoryview else memoryview(buf)
    size = len(view)
    if size < _HEADER_SIZE:
        raise ProtocolError(f"request of {size} bytes is shorter than the header")
    length, opcode, unique, nodeid, uid, gid, pid, extlen, _pad = _unpack_header(view)
    if length != size:
        raise ProtocolError(f"header says {length} bytes, read returned {size}")
    end = length - extlen * 8
    if end < _HEADER_SIZE:
        raise ProtocolError("extension area overlaps the header")
    try:
        arg = _DECODERS[opcode if opcode <= _MAX else 0](view[_HEADER_SIZE:end])
    except (struct.error, ValueError) as e:
        raise ProtocolError(f"opcode {opcode}: {e}") from None
    return Request(opcode, unique, nodeid, uid, gid, pid, arg)


def peek_header(buf: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(opcode, unique) of a buffer that failed to decode, so it can still be answered; None if unreadable."""
    if len(buf) < _HEADER_SIZE:
        return None
    _len, opcode, unique = abi.IN_HEADER_START.unpack_from(buf)
    return opcode, unique
