"""The mirror's inode table on a plain directory: O_PATH fds up to a budget, file handles past it."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from shuntfs.mirror import InodeTable
from shuntfs.operations import FUSEError


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for i in range(20):
        (tmp_path / f"f{i}").write_bytes(b"x" * i)
    (tmp_path / "d").mkdir()
    os.symlink("f3", tmp_path / "link")
    return tmp_path


def _remember(table: InodeTable, path: Path):
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    return table.remember(fd, os.fstat(fd))


def test_inodes_past_the_budget_keep_a_handle_and_no_fd(tree):
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    baseline = _open_fds()
    table = InodeTable(root_fd, os.fstat(root_fd), max_fds=5)
    assert table.handles_usable  # root: CAP_DAC_READ_SEARCH, and ext4/tmpfs export handles
    names = [f"f{i}" for i in range(20)] + ["d", "link"]
    inodes = {name: _remember(table, tree / name) for name in names}
    assert len(table) == len(names) + 1
    assert table.pinned == 5
    # the table holds its 4 pinned fds and one directory fd of the mount for open_by_handle_at
    assert _open_fds() == baseline + 4 + 1
    for name, inode in inodes.items():
        with table.borrow(inode.nodeid) as fd:
            st = os.fstat(fd)
        assert (st.st_ino, st.st_size) == (os.lstat(tree / name).st_ino, os.lstat(tree / name).st_size)
    assert _open_fds() == baseline + 5, "a lent fd outlived its call"
    assert [inode.fd for inode in inodes.values()].count(-1) == len(names) - 4


def test_a_lookup_of_a_known_inode_counts_and_forget_releases_everything(tree):
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    baseline = _open_fds()
    table = InodeTable(root_fd, os.fstat(root_fd), max_fds=3)
    first = [_remember(table, tree / f"f{i}") for i in range(10)]
    again = [_remember(table, tree / f"f{i}") for i in range(10)]
    assert [i.nodeid for i in first] == [i.nodeid for i in again]
    assert all(i.nlookup == 2 for i in first)
    for inode in first:
        table.forget(inode.nodeid, 1)
    assert len(table) == 11
    for inode in first:
        table.forget(inode.nodeid, 1)
    assert len(table) == 1 and table.pinned == 1
    with pytest.raises(FUSEError) as e:
        table.borrow(first[-1].nodeid)
    assert e.value.errno == errno.ESTALE
    table.close()
    assert _open_fds() == baseline
    os.close(root_fd)


def test_freed_fd_slots_go_to_new_inodes(tree):
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    table = InodeTable(root_fd, os.fstat(root_fd), max_fds=2)
    a = _remember(table, tree / "f1")
    b = _remember(table, tree / "f2")
    assert a.fd >= 0 and b.fd == -1
    table.forget(a.nodeid, 1)
    c = _remember(table, tree / "f3")
    assert c.fd >= 0
    table.close()
    os.close(root_fd)


def test_a_reused_inode_number_gets_a_node_id_of_its_own(tree):
    """An inode kept as a handle does not keep the file alive: once deleted, the source may give its number to a new
    file while the kernel still knows the old node id (its FORGET on the way). The new file must get a node id of
    its own; the old one answers ESTALE. (An inode kept as an fd cannot be reused while we hold it.)"""
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    table = InodeTable(root_fd, os.fstat(root_fd), max_fds=1)
    old = _remember(table, tree / "f1")
    assert old.fd == -1
    old_st = os.lstat(tree / "f1")
    os.unlink(tree / "f1")
    (tree / "new").write_bytes(b"new file")
    fd = os.open(tree / "new", os.O_PATH | os.O_CLOEXEC)
    reused = SimpleNamespace(st_dev=old_st.st_dev, st_ino=old_st.st_ino)  # as ext4 does with a freed number
    new = table.remember(fd, reused)  # type: ignore[arg-type]
    assert new.nodeid != old.nodeid
    with table.borrow(new.nodeid) as got:
        assert os.fstat(got).st_ino == os.lstat(tree / "new").st_ino
    with pytest.raises(OSError) as e:
        table.borrow(old.nodeid)
    assert e.value.errno == errno.ESTALE
    # the old node id's FORGET leaves the new mapping alone
    table.forget(old.nodeid, 1)
    again = table.remember(os.open(tree / "new", os.O_PATH | os.O_CLOEXEC), reused)  # type: ignore[arg-type]
    assert again.nodeid == new.nodeid and again.nlookup == 2
    # a handle-kept file that still exists keeps its node id, as before
    f2 = _remember(table, tree / "f2")
    assert f2.fd == -1 and _remember(table, tree / "f2").nodeid == f2.nodeid
    table.close()
    os.close(root_fd)


def test_forgotten_inodes_stay_known_as_handles_up_to_a_bound(tree):
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    baseline = _open_fds()
    table = InodeTable(root_fd, os.fstat(root_fd), max_fds=100, forgotten=3)
    inodes = [_remember(table, tree / f"f{i}") for i in range(5)]
    for inode in inodes:
        table.forget(inode.nodeid, 1)
    assert (len(table), table.forgotten, table.pinned) == (1, 3, 1)
    assert _open_fds() == baseline + 1  # no fds held for them; the mount's directory fd for open_by_handle_at
    # the two forgotten longest ago are gone; the others still resolve under their node ids
    for inode in inodes[:2]:
        with pytest.raises(FUSEError):
            table.borrow(inode.nodeid)
    for i, inode in enumerate(inodes[2:], 2):
        with table.borrow(inode.nodeid) as fd:
            assert os.fstat(fd).st_size == i
    # a name that leads to one again gives its old node id back, with an fd again
    again = _remember(table, tree / "f3")
    assert again.nodeid == inodes[3].nodeid and again.nlookup == 1 and again.fd >= 0
    assert (len(table), table.forgotten, table.pinned) == (2, 2, 2)
    table.forget(inodes[3].nodeid, 1)
    table.forget(inodes[3].nodeid, 1)  # a second FORGET of a forgotten inode changes nothing
    assert (len(table), table.forgotten, table.pinned) == (1, 3, 1)
    table.close()
    assert _open_fds() == baseline  # the mount's directory fd closed too


def test_a_forgotten_inode_whose_file_is_gone_is_not_revived(tree):
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    table = InodeTable(root_fd, os.fstat(root_fd), forgotten=10)
    old = _remember(table, tree / "f1")
    table.forget(old.nodeid, 1)
    os.unlink(tree / "f1")
    with pytest.raises(OSError) as caught:
        table.borrow(old.nodeid)
    assert caught.value.errno == errno.ESTALE
    (tree / "f1").write_bytes(b"new")  # may take the old inode number
    new = _remember(table, tree / "f1")
    assert new.nodeid != old.nodeid
    assert table.forgotten == 0
    table.close()


def test_inside_tells_directories_below_the_root(tree, tmp_path_factory):
    root_fd = os.open(tree / "d", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    table = InodeTable(root_fd, os.fstat(root_fd))
    (tree / "d" / "a" / "b").mkdir(parents=True)
    below = os.open(tree / "d" / "a" / "b", os.O_PATH | os.O_DIRECTORY)
    beside = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    try:
        assert table.inside(below) and table.inside(root_fd) and not table.inside(beside)
    finally:
        os.close(below)
        os.close(beside)
        table.close()


def test_a_lookup_by_node_id_racing_its_forget_finds_the_file(tree):
    """The kernel looks a forgotten node id up (a file handle) while that node id's FORGET may still be on its
    way: opening it again must never see the fd the FORGET is closing (a wrong file, or ESTALE for a live one)."""
    import threading

    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    table = InodeTable(root_fd, os.fstat(root_fd), forgotten=10)
    path = tree / "f5"
    want = os.stat(path).st_ino
    nodeid = _remember(table, path).nodeid
    stop = threading.Event()
    wrong: list[object] = []

    def churn():  # forget and look up again, as the kernel's FORGET and a later LOOKUP would
        while not stop.is_set():
            table.forget(nodeid, 1)
            assert _remember(table, path).nodeid == nodeid
            for i in range(4):  # other opens, which reuse the fd numbers just closed
                os.close(os.open(tree / f"f{i}", os.O_RDONLY))

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for _ in range(3000):
            try:
                fd = table.open_again(nodeid, False)
            except (OSError, FUSEError) as e:
                wrong.append(e)
                continue
            ino = os.fstat(fd).st_ino
            os.close(fd)
            if ino != want:
                wrong.append(ino)
    finally:
        stop.set()
        churner.join()
        table.close()
    assert wrong == []


def test_mirror_path_follows_the_source(tree):
    from shuntfs import Mirror
    from shuntfs.operations import RequestContext

    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_bytes(b"x")
    mirror = Mirror(str(tree))
    ctx = RequestContext(0, 0, 0, 0)
    try:
        a = mirror.lookup(1, b"a", ctx).st_ino
        b = mirror.lookup(a, b"b", ctx).st_ino
        f = mirror.lookup(b, b"f", ctx).st_ino
        assert (mirror.path(1), mirror.path(f)) == ("", "a/b/f")
        os.rename(tree / "a", tree / "z")  # behind the mount
        assert mirror.path(f) == "z/b/f"
        os.unlink(tree / "z" / "b" / "f")
        with pytest.raises(FUSEError) as caught:
            mirror.path(f)
        assert caught.value.errno == errno.ENOENT
    finally:
        mirror.destroy()
