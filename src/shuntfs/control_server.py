"""The control socket: how ``shuntfs-ctl`` reads a running daemon's statistics.

The socket lives in the abstract namespace (nothing is left on disk when the daemon dies) under a random name that
the daemon binds before it tells anyone: no other process can have bound it first, and no old daemon of a reused
device number can hold it. ``shuntfs-ctl`` learns the name from the mount itself, as the value of the extended
attribute :data:`CONTROL_XATTR` of its root, which the kernel asks of this mount's daemon and no other; it then
checks that whoever answers the socket runs as the user who mounted (or root). The daemon answers only root and
the mounting user (SO_PEERCRED), turns anyone else away at once, and serves each allowed connection on its own
short-lived thread, so no user can hold the socket up.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from typing import Any, Callable

log = logging.getLogger("shuntfs.control")

_UCRED = struct.Struct("iII")  # pid uid gid
#: The root's extended attribute whose value is the control socket's abstract name.
CONTROL_XATTR = b"user.shuntfs.control"
#: connections served at once; more are told to come back
_CONCURRENT = 4
_TIMEOUT = 5.0


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected AF_UNIX socket."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid


class ControlServer:
    """Answer ``stats`` with ``stats()`` for root and ``owner`` (default: this process's uid)."""

    def __init__(self, stats: Callable[[], dict[str, Any]], owner: int | None = None) -> None:
        self._stats = stats
        self._owner = os.getuid() if owner is None else owner
        #: the socket's abstract name, without its leading NUL
        self.name = f"shuntfs/{os.urandom(16).hex()}".encode()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.bind(b"\0" + self.name)
        self._sock.listen(64)
        self._slots = threading.BoundedSemaphore(_CONCURRENT)
        self._thread = threading.Thread(target=self._serve, name="shuntfs-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            try:
                _pid, uid, _gid = peer_credentials(conn)
            except OSError:
                conn.close()
                continue
            if uid not in (0, self._owner):
                _refuse(conn, "permission denied: only root and the mounting user may ask")
            elif not self._slots.acquire(blocking=False):
                _refuse(conn, "busy: try again")
            else:
                threading.Thread(target=self._answer, args=(conn,), name="shuntfs-control-conn", daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(_TIMEOUT)
                command = conn.recv(64).strip()
                if command == b"stats":
                    reply: dict[str, Any] = self._stats()
                else:
                    reply = {"error": f"unknown command {command.decode(errors='replace')!r}"}
                conn.sendall(json.dumps(reply).encode())
        except OSError as e:
            log.debug("control connection: %s", e)
        except Exception:
            log.exception("control request failed")
        finally:
            self._slots.release()


def _refuse(conn: socket.socket, why: str) -> None:
    """Say why and hang up, without waiting on the peer."""
    try:
        conn.setblocking(False)
        conn.send(json.dumps({"error": why}).encode())
    except OSError:
        pass
    conn.close()
