"""32 workers of mixed metadata and data operations, short: no errors, no deadlock, and the daemon's open fds and
RSS back to their baseline once the kernel forgets the inodes. The soak is
``python3 -m tests.stress.load --workers 32 --seconds 600``."""

from __future__ import annotations

import os
import random

from ..stress import load

SECONDS = float(os.environ.get("SHUNTFS_LOAD_SECONDS", "4"))
#: Growth of the daemon's RSS over its post-warm-up baseline that is allocator slack, not a leak.
RSS_SLACK_KIB = 4096


def test_32_workers_then_back_to_baseline(mounted):
    seed = random.SystemRandom().randrange(1 << 32)
    print(f"load seed {seed}")
    r = load.measured(mounted, 32, SECONDS, seed)
    print(r)
    assert r["errors"] == [] and r["deadlocked"] == 0
    assert r["ops"] > 32 * 10
    assert r["fds"] <= r["baseline_fds"], "the daemon kept fds after the kernel forgot the inodes"
    assert r["rss_kib"] <= r["baseline_rss_kib"] + RSS_SLACK_KIB
    assert mounted.stats()["filesystem"]["inodes"] <= 3
