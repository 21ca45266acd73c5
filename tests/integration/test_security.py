"""An unprivileged user against a root daemon mounted ``allow_other``: every permission is the source's.

Each scenario is set up the same way on a native directory and on the mirror's source, then tried as ``nobody`` on
both; the errnos must agree. Root walks and reads the mirror first, so the kernel holds cached entries, attributes
and ACLs that a permission check on cached state could wrongly pass. Every scenario runs with the default options,
with userspace I/O and over /dev/fuse.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..harness import serving
from .conftest import as_user, wait_for

NOBODY = 65534
#: default options (passthrough over io_uring), userspace I/O, and /dev/fuse without io_uring
OPTION_SETS = {"default": [], "fallback": ["passthrough=off"], "devfuse": ["io_uring=off"]}


def as_nobody(attempts: dict[str, str]) -> dict[str, int]:
    """Run each snippet of Python as nobody; the errno of the OSError it raised, or 0."""
    script = (
        "import errno, json, os, sys\n"
        "out = {}\n"
        f"for label, code in {attempts!r}.items():\n"
        "    try:\n"
        "        exec(code)\n"
        "        out[label] = 0\n"
        "    except OSError as e:\n"
        "        out[label] = e.errno\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(as_user("nobody", ["/usr/bin/python3", "-c", script]), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def warm(root: Path) -> None:
    """As root, look up, stat and read everything: the kernel caches entries, attributes and ACLs."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            os.lstat(path)
            os.listxattr(path, follow_symlinks=False)
            if name in filenames and os.path.isfile(path):
                with open(path, "rb") as f:
                    f.read()


def setfacl(*args: str) -> None:
    subprocess.run(["setfacl", *args], check=True, capture_output=True)


class Pair:
    """A native directory and a mirror of another one, both as root set them up."""

    def __init__(self, native: Path, source: Path, mnt: Path, mount) -> None:
        self.native, self.source, self.mnt, self.mount = native, source, mnt, mount

    def setup(self, fn) -> None:
        for root in (self.native, self.source):
            fn(root)

    def compare(self, attempts: dict[str, str]) -> dict[str, int]:
        """Run the attempts (``{r}`` stands for the tree's root) as nobody on both trees; they must agree."""
        native = as_nobody({k: v.replace("{r}", str(self.native)) for k, v in attempts.items()})
        mirror = as_nobody({k: v.replace("{r}", str(self.mnt)) for k, v in attempts.items()})
        assert mirror == native, f"native {native} != mirror {mirror}"
        return native


@pytest.fixture(params=list(OPTION_SETS))
def pair(request, mount_factory, workdir):
    native, source, mnt = workdir / "native", workdir / "src", workdir / "mnt"
    for d in (native, source, mnt):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)
    m = mount_factory("allow_other", *OPTION_SETS[request.param], source=source, mountpoint=mnt)
    return Pair(native, source, mnt, m)


def test_named_user_and_group_acl_entries_decide(pair):
    def setup(root: Path) -> None:
        for d, entry in (("u", "u:nobody:---"), ("g", "g:nogroup:---")):
            (root / d).mkdir(mode=0o755)
            (root / d / "f").write_bytes(b"hidden")
            (root / d / "f").chmod(0o644)
            setfacl("-m", entry, str(root / d))
        (root / "open").mkdir()
        (root / "open").chmod(0o777)
        setfacl("-m", "u:nobody:r-x", str(root / "open"))
        (root / "open" / "other").write_bytes(b"someone else's")
        (root / "f").write_bytes(b"writable by mode, not by ACL")
        (root / "f").chmod(0o666)
        setfacl("-m", "u:nobody:---", str(root / "f"))
        os.setxattr(root / "f", "user.k", b"v")

    pair.setup(setup)
    warm(pair.mnt)
    outcome = pair.compare({
        "cat-u": "open('{r}/u/f', 'rb').read()",
        "stat-u": "os.stat('{r}/u/f')",
        "cat-g": "open('{r}/g/f', 'rb').read()",
        "stat-g": "os.stat('{r}/g/f')",
        "rm": "os.unlink('{r}/open/other')",
        "mv": "os.rename('{r}/open/other', '{r}/open/mine')",
        "truncate": "os.truncate('{r}/f', 0)",
        "touch": "os.utime('{r}/f')",
        "setxattr": "os.setxattr('{r}/f', 'user.k', b'w')",
        "getxattr": "os.getxattr('{r}/f', 'user.k')",
    })
    assert set(outcome.values()) == {errno.EACCES}, outcome
    assert (pair.source / "f").read_bytes() == b"writable by mode, not by ACL"
    assert (pair.source / "open" / "other").exists()


def test_a_named_acl_entry_that_grants_is_honoured(pair):
    def setup(root: Path) -> None:
        (root / "f").write_bytes(b"shared by ACL")
        (root / "f").chmod(0o600)
        setfacl("-m", "u:nobody:rw-", str(root / "f"))

    pair.setup(setup)
    warm(pair.mnt)
    assert set(pair.compare({"read": "open('{r}/f', 'rb').read()", "append": "open('{r}/f', 'ab').write(b'+')"})
               .values()) == {0}
    assert (pair.source / "f").read_bytes() == b"shared by ACL+"


@pytest.mark.parametrize("cache", ["auto", "always"])
def test_cached_entries_do_not_defeat_the_sticky_bit(mount_factory, workdir, cache):
    """nobody's file is replaced on the source by root's; nobody's cached entry for the name must not let it
    remove or move root's file (the source refuses: sticky directory)."""
    source, mnt = workdir / "src", workdir / "mnt"
    for d in (source, mnt):
        d.mkdir(exist_ok=True)
    (source / "tmp").mkdir()
    (source / "tmp").chmod(0o1777)
    (source / "w").mkdir()
    os.chown(source / "w", NOBODY, NOBODY)
    m = mount_factory("allow_other", f"cache={cache}", source=source, mountpoint=mnt)
    assert as_nobody({"mine": f"open('{mnt}/tmp/mine', 'w').write('x'); os.stat('{mnt}/tmp/mine')"}) == {"mine": 0}
    (source / "tmp" / "mine").unlink()
    (source / "tmp" / "mine").write_bytes(b"root's")
    (source / "tmp" / "mine").chmod(0o600)
    outcome = as_nobody({
        "mv": f"os.rename('{mnt}/tmp/mine', '{mnt}/w/stolen')",
        "rm": f"os.unlink('{mnt}/tmp/mine')",
    })
    assert outcome == {"mv": errno.EPERM, "rm": errno.EPERM}
    assert (source / "tmp" / "mine").read_bytes() == b"root's"
    assert m.stats()["passthrough"]


@pytest.mark.parametrize("cache", ["auto", "always"])
def test_permission_changes_on_the_source_apply_at_once(mount_factory, workdir, cache):
    source, mnt = workdir / "src", workdir / "mnt"
    for d in (source, mnt):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)
    (source / "f").write_bytes(b"data")
    (source / "f").chmod(0o666)
    (source / "d").mkdir(mode=0o755)
    (source / "d" / "g").write_bytes(b"inside")
    (source / "d" / "g").chmod(0o644)
    mount_factory("allow_other", f"cache={cache}", source=source, mountpoint=mnt)
    before = as_nobody({"cat": f"open('{mnt}/d/g', 'rb').read()", "truncate": f"os.truncate('{mnt}/f', 2)"})
    assert before == {"cat": 0, "truncate": 0}
    (source / "f").chmod(0o600)
    (source / "d").chmod(0o700)
    after = as_nobody({
        "cat": f"open('{mnt}/d/g', 'rb').read()",
        "ls": f"os.listdir('{mnt}/d')",
        "truncate": f"os.truncate('{mnt}/f', 0)",
        "touch": f"os.utime('{mnt}/f')",
    })
    assert after == {"cat": errno.EACCES, "ls": errno.EACCES, "truncate": errno.EACCES, "touch": errno.EACCES}
    assert (source / "f").read_bytes() == b"da"


def test_trusted_xattrs_are_root_only(pair):
    def setup(root: Path) -> None:
        (root / "f").write_bytes(b"x")
        (root / "f").chmod(0o666)
        os.setxattr(root / "f", "trusted.t", b"root only")
        os.setxattr(root / "f", "user.u", b"anyone")

    pair.setup(setup)
    warm(pair.mnt)
    pair.compare({
        "list": "assert os.listxattr('{r}/f') == ['user.u'], os.listxattr('{r}/f')",
        "get": "os.getxattr('{r}/f', 'trusted.t')",
        "set": "os.setxattr('{r}/f', 'trusted.n', b'1')",
        "security": "os.setxattr('{r}/f', 'security.n', b'1')",
        "remove": "os.removexattr('{r}/f', 'trusted.t')",
    })
    assert sorted(os.listxattr(pair.mnt / "f")) == ["trusted.t", "user.u"]  # root still sees both


def test_chown_minus_one_is_refused_to_a_non_owner(pair):
    """chown(f, -1, -1) by a non-owner is EPERM and keeps the set-id bits; by the owner or root it clears them and
    updates ctime, as natively."""
    def setup(root: Path) -> None:
        for name in ("roots", "nobodys"):
            (root / name).write_bytes(b"#!/bin/sh\n")
        (root / "roots").chmod(0o4711)
        os.chown(root / "nobodys", NOBODY, NOBODY)
        (root / "nobodys").chmod(0o4755)

    pair.setup(setup)
    warm(pair.mnt)
    outcome = pair.compare({
        "roots": "os.chown('{r}/roots', -1, -1)",
        "nobodys": "os.chown('{r}/nobodys', -1, -1)",
    })
    assert outcome == {"roots": errno.EPERM, "nobodys": 0}
    assert stat.S_IMODE(os.stat(pair.source / "roots").st_mode) == 0o4711
    assert stat.S_IMODE(os.stat(pair.source / "nobodys").st_mode) == 0o755
    # root's chown(-1, -1) clears them too, and changes ctime
    for root in (pair.native, pair.mnt):
        before = os.stat(pair.source / "roots" if root == pair.mnt else root / "roots").st_ctime_ns
        os.chown(root / "roots", -1, -1)
        after = os.stat(root / "roots")
        assert stat.S_IMODE(after.st_mode) == 0o711, root
        assert after.st_ctime_ns > before, root
    assert stat.S_IMODE(os.stat(pair.source / "roots").st_mode) == 0o711


def test_a_writer_without_fsetid_still_clears_set_id_bits(pair):
    """The kernel's empty SETATTR before a passthrough write is not a chown: a writer who may not chown the file
    still clears its set-uid bit by writing."""
    def setup(root: Path) -> None:
        (root / "f").write_bytes(b"x")
        (root / "f").chmod(0o4777)

    pair.setup(setup)
    pair.compare({"append": "open('{r}/f', 'ab').write(b'y')"})
    assert stat.S_IMODE(os.stat(pair.source / "f").st_mode) == 0o777
    assert stat.S_IMODE(os.stat(pair.native / "f").st_mode) == 0o777


@pytest.mark.parametrize("passthrough", ["on", "off"])
def test_a_read_only_passthrough_fd_never_lets_an_open_write(workdir, passthrough):
    """A library filesystem that answers every open with a read-only passthrough_fd: opens for writing are refused
    (EACCES) in both modes, for nobody and root alike, and the backing file is untouched."""
    backing, mnt = workdir / "backing", workdir / "mnt"
    backing.write_bytes(b"root's")
    backing.chmod(0o644)
    mnt.mkdir()
    script = Path(__file__).with_name("careless_fs.py")
    with serving([sys.executable, str(script), str(mnt), str(backing), passthrough], mnt) as served:
        outcome = as_nobody({
            "append": f"open('{mnt}/f', 'ab').write(b'x')",
            "rw": f"os.open('{mnt}/f', os.O_RDWR)",
            "read": f"assert open('{mnt}/f', 'rb').read() == b\"root's\"",
        })
        assert outcome == {"append": errno.EACCES, "rw": errno.EACCES, "read": 0}
        with pytest.raises(PermissionError):
            os.open(mnt / "f", os.O_WRONLY)
    assert backing.read_bytes() == b"root's"
    assert served.out.strip() == "0"  # no WRITE request either


_HOLD_CONNECTIONS = """
import socket, sys, time
name = bytes.fromhex(sys.argv[1])
held, refused = [], 0
for _ in range(40):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(b"\\0" + name)
    held.append(s)
for s in held:
    s.settimeout(5)
    refused += b"permission denied" in s.recv(4096)
print(refused, flush=True)
time.sleep(60)
"""


def test_the_control_socket_keeps_answering_root_while_a_user_crowds_it(mount_factory, tree):
    """The socket's name comes from the mount (random, bound before it is told); nobody's 40 idle connections are
    turned away at once and root's shuntfs-ctl still gets the daemon's own answer."""
    m = mount_factory("allow_other")
    name = os.getxattr(m.mnt, "user.shuntfs.control")
    assert re.fullmatch(rb"shuntfs/[0-9a-f]{32}", name), name
    crowd = subprocess.Popen(as_user("nobody", ["/usr/bin/python3", "-c", _HOLD_CONNECTIONS, name.hex()]),
                             stdout=subprocess.PIPE, text=True)
    try:
        assert crowd.stdout.readline().strip() == "40"  # every one refused with a reason, none left waiting
        started = time.monotonic()
        assert m.stats()["pid"] == m.pid
        assert time.monotonic() - started < 2
    finally:
        crowd.kill()
        crowd.wait()


_IMPOSTOR = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"\\0" + sys.argv[1].encode())
s.listen(4)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(64)
    c.sendall(json.dumps({"pid": 1, "requests": {}}).encode())
    c.close()
"""


def test_shuntfs_ctl_refuses_an_answer_from_another_user(mount_factory, tree, monkeypatch):
    """Were a control socket's name ever to lead to a process of another user, shuntfs-ctl would say so rather
    than print what it forged."""
    from shuntfs import control_client as ctl

    m = mount_factory()
    fake = f"shuntfs/impostor-{os.getpid()}"
    impostor = subprocess.Popen(as_user("nobody", ["/usr/bin/python3", "-c", _IMPOSTOR, fake]),
                                stdout=subprocess.PIPE, text=True)
    try:
        assert impostor.stdout.readline().strip() == "ready"
        monkeypatch.setattr(ctl, "_control_name", lambda path, timeout, owner=None: fake.encode())
        with pytest.raises(ctl.CtlError, match="held by uid 65534"):
            ctl.query(str(m.mnt))
    finally:
        impostor.kill()
        impostor.wait()


def _daemon_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_user_cannot_take_the_daemons_file_descriptors(mount_factory, tree):
    """nobody holds as many opens as the daemon lets one user have (user_files=40, files and directories alike);
    the next gets EMFILE while root and another user keep opening; closing gives them back."""
    src, mnt = tree
    src.chmod(0o755)
    (src / "f").write_bytes(b"shared")
    (src / "f").chmod(0o644)
    m = mount_factory("allow_other", "user_files=40")
    holder = subprocess.Popen(as_user("nobody", ["/usr/bin/python3", "-c", f"""
import os, sys, time
fds = [os.open('{mnt}/f', os.O_RDONLY) for _ in range(30)] + [os.open('{mnt}', os.O_RDONLY) for _ in range(10)]
for path in ('{mnt}/f', '{mnt}'):
    try:
        fds.append(os.open(path, os.O_RDONLY))
        print('opened', flush=True)
    except OSError as e:
        print(e.errno, flush=True)
time.sleep(60)
"""]), stdout=subprocess.PIPE, text=True)
    try:
        assert [holder.stdout.readline().strip() for _ in range(2)] == [str(errno.EMFILE)] * 2
        assert m.stats()["filesystem"]["held_by_users"] == {str(NOBODY): 40}
        held = [os.open(mnt / "f", os.O_RDONLY) for _ in range(100)]  # root is not bounded
        for fd in held:
            os.close(fd)
        other = subprocess.run(as_user("daemon", ["/usr/bin/python3", "-c", f"print(open('{mnt}/f').read())"]),
                               capture_output=True, text=True)
        assert other.stdout.strip() == "shared", other.stderr
    finally:
        holder.kill()
        holder.wait()
    assert wait_for(lambda: m.stats()["filesystem"]["held_by_users"] == {}, 10)
    assert as_nobody({"open": f"open('{mnt}/f').read()"}) == {"open": 0}


def test_open_directory_handles_hold_no_copy_of_the_listing(mount_factory, tree):
    """50 handles on a 5,000-entry directory of long names, each read to the end: the daemon's memory must not grow
    with handles times entries (a copy per handle was about 1.5 MB each here), and every handle lists it all."""
    src, mnt = tree
    big = src / "big"
    big.mkdir()
    names = {f"{i:05d}-" + "n" * 240 for i in range(5000)}
    for name in names:
        (big / name).touch()
    m = mount_factory("allow_other")
    os.listdir(mnt / "big")  # warm: lookups, the kernel's inodes, the daemon's buffers
    before = _daemon_rss_kib(m.pid)
    fds = [os.open(mnt / "big", os.O_RDONLY | os.O_DIRECTORY) for _ in range(50)]
    try:
        for fd in fds:
            with os.scandir(fd) as it:
                assert {e.name for e in it} == names
        grown = _daemon_rss_kib(m.pid) - before
        assert m.stats()["filesystem"]["open_dirs"] == 50
    finally:
        for fd in fds:
            os.close(fd)
    assert grown < 16 * 1024, f"daemon grew {grown} KiB for 50 open handles"


_LEASE_HOLDER = """
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)  # never gives the lease up: the kernel breaks it after its timeout
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
print("leased", flush=True)
time.sleep(60)
"""

_OPENER = """
import os, signal, sys, time
def give_up(signum, frame):
    raise TimeoutError
signal.signal(signal.SIGALRM, give_up)
signal.setitimer(signal.ITIMER_REAL, float(sys.argv[2]))
started = time.monotonic()
try:
    os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND))
    print("opened", round(time.monotonic() - started, 2), flush=True)
except TimeoutError:
    print("interrupted", round(time.monotonic() - started, 2), flush=True)
"""


@pytest.fixture
def lease_break_time():
    with open("/proc/sys/fs/lease-break-time") as f:
        old = f.read()
    with open("/proc/sys/fs/lease-break-time", "w") as f:
        f.write("4")
    yield 4
    with open("/proc/sys/fs/lease-break-time", "w") as f:
        f.write(old)


@pytest.mark.parametrize("options", list(OPTION_SETS))
def test_a_lease_holder_stalls_only_the_opener(mount_factory, tree, lease_break_time, options):
    """nobody leases its own file on the source and never lets go; root opens it for writing through the mount
    from a process on each CPU. Only those openers wait (until the kernel breaks the lease), as natively: another
    user's stat and cat on the mount stay fast meanwhile, and an opener that gives up (a signal) is let go at once."""
    src, mnt = tree
    src.chmod(0o755)
    (src / "leased").write_bytes(b"x")
    os.chown(src / "leased", NOBODY, NOBODY)
    (src / "other").write_bytes(b"other")
    (src / "other").chmod(0o644)
    m = mount_factory("allow_other", *OPTION_SETS[options])
    holder = subprocess.Popen(as_user("nobody", ["/usr/bin/python3", "-c", _LEASE_HOLDER, str(src / "leased")]),
                              stdout=subprocess.PIPE, text=True)
    openers = []
    try:
        assert holder.stdout.readline().strip() == "leased"
        started = time.monotonic()
        for cpu in range(min(2, os.cpu_count() or 1)):
            openers.append(subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", _OPENER,
                                             str(mnt / "leased"), "30"], stdout=subprocess.PIPE, text=True))
        quitter = subprocess.Popen([sys.executable, "-c", _OPENER, str(mnt / "leased"), "1"],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        others = subprocess.run(as_user("daemon", ["/usr/bin/python3", "-c", f"""
import os, time
worst = 0
for _ in range(20):
    t = time.monotonic()
    os.stat('{mnt}/other'); open('{mnt}/other').read(); os.listdir('{mnt}')
    worst = max(worst, time.monotonic() - t)
print(worst)
"""]), capture_output=True, text=True, timeout=60)
        assert float(others.stdout) < 0.5, others.stderr
        assert time.monotonic() - started < lease_break_time - 1  # all of it while the openers still wait
        word, took = quitter.communicate(timeout=30)[0].split()
        assert word == "interrupted" and float(took) < 2
        for opener in openers:
            word, took = opener.communicate(timeout=30)[0].split()
            assert word == "opened" and float(took) >= lease_break_time - 1
        assert wait_for(lambda: m.stats()["waiting_requests"] == 0, 5)
    finally:
        for p in [holder, *openers]:
            p.kill()
            p.wait()


@pytest.mark.parametrize("options", list(OPTION_SETS))
def test_opens_of_one_file_share_one_daemon_fd(mount_factory, tree, options):
    """1,000 opens of one file by nobody cost the daemon one fd (per access mode), not one each, and each of them
    still reads and writes the file."""
    src, mnt = tree
    src.chmod(0o755)
    (src / "f").write_bytes(b"0123456789")
    (src / "f").chmod(0o666)
    m = mount_factory("allow_other", *OPTION_SETS[options])
    before = len(os.listdir(f"/proc/{m.pid}/fd"))
    holder = subprocess.Popen(as_user("nobody", ["/usr/bin/python3", "-c", f"""
import os, time
fds = [os.open('{mnt}/f', os.O_RDONLY) for _ in range(999)] + [os.open('{mnt}/f', os.O_RDWR)]
assert all(os.pread(fd, 4, 2) == b'2345' for fd in fds[::97])
os.pwrite(fds[-1], b'AB', 0)
assert os.pread(fds[0], 2, 0) == b'AB'
print('held', flush=True)
time.sleep(60)
"""]), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        fs = m.stats()["filesystem"]
        assert (fs["open_files"], fs["file_fds"]) == (1000, 2)
        assert len(os.listdir(f"/proc/{m.pid}/fd")) - before <= 3
    finally:
        holder.kill()
        holder.wait()
    assert wait_for(lambda: m.stats()["filesystem"]["file_fds"] == 0, 10)
    assert (src / "f").read_bytes() == b"AB23456789"


def test_an_execute_only_program_runs_but_cannot_be_read(pair):
    """A 0711 program runs for nobody (execve needs execute permission only) and still cannot be read or copied; a
    0700 one does not run; as natively."""
    def setup(root: Path) -> None:
        for name, mode in (("prog", 0o711), ("private", 0o700)):
            (root / name).write_bytes(Path("/bin/true").read_bytes())
            (root / name).chmod(mode)

    pair.setup(setup)
    warm(pair.mnt)
    outcome = pair.compare({
        "run": "import subprocess; subprocess.run(['{r}/prog'], check=True)",
        "read": "open('{r}/prog', 'rb').read()",
        "private": "import subprocess; subprocess.run(['{r}/private'], check=True)",
    })
    assert outcome == {"run": 0, "read": errno.EACCES, "private": errno.EACCES}


def test_set_id_bits_the_daemon_clears_show_at_once(pair):
    """nobody truncates (O_TRUNC) one set-id file and appends to another, both root's and cached by the kernel:
    stat(1), which asks for the mode alone, shows the bits gone at once, as natively."""
    def setup(root: Path) -> None:
        for name in ("trunc", "append"):
            (root / name).write_bytes(b"x")
            (root / name).chmod(0o6777)

    pair.setup(setup)
    warm(pair.mnt)
    for root in (pair.native, pair.mnt):
        os.stat(root / "trunc")
        os.stat(root / "append")
    pair.compare({
        "trunc": "os.close(os.open('{r}/trunc', os.O_WRONLY | os.O_TRUNC))",
        "append": "open('{r}/append', 'ab').write(b'y')",
    })
    for name in ("trunc", "append"):
        shown = [subprocess.run(["stat", "-c", "%A", str(root / name)], capture_output=True, text=True).stdout
                 for root in (pair.native, pair.mnt)]
        assert shown[1] == shown[0] == "-rwxrwxrwx\n", (name, shown)
