"""Mounting and unmounting: mount(2) as root, fusermount3 for everyone else, and the auto-unmount watchdog."""

from __future__ import annotations

import array
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
from dataclasses import dataclass, field

from .libc import libc

log = logging.getLogger("shuntfs")

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
_ATIME = MS_NOATIME | MS_RELATIME | MS_STRICTATIME
#: Generic mount words: the mount(2) flags each sets and clears. fusermount3 does this translation itself; as root
#: we call mount(2), whose data string the FUSE module would reject them in. Every mount starts nosuid,nodev (as
#: libfuse's do); ``suid`` and ``dev`` lift that, for root only (fusermount3 forces both for other users).
MOUNT_FLAG_WORDS = {
    "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID), "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC), "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS),
    "dirsync": (MS_DIRSYNC, 0), "noatime": (MS_NOATIME, _ATIME), "atime": (0, MS_NOATIME),
    "relatime": (MS_RELATIME, _ATIME), "strictatime": (MS_STRICTATIME, _ATIME), "nodiratime": (MS_NODIRATIME, 0),
    "diratime": (0, MS_NODIRATIME), "norelatime": (0, MS_RELATIME),
}
#: What a remount may say: the mount flags, and ro/rw (which a new mount takes from its own option).
_REMOUNT_WORDS = {**MOUNT_FLAG_WORDS, "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY)}
#: Words only root may use: fusermount3 refuses to lift nosuid,nodev for other users.
ROOT_ONLY_WORDS = {"suid", "dev"}
#: The FUSE module's own options as /proc/mounts shows them; mount(8) hands them back on a remount.
FUSE_MOUNT_OPTIONS = {"user_id", "group_id", "default_permissions", "allow_other", "max_read", "blksize"}
MNT_DETACH = 2

_libc = libc
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


#: The one line for a machine without /dev/fuse.
NO_DEV_FUSE = "/dev/fuse does not exist (is the fuse module loaded?)"


class MountError(Exception):
    """A mount that could not be made; the message is one line for the user."""


@dataclass
class MountOptions:
    fsname: str = "shuntfs"
    subtype: str = "shuntfs"
    allow_other: bool = False
    default_permissions: bool = False
    read_only: bool = False
    #: passed to mount(2)/fusermount3 verbatim (e.g. "noatime")
    extra: list[str] = field(default_factory=list)


@dataclass
class MountEntry:
    mount_id: int
    dev: int
    mountpoint: str
    fstype: str
    source: str
    #: the filesystem's own options (for FUSE: user_id=, group_id=, default_permissions, allow_other, ...)
    options: str = ""
    #: the mount's own flags (rw/ro, nosuid, nodev, noexec, the atime policy)
    mount_options: str = ""

    def option(self, name: str) -> str | None:
        """The value of ``name=value`` among :attr:`options`, "" for a bare ``name``, None if absent."""
        for word in self.options.split(","):
            key, has_value, value = word.partition("=")
            if key == name:
                return value if has_value else ""
        return None


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1 : i + 4].isdigit() and i + 4 <= len(path):
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mounts() -> list[MountEntry]:
    """This mount namespace's mounts, from /proc/self/mountinfo (reading it sends no request to any filesystem)."""
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts = left.split()
            rparts = right.split()
            major, minor = parts[2].split(":")
            entries.append(
                MountEntry(
                    int(parts[0]),
                    os.makedev(int(major), int(minor)),
                    _unescape(parts[4]),
                    rparts[0] if rparts else "",
                    _unescape(rparts[1]) if len(rparts) > 1 else "",
                    rparts[2] if len(rparts) > 2 else "",
                    parts[5],
                )
            )
    return entries


def find_mount(mountpoint: str) -> MountEntry | None:
    """The topmost mount at ``mountpoint`` (an absolute, resolved path), if any."""
    found = None
    for entry in mounts():
        if entry.mountpoint == mountpoint:
            found = entry
    return found


def fuse_mount_option_string(fd: int, rootmode: int, opts: MountOptions, uid: int, gid: int) -> str:
    words = [f"fd={fd}", f"rootmode={rootmode:o}", f"user_id={uid}", f"group_id={gid}"]
    if opts.default_permissions:
        words.append("default_permissions")
    if opts.allow_other:
        words.append("allow_other")
    return ",".join(words + [w for w in opts.extra if w not in MOUNT_FLAG_WORDS])


def mount_flags(words: list[str], flags: int, table: dict[str, tuple[int, int]] = MOUNT_FLAG_WORDS) -> int:
    """``flags`` changed by the generic mount ``words`` in turn (a later word wins, as with mount(8))."""
    for word in words:
        set_bits, clear_bits = table.get(word, (0, 0))
        flags = (flags & ~clear_bits) | set_bits
    return flags


def _escape_option(value: str) -> str:
    # fsname goes into a comma-separated option string
    return value.replace("\\", "\\\\").replace(",", "\\,")


def mount(mountpoint: str, opts: MountOptions) -> int:
    """Mount a FUSE filesystem at ``mountpoint``; return the /dev/fuse fd that serves it."""
    if os.geteuid() == 0:
        return _mount_root(mountpoint, opts)
    return _mount_fusermount(mountpoint, opts)


def _mount_root(mountpoint: str, opts: MountOptions) -> int:
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MountError(NO_DEV_FUSE) from None
    except OSError as e:
        raise MountError(f"cannot open /dev/fuse: {e.strerror}") from None
    try:
        rootmode = stat.S_IFMT(os.stat(mountpoint).st_mode)
        data = fuse_mount_option_string(fd, rootmode, opts, os.getuid(), os.getgid())
        flags = mount_flags(opts.extra, MS_NOSUID | MS_NODEV | (MS_RDONLY if opts.read_only else 0))
        fstype = f"fuse.{opts.subtype}" if opts.subtype else "fuse"
        if _libc.mount(opts.fsname.encode(), mountpoint.encode(), fstype.encode(), flags, data.encode()) != 0:
            err = ctypes.get_errno()
            raise MountError(f"mount {mountpoint}: {os.strerror(err)}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mount_fusermount(mountpoint: str, opts: MountOptions) -> int:
    helper = shutil.which("fusermount3")
    if helper is None:
        raise MountError("mounting as a non-root user needs fusermount3 (Debian package fuse3)")
    words = [f"fsname={_escape_option(opts.fsname)}"]
    if opts.subtype:
        words.append(f"subtype={opts.subtype}")
    if opts.default_permissions:
        words.append("default_permissions")
    if opts.allow_other:
        words.append("allow_other")
    if opts.read_only:
        words.append("ro")
    words += opts.extra
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
        proc = subprocess.Popen(
            [helper, "-o", ",".join(words), "--", mountpoint],
            env=env,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        fds = array.array("i")
        try:
            msg, ancdata, _flags, _addr = ours.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
        except OSError:
            ancdata = []
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        _out, err = proc.communicate(timeout=30)
        if not fds:
            message = err.decode(errors="replace").strip().splitlines()
            raise MountError(message[-1] if message else f"fusermount3 failed with status {proc.returncode}")
        fd = fds[0]
        for extra in fds[1:]:
            os.close(extra)
        os.set_inheritable(fd, False)
        return fd
    finally:
        ours.close()
        if theirs.fileno() >= 0:
            theirs.close()


def remount(entry: MountEntry, words: list[str]) -> None:
    """Remount ``entry`` with the generic mount ``words`` (``ro``, ``rw`` and those of :data:`MOUNT_FLAG_WORDS`)
    applied to the flags it has; root only. FUSE itself takes only ``ro``/``rw`` (and ``sync``) on a remount and
    ignores the data string of mount(2), so the daemon carries on as it was and learns of nothing."""
    if os.geteuid() != 0:
        raise MountError(f"remount {entry.mountpoint}: only root may remount (fusermount3 cannot)")
    have = set(entry.mount_options.split(",")) | set(entry.options.split(","))
    flags = MS_RDONLY if "ro" in have else 0
    for word in ("nosuid", "nodev", "noexec", "nodiratime", "sync", "dirsync"):
        if word in have:
            flags |= MOUNT_FLAG_WORDS[word][0]
    # mountinfo shows noatime or relatime, and neither for strictatime
    flags |= MS_NOATIME if "noatime" in have else MS_RELATIME if "relatime" in have else MS_STRICTATIME
    flags = mount_flags(words, flags, _REMOUNT_WORDS)
    if _libc.mount(None, entry.mountpoint.encode(), None, MS_REMOUNT | flags, None) != 0:
        err = ctypes.get_errno()
        raise MountError(f"remount {entry.mountpoint}: {os.strerror(err)}")


def unmount(mountpoint: str, lazy: bool = False) -> None:
    """Unmount; raises OSError on failure (EBUSY, EINVAL for a non-mount)."""
    if os.geteuid() == 0:
        if _libc.umount2(mountpoint.encode(), MNT_DETACH if lazy else 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), mountpoint)
        return
    args = ["fusermount3", "-u"] + (["-z"] if lazy else []) + ["--", mountpoint]
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True)
    if done.returncode != 0:
        raise OSError(errno.EBUSY, done.stderr.decode(errors="replace").strip() or "fusermount3 -u failed")


def raise_readahead(dev: int, want_kb: int) -> None:
    """Raise the readahead of the mount ``dev`` to ``want_kb`` KiB (root only; its bdi's setting): so userspace
    reads of a sequential reader arrive max_pages at a time (8x fewer READ requests at 1 MiB). Passthrough files
    read ahead on their backing file's device instead."""
    path = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(path, "r+") as f:
            if int(f.read()) < want_kb:
                f.seek(0)
                f.write(f"{want_kb}\n")
    except (OSError, ValueError) as e:
        log.debug("readahead stays as the kernel set it: %s", e)


def start_watchdog(mountpoint: str, dev: int) -> int:
    """Fork a process that lazily unmounts ``mountpoint`` when this process dies; return the fd that keeps it waiting.

    Must be called before any thread starts. The watchdog holds only the read end of a pipe whose write end lives
    in this process: when we exit or are killed, the pipe reads EOF, and if our mount (same device) is still there
    it is detached, so clients see ENOTCONN-free cleanup instead of a dead mount. A clean exit unmounts first, and
    the watchdog then finds nothing to do.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the watchdog
        try:
            os.setsid()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            os.closerange(0, read_end)
            os.closerange(read_end + 1, 1 << 16)
            while True:
                try:
                    if not os.read(read_end, 64):
                        break
                except InterruptedError:
                    continue
            entry = find_mount(mountpoint)
            if entry is not None and entry.dev == dev:
                try:
                    unmount(mountpoint, lazy=True)
                except OSError:
                    pass
        finally:
            os._exit(0)
    os.close(read_end)
    return write_end
