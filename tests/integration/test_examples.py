"""The examples in examples/, mounted for real."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shuntfs.mount import find_mount

from ..harness import serving, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_hellofs(workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    backing = workdir / "backing.bin"
    payload = os.urandom(256 * 1024)
    backing.write_bytes(payload)
    with serving([sys.executable, str(EXAMPLES / "hellofs.py"), str(mnt), str(backing)], mnt) as served:
        assert sorted(os.listdir(mnt)) == ["data.bin", "hello.txt"]
        assert (mnt / "hello.txt").read_bytes() == b"Hello from shuntfs!\n"
        assert (mnt / "data.bin").read_bytes() == payload
        assert os.stat(mnt / "data.bin").st_size == len(payload)
        try:
            open(mnt / "hello.txt", "w")
        except OSError as e:
            assert e.errno == 30  # EROFS
        else:
            raise AssertionError("writing a read-only file succeeded")
    report = json.loads(served.out)
    assert report["passthrough"] is True
    # hello.txt was read through the filesystem's read(); data.bin's 256 KiB never reached it
    assert report["requests"]["READ"] == 1
    assert report["requests"]["OPEN"] >= 2


def test_memoryfs(workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    with serving([sys.executable, str(EXAMPLES / "memoryfs.py"), str(mnt)], mnt):
        (mnt / "dir").mkdir()
        data = os.urandom(300_000)
        (mnt / "dir" / "f").write_bytes(data)
        assert (mnt / "dir" / "f").read_bytes() == data
        with open(mnt / "dir" / "f", "r+b") as f:
            f.seek(1_000_000)
            f.write(b"end")
        assert os.stat(mnt / "dir" / "f").st_size == 1_000_003
        os.truncate(mnt / "dir" / "f", 10)
        assert (mnt / "dir" / "f").read_bytes() == data[:10]
        os.symlink("dir/f", mnt / "link")
        assert os.readlink(mnt / "link") == "dir/f" and (mnt / "link").read_bytes() == data[:10]
        os.link(mnt / "dir" / "f", mnt / "hard")
        assert os.stat(mnt / "hard").st_nlink == 2
        os.rename(mnt / "dir", mnt / "moved")
        assert sorted(os.listdir(mnt)) == ["hard", "link", "moved"]
        os.chmod(mnt / "hard", 0o600)
        assert os.stat(mnt / "moved" / "f").st_mode & 0o777 == 0o600
        os.unlink(mnt / "moved" / "f")
        os.rmdir(mnt / "moved")
        assert (mnt / "hard").read_bytes() == data[:10] and os.stat(mnt / "hard").st_nlink == 1
        assert os.statvfs(mnt).f_namemax == 255


def test_filterfs(workdir):
    src, mnt = workdir / "src", workdir / "mnt"
    for d in (src, mnt, src / "project" / ".git"):
        d.mkdir(parents=True)
    payload = os.urandom(512 * 1024)
    (src / "project" / "data.bin").write_bytes(payload)
    (src / "project" / ".git" / "config").write_text("[core]")
    (src / "server.key").write_text("secret")
    (src / "notes.txt").write_text("visible")
    with serving([sys.executable, str(EXAMPLES / "filterfs.py"), str(src), str(mnt)], mnt) as served:
        assert sorted(os.listdir(mnt)) == ["notes.txt", "project"]
        assert os.listdir(mnt / "project") == ["data.bin"]
        assert not os.path.exists(mnt / "server.key") and not os.path.exists(mnt / "project" / ".git" / "config")
        assert (mnt / "project" / "data.bin").read_bytes() == payload
        for attempt in (lambda: open(mnt / "notes.txt", "a"), lambda: open(mnt / "new", "w"),
                        lambda: os.unlink(mnt / "notes.txt"), lambda: os.mkdir(mnt / "d"),
                        lambda: os.chmod(mnt / "notes.txt", 0o777), lambda: os.rename(mnt / "notes.txt", mnt / "n")):
            try:
                attempt()
            except OSError as e:
                assert e.errno == 30, attempt  # EROFS
            else:
                raise AssertionError("a change went through the read-only view")
        assert (src / "notes.txt").read_text() == "visible"
    report = json.loads(served.out)
    assert report["passthrough"] is True
    assert report["requests"].get("READ", 0) == 0  # 512 KiB read, none of it through this process


def test_lazyfs_fetches_once_then_passes_through(workdir):
    import http.server
    import threading

    www = workdir / "www"
    www.mkdir()
    files = {"small.txt": b"hello over http\n", "big.bin": os.urandom(3 << 20), "with space.txt": b"spaced"}
    for name, body in files.items():
        (www / name).write_bytes(body)
    (www / "manifest.json").write_text(json.dumps({n: len(b) for n, b in files.items()}))
    gets: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def do_GET(self):
            gets.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mnt, cache = workdir / "mnt", workdir / "cache"
    mnt.mkdir()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with serving([sys.executable, str(EXAMPLES / "lazyfs.py"), url, str(mnt), str(cache)], mnt) as served:
            assert sorted(os.listdir(mnt)) == sorted(files)
            assert os.stat(mnt / "big.bin").st_size == len(files["big.bin"])
            assert gets == ["/manifest.json"]  # listing and stat fetch nothing
            for _ in range(3):
                assert (mnt / "big.bin").read_bytes() == files["big.bin"]
            assert (mnt / "with space.txt").read_bytes() == b"spaced"
            assert gets == ["/manifest.json", "/big.bin", "/with%20space.txt"]  # each file fetched once
            assert (cache / "big.bin").read_bytes() == files["big.bin"]
            with pytest.raises(OSError) as e:
                open(mnt / "small.txt", "r+b")
            assert e.value.errno == 30
    finally:
        server.shutdown()
    report = json.loads(served.out)
    assert report["fetched"] == 2 and report["passthrough"] is True
    assert report["requests"].get("READ", 0) == 0  # 9 MiB read through the mount, none of it through the daemon


def test_the_readme_example_runs_as_written(workdir):
    """The library example on the README's first pages, copied out of it verbatim."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    script = workdir / "onefile.py"
    script.write_text(code)
    mnt = workdir / "mnt"
    mnt.mkdir()
    with serving([sys.executable, str(script), str(mnt)], mnt) as served:
        assert os.listdir(mnt) == ["hello"]
        assert (mnt / "hello").read_bytes() == Path("/etc/os-release").read_bytes()
    assert served.out.split() == ["True", "0"]  # passthrough on, and no READ reached the daemon


def _ctl_stats(mnt) -> dict:
    done = subprocess.run([sys.executable, "-m", "shuntfs.control_client", "stats", str(mnt)], capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_path_based_filesystem_gets_the_whole_command_line_from_shuntfs_main(workdir):
    """examples/pathmemfs.py is three lines of shuntfs.main: it daemonizes once the mount is live, takes -o options
    (libfuse's uid=, umask= and -s among them) and its own --size-limit, and shuntfs-ctl answers for it."""
    mnt = workdir / "mnt"
    mnt.mkdir()
    cmd = [sys.executable, str(EXAMPLES / "pathmemfs.py"), str(mnt), "-s", "-o", "uid=1234,gid=2345,umask=027",
           "--size-limit", "100000"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    try:
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert os.path.ismount(mnt)  # live when the command returned
        (mnt / "f").write_bytes(b"data")
        st = os.stat(mnt / "f")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o750)
        with pytest.raises(OSError) as e:
            (mnt / "big").write_bytes(bytes(200_000))
        assert e.value.errno == errno.EFBIG
        stats = _ctl_stats(mnt)
        assert stats["threads"] == 1 and stats["requests"]["CREATE"] == 2
        assert find_mount(str(mnt)).fstype == "fuse.shuntfs" and find_mount(str(mnt)).source == "pathmemfs.py"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert wait_for(lambda: not os.path.ismount(mnt), 10)


@pytest.mark.parametrize("passthrough", ["on", "off"])
def test_the_path_loopback_example_passes_data_through(tree, passthrough):
    src, mnt = tree
    data = os.urandom(1 << 20)
    (src / "data").write_bytes(data)
    cmd = [sys.executable, str(EXAMPLES / "pathloopback.py"), str(src), str(mnt), "-f", "-o",
           f"passthrough={passthrough}"]
    with serving(cmd, mnt):
        assert (mnt / "data").read_bytes() == data
        (mnt / "new").write_bytes(data[:5000])
        assert (src / "new").read_bytes() == data[:5000]
        os.mkdir(mnt / "d")
        os.rename(mnt / "new", mnt / "d" / "moved")
        os.symlink("d/moved", mnt / "link")
        assert (mnt / "link").read_bytes() == data[:5000]
        assert sorted(os.listdir(mnt)) == sorted(os.listdir(src)) == ["d", "data", "link"]
        os.utime(mnt / "data", ns=(5, 6_000_000_007))
        assert os.stat(src / "data").st_mtime_ns == 6_000_000_007
        stats = _ctl_stats(mnt)
    requests = stats["requests"]
    if passthrough == "on":
        assert stats["passthrough"] is True and "READ" not in requests and "WRITE" not in requests
    else:
        assert requests["READ"] > 0 and requests["WRITE"] > 0


def test_shuntfs_main_errors_are_one_line_and_mount_nothing(tree):
    src, mnt = tree
    for cmd, words, status in [
        ([str(EXAMPLES / "pathmemfs.py"), str(mnt), "-o", "nope"], "unknown option 'nope'", 2),
        ([str(EXAMPLES / "pathmemfs.py"), str(mnt / "missing")], "no such file or directory", 1),
        ([str(EXAMPLES / "pathloopback.py"), str(src / "missing"), str(mnt)], "not a directory", 1),
        ([str(EXAMPLES / "pathmemfs.py"), str(mnt), "-o", "entry_timeout=x"], "takes a number", 2),
        # the mirror shows SOURCE's owners: libfuse's uid= does not apply to it
        (["-m", "shuntfs.cli", str(src), str(mnt), "-o", "uid=5"], "option uid does not apply to Mirror", 1),
    ]:
        done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=30)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == status and len(lines) == 1 and words in lines[0], (cmd, done.stderr)
        assert not os.path.ismount(mnt)


def test_the_fusepy_examples_run_on_shuntfs_fusepy(tree):
    src, mnt = tree
    with serving([sys.executable, str(EXAMPLES / "fusepy_memory.py"), str(mnt)], mnt):
        (mnt / "d").mkdir()
        (mnt / "d" / "f").write_bytes(b"fusepy code")
        assert (mnt / "d" / "f").read_bytes() == b"fusepy code" and os.listdir(mnt / "d") == ["f"]
        assert find_mount(str(mnt)).source == "Memory"
    data = os.urandom(1 << 20)
    (src / "data").write_bytes(data)
    with serving([sys.executable, str(EXAMPLES / "fusepy_loopback.py"), str(src), str(mnt)], mnt):
        assert (mnt / "data").read_bytes() == data
        (mnt / "copy").write_bytes(data)
        assert (src / "copy").read_bytes() == data
        stats = _ctl_stats(mnt)
    assert stats["passthrough"] is True and "READ" not in stats["requests"] and "WRITE" not in stats["requests"]
