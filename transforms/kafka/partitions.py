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

from transforms.kafka.config import (EARLIEST, LATEST, KafkaConfigError, KafkaSourceError,
                                     KafkaUnreachableError, UnknownTopicError,
                                     client_failure_cause, describe_servers, new_consumer)
from transforms.kafka.topics import TopicSelector

__all__ = ['PartitionSpec', 'WatchSpec', 'UNBOUNDED_STOP_OFFSET',
           'normalize_partitions', 'list_partitions', 'matching_partitions', 'start_offsets',
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
  # When the group's committed offset was asked (wall time): ``start_offset`` is it, or the
  # group had none.  A first read soon after starts there without asking again.
  committed_asked_at: Optional[float] = None


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


def _metadata_error(consumer, config, timeout_secs, asked, error) -> KafkaUnreachableError:
  return KafkaUnreachableError(
      f'Kafka at bootstrap.servers={describe_servers(config)!r} did not answer a '
      f'metadata request within {timeout_secs}s '
      f'(start_timeout_secs): {error.args[0] if error.args else error}'
      f'{client_failure_cause(consumer, asked)}')


def matching_partitions(consumer, config, selector: TopicSelector,
                        timeout_secs) -> Dict[str, List[int]]:
  """Fetches the metadata of every topic; returns {topic: [partitions]} of the selected ones.

  One metadata request for the whole cluster (what a pattern needs; with exact
  names, topics that do not exist are left out).

  Raises:
    KafkaUnreachableError: no broker answered within ``timeout_secs``.
  """
  from confluent_kafka import KafkaException  # pylint: disable=import-outside-toplevel
  asked = time.monotonic()
  try:
    metadata = consumer.list_topics(timeout=timeout_secs)
  except KafkaException as e:
    raise _metadata_error(consumer, config, timeout_secs, asked, e) from e
  return {name: sorted(md.partitions) for name, md in metadata.topics.items()
          if md.error is None and md.partitions and selector.matches(name)}


def list_partitions(consumer, config, topics, partitions,
                     timeout_secs, *, allow_empty=False) -> List[Tuple[str, int]]:
  """Fetches metadata and returns the (topic, partition)s to read.

  Args:
    consumer: a consumer (for its metadata requests).
    config: its configuration (for messages).
    topics: topic names, or a ``TopicSelector``.
    partitions: the user's partition selection (``normalize_partitions``), or
      None for all.
    timeout_secs: the metadata request's timeout.
    allow_empty: a pattern may match nothing yet (a streaming read waits for
      its topics); otherwise that is an ``UnknownTopicError``.

  Raises:
    KafkaUnreachableError: no broker answered within ``timeout_secs``.
    UnknownTopicError: a topic or an asked-for partition does not exist, or
      no topic matches the pattern.
  """
  if isinstance(topics, TopicSelector) and topics.is_pattern:
    found = matching_partitions(consumer, config, topics, timeout_secs)
    if not found and not allow_empty:
      raise UnknownTopicError(
          f'no topic on {describe_servers(config)} matches the {topics.describe()} (the whole '
          'name must match; internal topics and the load journal\'s never do)')
    return [(topic, p) for topic in sorted(found) for p in found[topic]]
  if isinstance(topics, TopicSelector):
    topics = list(topics.topics)
  from confluent_kafka import KafkaException  # pylint: disable=import-outside-toplevel
  wanted = normalize_partitions(topics, partitions)
  result = []
  for topic in topics:
    asked = time.monotonic()
    try:
      metadata = consumer.list_topics(topic, timeout=timeout_secs)
    except KafkaException as e:
      raise _metadata_error(consumer, config, timeout_secs, asked, e) from e
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


def start_offsets(consumer, config, tps: Sequence[Tuple[str, int]], reset: str,
                  need_end: bool, timeout_secs) -> List[Tuple[str, int, int, Optional[int]]]:
  """Where each partition starts: the group's committed offset, else ``reset``.

  Args:
    consumer: a consumer of the group (``config['group.id']``).
    config: its configuration.
    tps: the ``(topic, partition)``s.
    reset: ``auto.offset.reset`` (earliest/latest aliases, or ``error``).
    need_end: fetch every partition's end offset (else only where ``reset``
      needs the watermarks).
    timeout_secs: each request's timeout.

  Returns:
    ``(topic, partition, start, end)`` per partition, in the order of ``tps``;
    ``end`` is None when it was not fetched.

  Raises:
    KafkaUnreachableError: a request timed out.
    KafkaSourceError: a committed offset is unreadable, or there is none and
      ``reset`` is ``error``.
  """
  from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
  if not tps:
    return []
  try:
    committed = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=timeout_secs)
  except KafkaException as e:
    raise KafkaUnreachableError(
        f'could not fetch committed offsets of group '
        f'{config["group.id"]!r} within {timeout_secs}s: {e}') from e
  result = []
  for tp in committed:
    if tp.error is not None:
      raise KafkaSourceError(f'committed offset of {tp.topic}[{tp.partition}]: {tp.error}')
    low = high = None
    if need_end or tp.offset < 0:
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
    result.append((tp.topic, tp.partition, start, high))
  return result


def resolve_specs(config, topics, partitions, stop_at_end, timeout_secs,
                   stop_after_secs) -> List[PartitionSpec]:
  """Resolves start (committed, else auto.offset.reset) and stop offsets.

  ``topics`` are names or a ``TopicSelector``; a pattern that matches no
  topic yet gives no spec in a streaming read (discovery picks its topics up
  later) and an ``UnknownTopicError`` with ``stop_at_end``.
  """
  consumer = new_consumer(config)
  try:
    tps = list_partitions(consumer, config, topics, partitions, timeout_secs,
                          allow_empty=not stop_at_end)
    reset = str(config.get('auto.offset.reset', 'latest')).lower()
    stop_at = (time.time() + stop_after_secs
               if stop_after_secs is not None else None)
    specs = []
    asked_at = time.time()
    for topic, partition, start, high in start_offsets(consumer, config, tps, reset, stop_at_end,
                                                       timeout_secs):
      stop_offset = max(start, high) if stop_at_end else UNBOUNDED_STOP_OFFSET
      specs.append(PartitionSpec(topic, partition, start, stop_offset, stop_at, len(tps),
                                 asked_at))
    if specs:
      _LOGGER.info('Reading %d partitions from %s: %s', len(specs),
                   describe_servers(config),
                   ', '.join(f'{s.topic}[{s.partition}]@{s.start_offset}'
                             for s in specs))
    else:
      _LOGGER.warning('No topic on %s matches the %s yet: waiting for one (checking every '
                      'discovery interval)', describe_servers(config), topics.describe())
    return specs
  finally:
    consumer.close()


class WatchSpec(NamedTuple):
  """The element of a streaming read's discovery loop (beside the ``PartitionSpec``s).

  The reading splittable DoFn treats it apart: it looks for new partitions
  every discovery interval and reads the ones it found (see ``discovery``).
  """
  known: Tuple[Tuple[str, int], ...]  # the partitions read from the start
  stop_at_epoch_secs: Optional[float]
  shard: int = 0  # this loop reads the partitions found while running whose
  shards: int = 1  # ``discovery.shard_of`` is ``shard`` (see ``discovery``)


class _ResolvePartitionsFn(beam.DoFn):
  """Impulse -> one ``PartitionSpec`` per partition to read (and ``watch_shards`` ``WatchSpec``s)."""

  def __init__(self, config, topics, partitions, stop_at_end, timeout_secs,
               stop_after_secs, watch_shards=0):
    self._config = config
    self._topics = topics
    self._partitions = partitions
    self._stop_at_end = stop_at_end
    self._timeout_secs = timeout_secs
    self._stop_after_secs = stop_after_secs
    self._watch_shards = watch_shards

  def process(self, unused_impulse):
    specs = resolve_specs(self._config, self._topics, self._partitions, self._stop_at_end,
                          self._timeout_secs, self._stop_after_secs)
    known = tuple((s.topic, s.partition) for s in specs)
    yield from specs
    stop_at = (specs[0].stop_at_epoch_secs if specs else
               time.time() + self._stop_after_secs if self._stop_after_secs is not None else None)
    for shard in range(self._watch_shards):
      yield WatchSpec(known, stop_at, shard, self._watch_shards)
