"""BatchPerTable: per-table limits, column-set splits, timeouts on a fake clock."""

import logging

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.fakes import FakeClock
from transforms.batching import BatchLimits, BatchPerTable, KeyByTable
from transforms.runtime import RunContext, acquire, release
from transforms.types import Row

pytestmark = pytest.mark.transform


def _rows(table, n, start=0, size=10, fields=None):
  return [Row(table, dict(fields or {'id': i}), 'upsert', 'topic', 0, start + i, size)
          for i in range(n)]


_COLLECTED = []


def _collect(item):
  _COLLECTED.append(item)


def _summaries(batches):
  return batches | beam.Map(lambda kv: (kv[0][0], len(kv[1]), [r.offset for r in kv[1]]))


@pytest.mark.parametrize('reads_ended', [False, True])
def test_held_batches_wait_for_their_limits_until_every_read_of_the_worker_ends(
    caplog, reads_ended):
  caplog.set_level(logging.INFO, logger='transforms.batching')
  small, big = 'demo.small', 'demo.big'
  limits = {small: BatchLimits(rows=100, interval_secs=5),
            big: BatchLimits(rows=4, interval_secs=1000)}
  context = RunContext()
  runtime = acquire(context)  # the worker's runtime, as the run's read would hold it
  runtime.sources.reading(('t', 0))
  if reads_ended:
    runtime.sources.ended(('t', 0))
  _COLLECTED.clear()
  with BeamTestPipeline(runner=FnApiRunner()) as p:
    batches = (p | beam.Create([(small, _rows(small, 3)), (big, _rows(big, 11))], reshuffle=False)
               | KeyByTable(limits)
               | BatchPerTable(BatchLimits(), limits, clock=FakeClock(0.0), context=context,
                               hold_across_bundles=True))
    _ = _summaries(batches) | beam.Map(_collect)
  reasons = [(r.args[0], r.args[1]) for r in caplog.records if 'flush triggered' in r.msg]
  cut = [(big, 4, [0, 1, 2, 3]), (big, 4, [4, 5, 6, 7])]
  if reads_ended:
    assert sorted(_COLLECTED) == sorted(cut + [(small, 3, [0, 1, 2]), (big, 3, [8, 9, 10])])
    assert sorted(reasons) == sorted([(big, 'rows_threshold')] * 2 +
                                     [(small, 'end_of_input'), (big, 'end_of_input')])
  else:
    # The rest stays open in the worker's batcher, for its time limit (or the reads' end).
    assert _COLLECTED == cut and reasons == [(big, 'rows_threshold')] * 2
  release(runtime)


def test_a_batch_whose_partitions_reads_ended_is_flushed_while_other_reads_go_on(caplog):
  """A whole database's small tables load when their topics are read, not at the end of all."""
  caplog.set_level(logging.INFO, logger='transforms.batching')
  small, mixed, plain = 'demo.small', 'demo.mixed', 'demo.plain'
  context = RunContext()
  runtime = acquire(context)
  for partition in (0, 1):
    runtime.sources.reading(('topic', partition))
  runtime.sources.ended(('topic', 0))
  mixed_rows = [Row(mixed, {'id': i}, 'upsert', 'topic', i % 2, i, 10) for i in range(4)]
  no_partition = [Row(plain, {'id': 1}, 'upsert', None, None, None, 10)]
  _COLLECTED.clear()
  with BeamTestPipeline(runner=FnApiRunner()) as p:
    batches = (p | beam.Create([(small, _rows(small, 3)), (mixed, mixed_rows),
                                (plain, no_partition)], reshuffle=False)
               | KeyByTable()
               | BatchPerTable(BatchLimits(rows=100, interval_secs=1000), {},
                               clock=FakeClock(0.0), context=context, hold_across_bundles=True))
    _ = _summaries(batches) | beam.Map(_collect)
  reasons = [(r.args[0], r.args[1]) for r in caplog.records if 'flush triggered' in r.msg]
  # demo.mixed has a row of partition 1, still read; demo.plain's row has no partition.
  assert _COLLECTED == [(small, 3, [0, 1, 2])] and reasons == [(small, 'end_of_input')]
  release(runtime)


_READ_RUNTIME = [None]


def _end_partition_0_at(element, table):
  """The read of partition 0 ends before ``table``'s chunk comes (as the reader marks it)."""
  if element[0] == table:
    _READ_RUNTIME[0].sources.ended(('topic', 0))
  return element


def test_a_batch_whose_reads_ended_is_flushed_at_the_next_element_not_the_bundles_end():
  """A bundle over a whole database's partitions can last seconds: a table whose partition's
  read ended within it loads at once (before the rows that come after in the bundle)."""
  small, other, big = 'demo.small', 'demo.other', 'demo.big'
  context = RunContext()
  runtime = _READ_RUNTIME[0] = acquire(context)
  for partition in (0, 1):
    runtime.sources.reading(('topic', partition))
  later = [Row(t, {'id': i}, 'upsert', 'topic', 1, i, 10) for t, i in ((other, 0), (big, 1))]
  _COLLECTED.clear()
  with BeamTestPipeline(runner=FnApiRunner()) as p:
    batches = (p | beam.Create([(small, _rows(small, 3)), (other, later[:1]),
                                (big, later[1:])], reshuffle=False)
               | beam.Map(_end_partition_0_at, other) | KeyByTable()
               | BatchPerTable(BatchLimits(rows=100, interval_secs=1000),
                               {big: BatchLimits(rows=1, interval_secs=1000)},
                               clock=FakeClock(0.0), context=context, hold_across_bundles=True))
    _ = _summaries(batches) | beam.Map(_collect)
  # demo.small goes before demo.big's row-limit flush of a later element; demo.other (of
  # partition 1, still read) stays open.
  assert _COLLECTED == [(small, 3, [0, 1, 2]), (big, 1, [1])]
  release(runtime)

def test_byte_limit_and_column_change_split_batches(caplog):
  caplog.set_level(logging.INFO, logger='transforms.batching')
  table = 'demo.t'
  rows = _rows(table, 5, size=99)                                  # 100 bytes each with newline
  rows += [Row(table, {'id': 9, 'extra': 1}, 'upsert', 'topic', 0, 5, 10)]
  with BeamTestPipeline() as p:
    batches = (p | beam.Create([(table, rows)]) | KeyByTable()
               | BatchPerTable(BatchLimits(rows=1000, bytes=250)))
    assert_that(_summaries(batches), equal_to([
        (table, 3, [0, 1, 2]), (table, 2, [3, 4]), (table, 1, [5])]))
  reasons = [r.args[1] for r in caplog.records if 'flush triggered' in r.msg]
  # Rows from another read than the run's own: each bundle's rest is flushed at its end.
  assert sorted(reasons) == ['bundle_end', 'columns_changed', 'size_threshold']


def test_end_of_input_flushes_everything():
  tables = [f'demo.t{i}' for i in range(5)]
  with BeamTestPipeline() as p:
    batches = (p | beam.Create([(t, _rows(t, 7)) for t in tables]) | KeyByTable()
               | BatchPerTable(BatchLimits(rows=5)))
    assert_that(batches | beam.Map(lambda kv: len(kv[1])) | beam.CombineGlobally(sum),
                equal_to([35]))


_KEYED = []


def _keep_keyed(element):
  (table, shard), rows = element
  _KEYED.append(((table, shard), [row.fields['id'] for row in rows]))


def test_sharding_keeps_each_key_on_one_shard_and_spreads_keys():
  limits = {'demo.hot': BatchLimits(shards=4, key_columns=('id',))}
  rows = [Row('demo.hot', {'id': i % 7, 'v': i}, 'upsert', 't', 0, i, 10) for i in range(200)]
  _KEYED.clear()
  with BeamTestPipeline() as p:
    keyed = p | beam.Create([('demo.hot', rows)]) | KeyByTable(limits)
    _ = keyed | beam.Map(_keep_keyed)
  shards_of_key = {}
  for (table, shard), ids in _KEYED:
    assert table == 'demo.hot' and 0 <= shard < 4
    for key in ids:
      shards_of_key.setdefault(key, set()).add(shard)
  assert sorted(shards_of_key) == list(range(7))
  assert all(len(shards) == 1 for shards in shards_of_key.values())  # one shard per key
  assert len({shard for shards in shards_of_key.values() for shard in shards}) > 1  # spread
  assert sum(len(ids) for _, ids in _KEYED) == 200


def test_limits_are_validated_with_flag_names():
  with pytest.raises(ValueError, match='--batch_rows'):
    BatchLimits(rows=0)
  with pytest.raises(ValueError, match='--batch_bytes'):
    BatchLimits(bytes=-1)
  with pytest.raises(ValueError, match='--batch_interval_secs'):
    BatchLimits(interval_secs=0)
