"""The dispatcher with a fake filesystem and no kernel: requests in, reply payloads out."""

from __future__ import annotations

import errno
import os
import stat
import struct

import pytest

from shuntfs import abi, protocol
from shuntfs.abi import Opcode
from shuntfs.backing import BackingRegistry
from shuntfs.dispatch import Dispatcher
from shuntfs.operations import (
    DirEntry,
    EntryAttributes,
    FileInfo,
    FUSEError,
    Operations,
)


class Fake(Operations):
    def __init__(self, fd: int | None = None) -> None:
        self.fd = fd
        self.lookups: list[bytes] = []
        self.released: list[int] = []
        self.setattr_fields: list = []

    def lookup(self, parent, name, ctx):
        if name == b"gone":
            raise FUSEError(errno.ENOENT)
        self.lookups.append(name)
        return EntryAttributes(st_ino=100 + len(self.lookups), st_mode=0o100644, shown_ino=5000)

    def open(self, inode, flags, ctx):
        return FileInfo(fh=42, passthrough_fd=self.fd, keep_cache=True)

    def release(self, fh):
        self.released.append(fh)

    def readdir(self, fh, offset, ctx):
        names = [b".", b"..", b"a", b"gone", b"b"]
        for i in range(offset, len(names)):
            yield DirEntry(names[i], 1000 + i, 8, i + 1)

    def getxattr(self, inode, name, ctx):
        return b"value"

    def setattr(self, inode, attr, fields, fh, ctx):
        self.setattr_fields.append(fields)
        return EntryAttributes(st_ino=inode, st_mode=0o100644)


def make(ops: Operations, passthrough: bool = False) -> Dispatcher:
    d = Dispatcher(ops, BackingRegistry(-1, enabled=False), protocol.InitConfig(want=0))
    d.registry.enabled = passthrough
    return d


def req(opcode, arg, nodeid=1):
    return protocol.Request(opcode, 2, nodeid, 0, 0, 1, arg)


def test_readdir_fits_the_buffer_and_resumes_from_cookies():
    d = make(Fake())
    first = d.table[Opcode.READDIR](req(Opcode.READDIR, protocol.Read(0, 0, 64, 0, 0, 0)))
    assert len(first) == 64  # two 32-byte records fit, the third does not
    _ino, next_off, _len, _type = struct.unpack_from("<QQII", first, 32)
    rest = d.table[Opcode.READDIR](req(Opcode.READDIR, protocol.Read(0, next_off, 4096, 0, 0, 0)))
    names = []
    pos = 0
    while pos < len(rest):
        ino, off, namelen, _t = struct.unpack_from("<QQII", rest, pos)
        names.append(bytes(rest[pos + 24 : pos + 24 + namelen]))
        pos += (24 + namelen + 7) & ~7
    assert names == [b"a", b"gone", b"b"]


def test_readdirplus_looks_up_entries_it_sends_and_skips_vanished_ones():
    ops = Fake()
    d = make(ops)
    out = d.table[Opcode.READDIRPLUS](req(Opcode.READDIRPLUS, protocol.Read(0, 0, 4096, 0, 0, 0)))
    assert ops.lookups == [b"a", b"b"]  # not ".", "..", nor the vanished one
    # "." carries nodeid 0 (no lookup counted); "a" carries the looked-up nodeid and the shown inode number
    assert struct.unpack_from("<Q", out, 0)[0] == 0
    second = (152 + 1 + 7) & ~7
    third = second + ((152 + 2 + 7) & ~7)
    assert struct.unpack_from("<Q", out, third)[0] == 101
    assert struct.unpack_from("<Q", out, third + 128)[0] == 5000


def test_readdirplus_stops_short_rather_than_lose_lookups(monkeypatch):
    """An error after some entries were looked up (EMFILE, say) ends the reply early: the kernel must receive the
    entries whose lookup counts were taken. With nothing packed yet, the error is the answer."""
    ops = Fake()
    real = ops.lookup

    def lookup(parent, name, ctx):
        if name == b"b":
            raise OSError(errno.EMFILE, "too many")
        return real(parent, name, ctx)
    monkeypatch.setattr(ops, "lookup", lookup)
    d = make(ops)
    out = d.table[Opcode.READDIRPLUS](req(Opcode.READDIRPLUS, protocol.Read(0, 0, 4096, 0, 0, 0)))
    assert ops.lookups == [b"a"]
    names, pos = [], 0
    while pos < len(out):
        namelen = struct.unpack_from("<I", out, pos + 128 + 16)[0]
        names.append(bytes(out[pos + 152:pos + 152 + namelen]))
        pos += (152 + namelen + 7) & ~7
    assert names == [b".", b"..", b"a"]
    with pytest.raises(OSError) as e:  # resumed after "gone" (offset 4): "b" is first, nothing packed
        d.table[Opcode.READDIRPLUS](req(Opcode.READDIRPLUS, protocol.Read(0, 4, 4096, 0, 0, 0)))
    assert e.value.errno == errno.EMFILE


def test_readdirplus_does_not_look_up_what_does_not_fit():
    ops = Fake()
    d = make(ops)
    d.table[Opcode.READDIRPLUS](req(Opcode.READDIRPLUS, protocol.Read(0, 0, 2 * 160 + 10, 0, 0, 0)))
    assert ops.lookups == []


def test_xattr_size_protocol():
    d = make(Fake())
    size_asked = req(Opcode.GETXATTR, protocol.Getxattr(name=b"user.x", size=0))
    assert d.table[Opcode.GETXATTR](size_asked) == struct.pack("<I4x", 5)
    assert d.table[Opcode.GETXATTR](req(Opcode.GETXATTR, protocol.Getxattr(name=b"user.x", size=100))) == b"value"
    with pytest.raises(FUSEError) as e:
        d.table[Opcode.GETXATTR](req(Opcode.GETXATTR, protocol.Getxattr(name=b"user.x", size=2)))
    assert e.value.errno == errno.ERANGE


def test_unimplemented_operations_answer_enosys():
    d = make(Fake())
    with pytest.raises(FUSEError) as e:
        d.table[Opcode.MKDIR](req(Opcode.MKDIR, protocol.Mkdir(0o755, 0, b"d")))
    assert e.value.errno == errno.ENOSYS
    assert d.table[Opcode.GETLK] is None and d.table[Opcode.POLL] is None


def test_passthrough_fd_is_served_in_userspace_when_passthrough_is_off(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDWR)
    try:
        ops = Fake(fd)
        d = make(ops, passthrough=False)
        out = d.table[Opcode.OPEN](req(Opcode.OPEN, protocol.Open(os.O_RDWR, 0), nodeid=9))
        kfh, flags, backing = struct.unpack("<QIi", out)
        assert backing == 0 and not flags & abi.OpenFlag.PASSTHROUGH
        assert flags & abi.OpenFlag.KEEP_CACHE
        data = d.table[Opcode.READ](req(Opcode.READ, protocol.Read(kfh, 2, 4, 0, 0, 0), nodeid=9))
        assert b"".join(data) == b"2345"
        # given room for the reply, the data goes there and the handler answers with a view of it
        placed = req(Opcode.READ, protocol.Read(kfh, 6, 100, 0, 0, 0), nodeid=9)
        placed.out = memoryview(bytearray(100))
        answer = d.table[Opcode.READ](placed)
        assert answer == b"6789" and answer.obj is placed.out.obj
        view = memoryview(b"AB")
        written = d.table[Opcode.WRITE](req(Opcode.WRITE, protocol.Write(kfh, 0, 2, 0, 0, 0, view), nodeid=9))
        assert written == protocol.write_out(2)
        assert path.read_bytes() == b"AB23456789"
        assert d.registry.fallback_opens == 1
        d.table[Opcode.RELEASE](req(Opcode.RELEASE, protocol.Release(kfh, 0, 0, 0), nodeid=9))
        assert ops.released == [42]
        assert d.open_files() == 0
    finally:
        os.close(fd)


def test_unknown_file_handle_is_ebadf():
    d = make(Fake())
    with pytest.raises(FUSEError) as e:
        d.table[Opcode.READ](req(Opcode.READ, protocol.Read(999, 0, 10, 0, 0, 0)))
    assert e.value.errno == errno.EBADF


def test_statx_falls_back_to_getattr():
    class WithAttr(Fake):
        def getattr(self, inode, fh, ctx):
            return EntryAttributes(st_ino=inode, st_mode=0o100600, st_size=123, shown_ino=77, attr_timeout=2)

    d = make(WithAttr())
    out = d.table[Opcode.STATX](req(Opcode.STATX, protocol.Statx(0, 0, 0, 0xFFF), nodeid=3))
    assert len(out) == 32 + 256
    mask, = struct.unpack_from("<I", out, 32)
    ino, size = struct.unpack_from("<QQ", out, 32 + 32)
    mode, = struct.unpack_from("<H", out, 32 + 28)
    assert (mask, ino, size, mode) == (abi.STATX_BASIC_STATS, 77, 123, 0o100600)


def test_killpriv_v2_duties_for_passthrough_fd_files(tmp_path):
    """With HANDLE_KILLPRIV_V2 negotiated the dispatcher clears set-id bits on a flagged WRITE, offers writable
    opens of set-id files for passthrough like any other, and turns the kernel's empty SETATTR (its file_remove_privs
    before a passthrough write by a caller without CAP_FSETID, and chown(-1, -1) by anyone) into
    setattr(kill_suidgid)."""
    path = tmp_path / "f"
    path.write_bytes(b"0123")
    path.chmod(0o4755)
    fd = os.open(path, os.O_RDWR)
    not_fuse = os.open(os.devnull, os.O_RDONLY)
    try:
        ops = Fake(fd)
        d = Dispatcher(ops, BackingRegistry(not_fuse, enabled=True), protocol.InitConfig(want=0))
        d._clear_setid = True
        out = d.table[Opcode.OPEN](req(Opcode.OPEN, protocol.Open(os.O_RDWR, 0), nodeid=9))
        kfh = struct.unpack("<QIi", out)[0]
        assert d.registry.fallback_opens == 1  # offered for passthrough (refused here: /dev/null is no /dev/fuse)
        view = memoryview(b"A")
        d.table[Opcode.WRITE](req(Opcode.WRITE, protocol.Write(kfh, 0, 1, 0, 0, 0, view), nodeid=9))
        assert stat.S_IMODE(path.stat().st_mode) == 0o4755  # no kill flag: a writer with CAP_FSETID
        flags = abi.WRITE_KILL_SUIDGID
        d.table[Opcode.WRITE](req(Opcode.WRITE, protocol.Write(kfh, 1, 1, flags, 0, 0, view), nodeid=9))
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        assert path.read_bytes() == b"AA23"
        d.table[Opcode.RELEASE](req(Opcode.RELEASE, protocol.Release(kfh, 0, 0, 0), nodeid=9))
        empty = protocol.Setattr(None, None, None, None, None, None, None, None, False, True)
        for uid in (0, 1000):
            d.table[Opcode.SETATTR](protocol.Request(Opcode.SETATTR, 3, 9, uid, 1000, 1, empty))
            assert ops.setattr_fields[-1].kill_suidgid is True
        d._clear_setid = False  # without KILLPRIV_V2 an empty SETATTR is just that
        d.table[Opcode.SETATTR](protocol.Request(Opcode.SETATTR, 3, 9, 1000, 1000, 1, empty))
        assert ops.setattr_fields[-1].kill_suidgid is False
    finally:
        os.close(fd)
        os.close(not_fuse)


# ---- the whole request-to-reply path, on bytes


def raw(opcode: int, body: bytes = b"", unique: int = 7, nodeid: int = 1) -> memoryview:
    return memoryview(abi.IN_HEADER.pack(abi.IN_HEADER.size + len(body), opcode, unique, nodeid, 0, 0, 1, 0, 0)
                      + body)


def message(reply) -> bytes:
    return b"".join(bytes(part) for part in reply) if isinstance(reply, list) else reply


def test_handle_turns_request_bytes_into_reply_bytes():
    d = make(Fake())
    counts = [0] * (abi.MAX_OPCODE + 1)
    reply = message(d.handle(raw(Opcode.LOOKUP, b"name\0"), None, counts))
    length, error, unique = abi.OUT_HEADER.unpack_from(reply)
    assert (length, error, unique) == (16 + abi.ENTRY_OUT.size, 0, 7) == (len(reply), 0, 7)
    assert abi.ENTRY_OUT.unpack_from(reply, 16)[0] == 101  # the node id the handler gave
    # an error, an opcode without a handler, a request that takes no reply, and bytes that do not decode
    assert abi.OUT_HEADER.unpack(d.handle(raw(Opcode.LOOKUP, b"gone\0"), None, counts)) == (16, -errno.ENOENT, 7)
    assert abi.OUT_HEADER.unpack(d.handle(raw(Opcode.GETLK, bytes(40)), None, counts)) == (16, -errno.ENOSYS, 7)
    assert d.handle(raw(Opcode.FORGET, struct.pack("<Q", 1)), None, counts) is None
    assert abi.OUT_HEADER.unpack(d.handle(raw(Opcode.LOOKUP, b"no NUL"), None, counts)) == (16, -errno.EIO, 7)
    assert d.handle(memoryview(b"short"), None, counts) is None
    assert (counts[Opcode.LOOKUP], counts[Opcode.GETLK], counts[Opcode.FORGET]) == (2, 1, 1)  # decoded ones


def test_handle_reads_into_the_transports_buffer(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDWR)
    try:
        d = make(Fake(fd))
        counts = [0] * (abi.MAX_OPCODE + 1)
        kfh = struct.unpack_from("<Q", message(d.handle(raw(Opcode.OPEN, struct.pack("<II", 2, 0)), None, counts)),
                                 16)[0]
        out = memoryview(bytearray(4096))
        reply = d.handle(raw(Opcode.READ, abi.READ_IN.pack(kfh, 3, 4, 0, 0, 0)), out, counts)
        assert isinstance(reply, list) and reply[1].obj is out.obj  # the data was read in place, not copied
        assert message(reply)[16:] == b"3456"
    finally:
        os.close(fd)


def test_handle_hands_off_what_may_block():
    from shuntfs.dispatch import Later
    from shuntfs.operations import WouldBlock

    class Waits(Fake):
        def lookup(self, parent, name, ctx):
            if not ctx.may_block:
                raise WouldBlock()
            return super().lookup(parent, name, ctx)

        def fsyncdir(self, fh, datasync):
            pass

    d = make(Waits())
    counts = [0] * (abi.MAX_OPCODE + 1)
    later = d.handle(raw(Opcode.LOOKUP, b"a\0"), None, counts)
    assert isinstance(later, Later) and later.waits
    assert abi.OUT_HEADER.unpack_from(message(d.finish(later)))[1] == 0  # on a helper, where it may wait
    slow = d.handle(raw(Opcode.FSYNCDIR, abi.FSYNC_IN.pack(1, 0)), None, counts, handoff=True)
    assert isinstance(slow, Later) and not slow.waits
    assert d.finish(slow) == protocol.reply_empty(7)
    assert counts[Opcode.LOOKUP] == 1 and counts[Opcode.FSYNCDIR] == 1  # counted once, where they arrived


def test_the_opcode_table_covers_every_opcode():
    d = make(Fake())
    for opcode in Opcode:
        info = protocol.OPCODES[opcode]
        assert info.opcode == opcode and info.name == opcode.name
        assert (d.table[opcode] is None) == (info.handler == "")
    assert protocol.NO_REPLY == {Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT, Opcode.NOTIFY_REPLY}
    assert {info.name for info in protocol.OPCODES if info.slow} == {
        "FSYNC", "FSYNCDIR", "FLUSH", "FALLOCATE", "COPY_FILE_RANGE", "COPY_FILE_RANGE_64"}


def test_statx_attributes_round_trip_the_kernels_layout():
    from shuntfs import StatxAttributes

    a = EntryAttributes(st_ino=5, st_mode=0o100644, st_size=10, shown_ino=77, st_rdev=os.makedev(1, 3),
                        st_atime_ns=1_500_000_000, st_mtime_ns=-2_000_000_001, attr_timeout=3)
    sx = StatxAttributes.from_attributes(a)
    assert (sx.ino, sx.mask, sx.btime_ns) == (77, abi.STATX_BASIC_STATS, 0)
    assert StatxAttributes.unpack(sx.pack(), 3) == sx
    # and a real statx(2) of this test's own file, birth time included where the filesystem keeps one
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    assert libc.statx(-100, os.fsencode(__file__), 0, abi.STATX_BASIC_STATS | abi.STATX_BTIME, buf) == 0
    real = StatxAttributes.unpack(buf.raw)
    st = os.stat(__file__)
    assert (real.ino, real.size, real.mtime_ns, real.mode) == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def test_an_interrupt_for_a_request_not_read_yet_goes_back_to_the_kernel():
    """The kernel may send an INTERRUPT on one thread before another thread has read its request: the protocol's
    answer is EAGAIN (the kernel sends it again later); one for a request already read takes no reply."""
    d = make(Fake())
    counts = [0] * (abi.MAX_OPCODE + 1)
    early = d.handle(raw(Opcode.INTERRUPT, abi.INTERRUPT_IN.pack(8), unique=9), None, counts)
    assert abi.OUT_HEADER.unpack(early) == (16, -errno.EAGAIN, 9)  # the INTERRUPT's own unique (8 | 1)
    d.handle(raw(Opcode.LOOKUP, b"a\0", unique=8), None, counts)
    assert d.handle(raw(Opcode.INTERRUPT, abi.INTERRUPT_IN.pack(8), unique=9), None, counts) is None
    assert d.cancellations.interrupted(8) and not d.cancellations.interrupted(6)


def test_a_sync_handler_can_ask_whether_its_request_was_interrupted():
    from shuntfs import interrupted

    asked: list[tuple[bool, bool]] = []

    class Asks(Fake):
        def lookup(self, parent, name, ctx):
            asked.append((ctx.interrupted, interrupted()))
            if ctx.interrupted:
                raise FUSEError(errno.EINTR)
            return super().lookup(parent, name, ctx)

    d = make(Asks())
    counts = [0] * (abi.MAX_OPCODE + 1)
    assert abi.OUT_HEADER.unpack_from(message(d.handle(raw(Opcode.LOOKUP, b"a\0", unique=10), None, counts)))[1] == 0
    d.handle(raw(Opcode.LOOKUP, b"a\0", unique=12), None, counts)  # read, then interrupted while "in progress"
    d.handle(raw(Opcode.INTERRUPT, abi.INTERRUPT_IN.pack(14), unique=15), None, counts)  # not read: not recorded
    d.handle(raw(Opcode.INTERRUPT, abi.INTERRUPT_IN.pack(12), unique=13), None, counts)
    again = d.handle(raw(Opcode.LOOKUP, b"a\0", unique=12), None, counts)  # as if its handler asked now
    assert abi.OUT_HEADER.unpack(again) == (16, -errno.EINTR, 12)
    assert asked == [(False, False), (False, False), (True, True)]


def test_ioctl_gets_the_data_in_and_sends_at_most_out_size_back():
    class Ioctls(Fake):
        def ioctl(self, fh, cmd, arg, data, out_size, flags):
            assert fh == 42
            if cmd == 0xC0044D01:  # _IOWR('M', 1, uint32): a number in, the next one out
                return 0, (int.from_bytes(data, "little") + 1).to_bytes(4, "little")
            if cmd == 1:
                return 0, bytes(out_size + 1)
            raise FUSEError(errno.ENOTTY)

    d = make(Ioctls())
    counts = [0] * (abi.MAX_OPCODE + 1)
    kfh = struct.unpack_from("<Q", message(d.handle(raw(Opcode.OPEN, struct.pack("<II", 2, 0)), None, counts)), 16)[0]

    def ioctl(cmd, data=b"", out_size=0, flags=0):
        body = abi.IOCTL_IN.pack(kfh, flags, cmd, 0x7FFF0000, len(data), out_size) + data
        return message(d.handle(raw(Opcode.IOCTL, body), None, counts))

    reply = ioctl(0xC0044D01, (41).to_bytes(4, "little"), 4)
    assert abi.OUT_HEADER.unpack_from(reply)[:2] == (16 + 16 + 4, 0)
    assert abi.IOCTL_OUT.unpack_from(reply, 16) == (0, 0, 0, 0) and reply[32:] == (42).to_bytes(4, "little")
    assert abi.OUT_HEADER.unpack_from(ioctl(7))[1] == -errno.ENOTTY
    assert abi.OUT_HEADER.unpack_from(ioctl(1, out_size=4))[1] == -errno.EINVAL  # more than the caller's buffer
    assert abi.OUT_HEADER.unpack_from(ioctl(0xC0044D01, flags=2))[1] == -errno.ENOTTY  # unrestricted: CUSE only
