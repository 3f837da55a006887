"""Recovery at start: what the journal says was sent, and which of it Doris holds.

Run once when the job starts, before anything is read (``recover``).  For
each journal entry of this consumer group:

* its rows are all below the committed offsets: nothing to do, tombstone it;
* marked loaded: its rows are in Doris;
* otherwise its fate is unknown (the job died between the write-ahead and
  the loaded mark): the label decides.  ``get_load_state`` is polled until the
  load has ended (a load the dead job still had on the wire may finish);
  VISIBLE/COMMITTED means loaded; a PRECOMMITTED two-phase load is committed
  (its rows are exactly the entry's) and counts as loaded; ABORTED/UNKNOWN
  means nothing was loaded: tombstone it, the rows load again.

The result, ``LoadedRanges``, is handed to ``KeyByTable``, which skips (and
acknowledges) those rows when the restarted job reads them again.  Rows that
load again get new labels; the old labels are never reused.

Bound: an entry whose loaded mark was lost *and* whose label has expired
(Doris ``streaming_label_keep_max_second``, 12 h by default; StarRocks
``label_keep_max_second``, 3 days) answers UNKNOWN and is loaded again: a
job down longer than that, killed in the window between a load and its
mark, can load that one batch twice.
"""

from __future__ import annotations

import logging
from typing import List

from transforms.delivery.entries import JournalEntry, LoadedRanges
from transforms.delivery.journal import JournalConfig, LoadJournal, committed_offsets, read_journal
from transforms.kafka.config import new_consumer
from transforms.stream_load.client import StreamLoadClient
from transforms.stream_load.config import StreamLoadConfig
from transforms.stream_load.outcome import LOADED_STATES

__all__ = ['recover', 'RecoveryReport']

_LOGGER = logging.getLogger(__name__)


class RecoveryReport:
  """What recovery found.

  Attributes:
    loaded: ``LoadedRanges`` of the batches whose rows are in Doris and not committed.
    entries: entries read from the journal for this group.
    settled: labels whose fate was asked of Doris.
    committed_prepared: prepared (2PC) labels committed now.
    forgotten: entries removed (committed past, or never loaded).
  """

  def __init__(self, loaded: LoadedRanges, entries: int, settled: int, committed_prepared: int,
               forgotten: int):
    self.loaded = loaded
    self.entries = entries
    self.settled = settled
    self.committed_prepared = committed_prepared
    self.forgotten = forgotten

  def summary(self) -> str:
    return (f'load journal: {self.entries} entries; {self.loaded.entries} loaded batch ranges to '
            f'skip, {self.settled} labels asked of the cluster ({self.committed_prepared} prepared '
            f'ones committed), {self.forgotten} entries removed')


def recover(journal_config: JournalConfig, load_config: StreamLoadConfig) -> RecoveryReport:
  """Reads the journal of this group and settles every entry (see the module docstring).

  Raises:
    JournalUnavailableError: Kafka did not answer.
    StreamLoadError: the cluster did not answer about a label.
  """
  entries = read_journal(journal_config)
  if not entries:
    return RecoveryReport(LoadedRanges(), 0, 0, 0, 0)
  consumer = new_consumer(journal_config.kafka_config)
  try:
    committed = committed_offsets(consumer, {tp for e in entries for tp in e.partitions()})
  finally:
    consumer.close()
  loaded: List[JournalEntry] = []
  forget: List[str] = []
  settled = prepared = 0
  journal = LoadJournal(journal_config)
  with StreamLoadClient(load_config) as client:
    for entry in entries:
      if entry.committed_past(committed):
        forget.append(entry.label)
        continue
      if entry.loaded:
        loaded.append(entry)
        continue
      settled += 1
      state = client.load_state(entry.table, entry.label)
      if state not in LOADED_STATES:
        before = state
        state = client.settle_label(entry.table, entry.label, commit_prepared=True)
        prepared += before in ('PRECOMMITTED', 'PREPARED')
      _LOGGER.info('load journal: label %s of %s (%d rows) was in flight when the job stopped: '
                   '%s', entry.label, entry.table, entry.rows, state)
      if state in LOADED_STATES:
        loaded.append(entry)
        journal.mark_loaded(entry)
      else:
        forget.append(entry.label)
  journal.forget(forget)
  journal.close()
  report = RecoveryReport(LoadedRanges(loaded), len(entries), settled, prepared, len(forget))
  _LOGGER.info(report.summary())
  return report
