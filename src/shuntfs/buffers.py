"""Page-aligned memory for request and reply data.

Copies between the kernel and a buffer that is only 16-byte aligned (all a bytearray promises) run at well under
half the speed of copies to a page-aligned one on x86 (rep movsb), so buffers that carry file data are anonymous
mappings instead.
"""

from __future__ import annotations

import mmap

from . import abi

PAGE_SIZE = abi.PAGE_SIZE


def page_buffer(size: int) -> mmap.mmap:
    """``size`` bytes (rounded up to pages), page-aligned, zero-filled on first touch."""
    return mmap.mmap(-1, max(PAGE_SIZE, -(-size // PAGE_SIZE) * PAGE_SIZE))


def request_buffer(max_write: int) -> memoryview:
    """A view to read(2) /dev/fuse requests into, placed so that the data of a WRITE (after the in_header and
    write_in) starts on a page boundary."""
    lead = PAGE_SIZE - abi.READ_BUFFER_OVERHEAD
    size = max(abi.MIN_READ_BUFFER, max_write + abi.READ_BUFFER_OVERHEAD + PAGE_SIZE)
    return memoryview(page_buffer(lead + size))[lead:]
