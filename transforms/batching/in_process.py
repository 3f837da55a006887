"""The batching engine: open batches in a worker's memory, time limits checked every bundle.

Everything after the Kafka read is one fused stage in the process that reads
-- on the local runner, Flink and Prism alike -- and the read ends a bundle at
least every second.  So this engine keeps each key's open batch in memory
across bundles (one ``Batcher`` per run and process, shared by the stage's
instances), flushes it when its row, byte or column rule fires as rows
arrive, checks every key's time limit at each element and bundle end, and
flushes a batch once the reads of all the partitions its rows came from have ended, and
everything once every read of the process has ended (reason ``end_of_input``, or ``drain``
when the run stops).  Unloaded rows are never
acknowledged, and the reader's checkpoints stop at the durable offsets, so a
crash (or a runner's restore) reads them again.

Why not Beam state and timers: rows would cross a shuffle (a pickle and a
trip through the runner per row) and their order per key would be lost in
it (Flink's batch mode sorts a key's elements without keeping their order);
and the FnApiRunner schedules a processing-time timer by its *hold*
timestamp, which the SDK sets to the input element's timestamp -- the
record's time, already past -- and delivers every pending timer of the
family at once (``fn_runner.py``: ``_collect_written_timers``;
``bundle_processor.py``: ``OutputTimer.set``): each batch's timer fired at
the next bundle (measured: 80 loads of ~400 rows where the limits allowed 3).

``Batcher`` is the engine itself, pure Python: its tests drive it with a
fake clock.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.batching.flushes import Flush, FlushReporter
from transforms.batching.limits import (BUNDLE_END, DRAIN, END_OF_INPUT, MEMORY_LIMIT,
                                        SCHEMA_CHANGE, TIMEOUT, BatchLimits, OpenBatch,
                                        cut_batches)
from transforms.runtime import RunContext, acquire, release
from transforms.types import Row, RowBatch, TableMap, table_of_key

__all__ = ['Batcher', 'OrderViolationError']


class OrderViolationError(RuntimeError):
  """Rows of a partition arrived after newer rows of it had been batched for the same key.

  Loading them would let an older version of a key overwrite a newer one.  The
  reader hands on a partition's chunks in offset order, so this means the
  order was lost on the way: the step fails, and the read starts again from
  the durable offsets (nothing newer than them was loaded in this order).
  """


class _KeyBatch:
  """One key's open batch: the rule's state, the rows themselves and the partitions they came
  from (``(topic, partition)``; None for a row of no partition)."""
  __slots__ = ('state', 'rows', 'limits', 'sources')

  def __init__(self, limits: BatchLimits):
    self.state = OpenBatch()
    self.rows: List[Row] = []
    self.limits = limits
    self.sources: Set[Optional[Tuple[str, int]]] = set()


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
    self._limits = TableMap.of(table_limits)
    self._max_pending_bytes = max_pending_bytes
    self._batches: Dict[Tuple[str, int], _KeyBatch] = {}
    # (key, topic, partition) -> (offset, part) of the newest row batched: order per key comes
    # from the offsets, not from the order chunks arrive in.
    self._newest: Dict[Tuple[Tuple[str, int], str, int], Tuple[int, int]] = {}
    self._cut: Dict[Tuple[str, int], int] = {}  # key -> batches cut so far
    # (deadline, key) of open batches; stale entries are skipped when popped.
    self._deadlines: List[Tuple[float, Tuple[str, int]]] = []
    self.pending_bytes = 0
    self.pending_rows = 0

  def add(self, key: Tuple[str, int], rows: Sequence[Row], now: float) -> List[Flush]:
    """Adds rows for ``key`` (a chunk's: one partition, in offset order); returns the batches
    the rows completed.

    Raises:
      OrderViolationError: a row is older than one of its partition already
        batched for ``key``.
    """
    if rows and rows[0].topic is not None:
      self._check_order(key, rows)
    batch = self._batches.get(key)
    if batch is None:
      batch = self._batches[key] = _KeyBatch(self._limits.get(table_of_key(key), self._default))
    flushes = []
    count_before, size_before = batch.state.count, batch.state.size
    start = 0
    for end, reason, size in cut_batches(rows, batch.state, batch.limits, now):
      flushes.append(Flush(key, batch.rows + list(rows[start:end]), reason, size,
                           max(0.0, now - batch.state.started), batch.limits, self._next_seq(key)))
      batch.rows = []
      start = end
    batch.rows.extend(rows[start:])
    if flushes:
      batch.sources = set()
    if batch.rows:
      _add_sources(batch.sources, batch.rows if flushes else rows)
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

  def _check_order(self, key: Tuple[str, int], rows: Sequence[Row]) -> None:
    first, last = rows[0], rows[-1]
    if (first.topic, first.partition) != (last.topic, last.partition) or (
        (first.offset, first.part) > (last.offset, last.part)):
      # Not one chunk's rows: check them one by one.
      for row in rows:
        self._check_order(key, (row,))
      return
    where = (key, first.topic, first.partition)
    newest = self._newest.get(where)
    if newest is not None and (first.offset, first.part) <= newest:
      raise OrderViolationError(
          f'{key[0]} (shard {key[1]}): offset {first.offset} of {first.topic}[{first.partition}] '
          f'arrived after offset {newest[0]} was batched; the read starts again from the durable '
          'offsets')
    self._newest[where] = (last.offset, last.part)

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

  def flush_ended(self, ended: Callable[[Tuple[str, int]], bool], now: float) -> List[Flush]:
    """Every open batch whose rows all come from partitions whose reads ended (reason
    ``end_of_input``): no row will join it, so it need not wait for its limits nor for the
    other reads (a whole database's small tables load while the big ones are still read)."""
    return [self._close(key, END_OF_INPUT, now) for key, batch in list(self._batches.items())
            if batch.state.count and batch.sources and
            all(source is not None and ended(source) for source in batch.sources)]

  def flush_table(self, table: str, reason: str, now: float) -> List[Flush]:
    """Every open batch of ``table`` (all its shards); their deadlines go stale."""
    return [self._close(key, reason, now) for key, batch in list(self._batches.items())
            if key[0] == table and batch.state.count]

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
    return Flush(key, batch.rows, reason, state.size, max(0.0, now - state.started), batch.limits,
                 self._next_seq(key))

  def _next_seq(self, key: Tuple[str, int]) -> int:
    seq = self._cut.get(key, 0)
    self._cut[key] = seq + 1
    return seq


def _add_sources(sources: Set[Optional[Tuple[str, int]]], rows: Sequence[Row]) -> None:
  first, last = rows[0], rows[-1]
  if (first.topic, first.partition) == (last.topic, last.partition):
    sources.add(None if first.topic is None else (first.topic, first.partition))  # a chunk's
  else:
    sources.update(None if row.topic is None else (row.topic, row.partition) for row in rows)


class _SharedBatcher:
  """A ``Batcher`` shared by the stage's DoFn instances of one process, with its lock."""

  def __init__(self, batcher: Batcher):
    self.batcher = batcher
    self.lock = threading.Lock()
    self.published: Dict[str, Tuple[int, int]] = {}
    self.ended_seen = 0  # reads ended when open batches were last checked for them


class BatchFn(beam.DoFn):
  """``BatchPerTable``'s DoFn: the process's ``Batcher`` across bundles.

  Args:
    default_limits, table_limits, max_pending_bytes: the ``Batcher``'s.
    context: the run; its runtime holds the batcher and says when every read
      of the process has ended.
    clock: seconds since the epoch.
    name: the transform's id (one batcher per transform and process).
    hold_across_bundles: keep open batches across bundles (the rows come
      from the run's own read, which re-reads what a crash lost); else flush
      everything at each bundle's end (rows from another read).
  """

  def __init__(self, default_limits: BatchLimits, table_limits: Mapping[str, BatchLimits],
               max_pending_bytes: Optional[int], context: RunContext,
               clock: Callable[[], float], name: str, hold_across_bundles: bool = True):
    self._default = default_limits
    self._limits = TableMap.of(table_limits)
    self._max_pending_bytes = max_pending_bytes
    self._context = context
    self._clock = clock
    self._name = name
    self._hold = hold_across_bundles

  def setup(self):
    self._runtime = acquire(self._context)
    self._reporter = FlushReporter(self._runtime.monitor)
    self._shared = self._runtime.shared(
        f'batching.{self._name}',
        lambda: _SharedBatcher(Batcher(self._default, self._limits, self._max_pending_bytes)))

  def teardown(self):
    release(self._runtime)

  def process(self, element):
    key, rows = element
    now = self._clock()
    if getattr(rows, 'barrier', False):
      # A schema change of the table waits: its open batches go to the sink, then the barrier.
      with self._shared.lock:
        flushes = self._shared.batcher.flush_table(table_of_key(key), SCHEMA_CHANGE, now)
      for flush in flushes:
        self._reporter.report(flush)
        yield flush.key, RowBatch.numbered(flush.rows, flush.seq)
      yield key, rows
      return
    try:
      with self._shared.lock:
        flushes = self._shared.batcher.add(key, rows, now)
        flushes.extend(self._shared.batcher.due(now))
        if self._hold:
          flushes.extend(self._ended_flushes(now))
    except Exception as error:
      self._runtime.fail(error)
      raise
    for flush in flushes:
      self._reporter.report(flush)
      yield flush.key, RowBatch.numbered(flush.rows, flush.seq)

  def _ended_flushes(self, now: float) -> List[Flush]:
    """The open batches whose partitions' reads ended since the last look (under the lock):
    checked at each element as well as at the bundle's end, as a bundle of a whole database's
    partitions can last seconds, and a table whose rows are all read need not wait for it."""
    shared, sources = self._shared, self._runtime.sources
    ended = sources.ended_count()
    if ended == shared.ended_seen:
      return []
    shared.ended_seen = ended
    return shared.batcher.flush_ended(sources.has_ended, now)

  def finish_bundle(self):
    now = self._clock()
    runtime = self._runtime
    shared = self._shared
    with shared.lock:
      if not self._hold:
        flushes = shared.batcher.flush_all(BUNDLE_END, now)
      elif runtime.sources.finished():
        flushes = shared.batcher.flush_all(DRAIN if runtime.stop_requested() else END_OF_INPUT,
                                           now)
      else:
        flushes = shared.batcher.due(now)
        flushes.extend(self._ended_flushes(now))
      tables = shared.batcher.open_batches()
      changed = {table: tables.get(table, (0, 0))
                 for table in set(shared.published) | set(tables)
                 if shared.published.get(table) != tables.get(table, (0, 0))}
      shared.published = tables
    for flush in flushes:
      self._reporter.report(flush)
      yield WindowedValue((flush.key, RowBatch.numbered(flush.rows, flush.seq)), MIN_TIMESTAMP,
                          [GlobalWindow()])
    for table, (rows, size) in changed.items():
      self._reporter.pending(table, rows, size)
