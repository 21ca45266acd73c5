"""The wheel and the sdist build, and carry what an installed shuntfs needs."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import shuntfs

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_and_sdist(tmp_path):
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    sdist = next(tmp_path.glob("*.tar.gz"))
    assert f"shuntfs-{shuntfs.__version__}" in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "shuntfs/py.typed" in names and "shuntfs/aio.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in ("shuntfs = shuntfs.cli:main", "shuntfs-ctl = shuntfs.control_client:main",
                   "mount.fuse.shuntfs = shuntfs.cli:mount_helper"):
        assert script in entry_points
    members = tarfile.open(sdist).getnames()
    top = f"shuntfs-{shuntfs.__version__}"
    for needed in ("CHANGELOG.md", "README.md", "examples/lazyfs.py", "examples/systemd/mnt-mirror.mount",
                   "tests/integration/test_conformance.py"):
        assert f"{top}/{needed}" in members, needed
