""":func:`main`: the ``shuntfs`` command's plumbing for any filesystem written on either API.

``sys.exit(shuntfs.main(MyFS))`` gives a filesystem the command line of ``shuntfs``: its own positional arguments
and options, then ``MOUNTPOINT``; ``-o`` options (the session's, libfuse's names, and the filesystem's own); ``-f``,
``-d``, ``-s``, ``--log-file``; daemonizing once the mount is live; a clean exit on unmount and on SIGINT, SIGTERM,
SIGHUP; ``auto_unmount``; one-line errors with exit code 1 (2 for a malformed command line), and nothing left
mounted when it fails. Every session has a control socket, so ``shuntfs-ctl stats MOUNTPOINT`` answers for it.

What ``main`` asks of ``filesystem`` (a class, any callable that makes one, or a ready instance), all optional:

``add_arguments(parser)``
    a classmethod declaring positional arguments (they come before MOUNTPOINT) and long options on the
    ``argparse`` parser.
``command_options``
    a list of :class:`shuntfs.options.Option` (made with ``options.flag``, ``on_off``, ``number``, ``choice``,
    ``text``): the filesystem's own ``-o`` words.
``from_arguments(config)``
    a classmethod that makes the filesystem from the :class:`~shuntfs.options.Config`, on which the positional
    arguments and the filesystem's options are set by name; it may raise :class:`~shuntfs.options.UsageError` (or
    ``OSError``) with a one-line message, and may set ``config.fsname``. Without it, ``filesystem()`` is called.
``settings``
    the libfuse-style settings the filesystem honours (see :attr:`shuntfs.Operations.settings`); a path-based
    filesystem honours them all, since the library applies them.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import signal
import stat
import sys
import threading
from typing import Any, Callable, NoReturn

from . import __version__, uring_queues
from .mount import NO_DEV_FUSE, ROOT_ONLY_WORDS, MountError, MountOptions, find_mount, remount
from .operations import Operations
from .options import OPTIONS, Config, Option, UsageError, apply_option, help_text, split_options
from .paths import PathBridge, PathOperations

log = logging.getLogger("shuntfs")

Filesystem = Any  # an Operations or PathOperations class, a callable making one, or an instance


def main(
    filesystem: Filesystem, argv: list[str] | None = None, *, prog: str | None = None,
    description: str | None = None,
) -> int:
    """Run ``filesystem`` as a command: parse ``argv`` (default ``sys.argv[1:]``), mount, serve until unmounted.
    Returns the exit status (0, or 1 when it could not mount, 2 for a malformed command line)."""
    prog = prog or os.path.basename(sys.argv[0]) or "shuntfs"
    try:
        config = parse(filesystem, sys.argv[1:] if argv is None else argv, prog, description)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    try:
        if config.remount:
            remount_command(config)
            return 0
        check_mountpoint(config)
        ops = build(filesystem, config)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    if config.fsname is None:
        config.fsname = prog
    if config.foreground:
        setup_logging(config, prog)

        def report(message: str | None) -> None:
            if message:
                print(f"{prog}: {message}", file=sys.stderr)

        return run(config, ops, report)
    return _daemonize(config, ops, prog)


def parse(filesystem: Filesystem, argv: list[str], prog: str, description: str | None = None) -> Config:
    """The command line as a Config, the filesystem's own arguments and options set on it by name."""
    own: list[Option] = list(getattr(filesystem, "command_options", []))
    by_name = {option.name: option for option in own}
    clash = set(by_name) & {option.name for option in OPTIONS}
    if clash:
        raise ValueError(f"the filesystem's options {sorted(clash)} are the session's")  # the author's mistake
    config = Config()
    for option in own:
        setattr(config, option.attribute or option.name, option.default)
    parser = _Parser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, description=description,
                     epilog=help_text(own))
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = getattr(filesystem, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("mountpoint", metavar="MOUNTPOINT")
    parser.add_argument("-o", dest="_option_texts", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options (see below)")
    parser.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("-d", "--debug", action="store_true", help="log every request to stderr (implies -f)")
    parser.add_argument("-s", dest="_single", action="store_true", help="single-threaded (threads=1)")
    parser.add_argument("-V", "--version", action="version", version=f"{prog} (shuntfs {__version__})")
    long_option: dict[str, Any] = dict(action="append_const", dest="_long_options")
    parser.add_argument("--ro", const="ro", help="read-only mount", **long_option)
    parser.add_argument("--allow-other", const="allow_other", help="let all users in (turns on default_permissions)",
                        **long_option)
    parser.add_argument("--default-permissions", const="default_permissions", help="let the kernel check permissions",
                        **long_option)
    parser.add_argument("--fsname", dest="_fsname", metavar="NAME", help="name shown as the mount's source")
    parser.add_argument("--no-passthrough", const="passthrough=off", help="serve file data in userspace",
                        **long_option)
    parser.add_argument("--no-auto-unmount", const="noauto_unmount", help="leave the mount behind if the daemon dies",
                        **long_option)
    parser.add_argument("--threads", dest="_threads", metavar="N", type=int, help="worker threads (default 2)")
    parser.add_argument("--log-file", dest="log_file", metavar="FILE", help="log here instead of stderr")
    parser.parse_args(argv, namespace=config)
    words = [word for text in config._option_texts for word in split_options(text)]
    words += config._long_options or []
    if config._fsname is not None:
        words.append(f"fsname={config._fsname}")
    if config._threads is not None:
        words.append(f"threads={config._threads}")
    if config._single:
        words.append("threads=1")
    for word in words:
        apply_option(config, word, by_name)
    for name in ("_option_texts", "_long_options", "_fsname", "_threads", "_single"):
        delattr(config, name)
    if config.fuse_words and not config.remount:
        raise UsageError(f"unknown option {config.fuse_words[0]!r}")
    config.foreground = config.foreground or config.debug
    if config.allow_other:
        config.default_permissions = True
    return config


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block
        raise UsageError(message)


def build(filesystem: Filesystem, config: Config) -> Operations:
    """The filesystem made from ``config``, as the session serves it, with its settings applied."""
    if isinstance(filesystem, (Operations, PathOperations)):
        fs = filesystem
    else:
        make = getattr(filesystem, "from_arguments", None)
        try:
            fs = make(config) if make is not None else filesystem()
        except OSError as e:
            raise UsageError(f"{e.filename or 'filesystem'}: {e.strerror}") from None
    ops: Operations = PathBridge(fs) if isinstance(fs, PathOperations) else fs
    for name, value in config.settings.items():
        if name not in ops.settings:
            raise UsageError(f"option {name} does not apply to {type(fs).__name__}")
        setattr(ops, name, value)
    return ops


def check_mountpoint(config: Config) -> None:
    """Refuse what cannot work before anything is mounted or forked."""
    mnt = config.mountpoint
    if not os.path.lexists(mnt):
        raise UsageError(f"mountpoint {mnt}: no such file or directory")
    try:
        st = os.stat(mnt)
    except OSError as e:
        raise UsageError(f"mountpoint {mnt}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"mountpoint {mnt}: not a directory")
    if find_mount(os.path.realpath(mnt)) is not None:
        raise UsageError(f"mountpoint {mnt}: already a mountpoint")
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
    kernel_words = [word for word in config.mount_words if word.startswith("max_read=")]
    for word in config.fuse_words + kernel_words + [name for name, on in asked.items() if on]:
        name, _, value = word.partition("=")
        if entry.option(name) != value:
            raise UsageError(f"option {word} cannot change on a remount")
    words = [word for word in config.mount_words if word not in kernel_words]
    words += [] if config.read_only is None else ["ro" if config.read_only else "rw"]
    try:
        remount(entry, words)
    except MountError as e:
        raise UsageError(str(e)) from None


def raise_fd_limit() -> None:
    """Every inode the kernel knows may hold an fd (the mirror's do), so the fd limit is the limit on known inodes
    (a tar of a big tree exceeds the usual hard limit). Root may go up to the kernel's nr_open; others to their
    hard limit."""
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


def setup_logging(config: Config, prog: str) -> None:
    handler: logging.Handler
    if config.log_file:
        handler = logging.FileHandler(config.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}[%(process)d]: %(levelname)s %(message)s"))
    root = logging.getLogger("shuntfs")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if (config.debug or config.foreground) else logging.WARNING)
    logging.getLogger("shuntfs.trace").setLevel(logging.DEBUG if config.debug else logging.WARNING)


def run(config: Config, ops: Operations, report: Callable[[str | None], None],
        on_session: Callable[[Any], None] | None = None) -> int:
    """Mount and serve until unmounted. ``report(None)`` says the mount is live, ``report(msg)`` that it failed;
    ``on_session`` is given the session once it serves. Signals unmount only when called from the main thread."""
    from .session import Session

    raise_fd_limit()
    if config.io_uring:
        uring_queues.usable()  # asked for by name: say why not, if it cannot be had
    options = MountOptions(
        fsname=config.fsname or "shuntfs",
        subtype=config.subtype or "shuntfs",
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
    try:
        session.start()
        if not session.wait_init(15):
            raise MountError("the kernel sent no INIT within 15 s")
    except (MountError, OSError) as e:
        session.unmount()
        report(str(e))
        return 1
    if threading.current_thread() is threading.main_thread():
        session.unmount_on_signals((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    if on_session is not None:
        on_session(session)
    report(None)
    session.wait()
    return 0


def _daemonize(config: Config, ops: Operations, prog: str) -> int:
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
        print(f"{prog}: {message or 'the daemon exited during start-up'}", file=sys.stderr)
        return 1
    os.close(read_end)
    code = 1
    try:
        config.mountpoint = os.path.realpath(config.mountpoint)
        os.setsid()
        os.chdir("/")
        setup_logging(config, prog)

        def report(message: str | None) -> None:
            os.write(write_end, b"ok" if message is None else message.encode())
            os.close(write_end)
            if message is None:
                _detach_stdio(config)

        code = run(config, ops, report)
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
