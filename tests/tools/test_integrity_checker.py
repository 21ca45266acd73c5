"""The integrity exerciser itself, on a local file: it passes on a correct filesystem and catches a lost write."""

from __future__ import annotations

import pytest

from ..stress import integrity


def test_clean_run_on_a_local_file(tmp_path):
    report = integrity.single(str(tmp_path / "f"), str(tmp_path / "f"), 3000, seed=1)
    assert report.ops == 3000


def test_a_lost_write_is_reported_with_its_seed(tmp_path, monkeypatch):
    real = integrity.Exerciser.op_write
    lost = []

    def lossy(self):
        before = bytes(self.model)
        real(self)
        if self.report.ops >= 500 and not lost and bytes(self.model) != before:
            self.model[:] = before  # the model now disagrees with the file, as after a lost write
            lost.append(self.report.ops)
    monkeypatch.setattr(integrity.Exerciser, "op_write", lossy)
    with pytest.raises(integrity.Miscompare, match="seed 7"):
        integrity.single(str(tmp_path / "f"), None, 3000, seed=7)
    assert lost
