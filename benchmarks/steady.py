"""Hold the machine's memory steady for a run: free page reporting off, guest memory backed.

In a VM whose balloon device has free page reporting, the guest hands every free block of 2^order pages back to the
host, and the next use of such a block faults in the host. A data row allocates and frees a GiB of page cache per run
(the FUSE targets their own page cache, fio's writes their tmpfs pages), so whether a run lands on reported memory
decides its speed: on the 2-vCPU Firecracker VM of our README, fallback sequential reads ranged 640-1,650 MB/s from
one run to the next, with the daemon's CPU time per GiB ranging 0.36-1.35 s for the same 1,024 requests; with
reporting off they held 1,690-2,310 MB/s. That spread hits every target, pyfuse3 included, and swamps the ratios.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The order of the smallest free block the kernel reports (module parameter of mm/page_reporting.c).
REPORTING_ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
#: No free block is ever this large (MAX_PAGE_ORDER is 10 on x86-64 and arm64 with 4 KiB pages), so none is reported.
NEVER = 11
PAGE = mmap.PAGESIZE


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def back_memory(nbytes: int) -> None:
    """Touch ``nbytes`` of anonymous memory once and free it, so the guest pages it used are backed by the host
    again (reporting off, they stay backed once freed)."""
    if nbytes <= 0:
        return
    with mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as area:
        for offset in range(0, nbytes, PAGE):
            area[offset] = 1


@contextmanager
def steady_memory(enabled: bool = True, touch_bytes: int = 0) -> Iterator[str]:
    """Turn free page reporting off for the body (restored after) and back up to ``touch_bytes`` of the memory the
    run will use (at most half of what is available, so the source's own page cache keeps its room).

    Yields what was done, for the report: ``"off for the run (was order 9)"``, ``"left on (order 9)"`` or ``"none"``
    when the kernel has no page reporting (no balloon device with it)."""
    try:
        before = REPORTING_ORDER.read_text().strip()
    except OSError:
        yield "none"
        return
    if not enabled:
        yield f"left on (order {before})"
        return
    try:
        REPORTING_ORDER.write_text(str(NEVER))
    except OSError as e:
        yield f"left on (order {before}; could not change it: {e.strerror})"
        return
    try:
        back_memory(min(touch_bytes, _available_bytes() // 2))
        yield f"off for the run (was order {before})"
    finally:
        REPORTING_ORDER.write_text(before)
