"""The load journal as a sink's write-ahead log (``stream_load.write_ahead``'s interface).

``JournalWriteAhead`` travels with ``WriteToStreamLoad`` (plain settings); on each worker it
opens one ``LoadJournal`` and turns each batch about to load into a ``JournalEntry``: its label,
its table and shard, the exact Kafka offsets of its rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Hashable, Mapping, Optional, Sequence, Tuple

from transforms.delivery.entries import JournalEntry, ranges_of
from transforms.delivery.journal import JournalConfig, LoadJournal
from transforms.types import Row

__all__ = ['JournalWriteAhead']


@dataclasses.dataclass(frozen=True)
class JournalWriteAhead:
  """Where the load journal lives, and how the batches were sharded (recorded in entries).

  Attributes:
    journal: the journal's topic and the job's Kafka settings (``group.id`` = the job).
    table_sharding: per table ``(shards, key_columns)`` as ``KeyByTable`` spread its rows.
  """
  journal: JournalConfig
  table_sharding: Mapping[str, Tuple[int, Tuple[str, ...]]] = dataclasses.field(
      default_factory=dict)

  @property
  def group(self) -> str:
    return self.journal.group

  def open(self) -> '_JournalLog':
    return _JournalLog(LoadJournal(self.journal), self.journal.group, dict(self.table_sharding))


class _JournalLog:
  """One worker's journal, as the sink's ``WriteAheadLog``."""

  def __init__(self, journal: LoadJournal, group: str,
               sharding: Dict[str, Tuple[int, Tuple[str, ...]]]):
    self._journal = journal
    self._group = group
    self._sharding = sharding

  def write_ahead(self, key: Hashable, table: str, label: str,
                  rows: Sequence[Row]) -> Optional[JournalEntry]:
    ranges = ranges_of(rows)
    if not ranges:  # rows that did not come from Kafka: nothing to replay
      return None
    shards, key_columns = self._sharding.get(table, (1, ()))
    shard = key[1] if isinstance(key, tuple) and len(key) > 1 else 0
    entry = JournalEntry(label=label, group=self._group, table=table, shard=shard, shards=shards,
                         key_columns=tuple(key_columns), ranges=tuple(ranges), rows=len(rows))
    self._journal.write_ahead(entry)
    return entry

  def mark_loaded(self, token: Any) -> None:
    self._journal.mark_loaded(token)

  def collect(self) -> None:
    self._journal.collect()

  def close(self) -> None:
    self._journal.close()
