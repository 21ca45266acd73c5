"""``shuntfs SOURCE MOUNTPOINT``: mirror a directory through FUSE with kernel passthrough."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import signal
import stat
import sys
from typing import NoReturn

from . import __version__, uring_queues
from .mirror import CACHE_MODES, Mirror
from .mount import (
    MS_NOATIME,
    MS_NODIRATIME,
    NO_DEV_FUSE,
    ROOT_ONLY_WORDS,
    MountError,
    MountOptions,
    find_mount,
    mount_flags,
    remount,
)
from .options import Config, UsageError, apply_option, help_text, split_options

log = logging.getLogger("shuntfs")


def parse_args(argv: list[str]) -> Config:
    parser = _Parser(
        prog="shuntfs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mirror SOURCE at MOUNTPOINT through FUSE; file data is passed through to the kernel.",
    )
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options (see below)")
    parser.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("-d", "--debug", action="store_true", help="log every request to stderr (implies -f)")
    parser.add_argument("-V", "--version", action="version", version=f"shuntfs {__version__}")
    parser.add_argument("--ro", action="append_const", dest="long_options", const="ro", help="read-only mount")
    parser.add_argument("--allow-other", action="append_const", dest="long_options", const="allow_other",
                        help="let all users in (turns on default_permissions)")
    parser.add_argument("--default-permissions", action="append_const", dest="long_options",
                        const="default_permissions", help="let the kernel check permissions")
    parser.add_argument("--fsname", help="name shown as the mount's source")
    parser.add_argument("--cache", choices=sorted(CACHE_MODES), help="kernel caching: none, auto (default), always")
    parser.add_argument("--no-passthrough", action="append_const", dest="long_options", const="passthrough=off",
                        help="serve file data in userspace")
    parser.add_argument("--no-auto-unmount", action="append_const", dest="long_options", const="noauto_unmount",
                        help="leave the mount behind if the daemon dies")
    parser.add_argument("--threads", type=int, help="worker threads (default 2)")
    parser.add_argument("--log-file", help="log here instead of stderr")
    parser.epilog = help_text()
    args = parser.parse_args(argv)
    config = Config(source=args.source, mountpoint=args.mountpoint, foreground=args.foreground or args.debug,
                    debug=args.debug, log_file=args.log_file)
    for text in args.options:
        for word in split_options(text):
            apply_option(config, word)
    for word in args.long_options or []:
        apply_option(config, word)
    if args.fsname is not None:
        apply_option(config, f"fsname={args.fsname}")
    if args.cache is not None:
        apply_option(config, f"cache={args.cache}")
    if args.threads is not None:
        apply_option(config, f"threads={args.threads}")
    if config.fuse_words and not config.remount:
        raise UsageError(f"unknown option {config.fuse_words[0]!r}")
    if config.allow_other:
        config.default_permissions = True
    return config


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block
        raise UsageError(message)


def validate(config: Config) -> None:
    """Refuse what cannot work before anything is mounted or forked."""
    src = config.source
    if not os.path.exists(src):
        raise UsageError(f"source {src}: no such file or directory")
    if not os.path.isdir(src):
        raise UsageError(f"source {src}: not a directory")
    mnt = config.mountpoint
    if not os.path.lexists(mnt):
        raise UsageError(f"mountpoint {mnt}: no such file or directory")
    try:
        st = os.stat(mnt)
    except OSError as e:
        raise UsageError(f"mountpoint {mnt}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"mountpoint {mnt}: not a directory")
    real = os.path.realpath(mnt)
    if find_mount(real) is not None:
        raise UsageError(f"mountpoint {mnt}: already a mountpoint")
    if real.startswith(os.path.realpath(src).rstrip("/") + "/"):
        # The daemon's own lookups would enter its mount and wait on themselves for good. (SOURCE itself is fine:
        # the daemon holds SOURCE's directory from before the mount covers it.)
        raise UsageError(f"mountpoint {mnt}: lies inside source {src}")
    if not os.path.exists("/dev/fuse"):
        raise UsageError(NO_DEV_FUSE)
    if os.geteuid() != 0:
        if shutil.which("fusermount3") is None:
            raise UsageError("not root, and fusermount3 is not installed (Debian package fuse3)")
        for word in config.mount_words:
            if word in ROOT_ONLY_WORDS:
                raise UsageError(f"option {word} needs root (fusermount3 mounts are always nosuid,nodev)")


def remount_command(config: Config) -> None:
    """``-o remount,...``: change the live mount at MOUNTPOINT; the daemon serving it carries on."""
    entry = find_mount(os.path.realpath(config.mountpoint))
    if entry is None or not entry.fstype.startswith("fuse"):
        raise UsageError(f"mountpoint {config.mountpoint}: no FUSE filesystem is mounted there")
    asked = {"allow_other": config.allow_other, "default_permissions": config.default_permissions}
    for word in config.fuse_words + [name for name, on in asked.items() if on]:
        name, _, value = word.partition("=")
        if entry.option(name) != value:
            raise UsageError(f"option {word} cannot change on a remount")
    words = config.mount_words + ([] if config.read_only is None else ["ro" if config.read_only else "rw"])
    try:
        remount(entry, words)
    except MountError as e:
        raise UsageError(str(e)) from None


def raise_fd_limit() -> None:
    """Every inode the kernel knows holds an O_PATH fd, so the fd limit is the limit on known inodes (a tar of a
    big tree exceeds the usual hard limit). Root may go up to the kernel's nr_open; others to their hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = int(f.read())
        if ceiling > hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, ceiling))
            return
    except (OSError, ValueError):
        pass  # not privileged, or no /proc: the hard limit it is
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def setup_logging(config: Config) -> None:
    handler: logging.Handler
    if config.log_file:
        handler = logging.FileHandler(config.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("shuntfs[%(process)d]: %(levelname)s %(message)s"))
    root = logging.getLogger("shuntfs")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if (config.debug or config.foreground) else logging.WARNING)
    logging.getLogger("shuntfs.trace").setLevel(logging.DEBUG if config.debug else logging.WARNING)


def run(config: Config, report) -> int:
    """Mount and serve until unmounted. ``report(None)`` says the mount is live, ``report(msg)`` that it failed."""
    from .control_server import ControlServer
    from .session import Session

    raise_fd_limit()
    if config.io_uring:
        uring_queues.usable()  # asked for by name: say why not, if it cannot be had
    atime = mount_flags(config.mount_words, 0)
    # Other users' permissions are checked by the kernel too (ACLs included) where they can reach the mount; a mount
    # only its owner uses spares the refreshes of directory attributes that kernel checks need.
    ops = Mirror(config.source, cache=config.cache, inode_fds=config.inode_fds, clears_setid_bits=config.killpriv,
                 user_files=config.user_files, posix_acl=config.allow_other or config.default_permissions,
                 noatime=bool(atime & MS_NOATIME), nodiratime=bool(atime & MS_NODIRATIME),
                 export_inodes=config.export_inodes)
    options = MountOptions(
        fsname=config.fsname or os.path.realpath(config.source),
        allow_other=config.allow_other,
        default_permissions=config.default_permissions,
        read_only=bool(config.read_only),
        extra=config.mount_words,
    )
    session = Session(
        ops,
        config.mountpoint,
        options,
        passthrough="auto" if config.passthrough else False,
        max_stack_depth=config.max_stack_depth,
        threads=config.threads,
        cache_symlinks=config.cache != "none",
        auto_unmount=config.auto_unmount,
        io_uring=config.io_uring is not False,
        queue_threads=config.queue_threads,
        busy_poll_us=config.busy_poll,
    )
    try:
        session.mount()
    except MountError as e:
        report(str(e))
        return 1
    control = None
    try:
        session.start()
        if not session.wait_init(15):
            raise MountError("the kernel sent no INIT within 15 s")
        try:
            control = ControlServer(session.stats)
            control.start()
            session.dispatcher.control_name = control.name  # type: ignore[union-attr]
        except OSError as e:
            log.warning("control socket unavailable: %s", e)
    except (MountError, OSError) as e:
        session.unmount()
        report(str(e))
        return 1
    session.unmount_on_signals((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    report(None)
    session.wait()
    if control is not None:
        control.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"shuntfs: {e}", file=sys.stderr)
        return 2
    try:
        if config.remount:
            remount_command(config)
            return 0
        validate(config)
    except UsageError as e:
        print(f"shuntfs: {e}", file=sys.stderr)
        return 1
    if config.foreground:
        setup_logging(config)

        def report(message: str | None) -> None:
            if message:
                print(f"shuntfs: {message}", file=sys.stderr)

        return run(config, report)
    return _daemonize(config)


def mount_helper(argv: list[str] | None = None) -> int:
    """``mount.fuse.shuntfs SOURCE MOUNTPOINT [-fnsv] [-o OPTIONS]``: what mount(8) runs for ``-t fuse.shuntfs`` and
    fstab lines of that type. -f (fake) does nothing; -n, -s and -v mean nothing here."""
    args = list(sys.argv[1:] if argv is None else argv)
    positional: list[str] = []
    options: list[str] = []
    fake = False
    while args:
        arg = args.pop(0)
        if arg == "-o":
            if not args:
                print("mount.fuse.shuntfs: option -o needs a value", file=sys.stderr)
                return 2
            options.append(args.pop(0))
        elif arg.startswith("-o"):
            options.append(arg[2:])
        elif arg.startswith("-") and len(arg) > 1:
            for flag in arg[1:]:
                if flag == "f":
                    fake = True
                elif flag not in "nsv":
                    print(f"mount.fuse.shuntfs: unknown flag -{flag}", file=sys.stderr)
                    return 2
        else:
            positional.append(arg)
    if len(positional) != 2:
        print("usage: mount.fuse.shuntfs SOURCE MOUNTPOINT [-fnsv] [-o OPTIONS]", file=sys.stderr)
        return 2
    if fake:
        return 0
    return main(positional + (["-o", ",".join(options)] if options else []))


def _daemonize(config: Config) -> int:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        chunks = []
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_end)
        message = b"".join(chunks).decode(errors="replace")
        if message == "ok":
            return 0
        os.waitpid(pid, 0)
        print(f"shuntfs: {message or 'the daemon exited during start-up'}", file=sys.stderr)
        return 1
    os.close(read_end)
    code = 1
    try:
        config.source = os.path.realpath(config.source)
        config.mountpoint = os.path.realpath(config.mountpoint)
        os.setsid()
        os.chdir("/")
        setup_logging(config)

        def report(message: str | None) -> None:
            os.write(write_end, b"ok" if message is None else message.encode())
            os.close(write_end)
            if message is None:
                _detach_stdio(config)

        code = run(config, report)
    except BaseException:
        log.exception("daemon failed")
    finally:
        os._exit(code)


def _detach_stdio(config: Config) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    if not config.log_file:
        os.dup2(devnull, 2)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
