"""FUSE over io_uring framing without a kernel: a request split the way the kernel splits it over a ring entry
(in_header, first argument, payload) decodes exactly like the same request read whole from /dev/fuse, and replies land
where the kernel reads them (out header at 0, out args in the payload, their size in payload_sz)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shuntfs import abi, protocol
from shuntfs.abi import Opcode

PAYLOAD_SIZE = 1 << 16


def whole(opcode: int, unique: int, nodeid: int, first: bytes, rest: bytes) -> bytes:
    length = abi.IN_HEADER.size + len(first) + len(rest)
    return abi.IN_HEADER.pack(length, opcode, unique, nodeid, 1000, 1000, 4242, 0, 0) + first + rest


def as_ring_entry(message: bytes, first_size: int) -> memoryview:
    """Lay ``message`` out as fuse_uring_args_to_ring does."""
    entry = memoryview(bytearray(protocol.RING_PAYLOAD + PAYLOAD_SIZE))
    head = abi.IN_HEADER.size
    entry[:head] = message[:head]
    entry[abi.URING_OP_IN : abi.URING_OP_IN + first_size] = message[head : head + first_size]
    rest = message[head + first_size :]
    entry[protocol.RING_PAYLOAD : protocol.RING_PAYLOAD + len(rest)] = rest
    struct.pack_into("<I", entry, abi.URING_PAYLOAD_SZ, len(rest))
    return entry


def fields(req: protocol.Request) -> tuple:
    return (req.opcode, req.unique, req.nodeid, req.uid, req.gid, req.pid, req.arg)


names = st.binary(min_size=1, max_size=255).filter(lambda b: b"\0" not in b and b"/" not in b)


@given(name=names, unique=st.integers(1, 2**63), nodeid=st.integers(1, 2**63))
def test_lookup_has_no_first_argument_and_decodes_as_from_dev_fuse(name, unique, nodeid):
    message = whole(Opcode.LOOKUP, unique, nodeid, b"", name + b"\0")
    ring = protocol.decode(protocol.ring_request(as_ring_entry(message, 0)))
    assert fields(ring) == fields(protocol.decode(message))
    assert ring.arg.name == name


@given(data=st.binary(max_size=4096), offset=st.integers(0, 2**62), fh=st.integers(0, 2**63))
def test_write_header_in_op_in_and_data_in_payload(data, offset, fh):
    first = struct.pack("<QQIIQII", fh, offset, len(data), 0, 0, 0, 0)
    message = whole(Opcode.WRITE, 7, 2, first, data)
    ring = protocol.decode(protocol.ring_request(as_ring_entry(message, len(first))))
    assert (ring.arg.fh, ring.arg.offset, bytes(ring.arg.data)) == (fh, offset, data)


@given(name=names, size=st.integers(0, 65536))
def test_getxattr_splits_size_from_name(name, size):
    first = struct.pack("<I4x", size)
    message = whole(Opcode.GETXATTR, 9, 3, first, name + b"\0")
    ring = protocol.decode(protocol.ring_request(as_ring_entry(message, len(first))))
    assert fields(ring) == fields(protocol.decode(message))


def test_a_first_argument_longer_than_op_in_is_malformed():
    message = whole(Opcode.LOOKUP, 1, 1, b"", b"x\0")
    entry = as_ring_entry(message, 0)
    abi.IN_HEADER.pack_into(entry, 0, 40 + 200 + 2, Opcode.LOOKUP, 1, 1, 0, 0, 0, 0, 0)
    with pytest.raises(protocol.ProtocolError):
        protocol.ring_request(entry)


def test_payload_beyond_the_buffer_is_malformed():
    entry = as_ring_entry(whole(Opcode.LOOKUP, 1, 1, b"", b"x\0"), 0)
    struct.pack_into("<I", entry, abi.URING_PAYLOAD_SZ, PAYLOAD_SIZE + 1)
    abi.IN_HEADER.pack_into(entry, 0, 40 + PAYLOAD_SIZE + 1, Opcode.LOOKUP, 1, 1, 0, 0, 0, 0, 0)
    with pytest.raises(protocol.ProtocolError):
        protocol.ring_request(entry)


def read_reply(entry: memoryview) -> tuple[int, int, int, bytes]:
    length, error, unique = abi.OUT_HEADER.unpack_from(entry)
    size = struct.unpack_from("<I", entry, abi.URING_PAYLOAD_SZ)[0]
    return length, error, unique, bytes(entry[protocol.RING_PAYLOAD : protocol.RING_PAYLOAD + size])


@given(payload=st.binary(max_size=8192), unique=st.integers(1, 2**63))
def test_whole_replies_put_the_header_apart_from_the_out_args(payload, unique):
    entry = memoryview(bytearray(protocol.RING_PAYLOAD + PAYLOAD_SIZE))
    protocol.ring_reply(entry, protocol.reply_bytes(unique, payload))
    assert read_reply(entry) == (16 + len(payload), 0, unique, payload)


@given(parts=st.lists(st.binary(max_size=1000), max_size=5))
def test_buffer_list_replies_are_joined_in_the_payload(parts):
    entry = memoryview(bytearray(protocol.RING_PAYLOAD + PAYLOAD_SIZE))
    header = protocol.reply_header(5, sum(map(len, parts)))
    protocol.ring_reply(entry, [header, *parts])
    assert read_reply(entry) == (16 + sum(map(len, parts)), 0, 5, b"".join(parts))


def test_a_payload_put_in_place_is_kept_and_other_views_are_copied():
    entry = memoryview(bytearray(protocol.RING_PAYLOAD + PAYLOAD_SIZE))
    out = entry[protocol.RING_PAYLOAD :]
    out[:5] = b"hello"
    protocol.ring_reply(entry, [protocol.reply_header(3, 5), out[:5]])
    assert read_reply(entry) == (21, 0, 3, b"hello")
    elsewhere = memoryview(bytearray(b"world"))
    protocol.ring_reply(entry, [protocol.reply_header(4, 5), elsewhere])
    assert read_reply(entry) == (21, 0, 4, b"world")


def test_error_replies_have_an_empty_payload():
    entry = memoryview(bytearray(protocol.RING_PAYLOAD + PAYLOAD_SIZE))
    entry[protocol.RING_PAYLOAD :] = b"\xff" * PAYLOAD_SIZE
    struct.pack_into("<I", entry, abi.URING_PAYLOAD_SZ, 99)
    protocol.ring_reply(entry, protocol.reply_error(11, 2))
    assert read_reply(entry) == (16, -2, 11, b"")


def test_a_reply_larger_than_the_payload_buffer_raises():
    entry = memoryview(bytearray(protocol.RING_PAYLOAD + 100))
    with pytest.raises(ValueError):
        protocol.ring_reply(entry, protocol.reply_bytes(1, bytes(101)))
