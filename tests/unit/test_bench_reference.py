"""The C reference server's build helper, without building: a cached build is reused, and a missing compiler is one
clear BenchmarkError naming the packages."""

from __future__ import annotations

import pytest

from benchmarks import reference
from benchmarks.targets import ALL_TARGETS, BenchmarkError


def test_a_cached_build_is_used_with_its_own_libfuse(tmp_path):
    binary = tmp_path / f"fuse-{reference.VERSION}" / "build" / "example" / "passthrough_hp"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    found, env = reference.passthrough_hp(tmp_path)
    assert found == binary
    assert env["LD_LIBRARY_PATH"] == str(tmp_path / f"fuse-{reference.VERSION}" / "build" / "lib")


def test_missing_tools_are_named_with_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no meson, ninja, g++ here
    with pytest.raises(BenchmarkError, match="apt-get install -y meson ninja-build g\\+\\+"):
        reference.passthrough_hp(tmp_path)
    assert not any(tmp_path.iterdir()), "nothing downloaded before the tools are there"


def test_both_transports_are_targets():
    assert {"c-reference", "c-reference-uring"} <= set(ALL_TARGETS)
