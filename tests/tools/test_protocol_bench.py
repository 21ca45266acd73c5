"""The protocol micro-benchmark measures what it says: every figure comes from real decode/dispatch calls."""

from __future__ import annotations

from benchmarks import protocol_bench


def test_every_request_decodes_and_dispatches():
    from shuntfs import protocol

    for name, raw in protocol_bench.REQUESTS.items():
        req = protocol.decode(raw)
        assert req.opcode == raw[4]  # the opcode field, little-endian, below 256
    results = protocol_bench.measure(0.01)
    assert set(results) >= {f"decode {n}" for n in protocol_bench.REQUESTS} | {"dispatch LOOKUP", "dispatch GETATTR"}
    assert all(rate > 1000 for rate in results.values()), results
