"""Exactly-once delivery across crashes: the load journal and recovery at start.

``journal`` writes each batch's label and exact rows to a compacted Kafka
topic before its load is sent (``write_ahead``: the journal as the sink's
write-ahead log); recovery (``pipelines.recovery``, where the job starts) reads
it and asks the cluster about batches whose fate is unknown; ``skip`` drops
the rows recovery found loaded; ``entries`` holds the pure descriptions
(``JournalEntry``, ``LoadedRanges``) they share.  With
``--delivery_guarantee=at_least_once`` none of it runs.
"""

from transforms.delivery.entries import JournalEntry, LoadedRanges, ranges_of
from transforms.delivery.journal import (DEFAULT_JOURNAL_TOPIC, JournalConfig,
                                         JournalUnavailableError, LoadJournal,
                                         ensure_journal_topic, read_journal)
from transforms.delivery.skip import SkipLoadedRows
from transforms.delivery.write_ahead import JournalWriteAhead

__all__ = [
    'DEFAULT_JOURNAL_TOPIC',
    'JournalConfig',
    'JournalEntry',
    'JournalUnavailableError',
    'JournalWriteAhead',
    'LoadJournal',
    'LoadedRanges',
    'ensure_journal_topic',
    'SkipLoadedRows',
    'ranges_of',
    'read_journal',
]
