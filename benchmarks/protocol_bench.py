"""The protocol layer alone, without a kernel: requests decoded and replies encoded per second.

    python3 -m benchmarks.protocol_bench [--seconds 1]

A regression in decoding, encoding or dispatch shows here on any machine. ``dispatch`` runs the whole per-request
path the session runs (decode, table lookup, handler, reply encoding) against a filesystem that answers from memory.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Callable

from shuntfs import abi, protocol
from shuntfs.abi import Opcode
from shuntfs.backing import BackingRegistry
from shuntfs.dispatch import Dispatcher, entry_bytes
from shuntfs.operations import EntryAttributes, Operations, RequestContext


def _request(opcode: int, body: bytes, nodeid: int = 1) -> bytes:
    return abi.IN_HEADER.pack(40 + len(body), opcode, 7, nodeid, 0, 0, 1, 0, 0) + body


#: A mix of what a metadata workload sends, and a 4 KiB write.
REQUESTS = {
    "LOOKUP": _request(Opcode.LOOKUP, b"some-file-name.txt\0"),
    "GETATTR": _request(Opcode.GETATTR, abi.GETATTR_IN.pack(0, 0), 2),
    "CREATE": _request(Opcode.CREATE, abi.CREATE_IN.pack(0o100101, 0o100644, 0o022, 0) + b"new-file\0"),
    "RELEASE": _request(Opcode.RELEASE, abi.RELEASE_IN.pack(3, 0, 0, 0), 2),
    "WRITE 4 KiB": _request(Opcode.WRITE, abi.WRITE_IN.pack(3, 0, 4096, 0, 0, 2) + bytes(4096), 2),
}

_ST = os.stat_result((0o100644, 2, 0, 1, 0, 0, 4096, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
_ATTRS = EntryAttributes.from_stat(2, _ST)


class _MemoryOps(Operations):
    """Answers from constants: what remains is the library's own cost."""

    def lookup(self, parent: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        return _ATTRS

    def getattr(self, inode: int, fh: int | None, ctx: RequestContext) -> EntryAttributes:
        return _ATTRS


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, timed in batches so the clock is not what we measure."""
    batch, calls = 1000, 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        now = time.perf_counter()
        if now >= end:
            return calls / (now - start)


def measure(seconds: float = 1.0) -> dict[str, float]:
    """Operations per second, by name."""
    results: dict[str, float] = {}
    decode = protocol.decode
    for name, raw in REQUESTS.items():
        buf = bytearray(raw)
        view = memoryview(buf)
        n = len(raw)
        results[f"decode {name}"] = _rate(lambda: decode(view[:n]), seconds)
    results["encode entry reply"] = _rate(lambda: protocol.reply_bytes(7, entry_bytes(_ATTRS)), seconds)
    results["encode error reply"] = _rate(lambda: protocol.reply_error(7, errno.ENOENT), seconds)

    dispatcher = Dispatcher(_MemoryOps(), BackingRegistry(-1, False), protocol.InitConfig(want=0))
    counts = [0] * (abi.MAX_OPCODE + 1)
    for name in ("LOOKUP", "GETATTR"):
        view = memoryview(bytearray(REQUESTS[name]))
        n = len(REQUESTS[name])
        # the whole path a request takes: decode, handler, reply bytes (as both transports call it)
        results[f"dispatch {name}"] = _rate(lambda: dispatcher.handle(view[:n], None, counts), seconds)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    results = measure(args.seconds)
    for name, rate in results.items():
        print(f"{name:24} {rate / 1e3:10.0f} k/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
