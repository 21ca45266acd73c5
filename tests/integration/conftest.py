"""Fixtures that mount real shuntfs filesystems. Every mount made here is unmounted and its daemon reaped."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from shuntfs.ctl import query
from shuntfs.mount import find_mount

SHUNTFS = [sys.executable, "-m", "shuntfs.cli"]
NOBODY = "nobody"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Mount:
    """A running `shuntfs SOURCE MOUNTPOINT` (daemon mode), optionally started as another user."""

    def __init__(self, source: Path, mountpoint: Path, options: list[str], user: str | None = None) -> None:
        self.source = source
        self.mnt = mountpoint
        self.options = options
        self.user = user
        self.pid = 0

    def command(self) -> list[str]:
        cmd = SHUNTFS + [str(self.source), str(self.mnt)]
        for opt in self.options:
            cmd += ["-o", opt]
        return cmd

    def start(self) -> "Mount":
        cmd = self.command()
        if self.user:
            cmd = as_user(self.user, user_python(self.source.parent) + cmd[len(SHUNTFS):])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"shuntfs failed: {done.stderr}"
        self.pid = self.stats()["pid"]
        return self

    def stats(self) -> dict:
        return query(str(self.mnt))

    def requests(self) -> dict:
        return self.stats()["requests"]

    def stop(self) -> None:
        if find_mount(str(self.mnt)) is not None:
            if self.user:
                subprocess.run(as_user(self.user, ["fusermount3", "-u", "-z", str(self.mnt)]), check=False)
            else:
                subprocess.run(["umount", "-l", str(self.mnt)], check=False)
        if self.pid:
            assert wait_for(lambda: not _pid_alive(self.pid), 15), f"daemon {self.pid} did not exit"


def as_user(user: str, cmd: list[str], path: str | None = None) -> list[str]:
    """Run ``cmd`` as ``user`` with that user's primary group and no supplementary groups."""
    import pwd

    pw = pwd.getpwnam(user)
    env_path = path or "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return [
        "setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
        "env", f"PATH={env_path}", "HOME=/", *cmd,
    ]


def _usable_by_nobody(python: str) -> bool:
    probe = as_user(NOBODY, [python, "-c", "import ctypes, json"])
    return subprocess.run(probe, capture_output=True).returncode == 0


def user_python(base: Path) -> list[str]:
    """A command that runs shuntfs.cli as an unprivileged user: an interpreter that user can execute (the test
    interpreter may live under a 0700 home) and a copy of the package in ``base``, which that user can read."""
    import shuntfs

    lib = base / "pylib"
    if not (lib / "shuntfs").exists():
        shutil.copytree(Path(shuntfs.__file__).parent, lib / "shuntfs",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, _dirs, files in os.walk(lib):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
    python = sys.executable if _usable_by_nobody(sys.executable) else "/usr/bin/python3"
    return ["/usr/bin/env", f"PYTHONPATH={lib}", python, "-m", "shuntfs.cli"]


def ctl_as(user: str, base: Path, mountpoint: Path) -> subprocess.CompletedProcess:
    cmd = user_python(base)
    cmd[-1] = "shuntfs.ctl"
    return subprocess.run(as_user(user, cmd + ["stats", str(mountpoint)]), capture_output=True, text=True)


@pytest.fixture
def workdir():
    """A scratch directory that other users can traverse (pytest's own tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="shuntfs-test-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tree(workdir: Path):
    """A source and a mountpoint directory."""
    src = workdir / "src"
    mnt = workdir / "mnt"
    src.mkdir(mode=0o755)
    mnt.mkdir(mode=0o755)
    return src, mnt


@pytest.fixture(scope="session")
def dev_fuse_for_users():
    """fusermount3 opens /dev/fuse as the calling user: give it the 0666 that udev gives it on a normal system
    (minimal images leave devtmpfs's 0600), and put the old mode back after the run."""
    old = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    if old != 0o666:
        os.chmod("/dev/fuse", 0o666)
    yield
    if old != 0o666:
        os.chmod("/dev/fuse", old)


@pytest.fixture
def mount_factory(tree, request):
    mounts: list[Mount] = []

    def make(*options: str, user: str | None = None, source: Path | None = None, mountpoint: Path | None = None):
        src, mnt = tree
        if user:
            request.getfixturevalue("dev_fuse_for_users")
        m = Mount(source or src, mountpoint or mnt, list(options), user=user).start()
        mounts.append(m)
        return m

    yield make
    for m in reversed(mounts):
        m.stop()


MODES = {"passthrough": [], "fallback": ["passthrough=off"]}


@pytest.fixture(params=list(MODES))
def mounted(request, mount_factory) -> Mount:
    """The mirror, once with passthrough and once with userspace I/O."""
    m = mount_factory(*MODES[request.param])
    m.mode = request.param
    assert m.stats()["passthrough"] is (request.param == "passthrough")
    return m


def pytest_sessionfinish(session, exitstatus):
    # Never leave a mount behind, even when a test failed half-way.
    with open("/proc/self/mountinfo") as f:
        leftovers = [line.split()[4] for line in f if " fuse.shuntfs " in line and "/shuntfs-test-" in line]
    for path in leftovers:
        subprocess.run(["umount", "-l", path], check=False)
