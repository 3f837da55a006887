"""A native Python Kafka source and an at-least-once offset committer.

``ReadKafkaChunks`` reads Kafka with ``confluent-kafka`` in a splittable DoFn
(one offset-range restriction per partition, watermarks from record
timestamps), so it runs on the local FnApiRunner as well as on portable
runners without a Java expansion service.  It emits ``KafkaChunk``s -- the
records of one partition returned by one consume call -- because the Python
runners spend tens of microseconds per element per transform; ``ReadFromKafka``
flattens chunks to single ``KafkaRecord``s.  The reader assigns partitions
itself and never commits: ``CommitOffsets`` commits, per partition, the end of
the longest prefix of chunks whose rows were all acknowledged by the sink, so
a crash re-reads whatever was not loaded.  ``build_xlang_reader`` switches to
Beam's Java KafkaIO (``--kafka_reader=xlang``) for Flink/Dataflow users.
"""

from __future__ import annotations

import bisect
import logging
import pickle
import sys
import threading
import time
import uuid
from typing import (Any, Dict, Iterable, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.restriction_trackers import (OffsetRange,
                                                 OffsetRestrictionTracker)
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms import core
from apache_beam.transforms import window
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import prom
from transforms.types import ChunkRead, KafkaChunk, KafkaRecord, OffsetAck

__all__ = [
    'CommitOffsets',
    'KafkaConfigError',
    'KafkaSourceError',
    'KafkaUnreachableError',
    'ReadFromKafka',
    'ReadKafkaChunks',
    'UnknownTopicError',
    'build_xlang_chunk_reader',
    'build_xlang_reader',
    'chunk_read_of',
    'request_stop',
]

_LOGGER = logging.getLogger(__name__)

METRICS_NAMESPACE = 'kafka'
DEFAULT_MAX_CHUNK_RECORDS = 1000
DEFAULT_POLL_TIMEOUT_SECS = 0.1
DEFAULT_START_TIMEOUT_SECS = 10.0
# A bundle of the reading stage ends (every restriction defers its remainder)
# after this long or this many records: the FnApiRunner fires timers (e.g.
# GroupIntoBatches' time limit) and hands data to unfused stages only
# between bundles, and buffers a bundle's unfused output in memory.
DEFAULT_MAX_BUNDLE_SECS = 1.0
DEFAULT_MAX_BUNDLE_RECORDS = 100000
# Like Java KafkaIO's idle policy: a partition with no backlog moves its
# watermark to "now - 2 s" so idle partitions do not hold windows back.
IDLE_WATERMARK_LAG_SECS = 2.0
# The end of an unbounded restriction.
UNBOUNDED_STOP_OFFSET = sys.maxsize

_EARLIEST = frozenset(['earliest', 'smallest', 'beginning'])
_LATEST = frozenset(['latest', 'largest', 'end'])
# librdkafka's RD_KAFKA_RESP_ERR__PARTITION_EOF (KafkaError._PARTITION_EOF).
_PARTITION_EOF = -191


class KafkaSourceError(RuntimeError):
  """Base class of the Kafka source's errors that a user can act on."""


class KafkaConfigError(KafkaSourceError, ValueError):
  """The consumer configuration or the transform arguments are invalid."""


class KafkaUnreachableError(KafkaSourceError):
  """No broker answered within the configured timeout."""


class UnknownTopicError(KafkaSourceError, ValueError):
  """A topic or partition to read does not exist."""


# ---------------------------------------------------------------------------
# Configuration


def _reader_config(consumer_config: Dict[str, Any]) -> Dict[str, Any]:
  """Validates ``consumer_config`` and returns the config the reader uses.

  Raises:
    KafkaConfigError: ``group.id`` or ``bootstrap.servers`` is missing, or
      auto commit was asked for.
  """
  if not isinstance(consumer_config, dict):
    raise KafkaConfigError(
        f'consumer_config must be a dict, got {type(consumer_config)!r}')
  config = dict(consumer_config)
  if not config.get('group.id'):
    raise KafkaConfigError(
        'consumer_config needs "group.id": the consumer group stores the '
        'committed offsets (CommitOffsets) and the start positions')
  if not (config.get('bootstrap.servers') or
          config.get('metadata.broker.list')):
    raise KafkaConfigError('consumer_config needs "bootstrap.servers"')
  for key in ('enable.auto.commit', 'enable.auto.offset.store'):
    if str(config.get(key, 'false')).lower() in ('true', '1'):
      _LOGGER.warning('Ignoring %s=%s: offsets are committed by CommitOffsets '
                      'only after the rows are loaded', key, config[key])
    config[key] = False
  reset = str(config.get('auto.offset.reset', 'latest')).lower()
  if reset not in _EARLIEST | _LATEST | {'error'}:
    raise KafkaConfigError(
        f'auto.offset.reset must be earliest or latest, got {reset!r}')
  return config


def _log_client_error(error) -> None:
  # librdkafka reports broker trouble (all brokers down, auth failures) here;
  # without a callback it would be silent and a dead cluster looks idle.
  _LOGGER.warning('Kafka client error: %s', error)


def _new_consumer(config: Dict[str, Any], **overrides):
  """Creates a confluent_kafka Consumer; librdkafka logs go to logging."""
  from confluent_kafka import Consumer, KafkaException
  full = dict(config)
  full.update(overrides)
  full.setdefault('logger', _LOGGER)
  full.setdefault('error_cb', _log_client_error)
  try:
    return Consumer(full)
  except (KafkaException, ValueError, TypeError) as e:
    raise KafkaConfigError(f'invalid consumer_config: {e}') from e


def _describe(config: Dict[str, Any]) -> str:
  return str(config.get('bootstrap.servers') or
             config.get('metadata.broker.list'))


# ---------------------------------------------------------------------------
# Coders


class _KafkaRecordCoder(coders.Coder):
  """Pickles a ``KafkaRecord`` as a plain tuple (no NamedTuple overhead)."""

  def encode(self, value):
    return pickle.dumps(tuple(value), pickle.HIGHEST_PROTOCOL)

  def decode(self, encoded):
    return _new_tuple(KafkaRecord, pickle.loads(encoded))

  def is_deterministic(self):
    return False

  def estimate_size(self, value):
    return 48 + len(value.topic) + len(value.key or b'') + len(value.value or
                                                                 b'')

  def to_type_hint(self):
    return KafkaRecord


class _KafkaChunkCoder(coders.Coder):
  """Encodes a ``KafkaChunk`` as one pickle of plain tuples.

  Its ``estimate_size`` is cheap: the SDK samples output sizes (the first
  elements of every bundle) and the default coder would pickle the whole
  chunk just to measure it -- a millisecond per 1000-record chunk.
  """

  def encode(self, value):
    return pickle.dumps(
        (value.topic, value.partition, value.first_offset, value.next_offset,
         [(r.offset, r.key, r.value, r.timestamp_ms, r.headers)
          for r in value.records]), pickle.HIGHEST_PROTOCOL)

  def decode(self, encoded):
    topic, partition, first, next_offset, rows = pickle.loads(encoded)
    return _new_tuple(KafkaChunk, (
        topic, partition, first, next_offset,
        [_new_tuple(KafkaRecord, (topic, partition) + row) for row in rows]))

  def is_deterministic(self):
    return False

  def estimate_size(self, value):
    records = value.records
    if not records:
      return 32
    sample = records[:8]
    per_record = sum(
        40 + len(r.key or b'') + len(r.value or b'') for r in sample) / len(
            sample)
    return int(32 + len(value.topic) + per_record * len(records))

  def to_type_hint(self):
    return KafkaChunk


coders.registry.register_coder(KafkaRecord, _KafkaRecordCoder)
coders.registry.register_coder(KafkaChunk, _KafkaChunkCoder)


# ---------------------------------------------------------------------------
# Partition discovery and start offsets


class _PartitionSpec(NamedTuple):
  """What to read from one partition: the SDF's element."""
  topic: str
  partition: int
  start_offset: int
  stop_offset: int  # UNBOUNDED_STOP_OFFSET unless stop_at_end
  stop_at_epoch_secs: Optional[float]  # stop_after_secs, as a wall time


def _normalize_partitions(
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


def _list_partitions(consumer, config, topics, partitions,
                     timeout_secs) -> List[Tuple[str, int]]:
  """Fetches metadata and returns the (topic, partition)s to read.

  Raises:
    KafkaUnreachableError: no broker answered within ``timeout_secs``.
    UnknownTopicError: a topic or an asked-for partition does not exist.
  """
  from confluent_kafka import KafkaException
  wanted = _normalize_partitions(topics, partitions)
  result = []
  for topic in topics:
    try:
      metadata = consumer.list_topics(topic, timeout=timeout_secs)
    except KafkaException as e:
      raise KafkaUnreachableError(
          f'Kafka at bootstrap.servers={_describe(config)!r} did not answer a '
          f'metadata request within {timeout_secs}s '
          f'(start_timeout_secs): {e.args[0] if e.args else e}') from e
    topic_md = metadata.topics.get(topic)
    if topic_md is None or topic_md.error is not None or not topic_md.partitions:
      error = topic_md.error if topic_md is not None else 'missing'
      raise UnknownTopicError(
          f'topic {topic!r} does not exist on {_describe(config)} ({error})')
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


def _resolve_specs(config, topics, partitions, stop_at_end, timeout_secs,
                   stop_after_secs) -> List[_PartitionSpec]:
  """Resolves start (committed, else auto.offset.reset) and stop offsets."""
  from confluent_kafka import KafkaException, TopicPartition
  consumer = _new_consumer(config)
  try:
    tps = _list_partitions(consumer, config, topics, partitions, timeout_secs)
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
      elif reset in _EARLIEST:
        start = low
      elif reset in _LATEST:
        start = high
      else:
        raise KafkaSourceError(
            f'group {config["group.id"]!r} has no committed offset for '
            f'{tp.topic}[{tp.partition}] and auto.offset.reset=error')
      stop = max(start, high) if stop_at_end else UNBOUNDED_STOP_OFFSET
      specs.append(
          _PartitionSpec(tp.topic, tp.partition, start, stop, stop_at))
    _LOGGER.info('Reading %d partitions from %s: %s', len(specs),
                 _describe(config),
                 ', '.join(f'{s.topic}[{s.partition}]@{s.start_offset}'
                           for s in specs))
    return specs
  finally:
    consumer.close()


class _ResolvePartitionsFn(beam.DoFn):
  """Impulse -> one ``_PartitionSpec`` per partition to read."""

  def __init__(self, config, topics, partitions, stop_at_end, timeout_secs,
               stop_after_secs):
    self._config = config
    self._topics = topics
    self._partitions = partitions
    self._stop_at_end = stop_at_end
    self._timeout_secs = timeout_secs
    self._stop_after_secs = stop_after_secs

  def process(self, unused_impulse):
    yield from _resolve_specs(self._config, self._topics, self._partitions,
                              self._stop_at_end, self._timeout_secs,
                              self._stop_after_secs)


# ---------------------------------------------------------------------------
# The splittable DoFn


class _PartitionOffsetTracker(OffsetRestrictionTracker):
  """An offset tracker that claims whole chunks.

  ``try_claim(offset)`` claims every offset up to and including ``offset``.
  A failed claim (offset at or past the stop, e.g. after a runner split) is
  not recorded, so the reader can trim its chunk and claim a smaller offset;
  it marks the restriction exhausted, which is what ``check_done`` accepts
  besides a fully claimed range (the last offsets of a partition may be
  transaction markers that are never returned as records).
  """

  def __init__(self, offset_range: OffsetRange):
    super().__init__(offset_range)
    self._exhausted = False

  def try_claim(self, position):
    if position < self._range.start:
      raise ValueError(f'cannot claim {position} before {self._range}')
    if (self._last_claim_attempt is not None and
        position <= self._last_claim_attempt):
      raise ValueError(
          f'claims must increase: {position} after {self._last_claim_attempt}')
    if position < self._range.stop:
      self._last_claim_attempt = position
      self._current_position = position
      return True
    self._exhausted = True
    return False

  def check_done(self):
    if not self._exhausted:
      super().check_done()

  def try_split(self, fraction_of_remainder):
    if self._exhausted:  # the reader declared the range finished
      return None
    return super().try_split(fraction_of_remainder)

  def is_bounded(self):
    return self._range.stop < UNBOUNDED_STOP_OFFSET


class _PartitionRestrictionProvider(core.RestrictionProvider):
  """One OffsetRange per partition; never split up front."""

  def initial_restriction(self, element: _PartitionSpec):
    return OffsetRange(element.start_offset,
                       max(element.start_offset, element.stop_offset))

  def create_tracker(self, restriction):
    return _PartitionOffsetTracker(restriction)

  def split(self, element, restriction):
    yield restriction

  def restriction_size(self, element, restriction):
    if restriction.stop >= UNBOUNDED_STOP_OFFSET:
      return 1  # backlog unknown
    return restriction.size()

  def truncate(self, element, restriction):
    # On drain an unbounded read stops at once; a bounded one finishes.
    if restriction.stop >= UNBOUNDED_STOP_OFFSET:
      return None
    return restriction


# Stop requests by token: local runners only (same process).
_STOP_REQUESTS = set()
_STOP_LOCK = threading.Lock()


def request_stop(stop_token: str) -> None:
  """Asks every ``ReadKafkaChunks(stop_token=...)`` in this process to stop.

  Each partition finishes the chunk it is reading and completes its
  restriction, so the pipeline drains and ``run()`` returns.  It works where
  the SDK harness runs in the caller's process (the FnApiRunner's default
  in-memory worker: tests and local runs); on remote runners use
  ``stop_after_secs`` or the runner's drain.  A token stays requested for
  the life of the process: use a fresh token per run.
  """
  with _STOP_LOCK:
    _STOP_REQUESTS.add(stop_token)


def _stop_requested(stop_token: Optional[str]) -> bool:
  return stop_token is not None and stop_token in _STOP_REQUESTS


class _CachedConsumer:
  __slots__ = ('consumer', 'next_offset', 'at_end')

  def __init__(self, consumer, next_offset):
    self.consumer = consumer
    self.next_offset = next_offset
    self.at_end = False


_new_tuple = tuple.__new__

# One consumer per partition: librdkafka's default prefetch (64 MiB or 100k
# messages per partition) would be per consumer, i.e. per partition, so a big
# backlog on many partitions could take gigabytes.  Smaller defaults; the
# user's config wins.  Measured: no throughput loss in bench/source_bench.py.
_PREFETCH_DEFAULTS = {
    'queued.max.messages.kbytes': 16384,
    'queued.min.messages': 20000,
}


def _timestamp_of(timestamp_ms: int) -> Timestamp:
  if timestamp_ms is None or timestamp_ms < 0:
    return Timestamp.now()
  return Timestamp(micros=timestamp_ms * 1000)


class _ReadPartitionFn(beam.DoFn):
  """Reads one partition's offset range as ``KafkaChunk``s (bounded)."""

  def __init__(self, config, max_chunk_records, poll_timeout_secs,
               max_bundle_secs, max_bundle_records, stop_token):
    self._config = config
    self._max_chunk_records = max_chunk_records
    self._poll_timeout_secs = poll_timeout_secs
    self._max_bundle_secs = max_bundle_secs
    self._max_bundle_records = max_bundle_records
    self._stop_token = stop_token
    self._records_read = Metrics.counter(METRICS_NAMESPACE, 'records_read')
    self._chunks_read = Metrics.counter(METRICS_NAMESPACE, 'chunks_read')
    self._consumer_errors = Metrics.counter(METRICS_NAMESPACE,
                                            'consumer_errors')
    self._consumers_created = Metrics.counter(METRICS_NAMESPACE,
                                              'consumers_created')
    self._consumers: Dict[Tuple[str, int], _CachedConsumer] = {}

  def setup(self):
    self._consumers = {}

  def teardown(self):
    consumers, self._consumers = self._consumers, {}
    for cached in consumers.values():
      try:
        cached.consumer.close()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('closing a consumer failed', exc_info=True)

  def start_bundle(self):
    self._bundle_deadline = None
    self._bundle_records = 0
    self._bundle_wait_secs = self._poll_timeout_secs

  def _consumer_overrides(self):
    overrides = {'enable.partition.eof': True}
    for key, value in _PREFETCH_DEFAULTS.items():
      if key not in self._config:
        overrides[key] = value
    return overrides

  def _checkout(self, topic, partition, start) -> _CachedConsumer:
    """Returns this partition's consumer positioned at ``start``.

    The consumer is kept across resumed restrictions: librdkafka keeps
    prefetching while the runner moves on, and a consumer whose position
    already is ``start`` needs no seek (which would drop the prefetched
    queue).
    """
    from confluent_kafka import TopicPartition
    cached = self._consumers.pop((topic, partition), None)
    if cached is None:
      consumer = _new_consumer(self._config, **self._consumer_overrides())
      self._consumers_created.inc()
      consumer.assign([TopicPartition(topic, partition, start)])
      return _CachedConsumer(consumer, start)
    if cached.next_offset != start:
      _LOGGER.info('Seeking %s[%d] from %d to %d', topic, partition,
                   cached.next_offset, start)
      cached.consumer.assign([TopicPartition(topic, partition, start)])
      cached.next_offset = start
      cached.at_end = False
    return cached

  def _release(self, topic, partition, cached):
    if (topic, partition) in self._consumers:  # two restrictions, one process
      cached.consumer.close()
    else:
      self._consumers[(topic, partition)] = cached

  def _poll(self, cached: _CachedConsumer, deadline: float):
    """Returns messages: what is queued, else waits for the first one.

    ``consume(n, timeout)`` waits for all ``n`` messages or the whole
    timeout, so it is only called without waiting; waiting is a ``poll()``
    that returns with the first message.  One bundle waits at most
    ``poll_timeout_secs`` in total, so idle partitions do not add up.
    """
    consumer = cached.consumer
    messages = consumer.consume(self._max_chunk_records, 0)
    if messages or cached.at_end and self._bundle_wait_secs <= 0:
      return messages
    wait = min(self._bundle_wait_secs, max(0.0, deadline - time.monotonic()))
    if wait <= 0 and not cached.at_end:
      wait = min(self._poll_timeout_secs, 0.01)
    started = time.monotonic()
    first = consumer.poll(wait)
    self._bundle_wait_secs -= time.monotonic() - started
    if first is None:
      return []
    rest = consumer.consume(self._max_chunk_records - 1, 0)
    return [first] + rest if rest else [first]

  def process(
      self,
      spec: _PartitionSpec,
      tracker=beam.DoFn.RestrictionParam(_PartitionRestrictionProvider()),
      watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
          ManualWatermarkEstimator.default_provider())):
    restriction = tracker.current_restriction()
    topic, partition = spec.topic, spec.partition
    position = restriction.start
    if restriction.start >= restriction.stop:
      tracker.try_claim(restriction.stop)
      return
    now = time.monotonic()
    if self._bundle_deadline is None:
      self._bundle_deadline = now + self._max_bundle_secs
    cached = self._checkout(topic, partition, position)
    try:
      while True:
        if (_stop_requested(self._stop_token) or
            spec.stop_at_epoch_secs is not None and
            time.time() >= spec.stop_at_epoch_secs):
          _LOGGER.info('Stopping %s[%d] at offset %d', topic, partition,
                       position)
          tracker.try_claim(tracker.current_restriction().stop)
          return
        messages = self._poll(cached, self._bundle_deadline)
        end_offset = -1
        # The hot loop: one list comprehension, no per-record method lookups
        # beyond the message's own accessors (~1 us per record).
        records = [
            _new_tuple(KafkaRecord, (
                topic, partition, m.offset(), m.key(), m.value(),
                m.timestamp()[1],
                tuple(h) if (h := m.headers()) is not None else None))
            for m in messages if m.error() is None
        ]
        if len(records) != len(messages):
          for m in messages:
            error = m.error()
            if error is None:
              continue
            if error.code() == _PARTITION_EOF:
              # Every record before the end offset came before this event.
              cached.at_end = True
              end_offset = m.offset()
              continue
            if error.fatal():
              raise KafkaSourceError(f'{topic}[{partition}]: {error}')
            self._consumer_errors.inc()
            _LOGGER.warning('Kafka error reading %s[%d]: %s', topic,
                            partition, error)
        if records and records[0].offset < position:
          # Already emitted; cannot happen after an assign at ``position``.
          records = [r for r in records if r.offset >= position]
        if records:
          cached.at_end = False
          stop = tracker.current_restriction().stop
          if records[-1].offset >= stop:
            records = [r for r in records if r.offset < stop]
          if not records or not tracker.try_claim(records[-1].offset):
            # Reached the end of a bounded range (or a runner split).
            stop = tracker.current_restriction().stop
            records = [r for r in records if r.offset < stop]
            if records:
              tracker.try_claim(records[-1].offset)
              yield self._output(records, position, watermark_estimator)
            tracker.try_claim(stop)
            cached.next_offset = records[-1].offset + 1 if records else position
            return
          first_offset = position
          position = records[-1].offset + 1
          cached.next_offset = position
          yield self._output(records, first_offset, watermark_estimator)
          self._bundle_records += len(records)
          _report_lag(cached.consumer, topic, partition, position)
        if end_offset > position:
          # Only non-data offsets (transaction markers) before the end.
          position = end_offset
        if position >= restriction.stop:
          tracker.try_claim(restriction.stop)
          return
        if not records and (cached.at_end or not messages):
          # Caught up.  Let the watermark follow wall time like an idle
          # Java KafkaIO partition, and come back later.
          idle = Timestamp.now() - Duration(seconds=IDLE_WATERMARK_LAG_SECS)
          current = watermark_estimator.current_watermark()
          if current is None or idle > current:
            watermark_estimator.set_watermark(idle)
          tracker.defer_remainder(Duration(seconds=self._poll_timeout_secs))
          return
        if (time.monotonic() >= self._bundle_deadline or
            self._bundle_records >= self._max_bundle_records):
          tracker.defer_remainder()
          return
    finally:
      self._release(topic, partition, cached)

  def _output(self, records, first_offset, watermark_estimator):
    self._records_read.inc(len(records))
    self._chunks_read.inc()
    chunk = KafkaChunk(records[0].topic, records[0].partition, first_offset,
                       records[-1].offset + 1, records)
    newest = max(r.timestamp_ms for r in records)
    timestamp = _timestamp_of(newest)
    current = watermark_estimator.current_watermark()
    # The chunk carries its newest record's time; the watermark trails the
    # newest record seen (records of a partition are roughly time ordered).
    if current is None or timestamp > current:
      watermark_estimator.set_watermark(timestamp)
    return window.TimestampedValue(chunk, timestamp)


def _report_lag(consumer, topic: str, partition: int, position: int) -> None:
  """Sets the Prometheus lag gauge from the high watermark of the last fetch (no request)."""
  from confluent_kafka import KafkaException, TopicPartition
  try:
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
  except KafkaException:
    return
  if high is not None and high >= 0:
    prom.KAFKA_LAG.labels(topic, str(partition)).set(max(0, high - position))


class _ReadUnboundedPartitionFn(_ReadPartitionFn):
  """Reads one partition without end (``stop_at_end=False``)."""

  @beam.DoFn.unbounded_per_element()
  def process(
      self,
      spec: _PartitionSpec,
      tracker=beam.DoFn.RestrictionParam(_PartitionRestrictionProvider()),
      watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
          ManualWatermarkEstimator.default_provider())):
    yield from super().process(spec, tracker, watermark_estimator)


# ---------------------------------------------------------------------------
# Public read transforms


class ReadKafkaChunks(beam.PTransform[beam.pvalue.PBegin,
                                         beam.PCollection[KafkaChunk]]):
  """Reads Kafka topics as ``KafkaChunk``s of consecutive records.

  One restriction per partition (an ``OffsetRange``; its end is
  ``UNBOUNDED_STOP_OFFSET`` unless ``stop_at_end``).  A partition starts at
  the consumer group's committed offset, else at ``auto.offset.reset``
  (``earliest``/``latest``, default ``latest``).  Partitions are assigned
  with ``assign()``; the group is never joined and nothing is committed here
  (``enable.auto.commit`` and ``enable.auto.offset.store`` are forced off):
  use ``CommitOffsets`` after the sink.  Any other librdkafka setting
  (SASL/SSL, fetch sizes) passes through.

  Each output chunk holds the records of one partition returned by one
  consume call (at most ``max_chunk_records``), ``first_offset`` is the read
  position before it and ``next_offset`` the position after it, so chunks of
  a partition are contiguous (a gap only where transaction markers end a
  partition).  A chunk's timestamp is its newest record's
  timestamp; the watermark follows record timestamps, and an idle partition's
  watermark follows wall time minus ``IDLE_WATERMARK_LAG_SECS``.

  Errors: with ``validate=True`` (default) the topics are checked when the
  pipeline is built, so a bad broker address, an unreachable cluster or an
  unknown topic raise ``KafkaUnreachableError``/``UnknownTopicError`` from
  ``pipeline | ReadKafkaChunks(...)`` within ``start_timeout_secs``.  The
  same checks run again when the pipeline starts (the runner then wraps the
  error, keeping its message).

  Stopping an unbounded read: ``stop_after_secs`` (every partition finishes
  that long after the read started) or ``stop_token`` with
  :func:`request_stop` (same process only); both complete the restrictions,
  so the pipeline drains and ``run()`` returns.
  """

  def __init__(self,
               consumer_config: Dict[str, Any],
               topics: Sequence[str],
               partitions: Optional[Sequence[Union[int, Tuple[str,
                                                               int]]]] = None,
               stop_at_end: bool = False,
               max_chunk_records: int = DEFAULT_MAX_CHUNK_RECORDS,
               poll_timeout_secs: float = DEFAULT_POLL_TIMEOUT_SECS,
               start_timeout_secs: float = DEFAULT_START_TIMEOUT_SECS,
               *,
               validate: bool = True,
               stop_after_secs: Optional[float] = None,
               stop_token: Optional[str] = None,
               max_bundle_secs: float = DEFAULT_MAX_BUNDLE_SECS,
               max_bundle_records: int = DEFAULT_MAX_BUNDLE_RECORDS):
    """Initializes the reader.

    Args:
      consumer_config: librdkafka consumer settings; ``bootstrap.servers``
        and ``group.id`` are required.
      topics: topics to read.
      partitions: partitions to read: ints (the same for every topic) or
        ``(topic, partition)`` pairs; ``None`` reads all partitions.
      stop_at_end: read up to the end offsets seen at start, then finish.
      max_chunk_records: most records in one chunk.
      poll_timeout_secs: longest wait for new records per bundle before an
        idle read checkpoints.
      start_timeout_secs: timeout of the metadata and offset requests at
        construction and at start.
      validate: check brokers and topics while the pipeline is built.
      stop_after_secs: finish the read this long after it started.
      stop_token: finish the read when ``request_stop(stop_token)`` is called.
      max_bundle_secs: checkpoint the reading bundle after this long.
      max_bundle_records: checkpoint the reading bundle after this many
        records.

    Raises:
      KafkaConfigError: an argument is invalid.
    """
    super().__init__()
    self._config = _reader_config(consumer_config)
    if isinstance(topics, str):
      topics = [t for t in topics.split(',') if t]
    if not topics or not all(isinstance(t, str) and t for t in topics):
      raise KafkaConfigError(f'topics must be a non-empty list, got {topics!r}')
    self._topics = list(topics)
    _normalize_partitions(self._topics, partitions)
    self._partitions = list(partitions) if partitions is not None else None
    if max_chunk_records < 1:
      raise KafkaConfigError(
          f'max_chunk_records must be >= 1, got {max_chunk_records}')
    for name, value in (('poll_timeout_secs', poll_timeout_secs),
                        ('start_timeout_secs', start_timeout_secs),
                        ('max_bundle_secs', max_bundle_secs)):
      if value is None or value <= 0:
        raise KafkaConfigError(f'{name} must be > 0, got {value!r}')
    if stop_after_secs is not None and stop_after_secs < 0:
      raise KafkaConfigError(
          f'stop_after_secs must be >= 0, got {stop_after_secs!r}')
    self._stop_at_end = bool(stop_at_end)
    self._max_chunk_records = int(max_chunk_records)
    self._poll_timeout_secs = float(poll_timeout_secs)
    self._start_timeout_secs = float(start_timeout_secs)
    self._validate = validate
    self._stop_after_secs = stop_after_secs
    self._stop_token = stop_token
    self._max_bundle_secs = float(max_bundle_secs)
    self._max_bundle_records = int(max_bundle_records)

  def expand(self, pbegin):
    if self._validate:
      consumer = _new_consumer(self._config)
      try:
        _list_partitions(consumer, self._config, self._topics,
                         self._partitions, self._start_timeout_secs)
      finally:
        consumer.close()
    fn_class = (_ReadPartitionFn if self._stop_at_end
                else _ReadUnboundedPartitionFn)
    return (
        pbegin
        | 'Impulse' >> beam.Impulse()
        | 'ResolvePartitions' >> beam.ParDo(
            _ResolvePartitionsFn(self._config, self._topics, self._partitions,
                                 self._stop_at_end, self._start_timeout_secs,
                                 self._stop_after_secs))
        | 'Reshuffle' >> beam.Reshuffle()
        | 'ReadPartitions' >> beam.ParDo(
            fn_class(self._config, self._max_chunk_records,
                     self._poll_timeout_secs, self._max_bundle_secs,
                     self._max_bundle_records,
                     self._stop_token)).with_output_types(KafkaChunk))

  def display_data(self):
    return {
        'bootstrap_servers': DisplayDataItem(_describe(self._config),
                                             label='Bootstrap servers'),
        'group_id': DisplayDataItem(self._config['group.id'],
                                    label='Consumer group'),
        'topics': DisplayDataItem(','.join(self._topics), label='Topics'),
        'stop_at_end': DisplayDataItem(self._stop_at_end, label='Stop at end'),
        'max_chunk_records': DisplayDataItem(self._max_chunk_records,
                                             label='Max records per chunk'),
    }


def _records_of(chunk: KafkaChunk):
  for record in chunk.records:
    yield window.TimestampedValue(record, _timestamp_of(record.timestamp_ms))


class ReadFromKafka(beam.PTransform[beam.pvalue.PBegin,
                                       beam.PCollection[KafkaRecord]]):
  """Reads Kafka topics as single ``KafkaRecord``s.

  ``ReadKafkaChunks`` followed by a FlatMap; each record carries its own
  timestamp.  Prefer ``ReadKafkaChunks`` when throughput matters.  Takes the
  same arguments as :class:`ReadKafkaChunks`.
  """

  def __init__(self, consumer_config, topics, partitions=None,
               stop_at_end=False, max_chunk_records=DEFAULT_MAX_CHUNK_RECORDS,
               poll_timeout_secs=DEFAULT_POLL_TIMEOUT_SECS,
               start_timeout_secs=DEFAULT_START_TIMEOUT_SECS, **kwargs):
    super().__init__()
    self._chunks = ReadKafkaChunks(consumer_config, topics, partitions,
                                   stop_at_end, max_chunk_records,
                                   poll_timeout_secs, start_timeout_secs,
                                   **kwargs)

  def expand(self, pbegin):
    return (pbegin
            | 'ReadKafkaChunks' >> self._chunks
            | 'Records' >> beam.FlatMap(_records_of).with_output_types(
                KafkaRecord))


def chunk_read_of(chunk: KafkaChunk, count: Optional[int] = None) -> ChunkRead:
  """The ``ChunkRead`` of ``chunk``: by default one ack unit per record."""
  return ChunkRead(chunk.topic, chunk.partition, chunk.first_offset,
                   chunk.next_offset,
                   len(chunk.records) if count is None else count)


# ---------------------------------------------------------------------------
# Offset commits


class _OffsetTracker:
  """Per-partition bookkeeping of chunks and acks; no Beam, no Kafka.

  A chunk ``[first_offset, next_offset)`` expects ``count`` ack units; each
  acked offset is one unit for the chunk containing it (an offset may be
  acked several times when one record becomes several rows).  Acks may come
  before their chunk.  The committable offset is ``next_offset`` of the last
  chunk of the longest prefix of complete chunks, where the first chunk seen
  starts the prefix and chunks are ordered by offset; it never passes an
  incomplete chunk.
  """

  def __init__(self):
    self._firsts: List[int] = []   # sorted first offsets of pending chunks
    self._chunks: List[list] = []  # [first, next, remaining], same order
    self._early: Dict[int, int] = {}  # offset -> acks seen before its chunk
    self.position: Optional[int] = None  # end of the complete prefix
    self.committed: Optional[int] = None  # last offset committed to Kafka
    self.stale_acks = 0
    self.stale_chunks = 0

  def __repr__(self):
    return (f'_OffsetTracker(position={self.position}, '
            f'committed={self.committed}, pending={self._chunks}, '
            f'early={len(self._early)})')

  @property
  def pending_chunks(self) -> int:
    return len(self._chunks)

  def add_chunk(self, first_offset: int, next_offset: int,
                count: int) -> Optional[int]:
    """Records a chunk; returns the new prefix end if it moved, else None."""
    if next_offset < first_offset or count < 0:
      raise ValueError(
          f'bad chunk [{first_offset}, {next_offset}) count={count}')
    if self.position is not None and first_offset < self.position:
      # Behind the committed prefix: a replay of a chunk already complete.
      self.stale_chunks += 1
      return None
    remaining = count
    if self._early:
      if next_offset - first_offset <= len(self._early):
        offsets = range(first_offset, next_offset)
      else:
        offsets = [o for o in self._early if first_offset <= o < next_offset]
      for offset in offsets:
        remaining -= self._early.pop(offset, 0)
    index = bisect.bisect_left(self._firsts, first_offset)
    self._firsts.insert(index, first_offset)
    self._chunks.insert(index, [first_offset, next_offset, remaining])
    return self._advance()

  def ack(self, offsets: Iterable[int]) -> Optional[int]:
    """Records one ack unit per offset; returns the new prefix end or None."""
    firsts, chunks = self._firsts, self._chunks
    for offset in offsets:
      index = bisect.bisect_right(firsts, offset) - 1
      if index >= 0 and offset < chunks[index][1]:
        chunks[index][2] -= 1
      elif self.position is not None and offset < self.position:
        self.stale_acks += 1
      else:
        self._early[offset] = self._early.get(offset, 0) + 1
    return self._advance()

  def _advance(self) -> Optional[int]:
    chunks = self._chunks
    done = 0
    while done < len(chunks) and chunks[done][2] <= 0:
      done += 1
    if not done:
      return None
    new_position = chunks[done - 1][1]
    del chunks[:done]
    del self._firsts[:done]
    if self.position is not None and new_position <= self.position:
      return None
    self.position = new_position
    return new_position


class _CommitMetrics:
  """The committer's Beam metrics (namespace ``kafka``)."""

  def __init__(self):
    self.commits = Metrics.counter(METRICS_NAMESPACE, 'offset_commits')
    self.commit_failures = Metrics.counter(METRICS_NAMESPACE,
                                           'commit_failures')
    self.chunks = Metrics.counter(METRICS_NAMESPACE, 'chunks_tracked')
    self.acks = Metrics.counter(METRICS_NAMESPACE, 'acked_offsets')
    self.stale = Metrics.counter(METRICS_NAMESPACE, 'stale_acks')


def _track(tracker: _OffsetTracker, item, metrics: _CommitMetrics
          ) -> Optional[int]:
  """Applies ``item`` to ``tracker``; returns an offset to commit or None."""
  stale_before = tracker.stale_acks
  if isinstance(item, ChunkRead):
    metrics.chunks.inc()
    tracker.add_chunk(item.first_offset, item.next_offset, item.count)
  elif isinstance(item, OffsetAck):
    metrics.acks.inc(len(item.offsets))
    tracker.ack(item.offsets)
  else:
    raise TypeError(
        f'CommitOffsets takes ChunkRead and OffsetAck, got {type(item)!r}')
  if tracker.stale_acks != stale_before:
    metrics.stale.inc(tracker.stale_acks - stale_before)
  position = tracker.position
  if position is not None and (tracker.committed is None or
                               position > tracker.committed):
    return position
  return None


def _commit(consumer, tracker: _OffsetTracker, topic: str, partition: int,
            position: int, metrics: _CommitMetrics) -> bool:
  """Commits ``position`` synchronously; a failure is logged, not raised."""
  from confluent_kafka import KafkaException, TopicPartition
  try:
    consumer.commit(offsets=[TopicPartition(topic, partition, position)],
                    asynchronous=False)
  except KafkaException as e:
    # The next advance commits again (commits supersede each other).
    metrics.commit_failures.inc()
    _LOGGER.warning('Committing %s[%d]@%d failed: %s', topic, partition,
                    position, e)
    return False
  tracker.committed = position
  metrics.commits.inc()
  _LOGGER.debug('Committed %s[%d]@%d', topic, partition, position)
  return True


class _CommitOffsetsFn(beam.DoFn):
  """Keyed by (topic, partition): tracks chunks and acks, commits prefixes."""

  TRACKER = ReadModifyWriteStateSpec('tracker', coders.PickleCoder())

  def __init__(self, config):
    self._config = config
    self._metrics = _CommitMetrics()
    self._consumer = None

  def setup(self):
    self._consumer = _new_consumer(self._config)

  def teardown(self):
    if self._consumer is not None:
      try:
        self._consumer.close()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('closing the commit consumer failed', exc_info=True)
      self._consumer = None

  def process(self, element, tracker_state=beam.DoFn.StateParam(TRACKER)):
    (topic, partition), item = element
    tracker = tracker_state.read() or _OffsetTracker()
    position = _track(tracker, item, self._metrics)
    if position is not None and _commit(self._consumer, tracker, topic,
                                        partition, position, self._metrics):
      yield (topic, partition, position)
    tracker_state.write(tracker)


class _SharedCommitState:
  """Trackers and one consumer of one CommitOffsets, shared in a process."""

  def __init__(self):
    self.lock = threading.Lock()
    self.trackers: Dict[Tuple[str, int], _OffsetTracker] = {}
    self.consumer = None
    self.users = 0


# Trackers outlive the DoFn instances on purpose: forgetting a chunk that is
# still incomplete could let a later chunk start a new prefix past it.
_SHARED_COMMIT_STATES: Dict[str, _SharedCommitState] = {}
_SHARED_COMMIT_LOCK = threading.Lock()


class _InProcessCommitOffsetsFn(beam.DoFn):
  """CommitOffsets for in-process runners: no Flatten, no keyed state.

  Applied to each input PCollection separately, so it fuses into the stage
  that produces it; all applications of one CommitOffsets share, through
  ``state_id``, per-partition trackers and a consumer in this process.
  """

  def __init__(self, config, state_id):
    self._config = config
    self._state_id = state_id
    self._metrics = _CommitMetrics()
    self._shared = None

  def setup(self):
    with _SHARED_COMMIT_LOCK:
      shared = _SHARED_COMMIT_STATES.setdefault(self._state_id,
                                                _SharedCommitState())
      if shared.consumer is None:
        shared.consumer = _new_consumer(self._config)
      shared.users += 1
    self._shared = shared

  def teardown(self):
    shared, self._shared = self._shared, None
    if shared is None:
      return
    with _SHARED_COMMIT_LOCK:
      shared.users -= 1
      if shared.users == 0 and shared.consumer is not None:
        consumer, shared.consumer = shared.consumer, None
        try:
          consumer.close()
        except Exception:  # pylint: disable=broad-except
          _LOGGER.debug('closing the commit consumer failed', exc_info=True)

  def process(self, item):
    shared = self._shared
    key = (item.topic, item.partition)
    with shared.lock:
      tracker = shared.trackers.get(key)
      if tracker is None:
        tracker = shared.trackers[key] = _OffsetTracker()
      position = _track(tracker, item, self._metrics)
      if position is not None and _commit(shared.consumer, tracker,
                                          item.topic, item.partition,
                                          position, self._metrics):
        yield (item.topic, item.partition, position)


def _key_by_partition(item):
  return (item.topic, item.partition), item


def _runs_in_process(pipeline) -> bool:
  """True if ``pipeline`` runs on the FnApiRunner with in-process workers."""
  from apache_beam.options.pipeline_options import DirectOptions
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner
  if not isinstance(pipeline.runner, FnApiRunner):
    return False
  mode = pipeline.options.view_as(DirectOptions).direct_running_mode
  return mode in ('in_memory', 'multi_threading')


class CommitOffsets(beam.PTransform):
  """Commits consumer-group offsets once every row before them is finished.

  The input is ``ChunkRead``s (one per chunk read; see
  :func:`chunk_read_of`) and ``OffsetAck``s from the sink (one ack unit per
  offset per finished row: loaded, or dead-lettered), as one PCollection or
  as a tuple/list of PCollections.  Per (topic, partition) it commits
  ``next_offset`` of the last chunk of the longest prefix of complete chunks
  with a synchronous ``Consumer.commit()``; a partition's offset never moves
  past an incomplete chunk.  Chunks of a partition are expected in offset
  order (the reader emits them so); the first chunk seen starts the prefix.

  Two implementations (``in_process``):

  * portable (default on other runners): Flatten the inputs, re-window into
    the global window, key by (topic, partition), a stateful DoFn.
  * in-process (default on the FnApiRunner with in-memory or multi-threaded
    workers): the FnApiRunner materializes every multi-input Flatten and
    hands its output on only when all inputs are finished, so behind a
    Flatten the commits of an unbounded read would wait for the end of the
    run.  Instead a DoFn is applied to each input PCollection (so it fuses
    with its producer) and the applications share the per-partition
    trackers in process memory.  Pass the inputs as a tuple, not
    pre-flattened, to benefit.

  Returns:
    A PCollection of ``(topic, partition, offset)`` tuples, one per commit
    (in-process with several inputs: the Flatten of the per-input outputs,
    so on the FnApiRunner they are seen downstream at the end of the run;
    the commits themselves happen as the acks arrive).
  """

  def __init__(self,
               consumer_config: Dict[str, Any],
               group_id: Optional[str] = None,
               in_process: Optional[bool] = None):
    """Initializes the committer.

    Commits are synchronous; how long one may block on a broker that is down
    is bounded by librdkafka's request timeouts (``socket.timeout.ms``), as
    ``Consumer.commit`` takes no timeout.

    Args:
      consumer_config: librdkafka settings (the reader's config works).
      group_id: the consumer group; defaults to the config's ``group.id``.
      in_process: force the in-process (True) or the portable (False)
        implementation; default: in-process on an in-process FnApiRunner.

    Raises:
      KafkaConfigError: no group id or no bootstrap servers.
    """
    super().__init__()
    config = dict(consumer_config)
    if group_id:
      config['group.id'] = group_id
    self._config = _reader_config(config)
    self._in_process = in_process
    self._state_id = uuid.uuid4().hex

  def expand(self, inputs):
    if isinstance(inputs, beam.PCollection):
      inputs = (inputs,)
    inputs = tuple(inputs)
    if not inputs:
      raise KafkaConfigError('CommitOffsets needs at least one input')
    pipeline = inputs[0].pipeline
    in_process = self._in_process
    if in_process is None:
      in_process = _runs_in_process(pipeline)
    if in_process:
      commits = [
          pcoll | f'Commit{i}' >> beam.ParDo(
              _InProcessCommitOffsetsFn(self._config, self._state_id))
          .with_output_types(Tuple[str, int, int])
          for i, pcoll in enumerate(inputs)
      ]
      if len(commits) == 1:
        return commits[0]
      return tuple(commits) | 'Commits' >> beam.Flatten()
    merged = (inputs[0] if len(inputs) == 1
              else inputs | 'Flatten' >> beam.Flatten())
    return (merged
            | 'GlobalWindow' >> beam.WindowInto(window.GlobalWindows())
            | 'KeyByPartition' >> beam.Map(_key_by_partition).with_output_types(
                Tuple[Tuple[str, int], Any])
            | 'Commit' >> beam.ParDo(
                _CommitOffsetsFn(self._config))
            .with_output_types(Tuple[str, int, int]))


# ---------------------------------------------------------------------------
# Beam's Java KafkaIO (--kafka_reader=xlang)


def _record_from_beam_row(row) -> KafkaRecord:
  headers = getattr(row, 'headers', None)
  if headers:
    headers = tuple((h.key, h.value) for h in headers)
  else:
    headers = None
  return KafkaRecord(row.topic, row.partition, row.offset, row.key, row.value,
                     row.timestamp, headers)


class _XlangReader(beam.PTransform):
  def __init__(self, read):
    super().__init__()
    self.read = read

  def expand(self, pbegin):
    return (pbegin
            | 'ReadFromKafkaXlang' >> self.read
            | 'ToKafkaRecord' >> beam.Map(_record_from_beam_row)
            .with_output_types(KafkaRecord))


def build_xlang_reader(consumer_config: Dict[str, Any],
                       topics: Sequence[str],
                       stop_at_end: bool = False,
                       max_num_records: Optional[int] = None,
                       max_read_time_secs: Optional[int] = None,
                       expansion_service: Optional[str] = None,
                       commit_offset_in_finalize: bool = False,
                       timestamp_policy: str = 'CreateTime',
                       **kwargs) -> beam.PTransform:
  """Returns Beam's Java KafkaIO read mapped to ``KafkaRecord``s.

  For ``--kafka_reader=xlang`` on Flink/Dataflow.  Needs Java and the
  expansion service jar (or ``expansion_service='host:port'``) when the
  pipeline is built.  Limits: no ``stop_at_end`` (KafkaIO has only
  ``max_num_records``/``max_read_time``), no ``partitions`` selection, no
  chunks (one element per record), and offsets are committed by KafkaIO
  only with ``commit_offset_in_finalize`` (on bundle finalization, i.e.
  before the rows are loaded: at-most-once for a crashing loader), not by
  ``CommitOffsets``.

  Args:
    consumer_config: Kafka consumer properties for the Java client (values
      are passed as strings).
    topics: topics to read.
    stop_at_end: not supported; raises if True.
    max_num_records: stop after this many records (tests, demos).
    max_read_time_secs: stop after this long.
    expansion_service: ``host:port`` of a running expansion service.
    commit_offset_in_finalize: let KafkaIO commit offsets on finalize.
    timestamp_policy: ``ProcessingTime``, ``CreateTime`` or
      ``LogAppendTime``.
    **kwargs: other ``apache_beam.io.kafka.ReadFromKafka`` arguments.

  Raises:
    KafkaConfigError: ``stop_at_end`` was asked for.
  """
  from apache_beam.io.kafka import ReadFromKafka as _JavaReadFromKafka
  if stop_at_end:
    raise KafkaConfigError(
        'stop_at_end is not supported with --kafka_reader=xlang; use '
        'max_num_records or max_read_time_secs')
  java_config = {
      k: str(v).lower() if isinstance(v, bool) else str(v)
      for k, v in consumer_config.items()
      if k not in ('logger', 'error_cb', 'stats_cb')
  }
  java_config.setdefault('enable.auto.commit', 'false')
  read = _JavaReadFromKafka(
      consumer_config=java_config,
      topics=list(topics),
      max_num_records=max_num_records,
      max_read_time=max_read_time_secs,
      commit_offset_in_finalize=commit_offset_in_finalize,
      timestamp_policy=timestamp_policy,
      with_metadata=True,
      expansion_service=expansion_service,
      **kwargs)
  return _XlangReader(read)


def _single_record_chunk(record: KafkaRecord) -> KafkaChunk:
  return KafkaChunk(record.topic, record.partition, record.offset,
                    record.offset + 1, [record])


class _XlangChunkReader(beam.PTransform):
  def __init__(self, records):
    super().__init__()
    self.records = records

  def expand(self, pbegin):
    return (pbegin
            | 'ReadRecords' >> self.records
            | 'ToKafkaChunk' >> beam.Map(_single_record_chunk)
            .with_output_types(KafkaChunk))


def build_xlang_chunk_reader(consumer_config: Dict[str, Any],
                             topics: Sequence[str],
                             stop_at_end: bool = False,
                             **kwargs) -> beam.PTransform:
  """Like :func:`build_xlang_reader`, but emits one-record ``KafkaChunk``s.

  A drop-in for ``ReadKafkaChunks`` in the pipeline when
  ``--kafka_reader=xlang``: every chunk holds one record
  (``[offset, offset + 1)``), so ``chunk_read_of`` and ``CommitOffsets`` work
  unchanged, at one element per record downstream.  Same arguments and
  limits as :func:`build_xlang_reader`.

  Raises:
    KafkaConfigError: ``stop_at_end`` was asked for.
  """
  return _XlangChunkReader(
      build_xlang_reader(consumer_config, topics, stop_at_end=stop_at_end,
                         **kwargs))
