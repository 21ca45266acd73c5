"""``shuntfs SOURCE MOUNTPOINT``: mirror a directory through FUSE with kernel passthrough.

The command is :class:`~shuntfs.Mirror` run by :func:`shuntfs.main`, as any filesystem written on the library can
be; this module adds only what mount(8) needs (``mount.fuse.shuntfs``).
"""

from __future__ import annotations

import sys

from .command import main as run_filesystem
from .command import parse
from .mirror import Mirror
from .options import Config, UsageError, split_options

__all__ = ["main", "mount_helper", "parse_args", "UsageError", "split_options"]

DESCRIPTION = "Mirror SOURCE at MOUNTPOINT through FUSE; file data is passed through to the kernel."


def parse_args(argv: list[str]) -> Config:
    """The ``shuntfs`` command line as a Config (its SOURCE and the mirror's options included)."""
    return parse(Mirror, argv, "shuntfs", DESCRIPTION)


def main(argv: list[str] | None = None) -> int:
    return run_filesystem(Mirror, argv, prog="shuntfs", description=DESCRIPTION)


def mount_helper(argv: list[str] | None = None) -> int:
    """``mount.fuse.shuntfs SOURCE MOUNTPOINT [-fnsv] [-o OPTIONS]``: what mount(8) runs for ``-t fuse.shuntfs`` and
    fstab lines of that type. -f (fake) does nothing; -n, -s and -v mean nothing here."""
    args = list(sys.argv[1:] if argv is None else argv)
    positional: list[str] = []
    options: list[str] = []
    fake = False
    while args:
        arg = args.pop(0)
        if arg == "-o":
            if not args:
                print("mount.fuse.shuntfs: option -o needs a value", file=sys.stderr)
                return 2
            options.append(args.pop(0))
        elif arg.startswith("-o"):
            options.append(arg[2:])
        elif arg.startswith("-") and len(arg) > 1:
            for flag in arg[1:]:
                if flag == "f":
                    fake = True
                elif flag not in "nsv":
                    print(f"mount.fuse.shuntfs: unknown flag -{flag}", file=sys.stderr)
                    return 2
        else:
            positional.append(arg)
    if len(positional) != 2:
        print("usage: mount.fuse.shuntfs SOURCE MOUNTPOINT [-fnsv] [-o OPTIONS]", file=sys.stderr)
        return 2
    if fake:
        return 0
    return main(positional + (["-o", ",".join(options)] if options else []))


if __name__ == "__main__":
    sys.exit(main())
