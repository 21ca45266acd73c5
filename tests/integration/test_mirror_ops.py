"""Each POSIX operation through the mount, checked against the same thing on the source, in both I/O modes."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import stat
import subprocess

import pytest

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def renameat2(old: str, new: str, flags: int) -> None:
    if libc.renameat2(-100, old.encode(), -100, new.encode(), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def same_stat(a: os.stat_result, b: os.stat_result) -> None:
    for field in ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns"):
        assert getattr(a, field) == getattr(b, field), field


def test_read_write_append_truncate(mounted):
    src, mnt = mounted.source, mounted.mnt
    (src / "f").write_bytes(b"0123456789")
    assert (mnt / "f").read_bytes() == b"0123456789"
    with open(mnt / "f", "r+b") as f:
        f.seek(4)
        f.write(b"XY")
    with open(mnt / "f", "ab") as f:
        f.write(b"tail")
    assert (src / "f").read_bytes() == b"0123XY6789tail"
    os.truncate(mnt / "f", 3)
    assert (src / "f").read_bytes() == b"012"
    with open(mnt / "f", "r+b") as f:
        f.truncate(1)
        assert os.fstat(f.fileno()).st_size == 1
    with open(mnt / "f", "wb") as f:  # O_TRUNC
        f.write(b"new")
    assert (src / "f").read_bytes() == b"new"
    same_stat(os.stat(mnt / "f"), os.stat(src / "f"))


def test_large_file_roundtrip(mounted):
    data = os.urandom(3 * 1024 * 1024 + 17)
    (mounted.mnt / "big").write_bytes(data)
    assert (mounted.source / "big").read_bytes() == data
    assert (mounted.mnt / "big").read_bytes() == data


def test_stat_matches_source(mounted):
    src, mnt = mounted.source, mounted.mnt
    (src / "f").write_bytes(b"abc")
    (src / "d").mkdir()
    os.symlink("f", src / "l")
    for name in ("f", "d", "l"):
        same_stat(os.lstat(mnt / name), os.lstat(src / name))


def test_readdir_matches_source(mounted):
    src, mnt = mounted.source, mounted.mnt
    names = {f"file{i:04d}" for i in range(1500)}
    for n in names:
        (src / n).touch()
    (src / "dir").mkdir()
    assert set(os.listdir(mnt)) == names | {"dir"}
    by_name = {e.name: e for e in os.scandir(mnt)}
    for e in os.scandir(src):
        assert by_name[e.name].inode() == e.inode()
        assert by_name[e.name].is_dir() == e.is_dir()
    out = subprocess.run(["ls", "-a", str(mnt / "dir")], capture_output=True, text=True, check=True).stdout.split()
    assert out == [".", ".."]


def test_mkdir_rmdir_unlink(mounted):
    src, mnt = mounted.source, mounted.mnt
    os.mkdir(mnt / "d", 0o750)
    assert stat.S_IMODE(os.stat(src / "d").st_mode) == 0o750 & ~current_umask()
    (mnt / "d" / "f").write_text("x")
    with pytest.raises(OSError) as e:
        os.rmdir(mnt / "d")
    assert e.value.errno == errno.ENOTEMPTY
    os.unlink(mnt / "d" / "f")
    os.rmdir(mnt / "d")
    assert not (src / "d").exists()
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "d")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_create_modes_and_exclusive(mounted):
    src, mnt = mounted.source, mounted.mnt
    old = os.umask(0o027)
    try:
        fd = os.open(mnt / "c", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(src / "c").st_mode) == 0o640
    with pytest.raises(FileExistsError):
        os.open(mnt / "c", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)


def test_symlink_readlink(mounted):
    src, mnt = mounted.source, mounted.mnt
    os.symlink("../outside/target", mnt / "l")
    assert os.readlink(src / "l") == "../outside/target"
    assert os.readlink(mnt / "l") == "../outside/target"
    assert os.path.islink(mnt / "l")


def test_hardlink_is_one_inode(mounted):
    src, mnt = mounted.source, mounted.mnt
    (mnt / "a").write_text("shared")
    os.link(mnt / "a", mnt / "b")
    sa, sb = os.stat(mnt / "a"), os.stat(mnt / "b")
    assert sa.st_ino == sb.st_ino == os.stat(src / "a").st_ino
    assert sa.st_nlink == 2
    (mnt / "b").write_text("changed")
    assert (mnt / "a").read_text() == "changed"


def test_rename_and_rename2(mounted):
    src, mnt = mounted.source, mounted.mnt
    (mnt / "a").write_text("A")
    (mnt / "b").write_text("B")
    with pytest.raises(FileExistsError):
        renameat2(str(mnt / "a"), str(mnt / "b"), RENAME_NOREPLACE)
    renameat2(str(mnt / "a"), str(mnt / "b"), RENAME_EXCHANGE)
    assert (src / "a").read_text() == "B" and (src / "b").read_text() == "A"
    os.mkdir(mnt / "sub")
    os.rename(mnt / "a", mnt / "sub" / "moved")
    assert (src / "sub" / "moved").read_text() == "B"
    assert not (mnt / "a").exists()


def test_chmod_chown_utime(mounted):
    src, mnt = mounted.source, mounted.mnt
    (mnt / "f").write_text("x")
    os.chmod(mnt / "f", 0o4711)
    assert stat.S_IMODE(os.stat(src / "f").st_mode) == 0o4711
    os.chown(mnt / "f", 1234, 5678)
    st = os.stat(src / "f")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(mnt / "f", ns=(1_000_000_123, 2_000_000_456))
    st = os.stat(src / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    os.utime(mnt / "f")  # UTIME_NOW
    assert os.stat(src / "f").st_mtime_ns > 2_000_000_456
    os.symlink("f", mnt / "l")
    os.chown(mnt / "l", 42, 43, follow_symlinks=False)
    assert os.lstat(src / "l").st_uid == 42
    os.utime(mnt / "l", ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
    assert os.lstat(src / "l").st_mtime_ns == 6_000_000_000
    same_stat(os.lstat(mnt / "l"), os.lstat(src / "l"))


def test_xattrs(mounted):
    src, mnt = mounted.source, mounted.mnt
    (mnt / "f").write_text("x")
    os.setxattr(mnt / "f", "user.color", b"blue")
    assert os.getxattr(src / "f", "user.color") == b"blue"
    assert os.getxattr(mnt / "f", "user.color") == b"blue"
    assert "user.color" in os.listxattr(mnt / "f")
    with pytest.raises(FileExistsError):
        os.setxattr(mnt / "f", "user.color", b"red", os.XATTR_CREATE)
    os.removexattr(mnt / "f", "user.color")
    with pytest.raises(OSError) as e:
        os.getxattr(mnt / "f", "user.color")
    assert e.value.errno == errno.ENODATA


def test_mknod_fifo(mounted):
    os.mkfifo(mounted.mnt / "p", 0o600)
    assert stat.S_ISFIFO(os.stat(mounted.source / "p").st_mode)
    assert stat.S_ISFIFO(os.stat(mounted.mnt / "p").st_mode)


def test_fallocate_seek_hole_and_data(mounted):
    path = mounted.mnt / "sparse"
    with open(path, "wb") as f:
        f.seek(1 << 20)
        f.write(b"data")
    fd = os.open(path, os.O_RDWR)
    ref = os.open(mounted.source / "sparse", os.O_RDONLY)
    try:
        def same_seek(offset: int, whence: int) -> int:
            got = os.lseek(fd, offset, whence)
            assert got == os.lseek(ref, offset, whence)
            return got

        assert same_seek(0, os.SEEK_DATA) > 0
        assert same_seek(0, os.SEEK_HOLE) == 0
        os.posix_fallocate(fd, 0, 8192)
        assert os.stat(mounted.source / "sparse").st_blocks >= 16
        same_seek(0, os.SEEK_DATA)
        os.pwrite(fd, b"z" * 8192, 0)
        assert same_seek(0, os.SEEK_DATA) == 0
        if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")
        assert os.pread(fd, 4, 0) == b"\0\0\0\0"
        assert os.pread(ref, 4, 0) == b"\0\0\0\0"
        assert os.fstat(fd).st_size == (1 << 20) + 4
        # negative and past-the-end offsets: ENXIO as natively (the kernel's offset is signed)
        for offset in (-1, -(1 << 40), (1 << 20) + 4):
            for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                outcomes = []
                for handle in (fd, ref):
                    try:
                        outcomes.append(os.lseek(handle, offset, whence))
                    except OSError as e:
                        outcomes.append(errno.errorcode[e.errno])
                assert outcomes[0] == outcomes[1] == "ENXIO", (offset, whence, outcomes)
    finally:
        os.close(fd)
        os.close(ref)


def test_copy_file_range(mounted):
    src, mnt = mounted.source, mounted.mnt
    payload = os.urandom(100_000)
    (mnt / "a").write_bytes(payload)
    with open(mnt / "a", "rb") as fa, open(mnt / "b", "wb") as fb:
        copied = 0
        while copied < len(payload):
            n = os.copy_file_range(fa.fileno(), fb.fileno(), len(payload) - copied)
            assert n > 0
            copied += n
    assert (src / "b").read_bytes() == payload


def test_mmap_read_write(mounted):
    src, mnt = mounted.source, mounted.mnt
    (src / "m").write_bytes(b"a" * 8192)
    with open(mnt / "m", "r+b") as f, mmap.mmap(f.fileno(), 8192) as m:
        assert m[:4] == b"aaaa"
        m[100:104] = b"MMAP"
        m.flush()
    assert (src / "m").read_bytes()[100:104] == b"MMAP"


def test_tmpfile_and_link(mounted):
    src, mnt = mounted.source, mounted.mnt
    fd = os.open(mnt, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        os.write(fd, b"anonymous")
        # linkat(AT_EMPTY_PATH) sends LINK. (The /proc/self/fd route gets EXDEV from the kernel itself on FUSE
        # tmpfiles in 6.18, before any request reaches the daemon.)
        if libc.linkat(fd, b"", -100, os.fsencode(mnt / "named"), 0x1000) != 0:
            raise OSError(ctypes.get_errno(), "linkat")
    finally:
        os.close(fd)
    assert (src / "named").read_bytes() == b"anonymous"


def test_fsync_and_statfs(mounted):
    with open(mounted.mnt / "f", "wb") as f:
        f.write(b"x")
        os.fsync(f.fileno())
        os.fdatasync(f.fileno())
    a, b = os.statvfs(mounted.mnt), os.statvfs(mounted.source)
    assert (a.f_bsize, a.f_blocks, a.f_namemax) == (b.f_bsize, b.f_blocks, b.f_namemax)


def test_birth_time_via_statx(mounted):
    (mounted.source / "f").touch()
    out = subprocess.run(["stat", "-c", "%W", str(mounted.mnt / "f")], capture_output=True, text=True, check=True)
    ref = subprocess.run(["stat", "-c", "%W", str(mounted.source / "f")], capture_output=True, text=True, check=True)
    assert out.stdout == ref.stdout
    assert "STATX" in mounted.requests()


def test_names_roundtrip(mounted):
    names = [b"new\nline", b"\xff\xfe-not-utf8", b"x" * 255, b" spaced name "]
    for name in names:
        with open(os.path.join(os.fsencode(mounted.mnt), name), "wb") as f:
            f.write(name)
    assert set(os.listdir(os.fsencode(mounted.source))) == set(names)
    for name in names:
        with open(os.path.join(os.fsencode(mounted.mnt), name), "rb") as f:
            assert f.read() == name
    with pytest.raises(OSError) as e:
        open(os.path.join(os.fsencode(mounted.mnt), b"y" * 256), "wb")
    assert e.value.errno == errno.ENAMETOOLONG


def test_changes_behind_the_mount_are_seen(mounted):
    src, mnt = mounted.source, mounted.mnt
    (src / "late").write_text("v1")
    assert (mnt / "late").read_text() == "v1"
    os.unlink(src / "late")
    (src / "late").write_text("v2-longer")
    # cache=auto keeps entries for 1 s: wait it out, then the new file must show
    import time

    time.sleep(1.2)
    assert (mnt / "late").read_text() == "v2-longer"


@pytest.mark.parametrize("mode", [[], ["passthrough=off"]])
def test_a_reused_inode_number_behind_the_mount_is_a_new_file(mount_factory, mode):
    """Inodes kept as handles (past the fd budget) do not keep a deleted file alive, and ext4 gives its number to
    the next file: that file must get a node id of its own, not the deleted one's (ESTALE, or I/O into nothing)."""
    m = mount_factory("inode_fds=1", *mode)
    src, mnt = m.source, m.mnt
    reused = 0
    for i in range(10):
        (src / f"old{i}").write_text("old")
        os.stat(mnt / f"old{i}")  # the kernel now knows its node id
        old_ino = os.stat(src / f"old{i}").st_ino
        os.unlink(src / f"old{i}")
        (src / f"new{i}").write_text(f"new content {i}")
        reused += os.stat(src / f"new{i}").st_ino == old_ino
        assert (mnt / f"new{i}").read_text() == f"new content {i}"
        (mnt / f"new{i}").write_text(f"written through {i}")
        assert (src / f"new{i}").read_text() == f"written through {i}"
    assert reused, "the source never reused an inode number: this test needs ext4 (or the like) under /tmp"


@pytest.mark.parametrize("mode", [[], ["passthrough=off"]])
def test_cache_none_sees_changes_at_once(mount_factory, mode):
    m = mount_factory("cache=none", *mode)
    src, mnt = m.source, m.mnt
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "x")
    (src / "x").write_text("one")
    assert (mnt / "x").read_text() == "one"  # no negative entry was cached
    (src / "x").write_text("two, longer")
    assert os.stat(mnt / "x").st_size == len("two, longer")
    assert (mnt / "x").read_text() == "two, longer"
    os.unlink(src / "x")
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "x")


def test_default_acls_and_acl_modes(mounted, tmp_path):
    """A parent's default ACL decides a new file's mode, not the umask; setting an access ACL shows its mode at
    once. Compared with the same commands on a native directory."""
    native = tmp_path / "native"
    native.mkdir()
    results = []
    for root in (native, mounted.mnt):
        (root / "d").mkdir()
        subprocess.run(["setfacl", "-d", "-m", "u::rwx,g::rwx,o::rwx", str(root / "d")], check=True)
        old = os.umask(0o077)
        try:
            (root / "d" / "f").touch()
            os.mkdir(root / "d" / "sub")
            os.close(os.open(root / "plain", os.O_CREAT | os.O_WRONLY, 0o666))
        finally:
            os.umask(old)
        os.stat(root / "plain")  # cached
        subprocess.run(["setfacl", "-m", "u::rwx,g::rwx,o::rwx", str(root / "plain")], check=True)
        modes = [stat.filemode(os.stat(root / name).st_mode) for name in ("d/f", "d/sub")]
        # stat(1) asks for the mode alone, which the kernel answers from its cache unless told the mode changed
        mode_only = subprocess.run(["stat", "-c", "%A", str(root / "plain")], capture_output=True, text=True)
        results.append(modes + [mode_only.stdout.strip()])
    assert results[1] == results[0] == ["-rw-rw-rw-", "drwxrwxrwx", "-rwxrwxrwx"]


def test_the_kernel_keeps_listings_and_drops_them_when_the_directory_changes(mount_factory):
    """cache=auto: a directory listed again within the timeouts costs the daemon an OPENDIR and no READDIR or lookup;
    a name made through the mount shows at once, one made behind it once the kernel refetches the directory's
    attributes (1 s) and sees its mtime moved. cache=none lists through the daemon every time."""
    from .conftest import wait_for

    m = mount_factory()
    src, mnt = m.source, m.mnt
    (src / "d").mkdir()
    for i in range(300):
        (src / "d" / f"n{i:03d}").touch()

    def listing() -> set[str]:
        names = set()
        for entry in os.scandir(mnt / "d"):
            entry.stat(follow_symlinks=False)
            names.add(entry.name)
        return names

    assert len(listing()) == 300
    before = m.requests()
    assert len(listing()) == 300
    after = m.requests()
    asked = {op: n - before.get(op, 0) for op, n in after.items() if n != before.get(op, 0)}
    assert asked["OPENDIR"] == 1 and not {"READDIR", "READDIRPLUS", "LOOKUP"} & set(asked), asked
    (mnt / "d" / "through").touch()
    assert "through" in listing()
    (src / "d" / "behind").touch()
    assert wait_for(lambda: "behind" in listing(), 3)
    (src / "d" / "behind").unlink()
    assert wait_for(lambda: "behind" not in listing(), 3)
    m.stop()

    none = mount_factory("cache=none")
    listing()
    before = none.requests()
    listing()
    assert none.requests().get("READDIRPLUS", 0) > before.get("READDIRPLUS", 0)
    (src / "d" / "behind").touch()
    assert "behind" in listing()
