"""The session's request loop fed hostile bytes through a SOCK_SEQPACKET socket standing in for /dev/fuse: every
request that can be answered is answered exactly once (EIO when it does not decode), and the loop keeps serving."""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from shuntfs import abi, protocol
from shuntfs.abi import Opcode
from shuntfs.backing import BackingRegistry
from shuntfs.dispatch import Dispatcher
from shuntfs.session import Session

from .test_dispatch import Fake

OPCODES = [int(op) for op in Opcode] + [0, 99, 4096, 0xFFFFFFFF]


def message(opcode: int, unique: int, body: bytes, length_delta: int) -> bytes:
    length = abi.IN_HEADER.size + len(body) + length_delta
    head = struct.pack("<IIQQIIII", length & 0xFFFFFFFF, opcode, unique, 1, 0, 0, 1, 0)
    return head + body


def serve(messages: list[bytes]) -> list[bytes]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    session = Session(Fake(), "/nonexistent")
    session.registry = BackingRegistry(-1, enabled=False)
    session.dispatcher = Dispatcher(session.ops, session.registry, session.config)
    counts = [0] * (abi.MAX_OPCODE + 1)
    worker = threading.Thread(target=session._loop, args=(theirs.fileno(), counts), daemon=True)
    worker.start()
    replies = []
    ours.settimeout(5)
    for m in messages:
        ours.send(m)
        head = protocol.peek_header(m)
        if head is not None and head[0] not in protocol.NO_REPLY:
            replies.append(ours.recv(1 << 20))
        elif head is not None and head[0] == Opcode.INTERRUPT:
            # one for a request not read yet goes back (EAGAIN); others take no reply
            ready, _, _ = select.select([ours], [], [], 0.05)
            if ready:
                reply = ours.recv(1 << 20)
                assert struct.unpack_from("<IiQ", reply) == (16, -errno.EAGAIN, head[1])

    assert worker.is_alive(), "the loop died"
    ours.shutdown(socket.SHUT_WR)
    worker.join(5)
    assert not worker.is_alive()
    ours.close()
    theirs.close()
    return replies


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPCODES), st.integers(1, 2**64 - 1), st.binary(max_size=300),
                          st.integers(-40, 40)), min_size=1, max_size=20))
def test_hostile_requests_get_one_reply_each_and_the_loop_survives(reqs):
    msgs = [message(*r) for r in reqs]
    replies = serve(msgs)
    expected = [protocol.peek_header(m) for m in msgs]
    expected = [h for h in expected if h is not None and h[0] not in protocol.NO_REPLY]
    assert len(replies) == len(expected)
    for (_opcode, unique), reply in zip(expected, replies):
        length, error, got_unique = struct.unpack_from("<IiQ", reply)
        assert got_unique == unique and length == len(reply)
        assert error <= 0


def test_truncated_and_oversized_requests_answer_eio():
    good = message(Opcode.GETATTR, 7, bytes(16), 0)
    replies = serve([good[:-4], message(Opcode.LOOKUP, 8, b"name-without-nul", 0), message(Opcode.READ, 9, b"", 0),
                     message(Opcode.GETATTR, 10, bytes(16), 5000), b"\x00" * 10])
    errors = [struct.unpack_from("<IiQ", r)[1:] for r in replies]
    assert errors[:3] == [(-5, 7), (-5, 8), (-5, 9)]
    assert errors[3][1] == 10 and errors[3][0] in (-5, 0)
