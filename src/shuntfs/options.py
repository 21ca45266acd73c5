"""The ``-o`` options of the ``shuntfs`` command: one table that parses them and writes their help."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Callable

from . import uring_queues
from .mirror import CACHE_MODES
from .mount import FUSE_MOUNT_OPTIONS, MOUNT_FLAG_WORDS


class UsageError(Exception):
    """A mistake in the command line; the message is one line for the user."""


@dataclass
class Config:
    source: str = ""
    mountpoint: str = ""
    foreground: bool = False
    debug: bool = False
    read_only: bool | None = None  # None: not said (rw for a new mount; as it was on a remount)
    allow_other: bool = False
    default_permissions: bool = False
    fsname: str | None = None
    cache: str = "auto"
    passthrough: bool = True
    auto_unmount: bool = True
    max_stack_depth: int | None = None
    threads: int = 2
    inode_fds: int | None = None
    user_files: int | None = None
    export_inodes: int = 65536
    killpriv: bool = True
    io_uring: bool | None = None  # None: use it when this kernel and our privileges allow, quietly
    queue_threads: int = 1
    busy_poll: int = uring_queues.BUSY_POLL_US  # microseconds
    log_file: str | None = None
    mount_words: list[str] = field(default_factory=list)
    remount: bool = False
    #: the FUSE module's options (user_id=0, ...) that mount(8) hands back on a remount
    fuse_words: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Option:
    """One ``-o`` option: ``NAME`` (a flag) or ``NAME=VALUE`` (``takes`` says what VALUE may be)."""

    name: str
    takes: str | None
    apply: Callable[[Config, str], None]
    help: str

    @property
    def usage(self) -> str:
        return self.name if self.takes is None else f"{self.name}={self.takes}"


def _flag(name: str, attribute: str, value: object, help: str) -> Option:
    return Option(name, None, lambda config, _text: setattr(config, attribute, value), help)


def _on_off(name: str, attribute: str, help: str) -> Option:
    def apply(config: Config, text: str) -> None:
        if text in ("on", "1", "yes", "true"):
            setattr(config, attribute, True)
        elif text in ("off", "0", "no", "false"):
            setattr(config, attribute, False)
        else:
            raise UsageError(f"option {name} takes on or off, not {text!r}")

    return Option(name, "on|off", apply, help)


def _number(name: str, low: int, high: int, help: str, attribute: str | None = None) -> Option:
    def apply(config: Config, text: str) -> None:
        try:
            number = int(text)
        except ValueError:
            raise UsageError(f"option {name} takes a number, not {text!r}") from None
        if not low <= number <= high:
            raise UsageError(f"option {name} must be between {low} and {high}")
        setattr(config, attribute or name, number)

    return Option(name, "N" if high - low > 1 else f"{low}|{high}", apply, help)


def _choice(name: str, choices: tuple[str, ...], help: str) -> Option:
    def apply(config: Config, text: str) -> None:
        if text not in choices:
            raise UsageError(f"option {name} takes one of {'/'.join(choices)}, not {text!r}")
        setattr(config, name, text)

    return Option(name, "|".join(choices), apply, help)


def _text(name: str, help: str) -> Option:
    return Option(name, "NAME", lambda config, text: setattr(config, name, text), help)


OPTIONS: list[Option] = [
    _flag("ro", "read_only", True, "read-only mount"),
    _flag("rw", "read_only", False, "read-write mount (the default)"),
    _flag("allow_other", "allow_other", True, "let every user in (turns on default_permissions)"),
    _flag("default_permissions", "default_permissions", True, "let the kernel check permissions too"),
    _text("fsname", "the source shown in /proc/mounts"),
    _choice("cache", tuple(CACHE_MODES), "kernel caching of names and attributes"),
    _on_off("passthrough", "passthrough", "kernel passthrough of file data (default on)"),
    _flag("auto_unmount", "auto_unmount", True, "unmount when the daemon dies (the default)"),
    _flag("noauto_unmount", "auto_unmount", False, "leave the mount behind when the daemon dies"),
    _number("max_stack_depth", 1, 2, "the kernel's stacking depth for backing files"),
    _number("threads", 1, 64, "/dev/fuse worker threads"),
    _number("inode_fds", 1, 1 << 30, "known inodes that keep an O_PATH fd"),
    _number("user_files", 1, 1 << 30, "open files one user other than root may hold"),
    _number("export_inodes", 0, 1 << 30, "forgotten inodes kept for file handles (0: no export support)"),
    _on_off("killpriv", "killpriv", "FUSE_HANDLE_KILLPRIV_V2 (default on)"),
    _on_off("io_uring", "io_uring", "FUSE over io_uring (default: where the kernel offers it)"),
    _number("queue_threads", 1, 16, "threads per io_uring queue"),
    _number("busy_poll", 0, 10_000, "microseconds an io_uring queue polls after a reply"),
    _flag("remount", "remount", True, "change the live mount at MOUNTPOINT (root)"),
]
_BY_NAME = {option.name: option for option in OPTIONS}

#: mount(8) words that mean nothing to a FUSE mount but appear in fstab lines; accepted and ignored.
_IGNORED_WORDS = {"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail"}
#: Prefixes of fstab words meant for other programs (systemd's x-systemd.*, comment=, mount.fuse3's subtype=).
_IGNORED_PREFIXES = ("x-", "comment=", "subtype=")


def help_text() -> str:
    """The options, one line each, as the command's --help lists them."""
    width = max(len(option.usage) for option in OPTIONS) + 2
    lines = ["options (-o OPT[,OPT...]):"]
    lines += [f"  {option.usage:<{width}}{option.help}" for option in OPTIONS]
    flags = "and the mount flags " + ", ".join(MOUNT_FLAG_WORDS) + " (suid and dev: root only)"
    lines += textwrap.wrap(flags, 100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def apply_option(config: Config, word: str) -> None:
    """Apply one ``-o`` word to ``config``; raise UsageError for unknown or malformed ones."""
    if word.startswith(_IGNORED_PREFIXES):
        return
    name, has_value, text = word.partition("=")
    option = _BY_NAME.get(name)
    if option is None:
        if name in FUSE_MOUNT_OPTIONS:
            config.fuse_words.append(word)  # only a remount may carry them; parse_args says so otherwise
        elif name in MOUNT_FLAG_WORDS or name in _IGNORED_WORDS:
            if has_value:
                raise UsageError(f"option {name} takes no value")
            if name in MOUNT_FLAG_WORDS:
                config.mount_words.append(name)
        else:
            raise UsageError(f"unknown option {word!r}")
    elif option.takes is None:
        if has_value:
            raise UsageError(f"option {name} takes no value")
        option.apply(config, "")
    elif not text:
        raise UsageError(f"option {name} needs a value ({name}=...)")
    else:
        option.apply(config, text)


def split_options(text: str) -> list[str]:
    """Split an -o string on commas; a backslash escapes a comma (as in fsname=a\\,b)."""
    words, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            words.append("".join(current))
            current = []
        else:
            current.append(ch)
    words.append("".join(current))
    return [w for w in words if w]
