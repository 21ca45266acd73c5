"""A minimal io_uring: one ring of 128-byte SQEs driven through the raw syscalls, enough for IORING_OP_URING_CMD
(and IORING_OP_READ, so that an eventfd can wake the thread that waits on the ring).

There is no liburing binding in the standard library, and FUSE over io_uring needs only a handful of things: set up a
ring with IORING_SETUP_SQE128, map it, put uring commands in it, submit and wait. The ring belongs to one thread,
which both submits and waits: completions of uring commands run as task work of the submitting task.

Ring indices are shared with the kernel. Plain loads and stores through ctypes are enough on x86-64 (stores are not
reordered with stores, loads not with loads); other architectures would need barriers, so ``Ring`` refuses them.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import struct
import time

from .libc import libc

_SYS_SETUP = 425
_SYS_ENTER = 426

SETUP_SQE128 = 1 << 10
ENTER_GETEVENTS = 1
FEAT_SINGLE_MMAP = 1

OP_READ = 22
OP_URING_CMD = 46
_OFF_SQ_RING = 0
_OFF_CQ_RING = 0x8000000
_OFF_SQES = 0x10000000

SQE_SIZE = 128
_ZEROS16 = bytes(16)
CQE = struct.Struct("<QiI")  # user_data res flags

# io_uring_params: 10 u32, then sq_off (7 u32 + resv u32 + u64) and cq_off (same shape).
_PARAMS = struct.Struct("<IIIIII I 3I IIIIIIIIQ IIIIIIIIQ")
# The head of a uring-command SQE: opcode flags ioprio fd cmd_op pad addr len uring_cmd_flags user_data, then zeros
# (buf_index, personality, file_index, addr3's first half) up to the 80-byte command area at 48.
_SQE_HEAD = struct.Struct("<BBHiIIQIIQ8x")

_libc = libc
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
# io_uring_enter(fd, to_submit, min_complete, flags, sig, sigsz) runs once per request: a typed prototype converts
# plain ints (half the cost of building c_long objects per call). syscall(2) is variadic, but on x86-64 integer
# arguments travel in the same registers either way.
_enter = ctypes.CFUNCTYPE(
    ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
    ctypes.c_long, use_errno=True,
)(("syscall", _libc))


def supported_arch() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


class Ring:
    """An io_uring with ``entries`` SQEs of 128 bytes (``flags`` must hold SETUP_SQE128) and the kernel's default
    of twice as many completion slots."""

    def __init__(self, entries: int, flags: int = 0) -> None:
        if not supported_arch():
            raise OSError(errno.EOPNOTSUPP, f"io_uring rings are not implemented for {platform.machine()}")
        params = bytearray(_PARAMS.size)
        struct.pack_into("<I", params, 8, flags)
        buf = (ctypes.c_char * len(params)).from_buffer(params)
        fd = _syscall(_SYS_SETUP, ctypes.c_long(entries), buf)
        del buf
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"io_uring_setup: {os.strerror(e)}")
        self.fd = fd
        self._maps: list[mmap.mmap] = []
        self._views: list[ctypes.c_uint32] = []
        try:
            self._map(params)
        except BaseException:
            self.close()
            raise

    def _map(self, params: bytearray) -> None:
        f = _PARAMS.unpack(bytes(params))
        sq_entries, cq_entries, _flags, _cpu, _idle, features = f[:6]
        sq_head, sq_tail, sq_mask, _sq_n, _sq_flags, _dropped, sq_array = f[10:17]
        cq_head, cq_tail, cq_mask, _cq_n, _overflow, cqes = f[19:25]
        sq_size = sq_array + sq_entries * 4
        cq_size = cqes + cq_entries * CQE.size
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        shared = mmap.MAP_SHARED | mmap.MAP_POPULATE
        if features & FEAT_SINGLE_MMAP:
            sq = cq = mmap.mmap(self.fd, max(sq_size, cq_size), shared, prot, offset=_OFF_SQ_RING)
            self._maps.append(sq)
        else:
            sq = mmap.mmap(self.fd, sq_size, shared, prot, offset=_OFF_SQ_RING)
            self._maps.append(sq)
            cq = mmap.mmap(self.fd, cq_size, shared, prot, offset=_OFF_CQ_RING)
            self._maps.append(cq)
        self.sqes = mmap.mmap(self.fd, sq_entries * SQE_SIZE, shared, prot, offset=_OFF_SQES)
        self._maps.append(self.sqes)
        self.sq_entries = sq_entries
        self._sq_mask = ctypes.c_uint32.from_buffer(sq, sq_mask).value
        self._cq_mask = ctypes.c_uint32.from_buffer(cq, cq_mask).value
        self._sq_tail = self._u32(sq, sq_tail)
        self._sq_head = self._u32(sq, sq_head)
        self._cq_head = self._u32(cq, cq_head)
        self._cq_tail = self._u32(cq, cq_tail)
        # SQE i always sits in array slot i: the indirection is not needed.
        for i in range(sq_entries):
            struct.pack_into("<I", sq, sq_array + 4 * i, i)
        self._cq = cq
        self._cqes = cqes
        self._tail = self._sq_tail.value
        self._pending = 0

    def _u32(self, buf: mmap.mmap, offset: int) -> ctypes.c_uint32:
        v = ctypes.c_uint32.from_buffer(buf, offset)
        self._views.append(v)
        return v

    def put_uring_cmd(self, fd: int, cmd_op: int, addr: int, length: int, user_data: int, cmd: bytes) -> None:
        """Queue one IORING_OP_URING_CMD; ``cmd`` fills the 80-byte command area. Submitted by the next enter()."""
        # _slot() and _queued() written out: this runs once per request
        if self._tail - self._sq_head.value >= self.sq_entries:
            self.enter(0)
        off = (self._tail & self._sq_mask) * SQE_SIZE
        sqes = self.sqes
        _SQE_HEAD.pack_into(sqes, off, OP_URING_CMD, 0, 0, fd, cmd_op, 0, addr, length, 0, user_data)
        sqes[off + 48 : off + 48 + len(cmd)] = cmd
        self._tail += 1
        self._pending += 1
        self._sq_tail.value = self._tail & 0xFFFFFFFF

    def put_read(self, fd: int, addr: int, length: int, user_data: int) -> None:
        """Queue one IORING_OP_READ of ``length`` bytes at ``addr`` (offset 0; for eventfds and the like)."""
        off = self._slot()
        sqes = self.sqes
        _SQE_HEAD.pack_into(sqes, off, OP_READ, 0, 0, fd, 0, 0, addr, length, 0, user_data)
        sqes[off + 48 : off + 64] = _ZEROS16
        self._queued()

    def _slot(self) -> int:
        if self._tail - self._sq_head.value >= self.sq_entries:
            self.enter(0)  # the kernel consumes SQEs at submission, so a full ring only means they are not sent yet
        return (self._tail & self._sq_mask) * SQE_SIZE

    def _queued(self) -> None:
        self._tail += 1
        self._pending += 1
        self._sq_tail.value = self._tail & 0xFFFFFFFF

    def enter(self, wait: int) -> int:
        """Submit what is queued and wait for at least ``wait`` completions. Returns the number submitted."""
        n = self._pending
        flags = ENTER_GETEVENTS if wait else 0
        while True:
            r = _enter(_SYS_ENTER, self.fd, n, wait, flags, None, 0)
            if r >= 0:
                self._pending -= r
                return r
            e = ctypes.get_errno()
            if e == errno.EINTR:
                continue
            if e == errno.EBUSY:  # completions are waiting to be reaped first
                return 0
            raise OSError(e, f"io_uring_enter: {os.strerror(e)}")

    def ready(self) -> bool:
        """Whether completions wait to be reaped."""
        return self._cq_head.value != self._cq_tail.value

    def wait(self, poll_ns: int = 0) -> bool:
        """Submit what is queued and wait for a completion: first for up to ``poll_ns`` by yielding the CPU (each
        sched_yield passes through the kernel, which posts the completions waiting for this thread), then asleep
        in io_uring_enter. True if one came while polling, False if the thread slept."""
        if poll_ns:
            if self._pending:
                self.enter(0)
            deadline = time.monotonic_ns() + poll_ns
            while not self.ready():
                if time.monotonic_ns() >= deadline:
                    self.enter(1)
                    return False
                os.sched_yield()
            return True
        self.enter(1)
        return False

    def completions(self) -> list[tuple[int, int]]:
        """Reap the completions that are ready: (user_data, res) each."""
        head = self._cq_head.value
        tail = self._cq_tail.value
        if head == tail:
            return []
        out = []
        cq, base, mask = self._cq, self._cqes, self._cq_mask
        while head != tail:
            user_data, res, _flags = CQE.unpack_from(cq, base + (head & mask) * CQE.size)
            out.append((user_data, res))
            head = (head + 1) & 0xFFFFFFFF
        self._cq_head.value = head
        return out

    def close(self) -> None:
        # ctypes views export the mmaps' buffers; they must go before the maps can close.
        self._views.clear()
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass
        self._maps.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
