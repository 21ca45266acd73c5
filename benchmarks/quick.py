#!/usr/bin/env python3
"""Side-by-side throughput: native directory vs shuntfs passthrough vs shuntfs fallback, in one run.

    sudo python3 benchmarks/quick.py [--size-mib 256] [--files 2000] [--repeat 3] [--json out.json]

Each workload runs on all three targets in turn (interleaved, repeated) and the table shows medians and the ratio
to native. Needs root (passthrough needs CAP_SYS_ADMIN).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 1 << 20


def seq_write(root: Path, size: int) -> float:
    buf = os.urandom(CHUNK)
    start = time.perf_counter()
    fd = os.open(root / "seq.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // CHUNK):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size / (time.perf_counter() - start)


def seq_read_warm(root: Path, size: int) -> float:
    fd = os.open(root / "seq.bin", os.O_RDONLY)
    try:
        while os.read(fd, CHUNK):  # warm the page cache
            pass
        os.lseek(fd, 0, os.SEEK_SET)
        buf = bytearray(CHUNK)
        start = time.perf_counter()
        while os.readv(fd, [buf]):
            pass
        return size / (time.perf_counter() - start)
    finally:
        os.close(fd)


def create_stat_unlink(root: Path, files: int) -> float:
    d = root / "meta"
    d.mkdir(exist_ok=True)
    names = [str(d / f"f{i}") for i in range(files)]
    start = time.perf_counter()
    for n in names:
        os.close(os.open(n, os.O_WRONLY | os.O_CREAT, 0o644))
    for n in names:
        os.stat(n)
    for n in names:
        os.unlink(n)
    return files / (time.perf_counter() - start)


WORKLOADS = [
    ("seq write 1 MiB + fsync", "MB/s", lambda r, a: seq_write(r, a.size_mib * CHUNK) / 1e6),
    ("seq read 1 MiB (warm)", "MB/s", lambda r, a: seq_read_warm(r, a.size_mib * CHUNK) / 1e6),
    ("create+stat+unlink", "files/s", lambda r, a: create_stat_unlink(r, a.files)),
]


def mount(src: Path, mnt: Path, *options: str) -> None:
    cmd = [sys.executable, "-m", "shuntfs.cli", str(src), str(mnt)]
    for o in options:
        cmd += ["-o", o]
    subprocess.run(cmd, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="shuntfs-bench-"))
    targets = {
        "native": base / "native",
        "passthrough": base / "mnt-pt",
        "fallback": base / "mnt-fb",
    }
    sources = {"passthrough": base / "src-pt", "fallback": base / "src-fb"}
    for p in list(targets.values()) + list(sources.values()):
        p.mkdir()
    mount(sources["passthrough"], targets["passthrough"])
    mount(sources["fallback"], targets["fallback"], "passthrough=off")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for name, _unit, fn in WORKLOADS:
            results[name] = {t: [] for t in targets}
            for _ in range(args.repeat):
                for target, root in targets.items():  # interleaved, so drift hits all three alike
                    results[name][target].append(fn(root, args))
    finally:
        for t in ("passthrough", "fallback"):
            subprocess.run(["umount", str(targets[t])], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    print(f"{'workload':28} {'unit':8} {'native':>10} {'passthrough':>12} {'ratio':>6} {'fallback':>10} {'ratio':>6}")
    summary = {}
    for name, unit, _fn in WORKLOADS:
        med = {t: statistics.median(v) for t, v in results[name].items()}
        summary[name] = {"unit": unit, "median": med, "runs": results[name]}
        print(
            f"{name:28} {unit:8} {med['native']:10.0f} {med['passthrough']:12.0f} "
            f"{med['passthrough'] / med['native']:6.2f} {med['fallback']:10.0f} {med['fallback'] / med['native']:6.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
