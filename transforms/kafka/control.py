"""Drain requests through the job's own Kafka: how a stop reaches workers in other processes.

``KafkaStopChannel`` writes a drain request -- a record keyed
``drain:<group>`` on partition 0 of the load journal's topic -- and watches
for one: each worker process of a run reads that partition from the run's
start on, and drains when a request for its group arrives.  The command
line's second process (``--drain``) and the launcher of an attached job
(SIGTERM) make requests; every runner's workers see them, so a job on Flink,
Prism or Dataflow drains as a local one does: reads stop, pending rows load,
offsets are committed, the reads end and so does the job.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable, Dict, Optional

from transforms.kafka.config import new_consumer, new_producer, producer_config_of
from transforms.runtime import StopChannel

__all__ = ['KafkaStopChannel', 'DRAIN_KEY_PREFIX', 'is_control_key']

_LOGGER = logging.getLogger(__name__)

DRAIN_KEY_PREFIX = b'drain:'
_CONTROL_PARTITION = 0
_POLL_SECS = 1.0
_RETRY_SECS = 10.0
_WRITE_TIMEOUT_SECS = 15.0


def is_control_key(key: Optional[bytes]) -> bool:
  """Whether a record of the journal's topic is a control record (not a journal entry)."""
  return key is not None and key.startswith(DRAIN_KEY_PREFIX)


class KafkaStopChannel(StopChannel):
  """Drain requests for one consumer group on one Kafka topic (picklable: plain settings).

  Args:
    kafka_config: the job's librdkafka settings (servers, security, group).
    topic: the topic (the load journal's, ``--journal_topic``).
  """

  def __init__(self, kafka_config: Dict[str, Any], topic: str):
    self._config = {k: v for k, v in kafka_config.items()}
    self._topic = topic
    self._group = str(kafka_config.get('group.id', ''))

  @property
  def key(self) -> bytes:
    return DRAIN_KEY_PREFIX + self._group.encode()

  def request(self, reason: str) -> None:
    """Writes a drain request for the group (waits for the broker's acknowledgement).

    Raises:
      RuntimeError: Kafka did not take it.
    """
    producer = new_producer(producer_config_of(self._config), **{'acks': 'all'})
    errors = []
    value = json.dumps({'reason': reason, 'host': socket.gethostname(),
                        'at': time.time()}).encode()
    producer.produce(self._topic, key=self.key, value=value, partition=_CONTROL_PARTITION,
                     on_delivery=lambda error, _message: errors.append(error) if error else None)
    remaining = producer.flush(_WRITE_TIMEOUT_SECS)
    if remaining or errors:
      raise RuntimeError(f'the drain request for group {self._group!r} did not reach topic '
                         f'{self._topic} ({errors[0] if errors else "not acknowledged in time"})')

  def watch(self, on_stop: Callable[[str], None], since_ms: int) -> Callable[[], None]:
    """Calls ``on_stop(reason)`` when a request newer than ``since_ms`` arrives (a thread)."""
    stopping = threading.Event()
    thread = threading.Thread(target=self._watch, args=(on_stop, since_ms, stopping),
                              name='drain-watch', daemon=True)
    thread.start()
    return stopping.set

  def _watch(self, on_stop, since_ms: int, stopping: threading.Event) -> None:
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    consumer = None
    try:
      while not stopping.is_set():
        if consumer is None:
          try:
            consumer = new_consumer(self._config, **{'enable.partition.eof': False})
            start = consumer.offsets_for_times(
                [TopicPartition(self._topic, _CONTROL_PARTITION, since_ms)], timeout=10)[0]
            consumer.assign([start if start.offset >= 0 else
                             TopicPartition(self._topic, _CONTROL_PARTITION, -1)])  # the end
          except KafkaException as error:
            _LOGGER.debug('drain watch: %s; trying again', error)
            if consumer is not None:
              consumer.close()
              consumer = None
            stopping.wait(_RETRY_SECS)
            continue
        for message in consumer.consume(100, _POLL_SECS):
          if message.error() is not None or message.key() != self.key:
            continue
          if message.timestamp()[1] < since_ms:
            continue
          try:
            reason = json.loads(message.value()).get('reason', 'drain requested')
          except (ValueError, AttributeError):
            reason = 'drain requested'
          on_stop(f'{reason} (through topic {self._topic})')
          return
    finally:
      if consumer is not None:
        try:
          consumer.close()
        except Exception:  # pylint: disable=broad-except
          pass

  def __repr__(self):
    return f'KafkaStopChannel(group={self._group!r}, topic={self._topic!r})'
