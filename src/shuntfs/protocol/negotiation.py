"""INIT: what a session asks the kernel for, and what the two settle on."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import abi
from ..abi import PAGE_SIZE, InitFlag
from .requests import Init

#: What every session asks for at INIT; the rest depends on the session's options and the filesystem.
BASE_FLAGS = (
    InitFlag.ASYNC_READ
    | InitFlag.ATOMIC_O_TRUNC
    | InitFlag.BIG_WRITES
    | InitFlag.DO_READDIRPLUS
    | InitFlag.READDIRPLUS_AUTO
    | InitFlag.ASYNC_DIO
    | InitFlag.PARALLEL_DIROPS
    | InitFlag.MAX_PAGES
    | InitFlag.HAS_EXPIRE_ONLY
    | InitFlag.INIT_EXT
)


def wanted_flags(
    *,
    cache_symlinks: bool,
    auto_inval_data: bool,
    passthrough: bool,
    io_uring: bool,
    clears_setid_bits: bool,
    posix_acl: bool,
    applies_umask: bool,
    export_support: bool,
) -> int:
    """The INIT flags to ask for: BASE_FLAGS and one flag for each of the session's choices and each promise the
    filesystem makes (see the attributes of the same names on Operations)."""
    want = BASE_FLAGS
    for on, flag in (
        (cache_symlinks, InitFlag.CACHE_SYMLINKS),
        (auto_inval_data, InitFlag.AUTO_INVAL_DATA),
        (passthrough, InitFlag.PASSTHROUGH),
        (io_uring, InitFlag.OVER_IO_URING),
        (clears_setid_bits, InitFlag.HANDLE_KILLPRIV_V2),
        (posix_acl, InitFlag.POSIX_ACL),
        (applies_umask, InitFlag.DONT_MASK),
        (export_support, InitFlag.EXPORT_SUPPORT),
    ):
        if on:
            want |= flag
    return want


@dataclass
class InitConfig:
    """What the server asks for at INIT."""

    want: int
    max_write: int = 1 << 20
    max_readahead: int = 1 << 20
    max_background: int = 64
    congestion_threshold: int = 48
    time_gran: int = 1
    max_stack_depth: int = 1


@dataclass
class Negotiated:
    """What INIT settled: the minor both speak and the capabilities both have."""

    kernel_major: int
    kernel_minor: int
    minor: int
    kernel_flags: int
    flags: int
    max_write: int
    max_readahead: int
    max_pages: int
    max_stack_depth: int
    errors: list[str] = field(default_factory=list)

    @property
    def passthrough(self) -> bool:
        return bool(self.flags & InitFlag.PASSTHROUGH)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def negotiate(init: Init, config: InitConfig) -> tuple[Negotiated, bytes]:
    """Settle INIT: returns the outcome and the init_out payload (without header).

    A kernel with another major gets a reply with our major only; it will then refuse the connection, which is the
    documented way to say we do not speak its protocol.
    """
    if init.major != abi.KERNEL_MAJOR:
        neg = Negotiated(init.major, init.minor, 0, init.flags, 0, 0, 0, 0, 0, [f"kernel protocol major {init.major}"])
        return neg, abi.INIT_OUT_MAJOR_ONLY.pack(abi.KERNEL_MAJOR, abi.KERNEL_MINOR)
    minor = min(init.minor, abi.KERNEL_MINOR)
    flags = config.want & init.flags
    errors = []
    if minor < abi.OLDEST_MINOR:
        errors.append(f"kernel protocol 7.{init.minor} is older than 7.{abi.OLDEST_MINOR}")
    # The kernel refuses passthrough with the writeback cache, and with a depth outside 1..2.
    if flags & InitFlag.PASSTHROUGH and (flags & InitFlag.WRITEBACK_CACHE or not 1 <= config.max_stack_depth <= 2):
        flags &= ~InitFlag.PASSTHROUGH
    if flags >> 32:
        flags |= InitFlag.INIT_EXT
    if not flags & InitFlag.INIT_EXT:
        flags &= 0xFFFFFFFF
    max_pages = max(1, config.max_write // PAGE_SIZE) if flags & InitFlag.MAX_PAGES else 32
    max_write = min(config.max_write, max_pages * PAGE_SIZE)
    readahead = min(config.max_readahead, init.max_readahead)
    depth = config.max_stack_depth if flags & InitFlag.PASSTHROUGH else 0
    payload = abi.INIT_OUT.pack(
        abi.KERNEL_MAJOR,
        minor,
        readahead,
        flags & 0xFFFFFFFF,
        config.max_background,
        config.congestion_threshold,
        max_write,
        config.time_gran,
        max_pages if flags & InitFlag.MAX_PAGES else 0,
        0,
        flags >> 32,
        depth,
        0,
    )
    neg = Negotiated(init.major, init.minor, minor, init.flags, flags, max_write, readahead, max_pages, depth, errors)
    return neg, payload
