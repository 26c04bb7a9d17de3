"""Process-level memory setting for the commands that stream long videos (``generate``, ``demo``).

glibc's malloc serves big blocks with mmap only above a threshold that it raises by itself (up to 32 MB)
each time such a block is freed. After the first VAE chunk, the decoder's buffers (tens of MB each) come
from the heap instead, where they fragment it: the peak then creeps up with the number of chunks, that is
with the video's length. A fixed threshold keeps every big block in its own mapping, returned to the system
when freed. Measured on ``generate`` at 128x128: peak RSS 1.01 / 1.09 / 1.23 GB for 10 s / 2 min / 10 min
of poses without it, 0.84 / 0.92 / 0.96 GB with it. Only this process is affected, and only on glibc.

It is opt-in (``generate`` / ``demo --flat-memory``): every big block then comes as fresh pages from the
kernel, which made generation 1.6x slower on a 2-core AMD EPYC VM (60 s of poses at 128x128, one thread:
11.4 frames per second and 0.63 GB peak with it, 18.4 and 0.78 GB without), and real time matters more.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

_M_MMAP_THRESHOLD = -3             # mallopt parameter number (glibc malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20     # blocks from 1 MiB up get their own mapping
FLAT_MEMORY_HELP = ("give every block of 1 MiB or more its own memory mapping: the peak memory stays flat in the "
                    "video's length (0.63 GB for 60 s at 128x128 instead of 0.78) but frames come up to 1.6x slower")

log = logging.getLogger(__name__)


def map_large_blocks(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc malloc's mmap threshold (see the module doc); False where there is no glibc mallopt."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    log.info("malloc mmap threshold fixed at %d bytes: %s", threshold, done)
    return done
