"""FUSE over io_uring: one queue per possible CPU, each a ring of entries served by a thread pinned to that CPU.

The kernel puts a request on the queue of the CPU its caller runs on. With the serving thread pinned to that CPU, the
caller and the daemon hand that CPU to each other, where /dev/fuse wakes whichever reader waits, often on the other
CPU; that cross-CPU wake-up was half of a metadata round trip on our 2-CPU VM. INIT, FORGET, INTERRUPT and
notifications stay on /dev/fuse, so the /dev/fuse workers keep running beside the queues.

In a burst of requests (the session's queues woke less than BURST_GAPS poll budgets apart), a queue thread polls
its ring for up to ``busy_poll_ns`` after a reply, yielding its CPU to whoever wants it, before it sleeps. The reply
wakes the caller while the queue thread still runs on the caller's CPU, so the scheduler looks for an idle CPU for
the caller, and takes the one it ran on before if that one is idle. A caller served alternately by two queues then
moves at every request, and each move wakes a halted CPU: on our VM, tar ran at half speed in that state. A queue
thread that is still polling keeps its CPU from looking idle, so the caller stays where it is, and a request that
comes back within the budget finds its thread awake. Outside bursts (a streaming caller copying a megabyte per
request, an idle mount) the thread sleeps at once, as polling would only burn CPU there.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import threading
import time
from concurrent.futures import Executor
from typing import Any, Callable

from . import abi, buffers, protocol, uring
from .abi import Opcode
from .blocking import DEFERRED, BlockingPool

log = logging.getLogger("shuntfs")

_PARAMETER = "/sys/module/fuse/parameters/enable_uring"

Respond = Callable[[protocol.Request, list, float], Any]


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
    if allowed is None or not uring.supported_arch():
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


#: Requests whose handlers may block for long (a disk flush, a large copy): with ``handoff``, a pool serves them, so
#: they hold up neither the queue thread nor the other entries of its CPU's queue.
SLOW_OPCODES = frozenset(
    {Opcode.FSYNC, Opcode.FSYNCDIR, Opcode.FLUSH, Opcode.FALLOCATE, Opcode.COPY_FILE_RANGE, Opcode.COPY_FILE_RANGE_64}
)
#: the default poll budget of a queue thread, in microseconds (Session's busy_poll_us, the CLI's -o busy_poll)
BUSY_POLL_US = 50
#: a queue polls after a request when the session's queues woke less than this many poll budgets apart
BURST_GAPS = 4
_WAKE = 1 << 63  # user_data of the eventfd read; entries use their index
_UNCOUNTED = [0] * (abi.MAX_OPCODE + 1)  # the pool's respond() counts here: the queue thread already counted


class Queue:
    """One thread's share of queue ``qid`` of the connection on ``devfd``: a ring of ``depth`` entries, served by
    the thread that calls serve(). Several may serve one qid; the kernel hands a request to any free entry.

    With ``handoff`` (an executor), requests in SLOW_OPCODES run there; their replies come back to the queue thread,
    which alone submits on its ring, through an eventfd that the ring reads. With ``blocking`` (a BlockingPool),
    requests whose handlers would wait on a user (respond() answers DEFERRED) run again there and come back the
    same way."""

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
        self._done: list[tuple[int, int, Any, bool]] = []  # (entry index, unique, reply, deferred) from the pools
        self._lock = threading.Lock()  # guards _done and _wake_fd between the pool and the queue thread
        self._wake_fd = -1
        self._wake_buf = ctypes.create_string_buffer(8)

    def serve(self, respond: Respond, counts: list[int], debug: bool = False) -> None:
        """Register the entries and answer requests until the kernel ends them (unmount or abort)."""
        pin_to(self.qid)
        extra = self.blocking.threads if self.blocking is not None else 0
        ring = uring.Ring(2 * (len(self.entries) + extra) + 2, uring.SETUP_SQE128)
        try:
            if self.handoff is not None or self.blocking is not None:
                self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC)
            self._serve(ring, respond, counts, debug)
        finally:
            with self._lock:  # a pool thread may still be about to wake us: it checks the fd under the lock
                if self._wake_fd >= 0:
                    os.close(self._wake_fd)
                    self._wake_fd = -1
            ring.close()

    def _serve(self, ring: uring.Ring, respond: Respond, counts: list[int], debug: bool) -> None:
        devfd, qid, entries = self.devfd, self.qid, self.entries
        pack_cmd = abi.URING_CMD_REQ.pack
        put = ring.put_uring_cmd
        for i, e in enumerate(entries):
            put(devfd, abi.URING_CMD_REGISTER, e.iov_addr, 2, i, pack_cmd(0, 0, qid))
        wake_addr = ctypes.addressof(self._wake_buf)
        if self._wake_fd >= 0:
            ring.put_read(self._wake_fd, wake_addr, 8, _WAKE)
        handoff = self.handoff
        slow = SLOW_OPCODES if handoff is not None else frozenset()
        live = len(entries)
        commit = abi.URING_CMD_COMMIT_AND_FETCH
        decode, ring_request, ring_reply = protocol.decode, protocol.ring_request, protocol.ring_reply

        def finish(index: int, unique: int, reply: Any) -> None:
            view = entries[index].view
            if reply is None:
                # Only FORGET and INTERRUPT take no reply and they come on /dev/fuse; an entry must be committed to
                # take the next request, so anything else gets one.
                reply = protocol.reply_error(unique, errno.ENOSYS)
            elif reply is DEFERRED:  # a queue without a blocking pool: the handler may not wait
                reply = protocol.reply_error(unique, errno.EWOULDBLOCK)
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
                started = time.perf_counter() if debug else 0.0
                view = e.view
                try:
                    req = decode(ring_request(view))
                except protocol.ProtocolError as exc:
                    log.error("malformed request in io_uring queue %d: %s", qid, exc)
                    head = protocol.peek_header(view)
                    unique = head[1] if head else 0
                    reply: Any = protocol.reply_error(unique, errno.EIO)
                else:
                    unique = req.unique
                    req.out = e.out
                    if req.opcode in slow:
                        counts[req.opcode] += 1
                        handoff.submit(self._slow, respond, req, index, started)  # type: ignore[union-attr]
                        continue
                    reply = respond(req, counts, started)
                    if reply is DEFERRED and self.blocking is not None:
                        req.blocking = True
                        if self.blocking.submit(functools.partial(self._slow, respond, req, index, started, True)):
                            # The waiting request keeps its entry until it is answered: another takes its place.
                            self.deferred += 1
                            if len(entries) - self.deferred < self.depth:
                                entries.append(Entry(max(self.payload_size, abi.URING_MIN_PAYLOAD)))
                                put(devfd, abi.URING_CMD_REGISTER, entries[-1].iov_addr, 2, len(entries) - 1,
                                    pack_cmd(0, 0, qid))
                                live += 1
                            continue
                finish(index, unique, reply)

    def _slow(
        self, respond: Respond, req: protocol.Request, index: int, started: float, deferred: bool = False
    ) -> None:
        """In the pool: serve ``req`` and hand its reply to the queue thread."""
        reply = respond(req, _UNCOUNTED, started)
        with self._lock:
            if self._wake_fd < 0:
                return  # the queue has ended: the connection is gone, and so is the request
            self._done.append((index, req.unique, reply, deferred))
            os.eventfd_write(self._wake_fd, 1)
