"""FUSE over io_uring framing: a request out of a ring entry, a reply into one (no file descriptors here)."""

from __future__ import annotations

from .. import abi
from .requests import ProtocolError

# A ring entry is one buffer we own: the kernel's 288-byte header at 0, scratch up to RING_PAYLOAD, the payload buffer
# from RING_PAYLOAD on. The kernel splits a request over the header (in_header, first argument) and the payload (the
# rest); laying the first two back in the scratch just before the payload makes the whole request contiguous again, so
# one decoder serves both transports.
RING_PAYLOAD = 512
_U32 = abi.U32
_IN_LEN = 0
_HEADER_SIZE = abi.IN_HEADER.size
_OUT = abi.OUT_HEADER.size
_OP_IN, _OP_IN_MAX, _PAYLOAD_SZ = abi.URING_OP_IN, abi.URING_OP_IN_MAX, abi.URING_PAYLOAD_SZ


def ring_request(view: memoryview) -> memoryview:
    """The request in a ring entry, as one message ``decode`` takes (a view into the entry buffer)."""
    length = _U32.unpack_from(view, _IN_LEN)[0]
    payload = _U32.unpack_from(view, _PAYLOAD_SZ)[0]
    first = length - _HEADER_SIZE - payload
    if not 0 <= first <= _OP_IN_MAX or RING_PAYLOAD + payload > len(view):
        raise ProtocolError(f"ring entry: length {length} with payload {payload}")
    start = RING_PAYLOAD - _HEADER_SIZE - first
    view[start : start + _HEADER_SIZE] = view[:_HEADER_SIZE]
    view[RING_PAYLOAD - first : RING_PAYLOAD] = view[_OP_IN : _OP_IN + first]
    return view[start : RING_PAYLOAD + payload]


def ring_reply(view: memoryview, reply: bytes | list) -> None:
    """Put a reply (a whole message, or a list whose first item is the header) into a ring entry: the header goes
    in the header area, everything after it in the payload buffer. A first payload part that is a view of the entry
    itself was put in place by the handler (``Request.out`` is the entry's payload buffer) and is not copied."""
    if isinstance(reply, list):
        view[:_OUT] = reply[0]
        pos = RING_PAYLOAD
        for part in reply[1:]:
            n = len(part)
            if not (pos == RING_PAYLOAD and type(part) is memoryview and part.obj is view.obj):
                view[pos : pos + n] = part
            pos += n
        size = pos - RING_PAYLOAD
    else:
        size = len(reply) - _OUT
        if size:
            whole = memoryview(reply)
            view[:_OUT] = whole[:_OUT]
            view[RING_PAYLOAD : RING_PAYLOAD + size] = whole[_OUT:]
        else:  # an error or an empty reply: the header alone
            view[:_OUT] = reply
    _U32.pack_into(view, _PAYLOAD_SZ, size)
