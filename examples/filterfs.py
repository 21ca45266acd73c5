#!/usr/bin/env python3
"""A read-only, filtered view of a directory: names matching the patterns are hidden, every change is refused, and
the files it shows are still passed through to the kernel (their reads never reach this process).

    python3 examples/filterfs.py SOURCE MOUNTPOINT [PATTERN ...]     (default patterns: .git *.key *.pem)

Built on the mirror filesystem shuntfs itself uses; runs in the foreground, and prints the requests it served as JSON
when unmounted.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import sys

from shuntfs import FUSEError, Session
from shuntfs.mirror import Mirror

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


def _read_only(*_args, **_kwargs):
    raise FUSEError(errno.EROFS)


class FilteredView(Mirror):
    def __init__(self, source: str, patterns: list[str]) -> None:
        super().__init__(source)
        self.patterns = [os.fsencode(p) for p in patterns]

    def hidden(self, name: bytes) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def lookup(self, parent, name, ctx):
        if self.hidden(name):
            raise FUSEError(errno.ENOENT)
        return super().lookup(parent, name, ctx)

    def readdir(self, fh, offset, ctx):
        # Offsets are the mirror's own positions, so skipping entries keeps them valid.
        return (entry for entry in super().readdir(fh, offset, ctx) if not self.hidden(entry.name))

    def open(self, inode, flags, ctx):
        if flags & WRITE_FLAGS:
            raise FUSEError(errno.EROFS)
        return super().open(inode, flags, ctx)  # a FileInfo with passthrough_fd: the kernel serves the data

    setattr = mknod = mkdir = symlink = unlink = rmdir = rename = link = create = tmpfile = _read_only
    setxattr = removexattr = write = fallocate = copy_file_range = _read_only


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    source, mountpoint, patterns = sys.argv[1], sys.argv[2], sys.argv[3:] or [".git", "*.key", "*.pem"]
    session = Session(FilteredView(source, patterns), mountpoint)  # passthrough where this daemon may use it
    session.serve()
    json.dump({"passthrough": session.passthrough, "requests": session.request_counts()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
