"""The passthrough policy and the backing registry, with a fake /dev/fuse ioctl: no kernel."""

from __future__ import annotations

import errno

import pytest

from shuntfs import abi, backing
from shuntfs.backing import BackingRegistry


class FakeDevice:
    """Records BACKING_OPEN/CLOSE calls; hands out ids from 1, or fails with ``error``."""

    def __init__(self) -> None:
        self.opened: list[int] = []  # fds registered
        self.closed: list[int] = []  # ids closed
        self.error = 0

    def __call__(self, devfd, request, arg, mutate=False):
        if request == abi.FUSE_DEV_IOC_BACKING_OPEN:
            if self.error:
                raise OSError(self.error, "fake")
            self.opened.append(abi.BACKING_MAP.unpack(bytes(arg))[0])
            return len(self.opened)
        assert request == abi.FUSE_DEV_IOC_BACKING_CLOSE
        self.closed.append(abi.BACKING_ID.unpack(arg)[0])
        return 0


def registry() -> tuple[BackingRegistry, FakeDevice]:
    device = FakeDevice()
    reg = BackingRegistry(99, ioctl=device)
    reg.negotiated(offered=True, granted=True)
    return reg, device


def test_one_backing_id_per_inode_counted_by_opens():
    reg, device = registry()
    assert reg.acquire(5, fd=10) == 1
    assert reg.acquire(5, fd=11) == 1  # a second open shares the id: no second registration
    assert reg.acquire(6, fd=12) == 2
    assert device.opened == [10, 12]
    reg.release(5)
    assert device.closed == []
    reg.release(5)
    assert device.closed == [1]  # with the last open
    reg.close_all()
    assert device.closed == [1, 2]


def test_an_inode_open_in_cached_mode_stays_cached():
    """The kernel refuses mixed modes on one inode: a passthrough open of an inode already open cached is cached."""
    reg, device = registry()
    assert reg.acquire(5, fd=None) == 0
    assert reg.acquire(5, fd=10) == 0
    assert device.opened == [] and reg.fallback_opens == 0
    reg.release(5)
    reg.release(5)
    assert reg.acquire(5, fd=10) == 1  # all closed: the next open may choose again


def test_a_per_file_refusal_falls_back_for_that_file_only():
    reg, device = registry()
    device.error = errno.ELOOP  # stacked too deep
    assert reg.acquire(5, fd=10) == 0
    assert reg.enabled and reg.fallback_opens == 1
    device.error = 0
    assert reg.acquire(6, fd=11) == 1


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTTY, errno.EOPNOTSUPP])
def test_a_connection_wide_refusal_turns_passthrough_off(code):
    reg, device = registry()
    device.error = code
    assert reg.acquire(5, fd=10) == 0
    assert not reg.enabled and reg.disabled_reason and "BACKING_OPEN" in reg.disabled_reason
    device.error = 0
    assert reg.acquire(6, fd=11) == 0 and device.opened == []  # not asked again
    assert reg.fallback_opens == 2


def test_init_says_why_passthrough_is_off():
    reg = BackingRegistry(99, reason="the daemon lacks CAP_SYS_ADMIN (passthrough needs root)")
    reg.negotiated(offered=True, granted=False)
    assert not reg.enabled and "CAP_SYS_ADMIN" in reg.disabled_reason  # the policy's reason stands
    reg = BackingRegistry(99)
    reg.negotiated(offered=False, granted=False)
    assert reg.disabled_reason == "the kernel did not offer passthrough"
    reg.negotiated(offered=True, granted=True)
    assert reg.enabled and reg.disabled_reason is None


def test_policy(monkeypatch, tmp_path):
    assert backing.policy(False) == backing.Policy(False, 1, "passthrough was not requested")
    monkeypatch.setattr(backing, "has_cap_sys_admin", lambda: True)
    assert backing.policy("auto", str(tmp_path)) == backing.Policy(True, 1)
    assert backing.policy(True, max_stack_depth=2) == backing.Policy(True, 2)
    monkeypatch.setattr(backing, "fs_magic", lambda path: abi.FUSE_SUPER_MAGIC)  # a source on FUSE: stacked
    assert backing.policy("auto", str(tmp_path)).max_stack_depth == 2
    monkeypatch.setattr(backing, "has_cap_sys_admin", lambda: False)
    assert "CAP_SYS_ADMIN" in (backing.policy("auto").reason or "")


def test_fs_magic_reads_the_filesystem_type():
    assert backing.fs_magic("/proc") == 0x9FA0  # PROC_SUPER_MAGIC
    assert backing.fs_magic("/no/such/path") == 0
