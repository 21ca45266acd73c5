"""A FUSE session: owns the /dev/fuse connection, the worker threads and the request loop.

Each worker reads requests from its own (cloned) /dev/fuse fd into a buffer it reuses, dispatches them and writes
the reply; the kernel spreads requests over the fds. Counters of requests served are kept per worker and per
opcode (no lock on the hot path) and summed on demand: they are how we prove that passthrough data never came here.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from . import abi, buffers, protocol, rings
from .abi import InitFlag, Opcode
from .aio import LoopThread, async_methods, bridge
from .backing import BackingRegistry
from .blocking import DEFERRED, BlockingPool
from .dispatch import NO_REPLY, Dispatcher
from .mount import MountOptions, find_mount, mount, start_watchdog, unmount
from .operations import FUSEError, Operations, WouldBlock

log = logging.getLogger("shuntfs")
trace = logging.getLogger("shuntfs.trace")

_END_ERRNOS = (errno.ENODEV, errno.ECONNABORTED, errno.EBADF)
_RETRY_ERRNOS = (errno.EINTR, errno.EAGAIN, errno.ENOENT)
_UNSUPPORTED_ERRNO = errno.ENOSYS
_POOL_THREADS = 2  # per io_uring queue, for its slow requests (fsync and the like): how many may block at once
_UNCOUNTED = [0] * (abi.MAX_OPCODE + 1)  # a deferred request's second run counts here: its first counted it

#: What every session asks for at INIT; cache-related flags come from the options.
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


class Session:
    """Serve ``ops`` at ``mountpoint``.

    ``mount()`` makes the mount, ``start()`` runs the workers, ``wait()`` returns when the filesystem is unmounted;
    ``serve()`` does all three.

    ``io_uring=True`` asks for FUSE over io_uring: after INIT, one queue per possible CPU, each served by
    ``queue_threads`` threads pinned to that CPU, each with its own ring of ``ring_depth`` entries (default: two
    entries per queue in all). The kernel offers it only when the fuse module's enable_uring is on, which the
    session turns on when it runs as root; otherwise, or if registering fails, requests stay on /dev/fuse.
    Handlers then run on the queue threads; the ``threads`` /dev/fuse workers keep INIT, FORGET and INTERRUPT.
    Requests that may block for long (``rings.SLOW_OPCODES``: fsync, flush, fallocate, copy_file_range) go to a
    small pool instead, so they hold up no queue. A filesystem whose other handlers may block should give each
    entry its own thread (``queue_threads=2``): a handler that blocks then holds up only its own entry. In a burst of
    requests a queue thread polls for the next one for up to ``busy_poll_us`` microseconds after each reply,
    yielding its CPU, before it sleeps (0: never poll); see ``rings``.
    """

    def __init__(
        self,
        ops: Operations,
        mountpoint: str,
        options: MountOptions | None = None,
        *,
        passthrough: bool = True,
        max_stack_depth: int = 1,
        threads: int = 2,
        max_write: int = 1 << 20,
        cache_symlinks: bool = True,
        auto_inval_data: bool = True,
        auto_unmount: bool = True,
        io_uring: bool = False,
        queue_threads: int = 1,
        ring_depth: int | None = None,
        busy_poll_us: int = rings.BUSY_POLL_US,
    ) -> None:
        self.ops = ops
        self.mountpoint = os.path.realpath(mountpoint)
        self.options = options or MountOptions()
        self.passthrough_requested = passthrough
        self.threads = max(1, threads)
        self.auto_unmount = auto_unmount
        want = BASE_FLAGS
        if cache_symlinks:
            want |= InitFlag.CACHE_SYMLINKS
        if auto_inval_data:
            want |= InitFlag.AUTO_INVAL_DATA
        if passthrough:
            want |= InitFlag.PASSTHROUGH
        if io_uring and rings.usable(quiet=True):
            want |= InitFlag.OVER_IO_URING
        self.queue_threads = max(1, queue_threads)
        self.busy_poll_us = max(0, busy_poll_us)
        self.ring_depth = max(1, ring_depth or 2 // self.queue_threads)  # default: two entries per queue in all
        self._queues: list[tuple[rings.Queue, list[int]]] = []  # with the counters of the thread serving it
        self._pools: list[ThreadPoolExecutor] = []  # per CPU queue, for its slow requests
        if ops.clears_setid_bits:
            want |= InitFlag.HANDLE_KILLPRIV_V2
        if ops.posix_acl:
            want |= InitFlag.POSIX_ACL
        if ops.applies_umask:
            want |= InitFlag.DONT_MASK
        if ops.export_support:
            want |= InitFlag.EXPORT_SUPPORT
        self.config = protocol.InitConfig(want=want, max_write=max_write, max_stack_depth=max_stack_depth)
        self.fd = -1
        self.dev = 0
        self.registry: BackingRegistry | None = None
        self.dispatcher: Dispatcher | None = None
        self._workers: list[threading.Thread] = []
        self._worker_fds: list[int] = []
        self._counts: list[list[int]] = []
        self._watchdog_fd = -1
        self._unmounting = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: LoopThread | None = None
        self.started_at = time.time()
        self.debug = trace.isEnabledFor(logging.DEBUG)
        #: helper threads for requests whose handlers would wait on a user (WouldBlock)
        self.blocking = BlockingPool()

    # ---- lifecycle
    def mount(self) -> None:
        self.fd = mount(self.mountpoint, self.options)
        entry = find_mount(self.mountpoint)
        self.dev = entry.dev if entry else 0
        self.registry = BackingRegistry(self.fd, enabled=False)
        self.dispatcher = Dispatcher(self._handlers(), self.registry, self.config)
        self.dispatcher.on_interrupt = self.blocking.interrupt
        self.dispatcher.notify = self._notify
        if self.auto_unmount:
            self._watchdog_fd = start_watchdog(self.mountpoint, self.dev)

    def _handlers(self) -> Operations:
        """The filesystem as the dispatcher calls it: async handlers run on an event loop (the one serve_async runs
        on, else a private one)."""
        if not async_methods(self.ops):
            return self.ops
        if self._event_loop is None:
            self._loop_thread = LoopThread()
            self._event_loop = self._loop_thread.loop
        return bridge(self.ops, self._event_loop)

    async def serve_async(self) -> None:
        """Mount and serve with ``async def`` handlers on the running event loop; return once unmounted."""
        self._event_loop = asyncio.get_running_loop()
        self.mount()
        self.start()
        if threading.current_thread() is threading.main_thread():
            self.unmount_on_signals()
        await self._event_loop.run_in_executor(None, self.wait)

    def start(self) -> None:
        """Start the workers: the first one reads INIT; the others get cloned fds."""
        fds = [self.fd]
        for _ in range(self.threads - 1):
            fds.append(self._clone_fd())
        self._worker_fds = fds
        for index, fd in enumerate(fds):
            self._spawn(self._run_worker, fd, f"shuntfs-{index}")

    def _spawn(self, target: Callable[[Any, list[int]], None], work: Any, name: str) -> list[int]:
        """Start a thread running ``target(work, counts)`` with its own per-opcode counters; return them."""
        counts = [0] * (abi.MAX_OPCODE + 1)
        self._counts.append(counts)
        t = threading.Thread(target=target, args=(work, counts), name=name, daemon=True)
        self._workers.append(t)
        t.start()
        return counts

    def wait_init(self, timeout: float = 10.0) -> bool:
        return self.dispatcher is not None and self.dispatcher.init_done.wait(timeout)

    def wait(self) -> None:
        """Block until every worker has seen the end of the connection."""
        while any(t.is_alive() for t in self._workers):  # queue threads join the list after INIT
            for t in list(self._workers):
                t.join(0.5)
        self.close()

    def serve(self) -> None:
        """Mount, serve until unmounted; SIGINT/SIGTERM unmount when called from the main thread."""
        self.mount()
        self.start()
        if threading.current_thread() is threading.main_thread():
            self.unmount_on_signals()
        self.wait()

    def unmount_on_signals(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Make these signals end the session. Main thread only.

        The first unmounts, lazily if the mount is busy: files that are still open keep being served until they are
        closed, so no acknowledged write is lost and no writer is cut off. A second signal exits at once; the kernel
        then aborts the connection and the watchdog removes the mount."""
        def handler(signum: int, _frame: object) -> None:
            if self._unmounting:
                log.warning("%s again: exiting without waiting for open files", signal.Signals(signum).name)
                os._exit(1)
            self.unmount()

        for sig in signals:
            signal.signal(sig, handler)

    def unmount(self) -> None:
        """Unmount (lazily if busy); the workers then see ENODEV and wait() returns."""
        if self._unmounting:
            return
        self._unmounting = True
        entry = find_mount(self.mountpoint)
        if entry is None or entry.dev != self.dev:
            return
        try:
            unmount(self.mountpoint)
        except OSError:
            try:
                unmount(self.mountpoint, lazy=True)
            except OSError as e:
                log.error("unmount %s: %s", self.mountpoint, e)

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close_all()
        # The first worker fd is self.fd; before start() there are no workers, only self.fd.
        for fd in self._worker_fds or ([self.fd] if self.fd >= 0 else []):
            try:
                os.close(fd)
            except OSError:
                pass
        self._worker_fds = []
        self.fd = -1  # a notification now fails instead of writing to whatever reuses the number
        if self._watchdog_fd >= 0:
            os.close(self._watchdog_fd)
            self._watchdog_fd = -1
        if self.dispatcher is not None and self.dispatcher.init_done.is_set():
            try:
                self.dispatcher.ops.destroy()
            except Exception:
                log.exception("destroy")
        if self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools = []
        self.blocking.close()

    def _clone_fd(self) -> int:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, abi.FUSE_DEV_IOC_CLONE, abi.BACKING_ID.pack(self.fd))
        except OSError:
            os.close(fd)
            raise
        return fd

    # ---- introspection
    def request_counts(self) -> dict[str, int]:
        total = [0] * (abi.MAX_OPCODE + 1)
        for counts in self._counts:
            for i, n in enumerate(counts):
                total[i] += n
        return {abi.OPCODE_NAMES.get(i, f"OPCODE_{i}"): n for i, n in enumerate(total) if n}

    def stats(self) -> dict[str, Any]:
        neg = self.dispatcher.negotiated if self.dispatcher else None
        registry = self.registry
        return {
            "mountpoint": self.mountpoint,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "passthrough": bool(registry and registry.enabled),
            "passthrough_requested": self.passthrough_requested,
            "passthrough_unavailable_reason": (
                None if registry is None or registry.enabled else registry.disabled_reason
            ),
            "fallback_opens": registry.fallback_opens if registry else 0,
            "protocol": f"{neg.kernel_major}.{neg.minor}" if neg else None,
            "kernel_protocol": f"{neg.kernel_major}.{neg.kernel_minor}" if neg else None,
            "capabilities": abi.init_flag_names(neg.flags) if neg else [],
            "max_write": neg.max_write if neg else None,
            "max_stack_depth": neg.max_stack_depth if neg else None,
            "threads": self.threads,
            "transport": "io_uring" if self._queues else "/dev/fuse",
            "io_uring_queues": [
                {"qid": q.qid, "entries": len(q.entries), "requests": sum(c), "polled": q.polled,
                 "missed": q.missed, "slept": q.slept, "error": os.strerror(q.error) if q.error else None}
                for q, c in self._queues
            ],
            "requests": self.request_counts(),
            "open_files": self.dispatcher.open_files() if self.dispatcher else 0,
            "waiting_requests": self.blocking.waiting(),
            "backing_files": self.dispatcher.backing_files() if self.dispatcher else [],
            "filesystem": (self.dispatcher.ops if self.dispatcher else self.ops).stats(),
        }

    # ---- kernel notifications: callable from any thread, handlers included
    # Each is one write(2) of a whole message to /dev/fuse, which the kernel takes atomically, so no lock is needed.
    # The kernel answers ENOENT when it holds nothing for the inode or name; that is not an error here.
    # Do not invalidate an entry from the handler of a request on the same directory: the kernel may be waiting for
    # that reply with the directory locked.

    def invalidate_inode(self, inode: int, offset: int = 0, length: int = 0) -> bool:
        """Drop the kernel's cached attributes of ``inode`` and its cached data from ``offset`` for ``length``
        bytes (0: to the end). ``offset=-1`` drops the attributes only. False if the kernel had nothing cached."""
        return self._notify(protocol.notify_inval_inode(inode, offset, length))

    def invalidate_entry(self, parent: int, name: bytes, expire_only: bool = False) -> bool:
        """Forget the name ``name`` in ``parent`` (the next access looks it up again). ``expire_only`` marks it
        stale without dropping it, so open files and cwds keep their path."""
        return self._notify(protocol.notify_inval_entry(parent, name, expire_only))

    def notify_delete(self, parent: int, child: int, name: bytes) -> bool:
        """Tell the kernel that ``name`` in ``parent``, which was ``child``, is gone (e.g. deleted by a peer)."""
        return self._notify(protocol.notify_delete(parent, child, name))

    def notify_store(self, inode: int, offset: int, data: bytes) -> bool:
        """Put ``data`` into the kernel's page cache of ``inode`` at ``offset``, extending its size if needed."""
        return self._notify(protocol.notify_store(inode, offset, data))

    def _notify(self, message: bytes) -> bool:
        if self.fd < 0:
            raise RuntimeError("the session is not mounted")
        try:
            os.write(self.fd, message)
        except FileNotFoundError:
            return False
        return True

    # ---- the loop
    def _run_worker(self, fd: int, counts: list[int]) -> None:
        try:
            self._loop(fd, counts)
        except Exception:
            log.exception("worker failed; unmounting")
            self.unmount()

    def _loop(self, fd: int, counts: list[int]) -> None:
        assert self.dispatcher is not None
        view = buffers.request_buffer(self.config.max_write)
        bufs = [view]
        out = memoryview(buffers.page_buffer(self.config.max_write))  # reply payloads put in place (READ)
        readv, write, writev = os.readv, os.write, os.writev
        decode = protocol.decode
        debug = self.debug
        while True:
            try:
                n = readv(fd, bufs)
            except OSError as e:
                if e.errno in _RETRY_ERRNOS:
                    continue
                if e.errno in _END_ERRNOS:
                    return
                raise
            if n == 0:
                return  # /dev/fuse never reads empty; a socket standing in for it (tests) has closed
            started = time.perf_counter() if debug else 0.0
            try:
                req = decode(view[:n])
            except protocol.ProtocolError as e:
                self._answer_malformed(fd, view[:n], e)
                continue
            req.out = out
            reply = self._respond(req, counts, started)
            if reply is None:
                continue
            if reply is DEFERRED:
                req.out = None  # this worker's buffer serves its next request
                if self.blocking.submit(functools.partial(self._respond_deferred, fd, req)):
                    continue
                reply = protocol.reply_error(req.unique, errno.EWOULDBLOCK)
            try:
                if type(reply) is list:
                    writev(fd, reply)
                else:
                    write(fd, reply)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    continue  # the request was interrupted or the connection aborted: benign
                if e.errno in _END_ERRNOS:
                    return
                log.error("reply to %r rejected: %s", req, e)
            if req.opcode == Opcode.INIT:
                self._after_init()

    def _respond(self, req: protocol.Request, counts: list[int], started: float) -> Any:
        """Run the handler of ``req``; the reply message (bytes, or a list of buffers whose first is the header), or
        None when the request takes no reply."""
        table = self.dispatcher.table  # type: ignore[union-attr]
        opcode = req.opcode
        known = opcode < len(table)
        counts[opcode if known else 0] += 1
        handler = table[opcode] if known else None
        error = 0
        try:
            if handler is None:
                if opcode in protocol.NO_REPLY:
                    return None
                raise FUSEError(_UNSUPPORTED_ERRNO)
            if req.blocking:
                with self.blocking.running(req.unique):
                    payload = handler(req)
            else:
                payload = handler(req)
        except WouldBlock:
            if not req.blocking and opcode != Opcode.WRITE:
                return DEFERRED
            error = errno.EWOULDBLOCK
        except FUSEError as e:
            error = e.errno
        except OSError as e:
            error = e.errno or errno.EIO
        except Exception:
            log.exception("handler for %r failed", req)
            error = errno.EIO
        if self.debug:
            self._trace(req, error, started)
        if error:
            return protocol.reply_error(req.unique, error)
        if payload is NO_REPLY:
            return None
        if payload is None:
            return protocol.reply_empty(req.unique)
        if type(payload) is list:
            payload.insert(0, protocol.reply_header(req.unique, sum(map(len, payload))))
            return payload
        if type(payload) is int:  # in place in req.out
            return [protocol.reply_header(req.unique, payload), req.out[:payload]]  # type: ignore[index]
        return protocol.reply_bytes(req.unique, payload)

    def _respond_deferred(self, fd: int, req: protocol.Request) -> None:
        """On a helper thread: serve a request whose handler would have waited, and write its reply."""
        req.blocking = True
        reply = self._respond(req, _UNCOUNTED, time.perf_counter() if self.debug else 0.0)
        if reply is None:
            return
        try:
            if type(reply) is list:
                os.writev(fd, reply)
            else:
                os.write(fd, reply)
        except OSError as e:
            if e.errno not in (errno.ENOENT, *_END_ERRNOS):
                log.error("reply to %r rejected: %s", req, e)

    def _answer_malformed(self, fd: int, data: memoryview, e: Exception) -> None:
        log.error("malformed request (%d bytes): %s", len(data), e)
        head = protocol.peek_header(data)
        if head is None or head[0] in protocol.NO_REPLY:
            return
        try:
            os.write(fd, protocol.reply_error(head[1], errno.EIO))
        except OSError:
            pass

    def _after_init(self) -> None:
        neg = self.dispatcher.negotiated if self.dispatcher else None
        if neg is None:
            return
        for problem in neg.errors:
            log.error("INIT: %s", problem)
        self._raise_readahead(neg)
        uring = neg.has(InitFlag.OVER_IO_URING)
        if uring:
            self._start_queues(neg)
        log.info(
            "connected: protocol 7.%d (kernel 7.%d), passthrough %s, %s",
            neg.minor,
            neg.kernel_minor,
            "on" if neg.passthrough else "off",
            f"io_uring ({rings.possible_cpus()} queues, {self.queue_threads} threads each)" if uring else "/dev/fuse",
        )

    def _raise_readahead(self, neg: protocol.Negotiated) -> None:
        """The kernel starts a FUSE mount's readahead at 128 KiB, and INIT can only lower it: a root daemon raises
        it on the mount's bdi, so userspace reads of a sequential reader arrive max_pages at a time (8x fewer READ
        requests at 1 MiB). Passthrough files read ahead on their backing file's device instead."""
        want_kb = min(self.config.max_readahead, neg.max_pages * protocol.PAGE_SIZE) // 1024
        path = f"/sys/class/bdi/{os.major(self.dev)}:{os.minor(self.dev)}/read_ahead_kb"
        try:
            with open(path, "r+") as f:
                if int(f.read()) < want_kb:
                    f.seek(0)
                    f.write(f"{want_kb}\n")
        except (OSError, ValueError) as e:
            log.debug("readahead stays as the kernel set it: %s", e)

    def _start_queues(self, neg: protocol.Negotiated) -> None:
        """After INIT, if the kernel took OVER_IO_URING: the pinned threads of every queue. Until every queue has an
        entry the kernel holds new requests back; if registering fails it returns to /dev/fuse by itself."""
        payload = max(neg.max_write, neg.max_pages * protocol.PAGE_SIZE)
        last_wake = [0]  # shared by the queues: see rings.Queue.last_wake
        for qid in range(rings.possible_cpus()):
            # Pinned like the queue: handing a request over and back then wakes no other CPU.
            pool = ThreadPoolExecutor(_POOL_THREADS, f"shuntfs-slow{qid}", rings.pin_to, (qid,))
            self._pools.append(pool)
            for k in range(self.queue_threads):
                queue = rings.Queue(
                    self.fd, qid, self.ring_depth, payload, pool, self.busy_poll_us * 1000, last_wake, self.blocking
                )
                self._queues.append((queue, self._spawn(self._run_queue, queue, f"shuntfs-q{qid}.{k}")))

    def _run_queue(self, queue: rings.Queue, counts: list[int]) -> None:
        try:
            queue.serve(self._respond, counts, self.debug)
        except Exception:
            log.exception("io_uring queue %d failed; unmounting", queue.qid)
            self.unmount()

    def _trace(self, req: protocol.Request, error: int, started: float) -> None:
        took = (time.perf_counter() - started) * 1e6
        result = "OK" if not error else f"{errno.errorcode.get(error, error)}"
        trace.debug(
            "unique=%d %s nodeid=%d uid=%d pid=%d %s -> %s (%.0f us)",
            req.unique,
            abi.OPCODE_NAMES.get(req.opcode, req.opcode),
            req.nodeid,
            req.uid,
            req.pid,
            _short(req.arg),
            result,
            took,
        )


def _short(arg: Any) -> str:
    if isinstance(arg, protocol.Write):
        return f"fh={arg.fh} offset={arg.offset} size={arg.size}"
    text = repr(arg)
    return text if len(text) < 160 else text[:157] + "..."
