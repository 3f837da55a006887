"""Per-table batching: ``KeyByTable`` and ``BatchPerTable``.

Seed 002's flush strategy, per table: each table (each shard of a hot table)
builds its own batch and flushes it when *its* row count, *its* byte size or
*its* waiting time reaches *its* limits, or when the set of columns in its
rows changes; at the end of input (and on drain) everything is flushed.  A
small table never waits for a big one, and only due tables flush.

Why not ``beam.GroupIntoBatches`` itself: Python's ``GroupIntoBatches``
(Beam 2.77) takes ``batch_size``, ``max_buffering_duration_secs`` and
``clock`` only -- it counts elements, has no byte limit, no per-key limits and
no way to cut a batch when the columns change; and rows travel here in chunks
(one element = many rows), which it would count as one.  ``_BatchRowsFn`` is
the same engine -- a keyed stateful DoFn with a bag, a count, a processing-time
buffering timer and an end-of-window timer, as in
``apache_beam/transforms/util.py::_pardo_group_into_batches`` -- that counts
rows and bytes and knows each table's limits.  Every flush is logged with the
reason it fired (``rows_threshold``, ``size_threshold``, ``timeout``,
``columns_changed``, ``end_of_input``), the batch's size, its waiting time and
the thresholds.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import time
import zlib
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.coders import BytesCoder, PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import CombineFn
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (BagStateSpec, CombiningValueStateSpec,
                                              ReadModifyWriteStateSpec, TimerSpec, on_timer)

from transforms import prom
from transforms.types import Row, RowBatch, column_names, fields_of, slim, table_of_key

__all__ = [
    'BatchLimits',
    'KeyByTable',
    'BatchPerTable',
    'DEFAULT_BATCH_ROWS',
    'DEFAULT_BATCH_BYTES',
    'DEFAULT_BATCH_INTERVAL_SECS',
    'FLUSH_REASONS',
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 10_000
DEFAULT_BATCH_BYTES = 10 * 1024 * 1024
DEFAULT_BATCH_INTERVAL_SECS = 30.0
METRICS_NAMESPACE = 'kafka_to_doris'

ROWS_THRESHOLD = 'rows_threshold'
SIZE_THRESHOLD = 'size_threshold'
TIMEOUT = 'timeout'
COLUMNS_CHANGED = 'columns_changed'
END_OF_INPUT = 'end_of_input'
FLUSH_REASONS = (ROWS_THRESHOLD, SIZE_THRESHOLD, TIMEOUT, COLUMNS_CHANGED, END_OF_INPUT)


@dataclasses.dataclass(frozen=True)
class BatchLimits:
  """When one table's batch is flushed, and how the table is spread.

  Attributes:
    rows: flush at this many rows (``--batch_rows``).
    bytes: flush at this many bytes of NDJSON (``--batch_bytes``).
    interval_secs: flush a batch this long after its first row
      (``--batch_interval_secs``).
    split_on_column_change: start a new batch when the columns change.
    shards: spread the table over this many keys (hot tables use many
      workers); rows with equal ``key_columns`` values share a shard.
    key_columns: the table's key, for sharding without reordering a key.
  """
  rows: int = DEFAULT_BATCH_ROWS
  bytes: int = DEFAULT_BATCH_BYTES
  interval_secs: float = DEFAULT_BATCH_INTERVAL_SECS
  split_on_column_change: bool = True
  shards: int = 1
  key_columns: Tuple[str, ...] = ()

  def __post_init__(self):
    if not isinstance(self.rows, int) or self.rows < 1:
      raise ValueError(f'--batch_rows: must be an integer >= 1, got {self.rows!r}')
    if not isinstance(self.bytes, int) or self.bytes < 1:
      raise ValueError(f'--batch_bytes: must be an integer >= 1, got {self.bytes!r}')
    if not self.interval_secs > 0:
      raise ValueError(f'--batch_interval_secs: must be > 0, got {self.interval_secs!r}')
    if not isinstance(self.shards, int) or self.shards < 1:
      raise ValueError(f'shards: must be an integer >= 1, got {self.shards!r}')
    object.__setattr__(self, 'key_columns', tuple(self.key_columns))


def _shard_of(row: Row, key_columns: Sequence[str], shards: int) -> int:
  if key_columns:
    fields = fields_of(row)
    key = '\x1f'.join(str(fields.get(column)) for column in key_columns)
  else:
    # No key: any spread keeps correctness; partition keeps each one's order.
    key = f'{row.topic}\x1f{row.partition}'
  return zlib.crc32(key.encode('utf-8', 'replace')) % shards


class _KeyByTableFn(beam.DoFn):

  def __init__(self, limits: Mapping[str, BatchLimits]):
    self._limits = dict(limits)

  def process(self, element):
    table, rows = element
    limits = self._limits.get(table)
    if limits is None or limits.shards == 1:
      yield (table, 0), [slim(row) for row in rows]
      return
    by_shard: Dict[int, List[Row]] = {}
    for row in rows:
      by_shard.setdefault(_shard_of(row, limits.key_columns, limits.shards), []).append(slim(row))
    for shard, shard_rows in by_shard.items():
      yield (table, shard), shard_rows


class KeyByTable(beam.PTransform):
  """``(table, [Row])`` chunks -> ``((table, shard), [Row])`` keyed chunks.

  Rows leave slim (``transforms.types.slim``): from here on a row that has
  its Kafka bytes travels without the parsed dict.

  A table with ``shards > 1`` in its limits is spread over that many keys by a
  hash of its key columns, so one busy table is batched and loaded by many
  workers while all changes to one key stay on one shard, in order.

  Args:
    table_limits: per-table ``BatchLimits`` (only ``shards`` and
      ``key_columns`` matter here).
  """

  def __init__(self, table_limits: Optional[Mapping[str, BatchLimits]] = None):
    super().__init__()
    self._limits = dict(table_limits or {})

  def expand(self, chunks):
    return chunks | 'KeyByTable' >> beam.ParDo(_KeyByTableFn(self._limits)).with_output_types(
        beam.typehints.Tuple[beam.typehints.Tuple[str, int], RowBatch])


class _SumFn(CombineFn):
  """Sums ints (a picklable, deterministic combiner for a state cell)."""

  def create_accumulator(self):
    return 0

  def add_input(self, accumulator, value):
    return accumulator + value

  def merge_accumulators(self, accumulators):
    return sum(accumulators)

  def extract_output(self, accumulator):
    return accumulator


def _columns_of(row: Row) -> Tuple[str, ...]:
  return column_names(row)


def _seconds(value) -> float:
  """A clock difference in seconds (fake clocks may return Beam Durations)."""
  micros = getattr(value, 'micros', None)
  return micros / 1e6 if micros is not None else float(value)


def _mb(nbytes: int) -> str:
  return f'{nbytes / (1024 * 1024):.2f}MB'


class _BatchRowsFn(beam.DoFn):
  """The stateful engine: one batch per key, flushed on the key's own limits."""

  # Pickled chunks: the SDK state cache weighs cached values object by object
  # (objsize), which for lists of rows cost more than the pickling itself.
  ROWS = BagStateSpec('rows', BytesCoder())
  COUNT = CombiningValueStateSpec('count', VarIntCoder(), _SumFn())
  SIZE = CombiningValueStateSpec('size', VarIntCoder(), _SumFn())
  COLUMNS = ReadModifyWriteStateSpec('columns', PickleCoder())
  STARTED = ReadModifyWriteStateSpec('started', PickleCoder())
  BUFFERING_TIMER = TimerSpec('buffering', TimeDomain.REAL_TIME)
  END_OF_WINDOW_TIMER = TimerSpec('end_of_window', TimeDomain.WATERMARK)

  def __init__(self, default_limits: BatchLimits, table_limits: Mapping[str, BatchLimits],
               clock: Callable[[], float]):
    self._default = default_limits
    self._limits = dict(table_limits)
    self._clock = clock
    self._flushes = {reason: Metrics.counter(METRICS_NAMESPACE, f'flushes_{reason}')
                     for reason in FLUSH_REASONS}
    self._batch_rows = Metrics.distribution(METRICS_NAMESPACE, 'flushed_batch_rows')

  def _limits_for(self, table: str) -> BatchLimits:
    return self._limits.get(table, self._default)

  def process(self, element, window=beam.DoFn.WindowParam,
              rows_state=beam.DoFn.StateParam(ROWS), count_state=beam.DoFn.StateParam(COUNT),
              size_state=beam.DoFn.StateParam(SIZE), columns_state=beam.DoFn.StateParam(COLUMNS),
              started_state=beam.DoFn.StateParam(STARTED),
              buffering_timer=beam.DoFn.TimerParam(BUFFERING_TIMER),
              end_of_window_timer=beam.DoFn.TimerParam(END_OF_WINDOW_TIMER)):
    key, chunk = element
    table = table_of_key(key)
    limits = self._limits_for(table)
    end_of_window_timer.set(window.end)
    count = count_state.read()
    size = size_state.read()
    columns = columns_state.read() if limits.split_on_column_change else None
    pending: List[Row] = []
    for row in chunk:
      if limits.split_on_column_change:
        row_columns = _columns_of(row)
        if row_columns != columns:
          if count:
            yield self._flush(key, table, limits, COLUMNS_CHANGED, pending, size,
                              rows_state, count_state, size_state, started_state, buffering_timer)
            pending, count, size = [], 0, 0
          columns = row_columns
          columns_state.write(columns)
      if not count:
        self._start_batch(limits, started_state, buffering_timer)
      pending.append(row)
      count += 1
      size += row.size + 1
      reason = (ROWS_THRESHOLD if count >= limits.rows else
                SIZE_THRESHOLD if size >= limits.bytes else None)
      if reason:
        yield self._flush(key, table, limits, reason, pending, size, rows_state,
                          count_state, size_state, started_state, buffering_timer)
        pending, count, size = [], 0, 0
    if pending:
      rows_state.add(pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL))
      count_state.add(len(pending))
      size_state.add(sum(row.size + 1 for row in pending))
    prom.BATCH_CURRENT_ROWS.labels(table).set(count)
    prom.BATCH_CURRENT_BYTES.labels(table).set(size)

  def _start_batch(self, limits, started_state, buffering_timer):
    now = self._clock()
    started_state.write(now)
    buffering_timer.set(now + limits.interval_secs)

  def _flush(self, key, table, limits: BatchLimits, reason: str, pending: List[Row], size: int,
             rows_state, count_state, size_state, started_state, buffering_timer):
    rows: List[Row] = []
    for stored in rows_state.read():
      rows.extend(pickle.loads(stored))
    rows.extend(pending)
    started = started_state.read()
    waited_ms = _seconds(self._clock() - started) * 1000.0 if started is not None else 0.0
    rows_state.clear()
    count_state.clear()
    size_state.clear()
    started_state.clear()
    buffering_timer.clear()
    self._flushes[reason].inc()
    self._batch_rows.update(len(rows))
    prom.BATCH_FLUSH_SECONDS.labels(table, reason).observe(waited_ms / 1000.0)
    prom.BATCH_CURRENT_ROWS.labels(table).set(0)
    prom.BATCH_CURRENT_BYTES.labels(table).set(0)
    shard = key[1] if isinstance(key, tuple) and len(key) > 1 else 0
    _LOGGER.info(
        'Table %s flush triggered by %s: shard=%s table_rows=%d table_size=%s rows_threshold=%d '
        'size_threshold=%s waiting_time=%.0f ms time_threshold=%.0f ms', table, reason, shard,
        len(rows), _mb(size), limits.rows, _mb(limits.bytes), waited_ms,
        limits.interval_secs * 1000.0)
    return key, rows

  def _flush_stored(self, key, reason, rows_state, count_state, size_state, started_state,
                    buffering_timer):
    if not count_state.read():
      return
    table = table_of_key(key)
    yield self._flush(key, table, self._limits_for(table), reason, [], size_state.read(),
                      rows_state, count_state, size_state, started_state, buffering_timer)

  @on_timer(BUFFERING_TIMER)
  def on_buffering_timer(self, key=beam.DoFn.KeyParam, rows_state=beam.DoFn.StateParam(ROWS),
                         count_state=beam.DoFn.StateParam(COUNT),
                         size_state=beam.DoFn.StateParam(SIZE),
                         started_state=beam.DoFn.StateParam(STARTED),
                         buffering_timer=beam.DoFn.TimerParam(BUFFERING_TIMER)):
    yield from self._flush_stored(key, TIMEOUT, rows_state, count_state, size_state, started_state,
                                  buffering_timer)

  @on_timer(END_OF_WINDOW_TIMER)
  def on_end_of_window(self, key=beam.DoFn.KeyParam, rows_state=beam.DoFn.StateParam(ROWS),
                       count_state=beam.DoFn.StateParam(COUNT),
                       size_state=beam.DoFn.StateParam(SIZE),
                       started_state=beam.DoFn.StateParam(STARTED),
                       buffering_timer=beam.DoFn.TimerParam(BUFFERING_TIMER)):
    yield from self._flush_stored(key, END_OF_INPUT, rows_state, count_state, size_state,
                                  started_state, buffering_timer)


class BatchPerTable(beam.PTransform):
  """Batches keyed row chunks per table on each table's own limits.

  Input: ``((table, shard), [Row])`` chunks from ``KeyByTable``.  Output:
  ``((table, shard), [Row])`` batches ready for ``WriteToStreamLoad``.

  Args:
    default_limits: limits of tables without their own
      (``--batch_rows``, ``--batch_bytes``, ``--batch_interval_secs``).
    table_limits: per-table ``BatchLimits`` (from ``--table_config``).
    clock: seconds since the epoch, for the buffering timer (tests inject a
      fake clock with ``TestStream``).
  """

  def __init__(self, default_limits: Optional[BatchLimits] = None,
               table_limits: Optional[Mapping[str, BatchLimits]] = None,
               clock: Callable[[], float] = time.time):
    super().__init__()
    self._default = default_limits or BatchLimits()
    self._limits = dict(table_limits or {})
    for table, limits in self._limits.items():
      if not isinstance(limits, BatchLimits):
        raise ValueError(f'table_limits[{table!r}] must be a BatchLimits')
    self._clock = clock

  def expand(self, keyed_chunks):
    return keyed_chunks | 'BatchRows' >> beam.ParDo(
        _BatchRowsFn(self._default, self._limits, self._clock)).with_output_types(
            beam.typehints.Tuple[beam.typehints.Tuple[str, int], RowBatch])
