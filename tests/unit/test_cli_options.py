"""Option parsing of the `shuntfs` command, without mounting."""

from __future__ import annotations

import pytest

from shuntfs.cli import UsageError, parse_args, split_options


def test_defaults():
    c = parse_args(["src", "mnt"])
    assert (c.passthrough, c.cache, c.auto_unmount) == (True, "auto", True)
    assert (c.allow_other, c.default_permissions) == (False, False)


def test_o_options_and_long_flags_agree():
    a = parse_args(["-o", "ro,allow_other,cache=none,passthrough=off,noauto_unmount,fsname=x", "s", "m"])
    b = parse_args(["--ro", "--allow-other", "--cache", "none", "--no-passthrough", "--no-auto-unmount",
                    "--fsname", "x", "s", "m"])
    for c in (a, b):
        assert c.read_only and c.allow_other and c.cache == "none" and not c.passthrough and not c.auto_unmount
        assert c.fsname == "x"


def test_allow_other_implies_default_permissions():
    assert parse_args(["-o", "allow_other", "s", "m"]).default_permissions


def test_fstab_noise_is_ignored_and_mount_words_kept():
    c = parse_args(["-o", "defaults,_netdev,nofail,rw,noatime", "s", "m"])
    assert c.mount_words == ["noatime"]


def test_escaped_comma_in_fsname():
    assert split_options(r"fsname=a\,b,ro") == ["fsname=a,b", "ro"]


def test_debug_implies_foreground():
    assert parse_args(["-d", "s", "m"]).foreground


def test_inode_fd_budget():
    assert parse_args(["s", "m"]).inode_fds is None
    assert parse_args(["-o", "inode_fds=500", "s", "m"]).inode_fds == 500


def test_killpriv_is_on_unless_declined():
    assert parse_args(["s", "m"]).killpriv is True
    assert parse_args(["-o", "killpriv=off", "s", "m"]).killpriv is False


def test_io_uring_is_automatic_unless_set():
    assert parse_args(["s", "m"]).io_uring is None
    assert parse_args(["-o", "io_uring=on", "s", "m"]).io_uring is True
    assert parse_args(["-o", "io_uring=off", "s", "m"]).io_uring is False
    assert parse_args(["s", "m"]).queue_threads == 1
    assert parse_args(["-o", "queue_threads=2", "s", "m"]).queue_threads == 2


def test_busy_poll_is_in_microseconds_and_zero_turns_it_off():
    assert parse_args(["s", "m"]).busy_poll == 50
    assert parse_args(["-o", "busy_poll=0", "s", "m"]).busy_poll == 0
    assert parse_args(["-o", "busy_poll=200", "s", "m"]).busy_poll == 200


@pytest.mark.parametrize("bad", ["nope", "cache=x", "passthrough=", "threads=0", "threads=x", "ro=1",
                                 "max_stack_depth=3", "fsname", "inode_fds=0", "inode_fds=many", "inode_fds",
                                 "killpriv=maybe", "io_uring=auto", "io_uring", "queue_threads=0",
                                 "queue_threads=17", "busy_poll=-1", "busy_poll=10001", "busy_poll=soon",
                                 "busy_poll"])
def test_bad_options(bad):
    with pytest.raises(UsageError):
        parse_args(["-o", bad, "s", "m"])


def test_missing_arguments():
    with pytest.raises(UsageError):
        parse_args(["only-one"])


def test_later_ro_or_rw_wins_and_remount_is_kept():
    assert parse_args(["-o", "rw,ro", "s", "m"]).read_only is True
    assert parse_args(["-o", "ro,rw", "s", "m"]).read_only is False
    assert parse_args(["s", "m"]).read_only is None  # unsaid: a remount keeps what the mount has
    c = parse_args(["-o", "ro,nosuid,nodev,noatime,remount,user_id=0,group_id=0,allow_other", "s", "m"])
    assert c.remount and c.read_only and c.fuse_words == ["user_id=0", "group_id=0"]
    assert c.mount_words == ["nosuid", "nodev", "noatime"]


def test_fuse_module_options_only_on_a_remount():
    with pytest.raises(UsageError, match="user_id"):
        parse_args(["-o", "user_id=0", "s", "m"])


def test_mount_words_set_and_clear_flags_in_order():
    from shuntfs.mount import MS_NOATIME, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RELATIME, MS_STRICTATIME, mount_flags

    base = MS_NOSUID | MS_NODEV
    assert mount_flags(["suid", "dev"], base) == 0
    assert mount_flags(["suid", "nosuid"], base) == base
    assert mount_flags(["noexec", "exec"], base) == base
    assert mount_flags(["relatime", "noatime"], base) == base | MS_NOATIME
    assert mount_flags(["noatime", "strictatime"], base) == base | MS_STRICTATIME
    assert mount_flags(["noexec", "relatime"], 0) == MS_NOEXEC | MS_RELATIME


def test_one_table_parses_and_documents_every_option():
    from pathlib import Path

    from shuntfs import Mirror
    from shuntfs.options import OPTIONS, help_text

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    text = help_text(Mirror.command_options)
    for option in Mirror.command_options + OPTIONS:
        assert f"  {option.usage} " in text
        assert any(f"`{prefix}{option.name}{end}" in readme for prefix in ("-o ", "") for end in ("`", "=", " ")), \
            option.name
        word = option.name if option.takes is None else f"{option.name}=" + option.takes.split("|")[-1].replace(
            "N", "1")
        if option.name != "remount":
            parse_args(["-o", word, "s", "m"])  # each parses as its help says


def test_keyword_arguments_as_options():
    from shuntfs.options import keyword_word
    assert keyword_word("ro", True) == "ro"
    assert keyword_word("ro", False) is None
    assert keyword_word("io_uring", False) == "io_uring=off"  # an on/off option: False means off, not "not said"
    assert keyword_word("passthrough", True) == "passthrough=on"
    assert keyword_word("fsname", "x") == "fsname=x"
    assert keyword_word("entry_timeout", 2.5) == "entry_timeout=2.5"


def test_libfuse_cache_words_are_settings_and_use_ino_is_what_we_do():
    config = parse_args(["/src", "/mnt", "-o", "use_ino,readdir_ino,auto_cache,direct_io"])
    assert config.settings == {"auto_cache": True, "direct_io": True}
    with pytest.raises(UsageError, match="takes no value"):
        parse_args(["/src", "/mnt", "-o", "use_ino=1"])
