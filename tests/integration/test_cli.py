"""The command line: every user mistake gets one clear line, a non-zero exit, and leaves nothing mounted."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time

import pytest

from shuntfs.mount import find_mount

from ..harness import serving
from .conftest import SHUNTFS, _pid_alive, as_user, user_python, wait_for


def run_cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = SHUNTFS + list(args)
    if user:
        cmd = as_user(user, cmd)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def assert_refused(done: subprocess.CompletedProcess, words: str, mnt) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("shuntfs: ")
    assert words in lines[0]
    assert find_mount(str(mnt)) is None


def no_daemon_left(mnt) -> bool:
    out = subprocess.run(["pgrep", "-f", f"shuntfs.cli .* {mnt}"], capture_output=True, text=True)
    return out.stdout.strip() == ""


def test_missing_source(tree):
    src, mnt = tree
    assert_refused(run_cli(str(src / "nope"), str(mnt)), "no such file", mnt)


def test_source_not_a_directory(tree):
    src, mnt = tree
    (src / "file").touch()
    assert_refused(run_cli(str(src / "file"), str(mnt)), "not a directory", mnt)


def test_missing_mountpoint(tree):
    src, mnt = tree
    assert_refused(run_cli(str(src), str(mnt / "nope")), "no such file", mnt / "nope")


def test_mountpoint_not_a_directory(tree):
    src, mnt = tree
    (src / "file").touch()
    assert_refused(run_cli(str(src), str(src / "file")), "not a directory", src / "file")


def test_mountpoint_inside_the_source(tree):
    """The daemon's lookups would enter its own mount and wait on themselves; through a symlink too."""
    src, mnt = tree
    (src / "inner").mkdir()
    assert_refused(run_cli(str(src), str(src / "inner")), "inside source", src / "inner")
    os.symlink(src / "inner", mnt.parent / "alias")
    assert_refused(run_cli(str(src), str(mnt.parent / "alias")), "inside source", src / "inner")
    assert no_daemon_left(src / "inner")


def test_mountpoint_already_mounted(mount_factory, tree):
    src, mnt = tree
    first = mount_factory()
    done = run_cli(str(src), str(mnt))
    assert done.returncode != 0
    assert "already a mountpoint" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert first.stats()["pid"] == first.pid  # the first mount is untouched


@pytest.mark.parametrize(
    "option, words",
    [
        ("bogus", "unknown option"),
        ("cache=sometimes", "cache"),
        ("passthrough=maybe", "passthrough"),
        ("max_stack_depth=7", "max_stack_depth"),
        ("ro=1", "takes no value"),
        ("fsname", "needs a value"),
    ],
)
def test_bad_options(tree, option, words):
    src, mnt = tree
    done = run_cli(str(src), str(mnt), "-o", option)
    assert done.returncode == 2
    assert_refused(done, words, mnt)


def test_no_dev_fuse(tree):
    """In a mount namespace where /dev has no fuse node."""
    src, mnt = tree
    script = "mount -t tmpfs none /dev && exec " + " ".join(SHUNTFS) + f" {src} {mnt}"
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert_refused(done, "/dev/fuse", mnt)


def test_no_privileges_and_no_fusermount(tree):
    src, mnt = tree
    os.chown(mnt, 65534, 65534)
    cmd = as_user("nobody", user_python(src.parent) + [str(src), str(mnt)], path="/nonexistent")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert_refused(done, "fusermount3", mnt)


def test_umount_makes_the_daemon_exit_zero(tree):
    src, mnt = tree
    proc = subprocess.Popen(SHUNTFS + ["-f", str(src), str(mnt)], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: find_mount(str(mnt)) is not None and os.path.ismount(mnt), 15)
        subprocess.run(["umount", str(mnt)], check=True)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert find_mount(str(mnt)) is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(tree, sig):
    src, mnt = tree
    proc = subprocess.Popen(SHUNTFS + ["-f", str(src), str(mnt)], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: find_mount(str(mnt)) is not None and os.path.ismount(mnt), 15)
        (mnt / "f").write_text("before the signal")
        proc.send_signal(sig)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert find_mount(str(mnt)) is None
    assert (src / "f").read_text() == "before the signal"


def test_sigkill_with_auto_unmount_removes_the_mount(mount_factory):
    m = mount_factory()
    (m.mnt / "f").write_text("x")
    os.kill(m.pid, signal.SIGKILL)
    start = time.monotonic()
    assert wait_for(lambda: find_mount(str(m.mnt)) is None, 2.0)
    assert time.monotonic() - start < 2.0
    assert not os.path.ismount(m.mnt)


def test_sigkill_without_auto_unmount_gives_enotconn(mount_factory):
    m = mount_factory("noauto_unmount")
    os.kill(m.pid, signal.SIGKILL)
    assert wait_for(lambda: not _pid_alive(m.pid), 5)
    started = time.monotonic()
    with pytest.raises(OSError) as e:
        os.listdir(m.mnt)
    # 6.18 answers ECONNABORTED for some calls on a connection whose server died, ENOTCONN for others, and
    # ECANCELED for one that was already queued on an io_uring queue when the server's rings went away
    assert e.value.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED)
    assert time.monotonic() - started < 1.0
    subprocess.run(["umount", "-l", str(m.mnt)], check=True)


def test_stats_names_opcodes_and_protocol(mount_factory):
    m = mount_factory()
    os.listdir(m.mnt)
    stats = m.stats()
    assert stats["protocol"] == "7.45"
    assert "PASSTHROUGH" in stats["capabilities"]
    assert stats["requests"]["INIT"] == 1
    assert stats["requests"].get("READDIRPLUS", 0) + stats["requests"].get("READDIR", 0) > 0
    out = subprocess.run(["shuntfs-ctl", "stats", str(m.mnt)], capture_output=True, text=True)
    assert out.returncode == 0 and '"passthrough": true' in out.stdout
    # piped into a reader that has stopped reading (head, say): quietly
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        piped = subprocess.run(["shuntfs-ctl", "stats", str(m.mnt)], stdout=write_end, stderr=subprocess.PIPE,
                               text=True)
    finally:
        os.close(write_end)
    assert (piped.returncode, piped.stderr) == (0, "")


def test_ctl_on_something_else_fails_cleanly(tree):
    src, mnt = tree
    out = subprocess.run(["shuntfs-ctl", "stats", str(mnt)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "not a mountpoint" in out.stderr


def test_debug_trace_goes_to_the_log_file(tree, workdir):
    """-d logs each request, libfuse-style, with its result and time; --log-file sends it to a file."""
    src, mnt = tree
    (src / "f").write_text("x")
    log = workdir / "shuntfs.log"
    with serving(SHUNTFS + ["-d", "--log-file", str(log), str(src), str(mnt)], mnt) as served:
        assert (mnt / "f").read_text() == "x"
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "missing")
    text = log.read_text()
    assert re.search(r"unique=\d+ INIT .*-> OK \(\d+ us\)", text)
    assert re.search(r"unique=\d+ LOOKUP nodeid=1 uid=0 pid=\d+ .*missing.* -> (ENOENT|OK)", text)
    assert re.search(r"unique=\d+ OPEN nodeid=\d+ .*-> OK", text)
    assert "unique=" not in served.err  # the trace went to the file, not to stderr
