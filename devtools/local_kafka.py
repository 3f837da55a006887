"""A local Kafka for the demo, tests and benchmarks: librdkafka's in-process mock cluster.

The mock cluster speaks the real Kafka wire protocol, needs no Docker, no
JVM and no downloads: a ``confluent_kafka.Producer`` configured with
``test.mock.num.brokers`` starts it inside the test process, and every other
client (in this process or in a subprocess, e.g. ``python -m
pipelines.kafka_to_doris --bootstrap_servers=...``) reaches it at the broker
addresses that producer's ``list_topics()`` reports.  The cluster lives as
long as the producer object, so the fixture is session scoped.

Limits of the mock cluster (confluent-kafka / librdkafka 2.16, measured
here) -- size tests and benchmarks to them:

* Topics are auto-created with 4 partitions on first produce (and on a
  metadata request from a client with ``allow.auto.create.topics=true``;
  consumers default to false, so an unknown topic stays unknown for the
  reader).  ``AdminClient.create_topics`` times out waiting for a controller:
  do not use it.  Use :meth:`KafkaCluster.unique_topic` for fresh names.
* Each partition keeps only about the last 5 MiB or 100k messages; older
  records are dropped and reads of their offsets get "Offset out of range".
  Producing with ``compression.type=lz4``/``zstd`` keeps more (the limit is
  on stored, i.e. compressed, bytes).  Spread big data sets over several
  topics or produce while consuming.
* ``subscribe()`` group joins take ~3 s and re-joins can hang; ``assign()``
  plus ``commit()``/``committed()`` work well (the reader assigns partitions
  itself, the consumer group only stores offsets).
* ``bootstrap.servers`` and ``security.protocol`` of the creating client are
  ignored; there is no SASL/SSL.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from typing import Dict, Optional, Sequence

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from devtools.mock_brokers import MockBrokers

__all__ = ['KafkaCluster', 'MOCK_NUM_BROKERS', 'MOCK_PARTITIONS_PER_TOPIC', 'produce_all', 'reader_config']

_LOGGER = logging.getLogger(__name__)

MOCK_NUM_BROKERS = 3
MOCK_PARTITIONS_PER_TOPIC = 4
FLUSH_TIMEOUT_SECS = 30


class KafkaCluster:
  """A librdkafka mock cluster kept alive by a producer.

  Attributes:
    bootstrap_servers: comma-separated ``host:port`` list of the mock
      brokers, usable from this process and from subprocesses.
    num_partitions: partitions of an auto-created topic (4).
  """

  num_partitions = MOCK_PARTITIONS_PER_TOPIC

  def __init__(self, num_brokers: int = MOCK_NUM_BROKERS, compression: str = 'none',
               restartable: bool = False):
    """``restartable``: the cluster is made through librdkafka's mock API (``MockBrokers``), and
    ``broker_down``/``broker_up`` restart its brokers."""
    self._brokers = MockBrokers(num_brokers) if restartable else None
    where = ({'bootstrap.servers': self._brokers.bootstrap_servers} if self._brokers
             else {'test.mock.num.brokers': num_brokers})
    self._producer = Producer({
        'compression.type': compression,
        **where,
        'linger.ms': 5,
        'batch.num.messages': 10000,
        'queue.buffering.max.messages': 1000000,
        'queue.buffering.max.kbytes': 1048576,
        'logger': _LOGGER,
    })
    metadata = self._producer.list_topics(timeout=10)
    self.bootstrap_servers = ','.join(
        f'{b.host}:{b.port}' for b in sorted(metadata.brokers.values(),
                                             key=lambda b: b.id))
    self._counter = itertools.count()

  def unique_topic(self, prefix: str = 'test') -> str:
    """Returns a topic name no other test has used in this session."""
    return f'{prefix}-{os.getpid()}-{next(self._counter)}-{uuid.uuid4().hex[:6]}'

  def consumer_config(self, group_id: Optional[str] = None, **extra) -> dict:
    """A consumer config for the reader: bootstrap servers and a group."""
    return reader_config(self.bootstrap_servers, group_id, **extra)

  def produce(self,
              topic: str,
              values: Sequence[Optional[bytes]],
              keys: Optional[Sequence[Optional[bytes]]] = None,
              partition: Optional[int] = None,
              timestamps_ms: Optional[Sequence[int]] = None,
              headers: Optional[list] = None) -> None:
    """Produces ``values`` to ``topic`` and waits until all are delivered.

    Without ``partition`` and ``keys`` records are spread round-robin over
    the topic's partitions (so every partition gets data).

    Raises:
      KafkaException: a record was not delivered.
    """
    produce_all(self._producer, topic, values, keys, partition, timestamps_ms, headers,
                self.num_partitions, FLUSH_TIMEOUT_SECS)

  def end_offsets(self, topic: str) -> Dict[int, int]:
    """Returns {partition: high watermark} of ``topic``."""
    consumer = Consumer({'bootstrap.servers': self.bootstrap_servers,
                         'group.id': 'fixture-end-offsets',
                         'logger': _LOGGER})
    try:
      metadata = consumer.list_topics(topic, timeout=10)
      return {
          p: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                            timeout=10)[1]
          for p in metadata.topics[topic].partitions
      }
    finally:
      consumer.close()

  def committed(self, group: str, topic: str) -> Dict[int, int]:
    """Returns {partition: committed offset} of ``group`` on ``topic``.

    Partitions without a committed offset are left out.
    """
    consumer = Consumer({'bootstrap.servers': self.bootstrap_servers,
                         'group.id': group,
                         'enable.auto.commit': False,
                         'logger': _LOGGER})
    try:
      metadata = consumer.list_topics(topic, timeout=10)
      partitions = sorted(metadata.topics[topic].partitions)
      result = consumer.committed(
          [TopicPartition(topic, p) for p in partitions], timeout=10)
      return {tp.partition: tp.offset for tp in result if tp.offset >= 0}
    finally:
      consumer.close()

  def commit(self, group: str, topic: str, offsets: Dict[int, int]) -> None:
    """Commits {partition: offset} for ``group`` (to set up restarts)."""
    consumer = Consumer({'bootstrap.servers': self.bootstrap_servers,
                         'group.id': group,
                         'enable.auto.commit': False,
                         'logger': _LOGGER})
    try:
      consumer.commit(
          offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
          asynchronous=False)
    finally:
      consumer.close()

  def broker_down(self, broker_id: int) -> None:
    """Takes broker ``broker_id`` (1..n) down: its connections close, new ones are refused, and
    its partitions keep it as their leader (a broker being restarted)."""
    self._restartable().down(broker_id)

  def broker_up(self, broker_id: int) -> None:
    """Brings broker ``broker_id`` back after ``broker_down``."""
    self._restartable().up(broker_id)

  def fail_requests(self, api_key: int, errors: Sequence[int]) -> None:
    """The next requests of ``api_key`` answer ``errors`` (``MockBrokers.fail_requests``)."""
    self._restartable().fail_requests(api_key, errors)

  def _restartable(self) -> MockBrokers:
    if self._brokers is None:
      raise RuntimeError('this cluster was not made restartable (KafkaCluster(restartable=True))')
    return self._brokers

  def close(self) -> None:
    if self._producer is not None:
      self._producer.flush(FLUSH_TIMEOUT_SECS)
    if self._brokers is not None:  # its producer does not hold the cluster: stop it now
      self._producer = None
      self._brokers.close()
      self._brokers = None


def reader_config(bootstrap_servers: str, group_id: Optional[str] = None, **extra) -> dict:
  """A consumer config for the reader: bootstrap servers, a group (a fresh one by default)."""
  config = {
      'bootstrap.servers': bootstrap_servers,
      'group.id': group_id or f'group-{uuid.uuid4().hex[:8]}',
      'auto.offset.reset': 'earliest',
  }
  config.update(extra)
  return config


def produce_all(producer, topic: str, values: Sequence[Optional[bytes]],
                keys: Optional[Sequence[Optional[bytes]]], partition: Optional[int],
                timestamps_ms: Optional[Sequence[int]], headers: Optional[list],
                num_partitions: int, flush_timeout_secs: float) -> None:
  """Produces every value and waits for delivery (the mock and the real broker alike).

  Without ``partition`` and ``keys`` records are spread round-robin over
  ``num_partitions`` partitions.

  Raises:
    KafkaException: a record was not delivered.
  """
  errors = []

  def on_delivery(err, _msg):
    if err is not None:
      errors.append(err)

  for i, value in enumerate(values):
    kwargs = {'value': value, 'on_delivery': on_delivery}
    if keys is not None:
      kwargs['key'] = keys[i]
    if partition is not None:
      kwargs['partition'] = partition
    elif keys is None:
      kwargs['partition'] = i % num_partitions
    if timestamps_ms is not None:
      kwargs['timestamp'] = timestamps_ms[i]
    if headers is not None:
      kwargs['headers'] = headers
    while True:
      try:
        producer.produce(topic, **kwargs)
        break
      except BufferError:
        producer.poll(0.05)
  remaining = producer.flush(flush_timeout_secs)
  if remaining or errors:
    raise KafkaException(f'{topic}: {remaining} records not flushed, delivery errors: '
                         f'{errors[:3]}')
