"""A data integrity exerciser in the spirit of fsx: random I/O on one file, checked against a model of its bytes.

Operations: pwrite, pread, ftruncate, fallocate (allocate, keep-size, punch hole), mmap reads, mmap writes with
msync, O_DIRECT reads and writes, and closing and reopening the file. Every read is compared with the model, and so is
the whole file every ``verify_every`` operations and at the end, through the mount and in the source.

Two phases: one process that may change the size (truncate, extend, punch anywhere), then several processes on the
same file, each owning a page-aligned stripe of it, so that their writes interleave in the file without making the
expected contents depend on scheduling.

Long run (the README quotes its latest result):

    python3 -m tests.stress.integrity --ops 1000000

Replay a failure with the ``--seed`` it printed.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import sys
import time
from dataclasses import dataclass, field

PAGE = mmap.PAGESIZE
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


class Miscompare(AssertionError):
    pass


@dataclass
class Report:
    ops: int = 0
    by_op: dict = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, name: str) -> None:
        self.ops += 1
        self.by_op[name] = self.by_op.get(name, 0) + 1

    def merge(self, other: Report) -> None:
        self.ops += other.ops
        for k, v in other.by_op.items():
            self.by_op[k] = self.by_op.get(k, 0) + v


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Exerciser:
    """Random operations on ``path`` within ``[lo, hi)``; ``resize`` allows operations that change the size."""

    def __init__(self, path: str, seed: int, lo: int, hi: int, resize: bool, model: bytearray) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.seed = seed
        self.lo, self.hi = lo, hi
        self.resize = resize
        self.model = model
        self.fd = os.open(path, os.O_RDWR)
        self.dfd = os.open(path, os.O_RDWR | os.O_DIRECT)
        self.history: list[str] = []
        self.report = Report()
        # O_DIRECT needs an aligned buffer; anonymous mmaps are page-aligned.
        self.dbuf = mmap.mmap(-1, 1 << 20)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.dfd)
        self.dbuf.close()

    # ---- helpers
    def _range(self, max_len: int, align: int = 1, within_size: bool = False) -> tuple[int, int]:
        top = min(self.hi, len(self.model)) if within_size else self.hi
        if top - self.lo < align:
            return self.lo, 0
        off = self.rng.randrange(self.lo, top) // align * align
        off = max(off, self.lo)
        length = self.rng.randrange(1, max_len + 1)
        length = min(length, top - off)
        length = max(length // align * align, 0)
        return off, length

    def _fail(self, what: str, off: int, got: bytes, want: bytes) -> None:
        first = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
        raise Miscompare(
            f"{what} at offset {off}: {len(got)} bytes read, {len(want)} expected, first difference at "
            f"{off + first}; seed {self.seed}; last operations:\n  " + "\n  ".join(self.history[-15:])
        )

    def _expect(self, off: int, length: int) -> bytes:
        return bytes(self.model[off:off + length])

    def _log(self, text: str) -> None:
        self.history.append(text)
        if len(self.history) > 64:
            del self.history[:32]

    # ---- operations
    def op_write(self) -> None:
        off, length = self._range(65536)
        if length == 0:
            return
        data = self.rng.randbytes(length)
        self._log(f"pwrite {off}+{length}")
        assert os.pwrite(self.fd, data, off) == length
        if off > len(self.model):
            self.model.extend(bytes(off - len(self.model)))
        self.model[off:off + length] = data

    def op_read(self) -> None:
        off, length = self._range(65536)
        self._log(f"pread {off}+{length}")
        got = os.pread(self.fd, length, off)
        want = self._expect(off, length)
        if got != want:
            self._fail("pread", off, got, want)

    def op_truncate(self) -> None:
        size = self.rng.randrange(0, self.hi + 1)
        self._log(f"truncate {size}")
        os.ftruncate(self.fd, size)
        if size < len(self.model):
            del self.model[size:]
        else:
            self.model.extend(bytes(size - len(self.model)))

    def op_fallocate(self) -> None:
        off, length = self._range(262144)
        if length == 0:
            return
        mode = self.rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE])
        if not self.resize:
            mode |= FALLOC_FL_KEEP_SIZE
            off, length = self._range(262144, within_size=True)
            if length == 0:
                return
        self._log(f"fallocate mode={mode} {off}+{length}")
        _fallocate(self.fd, mode, off, length)
        end = off + length
        if mode & FALLOC_FL_PUNCH_HOLE:
            end = min(end, len(self.model))
            if end > off:
                self.model[off:end] = bytes(end - off)
        elif not mode & FALLOC_FL_KEEP_SIZE and end > len(self.model):
            self.model.extend(bytes(end - len(self.model)))

    def op_mmap_read(self) -> None:
        size = len(self.model)
        off, length = self._range(65536, within_size=True)
        if length == 0 or size == 0:
            return
        self._log(f"mmap read {off}+{length}")
        start = off // PAGE * PAGE
        with mmap.mmap(self.fd, min(size, off + length) - start, offset=start, prot=mmap.PROT_READ) as m:
            got = m[off - start:off - start + length]
        want = self._expect(off, length)
        if got != want:
            self._fail("mmap read", off, got, want)

    def op_mmap_write(self) -> None:
        size = len(self.model)
        off, length = self._range(65536, within_size=True)
        if length == 0 or size == 0:
            return
        data = self.rng.randbytes(length)
        self._log(f"mmap write+msync {off}+{length}")
        start = off // PAGE * PAGE
        with mmap.mmap(self.fd, off + length - start, offset=start) as m:
            m[off - start:off - start + length] = data
            m.flush()
        self.model[off:off + length] = data

    def op_direct_write(self) -> None:
        off, length = self._range(1 << 20, align=4096)
        if length == 0:
            return
        if not self.resize:  # a stripe must not move the size: O_DIRECT writes past it would
            off, length = self._range(1 << 20, align=4096, within_size=True)
            if length == 0:
                return
        data = self.rng.randbytes(length)
        self.dbuf[:length] = data
        self._log(f"O_DIRECT write {off}+{length}")
        assert os.pwritev(self.dfd, [memoryview(self.dbuf)[:length]], off) == length
        if off > len(self.model):
            self.model.extend(bytes(off - len(self.model)))
        self.model[off:off + length] = data

    def op_direct_read(self) -> None:
        off, length = self._range(1 << 20, align=4096)
        if length == 0:
            return
        self._log(f"O_DIRECT read {off}+{length}")
        n = os.preadv(self.dfd, [memoryview(self.dbuf)[:length]], off)
        got = bytes(self.dbuf[:n])
        want = self._expect(off, length)
        if got != want:
            self._fail("O_DIRECT read", off, got, want)

    def op_reopen(self) -> None:
        self._log("close+reopen")
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDWR)

    def verify(self, path: str | None = None, lo: int | None = None, hi: int | None = None) -> None:
        lo = self.lo if lo is None else lo
        hi = min(self.hi, len(self.model)) if hi is None else hi
        if path is None:
            got = os.pread(self.fd, hi - lo, lo)
        else:
            with open(path, "rb") as f:
                f.seek(lo)
                got = f.read(hi - lo)
        want = self._expect(lo, hi - lo)
        if got != want:
            self._fail(f"verify {path or 'mount'}", lo, got, want)
        if self.resize and path is None and os.fstat(self.fd).st_size != len(self.model):
            raise Miscompare(f"size {os.fstat(self.fd).st_size} != {len(self.model)}; seed {self.seed}")

    def run(self, ops: int, verify_every: int = 1000) -> Report:
        table = [
            (self.op_write, 20), (self.op_read, 20), (self.op_mmap_read, 8), (self.op_mmap_write, 8),
            (self.op_direct_write, 6), (self.op_direct_read, 6), (self.op_fallocate, 6), (self.op_reopen, 1),
        ]
        if self.resize:
            table.append((self.op_truncate, 5))
        funcs = [f for f, _w in table]
        weights = [w for _f, w in table]
        start = time.monotonic()
        for i in range(ops):
            fn = self.rng.choices(funcs, weights)[0]
            fn()
            self.report.count(fn.__name__[3:])
            if verify_every and (i + 1) % verify_every == 0:
                self.verify()
        self.verify()
        self.report.seconds = time.monotonic() - start
        return self.report


def single(path: str, source: str | None, ops: int, seed: int, size: int = 1 << 20) -> Report:
    """One process, size changes allowed; then the source file must hold exactly the model."""
    with open(path, "wb"):
        pass
    ex = Exerciser(path, seed, 0, size, resize=True, model=bytearray())
    try:
        report = ex.run(ops)
        os.fsync(ex.fd)
        if source:
            ex.verify(source, 0, len(ex.model))
            if os.stat(source).st_size != len(ex.model):
                raise Miscompare(f"source size {os.stat(source).st_size} != {len(ex.model)}; seed {seed}")
    finally:
        ex.close()
    return report


def shared(path: str, source: str | None, procs: int, ops: int, seed: int, stripe: int = 256 * 1024) -> Report:
    """``procs`` processes on one file, each in its own stripe; each checks its stripe in the mount and source."""
    size = procs * stripe
    with open(path, "wb") as f:
        f.truncate(size)
    children = []
    for k in range(procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: run, report through the pipe, never return into the caller's stack
            os.close(r)
            code = 0
            try:
                ex = Exerciser(path, seed + k, k * stripe, (k + 1) * stripe, resize=False, model=bytearray(size))
                rep = ex.run(ops)
                os.fsync(ex.fd)
                if source:
                    ex.verify(source)
                ex.close()
                os.write(w, json.dumps([rep.ops, rep.by_op]).encode())
            except BaseException as e:  # noqa: BLE001 - the parent reports it
                os.write(w, f"FAIL {e}".encode())
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
    total = Report()
    failures = []
    for pid, r in children:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode(errors="replace")
        if status != 0 or text.startswith("FAIL"):
            failures.append(text or f"child exited with status {status}")
            continue
        ops_done, by_op = json.loads(text)
        total.merge(Report(ops_done, by_op))
    if failures:
        raise Miscompare("\n".join(failures))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1_000_000, help="operations per mode (split across phases)")
    parser.add_argument("--procs", type=int, default=4, help="processes in the shared-file phase")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--modes", default="passthrough,fallback")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"integrity: seed={seed} ops/mode={args.ops} procs={args.procs}", flush=True)
    from tests.harness import scratch_mount

    failed = False
    for mode in args.modes.split(","):
        with scratch_mount(mode, "shuntfs-integrity-") as m:
            src, mnt = m.source, m.mnt
            try:
                half = args.ops // 2
                one = single(str(mnt / "single"), str(src / "single"), half, seed)
                many = shared(str(mnt / "shared"), str(src / "shared"), args.procs, (args.ops - half) // args.procs,
                              seed)
                one.merge(many)
                reqs = m.requests()
                print(f"{mode}: {one.ops} operations, 0 miscompares ({one.seconds:.0f} s single-process phase); "
                      f"daemon saw READ={reqs.get('READ', 0)} WRITE={reqs.get('WRITE', 0)}", flush=True)
                print(f"  {dict(sorted(one.by_op.items()))}", flush=True)
            except Miscompare as e:
                print(f"{mode}: MISCOMPARE (seed {seed}): {e}", flush=True)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
