"""Process settings for a job running in this process (the local runner): malloc and the GC.

``tune_process`` applies both; each is measured by ``bench/e2e_bench.py``.

**The garbage collector.** Rows are tuples holding dicts, and a batch keeps
thousands of them alive: with CPython's default thresholds (700, 10, 10) the
collector runs every 700 net allocations and, every 100 of those, walks every
row held in open batches.  ``GC_THRESHOLDS`` (50,000, 20, 100) makes
collections rare; the job makes few reference cycles, so this costs no memory
(peak RSS: ``bench/continuous_bench.py``).  Measured end to end, both ~40 %
faster: JSON 67-73k -> 92-109k rows/s, Avro 45-49k -> 61-67k rows/s.

**malloc.** The job allocates and frees ~1 KB objects by the million -- Kafka values, rows,
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
import gc
import os
from typing import Dict

__all__ = ['tune_process', 'tune_allocator', 'tune_gc', 'TRIM_THRESHOLD_BYTES', 'GC_THRESHOLDS']

TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
GC_THRESHOLDS = (50_000, 20, 100)
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


def tune_gc() -> None:
  """Sets ``GC_THRESHOLDS`` (see above)."""
  gc.set_threshold(*GC_THRESHOLDS)


def tune_process() -> Dict[str, bool]:
  """Both settings; returns which were applied (the allocator's only on glibc)."""
  tune_gc()
  return {'gc': True, 'allocator': tune_allocator()}
