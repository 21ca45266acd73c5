"""benchmarks.caller_cost runs and reports each handler for root and nobody (no mount needed)."""

from __future__ import annotations

import os

import pytest

from benchmarks import caller_cost


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as nobody needs root")
def test_caller_cost_reports_every_handler(capsys):
    assert caller_cost.main(["--calls", "50", "--depth", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["lookup", "open+release", "getxattr"]
    for row in rows:
        root, nobody = (float(x) for x in row.split()[-3:-1])
        assert root > 0 and nobody > 0
