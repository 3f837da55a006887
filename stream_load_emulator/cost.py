"""A cost model so benchmarks can replay a real cluster's Stream Load latency and capacity.

Each load on a BE takes at least ``fixed_overhead_ms + bytes / (mb_per_sec * 2**20)``
seconds (the emulator sleeps for what its own work did not already use), and at most
``max_concurrent_loads_per_be`` loads run on one BE at a time; further loads wait for a slot,
as Doris queues them on its stream load thread pool
(https://doris.apache.org/docs/data-operate/import/load-high-availability and the
``webserver_num_workers`` / ``streaming_load`` BE configs). The default throughput, 19 MB/s,
is a single-load figure quoted for a small Doris cluster; measure your own and pass it in.
"""

import dataclasses
import threading
from typing import Optional

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CostModel:
  """Per-load latency and per-BE concurrency.

  Attributes:
    fixed_overhead_ms: time every load takes regardless of size (txn begin, plan, publish).
    mb_per_sec: body throughput of one load, in MiB/s.
    max_concurrent_loads_per_be: loads one BE runs at once (None: unbounded).
  """
  fixed_overhead_ms: float = 0.0
  mb_per_sec: float = 19.0
  max_concurrent_loads_per_be: Optional[int] = None

  def __post_init__(self):
    if self.fixed_overhead_ms < 0:
      raise ValueError('fixed_overhead_ms must be >= 0, got %r' % self.fixed_overhead_ms)
    if self.mb_per_sec <= 0:
      raise ValueError('mb_per_sec must be > 0, got %r' % self.mb_per_sec)
    if self.max_concurrent_loads_per_be is not None and self.max_concurrent_loads_per_be < 1:
      raise ValueError('max_concurrent_loads_per_be must be >= 1, got %r'
                       % self.max_concurrent_loads_per_be)

  def load_secs(self, nbytes: int) -> float:
    """How long a load of ``nbytes`` takes on the modelled cluster."""
    return self.fixed_overhead_ms / 1000.0 + nbytes / (self.mb_per_sec * MIB)

  def new_slots(self) -> Optional[threading.BoundedSemaphore]:
    """A semaphore bounding one BE's concurrent loads (None when unbounded)."""
    if self.max_concurrent_loads_per_be is None:
      return None
    return threading.BoundedSemaphore(self.max_concurrent_loads_per_be)
