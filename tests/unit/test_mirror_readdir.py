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


def _plus(ops: Mirror) -> dict[bytes, bool]:
    fh = ops.opendir(ROOT_INODE, ROOT)
    try:
        return {e.name: e.plus for e in ops.readdir(fh, 0, ROOT) if e.name not in (b".", b"..")}
    finally:
        ops.releasedir(fh)


def test_names_the_kernel_holds_fresh_are_listed_without_a_lookup(tmp_path, monkeypatch):
    """A READDIRPLUS gives the kernel nothing new for a name it looked up less than the timeouts ago: such names
    come with plus=False (no lookup, no lookup count). Unknown, forgotten and expired names are looked up."""
    for name in ("a", "b", "c"):
        (tmp_path / name).touch()
    clock = [1000.0]
    monkeypatch.setattr("shuntfs.mirror.time.monotonic", lambda: clock[0])
    ops = Mirror(str(tmp_path))  # cache=auto: 1 s
    try:
        assert _plus(ops) == {b"a": True, b"b": True, b"c": True}
        a = ops.lookup(ROOT_INODE, b"a", ROOT)
        b = ops.lookup(ROOT_INODE, b"b", ROOT)
        assert _plus(ops) == {b"a": False, b"b": False, b"c": True}
        ops.forget([(b.st_ino, 1)])  # the kernel dropped it: it needs the attributes again
        assert _plus(ops) == {b"a": False, b"b": True, b"c": True}
        clock[0] += 1.0  # the kernel's copy has expired
        assert _plus(ops) == {b"a": True, b"b": True, b"c": True}
        ops.lookup(ROOT_INODE, b"a", ROOT)
        assert _plus(ops)[b"a"] is False
        assert a.st_ino == ops.lookup(ROOT_INODE, b"a", ROOT).st_ino
    finally:
        ops.destroy()
    none = Mirror(str(tmp_path), cache="none")  # nothing is cached: every listing looks names up
    try:
        none.lookup(ROOT_INODE, b"a", ROOT)
        assert _plus(none) == {b"a": True, b"b": True, b"c": True}
    finally:
        none.destroy()
