"""``shuntfs-ctl``: ask a running shuntfs daemon about its mount."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import threading
from typing import Any

from .control_server import CONTROL_XATTR, peer_credentials
from .mount import find_mount

#: The most a daemon's answer may hold.
MAX_ANSWER = 64 << 20


class CtlError(Exception):
    pass


def _ask_as(path: str, uid: int, gid: int) -> bytes:
    """Ask the mount for the control socket's name as ``uid``/``gid``: a mount without allow_other answers only
    its own user, root included, so root asks from a child that takes that user's ids."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.write(write_end, os.getxattr(path, CONTROL_XATTR))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        name = os.read(read_end, 4096)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if not name:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    return name


def _control_name(path: str, timeout: float, owner: tuple[int, int] | None = None) -> bytes:
    """The control socket's name, as the daemon of the mount at ``path`` tells it (the kernel routes the question to
    that daemon only). Asked on a thread, so a daemon that does not answer cannot hang us. ``owner``: the mount's
    (user_id, group_id), for root to ask as that user where the mount lets no one else in."""
    result: list[Any] = []

    def ask() -> None:
        try:
            result.append(os.getxattr(path, CONTROL_XATTR))
        except PermissionError as e:
            if os.geteuid() != 0 or owner is None or owner[0] == 0:
                result.append(e)
                return
            try:
                result.append(_ask_as(path, *owner))
            except OSError as again:
                result.append(again)
        except OSError as e:
            result.append(e)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    asker.join(timeout)
    if not result:
        raise CtlError(f"{path}: the filesystem does not answer")
    if isinstance(result[0], OSError):
        if result[0].errno == errno.EACCES:
            raise CtlError(f"{path}: permission denied: only root and the mounting user may ask")
        raise CtlError(f"{path}: no shuntfs daemon answers for this mount ({result[0].strerror})")
    return result[0]


def query(mountpoint: str, command: str = "stats", timeout: float = 10.0) -> dict[str, Any]:
    """Send ``command`` to the daemon serving ``mountpoint``; return its JSON answer."""
    path = os.path.realpath(mountpoint)
    entry = find_mount(path)
    if entry is None:
        raise CtlError(f"{mountpoint}: not a mountpoint")
    if not entry.fstype.startswith("fuse"):
        raise CtlError(f"{mountpoint}: not a FUSE mount ({entry.fstype})")
    owner = entry.option("user_id")
    group = entry.option("group_id")
    ids = (int(owner), int(group)) if owner and group and owner.isdigit() and group.isdigit() else None
    name = _control_name(path, timeout, ids)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(b"\0" + name)
        except (ConnectionRefusedError, FileNotFoundError):
            raise CtlError(f"{mountpoint}: the daemon's control socket is gone") from None
        _pid, uid, _gid = peer_credentials(sock)
        if uid != 0 and str(uid) != owner:
            raise CtlError(f"{mountpoint}: the control socket is held by uid {uid}, not by the mount's daemon")
        sock.sendall(command.encode() + b"\n")
        chunks, size = [], 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_ANSWER:
                raise CtlError(f"{mountpoint}: the answer exceeds {MAX_ANSWER >> 20} MiB")
            chunks.append(chunk)
    finally:
        sock.close()
    answer = json.loads(b"".join(chunks))
    if not isinstance(answer, dict):
        raise CtlError(f"{mountpoint}: malformed answer")
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
    try:
        json.dump(answer, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader (head, say) has had enough: quietly, and without Python's complaint at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
