"""The in-process batching engine: open batches in memory, time limits checked every bundle.

On the local runner everything after the Kafka read is one fused stage in
this process, and the read ends a bundle at least every second.  So this
engine keeps each key's open batch in memory across bundles, flushes it when
its row, byte or column rule fires as rows arrive, checks every key's time
limit at each element and bundle end, and flushes everything when the read
is finished (reason ``end_of_input``) or stopped (``drain``).  Unloaded rows
are never acknowledged, so a crash re-reads them.

Why not Beam timers here: the FnApiRunner schedules a processing-time timer
by its *hold* timestamp, which the SDK sets to the input element's
timestamp -- the record's time, already past -- and then delivers every
pending timer of the family at once (``fn_runner.py``:
``_collect_written_timers`` takes ``min(hold_timestamp)``;
``bundle_processor.py``: ``OutputTimer.set`` uses the input timestamp as the
hold for processing time).  Each batch's timer fired at the next bundle:
measured, 80 loads of ~400 rows where the limits allowed 3.

``Batcher`` is the engine itself, pure Python: its tests drive it with a
fake clock.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.batching.flushes import Flush, FlushReporter
from transforms.batching.limits import (DRAIN, END_OF_INPUT, MEMORY_LIMIT, TIMEOUT, BatchLimits,
                                        OpenBatch, cut_batches)
from transforms.kafka import stop
from transforms.types import Row, table_of_key

__all__ = ['Batcher']


class _KeyBatch:
  """One key's open batch: the rule's state and the rows themselves."""
  __slots__ = ('state', 'rows', 'limits')

  def __init__(self, limits: BatchLimits):
    self.state = OpenBatch()
    self.rows: List[Row] = []
    self.limits = limits


class Batcher:
  """Open batches of many keys in memory, each flushed on its own table's limits.

  Args:
    default_limits: limits of tables without their own.
    table_limits: per-table limits.
    max_pending_bytes: when the open batches of all keys together exceed
      this, the largest is flushed (reason ``memory_limit``), so memory stays
      bounded however many tables there are; None: no bound.
  """

  def __init__(self, default_limits: BatchLimits, table_limits: Mapping[str, BatchLimits],
               max_pending_bytes: Optional[int] = None):
    self._default = default_limits
    self._limits = dict(table_limits)
    self._max_pending_bytes = max_pending_bytes
    self._batches: Dict[Tuple[str, int], _KeyBatch] = {}
    # (deadline, key) of open batches; stale entries are skipped when popped.
    self._deadlines: List[Tuple[float, Tuple[str, int]]] = []
    self.pending_bytes = 0
    self.pending_rows = 0

  def add(self, key: Tuple[str, int], rows: Sequence[Row], now: float) -> List[Flush]:
    """Adds rows for ``key``; returns the batches the rows completed."""
    batch = self._batches.get(key)
    if batch is None:
      batch = self._batches[key] = _KeyBatch(self._limits.get(table_of_key(key), self._default))
    flushes = []
    count_before, size_before = batch.state.count, batch.state.size
    start = 0
    for end, reason, size in cut_batches(rows, batch.state, batch.limits, now):
      flushes.append(Flush(key, batch.rows + list(rows[start:end]), reason, size,
                           max(0.0, now - batch.state.started), batch.limits))
      batch.rows = []
      start = end
    batch.rows.extend(rows[start:])
    if batch.state.count and (not count_before or flushes):
      heapq.heappush(self._deadlines, (batch.state.started + batch.limits.interval_secs, key))
    # Only this key's open batch changed.
    self.pending_bytes += batch.state.size - size_before
    self.pending_rows += batch.state.count - count_before
    if self._max_pending_bytes is not None:
      while self.pending_bytes > self._max_pending_bytes and self.pending_rows:
        largest = max(self._batches, key=lambda k: self._batches[k].state.size)
        flushes.append(self._close(largest, MEMORY_LIMIT, now))
    return flushes

  def due(self, now: float) -> List[Flush]:
    """The batches whose time limit has come (reason ``timeout``)."""
    flushes = []
    while self._deadlines and self._deadlines[0][0] <= now:
      deadline, key = heapq.heappop(self._deadlines)
      batch = self._batches.get(key)
      if batch is None or not batch.state.count:
        continue
      if batch.state.started + batch.limits.interval_secs != deadline:
        continue  # a stale entry: this batch started after that deadline was set
      flushes.append(self._close(key, TIMEOUT, now))
    return flushes

  def flush_all(self, reason: str, now: float) -> List[Flush]:
    """Every open batch (the job drains or the input ended)."""
    flushes = [self._close(key, reason, now) for key, batch in list(self._batches.items())
               if batch.state.count]
    self._deadlines.clear()
    return flushes

  def open_batches(self) -> Dict[str, Tuple[int, int]]:
    """table -> (rows, bytes) waiting in its open batches."""
    tables: Dict[str, Tuple[int, int]] = {}
    for key, batch in self._batches.items():
      rows, size = tables.get(key[0], (0, 0))
      tables[key[0]] = (rows + batch.state.count, size + batch.state.size)
    return tables

  def _close(self, key: Tuple[str, int], reason: str, now: float) -> Flush:
    batch = self._batches.pop(key)
    state = batch.state
    self.pending_bytes -= state.size
    self.pending_rows -= state.count
    return Flush(key, batch.rows, reason, state.size, max(0.0, now - state.started), batch.limits)


class _InProcessBatchFn(beam.DoFn):
  """``BatchPerTable`` on the local runner: a ``Batcher`` across bundles."""

  def __init__(self, default_limits: BatchLimits, table_limits: Mapping[str, BatchLimits],
               max_pending_bytes: Optional[int], stop_token: Optional[str],
               clock: Callable[[], float]):
    self._default = default_limits
    self._limits = dict(table_limits)
    self._max_pending_bytes = max_pending_bytes
    self._stop_token = stop_token
    self._clock = clock
    self._reporter = FlushReporter()

  def setup(self):
    self._batcher = Batcher(self._default, self._limits, self._max_pending_bytes)
    self._published_tables: Dict[str, Tuple[int, int]] = {}

  def process(self, element):
    key, rows = element
    now = self._clock()
    flushes = self._batcher.add(key, rows, now)
    flushes.extend(self._batcher.due(now))
    for flush in flushes:
      self._reporter.report(flush)
      yield flush.key, flush.rows

  def finish_bundle(self):
    now = self._clock()
    if stop.source_finished(self._stop_token):
      reason = DRAIN if stop.stop_requested(self._stop_token) else END_OF_INPUT
      flushes = self._batcher.flush_all(reason, now)
    else:
      flushes = self._batcher.due(now)
    for flush in flushes:
      self._reporter.report(flush)
      yield WindowedValue((flush.key, flush.rows), MIN_TIMESTAMP, [GlobalWindow()])
    self._publish_pending()

  def _publish_pending(self):
    tables = self._batcher.open_batches()
    for table in set(self._published_tables) | set(tables):
      rows, size = tables.get(table, (0, 0))
      if self._published_tables.get(table) != (rows, size):
        FlushReporter.pending(table, rows, size)
    self._published_tables = tables


