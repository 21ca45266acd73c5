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
from concurrent.futures import Executor
from typing import Any, Callable

from . import abi, backing, buffers, protocol, uring_queues
from .abi import InitFlag
from .aio import LoopThread, SyncProxy, async_methods, bridge
from .backing import BackingRegistry
from .blocking import BlockingPool
from .control_server import ControlServer
from .dispatch import Dispatcher, Later, Reply
from .interrupts import Cancellations
from .mount import MountOptions, find_mount, mount, raise_readahead, start_watchdog, unmount
from .operations import Operations
from .paths import PathBridge, PathOperations

log = logging.getLogger("shuntfs")

_END_ERRNOS = (errno.ENODEV, errno.ECONNABORTED, errno.EBADF)
_RETRY_ERRNOS = (errno.EINTR, errno.EAGAIN, errno.ENOENT)


class Session:
    """Serve ``ops`` at ``mountpoint``.

    ``mount()`` makes the mount, ``start()`` runs the workers, ``wait()`` returns when the filesystem is unmounted;
    ``serve()`` does all three.

    ``io_uring=True`` asks for FUSE over io_uring: after INIT, one queue per possible CPU, each served by
    ``queue_threads`` threads pinned to that CPU, each with its own ring of ``ring_depth`` entries (default: two
    entries per queue in all). The kernel offers it only when the fuse module's enable_uring is on, which the
    session turns on when it runs as root; otherwise, or if registering fails, requests stay on /dev/fuse.
    Handlers then run on the queue threads; the ``threads`` /dev/fuse workers keep INIT, FORGET and INTERRUPT.
    Requests that may block for long (``slow`` in the opcode table: fsync, flush, fallocate, copy_file_range) go to a
    small pool instead, so they hold up no queue. A filesystem whose other handlers may block should give each
    entry its own thread (``queue_threads=2``): a handler that blocks then holds up only its own entry. In a burst of
    requests a queue thread polls for the next one for up to ``busy_poll_us`` microseconds after each reply,
    yielding its CPU, before it sleeps (0: never poll); see ``uring_queues``.

    Every session opens a control socket (``control=False``: none) through which ``shuntfs-ctl stats MOUNTPOINT``
    reads :meth:`stats`; only root and the mounting user are answered. ``cache_symlinks`` defaults to the
    filesystem's :attr:`~shuntfs.Operations.cache_symlinks`.
    """

    def __init__(
        self,
        ops: Operations | PathOperations,
        mountpoint: str,
        options: MountOptions | None = None,
        *,
        passthrough: backing.Asked = "auto",
        max_stack_depth: int | None = None,
        threads: int = 2,
        max_write: int = 1 << 20,
        cache_symlinks: bool | None = None,
        auto_inval_data: bool = True,
        auto_unmount: bool = True,
        io_uring: bool = False,
        queue_threads: int = 1,
        ring_depth: int | None = None,
        busy_poll_us: int = uring_queues.BUSY_POLL_US,
        control: bool = True,
    ) -> None:
        if isinstance(ops, PathOperations):
            ops = PathBridge(ops)
        self.ops = ops
        self.mountpoint = os.path.realpath(mountpoint)
        self.options = options or MountOptions()
        self.passthrough_requested = bool(passthrough)
        #: passthrough asked of the kernel or not (and why not), and the stacking depth
        self.policy = backing.policy(passthrough, ops.backing_source, max_stack_depth)
        self.threads = max(1, threads)
        self.auto_unmount = auto_unmount
        want = protocol.wanted_flags(
            cache_symlinks=ops.cache_symlinks if cache_symlinks is None else cache_symlinks,
            auto_inval_data=auto_inval_data,
            passthrough=self.policy.wanted,
            io_uring=io_uring and uring_queues.usable(quiet=True),
            clears_setid_bits=ops.clears_setid_bits,
            posix_acl=ops.posix_acl,
            applies_umask=ops.applies_umask,
            export_support=ops.export_support,
        )
        self.queue_threads = max(1, queue_threads)
        self.busy_poll_us = max(0, busy_poll_us)
        self.ring_depth = max(1, ring_depth or 2 // self.queue_threads)  # default: two entries per queue in all
        self._queues: list[tuple[uring_queues.Queue, list[int]]] = []  # with the counters of the thread serving it
        self._pools: list[Executor] = []  # per CPU queue, for its slow requests
        self.config = protocol.InitConfig(want=want, max_write=max_write, max_stack_depth=self.policy.max_stack_depth)
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
        self._initialized = False
        #: helper threads for requests whose handlers would wait on a user (WouldBlock)
        self.blocking = BlockingPool()
        #: the session's INTERRUPTs (async handlers' coroutines by request; interrupted requests)
        self.cancellations = Cancellations()
        #: the control socket ``shuntfs-ctl`` asks (``control=False``: none)
        self._control_wanted = control
        self.control: ControlServer | None = None

    # ---- lifecycle
    def mount(self) -> None:
        self.fd = mount(self.mountpoint, self.options)
        entry = find_mount(self.mountpoint)
        self.dev = entry.dev if entry else 0
        self.registry = BackingRegistry(self.fd, reason=self.policy.reason)
        handlers = self._handlers()
        self.dispatcher = Dispatcher(handlers, self.registry, self.config, self.blocking, self.cancellations)
        self.dispatcher.notify = self._notify
        if isinstance(handlers, PathBridge):
            handlers.attributes_changed = self.dispatcher.attributes_changed
        if self._control_wanted:
            try:
                self.control = ControlServer(self.stats)
                self.control.start()
                self.dispatcher.control_name = self.control.name
            except OSError as e:
                log.warning("control socket unavailable: %s", e)
        if self.auto_unmount:
            self._watchdog_fd = start_watchdog(self.mountpoint, self.dev)

    def _handlers(self) -> Operations:
        """The filesystem as the dispatcher calls it: async handlers run on an event loop (the one serve_async runs
        on, else a private one)."""
        ops = self.ops
        if isinstance(ops, PathBridge):
            if async_methods(ops.fs, PathOperations):
                ops.fs = SyncProxy(ops.fs, self._asyncio_loop(), self.cancellations)  # type: ignore[assignment]
            return ops
        if not async_methods(ops):
            return ops
        return bridge(ops, self._asyncio_loop(), self.cancellations)

    def _asyncio_loop(self) -> asyncio.AbstractEventLoop:
        if self._event_loop is None:
            self._loop_thread = LoopThread()
            self._event_loop = self._loop_thread.loop
        return self._event_loop

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
        if self.control is not None:
            self.control.close()
            self.control = None
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
            fcntl.ioctl(fd, abi.FUSE_DEV_IOC_CLONE, abi.CLONE_FD.pack(self.fd))
        except OSError:
            os.close(fd)
            raise
        return fd

    # ---- introspection
    @property
    def passthrough(self) -> bool:
        """Whether the kernel serves passthrough opens' data from their backing files on this mount."""
        return self.registry is not None and self.registry.enabled

    @property
    def passthrough_reason(self) -> str | None:
        """Why passthrough is off (None while it is on)."""
        if self.registry is None:
            return self.policy.reason or "not mounted yet"
        return None if self.registry.enabled else self.registry.disabled_reason

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
            "passthrough": self.passthrough,
            "passthrough_requested": self.passthrough_requested,
            "passthrough_unavailable_reason": self.passthrough_reason,
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
        """Read a request, hand it to the dispatcher, write its reply: until the connection ends."""
        assert self.dispatcher is not None
        view = buffers.request_buffer(self.config.max_write)
        bufs = [view]
        out = memoryview(buffers.page_buffer(self.config.max_write))  # reply payloads put in place (READ)
        readv = os.readv
        handle = self.dispatcher.handle
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
            reply = handle(view[:n], out, counts)
            if reply is None:
                continue
            if type(reply) is Later:
                if self.blocking.submit(functools.partial(self._finish, fd, reply)):
                    continue
                reply = protocol.reply_error(reply.request.unique, errno.EWOULDBLOCK)
            if not _write(fd, reply):
                return
            if not self._initialized and self.dispatcher.negotiated is not None:
                self._after_init()

    def _finish(self, fd: int, later: Later) -> None:
        """On a helper thread: serve a request whose handler would have waited, and write its reply."""
        reply = self.dispatcher.finish(later)  # type: ignore[union-attr]
        if reply is not None:
            _write(fd, reply)

    def _after_init(self) -> None:
        """Once INIT is answered (by the one worker that read it: the kernel sends nothing else before)."""
        self._initialized = True
        neg = self.dispatcher.negotiated if self.dispatcher else None
        if neg is None:
            return
        for problem in neg.errors:
            log.error("INIT: %s", problem)
        # The kernel starts a FUSE mount's readahead at 128 KiB, and INIT can only lower it.
        raise_readahead(self.dev, min(self.config.max_readahead, neg.max_pages * abi.PAGE_SIZE) // 1024)
        uring = neg.has(InitFlag.OVER_IO_URING)
        if uring:
            self._start_queues(neg)
        log.info(
            "connected: protocol 7.%d (kernel 7.%d), passthrough %s, %s",
            neg.minor,
            neg.kernel_minor,
            "on" if neg.passthrough else "off",
            f"io_uring ({uring_queues.possible_cpus()} queues, {self.queue_threads} threads each)"
            if uring else "/dev/fuse",
        )

    def _start_queues(self, neg: protocol.Negotiated) -> None:
        """After INIT, if the kernel took OVER_IO_URING: a thread for each queue share uring_queues makes."""
        queues, self._pools = uring_queues.make_queues(
            self.fd, neg, self.queue_threads, self.ring_depth, self.busy_poll_us, self.blocking
        )
        for n, queue in enumerate(queues):
            name = f"shuntfs-q{queue.qid}.{n % self.queue_threads}"
            self._queues.append((queue, self._spawn(self._run_queue, queue, name)))

    def _run_queue(self, queue: uring_queues.Queue, counts: list[int]) -> None:
        try:
            queue.serve(self.dispatcher, counts)  # type: ignore[arg-type]
        except Exception:
            log.exception("io_uring queue %d failed; unmounting", queue.qid)
            self.unmount()


def _write(fd: int, reply: Reply) -> bool:
    """Write one reply; False once the connection has ended."""
    try:
        if type(reply) is list:
            os.writev(fd, reply)
        else:
            os.write(fd, reply)  # type: ignore[arg-type]
    except OSError as e:
        if e.errno in _END_ERRNOS:
            return False
        if e.errno != errno.ENOENT:  # ENOENT: the request was interrupted or the connection aborted: benign
            log.error("reply rejected: %s", e)
    return True
