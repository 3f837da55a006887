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

What a burst kept (a backlog after an outage, measured in ``bench/soak.py``: a
~12 MB step that stayed for the rest of a 20-minute run) goes back to the kernel
once a quiet minute has passed: ``PeriodicTrim`` calls ``malloc_trim(0)`` every
``TRIM_INTERVAL_SECS``, a cost of milliseconds a minute where trimming at every
free cost ~15 % of the throughput.  It runs a full garbage collection first: with the rare
collections above, cycles (Beam's runner makes classes per bundle) piled up between full ones,
and RSS crept ~1 MB a minute after a burst (measured: 127 -> 132 MB over 140 s; with the
collection flat at 126 MB).  What stays after a burst is the Python allocator's arenas that
the burst's objects spread over and a few long-lived ones still pin (~10 MB after a 30 s
cluster outage at 1,000 records/s: memory mapped in whole MiB, while the live Python objects
grew by ~4 MB).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from typing import Callable, Dict, Optional

__all__ = ['tune_process', 'tune_allocator', 'tune_gc', 'PeriodicTrim', 'TRIM_THRESHOLD_BYTES',
           'TRIM_INTERVAL_SECS', 'GC_THRESHOLDS']

TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
TRIM_INTERVAL_SECS = 60.0
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


def malloc_trim() -> Optional[Callable[[], int]]:
  """glibc's ``malloc_trim(0)``, or None elsewhere."""
  try:
    libc = ctypes.CDLL(None)
    trim = libc.malloc_trim
  except (OSError, AttributeError):
    return None
  trim.argtypes = (ctypes.c_size_t,)
  trim.restype = ctypes.c_int
  return lambda: trim(0)


class PeriodicTrim:
  """Hands the free memory the allocator keeps back to the kernel every ``interval_secs``
  (a daemon thread; ``stop`` ends it).

  Args:
    trim: what trims (default: glibc's ``malloc_trim(0)``).
    interval_secs: how often.
  """

  def __init__(self, trim: Optional[Callable[[], int]] = None,
               interval_secs: float = TRIM_INTERVAL_SECS,
               collect: Callable[[], int] = gc.collect):
    self._trim = trim or malloc_trim()
    self._collect = collect
    self._interval = interval_secs
    self._stopped = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self.trims = 0

  def start(self) -> 'PeriodicTrim':
    if self._trim is not None and self._thread is None:
      self._thread = threading.Thread(target=self._run, name='malloc-trim', daemon=True)
      self._thread.start()
    return self

  def _run(self) -> None:
    while not self._stopped.wait(self._interval):
      self.trim_now()

  def trim_now(self) -> None:
    self._collect()
    self._trim()
    self.trims += 1

  def stop(self) -> None:
    self._stopped.set()


def tune_gc() -> None:
  """Sets ``GC_THRESHOLDS`` (see above)."""
  gc.set_threshold(*GC_THRESHOLDS)


def tune_process() -> Dict[str, bool]:
  """Both settings; returns which were applied (the allocator's only on glibc)."""
  tune_gc()
  return {'gc': True, 'allocator': tune_allocator()}
