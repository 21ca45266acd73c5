"""The documentation builds without a single warning, and the reference documents the public API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_build_without_warnings(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "api.html").read_text()
    for name in ("shuntfs.Operations.lookup", "shuntfs.FileInfo", "shuntfs.Session.serve_async",
                 "shuntfs.Session.invalidate_inode", "shuntfs.EntryAttributes"):
        assert name in api, name
