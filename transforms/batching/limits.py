"""``BatchLimits`` and the rule that cuts a table's rows into batches; pure Python.

The flush strategy of StarRocks's connectors, per table: each table (each shard of a hot table)
builds its own batch and flushes it when *its* row count, *its* byte size or
*its* waiting time reaches *its* limits, or when the set of columns in its
rows changes; when the job drains, everything is flushed.  ``cut_batches``
is that rule for the rows arriving at one key; both batching engines
(in-process and stateful) apply it, so they cut the same batches.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence, Tuple

from transforms.types import Row

__all__ = [
    'BatchLimits',
    'OpenBatch',
    'cut_batches',
    'DEFAULT_BATCH_ROWS',
    'DEFAULT_BATCH_BYTES',
    'DEFAULT_BATCH_INTERVAL_SECS',
    'ROWS_THRESHOLD',
    'SIZE_THRESHOLD',
    'TIMEOUT',
    'COLUMNS_CHANGED',
    'END_OF_INPUT',
    'DRAIN',
    'MEMORY_LIMIT',
    'FLUSH_REASONS',
]

DEFAULT_BATCH_ROWS = 10_000
DEFAULT_BATCH_BYTES = 10 * 1024 * 1024
DEFAULT_BATCH_INTERVAL_SECS = 30.0

ROWS_THRESHOLD = 'rows_threshold'
SIZE_THRESHOLD = 'size_threshold'
TIMEOUT = 'timeout'
COLUMNS_CHANGED = 'columns_changed'
END_OF_INPUT = 'end_of_input'
DRAIN = 'drain'
MEMORY_LIMIT = 'memory_limit'
# The rows come from another read than ours (Beam YAML): every bundle's rows load before it ends.
BUNDLE_END = 'bundle_end'
# A schema change of the table is about to run: what it holds loads first (a table barrier).
SCHEMA_CHANGE = 'schema_change'
FLUSH_REASONS = (ROWS_THRESHOLD, SIZE_THRESHOLD, TIMEOUT, COLUMNS_CHANGED, END_OF_INPUT, DRAIN,
                 MEMORY_LIMIT, BUNDLE_END, SCHEMA_CHANGE)


@dataclasses.dataclass(frozen=True)
class BatchLimits:
  """When one table's batch is flushed, and how the table is spread.

  Attributes:
    rows: flush at this many rows (``--batch_rows``).
    bytes: flush at this many bytes of body (``--batch_bytes``).
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
    if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
      raise ValueError(f'--batch_rows: must be an integer >= 1, got {self.rows!r}')
    if isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 1:
      raise ValueError(f'--batch_bytes: must be an integer >= 1, got {self.bytes!r}')
    if not isinstance(self.interval_secs, (int, float)) or not self.interval_secs > 0:
      raise ValueError(f'--batch_interval_secs: must be > 0, got {self.interval_secs!r}')
    if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1:
      raise ValueError(f'shards: must be an integer >= 1, got {self.shards!r}')
    object.__setattr__(self, 'key_columns', tuple(self.key_columns))


@dataclasses.dataclass
class OpenBatch:
  """The batch being built at one key: what the cutting rule needs to know of it.

  Attributes:
    count: rows in it.
    size: bytes in it (each row's size plus a line separator).
    columns: the column names of its rows (when columns split batches).
    started: the clock reading when its first row came.
  """
  count: int = 0
  size: int = 0
  columns: Optional[Tuple[str, ...]] = None
  started: Optional[float] = None


def cut_batches(rows: Sequence[Row], batch: OpenBatch, limits: BatchLimits,
                now: float) -> Iterator[Tuple[int, str, int]]:
  """Adds ``rows`` to ``batch``; yields ``(end, reason, size)`` for each batch completed.

  ``end`` is exclusive: the completed batch is what the open batch held
  before ``rows`` (first cut only) plus ``rows[previous end:end]``; ``size``
  is its byte size.  A column change completes the open batch before the
  row; a row or byte limit completes it after the row.  ``batch`` is updated
  in place, describing the batch left open after ``rows``.
  """
  split = limits.split_on_column_change
  max_rows, max_bytes = limits.rows, limits.bytes
  count, size, columns = batch.count, batch.size, batch.columns
  # Rows of one producer share their keys: comparing a row's dict keys with the last row's
  # (a C-level set comparison) spares sorting every row's columns.
  last_keys = None
  for index, row in enumerate(rows):
    if split:
      fields = row.fields
      if fields is not None:
        keys = fields.keys()
        if last_keys is None or keys != last_keys:
          row_columns = tuple(sorted(fields))
          last_keys = keys
          changed = row_columns != columns
        else:
          changed = False
      else:
        row_columns = row.columns
        last_keys = None
        changed = row_columns != columns
      if changed:
        if count:
          yield index, COLUMNS_CHANGED, size
          count = size = 0
        columns = row_columns
    if not count:
      batch.started = now
    count += 1
    size += row.size + 1
    if count >= max_rows or size >= max_bytes:
      yield index + 1, ROWS_THRESHOLD if count >= max_rows else SIZE_THRESHOLD, size
      count = size = 0
  batch.count, batch.size, batch.columns = count, size, columns
  if not count:
    batch.started = None
