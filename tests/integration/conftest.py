"""Fixtures that mount real shuntfs filesystems. Every mount made here is unmounted and its daemon reaped."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from ..harness import (  # noqa: F401  (re-exported for the test modules)
    MODES,
    NOBODY,
    SHUNTFS,
    Mount,
    _pid_alive,
    as_user,
    ctl_as,
    user_python,
    wait_for,
)


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
