"""The kernel's numbers: opcodes, flag bits, struct layouts and ioctls (FUSE protocol 7.45).

Every value here is defined once; the rest of the package imports it from this module.
"""

from __future__ import annotations

import enum
import mmap
import struct

KERNEL_MAJOR = 7
#: The protocol minor this implementation speaks; the reply minor is min(this, kernel's).
KERNEL_MINOR = 45
#: The oldest minor whose layouts we still decode (compat layouts older than this are not implemented).
OLDEST_MINOR = 31

ROOT_ID = 1
#: The page size: the kernel counts max_pages in it, and buffers it maps are aligned to it.
PAGE_SIZE = mmap.PAGESIZE
INT_REQ_BIT = 1
UNIQUE_RESEND = 1 << 63
MIN_READ_BUFFER = 8192
#: Header room the kernel wants in a read buffer beyond max_write: in_header + write_in.
READ_BUFFER_OVERHEAD = 80


class Opcode(enum.IntEnum):
    LOOKUP = 1
    FORGET = 2
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    STATX = 52
    COPY_FILE_RANGE_64 = 53


#: Highest opcode number we keep a counter slot for.
MAX_OPCODE = 64
OPCODE_NAMES = {int(op): op.name for op in Opcode}


class InitFlag(enum.IntFlag):
    """INIT flags as one 64-bit set; bits 32..63 travel in flags2."""

    ASYNC_READ = 1 << 0
    POSIX_LOCKS = 1 << 1
    FILE_OPS = 1 << 2
    ATOMIC_O_TRUNC = 1 << 3
    EXPORT_SUPPORT = 1 << 4
    BIG_WRITES = 1 << 5
    DONT_MASK = 1 << 6
    SPLICE_WRITE = 1 << 7
    SPLICE_MOVE = 1 << 8
    SPLICE_READ = 1 << 9
    FLOCK_LOCKS = 1 << 10
    HAS_IOCTL_DIR = 1 << 11
    AUTO_INVAL_DATA = 1 << 12
    DO_READDIRPLUS = 1 << 13
    READDIRPLUS_AUTO = 1 << 14
    ASYNC_DIO = 1 << 15
    WRITEBACK_CACHE = 1 << 16
    NO_OPEN_SUPPORT = 1 << 17
    PARALLEL_DIROPS = 1 << 18
    HANDLE_KILLPRIV = 1 << 19
    POSIX_ACL = 1 << 20
    ABORT_ERROR = 1 << 21
    MAX_PAGES = 1 << 22
    CACHE_SYMLINKS = 1 << 23
    NO_OPENDIR_SUPPORT = 1 << 24
    EXPLICIT_INVAL_DATA = 1 << 25
    MAP_ALIGNMENT = 1 << 26
    SUBMOUNTS = 1 << 27
    HANDLE_KILLPRIV_V2 = 1 << 28
    SETXATTR_EXT = 1 << 29
    INIT_EXT = 1 << 30
    INIT_RESERVED = 1 << 31
    SECURITY_CTX = 1 << 32
    HAS_INODE_DAX = 1 << 33
    CREATE_SUPP_GROUP = 1 << 34
    HAS_EXPIRE_ONLY = 1 << 35
    DIRECT_IO_ALLOW_MMAP = 1 << 36
    PASSTHROUGH = 1 << 37
    NO_EXPORT_SUPPORT = 1 << 38
    HAS_RESEND = 1 << 39
    ALLOW_IDMAP = 1 << 40
    OVER_IO_URING = 1 << 41
    REQUEST_TIMEOUT = 1 << 42


def init_flag_names(flags: int) -> list[str]:
    return [f.name for f in InitFlag if f.name and flags & f.value]


# OpenFlag and SetattrValid are tested and combined on every OPEN and SETATTR: plain int constants, since an IntFlag
# operation builds a new member each time (docs/internals.md).
class OpenFlag:
    """FOPEN_* bits of open_out.open_flags."""

    DIRECT_IO = 1 << 0
    KEEP_CACHE = 1 << 1
    NONSEEKABLE = 1 << 2
    CACHE_DIR = 1 << 3
    STREAM = 1 << 4
    NOFLUSH = 1 << 5
    PARALLEL_DIRECT_WRITES = 1 << 6
    PASSTHROUGH = 1 << 7


#: The only FOPEN bits the kernel accepts together with PASSTHROUGH.
PASSTHROUGH_COMPATIBLE = OpenFlag.DIRECT_IO | OpenFlag.PARALLEL_DIRECT_WRITES | OpenFlag.NOFLUSH


class SetattrValid:
    """FATTR_* bits of setattr_in.valid."""

    MODE = 1 << 0
    UID = 1 << 1
    GID = 1 << 2
    SIZE = 1 << 3
    ATIME = 1 << 4
    MTIME = 1 << 5
    FH = 1 << 6
    ATIME_NOW = 1 << 7
    MTIME_NOW = 1 << 8
    LOCKOWNER = 1 << 9
    CTIME = 1 << 10
    KILL_SUIDGID = 1 << 11


GETATTR_FH = 1
FSYNC_FDATASYNC = 1
RELEASE_FLUSH = 1
WRITE_CACHE = 1
WRITE_KILL_SUIDGID = 4
OPEN_KILL_SUIDGID = 1
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4


class NotifyCode(enum.IntEnum):
    POLL = 1
    INVAL_INODE = 2
    INVAL_ENTRY = 3
    STORE = 4
    RETRIEVE = 5
    DELETE = 6
    RESEND = 7
    INC_EPOCH = 8
    PRUNE = 9


EXPIRE_ONLY = 1

# ---- FUSE over io_uring (6.14+): commands, the per-entry header and the command area of the SQE
URING_CMD_REGISTER = 1
URING_CMD_COMMIT_AND_FETCH = 2
#: fuse_uring_req_header: in_out (in or out header) @0, op_in (the first request argument) @128, ring_ent_in_out @256.
URING_HEADER_SIZE = 288
URING_OP_IN = 128
URING_OP_IN_MAX = 128
#: ring_ent_in_out.payload_sz: how many bytes of the payload buffer the message uses, both ways.
URING_PAYLOAD_SZ = 256 + 16
URING_CMD_REQ = struct.Struct("<QQH6x")  # flags commit_id qid
U32 = struct.Struct("<I")  # in_header.len, ring_ent_in_out.payload_sz
URING_MIN_PAYLOAD = 8192

# ---- struct layouts (little-endian host order on every platform Linux FUSE runs on that we support)
IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid total_extlen pad
IN_HEADER_START = struct.Struct("<IIQ")  # len opcode unique
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
# ino size blocks atime mtime ctime atimensec mtimensec ctimensec mode nlink uid gid rdev blksize flags
_ATTR = "QQQQQQIIIIIIIIII"
ATTR = struct.Struct("<" + _ATTR)
ENTRY_OUT = struct.Struct("<QQQQII" + _ATTR)  # nodeid generation entry_valid attr_valid entry_nsec attr_nsec attr
ATTR_OUT = struct.Struct("<QII" + _ATTR)  # attr_valid attr_valid_nsec dummy attr
INIT_IN = struct.Struct("<IIIII")  # major minor max_readahead flags flags2 (+ unused[11])
INIT_IN_SHORT = struct.Struct("<IIII")  # before 7.36: major minor max_readahead flags
INIT_OUT_MAJOR_ONLY = struct.Struct("<II")  # major minor: the reply to a kernel of another major
INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")
OPEN_IN = struct.Struct("<II")
OPEN_OUT = struct.Struct("<QIi")  # fh open_flags backing_id
CREATE_IN = struct.Struct("<IIII")  # flags mode umask open_flags
READ_IN = struct.Struct("<QQIIQI4x")  # fh offset size read_flags lock_owner flags
WRITE_IN = READ_IN
WRITE_OUT = struct.Struct("<I4x")
RELEASE_IN = struct.Struct("<QIIQ")  # fh flags release_flags lock_owner
FLUSH_IN = struct.Struct("<Q8xQ")  # fh unused pad lock_owner
FSYNC_IN = struct.Struct("<QI4x")
GETATTR_IN = struct.Struct("<I4xQ")  # getattr_flags dummy fh
SETATTR_IN = struct.Struct("<I4xQQQQQQIIIIxxxxIIxxxx")
MKNOD_IN = struct.Struct("<III4x")  # mode rdev umask
MKDIR_IN = struct.Struct("<II")  # mode umask
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QI4x")
LINK_IN = struct.Struct("<Q")
STATFS_OUT = struct.Struct("<QQQQQIII4x24x")  # blocks bfree bavail files ffree bsize namelen frsize
SETXATTR_IN = struct.Struct("<II")  # size flags (8-byte form: SETXATTR_EXT is not negotiated)
GETXATTR_IN = struct.Struct("<I4x")
GETXATTR_OUT = struct.Struct("<I4x")
ACCESS_IN = struct.Struct("<I4x")
INTERRUPT_IN = struct.Struct("<Q")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<I4x")
FORGET_ONE = struct.Struct("<QQ")
FALLOCATE_IN = struct.Struct("<QQQI4x")  # fh offset length mode
IOCTL_UNRESTRICTED = 1 << 1  # FUSE_IOCTL_UNRESTRICTED: CUSE only
IOCTL_IN = struct.Struct("<QIIQII")  # fh flags cmd arg in_size out_size, then in_size bytes of data
IOCTL_OUT = struct.Struct("<iIII")  # result flags in_iovs out_iovs, then the out data
LSEEK_IN = struct.Struct("<QqI4x")  # fh offset (the kernel's loff_t: signed) whence
LSEEK_OUT = struct.Struct("<Q")
COPY_FILE_RANGE_IN = struct.Struct("<QQQQQQQ")
COPY_FILE_RANGE_OUT = struct.Struct("<Q")
STATX_IN = struct.Struct("<I4xQII")  # getattr_flags fh sx_flags sx_mask
STATX_OUT_HEAD = struct.Struct("<QII16x")  # attr_valid attr_valid_nsec flags spare[2]
STATX_SIZE = 256
#: fuse_statx, laid out as the head of the kernel's struct statx: mask blksize attributes nlink uid gid mode ino size
#: blocks attributes_mask, then atime btime ctime mtime (sec nsec each), rdev_major rdev_minor (then spare, zero)
STATX = struct.Struct("<IIQIIIH2xQQQQ" + "qI4x" * 4 + "II")
DIRENT = struct.Struct("<QQII")  # ino off namelen type
DIRENT_SIZE = DIRENT.size
DIRENTPLUS_SIZE = ENTRY_OUT.size + DIRENT.size
NOTIFY_INVAL_INODE = struct.Struct("<Qqq")
NOTIFY_INVAL_ENTRY = struct.Struct("<QII")
NOTIFY_DELETE = struct.Struct("<QQI4x")
NOTIFY_STORE = struct.Struct("<QQI4x")
BACKING_MAP = struct.Struct("<iIQ")  # fd flags padding
BACKING_ID = struct.Struct("<I")
CLONE_FD = struct.Struct("<I")  # FUSE_DEV_IOC_CLONE's argument: the session's /dev/fuse fd

# statx mask bits (linux/stat.h)
STATX_TYPE = 0x1
STATX_MODE = 0x2
STATX_NLINK = 0x4
STATX_UID = 0x8
STATX_GID = 0x10
STATX_ATIME = 0x20
STATX_MTIME = 0x40
STATX_CTIME = 0x80
STATX_INO = 0x100
STATX_SIZE_BIT = 0x200
STATX_BLOCKS = 0x400
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800

# ---- /dev/fuse ioctls
FUSE_DEV_IOC_CLONE = 0x8004E500
FUSE_DEV_IOC_BACKING_OPEN = 0x4010E501
FUSE_DEV_IOC_BACKING_CLOSE = 0x4004E502
FUSE_DEV_IOC_SYNC_INIT = 0xE503

#: Filesystems that are themselves stacked: a backing file on them needs max_stack_depth 2.
STACKED_FS_MAGIC = {
    0x794C7630: "overlayfs",
    0x65735546: "fuse",
    0xF15F: "ecryptfs",
}
FUSE_SUPER_MAGIC = 0x65735546
