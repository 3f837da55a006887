"""``KeyByTable``: keys row chunks by (table, shard).

A table with ``shards > 1`` in its limits is spread over that many keys by a
hash of its key columns (``transforms.sharding``), so one busy table is
batched and loaded by many workers while all changes to one key stay on one
shard, in order.  Rows leave slim (``transforms.types.slim``) where they
cross to another stage: a row that has its Kafka bytes travels without the
parsed dict.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import apache_beam as beam

from transforms.batching.limits import BatchLimits
from transforms.sharding import shard_of
from transforms.types import Row, RowBatch, slim

__all__ = ['KeyByTable']


def _as_is(row: Row) -> Row:
  return row


class _KeyByTableFn(beam.DoFn):

  def __init__(self, limits: Mapping[str, BatchLimits], slim_rows: bool):
    self._limits = dict(limits)
    self._slim_rows = slim_rows

  def process(self, element):
    table, rows = element
    if getattr(rows, 'barrier', False):
      yield (table, 0), rows  # the batcher cuts every shard of the table
      return
    limits = self._limits.get(table)
    if limits is None or limits.shards == 1:
      yield (table, 0), [slim(row) for row in rows] if self._slim_rows else rows
      return
    trim = slim if self._slim_rows else _as_is
    by_shard: Dict[int, List[Row]] = {}
    for row in rows:
      by_shard.setdefault(shard_of(row, limits.key_columns, limits.shards), []).append(trim(row))
    for shard, shard_rows in by_shard.items():
      yield (table, shard), shard_rows


class KeyByTable(beam.PTransform):
  """``(table, [Row])`` chunks -> ``((table, shard), [Row])`` keyed chunks.

  Args:
    table_limits: per-table ``BatchLimits`` (only ``shards`` and
      ``key_columns`` matter here).
    slim_rows: drop the parsed dict of rows that carry their bytes, for the
      pickle to a stateful batcher on another stage (default); the local
      runner's fused in-process batcher needs no pickle.
  """

  def __init__(self, table_limits: Optional[Mapping[str, BatchLimits]] = None,
               slim_rows: bool = True):
    super().__init__()
    self._limits = dict(table_limits or {})
    self._slim_rows = slim_rows

  def expand(self, chunks):
    return chunks | 'KeyByTable' >> beam.ParDo(
        _KeyByTableFn(self._limits, self._slim_rows)).with_output_types(
        beam.typehints.Tuple[beam.typehints.Tuple[str, int], RowBatch])
