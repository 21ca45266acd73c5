"""Mounting shuntfs from tests and from the long-running stress commands: no pytest here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shuntfs.control_client import query
from shuntfs.mount import find_mount

SHUNTFS = [sys.executable, "-m", "shuntfs.cli"]
NOBODY = "nobody"
#: The two ways the mirror serves file data, as -o options: kernel passthrough, and userspace I/O.
MODES = {"passthrough": [], "fallback": ["passthrough=off"]}


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
    """A running `shuntfs SOURCE MOUNTPOINT` (daemon mode), optionally started as another user; ``program``: another
    command with shuntfs's command line (a filesystem run by ``shuntfs.main``, taking SOURCE)."""

    def __init__(self, source: Path, mountpoint: Path, options: list[str], user: str | None = None,
                 program: list[str] = SHUNTFS) -> None:
        self.source = source
        self.mnt = mountpoint
        self.options = options
        self.user = user
        self.program = program
        self.pid = 0

    def command(self) -> list[str]:
        cmd = self.program + [str(self.source), str(self.mnt)]
        for opt in self.options:
            cmd += ["-o", opt]
        return cmd

    def start(self) -> Mount:
        cmd = self.command()
        if self.user:
            cmd = as_user(self.user, user_python(self.source.parent) + cmd[len(self.program):])
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
    cmd[-1] = "shuntfs.control_client"
    return subprocess.run(as_user(user, cmd + ["stats", str(mountpoint)]), capture_output=True, text=True)


@contextmanager
def scratch_mount(mode: str, prefix: str) -> Iterator[Mount]:
    """A mirror of a fresh empty directory in ``mode`` (a key of MODES); unmounted and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    (base / "src").mkdir()
    (base / "mnt").mkdir()
    m = Mount(base / "src", base / "mnt", MODES[mode])
    try:
        m.start()
        yield m
    finally:
        m.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Served:
    """A filesystem process serving in the foreground; ``out`` and ``err`` are set once it has exited."""

    proc: subprocess.Popen
    out: str = ""
    err: str = ""


@contextmanager
def serving(cmd: list[str], mountpoint: Path) -> Iterator[Served]:
    """Run ``cmd``, a filesystem that serves ``mountpoint`` in the foreground; wait for the mount, run the body,
    then unmount and require that the process exits 0. A failing body still leaves nothing mounted or running."""
    served = Served(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    proc = served.proc
    try:
        assert wait_for(lambda: find_mount(str(mountpoint)) is not None and os.path.ismount(mountpoint), 15), (
            f"{cmd[1:3]} never mounted {mountpoint}")
        yield served
        subprocess.run(["umount", str(mountpoint)], check=True)
        served.out, served.err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
    assert proc.returncode == 0, served.err
