"""The stateful batching engine for portable runners (Flink, Dataflow, Prism, job services).

The same engine as Beam's ``GroupIntoBatches``
(``apache_beam/transforms/util.py::_pardo_group_into_batches``): a keyed
stateful DoFn with a bag, counts, a processing-time buffering timer and an
end-of-window timer, here counting rows and bytes with each table's own
limits (``cut_batches``).  The runner checkpoints the open batches with its
state, fires the buffering timer at the batch's time limit, and the
end-of-window timer when the input ends or the job drains (Flink
stop-with-savepoint ``--drain``, Dataflow drain).

Why not ``beam.GroupIntoBatches`` itself: in Beam 2.77 it counts elements
(ours are chunks of rows), has no byte limit, one limit for all keys, and
cannot cut a batch when the columns change.
"""

from __future__ import annotations

import pickle
from typing import Callable, List, Mapping

import apache_beam as beam
from apache_beam.coders import BytesCoder, PickleCoder, VarIntCoder
from apache_beam.transforms.core import CombineFn
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (BagStateSpec, CombiningValueStateSpec,
                                              ReadModifyWriteStateSpec, TimerSpec, on_timer)

from transforms.batching.flushes import Flush, FlushReporter
from transforms.batching.limits import END_OF_INPUT, TIMEOUT, BatchLimits, OpenBatch, cut_batches
from transforms.types import Row, table_of_key

__all__ = []


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


def _seconds(value) -> float:
  """A clock reading in seconds (fake clocks may return Beam Timestamps)."""
  micros = getattr(value, 'micros', None)
  return micros / 1e6 if micros is not None else float(value)


class _StatefulBatchFn(beam.DoFn):
  """One open batch per key in Beam state, flushed on the key's own limits."""

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
    self._reporter = FlushReporter()

  def _limits_for(self, key) -> BatchLimits:
    return self._limits.get(table_of_key(key), self._default)

  def process(self, element, window=beam.DoFn.WindowParam,
              rows_state=beam.DoFn.StateParam(ROWS), count_state=beam.DoFn.StateParam(COUNT),
              size_state=beam.DoFn.StateParam(SIZE), columns_state=beam.DoFn.StateParam(COLUMNS),
              started_state=beam.DoFn.StateParam(STARTED),
              buffering_timer=beam.DoFn.TimerParam(BUFFERING_TIMER),
              end_of_window_timer=beam.DoFn.TimerParam(END_OF_WINDOW_TIMER)):
    key, rows = element
    limits = self._limits_for(key)
    end_of_window_timer.set(window.end)
    now = self._clock()
    count = count_state.read()
    batch = OpenBatch(count=count, size=size_state.read(), columns=columns_state.read(),
                      started=started_state.read() if count else None)
    start = 0
    stored = bool(count)
    for end, reason, size in cut_batches(rows, batch, limits, now):
      flushed: List[Row] = []
      if stored:
        for chunk in rows_state.read():
          flushed.extend(pickle.loads(chunk))
        rows_state.clear()
        stored = False
      flushed.extend(rows[start:end])
      start = end
      yield self._flush(Flush(key, flushed, reason, size,
                              max(0.0, _seconds(now) - _seconds(batch.started)), limits))
    rest = rows[start:]
    if rest:
      rows_state.add(pickle.dumps(list(rest), protocol=pickle.HIGHEST_PROTOCOL))
    count_state.clear()
    size_state.clear()
    if batch.count:
      count_state.add(batch.count)
      size_state.add(batch.size)
      if batch.started != started_state.read():
        started_state.write(batch.started)
        buffering_timer.set(batch.started + limits.interval_secs)
    else:
      started_state.clear()
      buffering_timer.clear()
    columns_state.write(batch.columns)
    FlushReporter.pending(table_of_key(key), batch.count, batch.size)

  def _flush(self, flush: Flush):
    self._reporter.report(flush)
    return flush.key, flush.rows

  def _flush_stored(self, key, reason, rows_state, count_state, size_state, started_state,
                    buffering_timer):
    count = count_state.read()
    if not count:
      return
    rows: List[Row] = []
    for chunk in rows_state.read():
      rows.extend(pickle.loads(chunk))
    started = started_state.read()
    flush = Flush(key, rows, reason, size_state.read(),
                  max(0.0, _seconds(self._clock()) - _seconds(started)), self._limits_for(key))
    rows_state.clear()
    count_state.clear()
    size_state.clear()
    started_state.clear()
    buffering_timer.clear()
    FlushReporter.pending(table_of_key(key), 0, 0)
    yield self._flush(flush)

  @on_timer(BUFFERING_TIMER)
  def on_buffering_timer(self, key=beam.DoFn.KeyParam, rows_state=beam.DoFn.StateParam(ROWS),
                         count_state=beam.DoFn.StateParam(COUNT),
                         size_state=beam.DoFn.StateParam(SIZE),
                         started_state=beam.DoFn.StateParam(STARTED),
                         buffering_timer=beam.DoFn.TimerParam(BUFFERING_TIMER)):
    yield from self._flush_stored(key, TIMEOUT, rows_state, count_state, size_state,
                                  started_state, buffering_timer)

  @on_timer(END_OF_WINDOW_TIMER)
  def on_end_of_window(self, key=beam.DoFn.KeyParam, rows_state=beam.DoFn.StateParam(ROWS),
                       count_state=beam.DoFn.StateParam(COUNT),
                       size_state=beam.DoFn.StateParam(SIZE),
                       started_state=beam.DoFn.StateParam(STARTED),
                       buffering_timer=beam.DoFn.TimerParam(BUFFERING_TIMER)):
    yield from self._flush_stored(key, END_OF_INPUT, rows_state, count_state, size_state,
                                  started_state, buffering_timer)
