"""FUSE over io_uring: one queue per possible CPU, each a ring of entries served by a thread pinned to that CPU.

Pinned, the thread and the callers of its CPU hand that CPU to each other instead of waking another. In a burst of
requests a queue thread polls its ring briefly after a reply before it sleeps, so callers stay on their CPU. INIT,
FORGET, INTERRUPT and notifications stay on /dev/fuse. docs/internals.md tells why, with the measurements.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from . import abi, buffers, io_uring, protocol
from .blocking import BlockingPool
from .dispatch import Dispatcher, Later

log = logging.getLogger("shuntfs")

_PARAMETER = "/sys/module/fuse/parameters/enable_uring"


def kernel_allows() -> bool | None:
    """Whether the fuse module lets servers use io_uring (module parameter enable_uring); None: no such kernel."""
    try:
        with open(_PARAMETER) as f:
            return f.read().strip() in ("Y", "1")
    except OSError:
        return None


def allow_in_kernel() -> None:
    """Set the fuse module's enable_uring (root). It only lets servers opt in; others keep using /dev/fuse."""
    with open(_PARAMETER, "w") as f:
        f.write("Y")


def usable(quiet: bool = False) -> bool:
    """Whether FUSE over io_uring can be asked for. Turns on the fuse module's enable_uring when we may: the switch
    only lets servers opt in, so other FUSE servers are unaffected."""
    say = log.info if quiet else log.warning
    allowed = kernel_allows()
    if allowed is None or not io_uring.supported_arch():
        say("io_uring: this kernel or machine has no FUSE over io_uring; using /dev/fuse")
        return False
    if not allowed:
        try:
            allow_in_kernel()
        except OSError as e:
            say("io_uring: cannot turn on the fuse module's enable_uring (%s); using /dev/fuse", e.strerror)
            return False
        log.info("io_uring: turned on the fuse module's enable_uring")
    return True


def possible_cpus() -> int:
    """The kernel makes one queue per possible CPU (num_possible_cpus), online or not."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def pin_to(cpu: int) -> None:
    """Keep the calling thread on ``cpu``, where the kernel queues the requests of callers running there."""
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass  # a possible CPU that is offline: its queue only serves callers after it comes up


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Entry:
    """One ring entry's memory: a buffer laid out as protocol.ring_request expects, and the two iovecs the kernel
    copies requests and replies through (header area, payload)."""

    def __init__(self, payload_size: int) -> None:
        self.buf = buffers.page_buffer(protocol.RING_PAYLOAD + payload_size)
        self.view = memoryview(self.buf)
        # for the buffer's address; the export also keeps the mapping from being closed under the kernel
        self._pin = (ctypes.c_char * len(self.buf)).from_buffer(self.buf)
        base = ctypes.addressof(self._pin)
        self.iov = (_Iovec * 2)(
            _Iovec(base, abi.URING_HEADER_SIZE), _Iovec(base + protocol.RING_PAYLOAD, payload_size)
        )
        self.iov_addr = ctypes.addressof(self.iov)
        self.out = self.view[protocol.RING_PAYLOAD : protocol.RING_PAYLOAD + payload_size]  # Request.out


#: the default poll budget of a queue thread, in microseconds (Session's busy_poll_us, the CLI's -o busy_poll)
BUSY_POLL_US = 50
#: a queue polls after a request when the session's queues woke less than this many poll budgets apart
BURST_GAPS = 4
_WAKE = 1 << 63  # user_data of the eventfd read; entries use their index


#: per CPU queue, threads of the pool that serves its slow requests (fsync and the like): how many may block at once
POOL_THREADS = 2


def make_queues(
    devfd: int, neg: protocol.Negotiated, threads: int, depth: int, busy_poll_us: int, blocking: BlockingPool
) -> tuple[list[Queue], list[Executor]]:
    """After INIT, if the kernel took OVER_IO_URING: ``threads`` queue shares per possible CPU, each to be served by
    a thread of its own (Queue.serve), and each CPU's pool for slow requests. Until every queue has an entry the
    kernel holds new requests back; if registering fails it returns to /dev/fuse by itself."""
    payload = max(neg.max_write, neg.max_pages * abi.PAGE_SIZE)
    last_wake = [0]  # shared by the queues: see Queue.last_wake
    queues: list[Queue] = []
    pools: list[Executor] = []
    for qid in range(possible_cpus()):
        # Pinned like the queue: handing a request over and back then wakes no other CPU.
        pool = ThreadPoolExecutor(POOL_THREADS, f"shuntfs-slow{qid}", pin_to, (qid,))
        pools.append(pool)
        queues += [Queue(devfd, qid, depth, payload, pool, busy_poll_us * 1000, last_wake, blocking)
                   for _ in range(threads)]
    return queues, pools


class Queue:
    """One thread's share of queue ``qid`` of the connection on ``devfd``: a ring of ``depth`` entries, served by
    the thread that calls serve(). Several may serve one qid; the kernel hands a request to any free entry.

    With ``handoff`` (an executor), requests whose handlers may block for long (the opcode table's ``slow``) run
    there; their replies come back to the queue thread, which alone submits on its ring, through an eventfd that the
    ring reads. With ``blocking`` (a BlockingPool), requests whose handlers would wait on a user run there and come
    back the same way."""

    def __init__(
        self,
        devfd: int,
        qid: int,
        depth: int,
        payload_size: int,
        handoff: Executor | None = None,
        busy_poll_ns: int = 0,
        last_wake: list[int] | None = None,
        blocking: BlockingPool | None = None,
    ) -> None:
        self.devfd = devfd
        self.qid = qid
        self.entries = [Entry(max(payload_size, abi.URING_MIN_PAYLOAD)) for _ in range(depth)]
        self.depth = depth
        self.payload_size = payload_size
        #: entries whose requests wait on a helper of ``blocking``; the queue registers more entries so that
        #: ``depth`` of them keep taking requests
        self.deferred = 0
        self.error = 0  # the first failure the kernel reported for an entry
        self.handoff = handoff
        self.blocking = blocking
        self.busy_poll_ns = busy_poll_ns
        #: when any queue of the session last woke (shared by them): bursts of requests are what polling is for
        self.last_wake = [0] if last_wake is None else last_wake
        #: how often the thread found a completion while polling, polled in vain, and slept (its own counters)
        self.polled = 0
        self.missed = 0
        self.slept = 0
        self._done: list[tuple[int, int, Any, bool]] = []  # (entry index, unique, reply, waited) from the pools
        self._lock = threading.Lock()  # guards _done and _wake_fd between the pool and the queue thread
        self._wake_fd = -1
        self._wake_buf = ctypes.create_string_buffer(8)

    def serve(self, dispatcher: Dispatcher, counts: list[int]) -> None:
        """Register the entries and answer requests until the kernel ends them (unmount or abort)."""
        pin_to(self.qid)
        extra = self.blocking.threads if self.blocking is not None else 0
        ring = io_uring.Ring(2 * (len(self.entries) + extra) + 2, io_uring.SETUP_SQE128)
        try:
            if self.handoff is not None or self.blocking is not None:
                self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC)
            self._serve(ring, dispatcher, counts)
        finally:
            with self._lock:  # a pool thread may still be about to wake us: it checks the fd under the lock
                if self._wake_fd >= 0:
                    os.close(self._wake_fd)
                    self._wake_fd = -1
            ring.close()

    def _serve(self, ring: io_uring.Ring, dispatcher: Dispatcher, counts: list[int]) -> None:
        devfd, qid, entries = self.devfd, self.qid, self.entries
        pack_cmd = abi.URING_CMD_REQ.pack
        put = ring.put_uring_cmd
        for i, e in enumerate(entries):
            put(devfd, abi.URING_CMD_REGISTER, e.iov_addr, 2, i, pack_cmd(0, 0, qid))
        wake_addr = ctypes.addressof(self._wake_buf)
        if self._wake_fd >= 0:
            ring.put_read(self._wake_fd, wake_addr, 8, _WAKE)
        handoff = self.handoff
        live = len(entries)
        commit = abi.URING_CMD_COMMIT_AND_FETCH
        handle, ring_request, ring_reply = dispatcher.handle, protocol.ring_request, protocol.ring_reply

        def finish(index: int, unique: int, reply: Any) -> None:
            view = entries[index].view
            if reply is None:
                # Only FORGET and INTERRUPT take no reply and they come on /dev/fuse; an entry must be committed to
                # take the next request, so anything else gets one.
                reply = protocol.reply_error(unique, errno.ENOSYS)
            try:
                ring_reply(view, reply)
            except ValueError:
                log.error("reply to request %d does not fit the io_uring payload buffer", unique)
                ring_reply(view, protocol.reply_error(unique, errno.EIO))
            put(devfd, commit, entries[index].iov_addr, 2, index, pack_cmd(0, unique, qid))

        budget = self.busy_poll_ns
        burst = BURST_GAPS * budget
        last_wake = self.last_wake
        clock = time.monotonic_ns
        poll_ns = 0
        while live:
            if ring.wait(poll_ns):
                self.polled += 1
            else:
                self.slept += 1
                if poll_ns:
                    self.missed += 1
            if budget:
                # Poll after this request only in a burst: when some queue of the session woke shortly before.
                now = clock()
                poll_ns = budget if now - last_wake[0] <= burst else 0
                last_wake[0] = now
            for index, res in ring.completions():
                if index == _WAKE:
                    if res < 0:
                        log.error("io_uring queue %d: waiting for the pool failed: %s", qid, os.strerror(-res))
                    with self._lock:
                        done, self._done = self._done, []
                    for item in done:
                        if item[3]:
                            self.deferred -= 1
                        finish(*item[:3])
                    ring.put_read(self._wake_fd, wake_addr, 8, _WAKE)
                    continue
                e = entries[index]
                if res < 0:
                    live -= 1
                    if not self.error:
                        self.error = -res
                    if -res not in (errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV):
                        log.error("io_uring queue %d: %s", qid, os.strerror(-res))
                    continue
                view = e.view
                try:
                    data = ring_request(view)
                except protocol.ProtocolError as exc:
                    reply: Any = dispatcher.malformed(view, exc)
                    head = protocol.peek_header(view)
                    finish(index, head[1] if head else 0, reply)
                    continue
                reply = handle(data, e.out, counts, handoff is not None)
                if type(reply) is Later:
                    req = reply.request
                    if not reply.waits:
                        handoff.submit(self._later, dispatcher, reply, index)  # type: ignore[union-attr]
                        continue
                    if self.blocking is not None and self.blocking.submit(
                        functools.partial(self._later, dispatcher, reply, index)
                    ):
                        # The waiting request keeps its entry until it is answered: another takes its place.
                        self.deferred += 1
                        if len(entries) - self.deferred < self.depth:
                            entries.append(Entry(max(self.payload_size, abi.URING_MIN_PAYLOAD)))
                            put(devfd, abi.URING_CMD_REGISTER, entries[-1].iov_addr, 2, len(entries) - 1,
                                pack_cmd(0, 0, qid))
                            live += 1
                        continue
                    reply = protocol.reply_error(req.unique, errno.EWOULDBLOCK)
                finish(index, _unique(data), reply)

    def _later(self, dispatcher: Dispatcher, later: Later, index: int) -> None:
        """In a pool: serve a request handed off, and give its reply to the queue thread."""
        reply = dispatcher.finish(later)
        with self._lock:
            if self._wake_fd < 0:
                return  # the queue has ended: the connection is gone, and so is the request
            self._done.append((index, later.request.unique, reply, later.waits))
            os.eventfd_write(self._wake_fd, 1)


def _unique(data: memoryview) -> int:
    return abi.IN_HEADER_START.unpack_from(data)[2]
