"""One flushed batch, and its report: a log line, Beam metrics, Prometheus.

Every flush is logged with the reason it fired (``rows_threshold``,
``size_threshold``, ``timeout``, ``columns_changed``, ``end_of_input``,
``drain``, ``memory_limit``), the batch's rows and size, its waiting time and
the thresholds, as StarRocks's connectors log a flush:

  Table demo.users flush triggered by timeout: shard=0 table_rows=12
  table_size=0.00MB rows_threshold=10000 size_threshold=10.00MB
  waiting_time=2001 ms time_threshold=2000 ms
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, NamedTuple, Optional

from apache_beam.metrics import Metrics

from transforms import metrics
from transforms.batching.limits import FLUSH_REASONS, BatchLimits
from transforms.monitoring import Monitor
from transforms.types import Row

__all__ = ['Flush', 'FlushReporter']

_LOGGER = logging.getLogger('transforms.batching')


class Flush(NamedTuple):
  """A batch ready to load.

  Attributes:
    key: ``(table, shard)``.
    rows: the batch, in arrival order.
    reason: why it was flushed (one of ``FLUSH_REASONS``).
    size: its size in bytes.
    waited_secs: how long its first row waited.
    limits: the table's limits.
    seq: its number among the key's batches, in the order they were cut.
  """
  key: Any
  rows: List[Row]
  reason: str
  size: int
  waited_secs: float
  limits: BatchLimits
  seq: int = 0


def _mb(nbytes: int) -> str:
  return f'{nbytes / (1024 * 1024):.2f}MB'


class FlushReporter:
  """Logs and counts flushes, and tells the stall monitor; create it in a DoFn's ``setup``.

  Args:
    monitor: the process's stall monitor (None: not told).
  """

  def __init__(self, monitor: Optional[Monitor] = None):
    self._monitor = monitor
    self._by_reason: Dict[str, Any] = {
        reason: Metrics.counter(metrics.NAMESPACE, f'flushes_{reason}') for reason in FLUSH_REASONS}
    self._batch_rows = Metrics.distribution(metrics.NAMESPACE, 'flushed_batch_rows')

  def report(self, flush: Flush) -> None:
    table, shard = flush.key
    limits = flush.limits
    if self._monitor is not None:
      self._monitor.table_interval(table, limits.interval_secs)
    self._by_reason[flush.reason].inc()
    self._batch_rows.update(len(flush.rows))
    metrics.BATCH_FLUSH_SECONDS.labels(table, flush.reason).observe(flush.waited_secs)
    _LOGGER.info(
        'Table %s flush triggered by %s: shard=%s table_rows=%d table_size=%s rows_threshold=%d '
        'size_threshold=%s waiting_time=%.0f ms time_threshold=%.0f ms', table, flush.reason,
        shard, len(flush.rows), _mb(flush.size), limits.rows, _mb(limits.bytes),
        flush.waited_secs * 1000.0, limits.interval_secs * 1000.0)

  def pending(self, table: str, rows: int, size: int) -> None:
    """Publishes the rows and bytes waiting in ``table``'s open batch."""
    metrics.BATCH_CURRENT_ROWS.labels(table).set(rows)
    metrics.BATCH_CURRENT_BYTES.labels(table).set(size)
    if self._monitor is not None:
      self._monitor.table_pending(table, rows)
