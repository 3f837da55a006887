"""Exactly-once delivery across crashes: the load journal and recovery at start.

``journal`` writes each batch's label and exact rows to a compacted Kafka
topic before its load is sent; ``recovery`` reads it when the job starts and
asks the cluster about batches whose fate is unknown; ``entries`` holds the
pure descriptions (``JournalEntry``, ``LoadedRanges``) both use.  With
``--delivery_guarantee=at_least_once`` none of it runs.
"""

from transforms.delivery.entries import JournalEntry, LoadedRanges, ranges_of
from transforms.delivery.journal import (DEFAULT_JOURNAL_TOPIC, JournalConfig,
                                         JournalUnavailableError, LoadJournal,
                                         ensure_journal_topic, read_journal)
from transforms.delivery.recovery import RecoveryReport, recover
from transforms.delivery.skip import SkipLoadedRows

__all__ = [
    'DEFAULT_JOURNAL_TOPIC',
    'JournalConfig',
    'JournalEntry',
    'JournalUnavailableError',
    'LoadJournal',
    'LoadedRanges',
    'RecoveryReport',
    'ensure_journal_topic',
    'SkipLoadedRows',
    'ranges_of',
    'read_journal',
    'recover',
]
