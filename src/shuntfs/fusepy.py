"""fusepy's API on shuntfs: an unmodified fusepy 3.0.1 or mfusepy 3.x filesystem runs here without libfuse.

    from shuntfs.fusepy import FUSE, Operations, FuseOSError, LoggingMixIn, fuse_get_context

Code written ``from fuse import ...`` (fusepy) or ``import mfusepy`` runs unchanged once the name points here::

    import sys, shuntfs.fusepy
    sys.modules["fuse"] = sys.modules["mfusepy"] = shuntfs.fusepy

What fusepy code relies on, and what this module does with it:

- ``Operations.__call__(op, path, *args)`` is the dispatch point (fusepy's loopback example prefixes its root there;
  :class:`LoggingMixIn` logs there). Overriding it works as in fusepy.
- A method counts as implemented only when the filesystem's class overrides it (one set to None does not): the rest
  answer as libfuse does for a missing callback (ENOSYS; success for open, opendir, release, flush, fsync, access;
  ENOTSUP for extended attributes).
- ``create(path, mode)`` and ``create(path, mode, fi)`` are told apart by the class's own signature, so wrappers
  that take ``*args`` do not hide it; with ``raw_fi`` the file info object is passed and its ``fh`` set by you.
- ``use_ns``: ``getattr`` times and ``utimens`` times are integer nanoseconds; otherwise float seconds.
  ``utimens(path, None)`` means "now" for both; a time left alone (``UTIME_OMIT``) is passed as its current value.
- ``readdir`` may return or yield names, ``(name, attrs, offset)`` or ``(name, attrs)`` tuples; mfusepy's
  ``readdir_with_offset(path, offset, fh)`` is used when defined. A directory is listed once per ``opendir`` and the
  kernel's offsets index that listing, so large directories neither loop nor lose entries. Only ``st_mode`` of
  ``attrs`` would be used by libfuse, so the attributes shown come from ``getattr``.
- ``FuseOSError(e)`` and any ``OSError`` answer their errno (``ENOATTR`` is ENODATA here); other exceptions answer
  EINVAL and are logged with their traceback, as in fusepy.
- ``fuse_get_context()`` is ``(uid, gid, pid)`` of the request being served, ``(0, 0, 0)`` outside one.
- ``flag_nullpath_ok``: a file unlinked while open is really unlinked and its open handle's calls get ``path=None``;
  with ``flag_nopath`` too, calls on open files always get ``path=None``. Without them, an unlinked open file is
  renamed to a hidden name until released (libfuse's "hide").
- ``lock`` and ``flock``: the kernel keeps locks on the mount itself (as for a libfuse filesystem without lock
  callbacks). ``ioctl(path, cmd, arg, fh, flags, data)`` gets ``data`` as a ctypes buffer of the ioctl's size.
- **Passthrough**: ``FUSE(ops, mnt, passthrough=True)`` takes an integer ``fh`` returned by ``open``/``create`` that
  is an open regular file's descriptor as the file's backing file: the kernel then reads and writes it without
  calling ``read``/``write`` (a loopback runs at native speed). Any other ``fh`` is served by your methods as
  usual. Your ``release`` still closes the descriptor.

``FUSE(ops, mountpoint, foreground=..., debug=..., nothreads=..., allow_other=..., ro=..., fsname=..., raw_fi=...,
encoding=..., passthrough=..., **options)``: other keywords are the ``-o`` options of :func:`shuntfs.main` (True for
a flag, a value otherwise); an unknown one raises ValueError before anything is mounted. It returns after the
filesystem is unmounted (``fusermount3 -u``, ``umount``, SIGINT/SIGTERM when called from the main thread,
:func:`fuse_exit`), from any thread. Without ``foreground`` the process goes into the background as fusepy's does:
the caller's process exits once the mount is live, and the daemon serves it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import inspect
import logging
import os
import stat
import sys
import time
from typing import Any, Iterable

from .command import build, run, setup_logging
from .operations import EntryAttributes, FileInfo, FUSEError, request_context
from .options import Config, UsageError, apply_option, keyword_word
from .paths import UTIME_NOW, UTIME_OMIT, PathOperations, attributes_of, seconds_of

__all__ = ["FUSE", "Operations", "FuseOSError", "LoggingMixIn", "fuse_get_context", "fuse_exit", "ENOTSUP",
           "ENOATTR", "log_callback", "overrides"]

log = logging.getLogger("fuse")
ENOTSUP = errno.ENOTSUP
ENOATTR = errno.ENODATA  # Linux has no ENOATTR: xattr calls answer ENODATA for a missing attribute


class FuseOSError(OSError):
    def __init__(self, errno: int) -> None:
        super().__init__(errno, os.strerror(errno))


def fuse_get_context() -> tuple[int, int, int]:
    """``(uid, gid, pid)`` of the caller whose request is being served (``(0, 0, 0)`` outside a request)."""
    ctx = request_context()
    return (0, 0, 0) if ctx is None else (ctx.uid, ctx.gid, ctx.pid)


_running: list[Any] = []  # sessions of FUSE() calls in progress, for fuse_exit


def fuse_exit() -> None:
    """Unmount the filesystem(s) this process serves through :class:`FUSE`; the FUSE() call then returns."""
    for session in list(_running):
        session.unmount()


class Operations:
    """fusepy's base class. Override what your filesystem supports; only overridden methods count as implemented.

    The defaults below are fusepy's and document each method's signature; they answer only when you call them
    yourself (``super().open(path, flags)``)."""

    def __call__(self, op: str, *args: Any) -> Any:
        if not hasattr(self, op):
            raise FuseOSError(errno.EFAULT)
        return getattr(self, op)(*args)

    def access(self, path: str, amode: int) -> int:
        return 0

    bmap = None

    def chmod(self, path: str, mode: int) -> int:
        raise FuseOSError(errno.EROFS)

    def chown(self, path: str, uid: int, gid: int) -> int:
        raise FuseOSError(errno.EROFS)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        """Without ``raw_fi``: return a file handle (``fi`` is the open flags). With it: set ``fi.fh``."""
        raise FuseOSError(errno.EROFS)

    def destroy(self, path: str) -> None:
        """The filesystem is going away (path is always "/")."""

    def flush(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """A dict with the keys of stat(2)'s struct (times float seconds, or int nanoseconds with ``use_ns``)."""
        if path != "/":
            raise FuseOSError(errno.ENOENT)
        return dict(st_mode=(stat.S_IFDIR | 0o755), st_nlink=2)

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        raise FuseOSError(ENOTSUP)

    def init(self, path: str) -> None:
        """The mount is live (path is always "/"): start threads here rather than in __init__."""

    def ioctl(self, path: str, cmd: int, arg: int, fh: int, flags: int, data: Any) -> int:
        raise FuseOSError(errno.ENOTTY)

    def link(self, target: str, source: str) -> int:
        """Make ``target`` a further name of ``source`` (``ln source target``)."""
        raise FuseOSError(errno.EROFS)

    def listxattr(self, path: str) -> Iterable[str]:
        return []

    lock = None

    def mkdir(self, path: str, mode: int) -> int:
        raise FuseOSError(errno.EROFS)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise FuseOSError(errno.EROFS)

    def open(self, path: str, flags: int) -> int:
        """Return a file handle (with ``raw_fi``: ``open(path, fi)`` sets ``fi.fh``)."""
        return 0

    def opendir(self, path: str) -> int:
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        raise FuseOSError(errno.EIO)

    def readdir(self, path: str, fh: int) -> Iterable[Any]:
        """Names, or (name, attrs, offset) tuples."""
        return [".", ".."]

    def readlink(self, path: str) -> str:
        raise FuseOSError(errno.ENOENT)

    def release(self, path: str, fh: int) -> int:
        return 0

    def releasedir(self, path: str, fh: int) -> int:
        return 0

    def removexattr(self, path: str, name: str) -> int:
        raise FuseOSError(ENOTSUP)

    def rename(self, old: str, new: str) -> int:
        raise FuseOSError(errno.EROFS)

    def rmdir(self, path: str) -> int:
        raise FuseOSError(errno.EROFS)

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        raise FuseOSError(ENOTSUP)

    def statfs(self, path: str) -> dict[str, int]:
        """A dict with the keys of statvfs(3)'s struct."""
        return {}

    def symlink(self, target: str, source: str) -> int:
        """Make ``target`` a symbolic link whose content is ``source`` (``ln -s source target``)."""
        raise FuseOSError(errno.EROFS)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        raise FuseOSError(errno.EROFS)

    def unlink(self, path: str) -> int:
        raise FuseOSError(errno.EROFS)

    def utimens(self, path: str, times: tuple[Any, Any] | None = None) -> int:
        """``times`` is (atime, mtime), or None for now."""
        return 0

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        raise FuseOSError(errno.EROFS)


class LoggingMixIn:
    """Logs every call at DEBUG on the ``fuse.log-mixin`` logger: ``-> op path args`` and ``<- op result``."""

    log = logging.getLogger("fuse.log-mixin")

    def __call__(self, op: str, path: Any, *args: Any) -> Any:
        self.log.debug("-> %s %s %s", op, path, repr(args))
        ret: Any = "[Unhandled Exception]"
        try:
            ret = getattr(self, op)(path, *args)
            return ret
        except OSError as e:
            ret = str(e)
            raise
        finally:
            self.log.debug("<- %s %s", op, repr(ret))


def log_callback(method: Any) -> Any:
    """mfusepy's decorator: log calls of one method as :class:`LoggingMixIn` does."""
    @functools.wraps(method)
    def logged(*args: Any) -> Any:
        LoggingMixIn.log.debug("-> %s %s", method.__name__, repr(args[1:]))
        ret: Any = "[Unhandled Exception]"
        try:
            ret = method(*args)
            return ret
        except OSError as e:
            ret = str(e)
            raise
        finally:
            LoggingMixIn.log.debug("<- %s %s", method.__name__, repr(ret))
    return logged


def overrides(parent: type) -> Any:
    """mfusepy's decorator: check that the method exists in ``parent``."""
    def check(method: Any) -> Any:
        assert callable(getattr(parent, method.__name__, None)), method.__name__
        return method
    return check


class fuse_file_info:
    """What ``raw_fi`` filesystems get instead of a handle: set ``fh`` (and ``direct_io``, ``keep_cache``,
    ``nonseekable`` if you want them) in ``open``/``create``; ``flags`` are the open flags."""

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.fh = 0
        self.direct_io = False
        self.keep_cache = False
        self.nonseekable = False
        self.flush = False
        self.writepage = False

    def __repr__(self) -> str:
        return f"fuse_file_info(flags={self.flags:#o}, fh={self.fh})"


#: Calls a filesystem may leave out that still succeed, as in libfuse. (flush, fsync, fsyncdir and access answer
#: ENOSYS when left out: the kernel then takes them as done and stops sending them.)
_DEFAULTS_SUCCEED = {"open", "opendir", "release", "releasedir", "init", "destroy", "statfs"}
_XATTRS = {"getxattr", "setxattr", "listxattr", "removexattr"}


def _implemented(ops: Any, name: str) -> bool:
    """Whether ``ops`` really implements ``name``: defined other than by our base class, and not None."""
    own = getattr(type(ops), name, None)
    if own is None and name in getattr(ops, "__dict__", {}):
        own = ops.__dict__[name]
    return own is not None and own is not getattr(Operations, name, None)


def _positional_count(function: Any) -> int | None:
    """How many positional parameters ``function`` takes after self (None: any number)."""
    try:
        parameters = list(inspect.signature(inspect.unwrap(function)).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional and positional[0].name == "self":
        positional = positional[1:]
    return len(positional)


class FusepyAdapter(PathOperations):
    """A fusepy :class:`Operations` object as a :class:`~shuntfs.PathOperations`."""

    def __init__(self, ops: Any, raw_fi: bool = False, encoding: str = "utf-8", passthrough: bool = False) -> None:
        self.ops = ops
        self.raw_fi = raw_fi
        self.encoding = encoding
        self.passthrough = passthrough
        self.use_ns = bool(getattr(ops, "use_ns", False))
        self.nullpath_ok = bool(getattr(ops, "flag_nullpath_ok", False))
        self.nopath = self.nullpath_ok and bool(getattr(ops, "flag_nopath", False))
        # Calls go through ops(name, ...) where the class routes them itself (fusepy's dispatch point).
        self._routed = callable(ops) and type(ops).__call__ is not Operations.__call__
        self._has = {name for name in dir(Operations) if not name.startswith("_") and _implemented(ops, name)}
        for extra in ("readdir_with_offset", "init_with_config"):
            if callable(getattr(ops, extra, None)):
                self._has.add(extra)
        count = _positional_count(getattr(type(ops), "create", None)) if "create" in self._has else None
        self._create_takes_flags = count is None or count >= 3
        self._utime_now = 0.0

    # ---- calling the filesystem as fusepy does
    def _call(self, name: str, *args: Any) -> Any:
        if name not in self._has:
            if name in _XATTRS:
                raise FUSEError(errno.ENOTSUP)
            if name in _DEFAULTS_SUCCEED:
                return 0
            raise FUSEError(errno.ENOSYS)
        try:
            if self._routed:
                return self.ops(name, *args)
            return getattr(self.ops, name)(*args)
        except OSError as e:
            if isinstance(e.errno, int) and e.errno > 0:
                raise
            log.exception("%s raised an OSError without an errno: answered EINVAL", name)
            raise FUSEError(errno.EINVAL) from None
        except FUSEError:
            raise
        except Exception:
            log.exception("%s failed: answered EINVAL", name)
            raise FUSEError(errno.EINVAL) from None

    # ---- PathOperations
    def init(self) -> None:
        if "init_with_config" in self._has:
            self._call("init_with_config", None, None)
        else:
            self._call("init", "/")

    def destroy(self) -> None:
        self._call("destroy", "/")

    def getattr(self, path: str, fh: Any = None) -> EntryAttributes:
        value = self._call("getattr", path, fh)
        if self.use_ns and not isinstance(value, EntryAttributes):
            value = {(f"{key}_ns" if key in ("st_atime", "st_mtime", "st_ctime") else key): v
                     for key, v in value.items()}
        return attributes_of(value, 1.0)

    def readlink(self, path: str) -> str:
        return self._call("readlink", path)

    def mknod(self, path: str, mode: int, rdev: int) -> None:
        self._call("mknod", path, mode, rdev)

    def mkdir(self, path: str, mode: int) -> None:
        self._call("mkdir", path, mode)

    def unlink(self, path: str) -> None:
        self._call("unlink", path)

    def rmdir(self, path: str) -> None:
        self._call("rmdir", path)

    def symlink(self, path: str, target: str) -> None:
        self._call("symlink", path, target)

    def rename(self, old: str, new: str, flags: int) -> None:
        if flags:
            raise FUSEError(errno.EINVAL)  # fusepy's rename(old, new) cannot honour RENAME_NOREPLACE/EXCHANGE
        self._call("rename", old, new)

    def link(self, path: str, new: str) -> None:
        self._call("link", new, path)

    def chmod(self, path: str, mode: int, fh: Any) -> None:
        self._call("chmod", path, mode)

    def chown(self, path: str, uid: int, gid: int, fh: Any) -> None:
        self._call("chown", path, uid, gid)

    def truncate(self, path: str, length: int, fh: Any) -> None:
        if fh is None:
            self._call("truncate", path, length)
        else:
            self._call("truncate", path, length, fh)

    def utimens(self, path: str, atime_ns: int, mtime_ns: int, fh: Any) -> None:
        if atime_ns == UTIME_NOW and mtime_ns == UTIME_NOW:
            self._call("utimens", path, None)
            return
        now = time.time_ns()
        if UTIME_OMIT in (atime_ns, mtime_ns):
            current = self.getattr(path, fh)
            atime_ns = current.st_atime_ns if atime_ns == UTIME_OMIT else atime_ns
            mtime_ns = current.st_mtime_ns if mtime_ns == UTIME_OMIT else mtime_ns
        times = [now if t == UTIME_NOW else t for t in (atime_ns, mtime_ns)]
        if not self.use_ns:
            self._call("utimens", path, (seconds_of(times[0]), seconds_of(times[1])))
        else:
            self._call("utimens", path, (times[0], times[1]))

    def _opened(self, answer: Any, fi: fuse_file_info | None) -> FileInfo:
        if fi is not None:
            return FileInfo(fh=fi, direct_io=bool(fi.direct_io), keep_cache=bool(fi.keep_cache),
                            nonseekable=bool(fi.nonseekable))
        fh = answer if answer is not None else 0
        if self.passthrough and isinstance(fh, int) and fh >= 0:
            try:
                if stat.S_ISREG(os.fstat(fh).st_mode):
                    return FileInfo(fh=fh, passthrough_fd=fh)
            except OSError:
                pass  # not a descriptor: a handle like any other
        return FileInfo(fh=fh)

    def open(self, path: str, flags: int) -> FileInfo:
        if self.raw_fi:
            fi = fuse_file_info(flags)
            self._call("open", path, fi)
            return self._opened(None, fi)
        return self._opened(self._call("open", path, flags), None)

    def create(self, path: str, mode: int, flags: int) -> FileInfo:
        mode |= stat.S_IFREG
        if self.raw_fi:
            fi = fuse_file_info(flags)
            self._call("create", path, mode, fi)
            return self._opened(None, fi)
        if self._create_takes_flags:
            return self._opened(self._call("create", path, mode, flags), None)
        return self._opened(self._call("create", path, mode), None)

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        return self._call("read", path, size, offset, fh)

    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
        return self._call("write", path, data, offset, fh)

    def flush(self, path: str, fh: Any) -> None:
        self._call("flush", path, fh)

    def release(self, path: str, fh: Any) -> None:
        self._call("release", path, fh)

    def fsync(self, path: str, datasync: bool, fh: Any) -> None:
        self._call("fsync", path, int(datasync), fh)

    def fallocate(self, path: str, mode: int, offset: int, length: int, fh: Any) -> None:
        if "fallocate" not in self._has:
            raise FUSEError(errno.EOPNOTSUPP)
        self._call("fallocate", path, mode, offset, length, fh)

    def opendir(self, path: str) -> Any:
        return self._call("opendir", path)

    def readdir(self, path: str, fh: Any) -> list[str]:
        if "readdir_with_offset" in self._has:
            items = self._call("readdir_with_offset", path, 0, fh)
        else:
            items = self._call("readdir", path, fh)
        names = []
        for item in items:
            name = item if isinstance(item, str) else item[0]
            names.append(name.decode(self.encoding) if isinstance(name, bytes) else name)
        return names

    def releasedir(self, path: str, fh: Any) -> None:
        self._call("releasedir", path, fh)

    def fsyncdir(self, path: str, datasync: bool, fh: Any) -> None:
        self._call("fsyncdir", path, int(datasync), fh)

    def statfs(self, path: str) -> Any:  # a dict, made a StatvfsData by the bridge
        return self._call("statfs", path)

    def access(self, path: str, mode: int) -> None:
        self._call("access", path, mode)

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        self._call("setxattr", path, name, value, flags)

    def getxattr(self, path: str, name: str) -> bytes:
        value = self._call("getxattr", path, name)
        return value.encode(self.encoding) if isinstance(value, str) else bytes(value)

    def listxattr(self, path: str) -> list[str]:
        return list(self._call("listxattr", path) or [])

    def removexattr(self, path: str, name: str) -> None:
        self._call("removexattr", path, name)

    def ioctl(self, path: str, cmd: int, arg: int, fh: Any, flags: int, data: bytes,
              out_size: int) -> tuple[int, bytes]:
        if "ioctl" not in self._has:
            raise FUSEError(errno.ENOTTY)
        # A real buffer, as libfuse gives: the filesystem reads and writes it with ctypes.memmove.
        buffer = ctypes.create_string_buffer(data, max(len(data), out_size, 1))
        result = self._call("ioctl", path, cmd, arg, fh, flags, buffer)
        return int(result or 0), buffer.raw[:out_size]


class FUSE:
    """Mount ``operations`` at ``mountpoint`` and serve it until it is unmounted (see the module's docstring)."""

    OPTIONS = (("foreground", "-f"), ("debug", "-d"), ("nothreads", "-s"))

    def __init__(
        self, operations: Any, mountpoint: str, raw_fi: bool = False, encoding: str = "utf-8",
        passthrough: bool = False, **kwargs: Any,
    ) -> None:
        self.operations = operations
        self.raw_fi = raw_fi
        self.encoding = encoding
        config = Config(mountpoint=mountpoint, passthrough=passthrough)
        config.foreground = bool(kwargs.pop("foreground", False))
        config.debug = bool(kwargs.pop("debug", False))
        if kwargs.pop("nothreads", False):
            config.threads = 1
        kwargs.setdefault("fsname", type(operations).__name__)
        try:
            for key, value in kwargs.items():
                word = keyword_word(key, value)
                if word is not None:
                    apply_option(config, word)
            if config.fuse_words or config.remount:
                raise UsageError(f"option {(config.fuse_words or ['remount'])[0]!r} cannot be given to FUSE()")
            if config.allow_other:
                config.default_permissions = True
            adapter = FusepyAdapter(operations, raw_fi, encoding, passthrough)
            ops = build(adapter, config)
        except UsageError as e:
            raise ValueError(f"FUSE: {e}") from None
        if config.debug:
            setup_logging(config, type(operations).__name__)
        failure: list[str] = []
        tell = None if config.foreground or config.debug else _background()

        def report(message: str | None) -> None:
            if tell is not None:
                tell(message)
            elif message:
                failure.append(message)

        mine: list[Any] = []

        def serving(session: Any) -> None:
            mine.append(session)
            _running.append(session)

        try:
            code = run(config, ops, report, on_session=serving)
        finally:
            for session in mine:
                _running.remove(session)
        if code:
            raise RuntimeError(f"FUSE: {failure[0] if failure else 'serving ' + mountpoint + ' failed'}")


def _background() -> Any:
    """Go into the background as libfuse's fuse_main does: a child serves; the caller's process exits once the
    mount is live (status 0) or failed (status 1, the reason on stderr). Returns the child's way to say which."""
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        if message == "ok":
            os._exit(0)
        sys.stderr.write(f"FUSE: {message or 'the daemon exited during start-up'}\n")
        sys.stderr.flush()
        os._exit(1)
    os.close(read_end)
    os.setsid()
    os.chdir("/")

    def tell(message: str | None) -> None:
        os.write(write_end, b"ok" if message is None else message.encode())
        os.close(write_end)
        if message is None:  # as libfuse's daemon: nothing holds the caller's terminal or pipes
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)

    return tell
