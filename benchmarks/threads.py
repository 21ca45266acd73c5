"""Does a multi-threaded dispatcher pay under the GIL? Worker threads (each on a cloned /dev/fuse fd) vs load,
and io_uring's pinned queue threads (one per CPU queue, the default; the same without busy polling; and two)
beside them.

    sudo python3 -m benchmarks.threads [--threads 1,2,4] [--clients 4] [--seconds 3]

Three loads, each from ``--clients`` processes at once, on a mirror of a scratch directory:
- ``stat``: lstat of distinct files with cache=none, so every call is a LOOKUP served by Python;
- ``fsync``: a 4 KiB pwrite and an fsync per call, each client on its own file: the daemon blocks in fsync(2);
- ``slow fs``: lstat on a mirror whose lookup waits 1 ms, as a network-backed filesystem would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process, Queue
from pathlib import Path

from shuntfs.uring_queues import BUSY_POLL_US

from .targets import BenchmarkError, Target, wait_mounted

_SLOW_FS = """
import sys, time
from shuntfs.mirror import Mirror
from shuntfs.session import Session

class Slow(Mirror):
    def lookup(self, parent, name, ctx):
        time.sleep(0.001)
        return super().lookup(parent, name, ctx)

source, mnt = sys.argv[1], sys.argv[2]
threads, queue_threads, poll = (int(a) for a in sys.argv[3:6])
Session(Slow(source, cache="none"), mnt, threads=threads, passthrough=True, io_uring=queue_threads > 0,
        queue_threads=max(1, queue_threads), busy_poll_us=poll).serve()
"""


def _stat_client(root: Path, client: int, seconds: float, out: Queue) -> None:
    names = [str(root / f"c{client}" / f"f{i}") for i in range(200)]
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for name in names:
            os.lstat(name)
        n += len(names)
    out.put(n)


def _fsync_client(root: Path, client: int, seconds: float, out: Queue) -> None:
    fd = os.open(root / f"sync-{client}", os.O_WRONLY | os.O_CREAT, 0o644)
    block = os.urandom(4096)
    n, end = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            os.pwrite(fd, block, (n % 256) * 4096)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
    out.put(n)


def _load(client_fn, root: Path, clients: int, seconds: float) -> float:
    out: Queue = Queue()
    procs = [Process(target=client_fn, args=(root, c, seconds, out)) for c in range(clients)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / (time.perf_counter() - start)


def _slow_mount(source: Path, mnt: Path, threads: int, queue_threads: int, poll: int) -> subprocess.Popen:
    """The slow filesystem over /dev/fuse with ``threads`` workers, or over io_uring if ``queue_threads``."""
    args = [str(source), str(mnt), str(threads), str(queue_threads), str(poll)]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_FS, *args])
    wait_mounted(proc, mnt, lambda: "the slow filesystem did not mount", timeout=10)
    return proc


def _columns(threads: list[int]) -> list[tuple[str, list[str], int, int, int]]:
    """(label, -o options, /dev/fuse threads, io_uring queue threads or 0, busy_poll) per column: /dev/fuse with N
    worker threads, then io_uring with one pinned thread per CPU queue (the default), the same without busy
    polling, and with two threads per queue."""
    cols = [(f"threads={n}", ["io_uring=off", f"threads={n}"], n, 0, 0) for n in threads]
    uring = [
        ("io_uring", ["io_uring=on"], 2, 1, BUSY_POLL_US),
        ("io_uring, busy_poll=0", ["io_uring=on", "busy_poll=0"], 2, 1, 0),
        ("io_uring, queue_threads=2", ["io_uring=on", "queue_threads=2"], 2, 2, BUSY_POLL_US),
    ]
    return cols + uring


def measure(threads: list[int], clients: int, seconds: float, base: Path) -> dict[str, dict[str, float]]:
    source = base / "source"
    source.mkdir()
    for c in range(clients):
        (source / f"c{c}").mkdir()
        for i in range(200):
            (source / f"c{c}" / f"f{i}").touch()
    results: dict[str, dict[str, float]] = {"stat, cache=none": {}, "write+fsync, fallback": {},
                                            "stat on a 1 ms filesystem": {}}
    for label, options, n, queue_threads, poll in _columns(threads):
        for load, extra, fn in (
            ("stat, cache=none", ["cache=none"], _stat_client),
            ("write+fsync, fallback", ["passthrough=off"], _fsync_client),
        ):
            t = Target(f"t{n}", load, extra + options)
            t.start(source, base, None)
            try:
                results[load][label] = _load(fn, t.root, clients, seconds)
            finally:
                t.stop()
        mnt = base / "slow"
        mnt.mkdir(exist_ok=True)
        proc = _slow_mount(source, mnt, n, queue_threads, poll)
        try:
            results["stat on a 1 ms filesystem"][label] = _load(_stat_client, mnt, clients, seconds)
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
            proc.wait(timeout=20)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    base = Path(tempfile.mkdtemp(prefix="shuntfs-threads-", dir="/var/tmp"))
    try:
        results = measure(counts, args.clients, args.seconds, base)
    except BenchmarkError as e:
        print(f"benchmark: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    labels = [c[0] for c in _columns(counts)]
    print(f"{args.clients} clients at once, calls/s by transport and worker threads:")
    print("| load | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for load, by_column in results.items():
        print(f"| {load} | " + " | ".join(f"{by_column[label]:.0f}" for label in labels) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
