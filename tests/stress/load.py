"""Load: many processes doing mixed metadata and data operations on one mount for a bounded time.

Each worker owns a directory and keeps a model of it (names, contents, types), so every result is checked, and
reads a shared file that all of them read. Any unexpected result is an error; a worker that does not finish within
a minute of the deadline is a deadlock. Afterwards the workers' directories are removed, the kernel is told to drop
its caches (so it forgets the inodes), and the daemon's RSS and open fd count are compared with the baseline taken
the same way after a warm-up.

Soak (the README quotes its latest result):

    python3 -m tests.stress.load --workers 32 --seconds 600
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field

SHARED = b"shared, read by every worker\n" * 1000
#: Names a worker keeps at most: 32 workers stay far below the daemon's fd limit however long they run.
MAX_NAMES = 300


@dataclass
class LoadResult:
    ops: int = 0
    errors: list = field(default_factory=list)
    deadlocked: int = 0
    seconds: float = 0.0
    #: the daemon's RSS (KiB) sampled while the load ran: a leak climbs, a cache plateaus
    rss_samples: list = field(default_factory=list)


def worker(root: str, k: int, seconds: float, seed: int) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    home = os.path.join(root, f"w{k}")
    os.mkdir(home)
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    links: dict[str, str] = {}
    ops, errors = 0, []
    deadline = time.monotonic() + seconds
    serial = 0

    def fresh() -> str:
        nonlocal serial
        serial += 1
        return f"n{serial}"

    while time.monotonic() < deadline:
        op = rng.choice(["create", "create", "read", "read", "append", "rename", "stat", "readdir", "mkdir",
                         "rmdir", "symlink", "chmod", "truncate", "unlink", "link", "shared", "fsync"])
        if len(files) + len(links) > MAX_NAMES:
            op = "unlink"  # a bounded tree: the daemon's inode count (one fd each) must not grow with time
        elif len(dirs) > MAX_NAMES // 4:
            op = "rmdir"
        try:
            if op == "create" or not files and op in ("read", "append", "rename", "chmod", "truncate", "unlink",
                                                      "link", "fsync"):
                name, data = fresh(), rng.randbytes(rng.choice([0, 100, 4096, 70000, 262144]))
                with open(os.path.join(home, name), "wb") as f:
                    f.write(data)
                files[name] = data
            elif op == "read":
                name = rng.choice(list(files))
                with open(os.path.join(home, name), "rb") as f:
                    if f.read() != files[name]:
                        errors.append(f"{op} {name}: data differs")
            elif op == "append":
                name, more = rng.choice(list(files)), rng.randbytes(rng.randrange(1, 9000))
                with open(os.path.join(home, name), "ab") as f:
                    f.write(more)
                files[name] += more
            elif op == "rename":
                old, new = rng.choice(list(files)), fresh()
                os.rename(os.path.join(home, old), os.path.join(home, new))
                files[new] = files.pop(old)
            elif op == "stat":
                if files:
                    name = rng.choice(list(files))
                    if os.stat(os.path.join(home, name)).st_size != len(files[name]):
                        errors.append(f"{op} {name}: size differs")
            elif op == "readdir":
                want = set(files) | dirs | set(links)
                got = set(os.listdir(home))
                if got != want:
                    errors.append(f"{op}: {sorted(got ^ want)[:5]} differ")
            elif op == "mkdir":
                name = fresh()
                os.mkdir(os.path.join(home, name))
                dirs.add(name)
            elif op == "rmdir":
                if dirs:
                    name = dirs.pop()
                    os.rmdir(os.path.join(home, name))
            elif op == "symlink":
                name, target = fresh(), rng.choice(list(files) or ["nowhere"])
                os.symlink(target, os.path.join(home, name))
                links[name] = target
                if os.readlink(os.path.join(home, name)) != target:
                    errors.append(f"{op} {name}: target differs")
            elif op == "chmod":
                name, mode = rng.choice(list(files)), rng.choice([0o600, 0o644, 0o755])
                os.chmod(os.path.join(home, name), mode)
                if os.stat(os.path.join(home, name)).st_mode & 0o777 != mode:
                    errors.append(f"{op} {name}: mode differs")
            elif op == "truncate":
                name = rng.choice(list(files))
                size = rng.randrange(0, len(files[name]) + 5000)
                os.truncate(os.path.join(home, name), size)
                files[name] = files[name][:size].ljust(size, b"\0")
            elif op == "unlink":
                name = rng.choice(list(files) + list(links))
                os.unlink(os.path.join(home, name))
                files.pop(name, None)
                links.pop(name, None)
            elif op == "link":
                old, new = rng.choice(list(files)), fresh()
                os.link(os.path.join(home, old), os.path.join(home, new))
                # hard links share data: keep them as one name in the model by dropping the old one
                os.unlink(os.path.join(home, old))
                files[new] = files.pop(old)
            elif op == "shared":
                with open(os.path.join(root, "shared"), "rb") as f:
                    if f.read() != SHARED:
                        errors.append(f"{op}: data differs")
            elif op == "fsync":
                name = rng.choice(list(files))
                fd = os.open(os.path.join(home, name), os.O_RDWR)
                os.fsync(fd)
                os.close(fd)
            ops += 1
        except OSError as e:
            errors.append(f"{op}: {e}")
        if len(errors) > 20:
            break
    shutil.rmtree(home)
    return ops, errors


def run(root: str, workers: int, seconds: float, seed: int, daemon_pid: int = 0) -> LoadResult:
    with open(os.path.join(root, "shared"), "wb") as f:
        f.write(SHARED)
    started = time.monotonic()
    children = {}
    for k in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                ops, errors = worker(root, k, seconds, seed + k)
                os.write(w, json.dumps([ops, errors]).encode())
            except BaseException as e:  # noqa: BLE001 - reported by the parent
                os.write(w, json.dumps([0, [f"worker {k} crashed: {e!r}"]]).encode())
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        children[pid] = r
    result = LoadResult()
    if daemon_pid:
        sample_every = max(seconds / 10, 0.5)
        while time.monotonic() < started + seconds:
            time.sleep(min(sample_every, max(started + seconds - time.monotonic(), 0)))
            result.rss_samples.append(daemon_footprint(daemon_pid)[0])
    deadline = started + seconds + 60
    for pid, r in children.items():
        while True:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                result.deadlocked += 1
                result.errors.append(f"worker {pid} still running a minute after the deadline")
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        if chunks:
            ops, errors = json.loads(b"".join(chunks))
            result.ops += ops
            result.errors += errors
    os.unlink(os.path.join(root, "shared"))
    result.seconds = time.monotonic() - started
    return result


def daemon_footprint(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open fds) of the daemon."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid: int, fds_at_most: int | None = None, timeout: float = 15.0) -> tuple[int, int]:
    """Make the kernel forget what it can and wait for the daemon's fd count to stop falling."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")
    deadline = time.monotonic() + timeout
    last = daemon_footprint(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = daemon_footprint(pid)
        if fds_at_most is not None and now[1] <= fds_at_most:
            return now
        if fds_at_most is None and now[1] == last[1]:
            return now
        last = now
    return last


def measured(mount, workers: int, seconds: float, seed: int) -> dict:
    """Warm up, take the baseline, run the load, settle; everything a report or a test needs."""
    warm = run(str(mount.mnt), workers, min(1.0, seconds), seed ^ 0x5A5A)
    base_rss, base_fds = settle(mount.pid)
    result = run(str(mount.mnt), workers, seconds, seed, daemon_pid=mount.pid)
    rss, fds = settle(mount.pid, fds_at_most=base_fds)
    return {
        "workers": workers, "seconds": round(result.seconds, 1), "ops": result.ops,
        "errors": warm.errors + result.errors,
        "deadlocked": result.deadlocked, "baseline_rss_kib": base_rss, "rss_kib": rss, "baseline_fds": base_fds,
        "fds": fds, "rss_samples_kib": result.rss_samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--modes", default="passthrough,fallback")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"load: seed={seed} workers={args.workers} seconds/mode={args.seconds}", flush=True)
    from tests.harness import scratch_mount

    failed = False
    for mode in args.modes.split(","):
        with scratch_mount(mode, "shuntfs-load-") as m:
            r = measured(m, args.workers, args.seconds, seed)
            ok = not r["errors"] and not r["deadlocked"] and r["fds"] <= r["baseline_fds"]
            failed |= not ok
            print(f"{mode}: {r['ops']} operations by {r['workers']} workers in {r['seconds']} s, "
                  f"{len(r['errors'])} errors, {r['deadlocked']} deadlocked; daemon RSS {r['baseline_rss_kib']} -> "
                  f"{r['rss_kib']} KiB, fds {r['baseline_fds']} -> {r['fds']}", flush=True)
            print(f"  RSS while loaded (KiB, every {args.seconds / 10:.0f} s): {r['rss_samples_kib']}", flush=True)
            for e in r["errors"][:10]:
                print(f"  {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
