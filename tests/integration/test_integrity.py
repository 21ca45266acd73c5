"""The data integrity exerciser, short: zero miscompares through the mount and in the source, in both modes.

The long run is ``python3 -m tests.stress.integrity --ops 1000000`` (see the README's Guarantees)."""

from __future__ import annotations

import os
import random

from ..stress import integrity

OPS = int(os.environ.get("SHUNTFS_INTEGRITY_OPS", "6000"))


def test_random_io_matches_the_model(mounted):
    seed = int(os.environ.get("SHUNTFS_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"integrity seed {seed}")  # shown on failure, for --seed
    src, mnt = mounted.source, mounted.mnt
    one = integrity.single(str(mnt / "single"), str(src / "single"), OPS // 2, seed)
    many = integrity.shared(str(mnt / "shared"), str(src / "shared"), 4, OPS // 8, seed)
    assert one.ops + many.ops == OPS // 2 + 4 * (OPS // 8)
    # every kind of operation ran
    assert {"write", "read", "truncate", "fallocate", "mmap_read", "mmap_write", "direct_read", "direct_write"} <= set(
        one.by_op)
    reqs = mounted.requests()
    if mounted.mode == "passthrough":
        assert reqs.get("READ", 0) == 0 and reqs.get("WRITE", 0) == 0
    else:
        assert reqs["READ"] > 0 and reqs["WRITE"] > 0
