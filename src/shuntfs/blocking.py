"""Requests whose handlers would wait on something a user controls, served off the threads that serve the mount.

A file lease (or anything else another user can hold for as long as they like) would stall the thread that serves a
CPU's queue, and with it every other user's requests. A handler raises :class:`~shuntfs.operations.WouldBlock`
instead of waiting; the session then runs the request again on a thread of this pool, with ``ctx.may_block`` set.
An INTERRUPT for such a request (its caller got a signal) interrupts the helper's system call with a signal of our
own, so the handler sees EINTR and the caller that gave up frees its helper.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .interrupts import Early
from .operations import FUSEError

log = logging.getLogger("shuntfs")

#: The signal that interrupts a helper's system call. Its handler does nothing; what matters is that one is set
#: (without SA_RESTART), so the call returns EINTR instead of resuming.
INTERRUPT_SIGNAL = signal.SIGRTMIN + 4
#: Helpers at most: each holds one waiting request. Past that many waiting requests, more get EWOULDBLOCK rather
#: than a queue of their own (and, over io_uring, a ring entry each).
THREADS = 32
_RESIGNAL_S = 0.05


def install_signal() -> bool:
    """Set the interrupt signal's handler; only the main thread may. False if it could not be set."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(INTERRUPT_SIGNAL) not in (signal.SIG_DFL, None):
        return True
    signal.signal(INTERRUPT_SIGNAL, lambda _signum, _frame: None)
    signal.siginterrupt(INTERRUPT_SIGNAL, True)
    return True


class BlockingPool:
    """Helper threads for requests that may wait; started on first use."""

    def __init__(self, threads: int = THREADS) -> None:
        self.threads = threads
        self._pending = 0
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # unique -> thread ident
        self._interrupted = Early()
        self.interruptible = install_signal()

    def submit(self, run: Callable[[], None]) -> bool:
        """Run ``run`` on a helper; False (and nothing run) if every helper is taken."""
        with self._lock:
            if self._pending >= self.threads:
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, "shuntfs-wait")
            self._pending += 1
            pool = self._pool
        pool.submit(self._run, run)
        return True

    def _run(self, run: Callable[[], None]) -> None:
        try:
            run()
        finally:
            with self._lock:
                self._pending -= 1

    def waiting(self) -> int:
        return len(self._running)

    def running(self, unique: int) -> _Running:
        """``with pool.running(unique):`` around the handler of a request that may wait."""
        return _Running(self, unique)

    def interrupt(self, unique: int) -> None:
        """The kernel's INTERRUPT for ``unique``: interrupt its helper if it waits here, else remember it."""
        with self._lock:
            ident = self._running.get(unique)
            if ident is None:
                self._interrupted.add(unique)
                return
        self._signal(unique, ident, 20)

    def _signal(self, unique: int, ident: int, retries: int) -> None:
        # A signal that lands before the helper enters its system call is lost, so repeat it while it still runs.
        # The helper leaves the registry under the lock, so it is signalled only while it still serves that request.
        if not self.interruptible:
            return
        with self._lock:
            if self._running.get(unique) != ident:
                return
            try:
                signal.pthread_kill(ident, INTERRUPT_SIGNAL)
            except (ProcessLookupError, OSError):
                return
        if retries:
            timer = threading.Timer(_RESIGNAL_S, self._signal, (unique, ident, retries - 1))
            timer.daemon = True
            timer.start()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class _Running:
    __slots__ = ("pool", "unique")

    def __init__(self, pool: BlockingPool, unique: int) -> None:
        self.pool = pool
        self.unique = unique

    def __enter__(self) -> None:
        pool = self.pool
        with pool._lock:
            if pool._interrupted.take(self.unique):
                raise FUSEError(errno.EINTR)  # interrupted before it got here
            pool._running[self.unique] = threading.get_ident()

    def __exit__(self, *exc: object) -> None:
        with self.pool._lock:
            self.pool._running.pop(self.unique, None)
