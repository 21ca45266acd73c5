"""fusepy code on shuntfs.fusepy against the same code on mfusepy (over Debian's libfuse3), side by side.

    python3 -m benchmarks.fusepy_bench [--files 2000] [--repeat 3]       # as root; pip install mfusepy first

Rows, each run on every target in turn, ``--repeat`` times, medians shown with the ratio to the reference column:

- examples/fusepy_memory.py (one file of fusepy code) through shuntfs.fusepy and through mfusepy: create+stat,
  ``ls -l``-style listing of a warm directory (listdir and lstat of every entry), unlink;
- examples/pathloopback.py (path-based API) against the inode-based mirror (``shuntfs``), both on the same source
  with default options: create+stat+unlink, and the warm listing;
- examples/fusepy_loopback.py with ``passthrough=True`` against the source directory itself: a sequential read and
  a sequential write of ``--mib`` MiB, with the main benchmark's fio jobs (apt-get install fio).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from shuntfs.mount import find_mount

from .workloads import Params, prepare_data, seq_read, seq_write

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@contextmanager
def mounted(cmd: list[str], mnt: Path) -> Iterator[Path]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ,
                            PYTHONPATH=str(ROOT / "src")))
    try:
        deadline = time.monotonic() + 20
        while find_mount(str(mnt)) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[1:3]} did not mount: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.02)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _mfusepy_command(script: Path, *args: str) -> list[str]:
    """The example run on mfusepy: ``fuse`` names mfusepy before the example's alias would name shuntfs.fusepy."""
    code = ("import runpy, sys, mfusepy; sys.modules['fuse'] = mfusepy; "
            f"sys.argv = {[str(script), *args]!r}; runpy.run_path({str(script)!r}, run_name='__main__')")
    return [sys.executable, "-W", "ignore", "-c", code]


def create_stat(root: Path, files: int) -> float:
    started = time.perf_counter()
    for i in range(files):
        path = root / f"f{i}"
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(path)
    return files / (time.perf_counter() - started)


def listing(root: Path, files: int) -> float:
    os.listdir(root)  # warm: names and attributes cached as the kernel allows
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for name in os.listdir(root):
            os.lstat(root / name)
    return rounds * files / (time.perf_counter() - started)


def unlink(root: Path, files: int) -> float:
    started = time.perf_counter()
    for i in range(files):
        os.unlink(root / f"f{i}")
    return files / (time.perf_counter() - started)


def create_stat_unlink(root: Path, files: int) -> float:
    started = time.perf_counter()
    for i in range(files):
        path = root / f"c{i}"
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(path)
        os.unlink(path)
    return files / (time.perf_counter() - started)


def _metadata_rows(mnt: Path, files: int) -> dict[str, float]:
    return {"create+stat": create_stat(mnt, files), "ls -l, warm": listing(mnt, files), "unlink": unlink(mnt, files)}


def _loopback_rows(mnt: Path, files: int) -> dict[str, float]:
    rows = {"create+stat+unlink": create_stat_unlink(mnt, files)}
    for i in range(files):
        os.close(os.open(mnt / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    rows["ls -l, warm"] = listing(mnt, files)
    for i in range(files):
        os.unlink(mnt / f"f{i}")
    return rows


def _data_rows(root: Path, params: Params, tag: str) -> dict[str, float]:
    """The main benchmark's fio jobs, so these rows mean what its data rows mean; dirty pages of the previous side are
    written out first, so neither side pays for the other's writeback."""
    os.sync()
    write = seq_write(root, params, tag)
    os.sync()
    return {"seq write 1 MiB + fsync, MB/s": write, "seq read 1 MiB (warm), MB/s": seq_read(root, params, tag)}


def run(files: int, mib: int, repeat: int) -> list[tuple[str, str, str, list[float], list[float]]]:
    """Rows of (group, row, unit, shuntfs-side values, reference values)."""
    base = Path(tempfile.mkdtemp(prefix="shuntfs-fusepy-bench-"))
    params = Params(size_mib=mib)
    results: dict[tuple[str, str], dict[str, list[float]]] = {}

    def note(group: str, side: str, rows: dict[str, float]) -> None:
        for row, value in rows.items():
            results.setdefault((group, row), {}).setdefault(side, []).append(value)

    try:
        source = base / "src"
        mnt = base / "mnt"
        mnt.mkdir()
        for _ in range(repeat):
            memory = EXAMPLES / "fusepy_memory.py"
            for side, cmd in (("ours", [sys.executable, str(memory), str(mnt)]),
                              ("reference", _mfusepy_command(memory, str(mnt)))):
                with mounted(cmd, mnt):
                    note("fusepy memory: shuntfs.fusepy vs mfusepy", side, _metadata_rows(mnt, files))
            for side, cmd in (("ours", [sys.executable, str(EXAMPLES / "pathloopback.py"), str(source), str(mnt),
                                        "-f"]),
                              ("reference", [sys.executable, "-m", "shuntfs.cli", str(source), str(mnt), "-f"])):
                shutil.rmtree(source, ignore_errors=True)
                source.mkdir()
                with mounted(cmd, mnt):
                    note("path loopback vs inode mirror", side, _loopback_rows(mnt, files))
            shutil.rmtree(source, ignore_errors=True)
            source.mkdir()
            prepare_data(source, params)
            with mounted([sys.executable, str(EXAMPLES / "fusepy_loopback.py"), str(source), str(mnt)], mnt):
                note("fusepy loopback, passthrough=True vs native", "ours", _data_rows(mnt, params, "fusepy"))
            note("fusepy loopback, passthrough=True vs native", "reference", _data_rows(source, params, "native-src"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return [(group, row, "", sides.get("ours", []), sides.get("reference", []))
            for (group, row), sides in results.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.fusepy_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        print(f"fusepy_bench: mfusepy is needed (pip install mfusepy; apt-get install fuse3): {e}", file=sys.stderr)
        return 1
    median: Callable[[list[float]], float] = statistics.median
    group = None
    for name, row, _unit, ours, reference in run(args.files, args.mib, args.repeat):
        if name != group:
            print(f"\n{name}")
            print(f"  {'row':34} {'shuntfs side':>14} {'reference':>14} {'ratio':>7}")
            group = name
        a, b = median(ours), median(reference)
        print(f"  {row:34} {a:>14,.0f} {b:>14,.0f} {a / b:>6.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
