"""The benchmark: native vs shuntfs (passthrough, fallback, cache=none) vs pyfuse3 and libfuse's C reference server
(passthrough_hp, over /dev/fuse and over io_uring), side by side in one run.

    sudo python3 -m benchmarks.run [--repeat 3] [--json results.json] [--png results.png]

Every workload runs on every target in turn, repeated (so drift hits all targets alike); the table gives each
target's median, its spread (half the min-max range, in % of the median) and its ratio to native and to pyfuse3.
Needs root, fio, git, pyfuse3 and, for the C reference server (built by ``benchmarks.reference``), a compiler:
``apt-get install -y fio git libfuse3-dev pkg-config meson ninja-build g++ liburing-dev libnuma-dev && pip install -e
.[bench]``. ``--targets`` leaves any of them out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shuntfs.mount import mounts

from . import protocol_bench
from .inodes import rss_per_inode
from .targets import ALL_TARGETS, BenchmarkError, Target, make_targets, pyfuse3_example, require_tools, serving
from .workloads import WORKLOADS, Params, drop_dentries, prepare

#: Which targets each kind of workload runs on: cache=none only changes metadata behaviour.
KIND_TARGETS = {
    "data": ("native", "passthrough", "nokillpriv", "fallback", "fallback-devfuse", "pyfuse3"),
    "metadata": ("native", "passthrough", "fallback", "none", "always", "devfuse", "nopoll", "pyfuse3", "c-reference",
                 "c-reference-uring"),
}


def source_filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (the mount whose st_dev it has)."""
    dev = os.stat(path).st_dev
    for entry in mounts():
        if entry.dev == dev:
            return entry.fstype
    return "?"


def machine() -> dict:
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "kernel": platform.release(),
        "cpu": models[0] if models else platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
    }


def summarize(runs: list[float]) -> dict:
    med = statistics.median(runs)
    spread = (max(runs) - min(runs)) / 2 / med * 100 if med else 0.0
    return {"median": med, "spread_pct": spread, "runs": runs}


def measure(targets: list[Target], params: Params, repeat: int, only: list[str] | None) -> dict:
    results: dict = {}
    workloads = [w for w in WORKLOADS if not only or any(o in w.name for o in only)]
    for w in workloads:
        applies = [t for t in targets if t.name in KIND_TARGETS[w.kind]]
        runs: dict[str, list[float]] = {t.name: [] for t in applies}
        errors: dict[str, str] = {}
        for i in range(repeat):
            for t in applies:
                if t.name in errors:
                    continue
                if not t.alive():
                    t.restart()
                if w.cold_dentries:
                    drop_dentries()
                try:
                    if w.warm_up:
                        w.run(t.root, params, f"{t.name}-{i}-warm-up")
                    runs[t.name].append(w.run(t.root, params, f"{t.name}-{i}"))
                except (BenchmarkError, OSError) as e:
                    errors[t.name] = str(e)
                    if not t.alive():  # restarted before its next workload, above
                        errors[t.name] += f"; the daemon died: {t.log_tail() or 'no message'}"
        results[w.name] = {
            "unit": w.unit,
            "kind": w.kind,
            "targets": {name: summarize(r) for name, r in runs.items() if r},
            "errors": errors,
        }
        print(f"  {w.name}: done", file=sys.stderr, flush=True)
    return results


def _cell(row: dict, name: str) -> str:
    fig = row["targets"].get(name)
    if fig is None:
        return "error" if name in row["errors"] else ""
    med = fig["median"]
    text = f"{med:,.0f}" if med >= 100 else f"{med:.3g}"
    text += f" ±{fig['spread_pct']:.0f}%"
    native = row["targets"].get("native")
    if native and name != "native":
        text += f" ({fig['median'] / native['median']:.2f}×n"
        peer = row["targets"].get("pyfuse3")
        if peer and name not in ("pyfuse3",):
            text += f", {fig['median'] / peer['median']:.1f}×p"
        text += ")"
    return text


def table(results: dict, names: list[str]) -> str:
    """Markdown: one row per workload, one column per target; ×n is the ratio to native, ×p to pyfuse3."""
    head = ["workload", "unit"] + [ALL_TARGETS[n][0] for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wname, row in results.items():
        lines.append("| " + " | ".join([wname, row["unit"]] + [_cell(row, n) for n in names]) + " |")
    return "\n".join(lines)


def plot(results: dict, names: list[str], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no PNG written"
    rows = [w for w, r in results.items() if "native" in r["targets"]]
    shown = [n for n in names if n != "native"]
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(rows) * len(shown) / 2 + 2))
    height = 0.8 / max(1, len(shown))
    for k, name in enumerate(shown):
        ratios = []
        for w in rows:
            fig_t = results[w]["targets"].get(name)
            ratios.append(fig_t["median"] / results[w]["targets"]["native"]["median"] if fig_t else 0.0)
        ax.barh([i + k * height for i in range(len(rows))], ratios, height, label=ALL_TARGETS[name][0])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], rows)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("throughput relative to native (log scale; 1 = native)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help="comma-separated, from: " + ", ".join(ALL_TARGETS)
    )
    parser.add_argument("--only", action="append", help="run only workloads whose name contains this (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="data file size")
    parser.add_argument("--runtime", type=int, default=5, help="seconds per time-based fio job")
    parser.add_argument("--files", type=int, default=10_000, help="files for create+stat+unlink and ls -l")
    parser.add_argument("--inodes", type=int, default=100_000, help="inodes looked up for the RSS figure (0: skip)")
    parser.add_argument("--protocol-seconds", type=float, default=1.0, help="time per protocol figure (0: skip)")
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--png", help="write a chart of the ratios to native here")
    parser.add_argument(
        "--base", help="scratch directory on the filesystem to measure (default: a new one in /var/tmp)"
    )
    parser.add_argument("--report", metavar="JSON", help="print the tables of an earlier run's JSON; measure nothing")
    parser.add_argument(
        "--keep-page-reporting", action="store_true",
        help="leave a VM's free page reporting on during the run (by default it is off for the run, then restored)",
    )
    args = parser.parse_args(argv)
    try:
        if args.report:
            report = json.loads(Path(args.report).read_text())
            print_report(report, [n for n in ALL_TARGETS if any(n in r["targets"] or n in r["errors"]
                                                                  for r in report["results"].values())])
            return 0
        return _run(args)
    except BenchmarkError as e:
        print(f"benchmark: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    names = [n for n in args.targets.split(",") if n]
    require_tools("fio", "git", "tar", "find")
    targets = make_targets(names)
    params = Params(args.size_mib, args.runtime, args.files)
    peer = pyfuse3_example() if "pyfuse3" in names else None
    base = Path(tempfile.mkdtemp(prefix="shuntfs-bench-", dir=args.base or "/var/tmp"))
    source = base / "source"
    source.mkdir()
    report: dict = {"machine": machine(), "params": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    report["machine"]["source_fs"] = source_filesystem(source)
    try:
        print("preparing the source tree ...", file=sys.stderr, flush=True)
        prepare(source, base, params)
        with serving(targets, source, base, peer, params.size_mib, args.keep_page_reporting) as reporting:
            report["machine"]["page_reporting"] = reporting
            report["results"] = measure(targets, params, args.repeat, args.only)
        if args.inodes:
            print("RSS per inode ...", file=sys.stderr, flush=True)
            report["rss_per_inode"] = rss_per_inode(base, args.inodes)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.protocol_seconds:
        report["protocol"] = protocol_bench.measure(args.protocol_seconds)

    print_report(report, names)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.png:
        problem = plot(report["results"], names, args.png)
        if problem:
            print(problem, file=sys.stderr)
    return 0


def print_report(report: dict, names: list[str]) -> None:
    m = report["machine"]
    reporting = m.get("page_reporting", "none")
    print(f"\nLinux {m['kernel']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
          f"source on {m.get('source_fs', '?')}; {report['started']}; median of {report['params']['repeat']}, "
          "interleaved" + ("" if reporting == "none" else f"; free page reporting {reporting}"))
    print(table(report["results"], names))
    for wname, row in report["results"].items():
        for target, err in row["errors"].items():
            print(f"  {wname} on {target}: {' '.join(err.split())[:200]}")
    if "rss_per_inode" in report:
        r = report["rss_per_inode"]
        print(f"\ndaemon RSS with {r['inodes']} inodes known: {r['rss_before'] / 2**20:.1f} -> "
              f"{r['rss_after'] / 2**20:.1f} MiB, {r['bytes_per_inode']:.0f} bytes per inode")
    if "protocol" in report:
        print("\nprotocol layer, no kernel:")
        for name, rate in report["protocol"].items():
            print(f"  {name:24} {rate / 1e3:8.0f} k/s")


if __name__ == "__main__":
    sys.exit(main())
