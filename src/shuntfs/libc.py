"""The C library, for the system calls Python's os module lacks: one handle for the package.

ctypes caches each function on the handle, so a module that sets a function's ``argtypes`` sets them for every
module; each function's types are therefore set once, by the module that uses it.
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int) -> int:
    """``result`` of a libc call, or the OSError its errno names when it is negative."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result
