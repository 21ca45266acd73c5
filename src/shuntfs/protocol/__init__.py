"""Sans-I/O FUSE protocol: bytes in, requests out; replies in, bytes out.

Nothing here touches a file descriptor, so the same code serves a /dev/fuse loop, an io_uring queue, a replayed
trace or a unit test. ``requests`` holds the argument types and their decoders, ``opcodes`` the one table of what
each opcode takes, ``replies`` the encoders, ``negotiation`` INIT, and ``ring`` the io_uring entry framing.
"""

from .negotiation import BASE_FLAGS, InitConfig, Negotiated, negotiate, wanted_flags
from .opcodes import NO_REPLY, OPCODES, OpcodeInfo, decode, peek_header
from .replies import (
    NO_ATTR,
    attr_fields,
    attr_out,
    copy_file_range_out,
    entry_out,
    entry_out_of,
    ioctl_out,
    lseek_out,
    notify_delete,
    notify_inval_entry,
    notify_inval_inode,
    notify_store,
    open_out,
    pack_dirent,
    pack_direntplus,
    reply_bytes,
    reply_empty,
    reply_error,
    reply_header,
    statfs_out,
    statx_out,
    write_out,
    xattr_size_out,
)
from .requests import (
    NOW,
    Access,
    BatchForget,
    CopyFileRange,
    Create,
    Empty,
    Fallocate,
    Flush,
    Forget,
    Fsync,
    Getattr,
    Getxattr,
    Init,
    Interrupt,
    Ioctl,
    Link,
    Listxattr,
    Lseek,
    Mkdir,
    Mknod,
    Name,
    Open,
    ProtocolError,
    Read,
    Release,
    Rename,
    Request,
    Setattr,
    Setxattr,
    Statx,
    Symlink,
    Unsupported,
    Write,
)
from .ring import RING_PAYLOAD, ring_reply, ring_request

__all__ = [
    "BASE_FLAGS", "InitConfig", "Negotiated", "negotiate", "wanted_flags", "NO_REPLY", "OPCODES", "OpcodeInfo",
    "decode", "peek_header", "NO_ATTR", "attr_fields", "attr_out", "copy_file_range_out", "entry_out", "entry_out_of",
    "lseek_out", "notify_delete", "notify_inval_entry", "notify_inval_inode", "notify_store", "open_out", "pack_dirent",
    "ioctl_out", "pack_direntplus",
    "reply_bytes", "reply_empty", "reply_error", "reply_header", "statfs_out", "statx_out",
    "write_out", "xattr_size_out", "NOW", "Access", "BatchForget", "CopyFileRange", "Create", "Empty", "Fallocate",
    "Flush", "Forget", "Fsync", "Getattr", "Getxattr", "Init", "Interrupt", "Link", "Listxattr", "Ioctl", "Lseek",
    "Mkdir",
    "Mknod", "Name", "Open", "ProtocolError", "Read", "Release", "Rename", "Request", "Setattr", "Setxattr",
    "Statx", "Symlink", "Unsupported", "Write", "RING_PAYLOAD", "ring_reply", "ring_request",
]
