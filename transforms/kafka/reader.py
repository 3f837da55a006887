"""``ReadKafkaChunks`` / ``ReadFromKafka``: a native Python Kafka source on confluent-kafka.

A splittable DoFn reads each partition's offset range (one restriction per
partition, never split up front) with a consumer of its own that it
``assign()``s -- the group is never joined and nothing is committed here
(``CommitOffsets`` commits after the rows are loaded).  It emits
``KafkaChunk``s, the records one consume call returned, because the Python
runners spend tens of microseconds per element per transform.  Watermarks
follow record timestamps; an idle partition's watermark follows wall time.
Bounded (``stop_at_end``: up to the end offsets seen at start) or unbounded
(until stopped: ``stop_after_secs``, a stop token, or the runner's drain).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms import core, window
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import metrics, monitoring
from transforms.kafka import coders as _coders  # noqa: F401  (registers the chunk coders)
from transforms.kafka import stop
from transforms.kafka.config import (KafkaConfigError, KafkaSourceError, describe_servers,
                                     new_consumer, reader_config)
from transforms.kafka.discovery import (DEFAULT_DISCOVERY_INTERVAL_SECS, Discovery,
                                        WatchRestriction, WatchTracker, try_check_topics)
from transforms.kafka.partitions import (UNBOUNDED_STOP_OFFSET, WATCH_KEY, PartitionSpec,
                                         WatchSpec, list_partitions, normalize_partitions,
                                         _ResolvePartitionsFn)
from transforms.kafka.topics import DEFAULT_JOURNAL_TOPIC, TopicSelector
from transforms.types import ChunkRead, KafkaChunk, KafkaRecord

__all__ = ['ReadKafkaChunks', 'ReadFromKafka', 'chunk_read_of', 'DEFAULT_MAX_CHUNK_RECORDS',
           'DEFAULT_DISCOVERY_INTERVAL_SECS']

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_RECORDS = 1000
DEFAULT_POLL_TIMEOUT_SECS = 0.1
DEFAULT_START_TIMEOUT_SECS = 10.0
# A bundle of the reading stage ends (every restriction defers its remainder)
# after this long or this many records: the runner checkpoints the read, and
# the stages fused behind it (the in-process batcher and sink) check their
# time limits, between bundles.
DEFAULT_MAX_BUNDLE_SECS = 1.0
DEFAULT_MAX_BUNDLE_RECORDS = 100000
# Like Java KafkaIO's idle policy: a partition with no backlog moves its
# watermark to "now - 2 s" so idle partitions do not hold windows back.
IDLE_WATERMARK_LAG_SECS = 2.0
# librdkafka's RD_KAFKA_RESP_ERR__PARTITION_EOF (KafkaError._PARTITION_EOF).
_PARTITION_EOF = -191
# librdkafka prefetches up to queued.max.messages.kbytes per consumer, i.e. per
# partition here: all partitions of a source share this budget (each gets
# between the bounds), so memory does not grow with the backlog or with the
# number of partitions.  The user's consumer config wins.
_PREFETCH_BUDGET_KBYTES = 64 * 1024
_PREFETCH_KBYTES_BOUNDS = (1024, 16 * 1024)
_PREFETCH_MIN_MESSAGES = 20000
# librdkafka waits fetch.queue.backoff.ms (default 1 s) before fetching again for a partition
# whose queue reached its limit: with small per-partition queues a fast reader would starve.
_FETCH_QUEUE_BACKOFF_MS = 10


def prefetch_kbytes(partition_count: int) -> int:
  """librdkafka's ``queued.max.messages.kbytes`` for one of ``partition_count`` partitions.

  A partition found while a streaming read runs gets the share of the count
  then (the partitions already read keep theirs: a live consumer's queue
  cannot shrink), so after growth the prefetch may reach twice the budget
  until the job restarts.
  """
  low, high = _PREFETCH_KBYTES_BOUNDS
  return max(low, min(high, _PREFETCH_BUDGET_KBYTES // max(1, partition_count)))


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
  """One OffsetRange per partition; never split up front.

  The discovery loop's element (``WatchSpec``) has a ``WatchRestriction``.
  """

  def initial_restriction(self, element: PartitionSpec):
    if isinstance(element, WatchSpec):
      return WatchRestriction(frozenset(element.known))
    return OffsetRange(element.start_offset,
                       max(element.start_offset, element.stop_offset))

  def create_tracker(self, restriction):
    if isinstance(restriction, WatchRestriction):
      return WatchTracker(restriction)
    return _PartitionOffsetTracker(restriction)

  def split(self, element, restriction):
    yield restriction

  def restriction_size(self, element, restriction):
    if isinstance(restriction, WatchRestriction) or restriction.stop >= UNBOUNDED_STOP_OFFSET:
      return 1  # backlog unknown
    return restriction.size()

  def truncate(self, element, restriction):
    # On drain an unbounded read (and the discovery loop) stops at once; a bounded one finishes.
    if isinstance(restriction, WatchRestriction) or restriction.stop >= UNBOUNDED_STOP_OFFSET:
      return None
    return restriction


class _LateTracker:
  """The tracker of a partition the discovery loop reads: an unbounded range from its position.

  It stands in for the runner's tracker view inside the loop's element; a
  deferral is the loop's own (it defers after reading every such partition).
  """

  def __init__(self, start: int):
    self._tracker = _PartitionOffsetTracker(OffsetRange(start, UNBOUNDED_STOP_OFFSET))

  def current_restriction(self):
    return self._tracker.current_restriction()

  def try_claim(self, position) -> bool:
    return self._tracker.try_claim(position)

  def defer_remainder(self, deferred_time=None):  # pylint: disable=unused-argument
    pass

  @property
  def next_offset(self) -> int:
    """Where the next read of the partition starts: after the last claimed offset."""
    claimed = self._tracker._current_position  # pylint: disable=protected-access
    return self._tracker.start_position() if claimed is None else claimed + 1




class _CachedConsumer:
  __slots__ = ('consumer', 'next_offset', 'at_end')

  def __init__(self, consumer, next_offset):
    self.consumer = consumer
    self.next_offset = next_offset
    self.at_end = False


_new_tuple = tuple.__new__


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
    self._records_read = Metrics.counter(metrics.NAMESPACE, 'records_read')
    self._chunks_read = Metrics.counter(metrics.NAMESPACE, 'chunks_read')
    self._consumer_errors = Metrics.counter(metrics.NAMESPACE,
                                            'consumer_errors')
    self._consumers_created = Metrics.counter(metrics.NAMESPACE,
                                              'consumers_created')
    self._consumers: Dict[Tuple[str, int], _CachedConsumer] = {}

  def setup(self):
    self._consumers = {}
    self._rewound: Dict[Tuple[str, int], int] = {}

  def _report_rewind(self, topic: str, partition: int, position: int, offset: int) -> None:
    """Says once per partition and position that records below the position are skipped."""
    if self._rewound.get((topic, partition)) == position:
      return
    self._rewound[(topic, partition)] = position
    _LOGGER.warning(
        '%s[%d]: the broker sent offset %d, below the read position %d (the topic was deleted '
        'and re-created?): offsets below %d are not read, so that nothing loads twice. A topic '
        're-created under a new name is read from its start', topic, partition, offset, position,
        position)

  def teardown(self):
    consumers, self._consumers = self._consumers, {}
    for cached in consumers.values():
      try:
        cached.consumer.close()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('closing a consumer failed', exc_info=True)

  def start_bundle(self):
    self._monitor = monitoring.monitor()
    self._bundle_deadline = None
    self._bundle_records = 0
    self._bundle_wait_secs = self._poll_timeout_secs

  def _consumer_overrides(self, partition_count: int) -> Dict[str, Any]:
    overrides: Dict[str, Any] = {'enable.partition.eof': True}
    defaults = {'queued.max.messages.kbytes': prefetch_kbytes(partition_count),
                'queued.min.messages': _PREFETCH_MIN_MESSAGES,
                'fetch.queue.backoff.ms': _FETCH_QUEUE_BACKOFF_MS}
    for key, value in defaults.items():
      if key not in self._config:
        overrides[key] = value
    return overrides

  def _checkout(self, spec: PartitionSpec, start: int) -> _CachedConsumer:
    """Returns this partition's consumer positioned at ``start``.

    The consumer is kept across resumed restrictions: librdkafka keeps
    prefetching while the runner moves on, and a consumer whose position
    already is ``start`` needs no seek (which would drop the prefetched
    queue).
    """
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    topic, partition = spec.topic, spec.partition
    cached = self._consumers.pop((topic, partition), None)
    if cached is None:
      consumer = new_consumer(self._config, **self._consumer_overrides(spec.partition_count))
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
      spec: PartitionSpec,
      tracker=beam.DoFn.RestrictionParam(_PartitionRestrictionProvider()),
      watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
          ManualWatermarkEstimator.default_provider())):
    restriction = tracker.current_restriction()
    topic, partition = spec.topic, spec.partition
    position = restriction.start
    if restriction.start >= restriction.stop:
      self._finish(spec, tracker)
      return
    now = time.monotonic()
    if self._bundle_deadline is None:
      self._bundle_deadline = now + self._max_bundle_secs
    cached = self._checkout(spec, position)
    try:
      while True:
        if (stop.stop_requested(self._stop_token) or
            spec.stop_at_epoch_secs is not None and
            time.time() >= spec.stop_at_epoch_secs):
          _LOGGER.info('Stopping %s[%d] at offset %d', topic, partition,
                       position)
          self._finish(spec, tracker, stopped=True)
          return
        messages = self._poll(cached, self._bundle_deadline)
        self._monitor.heartbeat('reader')
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
          # Below the read position: the consumer was reset backwards (the topic was deleted
          # and re-created, ``auto.offset.reset`` applied). Those offsets were read (or
          # belonged to the old topic): reading them would load them twice.
          self._report_rewind(topic, partition, position, records[0].offset)
          records = [r for r in records if r.offset >= position]
        if records:
          cached.at_end = False
          stop_offset = tracker.current_restriction().stop
          if records[-1].offset >= stop_offset:
            records = [r for r in records if r.offset < stop_offset]
          if not records or not tracker.try_claim(records[-1].offset):
            # Reached the end of a bounded range (or a runner split).
            stop_offset = tracker.current_restriction().stop
            records = [r for r in records if r.offset < stop_offset]
            if records:
              tracker.try_claim(records[-1].offset)
              yield self._output(records, position, watermark_estimator)
            self._finish(spec, tracker)
            cached.next_offset = records[-1].offset + 1 if records else position
            return
          first_offset = position
          position = records[-1].offset + 1
          cached.next_offset = position
          yield self._output(records, first_offset, watermark_estimator)
          self._bundle_records += len(records)
          _report_lag(cached.consumer, topic, partition, position)
        if end_offset > position:
          # No record for us before the end: transaction markers, aborted
          # records (read_committed), compacted-away offsets.  An empty chunk
          # covers them, so CommitOffsets commits up to the end offset (else
          # the group's lag never reaches 0 past a transaction's last marker).
          end = min(end_offset, tracker.current_restriction().stop)
          if end > position and tracker.try_claim(end - 1):
            yield self._output_empty(topic, partition, position, end, watermark_estimator)
            cached.next_offset = end
          position = end_offset
        if position >= restriction.stop:
          self._finish(spec, tracker)
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

  def _finish(self, spec: PartitionSpec, tracker, stopped: bool = False) -> None:
    """Completes the restriction; reports the partition done when this was its tail."""
    stop_offset = tracker.current_restriction().stop
    tracker.try_claim(stop_offset)
    if stopped or stop_offset >= spec.stop_offset:
      stop.partition_done(self._stop_token, (spec.topic, spec.partition))

  def _output_empty(self, topic, partition, first_offset, next_offset, watermark_estimator):
    """A chunk without records over ``[first_offset, next_offset)``; the watermark stays."""
    self._chunks_read.inc()
    chunk = KafkaChunk(topic, partition, first_offset, next_offset, [])
    current = watermark_estimator.current_watermark()
    return window.TimestampedValue(chunk, current if current is not None else Timestamp.now())

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
    lag = max(0, high - position)
    metrics.KAFKA_LAG.labels(topic, str(partition)).set(lag)
    monitoring.monitor().partition_progress(topic, partition, lag=lag)


class _ReadUnboundedPartitionFn(_ReadPartitionFn):
  """Reads one partition without end (``stop_at_end=False``), or runs the discovery loop.

  The loop (a ``WatchSpec`` element, see ``discovery``) looks for new
  partitions every ``discovery.interval_secs`` and reads the ones it found
  with the same per-partition code, one consumer each, in its own element.
  """

  def __init__(self, *args, discovery: Optional[Discovery] = None):
    super().__init__(*args)
    self._discovery = discovery

  def setup(self):
    super().setup()
    self._discovery_consumer = None
    self._late_watermarks: Dict[Tuple[str, int], ManualWatermarkEstimator] = {}

  def teardown(self):
    consumer, self._discovery_consumer = getattr(self, '_discovery_consumer', None), None
    if consumer is not None:
      try:
        consumer.close()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('closing the discovery consumer failed', exc_info=True)
    super().teardown()

  @beam.DoFn.unbounded_per_element()
  def process(
      self,
      spec: PartitionSpec,
      tracker=beam.DoFn.RestrictionParam(_PartitionRestrictionProvider()),
      watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
          ManualWatermarkEstimator.default_provider())):
    if isinstance(spec, WatchSpec):
      yield from self._watch(spec, tracker, watermark_estimator)
    else:
      yield from super().process(spec, tracker, watermark_estimator)

  def _watch(self, spec: WatchSpec, tracker, watermark_estimator):
    """One turn of the discovery loop: look for partitions when due, read the found ones."""
    state: WatchRestriction = tracker.current_restriction()
    if (stop.stop_requested(self._stop_token) or
        spec.stop_at_epoch_secs is not None and time.time() >= spec.stop_at_epoch_secs):
      for topic, partition, _ in state.late:
        stop.partition_done(self._stop_token, (topic, partition))
      _LOGGER.info('Stopping the discovery of new partitions (%d found while running: %s)',
                   len(state.late), ', '.join(f'{t}[{p}]@{o}' for t, p, o in state.late) or '-')
      stop.partition_done(self._stop_token, WATCH_KEY)
      tracker.try_claim(state._replace(done=True))
      return
    now = time.time()
    if now >= state.next_check_epoch:
      found, gone = try_check_topics(self._metadata_consumer(), self._config, self._discovery,
                                     state.known, state.gone)
      if found:
        # Registered before any of them is read: a drain waits for them.
        stop.expect_partitions(self._stop_token, [(f.topic, f.partition) for f in found])
      state = state._replace(
          known=state.known | {(f.topic, f.partition) for f in found},
          late=state.late + tuple((f.topic, f.partition, f.start_offset) for f in found),
          next_check_epoch=now + self._discovery.interval_secs, gone=gone)
      if not tracker.try_claim(state):
        return
    if self._bundle_deadline is None:
      self._bundle_deadline = time.monotonic() + self._max_bundle_secs
    late = []
    for topic, partition, position in state.late:
      inner = _LateTracker(position)
      estimator = self._late_watermarks.get((topic, partition))
      if estimator is None:
        estimator = ManualWatermarkEstimator(watermark_estimator.current_watermark())
        self._late_watermarks[(topic, partition)] = estimator
      yield from _ReadPartitionFn.process(
          self, PartitionSpec(topic, partition, position, UNBOUNDED_STOP_OFFSET,
                              spec.stop_at_epoch_secs, len(state.known)), inner, estimator)
      late.append((topic, partition, inner.next_offset))
    state = state._replace(late=tuple(late))
    if not tracker.try_claim(state):
      return
    self._advance_watch_watermark(watermark_estimator, state)
    if not state.late and not spec.known:
      # Alone in the reading stage (a pattern that matches nothing yet): wait here, as idle
      # partitions do, instead of spinning through empty bundles.
      wait = min(self._bundle_wait_secs, max(0.0, state.next_check_epoch - time.time()))
      if wait > 0:
        time.sleep(wait)
        self._bundle_wait_secs -= wait
    tracker.defer_remainder(Duration(seconds=max(0.0, min(
        self._poll_timeout_secs, state.next_check_epoch - time.time()))))

  def _advance_watch_watermark(self, watermark_estimator, state: WatchRestriction) -> None:
    """The loop's watermark: the oldest of its partitions', or wall time when it reads none."""
    marks = [self._late_watermarks.get((t, p)) for t, p, _ in state.late]
    marks = [m.current_watermark() for m in marks if m is not None]
    if state.late and (len(marks) < len(state.late) or any(m is None for m in marks)):
      return
    candidate = (min(marks) if marks else
                 Timestamp.now() - Duration(seconds=IDLE_WATERMARK_LAG_SECS))
    current = watermark_estimator.current_watermark()
    if current is None or candidate > current:
      watermark_estimator.set_watermark(candidate)

  def _metadata_consumer(self):
    if self._discovery_consumer is None:
      self._discovery_consumer = new_consumer(self._config)
    return self._discovery_consumer


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
  a partition are contiguous.  Offsets that hold no record for the reader
  (transaction markers, aborted records, compacted-away offsets) lie inside
  the next chunk, or, when they end what is in the partition, inside a chunk
  without records, so that the committed offset can reach the end offset.
  A chunk's timestamp is its newest record's
  timestamp; the watermark follows record timestamps, and an idle partition's
  watermark follows wall time minus ``IDLE_WATERMARK_LAG_SECS``.
  Only committed transactions are read (``isolation.level=read_committed``
  unless the config says otherwise).

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

  Topics: a list of names, or ``topic_pattern``, a regular expression the
  whole topic name must match (``re.fullmatch``); a pattern never matches an
  internal topic (``__*``, ``_schemas``, ``_confluent*``) nor one of
  ``excluded_topics`` (the load journal's).  A bounded read resolves its
  topics once, at start (a pattern matching nothing is an
  ``UnknownTopicError``).  An unbounded read without ``partitions`` also
  looks for new partitions every ``discovery_interval_secs`` (None: never):
  new topics matching the pattern and partitions added to its topics; they
  start at the group's committed offset, else at the earliest offset (see
  ``transforms.kafka.discovery``).  A pattern that matches nothing at start
  is logged and waited for.
  """

  def __init__(self,
               consumer_config: Dict[str, Any],
               topics: Optional[Sequence[str]] = None,
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
               max_bundle_records: int = DEFAULT_MAX_BUNDLE_RECORDS,
               topic_pattern: Optional[str] = None,
               discovery_interval_secs: Optional[float] = DEFAULT_DISCOVERY_INTERVAL_SECS,
               excluded_topics: Sequence[str] = (DEFAULT_JOURNAL_TOPIC,)):
    """Initializes the reader.

    Args:
      consumer_config: librdkafka consumer settings; ``bootstrap.servers``
        and ``group.id`` are required.
      topics: topics to read (or ``topic_pattern``).
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
      topic_pattern: read every topic whose whole name matches this regular
        expression (instead of ``topics``).
      discovery_interval_secs: an unbounded read looks for new topics and
        partitions this often; None: never.
      excluded_topics: names ``topic_pattern`` never matches (the load
        journal's topic).

    Raises:
      KafkaConfigError: an argument is invalid.
    """
    super().__init__()
    self._config = reader_config(consumer_config)
    if isinstance(topics, str):
      topics = [t for t in topics.split(',') if t]
    if topic_pattern is not None:
      if topics:
        raise KafkaConfigError('give topics or topic_pattern, not both')
      if partitions is not None:
        raise KafkaConfigError('partitions cannot be chosen with topic_pattern')
      try:
        self._selector = TopicSelector(pattern=topic_pattern, excluded=excluded_topics)
      except ValueError as error:
        raise KafkaConfigError(str(error)) from None
      self._topics = []
    else:
      if not topics or not all(isinstance(t, str) and t for t in topics):
        raise KafkaConfigError(f'topics must be a non-empty list, got {topics!r}')
      self._topics = list(topics)
      self._selector = TopicSelector(topics=self._topics)
      normalize_partitions(self._topics, partitions)
    if discovery_interval_secs is not None and not discovery_interval_secs > 0:
      raise KafkaConfigError(
          f'discovery_interval_secs must be > 0 or None, got {discovery_interval_secs!r}')
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
    # Partitions chosen by hand are a fixed set: no discovery.
    self._discovery = (
        Discovery(self._selector, float(discovery_interval_secs), self._start_timeout_secs)
        if not self._stop_at_end and discovery_interval_secs is not None and partitions is None
        else None)

  def expand(self, pbegin):
    if self._validate:
      consumer = new_consumer(self._config)
      try:
        found = list_partitions(consumer, self._config, self._selector, self._partitions,
                                self._start_timeout_secs, allow_empty=not self._stop_at_end)
      finally:
        consumer.close()
      if not found:
        _LOGGER.warning('No topic on %s matches the %s yet: the read waits for one (looking '
                        'every %ss)', describe_servers(self._config), self._selector.describe(),
                        self._discovery.interval_secs if self._discovery else '-')
    if self._stop_at_end:
      read_fn = _ReadPartitionFn(self._config, self._max_chunk_records, self._poll_timeout_secs,
                                 self._max_bundle_secs, self._max_bundle_records,
                                 self._stop_token)
    else:
      read_fn = _ReadUnboundedPartitionFn(self._config, self._max_chunk_records,
                                          self._poll_timeout_secs, self._max_bundle_secs,
                                          self._max_bundle_records, self._stop_token,
                                          discovery=self._discovery)
    return (
        pbegin
        | 'Impulse' >> beam.Impulse()
        | 'ResolvePartitions' >> beam.ParDo(
            _ResolvePartitionsFn(self._config, self._selector, self._partitions,
                                 self._stop_at_end, self._start_timeout_secs,
                                 self._stop_after_secs, self._stop_token,
                                 watch=self._discovery is not None))
        | 'Reshuffle' >> beam.Reshuffle()
        | 'ReadPartitions' >> beam.ParDo(read_fn).with_output_types(KafkaChunk))

  def display_data(self):
    return {
        'bootstrap_servers': DisplayDataItem(describe_servers(self._config),
                                             label='Bootstrap servers'),
        'group_id': DisplayDataItem(self._config['group.id'],
                                    label='Consumer group'),
        'topics': DisplayDataItem(self._selector.pattern or ','.join(self._topics),
                                  label='Topic pattern' if self._selector.is_pattern
                                  else 'Topics'),
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


