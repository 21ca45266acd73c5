"""``async def`` handlers on asyncio.

A filesystem may write any of its :class:`~shuntfs.Operations` methods as ``async def`` (and ``readdir`` as an async
generator). The session's worker threads still read and answer requests; each coroutine runs on one asyncio event
loop and the worker waits for its result, so a handler that awaits I/O holds one worker, not the loop, and as many
requests as there are workers (``threads=``) are in progress at once. Exceptions travel back unchanged: FUSEError
and OSError become their errno, anything else EIO and a logged traceback.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

from .interrupts import Cancellations, current
from .operations import FUSEError, Operations

_METHODS = [name for name, value in vars(Operations).items() if callable(value) and not name.startswith("_")]


def _is_async(value: object) -> bool:
    return inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)


def async_methods(ops: object, base: type = Operations) -> list[str]:
    """The handlers of ``ops`` (those ``base`` defines) written as coroutines or async generators."""
    names = [name for name, value in vars(base).items() if callable(value) and not name.startswith("_")]
    return [name for name in names if _is_async(getattr(ops, name, None))]


class SyncProxy:
    """``target`` with its ``async def`` methods callable from a worker thread: they run on ``loop`` and the caller
    waits for the result (the path bridge calls a PathOperations through one)."""

    def __init__(
        self, target: object, loop: asyncio.AbstractEventLoop, cancellations: Cancellations | None = None
    ) -> None:
        self._target = target
        self._loop = loop
        self._cancellations = cancellations

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if _is_async(value):
            value = _sync(value, self._loop, self._cancellations)
            setattr(self, name, value)  # wrapped once
        return value


def _sync(
    method: Callable[..., Any], loop: asyncio.AbstractEventLoop, cancellations: Cancellations | None = None
) -> Callable[..., Any]:
    """``method`` called from a worker thread: run on ``loop``, waited for; an INTERRUPT of the request the worker
    serves cancels it (answered EINTR)."""

    def wait(coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        unique = current()
        if cancellations is None or not unique:
            return future.result()
        cancellations.track(unique, future)
        try:
            return future.result()
        except CancelledError:
            raise FUSEError(errno.EINTR) from None
        finally:
            cancellations.done(unique)

    if inspect.isasyncgenfunction(method):
        async def collect(*args: Any) -> list:
            return [item async for item in method(*args)]

        def run_generator(*args: Any) -> Any:
            return iter(wait(collect(*args)))
        return run_generator

    def run(*args: Any) -> Any:
        return wait(method(*args))
    return run


def bridge(
    ops: Operations, loop: asyncio.AbstractEventLoop, cancellations: Cancellations | None = None
) -> Operations:
    """``ops`` as the dispatcher calls it: an Operations whose overridden handlers forward to ``ops``, the async ones
    through ``loop``. Handlers ``ops`` does not override stay the base class's, so the dispatcher still sees which
    ones a filesystem implements."""
    own = type(ops)
    methods: dict[str, Any] = {}
    for name in _METHODS:
        if getattr(own, name, None) is getattr(Operations, name):
            continue
        target = getattr(ops, name)
        if _is_async(target):
            target = _sync(target, loop, cancellations)
        methods[name] = staticmethod(target)

    def connection(self: Operations) -> Any:
        return ops.connection

    def set_connection(self: Operations, value: Any) -> None:
        ops.connection = value

    methods["connection"] = property(connection, set_connection)
    return type(f"Bridged{own.__name__}", (Operations,), methods)()


class LoopThread:
    """A private event loop on its own thread, for async handlers served by the blocking :meth:`Session.serve`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="shuntfs-asyncio", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
