"""Set-id bit rules, without a kernel mount."""

from __future__ import annotations

import os
import stat

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


def test_clear_setid_bits_on_an_open_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    path.chmod(0o6755)
    fd = os.open(path, os.O_PATH)
    try:
        assert credentials.clear_setid_bits(fd, os.getgid(), os.getpid()) == stat.S_IFREG | 0o755
        assert credentials.clear_setid_bits(fd, os.getgid(), os.getpid()) is None  # nothing left to clear
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
