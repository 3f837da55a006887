"""Journal entries and LoadedRanges: which rows a loaded batch holds, exactly."""

import pytest

from transforms.delivery import JournalEntry, LoadedRanges, ranges_of
from transforms.sharding import shard_of
from transforms.types import Row

pytestmark = pytest.mark.unit


def _row(offset, part=0, partition=0, table='db.t', fields=None, topic='t'):
  return Row(table, fields or {'id': offset}, 'upsert', topic, partition, offset, 10, part=part)


def _entry(ranges, table='db.t', shard=0, shards=1, key_columns=(), loaded=True, label='l1'):
  return JournalEntry(label=label, group='g', table=table, shard=shard, shards=shards,
                      key_columns=key_columns, ranges=tuple(ranges), rows=1, loaded=loaded)


def test_ranges_are_first_and_last_position_per_partition():
  rows = [_row(5, partition=1), _row(3, partition=0), _row(7, 1, partition=1),
          _row(7, 0, partition=1), _row(4, partition=0)]
  assert ranges_of(rows) == [('t', 0, (3, 0), (4, 0)), ('t', 1, (5, 0), (7, 1))]
  assert ranges_of([Row('db.t', {}, 'upsert', None, None, None, 1)]) == []


def test_entries_round_trip_as_json_and_reject_anything_else():
  entry = _entry([('t', 0, (3, 0), (9, 2))], shard=1, shards=4, key_columns=('id',))
  assert JournalEntry.from_json(entry.to_json()) == entry
  for bad in (b'not json', b'{"v": 99}', b'[]', b'{"v": 1, "label": "x"}'):
    with pytest.raises(ValueError, match='journal entry'):
      JournalEntry.from_json(bad)


def test_committed_past_every_row():
  entry = _entry([('t', 0, (3, 0), (9, 0)), ('t', 1, (1, 0), (1, 0))])
  assert entry.committed_past({('t', 0): 10, ('t', 1): 2})
  assert not entry.committed_past({('t', 0): 9, ('t', 1): 2})   # row 9 not committed
  assert not entry.committed_past({('t', 0): 10})                # partition 1 never committed


def test_loaded_ranges_cover_exactly_the_rows_of_loaded_batches():
  loaded = LoadedRanges([_entry([('t', 0, (10, 0), (19, 0))]),
                         _entry([('t', 0, (30, 1), (31, 0))], label='l2')])
  assert [o for o in range(40) if loaded.covers(_row(o))] == list(range(10, 20)) + [31]
  # Rows of one record split between batches: (30, 0) is not in the second batch, (30, 1) is.
  assert not loaded.covers(_row(30, part=0)) and loaded.covers(_row(30, part=1))
  assert not loaded.covers(_row(15, partition=1))
  assert not loaded.covers(_row(15, table='db.other'))
  assert not loaded.covers(_row(15, topic='other'))
  assert not LoadedRanges() and LoadedRanges([_entry([('t', 0, (0, 0), (0, 0))])])


def test_sharded_batches_cover_only_their_shard_with_the_sharding_they_were_made_with():
  rows = [_row(o, fields={'id': o % 7, 'v': o}) for o in range(50)]
  shard_one = [r for r in rows if shard_of(r, ('id',), 3) == 1]
  entry = _entry(ranges_of(shard_one), shard=1, shards=3, key_columns=('id',))
  loaded = LoadedRanges([entry])
  assert [r.offset for r in rows if loaded.covers(r)] == [r.offset for r in shard_one]


def test_overlapping_runs_of_different_shards_are_all_looked_at():
  rows = [_row(o, fields={'id': o}) for o in range(40)]
  entries = [_entry(ranges_of([r for r in rows if shard_of(r, ('id',), 2) == s]), shard=s,
                    shards=2, key_columns=('id',), label=f's{s}') for s in (0, 1)]
  loaded = LoadedRanges(entries)
  assert all(loaded.covers(r) for r in rows)
