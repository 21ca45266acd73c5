"""The C reference server: libfuse's ``example/passthrough_hp`` (C++, low-level API, passthrough, optional
FUSE-over-io_uring), built once from Debian's pristine libfuse source into the benchmark cache. Not vendored: the
source is fetched, checked against its SHA-256 and built where the benchmark runs.

Needs ``apt-get install -y meson ninja-build g++ pkg-config liburing-dev libnuma-dev``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from .targets import BenchmarkError

VERSION = "3.18.3"
URL = f"http://deb.debian.org/debian/pool/main/f/fuse3/fuse3_{VERSION}.orig.tar.gz"
SHA256 = "bcd19582c5e30f7fe45dd86a5540e998590aa01903afc7ebcbeea6c8ac5421ee"
TOOLS = ("meson", "ninja", "g++", "pkg-config")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shuntfs-bench"


def passthrough_hp(cache: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The built server and the environment it runs with (its libfuse beside it)."""
    cache = cache or cache_dir()
    tree = cache / f"fuse-{VERSION}"
    binary = tree / "build" / "example" / "passthrough_hp"
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / "build" / "lib"))
    if binary.exists():
        return binary, env
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise BenchmarkError(f"building libfuse's passthrough_hp needs {', '.join(missing)} (apt-get install -y "
                             "meson ninja-build g++ pkg-config liburing-dev libnuma-dev)")
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"fuse3_{VERSION}.orig.tar.gz"
    if not archive.exists():
        try:
            with urllib.request.urlopen(URL, timeout=60) as response:
                data = response.read()
        except OSError as e:
            raise BenchmarkError(f"could not download {URL}: {e}") from None
        if hashlib.sha256(data).hexdigest() != SHA256:
            raise BenchmarkError(f"{URL} does not have the expected SHA-256")
        archive.write_bytes(data)
    shutil.rmtree(tree, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    for step in (["meson", "setup", "build", "-Dexamples=true", "-Dutils=false", "-Dtests=false"],
                 ["ninja", "-C", "build", "example/passthrough_hp"]):
        done = subprocess.run(step, cwd=tree, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise BenchmarkError(f"building passthrough_hp failed at {step[0]}: {lines[-1] if lines else '?'}")
    return binary, env
