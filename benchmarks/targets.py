"""The filesystems a benchmark compares: the source directory itself, shuntfs in its modes, and pyfuse3's example.

Every target serves the same SOURCE, so a workload sees the same files everywhere and only the path in between
differs. Mounted targets are started and stopped here; ``pid`` is the serving process (for RSS figures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shuntfs.control_client import query
from shuntfs.mount import find_mount

from .steady import steady_memory


class BenchmarkError(Exception):
    """A target cannot be set up; the message is one line for the user."""


@dataclass
class Target:
    name: str
    label: str
    #: -o options for shuntfs; None for native and pyfuse3
    options: list[str] | None = None
    root: Path = Path()
    pid: int = 0
    log: Path = Path()
    _args: tuple = ()
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def mounted(self) -> bool:
        return self.name != "native"

    def start(self, source: Path, base: Path, peer_script: Path | None) -> None:
        self._args = (source, base, peer_script)
        if self.name == "native":
            self.root = source
            return
        self.root = base / f"mnt-{self.name}"
        self.root.mkdir(exist_ok=True)
        if self.name.startswith("c-reference"):
            from .reference import passthrough_hp

            binary, env = passthrough_hp()
            self.log = base / f"{self.name}.log"
            uring = ["-o", "io_uring"] if self.name.endswith("uring") else []
            with open(self.log, "wb") as log:
                self._proc = subprocess.Popen([str(binary), str(source), str(self.root), "--foreground", *uring],
                                              stdout=subprocess.DEVNULL, stderr=log, env=env)
            self.pid = self._proc.pid
            wait_mounted(self._proc, self.root, lambda: f"{self.label} did not mount: {self.log_tail()}")
            return
        if self.name == "pyfuse3":
            assert peer_script is not None
            self.log = base / "pyfuse3.log"
            with open(self.log, "wb") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, str(peer_script), str(source), str(self.root)],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            self.pid = self._proc.pid
            wait_mounted(self._proc, self.root, lambda: f"pyfuse3's passthroughfs.py did not mount: {self.log_tail()}")
            return
        cmd = [sys.executable, "-m", "shuntfs.cli", str(source), str(self.root)]
        for option in self.options or []:
            cmd += ["-o", option]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchmarkError(f"shuntfs {' '.join(self.options or [])} did not mount: {done.stderr.strip()}")
        self.pid = int(query(str(self.root))["pid"])

    def requests(self) -> dict[str, int]:
        """The daemon's per-opcode request counters (shuntfs targets only)."""
        return dict(query(str(self.root))["requests"]) if self.options is not None else {}

    def log_tail(self) -> str:
        """The last line of the peer's stderr: why it failed."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def alive(self) -> bool:
        return self.name == "native" or (bool(self.pid) and _alive(self.pid))

    def restart(self) -> None:
        """Mount again after the daemon died (pyfuse3's example dies on some workloads; the next may still run)."""
        self.stop()
        self.start(*self._args)

    def stop(self) -> None:
        if not self.mounted or not self.pid:
            return
        if subprocess.run(["umount", str(self.root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        else:
            deadline = time.monotonic() + 20
            while self.pid and _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        try:
            self.root.rmdir()
        except OSError:
            pass
        self.pid = 0


def wait_mounted(proc: subprocess.Popen, mountpoint: Path, failure: Callable[[], str], timeout: float = 20) -> None:
    """Wait until the foreground server ``proc`` has mounted; BenchmarkError(failure()) if it dies or times out."""
    deadline = time.monotonic() + timeout
    while find_mount(str(mountpoint)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchmarkError(failure())
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][0] != "Z"
    except OSError:
        return False


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchmarkError(f"process {pid} has no RSS")


#: Every target a run knows, in table order.
ALL_TARGETS = {
    "native": ("native", None),
    "passthrough": ("shuntfs passthrough", []),
    "nokillpriv": ("shuntfs passthrough, killpriv=off", ["killpriv=off"]),
    "fallback": ("shuntfs fallback", ["passthrough=off"]),
    "fallback-devfuse": ("shuntfs fallback, io_uring=off", ["passthrough=off", "io_uring=off"]),
    "none": ("shuntfs cache=none", ["cache=none"]),
    "always": ("shuntfs cache=always", ["cache=always"]),
    "devfuse": ("shuntfs io_uring=off", ["io_uring=off"]),
    "nopoll": ("shuntfs busy_poll=0", ["busy_poll=0"]),
    "pyfuse3": ("pyfuse3 passthroughfs.py", None),
    # libfuse's C++ reference server, built by benchmarks.reference, with its default options
    "c-reference": ("libfuse passthrough_hp", None),
    "c-reference-uring": ("libfuse passthrough_hp, io_uring", None),
}


def make_targets(names: list[str]) -> list[Target]:
    unknown = [n for n in names if n not in ALL_TARGETS]
    if unknown:
        raise BenchmarkError(f"unknown target {unknown[0]!r}; choose from {', '.join(ALL_TARGETS)}")
    return [Target(n, ALL_TARGETS[n][0], ALL_TARGETS[n][1]) for n in names]


def pyfuse3_example(cache: Path | None = None) -> Path:
    """pyfuse3's examples/passthroughfs.py from the sdist of the installed pyfuse3 (downloaded once into ``cache``,
    by default ``$XDG_CACHE_HOME/shuntfs-bench``; not vendored)."""
    if cache is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shuntfs-bench"
    try:
        from importlib.metadata import version

        import pyfuse3  # noqa: F401
    except ImportError as e:
        raise BenchmarkError(
            f"pyfuse3 is not importable ({e}); apt-get install -y libfuse3-dev pkg-config && pip install pyfuse3"
        ) from None
    wanted = version("pyfuse3")
    script = cache / f"pyfuse3-{wanted}-passthroughfs.py"
    if script.exists():
        return script
    cache.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         "-d", str(cache), f"pyfuse3=={wanted}"],
        capture_output=True,
        text=True,
    )
    sdists = sorted(cache.glob(f"pyfuse3-{wanted}.tar.gz"))
    if not sdists:
        raise BenchmarkError(f"could not download the pyfuse3 {wanted} sdist: {download.stderr.strip()[-300:]}")
    with tarfile.open(sdists[0]) as tar:
        member = tar.getmember(f"pyfuse3-{wanted}/examples/passthroughfs.py")
        extracted = tar.extractfile(member)
        assert extracted is not None
        script.write_bytes(extracted.read())
    return script


@contextmanager
def serving(
    targets: list[Target], source: Path, base: Path, peer: Path | None, size_mib: int,
    keep_page_reporting: bool = False,
) -> Iterator[str]:
    """Start every target on ``source`` (``peer``: pyfuse3's example script, if it is a target) with the machine's
    memory held steady (``steady.steady_memory``), and stop them all after. Yields what was done about page
    reporting."""
    # A data row's runs allocate about two data files of page cache per target (its own and fio's writes).
    touch = 2 * len(targets) * (size_mib << 20)
    started: list[Target] = []
    try:
        with steady_memory(not keep_page_reporting, touch) as reporting:
            for t in targets:
                t.start(source, base, peer)
                started.append(t)
            yield reporting
    finally:
        for t in started:
            t.stop()


def require_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise BenchmarkError(f"{tool} is not installed (apt-get install -y {tool})")
    if os.geteuid() != 0:
        raise BenchmarkError("run as root: passthrough needs CAP_SYS_ADMIN and the runs drop the dentry cache")
