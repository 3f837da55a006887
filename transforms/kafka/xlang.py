"""``ReadKafkaChunksXlang``: Beam's Java KafkaIO as a drop-in for the native reader.

For ``--kafka_reader=xlang`` on Flink or Dataflow, where some users prefer
KafkaIO.  It needs Java and an expansion service when the pipeline is built.
KafkaIO hands records one by one, so each becomes a one-record chunk
(``[offset, offset + 1)``): ``ParseRecords`` and ``CommitOffsets`` work
unchanged, at one element per record downstream.  KafkaIO's own offset commit
stays off (it would commit on bundle finalization, before the rows are
loaded); ``CommitOffsets`` commits loaded rows only.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import apache_beam as beam

from transforms.kafka.config import KafkaConfigError
from transforms.types import KafkaChunk, KafkaRecord

__all__ = ['ReadKafkaChunksXlang', 'record_of_java_row', 'single_record_chunk']

_LIBRDKAFKA_ONLY = ('logger', 'error_cb', 'stats_cb')


def record_of_java_row(row) -> KafkaRecord:
  """A ``KafkaRecord`` from one row of KafkaIO's read-with-metadata output."""
  headers = getattr(row, 'headers', None)
  headers = tuple((h.key, h.value) for h in headers) if headers else None
  return KafkaRecord(row.topic, row.partition, row.offset, row.key, row.value, row.timestamp,
                     headers)


def single_record_chunk(record: KafkaRecord) -> KafkaChunk:
  """The chunk ``[offset, offset + 1)`` holding ``record`` alone."""
  return KafkaChunk(record.topic, record.partition, record.offset, record.offset + 1, [record])


def _chunk_of_java_row(row) -> KafkaChunk:
  return single_record_chunk(record_of_java_row(row))


class ReadKafkaChunksXlang(beam.PTransform):
  """Reads Kafka with Beam's Java KafkaIO and emits one-record ``KafkaChunk``s.

  Args:
    consumer_config: Kafka consumer properties (values passed as strings).
    topics: topics to read.
    stop_at_end: not supported (KafkaIO has only ``max_num_records`` and
      ``max_read_time``); True raises.
    max_num_records: stop after this many records (tests, demos).
    max_read_time_secs: stop after this long.
    expansion_service: ``host:port`` of a running expansion service, else
      Beam starts its own (needs Java).
    timestamp_policy: ``ProcessingTime``, ``CreateTime`` or ``LogAppendTime``.
    **kwargs: other ``apache_beam.io.kafka.ReadFromKafka`` arguments.

  Raises:
    KafkaConfigError: ``stop_at_end`` was asked for.
  """

  def __init__(self, consumer_config: Dict[str, Any], topics: Sequence[str],
               stop_at_end: bool = False, max_num_records: Optional[int] = None,
               max_read_time_secs: Optional[int] = None,
               expansion_service: Optional[str] = None, timestamp_policy: str = 'CreateTime',
               **kwargs):
    super().__init__()
    from apache_beam.io.kafka import ReadFromKafka  # pylint: disable=import-outside-toplevel
    if stop_at_end:
      raise KafkaConfigError('stop_at_end is not supported with --kafka_reader=xlang (KafkaIO has '
                             'no read-to-end mode); use --kafka_reader=native')
    java_config = {key: str(value).lower() if isinstance(value, bool) else str(value)
                   for key, value in consumer_config.items() if key not in _LIBRDKAFKA_ONLY}
    java_config.setdefault('enable.auto.commit', 'false')
    # Java's KafkaConsumer defaults to read_uncommitted (librdkafka to read_committed): records
    # of aborted transactions must never load, whichever reader is used.
    java_config.setdefault('isolation.level', 'read_committed')
    self.read = ReadFromKafka(
        consumer_config=java_config, topics=list(topics), max_num_records=max_num_records,
        max_read_time=max_read_time_secs, commit_offset_in_finalize=False,
        timestamp_policy=timestamp_policy, with_metadata=True,
        expansion_service=expansion_service, **kwargs)

  def expand(self, pbegin):
    return (pbegin
            | 'ReadFromKafkaXlang' >> self.read
            | 'ToKafkaChunk' >> beam.Map(_chunk_of_java_row).with_output_types(KafkaChunk))
