"""What acting as the caller costs the daemon per request: the mirror's handlers called directly (no kernel round
trip), as root (who skips it) and as nobody, side by side in one run.

    python3 -m benchmarks.caller_cost [--calls N] [--depth D]

Needs root. Prints microseconds per call for each and the difference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from shuntfs.mirror import Mirror
from shuntfs.operations import ROOT_INODE, RequestContext


def _getxattr(ops: Mirror, inode: int, ctx: RequestContext) -> None:
    try:
        ops.getxattr(inode, b"user.none", ctx)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--depth", type=int, default=4, help="directories above the file")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("caller_cost: needs root (it acts as nobody)", file=sys.stderr)
        return 1
    base = tempfile.mkdtemp(prefix="shuntfs-caller-")
    try:
        os.chmod(base, 0o755)
        path = base
        for level in range(args.depth - 1):
            path = os.path.join(path, f"d{level}")
            os.mkdir(path, 0o755)
        with open(os.path.join(path, "f"), "w") as f:
            f.write("x")
        os.chmod(os.path.join(path, "f"), 0o666)
        ops = Mirror(base)
        root = RequestContext(0, 0, os.getpid())
        nobody = RequestContext(65534, 65534, os.getpid())
        parent = ROOT_INODE
        for level in range(args.depth - 1):
            parent = ops.lookup(parent, f"d{level}".encode(), root).st_ino
        inode = ops.lookup(parent, b"f", root).st_ino
        cases = {
            "lookup": lambda ctx: ops.forget([(ops.lookup(parent, b"f", ctx).st_ino, 1)]),
            f"open+release (depth {args.depth})": lambda ctx: ops.release(ops.open(inode, os.O_RDONLY, ctx).fh),
            f"getxattr (depth {args.depth})": lambda ctx: _getxattr(ops, inode, ctx),
        }
        print(f"{'handler':28s} {'root us':>8s} {'nobody us':>10s} {'extra us':>9s}")
        for label, call in cases.items():
            best = {}
            for who, ctx in (("root", root), ("nobody", nobody)):
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    for _ in range(args.calls):
                        call(ctx)
                    times.append((time.perf_counter() - started) / args.calls * 1e6)
                best[who] = min(times)
            print(f"{label:28s} {best['root']:8.2f} {best['nobody']:10.2f} {best['nobody'] - best['root']:9.2f}")
        ops.destroy()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
