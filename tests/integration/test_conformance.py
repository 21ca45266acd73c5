"""Differential conformance: the same random operations on a native directory and on a shuntfs mirror of another
directory must give the same results, errnos and metadata.

A hypothesis state machine drives both trees, as root and as nobody (through an ``allow_other`` mount), with
passthrough and with userspace I/O. After every step the two trees must be identical (names, types, modes, link
counts, sizes, owners, data, symlink targets, xattrs) and every mtime and ctime the mirror shows must be exactly its
source's, so any change the source records is visible through the mount at once.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from . import posix_ops as px
from .conftest import MODES as DATA_MODES
from .conftest import Mount, wait_for

NOBODY = 65534
TEAM_GID = 4242

DIRS = ["", "d", "d/e", "rootdir", "sticky", "sgid", "grp"]
NAMES = ["a", "b", "L" * 255]
MODES = [0o644, 0o600, 0o755, 0o000, 0o4755, 0o2755, 0o6777, 0o2745, 0o1777, 0o777, 0o444, 0o711]
ACCMODES = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR]
EXTRA_FLAGS = [os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_NOFOLLOW, os.O_DIRECTORY]
LINK_TARGETS = ["a", "../a", "d", "e/a", "nowhere", "loop"]
XATTRS = ["user.a", "user.b", "trusted.t"]
ACL_ENTRIES = ["u:nobody:---", "u:nobody:rwx", "u:nobody:r-x", "g:nogroup:---", "g:nogroup:rwx", "u:1000:rw-",
               "m::r-x",
               # default ACLs: they, not the umask, decide the modes and entries of what is created below
               "d:u::rwx,d:g::rwx,d:o::rwx", "d:u:nobody:rw-", "d:g::r-x,d:o::---"]

# Mostly names that collide, so that EEXIST, ENOTEMPTY, renames over files and hard links come up often; then the
# corner cases: the longest legal name, one byte too long, paths through a file or a symlink loop, and "..".
COMMON = ["a", "b", "d/a", "d/b", "d/e/a", "sticky/a", "sticky/b", "sgid/a", "grp/a", "rootdir/a", "d", "d/e"]
RARE = ["c", "rootdir/b", "sgid", "sticky", "grp", "rootdir", "L" * 255, "d/" + "N" * 256, "a/x", "loop",
        "loop/x", "d/e/../../a", "d/e/../b"]
paths = st.sampled_from(COMMON) | st.sampled_from(RARE)
data = st.binary(max_size=9000)
offsets = st.integers(0, 70000)


def populate(root: Path) -> None:
    """The fixed part of each tree: directories with the ownerships and modes that permission rules turn on."""
    os.chown(root, NOBODY, NOBODY)
    root.chmod(0o755)
    (root / "rootdir").mkdir()
    (root / "rootdir" / "a").write_bytes(b"root's")
    (root / "rootdir" / "b").write_bytes(b"\x7fnot a program")  # execute-only: others may run it, not read it
    (root / "rootdir" / "b").chmod(0o711)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "sticky" / "a").write_bytes(b"root's, writable")
    (root / "sticky" / "a").chmod(0o666)
    (root / "sgid").mkdir()
    os.chown(root / "sgid", 0, TEAM_GID)
    (root / "sgid").chmod(0o2777)
    (root / "grp").mkdir()
    os.chown(root / "grp", 0, NOBODY)
    (root / "grp").chmod(0o770)
    for d in ("d", "d/e"):
        (root / d).mkdir()
        os.chown(root / d, NOBODY, NOBODY)
    os.symlink("loop", root / "loop")
    os.lchown(root / "loop", NOBODY, NOBODY)


def clear(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


class Conformance(RuleBasedStateMachine):
    """Applies each rule to ``native`` and to ``mirror`` and asserts equal outcomes."""

    # Set by the test that runs the machine.
    native: Path
    mirror: Path
    source: Path
    uid: int
    gid: int
    #: what statx asks for and compares (a filesystem on the path API has no birth time to give)
    statx_wanted = px.STATX_BASIC_STATS | px.STATX_BTIME
    #: False where file handles resolve only while the kernel knows the inode (the path API keeps no names for
    #: the inodes it has forgotten)
    handles_outlive_forget = True
    #: True where files wait in SOURCE under ``.fuse_hidden`` names while open (libfuse's hide: O_TMPFILE files, and
    #: files unlinked while open unless the filesystem is ``nullpath_ok``)
    hides_in_source = False

    def __init__(self) -> None:
        super().__init__()
        self.fds: list[tuple[int, int]] = []
        self.handles: list[tuple[bytes, bytes]] = []

    @initialize()
    def fresh_trees(self) -> None:
        # The mirror is cleared through the mount so that the kernel forgets what it cached.
        for root in (self.native, self.mirror):
            clear(root)
            populate(root)

    def both(self, fn) -> px.Outcome:
        with px.identity(self.uid, self.gid):
            a = px.outcome(lambda: fn(str(self.native)))
            b = px.outcome(lambda: fn(str(self.mirror)))
        assert a == b, f"native {a} != mirror {b}"
        return a

    def both_fds(self, i: int, fn) -> px.Outcome:
        pair = self.fds[i % len(self.fds)]
        with px.identity(self.uid, self.gid):
            a = px.outcome(lambda: fn(pair[0]))
            b = px.outcome(lambda: fn(pair[1]))
        assert a == b, f"native {a} != mirror {b}"
        return a

    # ---- names
    @rule(p=paths, flags=st.sampled_from(ACCMODES), extra=st.sets(st.sampled_from(EXTRA_FLAGS), max_size=3),
          mode=st.sampled_from(MODES))
    def open(self, p, flags, extra, mode):
        for f in extra:
            flags |= f
        flags |= os.O_NONBLOCK  # a FIFO must not wait for a partner
        if len(self.fds) >= 8:
            return
        with px.identity(self.uid, self.gid):
            a = px.outcome(lambda: os.open(os.path.join(self.native, p), flags | os.O_CLOEXEC, mode))
            b = px.outcome(lambda: os.open(os.path.join(self.mirror, p), flags | os.O_CLOEXEC, mode))
        for kind, fd in (a, b):
            if kind == "ok" and (a[0], b[0]) != ("ok", "ok"):
                os.close(fd)
        assert a[0] == b[0] and (a[0] == "ok" or a == b), f"open({p!r}, {flags:#o}): native {a} != mirror {b}"
        if a[0] == "ok":
            self.fds.append((a[1], b[1]))

    @rule(p=paths, mode=st.sampled_from(MODES))
    def mkdir(self, p, mode):
        self.both(lambda r: os.mkdir(os.path.join(r, p), mode))

    @rule(p=paths)
    def rmdir(self, p):
        self.both(lambda r: os.rmdir(os.path.join(r, p)))

    @rule(p=paths)
    def unlink(self, p):
        self.both(lambda r: os.unlink(os.path.join(r, p)))

    @rule(old=paths, new=paths, flags=st.sampled_from([0, 0, px.RENAME_NOREPLACE, px.RENAME_EXCHANGE]))
    def rename(self, old, new, flags):
        self.both(lambda r: px.renameat2(os.path.join(r, old), os.path.join(r, new), flags))

    @rule(old=paths, new=paths)
    def link(self, old, new):
        self.both(lambda r: os.link(os.path.join(r, old), os.path.join(r, new), follow_symlinks=False))

    @rule(p=paths, dest=st.sampled_from(LINK_TARGETS))
    def symlink(self, p, dest):
        self.both(lambda r: os.symlink(dest, os.path.join(r, p)))

    @rule(p=paths)
    def readlink(self, p):
        self.both(lambda r: os.readlink(os.path.join(r, p)))

    @rule(p=paths)
    def mkfifo(self, p):
        self.both(lambda r: os.mkfifo(os.path.join(r, p), 0o640))

    @rule(d=st.sampled_from(DIRS + ["a", "loop"]))
    def readdir(self, d):
        def entries(r):
            with os.scandir(os.path.join(r, d)) as it:
                return sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it)
        self.both(entries)

    # ---- attributes
    @rule(p=paths, follow=st.booleans())
    def stat(self, p, follow):
        self.both(lambda r: px.shape(os.stat(os.path.join(r, p), follow_symlinks=follow)))

    @rule(p=paths)
    def statx(self, p):
        self.both(lambda r: px.statx(os.path.join(r, p), self.statx_wanted))

    @rule(p=paths, mode=st.sampled_from(MODES))
    def chmod(self, p, mode):
        self.both(lambda r: os.chmod(os.path.join(r, p), mode))

    @rule(p=paths, uid=st.sampled_from([-1, 0, NOBODY, 1000]), gid=st.sampled_from([-1, 0, NOBODY, TEAM_GID]))
    def chown(self, p, uid, gid):
        self.both(lambda r: os.chown(os.path.join(r, p), uid, gid, follow_symlinks=False))

    @rule(p=paths, ns=st.none() | st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)))
    def utimens(self, p, ns):
        def touch(r):
            path = os.path.join(r, p)
            if ns is None:
                os.utime(path, follow_symlinks=False)
                return None
            os.utime(path, ns=ns, follow_symlinks=False)
            st_ = os.lstat(path)
            return st_.st_atime_ns, st_.st_mtime_ns
        self.both(touch)

    @rule(p=paths, size=offsets)
    def truncate(self, p, size):
        self.both(lambda r: os.truncate(os.path.join(r, p), size))

    @rule(p=paths, name=st.sampled_from(XATTRS), value=st.binary(max_size=64),
          flags=st.sampled_from([0, os.XATTR_CREATE, os.XATTR_REPLACE]))
    def setxattr(self, p, name, value, flags):
        self.both(lambda r: os.setxattr(os.path.join(r, p), name, value, flags, follow_symlinks=False))

    @rule(p=paths, name=st.sampled_from(XATTRS))
    def getxattr(self, p, name):
        self.both(lambda r: os.getxattr(os.path.join(r, p), name, follow_symlinks=False))

    @rule(p=paths, name=st.sampled_from(XATTRS))
    def removexattr(self, p, name):
        self.both(lambda r: os.removexattr(os.path.join(r, p), name, follow_symlinks=False))

    @rule(p=paths)
    def listxattr(self, p):
        self.both(lambda r: sorted(os.listxattr(os.path.join(r, p), follow_symlinks=False)))

    @rule(p=paths, entry=st.sampled_from(ACL_ENTRIES), remove=st.booleans())
    def setfacl(self, p, entry, remove):
        # Named-user and -group entries: the source's to enforce, for every operation that follows; default entries
        # (an error on a file): the source's to apply to what is created below.
        def run(r):
            args = ["-b"] if remove else ["-m", entry]
            done = subprocess.run(["setfacl", *args, os.path.join(r, p)], capture_output=True)
            return done.returncode
        self.both(run)

    @rule(p=paths)
    def execute(self, p):
        """execve needs execute permission only (an execute-only file runs for others); the files hold no program,
        so a permitted exec fails with ENOEXEC, a forbidden one with EACCES, a file open for writing ETXTBSY."""
        self.both(lambda r: subprocess.run([os.path.join(r, p)], capture_output=True, timeout=10).returncode)

    @rule(p=paths, mode=st.sampled_from([os.R_OK, os.W_OK, os.X_OK, os.F_OK, os.R_OK | os.W_OK]))
    def access(self, p, mode):
        # access() checks the real ids; as nobody those are still root's, so use the effective ones.
        self.both(lambda r: os.access(os.path.join(r, p), mode, effective_ids=True, follow_symlinks=False))

    # ---- open files
    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), size=st.integers(0, 10000))
    def read(self, i, size):
        self.both_fds(i, lambda fd: os.read(fd, size))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), buf=data)
    def write(self, i, buf):
        self.both_fds(i, lambda fd: os.write(fd, buf))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), buf=data, offset=offsets)
    def pwrite(self, i, buf, offset):
        self.both_fds(i, lambda fd: os.pwrite(fd, buf, offset))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), size=st.integers(0, 10000), offset=offsets)
    def pread(self, i, size, offset):
        self.both_fds(i, lambda fd: os.pread(fd, size, offset))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), offset=offsets,
          whence=st.sampled_from([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, px.SEEK_DATA, px.SEEK_HOLE]))
    def lseek(self, i, offset, whence):
        def seek(fd):
            # The end of a directory is the filesystem's own notion (ext4 answers 2**63-1, FUSE the size).
            if whence != os.SEEK_SET and stat.S_ISDIR(os.fstat(fd).st_mode):
                return None
            return os.lseek(fd, offset, whence)
        self.both_fds(i, seek)

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), size=offsets)
    def ftruncate(self, i, size):
        self.both_fds(i, lambda fd: os.ftruncate(fd, size))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7), offset=offsets, length=st.integers(1, 20000),
          mode=st.sampled_from([0, px.FALLOC_FL_KEEP_SIZE, px.FALLOC_FL_KEEP_SIZE | px.FALLOC_FL_PUNCH_HOLE]))
    def fallocate(self, i, offset, length, mode):
        self.both_fds(i, lambda fd: px.fallocate(fd, mode, offset, length))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7))
    def fstat(self, i):
        self.both_fds(i, lambda fd: px.shape(os.fstat(fd)))

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7))
    def fsync(self, i):
        self.both_fds(i, os.fsync)

    @precondition(lambda self: len(self.fds) >= 2)
    @rule(i=st.integers(0, 7), j=st.integers(0, 7), count=st.integers(0, 20000), src_off=offsets, dst_off=offsets)
    def copy_file_range(self, i, j, count, src_off, dst_off):
        a, b = self.fds[i % len(self.fds)], self.fds[j % len(self.fds)]
        with px.identity(self.uid, self.gid):
            native = px.outcome(lambda: os.copy_file_range(a[0], b[0], count, src_off, dst_off))
            mirror = px.outcome(lambda: os.copy_file_range(a[1], b[1], count, src_off, dst_off))
        assert native == mirror

    @precondition(lambda self: self.fds)
    @rule(i=st.integers(0, 7))
    def close(self, i):
        pair = self.fds.pop(i % len(self.fds))
        assert px.outcome(lambda: os.close(pair[0])) == px.outcome(lambda: os.close(pair[1]))

    @rule(d=st.sampled_from(DIRS), buf=data, name=st.sampled_from(NAMES))
    def tmpfile(self, d, buf, name):
        """An unnamed file, written, then given a name (root only: AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH)."""
        def run(r):
            fd = os.open(os.path.join(r, d), os.O_TMPFILE | os.O_RDWR, 0o640)
            try:
                os.write(fd, buf)
                if self.uid == 0:
                    px.link_fd(fd, os.path.join(r, d, name))
                return px.shape(os.fstat(fd))
            finally:
                os.close(fd)
        self.both(run)

    # ---- file handles, resolved while the kernel knows the inode and after it has forgotten it
    @rule(p=paths)
    def name_to_handle(self, p):
        with px.identity(self.uid, self.gid):
            a = px.outcome(lambda: px.name_to_handle(os.path.join(self.native, p)))
            b = px.outcome(lambda: px.name_to_handle(os.path.join(self.mirror, p)))
        assert a[0] == b[0] and (a[0] == "ok" or a == b), f"native {a} != mirror {b}"
        if a[0] == "ok":
            self.handles.append((a[1], b[1]))

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 7), forget=st.booleans())
    def open_by_handle(self, i, forget):
        if forget and not self.handles_outlive_forget:
            return
        if forget:  # the kernel drops the inodes nobody uses: the mirror is asked for them by node id
            Path("/proc/sys/vm/drop_caches").write_text("2\n")
        pair = self.handles[i % len(self.handles)]

        def run(root, handle):
            fd = px.open_by_handle(str(root), handle, os.O_PATH)
            try:
                st = os.fstat(fd)
                # a directory is reconnected to its place in the tree, through LOOKUPs of ".."
                where = os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), root) if stat.S_ISDIR(st.st_mode) else ""
                return px.shape(st), where
            finally:
                os.close(fd)

        with px.identity(self.uid, self.gid):
            a = px.outcome(lambda: run(self.native, pair[0]))
            b = px.outcome(lambda: run(self.mirror, pair[1]))
        assert a == b, f"native {a} != mirror {b}"

    # ---- the trees agree after every step
    @invariant()
    def trees_agree(self):
        native, mirror = px.snapshot(str(self.native)), px.snapshot(str(self.mirror))
        assert native.keys() == mirror.keys()
        for name in native:
            assert native[name] == mirror[name], name

    @invariant()
    def times_are_the_sources(self):
        if not self.hides_in_source:
            assert px.times(str(self.mirror)) == px.times(str(self.source))
            return

        # The hidden name of a closed file goes at its RELEASE, which the kernel sends after close returns, and its
        # directory's times move then: the two agree once it is gone.
        def agree():
            source = {name: t for name, t in px.times(str(self.source)).items()
                      if not os.path.basename(name).startswith(".fuse_hidden")}
            return px.times(str(self.mirror)) == source

        assert wait_for(agree, 3)

    def teardown(self):
        for a, b in self.fds:
            os.close(a)
            os.close(b)
        self.fds.clear()


CONFIGS = {
    "root-passthrough": (0, ["allow_other"]),
    "root-fallback": (0, ["allow_other", "passthrough=off"]),
    "nobody-passthrough": (NOBODY, ["allow_other"]),
    "nobody-fallback": (NOBODY, ["allow_other", "passthrough=off"]),
    # every inode but the root kept as a file handle, reopened per call
    "root-handles": (0, ["allow_other", "inode_fds=1"]),
    "nobody-handles": (NOBODY, ["allow_other", "inode_fds=1"]),
}


@pytest.fixture(scope="module")
def scratch():
    base = Path(tempfile.mkdtemp(prefix="shuntfs-test-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_mirror_behaves_like_the_source_filesystem(config, scratch):
    uid, options = CONFIGS[config]
    base = scratch / config
    native, source, mnt = base / "native", base / "src", base / "mnt"
    for d in (native, source, mnt):
        d.mkdir(parents=True)
    base.chmod(0o755)
    m = Mount(source, mnt, options).start()
    try:
        assert m.stats()["passthrough"] is ("passthrough=off" not in options)
        machine = type("Machine", (Conformance,), {
            "native": native, "mirror": mnt, "source": source, "uid": uid, "gid": NOBODY if uid else 0,
        })
        run_state_machine_as_test(machine, settings=settings(
            max_examples=int(os.environ.get("SHUNTFS_CONFORMANCE_EXAMPLES", "40")), stateful_step_count=40,
            deadline=None, suppress_health_check=list(HealthCheck),
        ))
        counts = m.requests()
        if "inode_fds=1" in options:
            (mnt / "handle-probe").mkdir()
            (mnt / "handle-probe" / "f").write_bytes(b"x")
            assert (mnt / "handle-probe" / "f").read_bytes() == b"x"
            fs = m.stats()["filesystem"]
            assert fs["inode_fds"] == 1 and fs["inodes"] >= 3, fs  # the root's fd only; the rest by handle
        if "passthrough=off" not in options:
            assert counts.get("READ", 0) == 0 and counts.get("WRITE", 0) == 0, counts
    finally:
        m.stop()


#: the path-based API's loopback example (examples/pathloopback.py, run by shuntfs.main), as root: it acts with the
#: daemon's credentials, not the caller's, so the callers' permission cases are the mirror's business, not its
PATH_LOOPBACK = [sys.executable, str(Path(__file__).parents[2] / "examples" / "pathloopback.py")]


class PathConformance(Conformance):
    """The machine for the path loopback, with what the path API documents it does differently."""

    statx_wanted = px.STATX_BASIC_STATS  # no birth time in a stat result
    handles_outlive_forget = False  # a forgotten node has no path left
    hides_in_source = True  # O_TMPFILE files wait under hidden names

    @rule(p=paths)
    def execute(self, p):
        # Each path is a node of its own (PathOperations.use_ino False): a file open for writing through one hard
        # link is another inode to the kernel when executed through another, so no ETXTBSY there.
        try:
            links = os.lstat(os.path.join(self.native, p)).st_nlink
        except OSError:
            links = 1
        if links == 1:
            super().execute(p)


# attr_timeout=0: hard links are nodes of their own on the path API, so a change through one name shows through the
# other's cached attributes only once they expire (documented); without the cache each step is compared exactly.
@pytest.mark.parametrize("options", [["attr_timeout=0"], ["attr_timeout=0", "passthrough=off"]],
                         ids=["passthrough", "userspace"])
def test_path_loopback_behaves_like_the_source_filesystem(options, scratch):
    base = scratch / ("pathloopback-" + "-".join(options))
    native, source, mnt = base / "native", base / "src", base / "mnt"
    for d in (native, source, mnt):
        d.mkdir(parents=True)
    m = Mount(source, mnt, options, program=PATH_LOOPBACK).start()
    try:
        machine = type("Machine", (PathConformance,), {
            "native": native, "mirror": mnt, "source": source, "uid": 0, "gid": 0,
        })
        run_state_machine_as_test(machine, settings=settings(
            max_examples=int(os.environ.get("SHUNTFS_CONFORMANCE_EXAMPLES", "40")), stateful_step_count=40,
            deadline=None, suppress_health_check=list(HealthCheck),
        ))
        counts = m.requests()
        if "passthrough=off" not in options:
            assert counts.get("READ", 0) == 0 and counts.get("WRITE", 0) == 0, counts
        else:
            assert counts.get("READ", 0) > 0 and counts.get("WRITE", 0) > 0, counts
    finally:
        m.stop()


# ---- corners that a random walk reaches too rarely, each checked the same way: native and mirror agree

#: the data modes (HANDLE_KILLPRIV_V2 on: the library clears set-id bits itself), and passthrough without it
PAIR_MODES = {**DATA_MODES, "nokillpriv": ["killpriv=off"]}


@pytest.fixture(scope="module", params=list(PAIR_MODES))
def pair(request, scratch):
    """(native root, mirror root, mount) for module-wide use; the test clears its own names."""
    base = scratch / f"pair-{request.param}"
    native, source, mnt = base / "native", base / "src", base / "mnt"
    for d in (native, source, mnt):
        d.mkdir(parents=True)
        d.chmod(0o777)
    m = Mount(source, mnt, ["allow_other", *PAIR_MODES[request.param]]).start()
    yield native, mnt, m
    m.stop()


def on_both(pair, fn, uid=0, gid=0):
    native, mirror, _m = pair
    with px.identity(uid, gid):
        a = px.outcome(lambda: fn(str(native)))
        b = px.outcome(lambda: fn(str(mirror)))
    assert a == b, f"native {a} != mirror {b}"
    return a


@pytest.mark.parametrize("who", ["owner", "root"])
@pytest.mark.parametrize("how", ["write", "truncate", "open-trunc", "chown", "chgrp"])
@pytest.mark.parametrize("mode", [0o6755, 0o6745, 0o4700, 0o2770])
def test_suid_and_sgid_clearing(pair, who, how, mode):
    """A write or truncate by a process without CAP_FSETID drops S_ISUID (and S_ISGID when group-executable);
    chown drops both for everyone. With HANDLE_KILLPRIV_V2 the kernel leaves this to the server, and under
    passthrough it writes the backing file with the credentials of BACKING_OPEN, so this checks the library's
    part in both data modes."""
    uid = NOBODY if who == "owner" else 0

    def run(root):
        path = os.path.join(root, f"suid-{who}-{how}-{mode:o}")
        with open(path, "wb") as f:
            f.write(b"#!/bin/sh\n")
        os.chown(path, NOBODY, NOBODY)
        os.chmod(path, mode)
        with px.identity(uid, NOBODY if uid else 0):
            if how == "write":
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                os.write(fd, b"echo\n")
                os.close(fd)
            elif how == "truncate":
                os.truncate(path, 3)
            elif how == "open-trunc":
                os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
            elif how == "chown":
                os.chown(path, NOBODY if uid else 0, -1)
            else:
                os.chown(path, -1, NOBODY)
        st_ = os.stat(path)
        return oct(stat.S_IMODE(st_.st_mode)), st_.st_size

    on_both(pair, run)


@pytest.mark.parametrize("change", ["chmod", "chown", "write", "truncate", "utimens", "link", "unlink-other-link",
                                    "rename", "setxattr", "removexattr", "fallocate"])
def test_every_change_updates_ctime(pair, change):
    """ctime moves on each change, through the mount as in the source."""
    import time

    def run(root):
        path = os.path.join(root, f"ctime-{change}")
        with open(path, "wb") as f:
            f.write(b"data")
        os.link(path, path + ".other")
        os.setxattr(path, "user.k", b"v")
        before = os.stat(path).st_ctime_ns
        time.sleep(0.02)  # past the coarse clock's tick
        if change == "chmod":
            os.chmod(path, 0o600)
        elif change == "chown":
            os.chown(path, NOBODY, -1)
        elif change == "write":
            with open(path, "r+b") as f:
                f.write(b"more")
        elif change == "truncate":
            os.truncate(path, 1)
        elif change == "utimens":
            os.utime(path, ns=(1, 1))
        elif change == "link":
            os.link(path, path + ".third")
        elif change == "unlink-other-link":
            os.unlink(path + ".other")
        elif change == "rename":
            os.rename(path, path + ".moved")
            path += ".moved"
        elif change == "setxattr":
            os.setxattr(path, "user.k", b"w")
        elif change == "removexattr":
            os.removexattr(path, "user.k")
        else:
            fd = os.open(path, os.O_RDWR)
            px.fallocate(fd, 0, 0, 65536)
            os.close(fd)
        return os.stat(path).st_ctime_ns > before

    assert on_both(pair, run) == ("ok", True)


PERMISSION_MODES = [0o000, 0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001, 0o640, 0o604, 0o755,
                    0o1777, 0o1733, 0o3777]


@pytest.mark.parametrize("relation", ["owner", "group", "other"])
def test_permission_matrix(pair, relation):
    """open for read/write, unlink, rename and chmod, for every permission bit seen as owner, group or other."""
    owner = {"owner": (NOBODY, 0), "group": (0, NOBODY), "other": (0, 0)}[relation]
    results = []
    for mode in PERMISSION_MODES:
        def setup(root, mode=mode):
            d = os.path.join(root, f"perm-{relation}-{mode:o}")
            os.mkdir(d)
            f = os.path.join(d, "f")
            with open(f, "wb") as fh:
                fh.write(b"x")
            for p in (d, f):
                os.chown(p, *owner)
                os.chmod(p, mode)
            return d, f
        on_both(pair, lambda r: setup(r) and None)

        def attempt(op, mode=mode):
            def run(root):
                d = os.path.join(root, f"perm-{relation}-{mode:o}")
                f = os.path.join(d, "f")
                if op == "read":
                    os.close(os.open(f, os.O_RDONLY))
                elif op == "write":
                    os.close(os.open(f, os.O_WRONLY))
                elif op == "create":
                    os.close(os.open(os.path.join(d, "new"), os.O_CREAT | os.O_WRONLY, 0o644))
                    os.unlink(os.path.join(d, "new"))
                elif op == "list":
                    os.listdir(d)
                elif op == "rename":
                    os.rename(f, f + ".r")
                    os.rename(f + ".r", f)
                elif op == "chmod":
                    os.chmod(f, mode)
                elif op == "exec-search":
                    os.stat(f)
                elif op == "unlink":
                    os.unlink(f)
            return run

        for op in ("read", "write", "create", "list", "rename", "chmod", "exec-search", "unlink"):
            results.append((mode, op, on_both(pair, attempt(op), uid=NOBODY, gid=NOBODY)))
    # The matrix must contain both answers, or it proved nothing.
    kinds = {r[2][0] for r in results}
    assert kinds == {"ok", "err"}


def test_cross_device_rename_and_link_give_exdev(pair, tmp_path):
    """A name inside the mount cannot be renamed or linked out of it, nor across a filesystem inside SOURCE."""
    _native, mirror, m = pair
    outside = tmp_path / "outside"
    (mirror / "xdev").write_bytes(b"x")
    with pytest.raises(OSError) as e:
        os.rename(mirror / "xdev", outside)
    assert e.value.errno == errno.EXDEV
    with pytest.raises(OSError) as e:
        os.link(mirror / "xdev", outside)
    assert e.value.errno == errno.EXDEV
    # A tmpfs mounted inside SOURCE: the source says EXDEV and the mirror passes it on.
    sub = m.source / "sub"
    sub.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(sub)], check=True)
    try:
        with pytest.raises(OSError) as e:
            os.rename(mirror / "xdev", mirror / "sub" / "moved")
        assert e.value.errno == errno.EXDEV
        (mirror / "sub" / "inner").write_bytes(b"on tmpfs")
        assert (sub / "inner").read_bytes() == b"on tmpfs"
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=True)


def _utimensat(path: str, atime_nsec: int, mtime_nsec: int) -> None:
    """utimensat with UTIME_NOW / UTIME_OMIT in the nanosecond fields, which os.utime cannot express."""
    import ctypes

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    libc = ctypes.CDLL(None, use_errno=True)
    times = (Timespec * 2)(Timespec(0, atime_nsec), Timespec(0, mtime_nsec))
    if libc.utimensat(-100, os.fsencode(path), times, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_posix_corner_cases(pair, who):
    """The corners conformance suites probe, beyond what the random walk reaches: long symlink targets, rmdir of
    "." and "..", device nodes, utimensat's NOW and OMIT for owners and for writers who are not owners."""
    uid = 0 if who == "root" else NOBODY
    tag = f"corner-{who}"

    def setup(root):
        d = os.path.join(root, tag)
        os.mkdir(d, 0o777)
        os.chmod(d, 0o777)
        f = os.path.join(d, "theirs")
        with open(f, "wb") as fh:
            fh.write(b"x")
        os.chmod(f, 0o666)  # writable by all, owned by root
    on_both(pair, setup)

    def at(root, *names):
        return os.path.join(root, tag, *names)

    cases = [
        lambda r: os.symlink("t" * 4095, at(r, "long")),
        lambda r: len(os.readlink(at(r, "long"))),
        lambda r: os.symlink("t" * 4096, at(r, "too-long")),
        lambda r: os.rmdir(at(r, ".")),
        lambda r: os.rmdir(at(r, "..")),
        lambda r: os.mkdir(at(r, "sub")),
        lambda r: os.rmdir(at(r, "sub", ".")),
        lambda r: os.rename(at(r, "sub"), at(r, "sub", "inside")),
        lambda r: os.rename(at(r, "sub", ".."), at(r, "x")),
        lambda r: os.link(at(r, "sub"), at(r, "dirlink")),
        lambda r: os.unlink(at(r, "sub")),
        lambda r: os.mknod(at(r, "chr"), 0o600 | stat.S_IFCHR, os.makedev(1, 3)),
        lambda r: (lambda s: (stat.S_IFMT(s.st_mode), s.st_rdev))(os.lstat(at(r, "chr"))),
        lambda r: os.mknod(at(r, "blk"), 0o600 | stat.S_IFBLK, os.makedev(7, 0)),
        lambda r: os.mknod(at(r, "sock"), 0o600 | stat.S_IFSOCK),
        lambda r: stat.S_IFMT(os.lstat(at(r, "sock")).st_mode),
        lambda r: _utimensat(at(r, "theirs"), UTIME_NOW, UTIME_NOW),   # writers may touch
        lambda r: _utimensat(at(r, "theirs"), UTIME_NOW, UTIME_OMIT),
        lambda r: _utimensat(at(r, "theirs"), 5 * 10**8, UTIME_OMIT),  # explicit times: owner only
        lambda r: _utimensat(at(r, "theirs"), UTIME_OMIT, UTIME_OMIT),
        lambda r: os.close(os.open(at(r, "sub"), os.O_WRONLY)),
        lambda r: os.close(os.open(at(r, "sub"), os.O_CREAT | os.O_RDONLY)),
        lambda r: os.truncate(at(r, "sub"), 0),
        lambda r: os.close(os.open(at(r, "theirs", "below"), os.O_RDONLY)),
        lambda r: os.mkdir(at(r, "theirs", "below")),
        lambda r: os.chown(at(r, "theirs"), -1, -1),
        lambda r: os.chown(at(r, "theirs"), NOBODY, -1),
    ]
    for i, case in enumerate(cases):
        native, mirror, _m = pair
        with px.identity(uid, NOBODY if uid else 0):
            a = px.outcome(lambda case=case: case(str(native)))
            b = px.outcome(lambda case=case: case(str(mirror)))
        assert a == b, f"case {i}: native {a} != mirror {b}"
