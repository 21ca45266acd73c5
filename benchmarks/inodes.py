"""Daemon memory per known inode: look up N files through a mount and compare the daemon's RSS before and after.

    sudo python3 -m benchmarks.inodes [--inodes 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from shuntfs.control_client import query

from .targets import BenchmarkError, Target, rss_bytes

PER_DIR = 1000


def rss_per_inode(base: Path, count: int, options: list[str] | None = None) -> dict:
    source = base / "inodes-src"
    source.mkdir()
    dirs = [source / f"d{i:04d}" for i in range((count + PER_DIR - 1) // PER_DIR)]
    for i, d in enumerate(dirs):
        d.mkdir()
        for j in range(min(PER_DIR, count - i * PER_DIR)):
            os.close(os.open(d / f"f{j}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    target = Target("inodes", "shuntfs", options or [])
    target.start(source, base, None)
    try:
        mnt = target.root
        os.stat(mnt / dirs[0].name / "f0")  # first lookups: imports and buffers are in place before the baseline
        before = query(str(mnt))["filesystem"]["inodes"], rss_bytes(target.pid)
        for d in dirs:
            for name in os.listdir(mnt / d.name):
                os.lstat(mnt / d.name / name)
        after = query(str(mnt))["filesystem"]["inodes"], rss_bytes(target.pid)
    finally:
        target.stop()
        shutil.rmtree(source)
    known = after[0] - before[0]
    if known < count * 0.99:
        raise BenchmarkError(f"only {known} of {count} inodes stayed known: the kernel forgot them early")
    return {
        "inodes": after[0],
        "rss_before": before[1],
        "rss_after": after[1],
        "bytes_per_inode": (after[1] - before[1]) / known,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inodes", type=int, default=100_000)
    parser.add_argument("-o", dest="options", action="append", default=[], help="a shuntfs -o option")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="shuntfs-inodes-", dir="/var/tmp"))
    try:
        r = rss_per_inode(base, args.inodes, args.options)
    except BenchmarkError as e:
        print(f"benchmark: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{r['inodes']} inodes known: RSS {r['rss_before'] / 2**20:.1f} -> {r['rss_after'] / 2**20:.1f} MiB, "
          f"{r['bytes_per_inode']:.0f} bytes per inode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
