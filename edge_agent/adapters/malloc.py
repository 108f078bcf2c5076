"""Large blocks straight from the kernel and back to it: glibc's ``M_MMAP_THRESHOLD``, fixed.

At a million customers a token table is two arrays of 16 and 8 MB and a period's temporary keys
16 MB, allocated and freed at every rotation. glibc serves a block above its mmap threshold
with its own ``mmap`` and unmaps it on ``free``, but it *raises* that threshold to the size of
every such block freed (the "dynamic threshold", up to 32 MB on 64-bit), so from the first
rotation on the tables came from the heap instead, where the small objects allocated between
them keep the holes they leave from ever being trimmed. Measured in the week benchmark at a
million customers: the heap grew 18 MB a day with its in-use bytes flat (145 MB), all of it
free space glibc could not give back. Setting the threshold explicitly turns the dynamic
adjustment off (mallopt(3)), so blocks of a megabyte or more are mapped and unmapped as asked.

Elsewhere than glibc (musl has a ``mallopt`` that does nothing) this changes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

_LOGGER = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # <malloc.h>
# A token table slice's buffers are 32 KB and the registry's read pages about 1 MB: a megabyte
# keeps every per-customer buffer of a chain-sized registry out of the heap, and the small
# objects in it.
LARGE_BLOCK_BYTES = 1 << 20


def map_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Fix the process's mmap threshold at ``threshold`` bytes; whether the C library took it."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    taken = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not taken:
        _LOGGER.info("the C library keeps its own mmap threshold: large blocks may stay in the heap")
    return taken
