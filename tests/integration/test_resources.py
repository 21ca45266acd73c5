"""The daemon lives for weeks: inodes forgotten by the kernel must release their fds."""

from __future__ import annotations

import os
import subprocess

from .conftest import wait_for


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_forget_releases_inodes_and_fds(mount_factory):
    m = mount_factory()
    baseline_fds = fd_count(m.pid)
    for i in range(300):
        (m.source / f"f{i}").write_bytes(b"x")
    for i in range(300):
        with open(m.mnt / f"f{i}", "rb") as f:
            f.read()
    assert m.stats()["filesystem"]["inodes"] >= 300
    assert fd_count(m.pid) >= baseline_fds + 300
    subprocess.run(["sh", "-c", "echo 2 > /proc/sys/vm/drop_caches"], check=True)
    assert wait_for(lambda: m.stats()["filesystem"]["inodes"] < 10, 10)
    assert wait_for(lambda: fd_count(m.pid) <= baseline_fds + 2, 10)
    stats = m.stats()
    assert stats["requests"].get("FORGET", 0) + stats["requests"].get("BATCH_FORGET", 0) > 0
    assert stats["backing_files"] == [] and stats["open_files"] == 0
