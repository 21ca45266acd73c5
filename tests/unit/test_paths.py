"""The path bridge's conversions, without a kernel."""

from __future__ import annotations

import os
import stat

from shuntfs import EntryAttributes
from shuntfs.paths import PathBridge, PathOperations, attributes_of


def test_attributes_from_a_dict_with_float_times():
    a = attributes_of({"st_mode": stat.S_IFREG | 0o644, "st_size": 3, "st_mtime": 1.5, "st_nlink": 1}, 2.0)
    assert (a.st_mode, a.st_size, a.st_mtime_ns, a.st_blocks, a.attr_timeout) == (0o100644, 3, 1_500_000_000, 1, 2.0)
    assert a.shown_ino is None and a.st_blksize == 4096


def test_attributes_from_a_stat_result_keep_nanoseconds_and_the_inode_number():
    st = os.lstat(__file__)
    a = attributes_of(st, 1.0)
    assert (a.st_mtime_ns, a.st_size, a.shown_ino) == (st.st_mtime_ns, st.st_size, st.st_ino)
    given = EntryAttributes(st_ino=9)
    assert attributes_of(given, 1.0) is given


def test_paths_follow_renames_of_their_directories():
    class Tree(PathOperations):
        def getattr(self, path, fh=None):
            return {"st_mode": stat.S_IFDIR | 0o755 if not path.endswith("f") else stat.S_IFREG | 0o644}

        def rename(self, old, new, flags):
            pass

    bridge = PathBridge(Tree())
    ctx = None
    a = bridge.lookup(1, b"a", ctx)
    b = bridge.lookup(a.st_ino, b"b", ctx)
    f = bridge.lookup(b.st_ino, b"f", ctx)
    assert bridge.path(f.st_ino) == "/a/b/f"
    bridge.rename(1, b"a", 1, b"z", 0, ctx)
    assert bridge.path(f.st_ino) == "/z/b/f"
    bridge.forget([(f.st_ino, 1), (b.st_ino, 1), (a.st_ino, 1)])
    assert list(bridge._nodes) == [1]


def test_statfs_answers_fill_what_a_dict_leaves_out():
    bridge = PathBridge(PathOperations())
    partial = type("P", (PathOperations,), {"statfs": lambda self, path: {"f_blocks": 10, "f_bfree": 4}})()
    bridge.fs = partial
    s = bridge.statfs(None)
    assert (s.f_blocks, s.f_bfree, s.f_bsize, s.f_frsize, s.f_namemax) == (10, 4, 512, 512, 255)
    given = os.statvfs("/")
    bridge.fs = type("S", (PathOperations,), {"statfs": lambda self, path: given})()
    s = bridge.statfs(None)
    assert (s.f_bsize, s.f_frsize, s.f_blocks, s.f_namemax) == (given.f_bsize, given.f_frsize, given.f_blocks,
                                                                   given.f_namemax)
    bridge.fs = type("N", (PathOperations,), {"statfs": lambda self, path: None})()  # fusepy's default gives {}
    assert bridge.statfs(None).f_bsize == 512


def test_a_listing_leaves_out_attributes_the_kernel_holds_fresh(monkeypatch):
    class Flat(PathOperations):
        def getattr(self, path, fh=None):
            return {"st_mode": (stat.S_IFDIR | 0o755) if path == "/" else (stat.S_IFREG | 0o644)}

        def readdir(self, path, fh):
            return [(name, self.getattr("/" + name)) for name in ("a", "b")] + ["c"]

    clock = [50.0]
    monkeypatch.setattr("shuntfs.paths.time.monotonic", lambda: clock[0])
    bridge = PathBridge(Flat())  # 1 s timeouts

    def plus() -> dict[bytes, bool]:
        fh = bridge.opendir(1, None)
        try:
            return {e.name: e.plus for e in bridge.readdir(fh, 0, None) if e.name not in (b".", b"..")}
        finally:
            bridge.releasedir(fh)

    assert plus() == {b"a": True, b"b": True, b"c": False}  # "c" came without attributes
    a = bridge.lookup(1, b"a", None)
    assert plus() == {b"a": False, b"b": True, b"c": False}
    clock[0] += 1.0
    assert plus()[b"a"] is True  # the kernel's copy has expired
    bridge.lookup(1, b"a", None)
    bridge.forget([(a.st_ino, 2)])
    assert plus()[b"a"] is True  # forgotten: the kernel needs it again
