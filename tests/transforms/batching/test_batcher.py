"""Batcher, the in-process engine: each key flushes on its own limits, never early; a fake clock."""

import pytest

from transforms.batching import BatchLimits, Batcher
from transforms.batching.in_process import OrderViolationError
from transforms.batching.limits import (COLUMNS_CHANGED, DRAIN, END_OF_INPUT, MEMORY_LIMIT,
                                        ROWS_THRESHOLD, SIZE_THRESHOLD, TIMEOUT, OpenBatch,
                                        cut_batches)
from transforms.types import Row

pytestmark = pytest.mark.unit


def _rows(table, n, start=0, size=9, fields=None, partition=0):
  return [Row(table, dict(fields or {'id': i}), 'upsert', 't', partition, start + i, size)
          for i in range(n)]


def _summary(flushes):
  return [(f.key, f.reason, [r.offset for r in f.rows]) for f in flushes]


def test_rows_limit_cuts_exactly_and_keeps_the_rest_open():
  batcher = Batcher(BatchLimits(rows=4, interval_secs=10), {})
  flushes = batcher.add(('db.t', 0), _rows('db.t', 10), now=0.0)
  assert _summary(flushes) == [(('db.t', 0), ROWS_THRESHOLD, [0, 1, 2, 3]),
                               (('db.t', 0), ROWS_THRESHOLD, [4, 5, 6, 7])]
  assert (batcher.pending_rows, batcher.pending_bytes) == (2, 20)


def test_a_batch_is_flushed_by_time_only_once_its_interval_has_passed():
  batcher = Batcher(BatchLimits(rows=1000, interval_secs=10), {})
  batcher.add(('db.t', 0), _rows('db.t', 3), now=100.0)
  for now in (100.0, 105.0, 109.999):
    batcher.add(('db.t', 0), _rows('db.t', 1, start=int(now)), now=now)
    assert batcher.due(now) == []  # arrivals never flush a batch before its time
  flushes = batcher.due(110.0)
  assert [(f.reason, len(f.rows), f.waited_secs) for f in flushes] == [(TIMEOUT, 6, 10.0)]
  assert batcher.due(1000.0) == [] and batcher.pending_rows == 0


def test_each_table_keeps_its_own_limits_and_clock():
  limits = {'db.small': BatchLimits(rows=1000, interval_secs=2),
            'db.big': BatchLimits(rows=5, interval_secs=60)}
  batcher = Batcher(BatchLimits(), limits)
  assert batcher.add(('db.small', 0), _rows('db.small', 3), now=0.0) == []
  assert batcher.add(('db.big', 0), _rows('db.big', 3), now=1.0) == []
  assert _summary(batcher.due(2.0)) == [(('db.small', 0), TIMEOUT, [0, 1, 2])]
  big = batcher.add(('db.big', 0), _rows('db.big', 3, start=3), now=3.0)
  assert _summary(big) == [(('db.big', 0), ROWS_THRESHOLD, [0, 1, 2, 3, 4])]
  assert batcher.due(59.0) == []
  # The big table's open batch started at 3.0 with row 5: due at 63.0.
  assert _summary(batcher.due(63.0)) == [(('db.big', 0), TIMEOUT, [5])]


def test_bytes_and_column_changes_cut_batches():
  batcher = Batcher(BatchLimits(rows=1000, bytes=25), {})
  rows = _rows('db.t', 3) + [Row('db.t', {'id': 9, 'extra': 1}, 'upsert', 't', 0, 3, 9)]
  flushes = batcher.add(('db.t', 0), rows, now=0.0)
  assert [(f.reason, [r.offset for r in f.rows], f.size) for f in flushes] == [
      (SIZE_THRESHOLD, [0, 1, 2], 30)]
  flushes = batcher.add(('db.t', 0), [Row('db.t', {'id': 10}, 'upsert', 't', 0, 4, 1)], now=1.0)
  assert [(f.reason, [r.offset for r in f.rows]) for f in flushes] == [(COLUMNS_CHANGED, [3])]


def test_memory_limit_flushes_the_largest_open_batch():
  batcher = Batcher(BatchLimits(rows=1000, bytes=10_000), {}, max_pending_bytes=100)
  batcher.add(('db.a', 0), _rows('db.a', 3), now=0.0)           # 30 bytes
  flushes = batcher.add(('db.b', 0), _rows('db.b', 8), now=0.0)   # +80 > 100
  assert _summary(flushes) == [(('db.b', 0), MEMORY_LIMIT, list(range(8)))]
  assert batcher.pending_bytes == 30


def test_drain_flushes_every_open_batch():
  batcher = Batcher(BatchLimits(rows=1000), {})
  for table in ('db.a', 'db.b'):
    batcher.add((table, 0), _rows(table, 2), now=0.0)
  flushes = batcher.flush_all(DRAIN, now=1.0)
  assert sorted((f.key[0], f.reason, len(f.rows)) for f in flushes) == [
      ('db.a', DRAIN, 2), ('db.b', DRAIN, 2)]
  assert batcher.pending_rows == 0 and batcher.due(1e9) == []


def test_cut_rule_is_the_same_for_both_engines():
  """The stateful engine resumes from stored counts: the cuts land where the in-process ones do."""
  rows = _rows('db.t', 9)
  limits = BatchLimits(rows=4)
  whole = [end for end, _, _ in cut_batches(rows, OpenBatch(), limits, 0.0)]
  state = OpenBatch()
  first = [end for end, _, _ in cut_batches(rows[:3], state, limits, 0.0)]
  second = [end + 3 for end, _, _ in cut_batches(rows[3:], state, limits, 0.0)]
  assert whole == first + second == [4, 8]


def test_a_partitions_rows_arriving_out_of_offset_order_are_refused_never_batched():
  """Order per key comes from the offsets: rows older than one already batched for the key
  (from the same partition) would let an older version overwrite a newer one once loaded."""
  batcher = Batcher(BatchLimits(rows=4, interval_secs=10), {})
  key = ('db.t', 0)
  flushes = batcher.add(key, _rows('db.t', 5, start=100), now=0.0)  # [100, 105): 4 cut, 1 open
  assert _summary(flushes) == [(key, ROWS_THRESHOLD, [100, 101, 102, 103])]
  with pytest.raises(OrderViolationError, match=r'offset 50 of t\[0\] arrived after offset 104'):
    batcher.add(key, _rows('db.t', 3, start=50), now=1.0)  # an earlier chunk, late
  # Nothing of the late chunk was batched: what is open is still only offset 104.
  assert _summary(batcher.flush_all(DRAIN, 2.0)) == [(key, DRAIN, [104])]
  # Other partitions and other keys have their own order; later offsets go on.
  batcher.add(key, _rows('db.t', 2, start=0, partition=1), now=3.0)
  batcher.add(('db.u', 0), _rows('db.u', 2, start=0), now=3.0)
  batcher.add(key, _rows('db.t', 2, start=105), now=3.0)
  with pytest.raises(OrderViolationError):
    batcher.add(key, _rows('db.t', 1, start=106), now=4.0)  # a duplicate of an offset batched


def test_rows_of_one_record_keep_their_part_order():
  batcher = Batcher(BatchLimits(rows=100, interval_secs=10), {})
  key = ('db.t', 0)
  parts = [Row('db.t', {'id': i}, 'upsert', 't', 0, 7, 9, part=i) for i in range(3)]
  batcher.add(key, parts[:2], now=0.0)
  batcher.add(key, parts[2:], now=0.0)  # the same record's next row: newer, accepted
  with pytest.raises(OrderViolationError):
    batcher.add(key, parts[1:2], now=0.0)


def test_only_batches_whose_partitions_all_ended_are_flushed_for_it():
  batcher = Batcher(BatchLimits(rows=100, interval_secs=10), {})
  batcher.add(('db.a', 0), _rows('db.a', 3, partition=0), now=0.0)
  batcher.add(('db.b', 0), _rows('db.b', 2, partition=0), now=0.0)
  batcher.add(('db.b', 0), _rows('db.b', 2, start=5, partition=1), now=0.0)
  ended = {('t', 0)}
  assert _summary(batcher.flush_ended(ended.__contains__, now=1.0)) == [
      (('db.a', 0), END_OF_INPUT, [0, 1, 2])]
  ended.add(('t', 1))
  assert _summary(batcher.flush_ended(ended.__contains__, now=2.0)) == [
      (('db.b', 0), END_OF_INPUT, [0, 1, 5, 6])]
  # A batch cut by its limits starts over: the rows left open decide its partitions.
  batcher = Batcher(BatchLimits(rows=3, interval_secs=10), {})
  batcher.add(('db.c', 0), _rows('db.c', 2, partition=1), now=0.0)
  batcher.add(('db.c', 0), _rows('db.c', 2, start=7, partition=0), now=0.0)
  assert _summary(batcher.flush_ended({('t', 0)}.__contains__, now=1.0)) == [
      (('db.c', 0), END_OF_INPUT, [8])]
