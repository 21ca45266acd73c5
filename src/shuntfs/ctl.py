"""``shuntfs-ctl``: ask a running shuntfs daemon about its mount."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

from .control import socket_name
from .mount import find_mount


class CtlError(Exception):
    pass


def query(mountpoint: str, command: str = "stats", timeout: float = 10.0) -> dict[str, Any]:
    """Send ``command`` to the daemon serving ``mountpoint``; return its JSON answer."""
    path = os.path.realpath(mountpoint)
    entry = find_mount(path)
    if entry is None:
        raise CtlError(f"{mountpoint}: not a mountpoint")
    if not entry.fstype.startswith("fuse"):
        raise CtlError(f"{mountpoint}: not a FUSE mount ({entry.fstype})")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_name(entry.dev))
        except (ConnectionRefusedError, FileNotFoundError):
            raise CtlError(f"{mountpoint}: no shuntfs daemon answers for this mount") from None
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    answer = json.loads(b"".join(chunks))
    if "error" in answer:
        raise CtlError(f"{mountpoint}: {answer['error']}")
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shuntfs-ctl", description="Inspect a running shuntfs mount.")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="print the daemon's statistics as JSON")
    stats.add_argument("mountpoint")
    args = parser.parse_args(argv)
    try:
        answer = query(args.mountpoint, args.command)
    except (CtlError, OSError, ValueError) as e:
        print(f"shuntfs-ctl: {e}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
