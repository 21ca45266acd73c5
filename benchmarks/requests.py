"""What each metadata workload asks of the daemon: the kernel's requests per entry, by opcode, and the daemon's CPU
per request, as the mirror (default options) serves them. The map for making metadata faster: a round trip cut
counts more than any microsecond inside one.

    sudo python3 -m benchmarks.requests [--files 10000] [--base DIR] [-o OPTIONS]

Each workload runs once with cold dentries, as in ``benchmarks.run``. CPU is the daemon's user+system time over
the workload (all its threads, so io_uring queue polling counts too; ``-o busy_poll=0`` leaves it out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shuntfs.control_client import query
from shuntfs.mount import find_mount

from .workloads import WORKLOADS, Params, drop_dentries, prepare


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime of all threads


def measure(mnt: Path, params: Params) -> list[tuple[str, int, float, float, dict[str, int]]]:
    """Per metadata workload: (name, entries, wall seconds, daemon CPU seconds, requests by opcode)."""
    pid = query(str(mnt))["pid"]
    rows = []
    for w in WORKLOADS:
        if w.kind != "metadata":
            continue
        drop_dentries()
        if w.warm_up:
            w.run(mnt, params, "passthrough-0-warm-up")
        before, cpu = query(str(mnt))["requests"], _cpu_seconds(pid)
        started = time.perf_counter()
        w.run(mnt, params, "passthrough-0")
        wall = time.perf_counter() - started
        time.sleep(0.2)  # the FORGETs and RELEASEs that follow the last call
        after = query(str(mnt))["requests"]
        requests = {op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0)}
        rows.append((w.name, w.entries(params), wall, _cpu_seconds(pid) - cpu, requests))
    return rows


def report(rows: list[tuple[str, int, float, float, dict[str, int]]]) -> str:
    lines = [f"{'workload':26} {'entries':>8} {'req/entry':>9} {'µs/entry':>9} {'CPU µs/req':>10}  requests per entry"]
    for name, entries, wall, cpu, requests in rows:
        total = sum(requests.values())
        top = sorted(requests.items(), key=lambda kv: -kv[1])
        detail = ", ".join(f"{op} {n / entries:.3f}" for op, n in top if n / entries >= 0.0005)
        lines.append(f"{name:26} {entries:>8,} {total / entries:>9.3f} {wall / entries * 1e6:>9.1f} "
                     f"{cpu / max(total, 1) * 1e6:>10.1f}  {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.requests", description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--base", help="scratch directory on the filesystem to measure (default: in /var/tmp)")
    parser.add_argument("-o", dest="options", default="", help="-o options for shuntfs")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="shuntfs-requests-", dir=args.base or "/var/tmp"))
    source, mnt, scratch = base / "src", base / "mnt", base / "scratch"
    for d in (source, mnt, scratch):
        d.mkdir()
    try:
        params = Params(size_mib=1, files=args.files)
        prepare(source, scratch, params)
        cmd = [sys.executable, "-m", "shuntfs.cli", str(source), str(mnt)]
        if args.options:
            cmd += ["-o", args.options]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"requests: shuntfs did not mount: {done.stderr.strip()}", file=sys.stderr)
            return 1
        try:
            print(report(measure(mnt, params)))
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        deadline = time.monotonic() + 10
        while find_mount(str(mnt)) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
