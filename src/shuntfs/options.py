"""The ``-o`` options of a shuntfs command: one table per owner (the session and mount, or a filesystem) that parses
them and writes their help.

The session's table (:data:`OPTIONS`) holds what every filesystem gets from :func:`shuntfs.main`: the mount, the
transport, passthrough, and the names libfuse users type (``uid=``, ``entry_timeout=``, ``kernel_cache``, ``-s``).
A filesystem adds its own with :class:`Option` values built by :func:`flag`, :func:`on_off`, :func:`number`,
:func:`choice` and :func:`text`; their values land on the same :class:`Config` its ``from_arguments`` reads.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import uring_queues
from .mount import FUSE_MOUNT_OPTIONS, MOUNT_FLAG_WORDS


class UsageError(Exception):
    """A mistake in the command line; the message is one line for the user."""


@dataclass
class Config:
    """What the command line said. The filesystem's own positional arguments and options are set on it too, under
    their names (``config.source``, ``config.cache`` for the mirror)."""

    mountpoint: str = ""
    foreground: bool = False
    debug: bool = False
    read_only: bool | None = None  # None: not said (rw for a new mount; as it was on a remount)
    allow_other: bool = False
    default_permissions: bool = False
    fsname: str | None = None
    subtype: str | None = None
    passthrough: bool = True
    auto_unmount: bool = True
    max_stack_depth: int | None = None
    threads: int = 2
    io_uring: bool | None = None  # None: use it when this kernel and our privileges allow, quietly
    queue_threads: int = 1
    busy_poll: int = uring_queues.BUSY_POLL_US  # microseconds
    log_file: str | None = None
    mount_words: list[str] = field(default_factory=list)
    remount: bool = False
    #: the FUSE module's options (user_id=0, ...) that mount(8) hands back on a remount
    fuse_words: list[str] = field(default_factory=list)
    #: libfuse-style settings of the filesystem (uid=, entry_timeout=, ...): set on it if it honours them
    settings: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # the filesystem's own, set by name; typed as Any
        raise AttributeError(f"the command line has no {name!r}")


@dataclass(frozen=True)
class Option:
    """One ``-o`` option: ``NAME`` (a flag, which sets ``value``) or ``NAME=VALUE`` (``takes`` says what VALUE may
    be; ``parse`` turns it into the value). The value goes to ``attribute`` of the Config (default: the name), or,
    for a setting, into ``Config.settings``."""

    name: str
    takes: str | None
    help: str
    parse: Callable[[str], Any] = str
    value: Any = True
    attribute: str | None = None
    default: Any = None
    setting: bool = False

    @property
    def usage(self) -> str:
        return self.name if self.takes is None else f"{self.name}={self.takes}"

    def apply(self, config: Any, text: str | None) -> None:
        value = self.value if self.takes is None else self.parse(text or "")
        if self.setting:
            config.settings[self.attribute or self.name] = value
        else:
            setattr(config, self.attribute or self.name, value)


def flag(name: str, help: str, value: Any = True, attribute: str | None = None, default: Any = False) -> Option:
    """``-o NAME``: sets ``attribute`` (default: NAME) to ``value``."""
    return Option(name, None, help, value=value, attribute=attribute, default=default)


def on_off(name: str, help: str, default: bool = True, attribute: str | None = None) -> Option:
    """``-o NAME=on|off``."""
    def parse(text: str) -> bool:
        if text in ("on", "1", "yes", "true"):
            return True
        if text in ("off", "0", "no", "false"):
            return False
        raise UsageError(f"option {name} takes on or off, not {text!r}")

    return Option(name, "on|off", help, parse, attribute=attribute, default=default)


def number(name: str, low: float, high: float, help: str, default: Any = None, attribute: str | None = None,
           kind: Callable[[str], Any] = int, setting: bool = False) -> Option:
    """``-o NAME=N`` with ``low <= N <= high`` (``kind=float`` for seconds, ``lambda t: int(t, 8)`` for modes)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise UsageError(f"option {name} takes a number, not {text!r}") from None
        if not low <= value <= high:
            raise UsageError(f"option {name} must be between {low} and {high}")
        return value

    takes = "N" if high - low > 1 else f"{low}|{high}"
    return Option(name, takes, help, parse, attribute=attribute, default=default, setting=setting)


def choice(name: str, choices: Iterable[str], help: str, default: str | None = None) -> Option:
    """``-o NAME=ONE`` of ``choices``."""
    names = tuple(choices)

    def parse(text: str) -> str:
        if text not in names:
            raise UsageError(f"option {name} takes one of {'/'.join(names)}, not {text!r}")
        return text

    return Option(name, "|".join(names), help, parse, default=default)


def text(name: str, help: str, default: str | None = None, attribute: str | None = None) -> Option:
    """``-o NAME=TEXT``."""
    return Option(name, "NAME", help, attribute=attribute, default=default)


def _seconds(name: str, help: str) -> Option:
    return number(name, 0, 1e9, help, kind=float, setting=True)


#: What every filesystem run by :func:`shuntfs.main` takes.
OPTIONS: list[Option] = [
    flag("ro", "read-only mount", attribute="read_only"),
    flag("rw", "read-write mount (the default)", value=False, attribute="read_only"),
    flag("allow_other", "let every user in (turns on default_permissions)"),
    flag("default_permissions", "let the kernel check permissions too"),
    text("fsname", "the source shown in /proc/mounts"),
    text("source", "the same as fsname (the kernel's name for it)", attribute="fsname"),
    text("subtype", "the type shown in /proc/mounts after fuse."),
    on_off("passthrough", "kernel passthrough of file data (default on)"),
    flag("auto_unmount", "unmount when the daemon dies (the default)"),
    flag("noauto_unmount", "leave the mount behind when the daemon dies", value=False, attribute="auto_unmount"),
    number("max_stack_depth", 1, 2, "the kernel's stacking depth for backing files"),
    number("threads", 1, 64, "/dev/fuse worker threads (-s: one)"),
    on_off("io_uring", "FUSE over io_uring (default: where the kernel offers it)"),
    number("queue_threads", 1, 16, "threads per io_uring queue"),
    number("busy_poll", 0, 10_000, "microseconds an io_uring queue polls after a reply"),
    flag("remount", "change the live mount at MOUNTPOINT (root)"),
    # libfuse's names, for filesystems that honour them (see Operations.settings)
    number("uid", 0, (1 << 32) - 2, "show every file as owned by this user", setting=True),
    number("gid", 0, (1 << 32) - 2, "show every file as owned by this group", setting=True),
    number("umask", 0, 0o777, "show every file with the permissions 0777 & ~umask (octal)",
           kind=lambda t: int(t, 8), setting=True),
    _seconds("entry_timeout", "seconds the kernel may cache names"),
    _seconds("attr_timeout", "seconds the kernel may cache attributes"),
    _seconds("negative_timeout", "seconds the kernel may cache that a name does not exist"),
    Option("kernel_cache", None, "keep file data cached across opens", setting=True),
    Option("auto_cache", None, "keep file data cached across opens while the file's mtime and size stay",
           setting=True),
    Option("direct_io", None, "no page cache for file data: every read and write reaches the filesystem",
           setting=True),
]

#: libfuse's words for what shuntfs always does: it shows the inode numbers a filesystem gives (``use_ino``), in
#: listings too (``readdir_ino``). Accepted and ignored.
_ALWAYS_WORDS = {"use_ino", "readdir_ino"}

#: mount(8) words that mean nothing to a FUSE mount but appear in fstab lines; accepted and ignored.
_IGNORED_WORDS = {"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail"}
#: Prefixes of fstab words meant for other programs (systemd's x-systemd.*, comment=).
_IGNORED_PREFIXES = ("x-", "comment=")


def help_text(own: Sequence[Option] = ()) -> str:
    """The options, one line each, as a command's --help lists them: the filesystem's own first."""
    every = [*own, *OPTIONS]
    width = max(len(option.usage) for option in every) + 2
    lines = ["options (-o OPT[,OPT...]):"]
    lines += [f"  {option.usage:<{width}}{option.help}" for option in every]
    words = ("and the mount flags " + ", ".join(MOUNT_FLAG_WORDS) + " (suid and dev: root only), max_read=N; "
             + " and ".join(sorted(_ALWAYS_WORDS)) + " are what shuntfs does anyway")
    lines += textwrap.wrap(words, 100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def apply_option(config: Config, word: str, own: dict[str, Option] | None = None) -> None:
    """Apply one ``-o`` word to ``config`` (``own``: the filesystem's options by name); raise UsageError for unknown
    or malformed ones."""
    if word.startswith(_IGNORED_PREFIXES):
        return
    name, has_value, value = word.partition("=")
    option = (own or {}).get(name) or _BY_NAME.get(name)
    if option is None:
        if name == "max_read" and has_value:  # the kernel's own option: passed on to the mount
            config.mount_words.append(f"max_read={_MAX_READ.parse(value)}")
        elif name in FUSE_MOUNT_OPTIONS:
            config.fuse_words.append(word)  # only a remount may carry them; the command says so otherwise
        elif name in MOUNT_FLAG_WORDS or name in _IGNORED_WORDS or name in _ALWAYS_WORDS:
            if has_value:
                raise UsageError(f"option {name} takes no value")
            if name in MOUNT_FLAG_WORDS:
                config.mount_words.append(name)
        else:
            raise UsageError(f"unknown option {word!r}")
    elif option.takes is None:
        if has_value:
            raise UsageError(f"option {name} takes no value")
        option.apply(config, None)
    elif not value:
        raise UsageError(f"option {name} needs a value ({name}=...)")
    else:
        option.apply(config, value)


_BY_NAME = {option.name: option for option in OPTIONS}
_MAX_READ = number("max_read", 4096, 1 << 30, "largest read the kernel sends")


def keyword_word(name: str, value: Any) -> str | None:
    """The ``-o`` word for a keyword argument, as libfuse's Python bindings take options (``FUSE(..., ro=True)``):
    True gives the flag, False or None nothing, another value NAME=VALUE. An on/off option takes True and False as
    on and off, so that ``io_uring=False`` means what it says."""
    option = _BY_NAME.get(name)
    if option is not None and option.takes == "on|off" and isinstance(value, bool):
        return f"{name}={'on' if value else 'off'}"
    if value is True:
        return name
    if value is False or value is None:
        return None
    return f"{name}={value}"


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
