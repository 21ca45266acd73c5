"""One metadata round trip, side by side: what a GETXATTR costs a lone client through each server, and how much of
shuntfs's cost is the library itself (transport, decode, dispatch, reply) rather than the mirror's work.

    sudo python3 -m benchmarks.round_trip [--calls 20000] [--repeat 5]

A client pinned to CPU 0 calls ``getxattr(file, "security.selinux")`` in a loop (ENODATA, as in ``ls -l``, which
asks this for every name). Targets, in turn, each run ``--repeat`` times: native; the mirror (default options);
``floor``, the mirror with a getxattr that answers ENODATA from memory (no syscall: the library's own cost per
request over io_uring); libfuse's ``passthrough_hp`` over /dev/fuse and over io_uring (built by
``benchmarks.reference``). Prints the median microseconds per call and each target's ratio to the C server over
io_uring.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .targets import BenchmarkError, Target, make_targets, wait_mounted

_FLOOR_FS = """
import errno, sys
import shuntfs

class Floor(shuntfs.Mirror):
    def getxattr(self, inode, name, ctx):
        raise shuntfs.FUSEError(errno.ENODATA)

sys.exit(shuntfs.main(Floor, sys.argv[1:]))
"""

_CLIENT = """
import os, sys, time
os.sched_setaffinity(0, {0})
path, calls = sys.argv[1], int(sys.argv[2])
getxattr = os.getxattr
for _ in range(200):
    try:
        getxattr(path, "security.selinux")
    except OSError:
        pass
start = time.perf_counter()
for _ in range(calls):
    try:
        getxattr(path, "security.selinux")
    except OSError:
        pass
print((time.perf_counter() - start) / calls * 1e6)
"""

#: (name, label) in table order; "native" and "floor" are started here, the others by Target
TARGETS = [
    ("native", "native"),
    ("passthrough", "shuntfs mirror (defaults)"),
    ("floor", "shuntfs, getxattr answered from memory"),
    ("c-reference", "libfuse passthrough_hp, /dev/fuse"),
    ("c-reference-uring", "libfuse passthrough_hp, io_uring"),
]


class _Floor:
    """The mirror with a getxattr that makes no syscall, run as a command with the library's defaults."""

    def __init__(self, source: Path, base: Path) -> None:
        self.root = base / "mnt-floor"
        self.root.mkdir(exist_ok=True)
        self._log = open(base / "floor.log", "wb")
        self._proc = subprocess.Popen([sys.executable, "-c", _FLOOR_FS, str(source), str(self.root), "-f"],
                                      stdout=subprocess.DEVNULL, stderr=self._log)
        wait_mounted(self._proc, self.root, lambda: f"the floor filesystem did not mount: see {self._log.name}")

    def stop(self) -> None:
        subprocess.run(["umount", str(self.root)], capture_output=True)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def _per_call(path: Path, calls: int) -> float:
    done = subprocess.run([sys.executable, "-c", _CLIENT, str(path), str(calls)], capture_output=True, text=True)
    if done.returncode:
        raise BenchmarkError(f"the client failed on {path}: {done.stderr.strip()}")
    return float(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("round_trip: needs root (it mounts)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="shuntfs-trip-", dir="/var/tmp"))
    source = base / "source"
    source.mkdir()
    (source / "file").write_bytes(b"x")
    roots: dict[str, Path] = {"native": source}
    started: list[_Floor | Target] = []
    try:
        for name, _label in TARGETS:
            if name == "native":
                continue
            if name == "floor":
                target: _Floor | Target = _Floor(source, base)
            else:
                target = make_targets([name])[0]
                target.start(source, base, None)
            started.append(target)
            roots[name] = target.root
        times: dict[str, list[float]] = {name: [] for name, _ in TARGETS}
        for _ in range(args.repeat):
            for name, _label in TARGETS:
                times[name].append(_per_call(roots[name] / "file", args.calls))
    except BenchmarkError as e:
        print(f"round_trip: {e}", file=sys.stderr)
        return 1
    finally:
        for target in started:
            target.stop()
        shutil.rmtree(base, ignore_errors=True)
    c_uring = statistics.median(times["c-reference-uring"])
    print(f"getxattr round trip, lone client on CPU 0, median of {args.repeat} x {args.calls} calls")
    print(f"  {'target':45} {'µs/call':>8} {'× C io_uring':>13}")
    for name, label in TARGETS:
        us = statistics.median(times[name])
        print(f"  {label:45} {us:8.1f} {us / c_uring:12.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
