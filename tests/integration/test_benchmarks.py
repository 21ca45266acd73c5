"""The benchmark suite runs end to end at a tiny size: every workload gives a figure on every shuntfs target and
on native, the JSON and the PNG are written, and nothing stays mounted. (Figures are not judged here: speed is
the benchmark's business, not a test's.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.steady import REPORTING_ORDER
from benchmarks.workloads import WORKLOADS

from .conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_every_workload_on_every_target(tmp_path):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    reporting = REPORTING_ORDER.read_text() if REPORTING_ORDER.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--targets", "native,passthrough,fallback,none", "--repeat", "2",
         "--size-mib", "8", "--runtime", "1", "--files", "300", "--inodes", "3000", "--protocol-seconds", "0.05",
         "--json", str(out_json), "--png", str(out_png), "--base", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out_json.read_text())
    for w in WORKLOADS:
        row = report["results"][w.name]
        assert row["errors"] == {}, (w.name, row["errors"])
        expected = {"native", "passthrough", "fallback"} | ({"none"} if w.kind == "metadata" else set())
        assert set(row["targets"]) == expected, w.name
        for fig in row["targets"].values():
            assert len(fig["runs"]) == 2 and all(v > 0 for v in fig["runs"])
        assert w.name in done.stdout
    if reporting is None:
        assert report["machine"]["page_reporting"] == "none"
    else:  # off for the run, and back as it was
        assert report["machine"]["page_reporting"] == f"off for the run (was order {reporting.strip()})"
        assert REPORTING_ORDER.read_text() == reporting
    rss = report["rss_per_inode"]
    assert rss["inodes"] >= 3000 and rss["bytes_per_inode"] > 0
    assert all(rate > 0 for rate in report["protocol"].values())
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert wait_for(lambda: str(tmp_path) not in Path("/proc/mounts").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.png"], "scratch tree left behind"


def test_a_bad_target_is_one_line_and_exit_1(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--targets", "native,zfs"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "unknown target 'zfs'" in done.stderr


def test_ceiling_reports_client_and_server_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ceiling", "--targets", "native,fallback", "--repeat", "1", "--size-mib",
         "16", "--base", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| seq")]
    assert {(r[0].strip(), r[1].strip()) for r in rows} == {
        (w, t) for w in ("seq read 1 MiB", "seq write 1 MiB + fsync") for t in ("native", "fallback")}
    for workload, target, rate, client, server, ceiling in (map(str.strip, r) for r in rows):
        assert float(rate.replace(",", "")) > 0 and float(ceiling.replace(",", "")) > 0
        # the daemon served every byte in userspace, so it spent CPU on them; native has no server
        assert (server == "-") if target == "native" else (float(server.replace(",", "")) > 0), (workload, target)
    assert wait_for(lambda: str(tmp_path) not in Path("/proc/mounts").read_text())
    assert list(tmp_path.iterdir()) == [], "scratch tree left behind"


def test_fusepy_benchmark_runs_every_row_on_both_sides(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fusepy_bench", "--files", "60", "--mib", "8", "--repeat", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.endswith("×")]
    names = " ".join(" ".join(row[:-3]) for row in rows)
    for row in ("create+stat", "ls -l, warm", "unlink", "create+stat+unlink", "seq write", "seq read"):
        assert row in names, (row, done.stdout)
    assert len(rows) == 7
    for row in rows:  # the shuntfs side and the reference, both measured
        assert float(row[-3].replace(",", "")) > 0 and float(row[-2].replace(",", "")) > 0, row
    assert wait_for(lambda: str(tmp_path) not in Path("/proc/mounts").read_text())
    assert list(tmp_path.iterdir()) == [], "scratch tree left behind"


def test_requests_map_counts_every_metadata_workload(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.requests", "--files", "100", "--base", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line[:26].strip(): line[26:].split() for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {w.name for w in WORKLOADS if w.kind == "metadata"}, done.stdout
    for name, cells in rows.items():
        assert int(cells[0].replace(",", "")) > 0 and float(cells[1]) > 0, (name, cells)
    assert "READDIRPLUS" in " ".join(rows["ls -l of 10k-entry dir"]) and "CREATE 1.000" in " ".join(
        rows["create+stat+unlink"])
    assert wait_for(lambda: str(tmp_path) not in Path("/proc/mounts").read_text())
    assert list(tmp_path.iterdir()) == [], "scratch tree left behind"
