"""The load journal: a compacted Kafka topic of the batches sent to Doris, written ahead.

Before a batch's load is sent, its ``JournalEntry`` (label, table, shard and
the exact rows, as positions per partition) is produced to the journal topic
and acknowledged by every in-sync replica (``acks=all``, idempotent
producer).  When the load succeeds the entry is written again, marked
loaded; once the consumer group's committed offsets are past every row of
the batch, a tombstone removes it.  The topic is keyed by label and
compacted, so it holds only the batches of the last minutes.

After a crash, ``read_journal`` returns what is left; recovery (see
``recovery``) turns it into the set of rows already in Doris, which the
restarted job skips instead of loading them a second time under new labels.
The journal lives in the same Kafka the records come from: it needs no other
store, works on every runner and survives any worker, with any parallelism.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from transforms.delivery.entries import JournalEntry
from transforms.errors import ClusterFault
from transforms.kafka.config import (KafkaConfigError, client_failure_cause, new_admin,
                                     new_consumer, new_producer, producer_config_of)
from transforms.kafka.control import is_control_key

from transforms.types import DEFAULT_JOURNAL_TOPIC

__all__ = ['JournalConfig', 'LoadJournal', 'JournalUnavailableError', 'read_journal',
           'ensure_journal_topic', 'DEFAULT_JOURNAL_TOPIC']

_LOGGER = logging.getLogger(__name__)

# How long a write-ahead entry may take to be acknowledged before the batch's
# bundle fails (the load is not sent without it).
_WRITE_TIMEOUT_SECS = 30.0
# How often a writer looks for entries whose rows are committed (tombstones).
_COLLECT_INTERVAL_SECS = 30.0
_READ_TIMEOUT_SECS = 10.0
_CREATE_TIMEOUT_SECS = 5.0
_TOPIC_CONFIG = {
    'cleanup.policy': 'compact',
    'min.cleanable.dirty.ratio': '0.1',
    'segment.ms': str(60 * 60 * 1000),
    'delete.retention.ms': str(24 * 60 * 60 * 1000),
}


class JournalUnavailableError(ClusterFault, RuntimeError):
  """The journal topic could not be read or written: no load is sent without it.

  The cluster's fault, not the rows': the sink fails the bundle with it.
  """


@dataclasses.dataclass(frozen=True)
class JournalConfig:
  """Where the journal lives.

  Attributes:
    kafka_config: the source's librdkafka consumer config (bootstrap servers,
      security settings, ``group.id`` = the job).
    topic: the journal topic (shared by jobs; entries carry their group).
  """
  kafka_config: Dict[str, Any]
  topic: str = DEFAULT_JOURNAL_TOPIC

  def __post_init__(self):
    if not self.topic:
      raise ValueError('--journal_topic: a topic name is required with '
                       '--delivery_guarantee=exactly_once')
    if not self.kafka_config.get('group.id'):
      raise KafkaConfigError('the load journal needs the consumer group (group.id)')

  @property
  def group(self) -> str:
    return str(self.kafka_config['group.id'])


class LoadJournal:
  """Writes journal entries; one per worker, opened in ``setup()``, closed in ``teardown()``.

  Thread-safe: the sink's flush threads share it.
  """

  def __init__(self, config: JournalConfig, clock=time.monotonic):
    self._config = config
    self._clock = clock
    self._producer = new_producer(
        producer_config_of(config.kafka_config), **{
            'enable.idempotence': True, 'acks': 'all', 'linger.ms': 0,
            'message.timeout.ms': int(_WRITE_TIMEOUT_SECS * 1000)})
    self._consumer = None
    self._lock = threading.Lock()
    self._loaded: Dict[str, JournalEntry] = {}
    self._next_collect = clock() + _COLLECT_INTERVAL_SECS
    self._errors: List[str] = []

  def _on_delivery(self, error, message) -> None:
    if error is not None:
      self._errors.append(f'{message.key()!r}: {error}')

  def write_ahead(self, entry: JournalEntry) -> None:
    """Records ``entry`` durably; returns once every in-sync replica has it.

    Raises:
      JournalUnavailableError: Kafka did not acknowledge it in time.
    """
    errors: List[Any] = []

    def on_delivery(error, _message):
      if error is not None:
        errors.append(error)

    self._producer.produce(self._config.topic, key=entry.label.encode(), value=entry.to_json(),
                           on_delivery=on_delivery)
    remaining = self._producer.flush(_WRITE_TIMEOUT_SECS)
    if remaining or errors:
      raise JournalUnavailableError(
          f'{entry.table}: the load journal (topic {self._config.topic}) did not take the entry '
          f'of label {entry.label} ({errors[0] if errors else "not acknowledged in time"}); the '
          'load is not sent')

  def mark_loaded(self, entry: JournalEntry) -> None:
    """Records that ``entry``'s load succeeded (asynchronously: recovery can ask Doris too)."""
    loaded = entry.as_loaded()
    self._producer.produce(self._config.topic, key=entry.label.encode(), value=loaded.to_json(),
                           on_delivery=self._on_delivery)
    self._producer.poll(0)
    with self._lock:
      self._loaded[entry.label] = loaded

  def forget(self, labels: List[str]) -> None:
    """Writes tombstones for ``labels`` (their rows are committed, or never loaded)."""
    for label in labels:
      self._producer.produce(self._config.topic, key=label.encode(), value=None,
                             on_delivery=self._on_delivery)
    self._producer.poll(0)

  def collect(self, force: bool = False) -> int:
    """Tombstones this writer's loaded entries whose rows the group has committed.

    Runs at most every ``_COLLECT_INTERVAL_SECS`` unless ``force``; returns
    how many entries were removed.
    """
    now = self._clock()
    with self._lock:
      if not self._loaded or (not force and now < self._next_collect):
        return 0
      self._next_collect = now + _COLLECT_INTERVAL_SECS
      entries = list(self._loaded.values())
    try:
      committed = committed_offsets(self._commit_reader(), {
          tp for entry in entries for tp in entry.partitions()})
    except JournalUnavailableError as error:
      _LOGGER.warning('load journal: cannot read the committed offsets now (%s); will retry', error)
      return 0
    done = [entry.label for entry in entries if entry.committed_past(committed)]
    if done:
      self.forget(done)
      with self._lock:
        for label in done:
          self._loaded.pop(label, None)
    if self._errors:
      _LOGGER.warning('load journal: %d asynchronous writes failed (first: %s); recovery asks '
                      'Doris for those labels instead', len(self._errors), self._errors[0])
      self._errors.clear()
    return len(done)

  def _commit_reader(self):
    if self._consumer is None:
      self._consumer = new_consumer(self._config.kafka_config)
    return self._consumer

  def close(self) -> None:
    """Sends what is queued (best effort) and closes the clients."""
    try:
      self._producer.flush(5.0)
    finally:
      if self._consumer is not None:
        self._consumer.close()
        self._consumer = None


def committed_offsets(consumer, partitions) -> Dict[Tuple[str, int], int]:
  """The group's committed offsets of ``partitions`` ((topic, partition) -> offset; -1 if none).

  Raises:
    JournalUnavailableError: Kafka did not answer.
  """
  from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
  if not partitions:
    return {}
  try:
    found = consumer.committed([TopicPartition(t, p) for t, p in sorted(partitions)],
                               timeout=_READ_TIMEOUT_SECS)
  except KafkaException as error:
    raise JournalUnavailableError(f'committed offsets: {error}') from None
  return {(tp.topic, tp.partition): tp.offset for tp in found}


def ensure_journal_topic(config: JournalConfig) -> bool:
  """Creates the journal topic (compacted) if it is missing; returns whether it exists now.

  Where the broker refuses or cannot create topics this way (no permission,
  librdkafka's mock cluster), the first write auto-creates it with the
  broker's defaults; a warning says how to create it compacted.
  """
  from confluent_kafka import KafkaException  # pylint: disable=import-outside-toplevel
  from confluent_kafka.admin import NewTopic  # pylint: disable=import-outside-toplevel
  admin = new_admin(producer_config_of(config.kafka_config))
  asked = time.monotonic()
  try:
    metadata = admin.list_topics(timeout=_READ_TIMEOUT_SECS)
  except KafkaException as error:
    raise JournalUnavailableError(f'load journal: Kafka did not answer a metadata request: '
                                  f'{error}{client_failure_cause(admin, asked)}') from None
  if config.topic in metadata.topics and not metadata.topics[config.topic].error:
    return True
  if metadata.controller_id not in metadata.brokers:
    # No controller to create topics with (librdkafka's mock cluster reports one it does not
    # have): CreateTopics would only time out.  The first write auto-creates the topic.
    _LOGGER.warning('load journal: topic %s is missing and the cluster has no controller to '
                    'create it; the first write will auto-create it with the broker\'s defaults',
                    config.topic)
    return False
  futures = admin.create_topics(
      [NewTopic(config.topic, num_partitions=1, replication_factor=-1, config=_TOPIC_CONFIG)],
      request_timeout=_CREATE_TIMEOUT_SECS, operation_timeout=_CREATE_TIMEOUT_SECS)
  try:
    futures[config.topic].result(timeout=_CREATE_TIMEOUT_SECS * 2)
    _LOGGER.info('load journal: created topic %s (compacted)', config.topic)
    return True
  except Exception as error:  # pylint: disable=broad-except
    if 'already exists' in str(error).lower():
      return True
    _LOGGER.warning(
        'load journal: could not create topic %s (%s); the first write will auto-create it with '
        'the broker\'s defaults. Create it compacted yourself: kafka-topics.sh --create --topic %s '
        '--partitions 1 --config cleanup.policy=compact', config.topic, error, config.topic)
    return False


def read_journal(config: JournalConfig) -> List[JournalEntry]:
  """Every live entry of ``config.group`` in the journal (tombstoned ones left out).

  Raises:
    JournalUnavailableError: Kafka did not answer, or the topic could not be
      read to its end in time.
  """
  from confluent_kafka import (OFFSET_BEGINNING, KafkaError, KafkaException,  # pylint: disable=import-outside-toplevel
                               TopicPartition)
  consumer = new_consumer(dict(config.kafka_config, **{
      'group.id': f'{config.group}.journal-reader', 'enable.auto.commit': False,
      'enable.partition.eof': True}))
  try:
    try:
      metadata = consumer.list_topics(config.topic, timeout=_READ_TIMEOUT_SECS)
    except KafkaException as error:
      raise JournalUnavailableError(f'load journal: {error}') from None
    topic = metadata.topics.get(config.topic)
    if topic is None or topic.error is not None or not topic.partitions:
      return []
    ends = {}
    for partition in topic.partitions:
      try:
        low, high = consumer.get_watermark_offsets(TopicPartition(config.topic, partition),
                                                   timeout=_READ_TIMEOUT_SECS)
      except KafkaException as error:
        if error.args and getattr(error.args[0], 'code', lambda: None)() == \
            KafkaError.UNKNOWN_TOPIC_OR_PART:
          continue  # just created: its leader does not know it yet, and it holds no entry
        raise JournalUnavailableError(f'load journal: {error}') from None
      if high > low:
        ends[partition] = high
    if not ends:
      return []
    consumer.assign([TopicPartition(config.topic, p, OFFSET_BEGINNING) for p in ends])
    latest: Dict[bytes, Optional[bytes]] = {}
    deadline = time.monotonic() + _READ_TIMEOUT_SECS
    remaining = dict(ends)
    while remaining:
      if time.monotonic() > deadline:
        raise JournalUnavailableError(f'load journal: topic {config.topic} not read to its end '
                                      f'within {_READ_TIMEOUT_SECS:.0f}s')
      for message in consumer.consume(1000, 1.0):
        if message.error() is not None:
          if message.error().code() == -191:  # partition EOF
            remaining.pop(message.partition(), None)
          continue
        latest[message.key()] = message.value()
        if message.offset() + 1 >= remaining.get(message.partition(), 0):
          remaining.pop(message.partition(), None)
  finally:
    consumer.close()
  entries = []
  for key, value in latest.items():
    if value is None or key is None or is_control_key(key):  # drains share the topic
      continue
    try:
      entry = JournalEntry.from_json(value)
    except ValueError as error:
      _LOGGER.warning('load journal: skipping record %r: %s', key, error)
      continue
    if entry.group == config.group:
      entries.append(entry)
  return entries
