"""shuntfs: a pure-Python FUSE library and mirror filesystem with kernel passthrough."""

__version__ = "0.1.0"

from .command import main
from .interrupts import interrupted
from .mirror import Mirror
from .mount import MountError, MountOptions
from .operations import (
    NOW,
    ROOT_INODE,
    DirEntry,
    EntryAttributes,
    FileHandleT,
    FileInfo,
    FUSEError,
    InodeT,
    Operations,
    RequestContext,
    SetattrFields,
    StatvfsData,
    StatxAttributes,
    WouldBlock,
    dtype_of,
    request_context,
)
from .paths import UTIME_NOW, UTIME_OMIT, PathOperations
from .session import Session

__all__ = [
    "__version__",
    "NOW",
    "ROOT_INODE",
    "DirEntry",
    "EntryAttributes",
    "FileHandleT",
    "FileInfo",
    "FUSEError",
    "InodeT",
    "Mirror",
    "MountError",
    "MountOptions",
    "Operations",
    "PathOperations",
    "UTIME_NOW",
    "UTIME_OMIT",
    "WouldBlock",
    "RequestContext",
    "Session",
    "SetattrFields",
    "StatvfsData",
    "StatxAttributes",
    "dtype_of",
    "interrupted",
    "main",
    "request_context",
]
