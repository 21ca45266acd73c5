"""The control socket: how ``shuntfs-ctl`` reads a running daemon's statistics.

The socket lives in the abstract namespace under a name derived from the mount's device number, so ``shuntfs-ctl``
finds it from the mountpoint alone (through /proc/self/mountinfo, which sends no request to the filesystem) and
nothing is left on disk when the daemon dies. Only root and the user who mounted may ask (SO_PEERCRED).
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


def socket_name(dev: int) -> bytes:
    return f"\0shuntfs/{os.major(dev)}:{os.minor(dev)}".encode()


class ControlServer:
    def __init__(self, dev: int, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.bind(socket_name(dev))
        self._sock.listen(8)
        self._owner = os.getuid()
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
            with conn:
                try:
                    self._answer(conn)
                except Exception:
                    log.exception("control request failed")

    def _answer(self, conn: socket.socket) -> None:
        _pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        conn.settimeout(5)
        command = conn.recv(64).strip()
        if uid not in (0, self._owner):
            reply: dict[str, Any] = {"error": "permission denied: only root and the mounting user may ask"}
        elif command == b"stats":
            reply = self._stats()
        else:
            reply = {"error": f"unknown command {command.decode(errors='replace')!r}"}
        conn.sendall(json.dumps(reply).encode())
