"""From request bytes to reply bytes: decode, run the opcode's handler (an Operations call), answer.

:meth:`Dispatcher.handle` is the one path a request takes, whatever the transport: both the /dev/fuse loop and the
io_uring queues read, hand the bytes to it, and write what it returns. A handler returns its reply's payload
(:data:`Payload`) or raises ``FUSEError``/``OSError``. The dispatcher also owns what the library promises users:
open-file records, the backing registry, and userspace I/O on ``passthrough_fd`` files the kernel cannot serve.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import stat
import threading
import time
from typing import Any, Callable, Union

from . import abi, credentials, protocol
from .abi import InitFlag, Opcode, OpenFlag
from .backing import BackingRegistry
from .blocking import BlockingPool
from .control_server import CONTROL_XATTR
from .interrupts import Cancellations, serving
from .operations import (
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
    RequestContext,
    SetattrFields,
    StatxAttributes,
    WouldBlock,
    dtype_of,
)
from .protocol import ProtocolError, Request

log = logging.getLogger("shuntfs")
trace = logging.getLogger("shuntfs.trace")

#: A handler's answer for requests that get no reply at all.
NO_REPLY = object()
#: What a handler returns: ``bytes`` (the payload), another buffer (a ``bytearray``, or a ``memoryview``, e.g. of
#: ``Request.out`` where the handler put the payload in place: sent without a copy), a list of buffers (the payload
#: in parts), ``None`` (an empty reply) or :data:`NO_REPLY`.
Payload = Any
#: A whole reply message: bytes, or a list of buffers whose first is the header (for writev).
Reply = Union[bytes, list]


class Later:
    """:meth:`Dispatcher.handle`'s answer for a request to be served off the calling thread, by
    :meth:`Dispatcher.finish` on a helper: one whose handler may block for long (when the transport asked for
    that), or whose handler would wait on a user (``waits``: it raised WouldBlock; see operations)."""

    __slots__ = ("request", "waits")

    def __init__(self, request: Request, waits: bool) -> None:
        self.request = request
        self.waits = waits


class OpenFile:
    """The library's record of one open file: the handler's fh, the fd it delegated (or -1), its inode."""

    __slots__ = ("fh", "fd", "nodeid", "backing_id")

    def __init__(self, fh: int, fd: int, nodeid: int, backing_id: int) -> None:
        self.fh = fh
        self.fd = fd
        self.nodeid = nodeid
        self.backing_id = backing_id


def attr_fields(a: EntryAttributes) -> tuple:
    ino = a.st_ino if a.shown_ino is None else a.shown_ino
    return protocol.attr_fields(
        ino, a.st_size, a.st_blocks, a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns,
        a.st_mode, a.st_nlink, a.st_uid, a.st_gid, a.st_rdev, a.st_blksize,
    )


def entry_bytes(a: EntryAttributes) -> bytes:
    return protocol.entry_out_of(
        a.st_ino, a.generation, a.entry_timeout, a.attr_timeout, a.st_ino if a.shown_ino is None else a.shown_ino,
        a.st_size, a.st_blocks, a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns, a.st_mode, a.st_nlink, a.st_uid,
        a.st_gid, a.st_rdev, a.st_blksize,
    )


_DOT_ENTRY = protocol.entry_out(0, 0, 0, 0, protocol.NO_ATTR)
_CACHED_LISTING = OpenFlag.CACHE_DIR | OpenFlag.KEEP_CACHE  # see Operations.cache_listings
_MAX_OPCODE = abi.MAX_OPCODE


class Dispatcher:
    """Turns requests into Operations calls. One instance serves every worker thread of a session."""

    def __init__(
        self,
        ops: Operations,
        registry: BackingRegistry,
        config: protocol.InitConfig,
        blocking: BlockingPool | None = None,
        cancellations: Cancellations | None = None,
    ) -> None:
        self.ops = ops
        self.registry = registry
        self.config = config
        self.negotiated: protocol.Negotiated | None = None
        self.init_done = threading.Event()
        self._files: dict[int, OpenFile] = {}
        self._next_fh = itertools.count(1).__next__
        self._ops_fsync_overridden = type(ops).fsync is not Operations.fsync
        #: HANDLE_KILLPRIV_V2 was negotiated: clearing set-id bits on writes is ours
        self._clear_setid = False
        #: the control socket's name, told to whoever asks the root for CONTROL_XATTR
        self.control_name: bytes | None = None
        #: helper threads for requests that would wait on a user; their waits end on the kernel's INTERRUPT
        self.blocking = blocking
        #: the session's INTERRUPTs: async handlers' coroutines are cancelled, sync ones may ask (interrupts)
        self.cancellations = cancellations or Cancellations()
        #: sends a notification message to the kernel (the session's)
        self.notify: Callable[[bytes], bool] | None = None
        #: each opcode's handler (None: ENOSYS), from the opcode table
        self.table: list[Callable[[Request], Payload] | None] = [
            getattr(self, "_" + info.handler) if info.handler else None for info in protocol.OPCODES
        ]
        self._slow = frozenset(info.opcode for info in protocol.OPCODES if info.slow)
        self.debug = trace.isEnabledFor(logging.DEBUG)

    # ---- the request path
    def handle(self, data: memoryview, out: memoryview | None, counts: list[int], handoff: bool = False) -> Any:
        """Serve one request, given as the bytes the transport read: its reply (:data:`Reply`), None when it takes
        none, or :class:`Later` when it is to finish on another thread (with ``handoff``, the transport asks for
        that for handlers that may block for long). ``out`` is where a handler may put its payload in place;
        ``counts`` (per opcode) is the calling thread's."""
        started = time.perf_counter() if self.debug else 0.0
        try:
            req = protocol.decode(data)
        except ProtocolError as e:
            return self.malformed(data, e)
        opcode = req.opcode
        counts[opcode if opcode <= _MAX_OPCODE else 0] += 1
        cancellations = self.cancellations
        if req.unique > cancellations.newest and not req.unique & 1:  # odd: an INTERRUPT's own
            cancellations.newest = req.unique
        if handoff and opcode in self._slow:
            return Later(req, False)
        req.out = out
        return self._run(req, started, True)

    def finish(self, later: Later) -> Reply | None:
        """On a helper thread: serve a request that :meth:`handle` answered with ``later``; its reply."""
        req = later.request
        req.blocking = later.waits
        return self._run(req, time.perf_counter() if self.debug else 0.0, False)

    def malformed(self, data: memoryview, e: Exception) -> Reply | None:
        """The answer to bytes that do not decode: EIO if their header can be read and takes a reply."""
        log.error("malformed request (%d bytes): %s", len(data), e)
        head = protocol.peek_header(data)
        if head is None or head[0] in protocol.NO_REPLY:
            return None
        return protocol.reply_error(head[1], errno.EIO)

    def _run(self, req: Request, started: float, may_defer: bool) -> Any:
        opcode = req.opcode
        handler = self.table[opcode] if opcode <= _MAX_OPCODE else None
        error = 0
        try:
            if handler is None:
                if opcode in protocol.NO_REPLY:
                    return None
                raise FUSEError(errno.ENOSYS)
            serving(req, self.cancellations)
            if req.blocking and self.blocking is not None:
                with self.blocking.running(req.unique):
                    payload = handler(req)
            else:
                payload = handler(req)
        except WouldBlock:
            if may_defer and opcode != Opcode.WRITE:  # a WRITE's data lives in the transport's buffer
                req.out = None  # the transport's buffer serves its next request meanwhile
                return Later(req, True)
            error = errno.EWOULDBLOCK
        except FUSEError as e:
            error = e.errno
        except OSError as e:
            error = e.errno or errno.EIO
        except Exception:
            log.exception("handler for %r failed", req)
            error = errno.EIO
        if self.debug:
            _trace(req, error, started)
        if error:
            return protocol.reply_error(req.unique, error)
        if payload is None:
            return protocol.reply_empty(req.unique)
        kind = type(payload)
        if kind is bytes:
            return protocol.reply_bytes(req.unique, payload)
        if kind is list:
            payload.insert(0, protocol.reply_header(req.unique, sum(map(len, payload))))
            return payload
        if payload is NO_REPLY:
            return None
        return [protocol.reply_header(req.unique, len(payload)), payload]  # bytearray, memoryview

    # ---- helpers
    @staticmethod
    def _ctx(req: Request) -> RequestContext:
        return RequestContext(req.uid, req.gid, req.pid, req.unique, 0, req.blocking)

    def _file(self, fh: int) -> OpenFile:
        record = self._files.get(fh)
        if record is None:
            raise FUSEError(errno.EBADF)
        return record

    def _user_fh(self, fh: int) -> int | None:
        record = self._files.get(fh)
        return None if record is None else record.fh

    def open_files(self) -> int:
        return len(self._files)

    def backing_files(self) -> list[dict]:
        """The registry's backing files, each named through the fd of one of its opens."""

        def fd_of(nodeid: int) -> int | None:
            # A release racing with this may close the fd first: the path then reads "?" (this is for operators).
            for record in list(self._files.values()):
                if record.nodeid == nodeid and record.fd >= 0:
                    return record.fd
            return None

        return self.registry.snapshot(fd_of)

    # ---- lifecycle
    def _init(self, req: Request) -> bytes:
        neg, payload = protocol.negotiate(req.arg, self.config)
        self.negotiated = neg
        self.registry.negotiated(bool(req.arg.flags & InitFlag.PASSTHROUGH), neg.passthrough)
        self._clear_setid = neg.has(InitFlag.HANDLE_KILLPRIV_V2)
        self.ops.connection = neg
        self.ops.init()
        self.init_done.set()
        return payload

    def _destroy(self, req: Request) -> None:
        self.ops.destroy()

    # ---- names and attributes
    def _lookup(self, req: Request) -> bytes:
        return entry_bytes(self.ops.lookup(req.nodeid, req.arg.name, self._ctx(req)))

    def _forget(self, req: Request) -> object:
        self.ops.forget([(req.nodeid, req.arg.nlookup)])
        return NO_REPLY

    def _batch_forget(self, req: Request) -> object:
        self.ops.forget(req.arg.items)
        return NO_REPLY

    def _getattr(self, req: Request) -> bytes:
        fh = self._user_fh(req.arg.fh) if req.arg.flags & abi.GETATTR_FH else None
        a = self.ops.getattr(req.nodeid, fh, self._ctx(req))
        return protocol.attr_out(a.attr_timeout, attr_fields(a))

    def _setattr(self, req: Request) -> bytes:
        s: protocol.Setattr = req.arg
        new = EntryAttributes(st_ino=req.nodeid, st_mode=s.mode or 0, st_uid=s.uid or 0, st_gid=s.gid or 0,
                              st_size=s.size or 0)
        new.st_atime_ns = s.atime_ns or 0
        new.st_mtime_ns = s.mtime_ns or 0
        new.st_ctime_ns = s.ctime_ns or 0
        fields = SetattrFields(
            s.mode is not None,
            s.uid is not None,
            s.gid is not None,
            s.size is not None,
            s.atime_ns is not None,
            s.mtime_ns is not None,
            s.ctime_ns is not None,
            # A SETATTR that changes nothing is the kernel's file_remove_privs (a write, fallocate or copy into a
            # set-id file by a caller without CAP_FSETID) once HANDLE_KILLPRIV_V2 makes that our job; root's
            # chown(-1, -1) comes as one too, and clears set-id bits natively as well.
            s.kill_suidgid or (self._clear_setid and s.changes_nothing),
        )
        fh = None if s.fh is None else self._user_fh(s.fh)
        a = self.ops.setattr(req.nodeid, new, fields, fh, self._ctx(req))
        return protocol.attr_out(a.attr_timeout, attr_fields(a))

    def _readlink(self, req: Request) -> bytes:
        return self.ops.readlink(req.nodeid, self._ctx(req))

    def _symlink(self, req: Request) -> bytes:
        return entry_bytes(self.ops.symlink(req.nodeid, req.arg.name, req.arg.target, self._ctx(req)))

    @staticmethod
    def _creator(req: Request) -> RequestContext:
        return RequestContext(req.uid, req.gid, req.pid, req.unique, req.arg.umask, req.blocking)

    def _mknod(self, req: Request) -> bytes:
        a = req.arg
        return entry_bytes(self.ops.mknod(req.nodeid, a.name, a.mode, a.rdev, self._creator(req)))

    def _mkdir(self, req: Request) -> bytes:
        return entry_bytes(self.ops.mkdir(req.nodeid, req.arg.name, req.arg.mode | stat.S_IFDIR, self._creator(req)))

    def _unlink(self, req: Request) -> None:
        self.ops.unlink(req.nodeid, req.arg.name, self._ctx(req))

    def _rmdir(self, req: Request) -> None:
        self.ops.rmdir(req.nodeid, req.arg.name, self._ctx(req))

    def _rename(self, req: Request) -> None:
        a = req.arg
        self.ops.rename(req.nodeid, a.old, a.newdir, a.new, a.flags, self._ctx(req))

    def _link(self, req: Request) -> bytes:
        return entry_bytes(self.ops.link(req.arg.oldnodeid, req.nodeid, req.arg.newname, self._ctx(req)))

    # ---- open files
    def _open_reply(self, nodeid: int, fi: FileInfo) -> bytes:
        fd = fi.passthrough_fd
        backing_id = self.registry.acquire(nodeid, fd)
        flags: int
        if backing_id:
            flags = OpenFlag.PASSTHROUGH | (OpenFlag.NOFLUSH if fi.noflush else 0)
        else:
            flags = (
                (OpenFlag.DIRECT_IO if fi.direct_io else 0)
                | (OpenFlag.KEEP_CACHE if fi.keep_cache else 0)
                | (OpenFlag.NONSEEKABLE if fi.nonseekable else 0)
                | (OpenFlag.NOFLUSH if fi.noflush else 0)
            )
        kfh = self._next_fh()
        self._files[kfh] = OpenFile(fi.fh, -1 if fd is None else fd, nodeid, backing_id)
        return protocol.open_out(kfh, flags, backing_id)

    def _opened(
        self, nodeid: int, fi: FileInfo, flags: int, entry: bytes = b"", truncated_by: Request | None = None
    ) -> bytes:
        """The reply to a successful open/create with open(2) ``flags``; a failure here still releases what the
        handler opened. ``truncated_by``: an OPEN whose O_TRUNC the kernel flagged as by a caller without
        CAP_FSETID."""
        try:
            if fi.passthrough_fd is not None:
                _check_fd_grants(fi.passthrough_fd, flags, nodeid)
            if truncated_by is not None and self._clear_setid and fi.passthrough_fd is not None:
                credentials.clear_setid_bits(fi.passthrough_fd, truncated_by.gid, truncated_by.pid)
                # the handler (opening as the caller) or the line above may have cleared set-id bits the kernel
                # still shows
                self.attributes_changed(nodeid)
            return entry + self._open_reply(nodeid, fi)
        except BaseException:
            self.ops.release(fi.fh)
            raise

    def _open(self, req: Request) -> bytes:
        # CREATE carries the kill flag for files it makes too, whose bits stay: there the handler, which knows
        # whether it truncated an existing file, must clear them.
        killed = req if req.arg.open_flags & abi.OPEN_KILL_SUIDGID else None
        flags = req.arg.flags
        return self._opened(req.nodeid, self.ops.open(req.nodeid, flags, self._ctx(req)), flags, truncated_by=killed)

    def _create(self, req: Request) -> bytes:
        a = req.arg
        fi, attrs = self.ops.create(req.nodeid, a.name, a.mode, a.flags, self._creator(req))
        return self._opened(attrs.st_ino, fi, a.flags, entry_bytes(attrs))

    def _tmpfile(self, req: Request) -> bytes:
        a = req.arg
        fi, attrs = self.ops.tmpfile(req.nodeid, a.mode, a.flags, self._creator(req))
        return self._opened(attrs.st_ino, fi, a.flags, entry_bytes(attrs))

    def _read(self, req: Request) -> Payload:
        a = req.arg
        record = self._file(a.fh)
        if record.fd >= 0:
            out = req.out
            if out is not None and a.size <= len(out):
                return out[: os.preadv(record.fd, [out[: a.size]], a.offset)]  # read into the reply, not copied
            return [os.pread(record.fd, a.size, a.offset)]
        return [self.ops.read(record.fh, a.offset, a.size)]

    def _write(self, req: Request) -> bytes:
        a = req.arg
        record = self._file(a.fh)
        if record.fd >= 0:
            if a.write_flags & abi.WRITE_KILL_SUIDGID and self._clear_setid:
                if credentials.clear_setid_bits(record.fd, req.gid, req.pid) is not None:
                    self.attributes_changed(record.nodeid)
            return protocol.write_out(os.pwrite(record.fd, a.data, a.offset))
        return protocol.write_out(self.ops.write(record.fh, a.offset, a.data))

    def _flush(self, req: Request) -> None:
        self.ops.flush(self._file(req.arg.fh).fh)

    def _release(self, req: Request) -> None:
        record = self._files.pop(req.arg.fh, None)
        if record is None:
            return
        try:
            self.ops.release(record.fh)
        finally:
            self.registry.release(record.nodeid)

    def _fsync(self, req: Request) -> None:
        record = self._file(req.arg.fh)
        datasync = bool(req.arg.fsync_flags & abi.FSYNC_FDATASYNC)
        if record.fd >= 0:
            (os.fdatasync if datasync else os.fsync)(record.fd)
            if not self._ops_fsync_overridden:
                return
        self.ops.fsync(record.fh, datasync)

    def _fallocate(self, req: Request) -> None:
        a = req.arg
        self.ops.fallocate(self._file(a.fh).fh, a.mode, a.offset, a.length)

    def _ioctl(self, req: Request) -> list:
        a = req.arg
        if a.flags & abi.IOCTL_UNRESTRICTED:
            raise FUSEError(errno.ENOTTY)  # only CUSE servers may ask the kernel to fetch more
        result, data = self.ops.ioctl(self._file(a.fh).fh, a.cmd, a.arg, a.data, a.out_size, a.flags)
        if len(data) > a.out_size:
            raise FUSEError(errno.EINVAL)
        return protocol.ioctl_out(result, data)

    def _lseek(self, req: Request) -> bytes:
        a = req.arg
        return protocol.lseek_out(self.ops.lseek(self._file(a.fh).fh, a.offset, a.whence))

    def _copy_file_range(self, req: Request) -> bytes:
        a = req.arg
        src, dst = self._file(a.fh_in), self._file(a.fh_out)
        if src.fd >= 0 and dst.fd >= 0:
            copied = os.copy_file_range(src.fd, dst.fd, a.length, a.off_in, a.off_out)
        else:
            copied = self.ops.copy_file_range(src.fh, a.off_in, dst.fh, a.off_out, a.length, a.flags)
        return protocol.copy_file_range_out(req.opcode, copied)

    # ---- directories
    def _opendir(self, req: Request) -> bytes:
        fh = self.ops.opendir(req.nodeid, self._ctx(req))
        return protocol.open_out(fh, _CACHED_LISTING if self.ops.cache_listings else 0)

    # Entries are read by index (a DirEntry is a tuple): cheaper per entry than attribute access, on the listing path.
    def _readdir(self, req: Request) -> bytearray:
        a = req.arg
        out = bytearray()
        room = a.size
        pack = protocol.pack_dirent
        for entry in self.ops.readdir(a.fh, a.offset, self._ctx(req)):
            name = entry[0]
            room -= (abi.DIRENT_SIZE + len(name) + 7) & ~7
            if room < 0:
                break
            pack(out, entry[1], entry[3], entry[2], name)
        return out

    def _readdirplus(self, req: Request) -> bytearray:
        a = req.arg
        out = bytearray()
        room = a.size
        ctx = self._ctx(req)
        lookup = self.ops.lookup
        pack = protocol.pack_direntplus
        for entry in self.ops.readdir(a.fh, a.offset, ctx):
            name = entry[0]
            size = (abi.DIRENTPLUS_SIZE + len(name) + 7) & ~7
            if size > room:
                break
            if name == b"." or name == b".." or not entry[4]:
                pack(out, _DOT_ENTRY, entry[1], entry[3], entry[2], name)
                room -= size
                continue
            try:
                attrs = lookup(req.nodeid, name, ctx)
            except (FUSEError, OSError) as e:
                if e.errno == errno.ENOENT:
                    continue  # vanished since it was listed
                if out:
                    # The entries already packed were looked up: the kernel must get them, or their lookup counts
                    # would never be forgotten. It asks again from here and then gets the error.
                    break
                raise
            if attrs.st_ino == 0:
                continue
            ino = attrs.st_ino if attrs.shown_ino is None else attrs.shown_ino
            pack(out, entry_bytes(attrs), ino, entry[3], dtype_of(attrs.st_mode), name)
            room -= size
        return out

    def _releasedir(self, req: Request) -> None:
        self.ops.releasedir(req.arg.fh)

    def _fsyncdir(self, req: Request) -> None:
        self.ops.fsyncdir(req.arg.fh, bool(req.arg.fsync_flags & abi.FSYNC_FDATASYNC))

    # ---- the rest
    def _statfs(self, req: Request) -> bytes:
        s = self.ops.statfs(self._ctx(req))
        return protocol.statfs_out(
            s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_bsize, s.f_namemax, s.f_frsize
        )

    def _access(self, req: Request) -> None:
        self.ops.access(req.nodeid, req.arg.mask, self._ctx(req))

    def _setxattr(self, req: Request) -> None:
        a = req.arg
        self.ops.setxattr(req.nodeid, a.name, a.value, a.flags, self._ctx(req))
        if a.name == _ACL_ACCESS:
            self._acl_changed(req.nodeid)

    def attributes_changed(self, nodeid: int) -> None:
        """The daemon changed attributes of ``nodeid`` that the kernel may have cached: drop them there, so the
        next stat asks (one notification write, which takes no lock the waiting caller holds)."""
        if self.notify is not None:
            try:
                self.notify(protocol.notify_inval_inode(nodeid, -1, 0))
            except (OSError, RuntimeError) as e:
                log.debug("attributes of inode %d not invalidated: %s", nodeid, e)

    def _getxattr(self, req: Request) -> bytes:
        if req.arg.name == CONTROL_XATTR and req.nodeid == abi.ROOT_ID and self.control_name is not None:
            return _sized(self.control_name, req.arg.size)  # see control: only this mount's daemon can say it
        value = self.ops.getxattr(req.nodeid, req.arg.name, self._ctx(req))
        return _sized(value, req.arg.size)

    def _listxattr(self, req: Request) -> bytes:
        names = self.ops.listxattr(req.nodeid, self._ctx(req))
        return _sized(b"".join(n + b"\0" for n in names), req.arg.size)

    def _removexattr(self, req: Request) -> None:
        self.ops.removexattr(req.nodeid, req.arg.name, self._ctx(req))
        if req.arg.name == _ACL_ACCESS:
            self._acl_changed(req.nodeid)

    def _acl_changed(self, nodeid: int) -> None:
        """An access ACL set or removed changes the file's mode too; without POSIX_ACL the kernel keeps the mode
        it cached (stat asking for the mode alone would show it)."""
        if not (self.negotiated and self.negotiated.has(InitFlag.POSIX_ACL)):
            self.attributes_changed(nodeid)

    def _statx(self, req: Request) -> bytes:
        a = req.arg
        fh = self._user_fh(a.fh) if a.getattr_flags & abi.GETATTR_FH else None
        ctx = self._ctx(req)
        try:
            sx = self.ops.statx(req.nodeid, fh, a.sx_mask, a.sx_flags, ctx)
        except FUSEError as e:
            if e.errno != errno.ENOSYS:
                raise
            sx = StatxAttributes.from_attributes(self.ops.getattr(req.nodeid, fh, ctx))
        return protocol.statx_out(sx.attr_timeout, sx.pack())

    def _interrupt(self, req: Request) -> object:
        # A handler waiting on a helper thread (WouldBlock) has its wait interrupted; an async one is cancelled; a
        # sync one may ask. One for a request not read yet goes back to the kernel, which sends it again later.
        if not self.cancellations.interrupt(req.arg.unique):
            raise FUSEError(errno.EAGAIN)
        if self.blocking is not None:
            self.blocking.interrupt(req.arg.unique)
        return NO_REPLY


def _trace(req: Request, error: int, started: float) -> None:
    took = (time.perf_counter() - started) * 1e6
    result = "OK" if not error else f"{errno.errorcode.get(error, error)}"
    trace.debug("unique=%d %s nodeid=%d uid=%d pid=%d %s -> %s (%.0f us)", req.unique,
                abi.OPCODE_NAMES.get(req.opcode, req.opcode), req.nodeid, req.uid, req.pid, _short(req.arg), result,
                took)


def _short(arg: Any) -> str:
    if isinstance(arg, protocol.Write):
        return f"fh={arg.fh} offset={arg.offset} size={arg.size}"
    text = repr(arg)
    return text if len(text) < 160 else text[:157] + "..."


#: For each open(2) access mode, the access modes of a passthrough_fd that may serve it.
_SERVES = {os.O_RDONLY: (os.O_RDONLY, os.O_RDWR), os.O_WRONLY: (os.O_WRONLY, os.O_RDWR), os.O_RDWR: (os.O_RDWR,)}


def _check_fd_grants(fd: int, flags: int, nodeid: int) -> None:
    """Refuse (EACCES) an open that asks for more than its ``passthrough_fd`` holds: the kernel opens its backing
    file with the open's flags and the daemon's credentials, so a read-only fd would otherwise let the caller write,
    and an append-only fd write anywhere. Userspace I/O refuses the same, so both modes answer alike."""
    held = fcntl.fcntl(fd, fcntl.F_GETFL)
    if held & os.O_PATH or (held & os.O_ACCMODE) not in _SERVES.get(flags & os.O_ACCMODE, ()) or (
        held & os.O_APPEND and flags & os.O_ACCMODE != os.O_RDONLY and not flags & os.O_APPEND
    ):
        log.warning("open of inode %d with flags %#o refused: its passthrough_fd has only %#o", nodeid, flags,
                    held & (os.O_ACCMODE | os.O_APPEND | os.O_PATH))
        raise FUSEError(errno.EACCES)


_ACL_ACCESS = b"system.posix_acl_access"


def _sized(value: bytes, size: int) -> bytes:
    """The getxattr/listxattr convention: size 0 asks for the length, a short buffer gets ERANGE."""
    if size == 0:
        return protocol.xattr_size_out(len(value))
    if len(value) > size:
        raise FUSEError(errno.ERANGE)
    return value
