"""shuntfs as mount(8) sees it: `mount -t fuse.shuntfs`, fstab lines (through `mount -T`), and the helper's flags."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from shuntfs.ctl import query
from shuntfs.mount import find_mount

from .conftest import _pid_alive, wait_for

SYSTEM_HELPER = Path("/sbin/mount.fuse.shuntfs")


@pytest.fixture(scope="module")
def helper():
    """The installed helper, linked where mount(8) looks for it, as the README tells administrators to do."""
    installed = Path(sysconfig.get_path("scripts")) / "mount.fuse.shuntfs"
    assert installed.exists(), "pip install did not install the mount.fuse.shuntfs entry point"
    if SYSTEM_HELPER.exists() or SYSTEM_HELPER.is_symlink():
        yield SYSTEM_HELPER  # an administrator's own; leave it alone
        return
    SYSTEM_HELPER.symlink_to(installed)
    yield SYSTEM_HELPER
    SYSTEM_HELPER.unlink()


def unmount_and_reap(mnt: Path) -> None:
    pid = query(str(mnt))["pid"]
    subprocess.run(["umount", str(mnt)], check=True)
    assert wait_for(lambda: not _pid_alive(pid), 10)


def test_mount_t_fuse_shuntfs(helper, tree):
    src, mnt = tree
    (src / "f").write_bytes(b"through mount(8)")
    done = subprocess.run(["mount", "-t", "fuse.shuntfs", str(src), str(mnt),
                           "-o", "allow_other,nofail,_netdev,x-systemd.automount,noatime"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        entry = find_mount(str(mnt))
        assert entry is not None and entry.fstype == "fuse.shuntfs"
        with open("/proc/mounts") as f:
            options = next(line.split()[3] for line in f if line.split()[1] == str(mnt)).split(",")
        assert "allow_other" in options and "noatime" in options
        assert (mnt / "f").read_bytes() == b"through mount(8)"
    finally:
        unmount_and_reap(mnt)


def test_fstab_line(helper, tree, workdir):
    src, mnt = tree
    fstab = workdir / "fstab"
    fstab.write_text(f"# a comment\n{src} {mnt} fuse.shuntfs defaults,cache=none,passthrough=off,nofail 0 0\n")
    done = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        stats = query(str(mnt))
        assert stats["filesystem"]["cache"] == "none" and stats["passthrough"] is False
    finally:
        unmount_and_reap(mnt)


def test_bad_option_through_mount_fails_and_mounts_nothing(helper, tree):
    src, mnt = tree
    done = subprocess.run(["mount", "-t", "fuse.shuntfs", str(src), str(mnt), "-o", "cache=sometimes"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "cache" in done.stderr
    assert find_mount(str(mnt)) is None


def test_helper_flags(tree):
    from shuntfs.cli import mount_helper

    src, mnt = tree
    assert mount_helper([str(src), str(mnt), "-f", "-o", "ro"]) == 0  # fake: nothing happens
    assert find_mount(str(mnt)) is None
    assert mount_helper([str(src)]) == 2
    assert mount_helper([str(src), str(mnt), "-x"]) == 2
    assert os.listdir(mnt) == []


UNIT = Path(__file__).parents[2] / "examples" / "systemd" / "mnt-mirror.mount"


def test_systemd_mount_unit_example(helper, tree):
    """The example unit is valid for systemd, and its Type and Options mount as systemd would run them."""
    import shutil

    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and line[0] != "#")
    assert settings["Where"] == "/mnt/mirror" and settings["Type"] == "fuse.shuntfs"
    src, mnt = tree
    (src / "f").write_bytes(b"unit")
    done = subprocess.run(["mount", "-t", settings["Type"], str(src), str(mnt), "-o", settings["Options"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        assert (mnt / "f").read_bytes() == b"unit"
    finally:
        unmount_and_reap(mnt)
