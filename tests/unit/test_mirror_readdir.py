"""The mirror's directory listing: read from the source's own directory stream at the kernel's cookies."""

from __future__ import annotations

import os

from shuntfs.mirror import Mirror
from shuntfs.operations import ROOT_INODE, RequestContext

ROOT = RequestContext(0, 0, os.getpid())


def _read(ops: Mirror, fh: int, offset: int, limit: int) -> list:
    out = []
    for entry in ops.readdir(fh, offset, ROOT):
        out.append(entry)
        if len(out) == limit:
            break
    return out


def test_listing_resumes_at_any_cookie_and_holds_no_copy(tmp_path):
    names = {f"entry-{i:04d}-" + "x" * (i % 200) for i in range(1500)}
    for name in names:
        (tmp_path / name).touch()
    ops = Mirror(str(tmp_path))
    try:
        fh = ops.opendir(ROOT_INODE, ROOT)
        seen, offset = [], 0
        while True:
            # the kernel takes what fits in its buffer and asks again from the last cookie it kept
            batch = _read(ops, fh, offset, 37)
            if not batch:
                break
            seen += batch
            offset = batch[-1].next_offset
        got = [e.name.decode() for e in seen]
        assert sorted(got) == sorted(names | {".", ".."})
        assert len(got) == len(set(got))
        dots = {e.name: e.ino for e in seen if e.name in (b".", b"..")}
        assert dots[b".."] == dots[b"."] == os.stat(tmp_path).st_ino  # the root's ".." stays inside
        # a cookie from the middle gives the same entries again; a rewind (cookie 0) sees names added since
        middle = len(seen) // 2
        again = _read(ops, fh, seen[middle - 1].next_offset, 10**6)
        assert [e.name for e in again] == [e.name for e in seen[middle:]]
        (tmp_path / "late").touch()
        assert {e.name for e in _read(ops, fh, 0, 10**6)} == {e.name for e in seen} | {b"late"}
        handle = ops._dirs[fh]
        assert not hasattr(handle, "__dict__") and len(handle.batch) <= 4096 // 24  # one batch, whatever the size
        ops.releasedir(fh)
    finally:
        ops.destroy()
