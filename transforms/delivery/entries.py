"""What the load journal records of a batch, and which rows a loaded batch holds; pure.

A batch of one key (table, shard) holds, from each Kafka partition, a
contiguous run of that key's rows: the batcher cuts each key's rows in
arrival order, and a partition's rows arrive in offset order.  So the first
and last position ``(offset, part)`` per partition, with the table and its
sharding, name exactly the rows of a batch.  ``JournalEntry`` is that
description plus the batch's label; ``LoadedRanges`` answers, for a row read
again after a crash, whether a batch that is known to be loaded already
holds it.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import orjson

from transforms.sharding import shard_of
from transforms.types import Row

__all__ = ['JournalEntry', 'LoadedRanges', 'ranges_of', 'Position', 'SourceRange']

# (offset, part): a row's place in its partition.
Position = Tuple[int, int]
# topic -> partition -> (first, last) positions, both inclusive.
SourceRange = Tuple[str, int, Position, Position]

_FORMAT_VERSION = 1


def ranges_of(rows: Sequence[Row]) -> List[SourceRange]:
  """The first and last position of ``rows`` in each Kafka partition."""
  bounds: Dict[Tuple[str, int], List[Position]] = {}
  for row in rows:
    if row.topic is None:
      continue
    position = (row.offset, row.part)
    known = bounds.get((row.topic, row.partition))
    if known is None:
      bounds[(row.topic, row.partition)] = [position, position]
    elif position < known[0]:
      known[0] = position
    elif position > known[1]:
      known[1] = position
  return [(topic, partition, first, last)
          for (topic, partition), (first, last) in sorted(bounds.items())]


@dataclasses.dataclass(frozen=True)
class JournalEntry:
  """One batch as the journal records it before its load is sent.

  Attributes:
    label: the load's label (the journal's key).
    group: the consumer group (the job) it belongs to.
    table: ``db.tbl``.
    shard: the batch's shard of the table.
    shards: how many shards the table had.
    key_columns: the columns the shards were hashed on.
    ranges: ``(topic, partition, first, last)`` of its rows.
    rows: how many rows it holds.
    loaded: whether the load is known to have succeeded.
    written_ms: when it was written (epoch ms), for operators.
  """
  label: str
  group: str
  table: str
  shard: int
  shards: int
  key_columns: Tuple[str, ...]
  ranges: Tuple[SourceRange, ...]
  rows: int
  loaded: bool = False
  written_ms: int = 0

  def as_loaded(self) -> 'JournalEntry':
    return dataclasses.replace(self, loaded=True, written_ms=int(time.time() * 1000))

  def partitions(self) -> List[Tuple[str, int]]:
    return [(topic, partition) for topic, partition, _, _ in self.ranges]

  def committed_past(self, committed: Dict[Tuple[str, int], int]) -> bool:
    """Whether the group's committed offsets are past every row of the batch."""
    return all(committed.get((topic, partition), -1) > last[0]
               for topic, partition, _, last in self.ranges)

  def to_json(self) -> bytes:
    return orjson.dumps({
        'v': _FORMAT_VERSION, 'label': self.label, 'group': self.group, 'table': self.table,
        'shard': self.shard, 'shards': self.shards, 'key_columns': list(self.key_columns),
        'ranges': [[t, p, list(first), list(last)] for t, p, first, last in self.ranges],
        'rows': self.rows, 'loaded': self.loaded, 'written_ms': self.written_ms})

  @classmethod
  def from_json(cls, value: bytes) -> 'JournalEntry':
    """Parses an entry.

    Raises:
      ValueError: the value is not an entry of a version this code reads.
    """
    try:
      data = orjson.loads(value)
      if data.get('v') != _FORMAT_VERSION:
        raise ValueError(f'journal entry version {data.get("v")!r}')
      return cls(label=data['label'], group=data['group'], table=data['table'],
                 shard=int(data['shard']), shards=int(data['shards']),
                 key_columns=tuple(data['key_columns']),
                 ranges=tuple((t, int(p), (int(f[0]), int(f[1])), (int(l[0]), int(l[1])))
                              for t, p, f, l in data['ranges']),
                 rows=int(data['rows']), loaded=bool(data['loaded']),
                 written_ms=int(data.get('written_ms') or 0))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
      raise ValueError(f'not a load journal entry: {error}') from None


class LoadedRanges:
  """The rows that loaded batches hold, for skipping them when they are read again.

  Args:
    entries: journal entries of batches known to be loaded.
  """

  def __init__(self, entries: Iterable[JournalEntry] = ()):
    runs: Dict[Tuple[str, str, int], List[tuple]] = {}
    for entry in entries:
      for topic, partition, first, last in entry.ranges:
        runs.setdefault((entry.table, topic, partition), []).append(
            (first, last, entry.shard, entry.shards, entry.key_columns))
    # (table, topic, partition) -> runs (first, last, shard, shards, key_columns), by first.
    self._runs = {source: sorted(found) for source, found in runs.items()}
    self._firsts = {source: [run[0] for run in found] for source, found in self._runs.items()}
    self._last = {source: max(run[1] for run in found) for source, found in self._runs.items()}
    self.entries = sum(len(found) for found in self._runs.values())

  def __bool__(self) -> bool:
    return bool(self._runs)

  def __repr__(self) -> str:
    return f'LoadedRanges({self.entries} ranges over {len(self._runs)} table partitions)'

  def holds_source(self, table: str, topic: str, partition: int) -> bool:
    """Whether any loaded batch holds rows of ``table`` from this partition."""
    return (table, topic, partition) in self._runs

  def covers(self, row: Row) -> bool:
    """Whether a loaded batch holds ``row`` (same table, shard and position)."""
    source = (row.table, row.topic, row.partition)
    runs = self._runs.get(source)
    if runs is None:
      return False
    position = (row.offset, row.part)
    if position > self._last[source]:
      return False
    index = bisect.bisect_right(self._firsts[source], position) - 1
    # Runs of different shards may overlap: look back over every run that
    # starts at or before the position.
    while index >= 0:
      first, last, shard, shards, key_columns = runs[index]
      if first <= position <= last and shard_of(row, key_columns, shards) == shard:
        return True
      index -= 1
    return False
