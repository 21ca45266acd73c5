"""Set-id bit rules and CAP_FSETID handling, without a kernel mount."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from shuntfs import credentials


def _st(mode: int, gid: int = 0) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, 0, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "file_gid", "after"),
    [
        (0o104755, 0, 0o100755),  # set-uid always goes
        (0o102755, 0, 0o100755),  # set-gid on a group-executable file goes
        (0o102745, 0, 0o102745),  # set-gid without group execute stays for a member of the group
        (0o102745, 4242, 0o100745),  # ... and goes for anyone else
        (0o106777, 0, 0o100777),
        (0o100644, 0, 0o100644),
        (0o044755, 0, 0o044755),  # directories keep theirs
    ],
)
def test_mode_after_an_unprivileged_write(mode, file_gid, after):
    # caller: fsgid 0, and thread 0 does not exist, so its groups are just [0]
    assert credentials.mode_after_write(_st(mode, file_gid), 0, 0) == after


def test_without_fsetid_drops_it_for_this_thread_only():
    had = credentials.has_fsetid()
    dropped, checked = threading.Event(), threading.Event()
    other: list[bool] = []

    def look() -> None:  # started before the drop: a new thread would inherit its creator's capabilities
        dropped.wait(5)
        other.append(credentials.has_fsetid())
        checked.set()

    t = threading.Thread(target=look)
    t.start()
    with credentials.without_fsetid():
        assert credentials.has_fsetid() is False
        dropped.set()
        checked.wait(5)
    t.join()
    assert other == [had]  # capabilities are per thread: the others keep theirs
    assert credentials.has_fsetid() == had


def test_clear_setid_bits_on_an_open_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    path.chmod(0o6755)
    fd = os.open(path, os.O_RDONLY)
    try:
        credentials.clear_setid_bits(fd, os.getgid(), os.getpid())
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
