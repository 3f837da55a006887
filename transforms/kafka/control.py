"""Drain requests through the job's own Kafka: how a stop reaches workers in other processes.

``KafkaStopChannel`` writes a drain request -- a record keyed
``drain:<group>`` on partition 0 of the load journal's topic -- and watches
for one: each worker process of a run reads that partition from the run's
start on, and drains when a request for its group arrives.  The command
line's second process (``--drain``) and the launcher of an attached job
(SIGTERM) make requests; every runner's workers see them, so a job on Flink,
Prism or Dataflow drains as a local one does: reads stop, pending rows load,
offsets are committed, the reads end.

As each read ends in a drain, its worker reports it (``done:<group>``,
``report_done``), once its rows are loaded and its offset committed: the
launcher waits for every read of the run (``await_done``) and then ends a job
whose runner would keep it open (Flink keeps a streaming job's source alive).
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

__all__ = ['KafkaStopChannel', 'DRAIN_KEY_PREFIX', 'DONE_KEY_PREFIX', 'is_control_key']

_LOGGER = logging.getLogger(__name__)

DRAIN_KEY_PREFIX = b'drain:'
DONE_KEY_PREFIX = b'done:'
_CONTROL_PARTITION = 0
# A watcher polls this often: stopping it (at the end of every run) waits for one poll.
_POLL_SECS = 0.1
_RETRY_SECS = 10.0
_WRITE_TIMEOUT_SECS = 15.0
_WAIT_REPORT_SECS = 10.0


def is_control_key(key: Optional[bytes]) -> bool:
  """Whether a record of the journal's topic is a control record (not a journal entry)."""
  return key is not None and key.startswith((DRAIN_KEY_PREFIX, DONE_KEY_PREFIX))


class KafkaStopChannel(StopChannel):
  """Drain requests for one consumer group on one Kafka topic (picklable: plain settings).

  Args:
    kafka_config: the job's librdkafka settings (servers, security, group).
    topic: the topic (the load journal's, ``--journal_topic``).
  """

  def __init__(self, kafka_config: Dict[str, Any], topic: str, since_offset: Optional[int] = None):
    self._config = {k: v for k, v in kafka_config.items()}
    self._topic = topic
    self._group = str(kafka_config.get('group.id', ''))
    self._since = since_offset

  def starting_now(self, timeout_secs: float = 10.0) -> 'KafkaStopChannel':
    """This channel, reading from the control partition's end now: a run's watchers see every
    request made after its launch (not older ones), also a worker that starts later."""
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    consumer = new_consumer(self._config)
    try:
      _, high = consumer.get_watermark_offsets(TopicPartition(self._topic, _CONTROL_PARTITION),
                                               timeout=timeout_secs)
    except KafkaException:
      high = None  # no such topic yet: from its start (offset 0) when it appears
    finally:
      consumer.close()
    return KafkaStopChannel(self._config, self._topic, high if high is not None and high >= 0
                            else 0)

  def _assign_from(self, consumer, since_ms: int) -> None:
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    if self._since is not None:
      consumer.assign([TopicPartition(self._topic, _CONTROL_PARTITION, self._since)])
      return
    start = consumer.offsets_for_times(
        [TopicPartition(self._topic, _CONTROL_PARTITION, since_ms)], timeout=10)[0]
    consumer.assign([start if start.offset >= 0 else
                     TopicPartition(self._topic, _CONTROL_PARTITION, -1)])  # the end

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

  def report_done(self, run_id: str, sources) -> None:
    """Says that these reads of run ``run_id`` ended in a drain, their rows loaded and committed.

    Best effort: a failure is logged (the launcher then waits until its timeout).
    """
    producer = new_producer(producer_config_of(self._config), **{'acks': 'all'})
    value = json.dumps({'run': run_id, 'sources': [list(source) for source in sources]}).encode()
    errors = []
    producer.produce(self._topic, key=DONE_KEY_PREFIX + self._group.encode(), value=value,
                     partition=_CONTROL_PARTITION,
                     on_delivery=lambda error, _message: errors.append(error) if error else None)
    if producer.flush(_WRITE_TIMEOUT_SECS) or errors:
      _LOGGER.warning('could not report the end of reads %s of the drain: %s', list(sources),
                      errors[0] if errors else 'not acknowledged in time')

  def await_done(self, run_id: str, expected, since_ms: int, timeout_secs: float,
                 stopping: Optional[threading.Event] = None) -> set:
    """Waits until every source of ``expected`` reported done (in a report of run ``run_id``).

    A discovery loop reports its end only once the partitions it found and read have ended, so
    expecting the loops covers the partitions found while running.

    Returns:
      The sources still not done (empty: all done) when it returns.
    """
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    waiting = {tuple(source) for source in expected}
    done: set = set()
    deadline = time.monotonic() + timeout_secs
    consumer = new_consumer(self._config, **{'enable.partition.eof': False})
    try:
      self._assign_from(consumer, since_ms)
      key = DONE_KEY_PREFIX + self._group.encode()
      next_report = time.monotonic() + _WAIT_REPORT_SECS
      while waiting - done and time.monotonic() < deadline and not (
          stopping is not None and stopping.is_set()):
        if time.monotonic() >= next_report:
          next_report = time.monotonic() + _WAIT_REPORT_SECS
          missing = sorted(waiting - done)
          _LOGGER.info('drain: %d of %d reads reported their end; waiting for %s', len(done),
                       len(waiting), missing[:8])
        for message in consumer.consume(100, _POLL_SECS):
          if message.error() is not None or message.key() != key:
            continue
          try:
            report = json.loads(message.value())
          except ValueError:
            continue
          if report.get('run') != run_id:
            continue
          for source in report.get('sources', ()):
            done.add(tuple(source))
    except KafkaException as error:
      _LOGGER.warning('waiting for the workers to report the drain done: %s', error)
    finally:
      consumer.close()
    return waiting - done

  def watch(self, on_stop: Callable[[str], None], since_ms: int) -> Callable[[], None]:
    """Calls ``on_stop(reason)`` when a request newer than ``since_ms`` arrives (a thread)."""
    stopping = threading.Event()
    thread = threading.Thread(target=self._watch, args=(on_stop, since_ms, stopping),
                              name='drain-watch', daemon=True)
    thread.start()

    def stop() -> None:
      stopping.set()
      if thread is not threading.current_thread():
        thread.join(_POLL_SECS + 5)  # its consumer closes before the caller moves on

    return stop

  def _watch(self, on_stop, since_ms: int, stopping: threading.Event) -> None:
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    consumer = None
    try:
      while not stopping.is_set():
        if consumer is None:
          try:
            consumer = new_consumer(self._config, **{'enable.partition.eof': False})
            self._assign_from(consumer, since_ms)
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
          if self._since is None and message.timestamp()[1] < since_ms:
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
