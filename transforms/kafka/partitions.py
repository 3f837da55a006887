"""Which partitions to read and where to start: metadata, committed offsets, end offsets.

A partition starts at the consumer group's committed offset, else at
``auto.offset.reset``; with ``stop_at_end`` it stops at the end offset seen at
start.  The result is one ``PartitionSpec`` per partition: the element of the
reading splittable DoFn.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam

from transforms.kafka import stop
from transforms.kafka.config import (EARLIEST, LATEST, KafkaConfigError, KafkaSourceError,
                                     KafkaUnreachableError, UnknownTopicError,
                                     client_failure_cause, describe_servers, new_consumer)

__all__ = ['PartitionSpec', 'UNBOUNDED_STOP_OFFSET', 'normalize_partitions', 'list_partitions',
           'resolve_specs']

_LOGGER = logging.getLogger(__name__)

# The end of an unbounded restriction.
UNBOUNDED_STOP_OFFSET = sys.maxsize


class PartitionSpec(NamedTuple):
  """What to read from one partition: the SDF's element."""
  topic: str
  partition: int
  start_offset: int
  stop_offset: int  # UNBOUNDED_STOP_OFFSET unless stop_at_end
  stop_at_epoch_secs: Optional[float]  # stop_after_secs, as a wall time
  partition_count: int = 1  # partitions read by the whole source (sizes the prefetch)


def normalize_partitions(
    topics: Sequence[str], partitions
) -> Optional[Dict[str, Optional[List[int]]]]:
  """Returns {topic: [partitions] or None (all)} from the user's argument."""
  if partitions is None:
    return None
  wanted: Dict[str, List[int]] = {}
  for item in partitions:
    if isinstance(item, int):
      for topic in topics:
        wanted.setdefault(topic, []).append(item)
    elif (isinstance(item, (tuple, list)) and len(item) == 2 and
          isinstance(item[1], int)):
      if item[0] not in topics:
        raise KafkaConfigError(
            f'partitions: topic {item[0]!r} is not in topics {list(topics)}')
      wanted.setdefault(item[0], []).append(item[1])
    else:
      raise KafkaConfigError(
          'partitions must be ints (for every topic) or (topic, partition) '
          f'pairs, got {item!r}')
  return {t: sorted(set(ps)) for t, ps in wanted.items()}


def list_partitions(consumer, config, topics, partitions,
                     timeout_secs) -> List[Tuple[str, int]]:
  """Fetches metadata and returns the (topic, partition)s to read.

  Raises:
    KafkaUnreachableError: no broker answered within ``timeout_secs``.
    UnknownTopicError: a topic or an asked-for partition does not exist.
  """
  from confluent_kafka import KafkaException
  wanted = normalize_partitions(topics, partitions)
  result = []
  for topic in topics:
    asked = time.monotonic()
    try:
      metadata = consumer.list_topics(topic, timeout=timeout_secs)
    except KafkaException as e:
      raise KafkaUnreachableError(
          f'Kafka at bootstrap.servers={describe_servers(config)!r} did not answer a '
          f'metadata request within {timeout_secs}s '
          f'(start_timeout_secs): {e.args[0] if e.args else e}'
          f'{client_failure_cause(consumer, asked)}') from e
    topic_md = metadata.topics.get(topic)
    if topic_md is None or topic_md.error is not None or not topic_md.partitions:
      error = topic_md.error if topic_md is not None else 'missing'
      raise UnknownTopicError(
          f'topic {topic!r} does not exist on {describe_servers(config)} ({error})')
    existing = sorted(topic_md.partitions)
    if wanted is None or wanted.get(topic) is None:
      chosen = existing if wanted is None else []
    else:
      chosen = wanted[topic]
      missing = sorted(set(chosen) - set(existing))
      if missing:
        raise UnknownTopicError(
            f'topic {topic!r} has partitions {existing}, not {missing}')
    result.extend((topic, p) for p in chosen)
  if not result:
    raise KafkaConfigError(f'no partitions to read from topics {list(topics)}')
  return result


def resolve_specs(config, topics, partitions, stop_at_end, timeout_secs,
                   stop_after_secs) -> List[PartitionSpec]:
  """Resolves start (committed, else auto.offset.reset) and stop offsets."""
  from confluent_kafka import KafkaException, TopicPartition
  consumer = new_consumer(config)
  try:
    tps = list_partitions(consumer, config, topics, partitions, timeout_secs)
    try:
      committed = consumer.committed(
          [TopicPartition(t, p) for t, p in tps], timeout=timeout_secs)
    except KafkaException as e:
      raise KafkaUnreachableError(
          f'could not fetch committed offsets of group '
          f'{config["group.id"]!r} within {timeout_secs}s: {e}') from e
    reset = str(config.get('auto.offset.reset', 'latest')).lower()
    stop_at = (time.time() + stop_after_secs
               if stop_after_secs is not None else None)
    specs = []
    for tp in committed:
      if tp.error is not None:
        raise KafkaSourceError(
            f'committed offset of {tp.topic}[{tp.partition}]: {tp.error}')
      need_watermarks = stop_at_end or tp.offset < 0
      low = high = None
      if need_watermarks:
        try:
          low, high = consumer.get_watermark_offsets(
              TopicPartition(tp.topic, tp.partition), timeout=timeout_secs)
        except KafkaException as e:
          raise KafkaUnreachableError(
              f'could not fetch offsets of {tp.topic}[{tp.partition}] '
              f'within {timeout_secs}s: {e}') from e
      if tp.offset >= 0:
        start = tp.offset
      elif reset in EARLIEST:
        start = low
      elif reset in LATEST:
        start = high
      else:
        raise KafkaSourceError(
            f'group {config["group.id"]!r} has no committed offset for '
            f'{tp.topic}[{tp.partition}] and auto.offset.reset=error')
      stop_offset = max(start, high) if stop_at_end else UNBOUNDED_STOP_OFFSET
      specs.append(
          PartitionSpec(tp.topic, tp.partition, start, stop_offset, stop_at, len(committed)))
    _LOGGER.info('Reading %d partitions from %s: %s', len(specs),
                 describe_servers(config),
                 ', '.join(f'{s.topic}[{s.partition}]@{s.start_offset}'
                           for s in specs))
    return specs
  finally:
    consumer.close()


class _ResolvePartitionsFn(beam.DoFn):
  """Impulse -> one ``PartitionSpec`` per partition to read."""

  def __init__(self, config, topics, partitions, stop_at_end, timeout_secs,
               stop_after_secs, stop_token=None):
    self._config = config
    self._topics = topics
    self._partitions = partitions
    self._stop_at_end = stop_at_end
    self._timeout_secs = timeout_secs
    self._stop_after_secs = stop_after_secs
    self._stop_token = stop_token

  def process(self, unused_impulse):
    specs = resolve_specs(self._config, self._topics, self._partitions, self._stop_at_end,
                          self._timeout_secs, self._stop_after_secs)
    stop.expect_partitions(self._stop_token, [(s.topic, s.partition) for s in specs])
    yield from specs

