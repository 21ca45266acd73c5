"""The kernel's INTERRUPT: a caller that got a signal gives up on its request.

The dispatcher notes which request each thread serves (:func:`serving`). An ``async def`` handler's coroutine is
registered by the async bridge; the INTERRUPT cancels it, and the handler, which sees CancelledError, is answered
EINTR. A sync handler may ask :func:`interrupted` (or ``ctx.interrupted``) between steps of a long job and give up
with EINTR. An INTERRUPT that arrives before the handler started (the kernel sends it on another thread) is
remembered for a while, and cancels the coroutine as soon as it is registered. One for a request this daemon has not
read yet is answered EAGAIN, which makes the kernel send it again later, as the protocol asks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

_current = threading.local()


class Early:
    """INTERRUPTs for requests not (yet) being served where they were looked for: the newest ``size`` are kept
    (most are for requests that already replied), so one that overtook its request still reaches it. The caller
    holds its own lock."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._uniques: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._uniques)

    def add(self, unique: int) -> None:
        self._uniques[unique] = None
        if len(self._uniques) > self.size:
            self._uniques.popitem(last=False)

    def __contains__(self, unique: int) -> bool:
        return unique in self._uniques

    def take(self, unique: int) -> bool:
        """Whether ``unique`` was interrupted before it got here (and forget it)."""
        return self._uniques.pop(unique, 1) is None


def serving(request: Any, cancellations: Cancellations | None) -> None:
    """The calling thread now serves ``request`` (a protocol Request), of the session whose INTERRUPTs
    ``cancellations`` records."""
    _current.request = request
    _current.cancellations = cancellations


def current() -> int:
    """The unique of the request the calling thread serves (0 if none)."""
    request = getattr(_current, "request", None)
    return 0 if request is None else request.unique


def current_request() -> Any:
    """The request the calling thread serves (its ``uid``, ``gid``, ``pid``, ``unique``), or None."""
    return getattr(_current, "request", None)


def interrupted() -> bool:
    """Whether the request the calling thread serves was interrupted (its caller got a signal and no longer waits
    for the answer). A sync handler that works for long may ask between steps and raise ``FUSEError(EINTR)``."""
    request = getattr(_current, "request", None)
    cancellations = getattr(_current, "cancellations", None)
    return request is not None and cancellations is not None and cancellations.interrupted(request.unique)


class Cancellations:
    """The INTERRUPTs of one session: the futures of coroutines that serve requests, by request, and the requests
    that were interrupted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[int, Future] = {}
        self._early = Early()
        #: the newest request read so far (uniques only grow): an INTERRUPT for a newer one came before it
        self.newest = 0

    def interrupted(self, unique: int) -> bool:
        with self._lock:
            future = self._futures.get(unique)
            return unique in self._early or (future is not None and future.cancelled())

    def track(self, unique: int, future: Future) -> None:
        with self._lock:
            if self._early.take(unique):
                future.cancel()  # interrupted before it started
                return
            self._futures[unique] = future

    def done(self, unique: int) -> None:
        with self._lock:
            self._futures.pop(unique, None)

    def interrupt(self, unique: int) -> bool:
        """The kernel's INTERRUPT for ``unique``; False when that request has not been read yet (answer EAGAIN)."""
        if unique > self.newest:
            return False
        with self._lock:
            future = self._futures.get(unique)
            if future is None:
                self._early.add(unique)
                return True
        future.cancel()
        return True
