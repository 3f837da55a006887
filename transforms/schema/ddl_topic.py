"""``SchemaChangeReader``: a worker's read of Debezium's schema change topic (``--ddl_topic``).

The topic holds one record per DDL of the source (``debezium_ddl`` describes the value).  It
is small and is read whole from its beginning at every start: the changes before the offset
the job committed there ran before (``SchemaChangeRecord.done``) and only say what older rows
look like; the ones after it run now (``ddl_apply``).  The job commits the offset after a
change has run, under its own ``--group_id``, never through the rows' read (the topic is kept
out of it).

Debezium writes the topic with one partition, so its order is the source's DDL order; the
records of several partitions are put in the order of their source positions (a warning says so
once).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

import orjson

from transforms.errors import ClusterFault, ConfigFault
from transforms.records.cdc import source_position
from transforms.records.reasons import Reject
from transforms.schema.config import SchemaChangeTopic
from transforms.schema.debezium_ddl import (BadSchemaChange, TableChange, UnsupportedSchemaChange,
                                            parse_schema_change)

__all__ = ['SchemaChangeReader', 'SchemaChangeRecord', 'SchemaTopicError', 'MissingSchemaTopic',
           'DEFAULT_CATCH_UP_SECS']

_LOGGER = logging.getLogger('transforms.schema')

# How long a catch-up (the first read; rows of a table the worker does not know) may take before
# the bundle fails (the cluster's fault: the read starts again from the committed offsets).
DEFAULT_CATCH_UP_SECS = 300.0
_BATCH = 500
_OFFSET_INVALID = -1001


class SchemaTopicError(ClusterFault):
  """The schema change topic cannot be read (Kafka unreachable, the topic gone)."""


class MissingSchemaTopic(ConfigFault):
  """``--ddl_topic`` names no topic of the cluster."""


@dataclasses.dataclass(frozen=True)
class SchemaChangeRecord:
  """One record of the topic.

  Attributes:
    partition, offset: where it is.
    changes: its table changes (``parse_schema_change``); ``()`` for DDL that changes no
      table, or when ``error`` is set.
    position: the source position of the DDL (``records.cdc.source_position``), if known.
    done: below the committed offset: it ran before this start.
    error: why the record cannot be followed (not a schema change event, a type without a
      Doris type...); the caller reports it, never silently.
  """
  partition: int
  offset: int
  changes: Tuple[TableChange, ...]
  position: Optional[tuple]
  done: bool
  error: Optional[str] = None
  ddl: str = ''


def _position(changes: Tuple[TableChange, ...]) -> Optional[tuple]:
  if not changes:
    return None
  return source_position(dict(changes[0].position))


class SchemaChangeReader:
  """Reads the schema change topic in order (see the module docstring).

  Args:
    config: the topic and how to reach it.
    consumer_factory: ``factory(librdkafka config) -> Consumer`` (tests); default
      ``confluent_kafka.Consumer``.
    clock: monotonic seconds (tests).
  """

  def __init__(self, config: SchemaChangeTopic, consumer_factory: Optional[Callable] = None,
               clock: Callable[[], float] = time.monotonic):
    self._config = config
    self._factory = consumer_factory
    self._clock = clock
    self._consumer = None
    self._decoder = None
    self._committed: Dict[int, int] = {}
    self._next: Dict[int, int] = {}   # partition -> the next offset to read

  def open(self) -> None:
    """Assigns every partition of the topic from its beginning.

    Raises:
      MissingSchemaTopic: no such topic.
      SchemaTopicError: Kafka cannot be asked.
    """
    if self._consumer is not None:
      return
    import confluent_kafka  # pylint: disable=import-outside-toplevel
    config = dict(self._config.consumer_config)
    # A fetch held for fetch.wait.max.ms (500 ms by default) holds the end-offset requests of a
    # catch-up behind it: 10 ms keeps a catch-up within a few round trips.
    config.update({'enable.auto.commit': 'false', 'auto.offset.reset': 'earliest',
                   'enable.partition.eof': 'false', 'fetch.wait.max.ms': '10'})
    factory = self._factory or confluent_kafka.Consumer
    consumer = factory(config)
    topic = self._config.topic
    try:
      metadata = consumer.list_topics(topic, timeout=30)
      described = metadata.topics.get(topic)
      if described is None or described.error is not None or not described.partitions:
        raise MissingSchemaTopic(
            f'--ddl_topic={topic}: no such topic in Kafka '
            f'({described.error if described is not None and described.error else "not found"})')
      partitions = sorted(described.partitions)
      if len(partitions) > 1:
        _LOGGER.warning('--ddl_topic=%s has %d partitions: their records are ordered by source '
                        'position as they arrive; Debezium writes it with one', topic,
                        len(partitions))
      committed = consumer.committed(
          [confluent_kafka.TopicPartition(topic, p) for p in partitions], timeout=30)
      self._committed = {tp.partition: max(tp.offset, 0) if tp.offset != _OFFSET_INVALID else 0
                         for tp in committed}
      consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                       for p in partitions])
    except MissingSchemaTopic:
      consumer.close()
      raise
    except confluent_kafka.KafkaException as error:
      consumer.close()
      raise SchemaTopicError(f'--ddl_topic={topic}: {error}') from None
    self._consumer = consumer
    self._next = {p: 0 for p in partitions}
    if self._config.value_format.uses_registry:
      self._decoder = self._config.value_format.decoder(keep_retrying=True)

  def close(self) -> None:
    consumer, self._consumer = self._consumer, None
    if consumer is not None:
      consumer.close()
    decoder, self._decoder = self._decoder, None
    if decoder is not None:
      decoder.close()

  def read(self, catch_up: bool = False,
           timeout_secs: float = DEFAULT_CATCH_UP_SECS) -> List[SchemaChangeRecord]:
    """The records fetched since the last call, in order.

    Args:
      catch_up: read up to the end offsets Kafka has now (waiting up to ``timeout_secs``);
        otherwise only what has been fetched already.
    """
    self.open()
    consumer = self._consumer
    ends: Dict[int, int] = {}
    if catch_up:
      ends = self._ends()
    records: List[SchemaChangeRecord] = []
    deadline = self._clock() + timeout_secs
    while True:
      behind = [p for p, end in ends.items() if self._next.get(p, 0) < end]
      messages = consumer.consume(_BATCH, timeout=0.1 if behind else 0)
      for message in messages:
        if message.error() is not None:
          _LOGGER.warning('--ddl_topic=%s: %s', self._config.topic, message.error())
          continue
        records.append(self._record(message))
        self._next[message.partition()] = message.offset() + 1
      if behind and not messages:
        self._positions(behind)  # transaction markers end a transactional topic: no record
      behind = [p for p in behind if self._next.get(p, 0) < ends[p]]
      if behind and self._clock() >= deadline:
        # Rows wait for what the topic says: never guess their table's shape instead.
        raise SchemaTopicError(f'--ddl_topic={self._config.topic}: not read to its end within '
                               f'{timeout_secs:.0f}s (partitions {behind})')
      if not behind:
        return self._in_order(records)
      if not messages and not ends:
        return self._in_order(records)

  def _in_order(self, records: List[SchemaChangeRecord]) -> List[SchemaChangeRecord]:
    """Records of several partitions in the source's order (each partition's kept)."""
    if len(self._next) == 1 or len(records) < 2:
      return records
    last: Optional[tuple] = None
    keys = []
    for record in records:  # a record without a position goes with the one before it
      last = record.position if record.position is not None else last
      keys.append(last)
    try:
      order = sorted(range(len(records)), key=lambda i: (keys[i] is not None, keys[i] or (), i))
    except TypeError:
      return records
    return [records[i] for i in order]

  def _positions(self, partitions: List[int]) -> None:
    """Moves the read positions past offsets that hold no record (transaction markers)."""
    import confluent_kafka  # pylint: disable=import-outside-toplevel
    try:
      positions = self._consumer.position(
          [confluent_kafka.TopicPartition(self._config.topic, p) for p in partitions])
    except confluent_kafka.KafkaException:
      return
    for tp in positions:
      if tp.offset >= 0:
        self._next[tp.partition] = max(self._next.get(tp.partition, 0), tp.offset)

  def ran_elsewhere(self, record: SchemaChangeRecord) -> bool:
    """Whether another reader of the job (another worker) committed past ``record`` since this
    one started: its changes ran there."""
    import confluent_kafka  # pylint: disable=import-outside-toplevel
    if record.done:
      return True
    try:
      committed = self._consumer.committed(
          [confluent_kafka.TopicPartition(self._config.topic, record.partition)], timeout=10)
    except confluent_kafka.KafkaException as error:
      raise SchemaTopicError(f'--ddl_topic={self._config.topic}: {error}') from None
    return bool(committed) and committed[0].offset > record.offset

  def _ends(self) -> Dict[int, int]:
    import confluent_kafka  # pylint: disable=import-outside-toplevel
    ends = {}
    for partition in self._next:
      try:
        _, high = self._consumer.get_watermark_offsets(
            confluent_kafka.TopicPartition(self._config.topic, partition), timeout=10,
            cached=False)
      except confluent_kafka.KafkaException as error:
        raise SchemaTopicError(f'--ddl_topic={self._config.topic}: {error}') from None
      ends[partition] = high
    return ends

  def commit(self, record: SchemaChangeRecord) -> None:
    """Says that ``record``'s changes ran (a restart will not run them again)."""
    import confluent_kafka  # pylint: disable=import-outside-toplevel
    if record.done:
      return
    try:
      answers = self._consumer.commit(offsets=[confluent_kafka.TopicPartition(
          self._config.topic, record.partition, record.offset + 1)], asynchronous=False)
    except confluent_kafka.KafkaException as error:
      raise SchemaTopicError(f'--ddl_topic={self._config.topic}: cannot commit offset '
                             f'{record.offset + 1}: {error}') from None
    failed = [tp for tp in answers or () if tp.error is not None]
    if failed:
      raise SchemaTopicError(f'--ddl_topic={self._config.topic}: cannot commit offset '
                             f'{record.offset + 1}: {failed[0].error}')
    self._committed[record.partition] = record.offset + 1

  def _record(self, message) -> SchemaChangeRecord:
    partition, offset = message.partition(), message.offset()
    done = offset < self._committed.get(partition, 0)
    value = message.value()
    if value is None:
      return SchemaChangeRecord(partition, offset, (), None, done)  # a tombstone
    try:
      decoded = (self._decoder.decode(value, self._config.topic)[0] if self._decoder is not None
                 else orjson.loads(value))
      changes = tuple(parse_schema_change(decoded))
    except (orjson.JSONDecodeError, Reject, BadSchemaChange, UnsupportedSchemaChange,
            ValueError) as error:
      return SchemaChangeRecord(partition, offset, (), None, done, error=str(error))
    ddl = changes[0].ddl if changes else ''
    if not changes and isinstance(decoded, dict):
      ddl = str((decoded.get('payload') or decoded).get('ddl') or '')
    return SchemaChangeRecord(partition, offset, changes, _position(changes), done, ddl=ddl)
