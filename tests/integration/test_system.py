"""shuntfs as mount(8) sees it: `mount -t fuse.shuntfs`, fstab lines (through `mount -T`), and the helper's flags."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
import subprocess
import sysconfig
from pathlib import Path

import pytest

from shuntfs.control_client import query
from shuntfs.mount import find_mount

from .conftest import MODES, NOBODY, _pid_alive, as_user, user_python, wait_for

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


def mount_flags_of(mnt: Path) -> set[str]:
    entry = find_mount(str(mnt))
    assert entry is not None
    return set(entry.mount_options.split(","))


def write_fails_read_only(path: Path) -> bool:
    try:
        path.write_bytes(b"x")
    except OSError as e:
        return e.errno == errno.EROFS
    return False


@pytest.mark.parametrize("mode", list(MODES))
def test_remount_ro_and_rw_through_mount8(helper, tree, mode):
    """`mount -o remount,ro` and `remount,rw` change the live mount; the daemon serves on; the other flags stay."""
    src, mnt = tree
    (src / "f").write_bytes(b"before")
    options = ",".join(["noatime", "noexec"] + MODES[mode])
    done = subprocess.run(["mount", "-t", "fuse.shuntfs", str(src), str(mnt), "-o", options],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        pid = query(str(mnt))["pid"]
        done = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert {"ro", "nosuid", "nodev", "noatime", "noexec"} <= mount_flags_of(mnt)
        assert write_fails_read_only(mnt / "f") and write_fails_read_only(mnt / "new")
        assert (mnt / "f").read_bytes() == b"before"
        done = subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert {"rw", "nosuid", "nodev", "noatime", "noexec"} <= mount_flags_of(mnt)
        (mnt / "f").write_bytes(b"after")
        assert (src / "f").read_bytes() == b"after"
        assert query(str(mnt))["pid"] == pid
    finally:
        unmount_and_reap(mnt)


def test_remount_through_the_helper_and_what_it_refuses(tree, mount_factory, workdir):
    from shuntfs.cli import mount_helper

    src, mnt = tree
    mount_factory("ro")
    assert "ro" in mount_flags_of(mnt)
    assert mount_helper([str(src), str(mnt), "-o", "remount,rw,exec"]) == 0
    assert "rw" in mount_flags_of(mnt)
    (mnt / "g").write_bytes(b"rw again")
    assert (src / "g").read_bytes() == b"rw again"
    # What a remount cannot do: change FUSE's own options, remount what is not a FUSE mount, run as a user.
    for argv in ([str(src), str(mnt), "-o", "remount,allow_other"],
                 [str(src), str(mnt), "-o", "remount,user_id=12345"],
                 [str(src), str(workdir), "-o", "remount,ro"]):
        assert mount_helper(argv) == 1
    done = subprocess.run(as_user(NOBODY, user_python(workdir) + ["-o", "remount,ro", str(src), str(mnt)]),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "only root may remount" in done.stderr
    assert "rw" in mount_flags_of(mnt)


def test_mounts_are_nosuid_nodev_unless_root_asks(tree, mount_factory, workdir):
    """`suid` and `dev` give root the set-id programs and device nodes of the source, as libfuse's mounts do."""
    src, mnt = tree
    shutil.copy("/usr/bin/id", src / "id")
    os.chmod(src / "id", 0o4755)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    probe = as_user(NOBODY, [str(mnt / "id"), "-u"])  # prints the effective uid
    m = mount_factory("allow_other")
    assert {"nosuid", "nodev"} <= mount_flags_of(mnt)
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() != "0"
    with pytest.raises(PermissionError):
        open(mnt / "null", "wb")
    m.stop()
    mount_factory("allow_other,suid,dev")
    assert not {"nosuid", "nodev"} & mount_flags_of(mnt)
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "0"
    with open(mnt / "null", "wb") as f:
        assert f.write(b"into /dev/null") == 14
    assert os.stat(src / "null").st_size == 0


def test_suid_and_dev_need_root(tree, workdir, dev_fuse_for_users):
    src, mnt = tree
    os.chown(mnt, pwd.getpwnam(NOBODY).pw_uid, -1)
    for word in ("suid", "dev"):
        done = subprocess.run(as_user(NOBODY, user_python(workdir) + ["-o", word, str(src), str(mnt)]),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and "needs root" in done.stderr, done.stderr
        assert find_mount(str(mnt)) is None


OLD = 978307200  # 2001-01-01: older than mtime, so the source's relatime would update it on a read


def read_as_root_and_nobody(mnt: Path) -> None:
    assert (mnt / "f").read_bytes() == b"hello"
    assert os.listdir(mnt / "d") == ["e"]
    done = subprocess.run(as_user(NOBODY, ["sh", "-c", f"cat {mnt}/f && ls {mnt}/d"]), capture_output=True, text=True)
    assert done.stdout == "helloe\n", done.stderr


@pytest.mark.parametrize("mode", list(MODES))
def test_noatime_keeps_the_source_atimes(tree, mount_factory, mode):
    """-o noatime opens the daemon's files and directories with O_NOATIME (for other users' opens too), so reads
    through the mount leave the source's atimes alone; without it they move. A passthrough file's reads are the
    documented exception: the kernel opens the backing file with the reader's own flags."""
    src, mnt = tree
    (src / "f").write_bytes(b"hello")
    (src / "d").mkdir()
    (src / "d" / "e").touch()
    os.chmod(src / "f", 0o644)

    def atimes() -> tuple[int, int]:
        return os.stat(src / "f").st_atime_ns, os.stat(src / "d").st_atime_ns

    for options, kept in ((["allow_other"], (False, False)), (["allow_other", "noatime"], (mode == "fallback", True)),
                          (["allow_other", "nodiratime"], (False, True))):
        for path in (src / "f", src / "d"):
            os.utime(path, (OLD, os.stat(path).st_mtime))
        m = mount_factory(*options, *MODES[mode])
        read_as_root_and_nobody(mnt)
        m.stop()
        assert tuple(t == OLD * 10**9 for t in atimes()) == kept, options
