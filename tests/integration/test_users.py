"""Other users: mounting without root (fusermount3, fallback I/O), and a root allow_other mount seen by nobody."""

from __future__ import annotations

import errno
import os
import stat
import subprocess

import pytest

from shuntfs.mount import find_mount

from .conftest import MODES, _pid_alive, as_user, ctl_as, wait_for

NOBODY_UID = 65534


def as_nobody(code: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` as nobody; its stdout is the answer."""
    cmd = as_user("nobody", ["/usr/bin/python3", "-c", code])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def nobody_errno(code: str) -> int:
    """Run ``code`` as nobody; 0 if it succeeds, else the errno of the OSError it raised."""
    wrapped = f"import os, sys\ntry:\n    {code}\nexcept OSError as e:\n    print(e.errno); sys.exit(0)\nprint(0)"
    done = as_nobody(wrapped)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def user_tree(tree):
    src, mnt = tree
    os.chown(src, NOBODY_UID, NOBODY_UID)
    os.chown(mnt, NOBODY_UID, NOBODY_UID)
    return src, mnt


def test_non_root_mount_uses_fusermount_and_fallback(mount_factory, user_tree):
    src, mnt = user_tree
    m = mount_factory(user="nobody")
    entry = find_mount(str(mnt))
    assert entry is not None and entry.fstype == "fuse.shuntfs"
    done = as_nobody(
        f"p = {str(mnt / 'f')!r}\n"
        "open(p, 'wb').write(b'x' * 100000)\n"
        "assert open(p, 'rb').read() == b'x' * 100000\n"
        "import os; os.mkdir(p + '.d'); print(os.stat(p).st_uid)"
    )
    assert done.returncode == 0, done.stderr
    assert os.stat(src / "f").st_uid == NOBODY_UID
    stats = ctl_as("nobody", src.parent, mnt)
    assert stats.returncode == 0, stats.stderr
    root_view = m.stats()  # root may ask too
    assert root_view["passthrough"] is False
    assert "CAP_SYS_ADMIN" in root_view["passthrough_unavailable_reason"]
    assert root_view["requests"].get("READ", 0) > 0 and root_view["requests"].get("WRITE", 0) > 0
    # the mounting user unmounts with fusermount3; the daemon then exits
    subprocess.run(as_user("nobody", ["fusermount3", "-u", str(mnt)]), check=True)
    assert wait_for(lambda: not _pid_alive(m.pid), 10)
    assert find_mount(str(mnt)) is None


def test_other_users_cannot_query_stats(mount_factory, tree):
    src, mnt = tree
    mount_factory()
    done = ctl_as("nobody", src.parent, mnt)
    assert done.returncode == 1
    assert "permission denied" in done.stderr


@pytest.fixture(params=list(MODES))
def shared(request, mount_factory, tree):
    """A root daemon, mounted allow_other over a root-owned tree, as nobody sees it."""
    src, mnt = tree
    (src / "secret").write_bytes(b"root only")
    (src / "secret").chmod(0o600)
    (src / "public").write_bytes(b"for all")
    (src / "public").chmod(0o644)
    (src / "ro-for-others").write_bytes(b"read only")
    (src / "ro-for-others").chmod(0o644)
    (src / "open").mkdir(mode=0o777)
    (src / "open").chmod(0o1777)
    (src / "team").mkdir()
    os.chown(src / "team", 0, 4242)
    (src / "team").chmod(0o2777)
    (src / "script").write_text("#!/bin/sh\necho ran\n")
    (src / "script").chmod(0o700)
    opts = ["allow_other", *MODES[request.param]]
    m = mount_factory(*opts)
    m.mode = request.param
    assert m.stats()["passthrough"] is (request.param == "passthrough")
    return m


def test_nobody_cannot_read_or_write_what_the_source_forbids(shared):
    mnt = shared.mnt
    assert nobody_errno(f"open({str(mnt / 'secret')!r}, 'rb').read()") == errno.EACCES
    assert nobody_errno(f"open({str(mnt / 'ro-for-others')!r}, 'r+b')") == errno.EACCES
    assert nobody_errno(f"os.truncate({str(mnt / 'ro-for-others')!r}, 0)") == errno.EACCES
    assert nobody_errno(f"os.chmod({str(mnt / 'public')!r}, 0o666)") == errno.EPERM
    assert nobody_errno(f"os.unlink({str(mnt / 'public')!r})") == errno.EACCES
    done = subprocess.run(as_user("nobody", [str(mnt / "script")]), capture_output=True, text=True)
    assert done.returncode != 0 and "ran" not in done.stdout
    assert nobody_errno(f"assert open({str(mnt / 'public')!r}, 'rb').read() == b'for all'") == 0
    assert (shared.source / "ro-for-others").read_bytes() == b"read only"
    assert shared.mode == "fallback" or shared.requests().get("READ", 0) == 0


def test_files_created_by_nobody_belong_to_nobody(shared):
    src, mnt = shared.source, shared.mnt
    code = (
        f"os.umask(0o022); fd = os.open({str(mnt / 'open' / 'mine')!r}, os.O_CREAT | os.O_WRONLY, 0o666); "
        f"os.write(fd, b'hi'); os.close(fd); "
        f"os.mkdir({str(mnt / 'open' / 'dir')!r}, 0o777); "
        f"os.symlink('target', {str(mnt / 'open' / 'link')!r}); "
        f"os.mkfifo({str(mnt / 'open' / 'fifo')!r}, 0o666)"
    )
    assert nobody_errno(code) == 0
    for name, mode in (("mine", 0o644), ("dir", 0o755), ("fifo", 0o644)):
        st = os.lstat(src / "open" / name)
        assert (st.st_uid, st.st_gid) == (NOBODY_UID, NOBODY_UID), name
        assert stat.S_IMODE(st.st_mode) == mode, name
    assert os.lstat(src / "open" / "link").st_uid == NOBODY_UID
    # sticky directory: nobody may not remove root's file in it
    (src / "open" / "roots").write_text("x")
    assert nobody_errno(f"os.unlink({str(mnt / 'open' / 'roots')!r})") in (errno.EPERM, errno.EACCES)


def test_setgid_directory_is_honoured(shared):
    src, mnt = shared.source, shared.mnt
    assert nobody_errno(f"open({str(mnt / 'team' / 'f')!r}, 'w').close(); os.mkdir({str(mnt / 'team' / 'd')!r})") == 0
    assert os.stat(src / "team" / "f").st_gid == 4242
    st = os.stat(src / "team" / "d")
    assert st.st_gid == 4242 and st.st_mode & stat.S_ISGID


def test_acl_denial_in_the_source_is_enforced(shared):
    """A POSIX ACL that denies nobody, on a file whose mode bits would allow it: the open must fail."""
    src, mnt = shared.source, shared.mnt
    (src / "acl").write_bytes(b"denied by acl")
    (src / "acl").chmod(0o644)
    done = subprocess.run(["setfacl", "-m", "u:nobody:---", str(src / "acl")], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"setfacl failed: {done.stderr!r}")
    assert nobody_errno(f"open({str(mnt / 'acl')!r}, 'rb').read()") == errno.EACCES
