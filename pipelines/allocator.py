"""glibc malloc settings for a job running in this process (the local runner).

The job allocates and frees ~1 KB objects by the million -- Kafka values, rows,
their JSON -- and multi-megabyte buffers (chunks between stages, load bodies).
By default glibc hands free memory at the top of a heap back to the kernel as
soon as more than 128 KB of it is free, so the next batch faults the same pages
in again; on a virtual machine each fault costs microseconds (the e2e benchmark
ran ~15% faster with the settings below on the machines this was measured on,
and peak RSS did not grow: ``bench/continuous_bench.py``).

``tune_allocator`` keeps up to ``TRIM_THRESHOLD_BYTES`` free at the top of
each heap (glibc's ``M_TRIM_THRESHOLD``).  The job's memory bound is unchanged: the
kept memory is reused by the next batches, it does not add to them.  Settings
the user made through glibc's own variables (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_THRESHOLD_``) are left as they are, and so
is any other C library.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ['tune_allocator', 'TRIM_THRESHOLD_BYTES']

TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_USER_VARIABLES = ('MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_MMAP_THRESHOLD_')


def tune_allocator() -> bool:
  """Applies the settings above to this process; True if they were applied."""
  if any(os.environ.get(name) for name in _USER_VARIABLES):
    return False
  try:
    libc = ctypes.CDLL(None)
    mallopt = libc.mallopt
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement  (glibc only)
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
