"""Mounting shuntfs from tests and from the long-running stress commands: no pytest here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

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

    def start(self) -> Mount:
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
