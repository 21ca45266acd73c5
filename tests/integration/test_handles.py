"""File handles of the mount (name_to_handle_at / open_by_handle_at, what an NFS export of it uses) outlive the
kernel's inode cache, and never lead to another file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from . import posix_ops as px
from .conftest import MODES, wait_for


def name_to_handle(path: Path) -> bytes:
    return px.name_to_handle(str(path))


def open_by_handle(mnt: Path, handle: bytes, flags: int = os.O_RDONLY) -> int:
    return px.open_by_handle(str(mnt), handle, flags)


def forget_all(m) -> None:
    """Make the kernel drop the mount's unused inodes, and wait until the daemon has heard of it: only the root
    stays known to the kernel."""
    Path("/proc/sys/vm/drop_caches").write_text("2\n")
    assert wait_for(lambda: m.stats()["filesystem"]["inodes"] == 1, 10), m.stats()["filesystem"]


def read_handle(mnt: Path, handle: bytes) -> bytes:
    fd = open_by_handle(mnt, handle)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def assert_stale(mnt: Path, handle: bytes) -> None:
    """Reading through ``handle`` fails with ESTALE (never reaches another file)."""
    with pytest.raises(OSError) as caught:
        read_handle(mnt, handle)
    assert caught.value.errno == errno.ESTALE


@pytest.mark.parametrize("mode", list(MODES))
def test_handles_work_after_the_kernel_forgets(tree, mount_factory, mode):
    src, mnt = tree
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "e" / "f").write_bytes(b"deep file")
    m = mount_factory(*MODES[mode])
    file_handle = name_to_handle(mnt / "d" / "e" / "f")
    dir_handle = name_to_handle(mnt / "d" / "e")
    forget_all(m)
    assert m.stats()["filesystem"]["forgotten_inodes"] == 3  # d, e and f, kept for their handles
    lookups = m.requests().get("LOOKUP", 0)
    assert read_handle(mnt, file_handle) == b"deep file"
    fd = open_by_handle(mnt, dir_handle, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(os.listdir(fd)) == ["f"]
        assert os.readlink(f"/proc/self/fd/{fd}") == str(mnt / "d" / "e")  # reconnected through LOOKUP of ".."
    finally:
        os.close(fd)
    assert m.requests()["LOOKUP"] > lookups  # the kernel asked the daemon: it had forgotten them
    # and the file is served as before
    (mnt / "d" / "e" / "f").write_bytes(b"rewritten")
    assert (src / "d" / "e" / "f").read_bytes() == b"rewritten"


def test_a_deleted_file_gives_estale_never_another(tree, mount_factory):
    src, mnt = tree
    (src / "gone").write_bytes(b"old")
    m = mount_factory()
    handle = name_to_handle(mnt / "gone")
    os.unlink(mnt / "gone")
    # Files made now may take the freed inode number (ext4 and tmpfs reuse them at once).
    for i in range(20):
        (src / f"new{i}").write_bytes(b"new")
    forget_all(m)
    assert_stale(mnt, handle)


def test_a_file_unlinked_behind_the_mount_gives_estale(tree, mount_factory):
    src, mnt = tree
    (src / "f").write_bytes(b"x")
    (src / "d").mkdir()
    m = mount_factory()
    handles = [name_to_handle(mnt / "f"), name_to_handle(mnt / "d")]
    held = os.open(src / "f", os.O_RDONLY)  # deleted but still open on the source: nlink 0
    try:
        os.unlink(src / "f")
        os.rmdir(src / "d")
        forget_all(m)
        for handle in handles:
            assert_stale(mnt, handle)
    finally:
        os.close(held)


def test_handles_of_an_earlier_mount_give_estale(tree, mount_factory):
    """Node ids start again with each daemon; the generation tells its handles apart from an earlier one's."""
    src, mnt = tree
    for name in ("a", "b"):
        (src / name).write_bytes(name.encode())
    m = mount_factory()
    handle = name_to_handle(mnt / "a")
    m.stop()
    mount_factory()
    (mnt / "b").read_bytes()  # the new daemon gives b the node id a had
    assert_stale(mnt, handle)


def test_export_inodes_zero_turns_export_off(tree, mount_factory):
    src, mnt = tree
    (src / "f").write_bytes(b"x")
    m = mount_factory("export_inodes=0")
    handle = name_to_handle(mnt / "f")
    assert read_handle(mnt, handle) == b"x"  # while the kernel knows the inode
    forget_all(m)
    assert_stale(mnt, handle)
    assert "EXPORT_SUPPORT" not in m.stats()["capabilities"]


def test_a_directory_moved_out_of_the_source_is_not_reached(tree, mount_factory, workdir):
    src, mnt = tree
    (src / "d").mkdir()
    (src / "d" / "secret").write_bytes(b"s")
    m = mount_factory()
    handle = name_to_handle(mnt / "d")
    os.rename(src / "d", workdir / "outside")
    forget_all(m)
    with pytest.raises(OSError) as caught:
        os.close(open_by_handle(mnt, handle, os.O_RDONLY | os.O_DIRECTORY))
    assert caught.value.errno == errno.ESTALE
