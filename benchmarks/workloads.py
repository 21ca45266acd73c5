"""The workloads of a benchmark run: fio for data, small programs for metadata. Every figure is a rate: higher is
better, so a ratio below 1 is slower than native.

Data files and trees are made once, natively, in SOURCE; each target then works on them through its own path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .targets import BenchmarkError

MIB = 1 << 20


@dataclass
class Params:
    """What the workloads are given: sizes from the command line, then what :func:`prepare` laid out."""

    size_mib: int = 1024
    runtime_s: int = 5
    files: int = 10_000
    stdlib_entries: int = 0
    repo_entries: int = 0
    tarball: Path = Path()
    tar_members: int = 0


@dataclass
class Workload:
    name: str
    unit: str
    kind: str  # "data" or "metadata"
    run: Callable[[Path, Params, str], float]
    #: metadata runs start with cold dentries and inodes (page cache stays warm), on every target alike
    cold_dentries: bool = False
    #: a metadata row's unit count: how many entries one run goes through
    entries: Callable[[Params], int] = lambda p: 0
    #: each timed run follows an untimed one, which leaves what it read in the kernel's caches
    warm_up: bool = False


# ---- data, through fio

def _fio(root: Path, params: Params, *args: str) -> dict:
    cmd = [
        "fio", "--output-format=json", "--ioengine=psync", "--group_reporting", f"--directory={root}",
        f"--size={params.size_mib}M", "--name=bench", *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise BenchmarkError(f"fio failed: {lines[-1] if lines else done.returncode}")
    job = json.loads(done.stdout[done.stdout.index("{"):])["jobs"][0]
    if job.get("error"):
        raise BenchmarkError(f"fio job error {job['error']}")
    return job


def _timed(params: Params) -> list[str]:
    return ["--time_based", f"--runtime={params.runtime_s}"]


# Reads use a file laid out natively; warm rows keep the page cache (fio's hints do not reach a passthrough backing
# file, so a cold row would measure different things on different targets).
_WARM = ["--filename=read.dat", "--invalidate=0", "--fadvise_hint=0"]


def _evict_fuse_cache(path: Path) -> None:
    """Drop a FUSE file's own page cache: its data then comes through the target's data path again, while the
    source's page cache stays warm."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def seq_read_job(root: Path, params: Params, tag: str) -> dict:
    # One pass over a warm source, each FUSE target starting with an empty page cache of its own, so the pass
    # measures the path each target serves data by. A time-based job re-reads FUSE's own page cache after its first
    # pass (alike on every FUSE target), and pyfuse3 keeps that cache across opens (its FileInfo.keep_cache default)
    # where the mirror does not: that would measure cache policy, not the data path.
    if not tag.startswith("native-"):
        _evict_fuse_cache(root / "read.dat")
    return _fio(root, params, "--rw=read", "--bs=1M", *_WARM)


def seq_read(root: Path, params: Params, tag: str) -> float:
    return seq_read_job(root, params, tag)["read"]["bw_bytes"] / 1e6


def seq_write_job(root: Path, params: Params, _tag: str) -> dict:
    return _fio(root, params, "--rw=write", "--bs=1M", "--end_fsync=1", "--filename=write.dat")


def seq_write(root: Path, params: Params, tag: str) -> float:
    return seq_write_job(root, params, tag)["write"]["bw_bytes"] / 1e6


def rand_read(root: Path, params: Params, _tag: str) -> float:
    job = _fio(root, params, "--rw=randread", "--bs=4k", "--direct=1", "--filename=read.dat", *_timed(params))
    return job["read"]["iops"]


def rand_read_4jobs(root: Path, params: Params, _tag: str) -> float:
    job = _fio(root, params, "--rw=randread", "--bs=4k", "--direct=1", "--numjobs=4", "--filename=read.dat",
               *_timed(params))
    return job["read"]["iops"]


def rand_write(root: Path, params: Params, _tag: str) -> float:
    job = _fio(root, params, "--rw=randwrite", "--bs=4k", "--direct=1", "--filename=write.dat", *_timed(params))
    return job["write"]["iops"]


def mmap_rand_read(root: Path, params: Params, _tag: str) -> float:
    job = _fio(root, params, "--ioengine=mmap", "--rw=randread", "--bs=4k", *_WARM, *_timed(params))
    return job["read"]["iops"]


# ---- metadata

def create_stat_unlink(root: Path, params: Params, tag: str) -> float:
    # One directory per target, kept across runs: on ext4 the first files of a new directory cost far more than later
    # ones, which would hide the difference we measure.
    d = root / f"csu-{tag.rsplit('-', 1)[0]}"
    d.mkdir(exist_ok=True)
    names = [str(d / f"f{i}") for i in range(params.files)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    start = time.perf_counter()
    for n in names:
        os.close(os.open(n, flags, 0o644))
    for n in names:
        os.stat(n)
    for n in names:
        os.unlink(n)
    return params.files / (time.perf_counter() - start)


def _command_rate(cmd: list[str], items: int, cwd: Path | None = None, env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(cmd[:2])} failed: {done.stderr.decode(errors='replace').strip()[-200:]}")
    return items / elapsed


def ls_l(root: Path, params: Params, _tag: str) -> float:
    return _command_rate(["ls", "-l", str(root / "big")], params.files)


def tree_walk(root: Path, params: Params, _tag: str) -> float:
    return _command_rate(["find", str(root / "stdlib"), "-ls"], params.stdlib_entries)


def tar_extract(root: Path, params: Params, tag: str) -> float:
    dest = root / f"untar-{tag}"
    dest.mkdir()
    try:
        return _command_rate(["tar", "-xf", str(params.tarball), "-C", str(dest)], params.tar_members)
    finally:
        shutil.rmtree(dest)


def git_status(root: Path, params: Params, _tag: str) -> float:
    # Without optional locks git does not rewrite the index, so every run (and every target) sees the same index.
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    return _command_rate(["git", "status", "--porcelain"], params.repo_entries, cwd=root / "repo", env=env)


#: entries in the directory that relist_warm lists
WARM_ENTRIES = 2000


def relist_warm(root: Path, params: Params, _tag: str) -> float:
    """scandir and lstat of a 2,000-entry directory listed just before: the kernel holds its names and attributes,
    as a file manager or a build tool re-reading a directory does."""
    start = time.perf_counter()
    n = 0
    for entry in os.scandir(root / "warm"):
        entry.stat(follow_symlinks=False)
        n += 1
    return n / (time.perf_counter() - start)


def _entries(tree: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(tree))


WORKLOADS = [
    Workload("seq read 1 MiB, warm", "MB/s", "data", seq_read),
    Workload("seq write 1 MiB + fsync", "MB/s", "data", seq_write),
    Workload("rand read 4 KiB direct", "IOPS", "data", rand_read),
    Workload("rand read 4 KiB direct, 4 jobs", "IOPS", "data", rand_read_4jobs),
    Workload("rand write 4 KiB direct", "IOPS", "data", rand_write),
    Workload("mmap rand read 4 KiB", "IOPS", "data", mmap_rand_read),
    Workload("create+stat+unlink", "files/s", "metadata", create_stat_unlink, cold_dentries=True,
             entries=lambda p: p.files),
    Workload("ls -l of 10k-entry dir", "entries/s", "metadata", ls_l, cold_dentries=True, entries=lambda p: p.files),
    Workload("find -ls of stdlib copy", "entries/s", "metadata", tree_walk, cold_dentries=True,
             entries=lambda p: p.stdlib_entries),
    Workload("tar -x of stdlib", "entries/s", "metadata", tar_extract, cold_dentries=True,
             entries=lambda p: p.tar_members),
    Workload("git status", "entries/s", "metadata", git_status, cold_dentries=True,
             entries=lambda p: p.repo_entries),
    Workload("re-list warm 2k dir", "entries/s", "metadata", relist_warm, entries=lambda p: WARM_ENTRIES,
             warm_up=True),
]


def prepare_data(source: Path, params: Params) -> None:
    """The data rows' files: read.dat and write.dat, ``params.size_mib`` each."""
    chunk = os.urandom(MIB)
    for name in ("read.dat", "write.dat"):
        with open(source / name, "wb") as f:
            for _ in range(params.size_mib):
                f.write(chunk)


def prepare(source: Path, scratch: Path, params: Params) -> None:
    """Lay out everything the workloads read, natively: data files, a big directory, stdlib copies, a tarball;
    record their sizes in ``params``."""
    prepare_data(source, params)
    big = source / "big"
    big.mkdir()
    for i in range(params.files):
        (big / f"entry-{i:05d}").write_bytes(b"x" * (i % 7))
    warm = source / "warm"
    warm.mkdir()
    for i in range(WARM_ENTRIES):
        (warm / f"w{i:04d}").touch()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    ignore = shutil.ignore_patterns("site-packages", "dist-packages", "__pycache__", "*.pyc")
    shutil.copytree(stdlib, source / "stdlib", symlinks=True, ignore=ignore)
    shutil.copytree(stdlib, source / "repo", symlinks=True, ignore=ignore)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-C", str(source / "repo")]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "stdlib"]):
        subprocess.run(git + args, check=True, stdout=subprocess.DEVNULL)
    tarball = scratch / "stdlib.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(source / "stdlib", arcname="stdlib")
    with tarfile.open(tarball) as tar:
        params.tar_members = len(tar.getmembers())
    params.tarball = tarball
    params.stdlib_entries = _entries(source / "stdlib")
    params.repo_entries = _entries(source / "repo")
    os.sync()


def drop_dentries() -> None:
    """Evict dentries and inodes everywhere (FUSE daemons get FORGETs), keep the page cache."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")
    time.sleep(0.3)  # let the daemons take their FORGETs before the clock starts
