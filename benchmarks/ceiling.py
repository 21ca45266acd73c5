"""How fast sequential I/O through a userspace FUSE data path could be if the server cost nothing.

    python3 -m benchmarks.ceiling [--targets fallback,pyfuse3] [--repeat 5] [--base DIR]

A buffered read or write through FUSE costs the client as well as the server. Its kernel work (filling FUSE's page
cache, allocating and charging the pages, copying to or from the caller, queueing requests) is done in the client's
thread whatever the server does, and one client thread cannot finish faster than its own CPU time. So bytes moved
over the client's CPU time bounds the throughput any server could give that client, and comparing that bound with
another server's measured throughput bounds the ratio any server could reach. fio reports the client's CPU time
(``usr_cpu`` + ``sys_cpu`` of the job's runtime); the server's from its threads' ``schedstat`` around the job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from .targets import BenchmarkError, Target, make_targets, pyfuse3_example, require_tools, serving
from .workloads import MIB, Params, prepare_data, seq_read_job, seq_write_job

ROWS = {"seq read 1 MiB": (seq_read_job, "read"), "seq write 1 MiB + fsync": (seq_write_job, "write")}


def cpu_seconds(pid: int) -> float:
    """CPU time of all of ``pid``'s live threads so far, to the nanosecond (schedstat; stat counts in ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return total / 1e9


def measure_once(target: Target, params: Params, row: str, tag: str) -> dict:
    run, direction = ROWS[row]
    before = cpu_seconds(target.pid) if target.mounted else 0.0
    job = run(target.root, params, tag)
    daemon = cpu_seconds(target.pid) - before if target.mounted else 0.0
    mib = job[direction]["io_bytes"] / MIB
    client = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1000
    return {
        "mb_s": job[direction]["bw_bytes"] / 1e6,
        "client_us_per_mib": client / mib * 1e6,
        "daemon_us_per_mib": daemon / mib * 1e6,
        "ceiling_mb_s": mib * MIB / client / 1e6 if client else float("inf"),
    }


def measure(targets: list[Target], params: Params, repeat: int) -> dict:
    results: dict = {}
    for row in ROWS:
        runs: dict[str, list[dict]] = {t.name: [] for t in targets}
        for i in range(repeat):
            for t in targets:
                if not t.alive():
                    t.restart()
                runs[t.name].append(measure_once(t, params, row, f"{t.name}-{i}"))
        results[row] = {
            name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()
        }
    return results


def table(results: dict, names: list[str]) -> str:
    lines = [
        "| workload | target | MB/s | client CPU µs/MiB | server CPU µs/MiB | ceiling MB/s (client CPU alone) |",
        "|---|---|---|---|---|---|",
    ]
    for row, figures in results.items():
        for name in names:
            f = figures[name]
            server = f"{f['daemon_us_per_mib']:,.0f}" if name != "native" else "-"
            lines.append(f"| {row} | {name} | {f['mb_s']:,.0f} | {f['client_us_per_mib']:,.0f} | {server} | "
                         f"{f['ceiling_mb_s']:,.0f} |")
    if "pyfuse3" in names:
        lines.append("")
        for row, figures in results.items():
            peer = figures["pyfuse3"]["mb_s"]
            for name in names:
                if name in ("pyfuse3", "native"):
                    continue
                f = figures[name]
                line = (f"{row}, {name}: {f['mb_s'] / peer:.1f}× pyfuse3 measured; at most "
                        f"{f['ceiling_mb_s'] / peer:.1f}× with a server that cost nothing")
                if ROWS[row][1] == "write" and "native" in names:
                    # Write-through: the client waits for each WRITE's reply, so its time and the server's add up,
                    # and a server must at least copy the data into the source, which is what native's write
                    # costs its own client. (Bytes per µs are MB/s.)
                    one_copy = MIB / (f["client_us_per_mib"] + figures["native"]["client_us_per_mib"])
                    line += f", {one_copy / peer:.1f}× with one that made one copy and nothing else"
                lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="fallback,pyfuse3", help="comma-separated benchmark targets")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--base", help="scratch directory on the filesystem to measure (default: in /var/tmp)")
    parser.add_argument("--keep-page-reporting", action="store_true", help="see benchmarks.run")
    args = parser.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    try:
        require_tools("fio")
        targets = make_targets(names)
        params = Params(args.size_mib, 1, 0)
        peer = pyfuse3_example() if "pyfuse3" in names else None
        base = Path(tempfile.mkdtemp(prefix="shuntfs-ceiling-", dir=args.base or "/var/tmp"))
        try:
            source = base / "source"
            source.mkdir()
            prepare_data(source, params)
            with serving(targets, source, base, peer, params.size_mib, args.keep_page_reporting):
                results = measure(targets, params, args.repeat)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    except BenchmarkError as e:
        print(f"ceiling: {e}", file=sys.stderr)
        return 1
    print(f"median of {args.repeat}, interleaved, {args.size_mib} MiB per pass")
    print(table(results, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
