"""The sans-I/O protocol layer on bytes alone: no kernel, no file descriptors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shuntfs import abi, protocol
from shuntfs.abi import InitFlag, Opcode


def request(opcode: int, body: bytes, unique: int = 2, nodeid: int = 1, extlen: int = 0) -> bytes:
    return abi.IN_HEADER.pack(40 + len(body), opcode, unique, nodeid, 1000, 1001, 4242, extlen, 0) + body


def test_header_fields():
    req = protocol.decode(request(Opcode.LOOKUP, b"name\0", unique=10, nodeid=7))
    assert (req.opcode, req.unique, req.nodeid, req.uid, req.gid, req.pid) == (Opcode.LOOKUP, 10, 7, 1000, 1001, 4242)
    assert req.arg == protocol.Name(b"name")


def test_symlink_name_then_target():
    req = protocol.decode(request(Opcode.SYMLINK, b"link\0../target\0"))
    assert req.arg == protocol.Symlink(b"link", b"../target")


def test_create_with_security_context_extension_is_stripped():
    body = abi.CREATE_IN.pack(0x8041, 0o100644, 0o022, 0) + b"f\0"
    body += b"\0" * (-len(body) % 8)
    ext = struct.pack("<II", 8, 0)  # empty fuse_secctx_header
    req = protocol.decode(request(Opcode.CREATE, body + ext, extlen=1))
    assert req.arg == protocol.Create(0x8041, 0o100644, 0o022, 0, b"f")


def test_write_data_is_a_view_of_the_buffer():
    payload = b"hello world"
    body = abi.WRITE_IN.pack(5, 4096, len(payload), 0, 0, 2) + payload
    buf = bytearray(request(Opcode.WRITE, body))
    req = protocol.decode(buf)
    assert (req.arg.fh, req.arg.offset, req.arg.size) == (5, 4096, len(payload))
    assert bytes(req.arg.data) == payload
    assert isinstance(req.arg.data, memoryview)


def test_rename2_and_rename_share_a_shape():
    r1 = protocol.decode(request(Opcode.RENAME, struct.pack("<Q", 9) + b"a\0b\0")).arg
    r2 = protocol.decode(request(Opcode.RENAME2, struct.pack("<QI4x", 9, 2) + b"a\0b\0")).arg
    assert r1 == protocol.Rename(9, 0, b"a", b"b")
    assert r2 == protocol.Rename(9, 2, b"a", b"b")


def test_setattr_fields_arrive_decoded():
    v = abi.SetattrValid
    valid = v.MODE | v.UID | v.SIZE | v.FH | v.ATIME | v.MTIME_NOW | v.CTIME | v.LOCKOWNER
    body = abi.SETATTR_IN.pack(valid, 7, 100, 0, 1, 2, (1 << 64) - 3, 4, 5, 6, 0o644, 10, 20)
    a = protocol.decode(request(Opcode.SETATTR, body)).arg
    assert (a.mode, a.uid, a.gid, a.size, a.fh) == (0o644, 10, None, 100, 7)
    # times in nanoseconds; the kernel's seconds are signed; "now" is NOW
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (1_000_000_004, protocol.NOW, -3_000_000_000 + 6)
    assert (a.kill_suidgid, a.changes_nothing) == (False, False)
    empty = protocol.decode(request(Opcode.SETATTR, abi.SETATTR_IN.pack(v.KILL_SUIDGID | v.FH, *[0] * 12))).arg
    assert empty.kill_suidgid and empty.changes_nothing and empty.fh == 0 and empty.mode is None


def test_batch_forget():
    body = struct.pack("<I4x", 2) + struct.pack("<QQ", 5, 1) + struct.pack("<QQ", 6, 3)
    assert protocol.decode(request(Opcode.BATCH_FORGET, body)).arg.items == [(5, 1), (6, 3)]


def test_init_combines_flags2():
    body = abi.INIT_IN.pack(7, 45, 131072, 0x73FFFFFB, 0x5FD) + b"\0" * 44
    init = protocol.decode(request(Opcode.INIT, body)).arg
    assert init.flags & InitFlag.PASSTHROUGH
    assert init.flags == 0x73FFFFFB | (0x5FD << 32)


def test_unknown_opcode_decodes_as_unsupported():
    req = protocol.decode(request(4095, b"whatever"))
    assert isinstance(req.arg, protocol.Unsupported)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 39,
        abi.IN_HEADER.pack(100, 1, 2, 1, 0, 0, 0, 0, 0) + b"x\0",  # length disagrees with the read
        request(Opcode.LOOKUP, b"no-nul"),
        request(Opcode.OPEN, b"\0\0"),
        request(Opcode.WRITE, abi.WRITE_IN.pack(1, 0, 100, 0, 0, 0) + b"short"),
        request(Opcode.LOOKUP, b"abc\0", extlen=10),
    ],
)
def test_malformed_requests_raise_protocol_error(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(data)


@settings(max_examples=400, deadline=None)
@given(opcode=st.sampled_from([int(o) for o in Opcode] + [0, 999]), body=st.binary(max_size=300),
       extlen=st.integers(0, 3))
def test_fuzzed_requests_never_escape_as_other_errors(opcode, body, extlen):
    try:
        protocol.decode(request(opcode, body, extlen=extlen))
    except protocol.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_never_escape_as_other_errors(data):
    try:
        protocol.decode(data)
    except protocol.ProtocolError:
        pass


# ---- replies
def test_error_reply_is_16_bytes_and_negative():
    reply = protocol.reply_error(8, 2)
    assert len(reply) == 16
    assert abi.OUT_HEADER.unpack(reply) == (16, -2, 8)
    assert abi.OUT_HEADER.unpack(protocol.reply_error(8, 9999))[1] == -5  # out of range becomes EIO


def test_entry_and_attr_layouts():
    attr = protocol.attr_fields(77, 10, 8, 1_500_000_000, 2_000_000_001, 3_000_000_002, 0o100644, 1, 5, 6, 0, 4096)
    entry = protocol.entry_out(12, 0, 1.5, 0.25, attr)
    assert len(entry) == 128
    nodeid, gen, ev, av, evn, avn = struct.unpack_from("<QQQQII", entry)
    assert (nodeid, ev, evn, av, avn) == (12, 1, 500_000_000, 0, 250_000_000)
    fields = abi.ATTR.unpack_from(entry, 40)
    assert fields[0] == 77 and fields[3:9] == (1, 2, 3, 500_000_000, 1, 2)
    assert len(protocol.attr_out(1, attr)) == 104


def test_negative_times_encode_as_twos_complement():
    attr = protocol.attr_fields(1, 0, 0, -1_500_000_000, 0, 0, 0o100644, 1, 0, 0, 0, 4096)
    fields = abi.ATTR.unpack(abi.ATTR.pack(*attr))
    assert fields[3] == (-2) & 0xFFFFFFFFFFFFFFFF and fields[6] == 500_000_000


def test_open_out_carries_backing_id():
    assert struct.unpack("<QIi", protocol.open_out(3, abi.OpenFlag.PASSTHROUGH, 17)) == (3, 0x80, 17)


def test_dirent_records_are_padded():
    out = bytearray()
    protocol.pack_dirent(out, 5, 1, 8, b"abc")
    assert len(out) == 32
    assert struct.unpack_from("<QQII", out) == (5, 1, 3, 8)
    out = bytearray()
    protocol.pack_direntplus(out, b"\0" * 128, 5, 1, 8, b"abcdefghi")
    assert len(out) == 128 + 40


def test_notifications_have_unique_zero_and_code():
    msg = protocol.notify_inval_entry(1, b"name")
    length, code, unique = abi.OUT_HEADER.unpack_from(msg)
    assert (length, code, unique) == (len(msg), abi.NotifyCode.INVAL_ENTRY, 0)
    assert msg.endswith(b"name\0")


# ---- INIT negotiation
def _init(minor=45, flags=0x73FFFFFB | (0x5FD << 32), readahead=131072):
    return protocol.Init(7, minor, readahead, flags)


def _unpack_init(payload):
    return abi.INIT_OUT.unpack(payload)


def test_negotiate_passthrough():
    want = InitFlag.ASYNC_READ | InitFlag.MAX_PAGES | InitFlag.PASSTHROUGH
    neg, payload = protocol.negotiate(_init(), protocol.InitConfig(want=want, max_stack_depth=2))
    fields = _unpack_init(payload)
    major, minor, readahead, flags, _bg, _cong, max_write, _gran, max_pages, _align, flags2, depth, _to = fields
    assert (major, minor) == (7, 45)
    assert flags & InitFlag.INIT_EXT, "flags2 is ignored without INIT_EXT"
    assert flags2 == InitFlag.PASSTHROUGH >> 32
    assert depth == 2 and neg.passthrough
    assert (max_write, max_pages) == (1 << 20, 256)
    assert readahead == 131072  # min(ours, kernel's)


def test_negotiate_older_kernel_minor():
    neg, payload = protocol.negotiate(_init(minor=39), protocol.InitConfig(want=InitFlag.ASYNC_READ))
    assert _unpack_init(payload)[1] == 39 and neg.minor == 39


def test_passthrough_is_dropped_with_writeback_cache():
    want = InitFlag.PASSTHROUGH | InitFlag.WRITEBACK_CACHE
    neg, payload = protocol.negotiate(_init(), protocol.InitConfig(want=want))
    assert not neg.passthrough
    assert _unpack_init(payload)[11] == 0  # max_stack_depth


def test_passthrough_not_offered_is_not_claimed():
    neg, _ = protocol.negotiate(_init(flags=0x73FFFFFB), protocol.InitConfig(want=InitFlag.PASSTHROUGH))
    assert not neg.passthrough


def test_other_major_is_refused():
    neg, payload = protocol.negotiate(protocol.Init(8, 0, 0, 0), protocol.InitConfig(want=0))
    assert neg.errors and struct.unpack("<II", payload) == (7, 45)


def test_too_old_minor_is_reported():
    neg, _ = protocol.negotiate(_init(minor=20), protocol.InitConfig(want=0))
    assert any("older" in e for e in neg.errors)
