"""The benchmark turns a VM's free page reporting off for its run and always puts it back."""

from __future__ import annotations

import pytest

from benchmarks import steady


@pytest.fixture
def order_file(tmp_path, monkeypatch):
    path = tmp_path / "page_reporting_order"
    path.write_text("9\n")
    monkeypatch.setattr(steady, "REPORTING_ORDER", path)
    return path


def test_reporting_is_off_in_the_body_and_restored_after(order_file):
    with steady.steady_memory(touch_bytes=1 << 20) as what:
        assert order_file.read_text() == str(steady.NEVER)
        assert what == "off for the run (was order 9)"
    assert order_file.read_text() == "9"


def test_restored_when_the_run_fails(order_file):
    with pytest.raises(KeyboardInterrupt):
        with steady.steady_memory():
            raise KeyboardInterrupt
    assert order_file.read_text() == "9"


def test_left_alone_when_asked(order_file):
    with steady.steady_memory(enabled=False) as what:
        assert order_file.read_text() == "9\n"
    assert what == "left on (order 9)"


def test_no_page_reporting(tmp_path, monkeypatch):
    monkeypatch.setattr(steady, "REPORTING_ORDER", tmp_path / "missing")
    with steady.steady_memory() as what:
        assert what == "none"
    assert not (tmp_path / "missing").exists()


def test_unwritable_setting_is_reported_not_raised(order_file, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(order_file), "write_text", refuse)
    with steady.steady_memory() as what:
        assert what == "left on (order 9; could not change it: Permission denied)"


def test_back_memory_touches_what_it_is_asked(monkeypatch):
    touched = []

    class Area:
        def __init__(self, _fd, size, flags):
            self.size = size

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __setitem__(self, offset, value):
            touched.append(offset)

    monkeypatch.setattr(steady.mmap, "mmap", Area)
    steady.back_memory(3 * steady.PAGE + 1)
    assert touched == [0, steady.PAGE, 2 * steady.PAGE, 3 * steady.PAGE]
    touched.clear()
    steady.back_memory(0)
    assert touched == []
