"""The reading splittable DoFn: one partition's offset range as ``KafkaChunk``s.

Each restriction is read with the partition's consumer from this process's
``PartitionReads``; every consume call's records become one chunk.  A
bundle ends (the restriction defers its remainder) after
``max_bundle_secs`` or ``max_bundle_records``, or when the partition is
caught up.  With ``durable`` (the loader: ``CommitOffsets`` of the same run
acknowledges the rows) the checkpointed remainder starts at the partition's
durable offset (``restriction``), else at the read position.  A partition that reaches its end -- the end
offset seen at start (``stop_at_end``), the run's stop (a drain), or the
runner's drain (``truncate``) -- is reported ended to the runtime and
finishes only once every row read from it is durable: the batcher and the
sink flush and wait when every source of the process has ended, and the
restriction checks back shortly.

The discovery loop (a ``WatchSpec`` element) is read by the same DoFn
(``discovery_fn``).
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Tuple

import apache_beam as beam
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import metrics
from transforms.kafka import consumers as _consumers
from transforms.kafka import progress as _progress
from transforms.kafka.config import KafkaSourceError
from transforms.kafka.partitions import UNBOUNDED_STOP_OFFSET, PartitionSpec
from transforms.kafka.restriction import DrainingRange, Durable, PartitionRestrictionProvider
from transforms.runtime import RunContext, acquire, release
from transforms.types import KafkaChunk, KafkaRecord

__all__ = ['ReadPartitionFn', 'Outcome', 'IDLE_WATERMARK_LAG_SECS']

_LOGGER = logging.getLogger('transforms.kafka.reader')

# Like Java KafkaIO's idle policy: a partition with no backlog moves its
# watermark to "now - 2 s" so idle partitions do not hold windows back.
IDLE_WATERMARK_LAG_SECS = 2.0
# librdkafka's RD_KAFKA_RESP_ERR__PARTITION_EOF (KafkaError._PARTITION_EOF).
_PARTITION_EOF = -191
# A partition at its end whose rows are not durable yet checks back this soon.
_FINISH_RECHECK_SECS = 0.05
# A partition with more to read resumes this soon after its bundle ended, never at once: a
# runner that fires due resumptions while it finishes a bundle (Flink does, before a
# checkpoint barrier) would otherwise never get to the barrier while records flow.
_RESUME_SECS = 0.05
# Each call reads for at least this long (unless caught up), also late in a long bundle: a
# runner that keeps one bundle open and feeds it resumptions (Flink streaming) would otherwise
# see every late call defer at once, dozens of times a second per partition.
_MIN_CALL_SECS = 0.2
# A partition assigned this recently without a message yet has its first fetch under way: a
# bundle that has waited its share reads other partitions meanwhile instead of waiting a fetch's
# round trip (~8 ms) for each in turn (300 tables' topics: 10 s of waits), and it is not woken
# again.  Later, it is waited for and woken like any other.
_FIRST_FETCH_SECS = 0.5
# A caught-up partition comes back this much later.  Every resumption costs the runner a timer,
# and Beam's portable Flink runner before apache/beam#39191 also keeps one state entry per
# resumption for ever: rarer ones grow its checkpoints more slowly.
_IDLE_RESUME_SECS = 1.0

_new_tuple = tuple.__new__


def _topic_partition(topic: str, partition: int, offset: int):
  from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
  return TopicPartition(topic, partition, offset)


def _fresh(cached: _consumers.CachedConsumer) -> bool:
  """Whether the partition was assigned (and its leader woken) so lately that its first fetch
  is still under way: not waited for, and not woken again."""
  return (cached.assigned_at is not None and
          time.monotonic() - cached.assigned_at < _FIRST_FETCH_SECS)


def _timestamp_of(timestamp_ms: int) -> Timestamp:
  if timestamp_ms is None or timestamp_ms < 0:
    return Timestamp.now()
  return Timestamp(micros=timestamp_ms * 1000)


class Outcome:
  """How a read of one restriction ended: ``defer`` (with a delay), ``done`` or ``split``."""
  __slots__ = ('action', 'delay_secs')

  DEFER = 'defer'
  DONE = 'done'
  SPLIT = 'split'

  def __init__(self):
    self.action = self.DEFER
    self.delay_secs: Optional[float] = None


class ReadPartitionFn(beam.DoFn):
  """Reads one partition's offset range as ``KafkaChunk``s (see the module docstring)."""

  def __init__(self, config, max_chunk_records, poll_timeout_secs, max_bundle_secs,
               max_bundle_records, context: RunContext, durable: bool = False):
    self._config = config
    self._durable = durable
    self._max_chunk_records = max_chunk_records
    self._poll_timeout_secs = poll_timeout_secs
    self._max_bundle_secs = max_bundle_secs
    self._max_bundle_records = max_bundle_records
    self._context = context
    self._records_read = Metrics.counter(metrics.NAMESPACE, 'records_read')
    self._chunks_read = Metrics.counter(metrics.NAMESPACE, 'chunks_read')
    self._consumer_errors = Metrics.counter(metrics.NAMESPACE, 'consumer_errors')

  def setup(self):
    self._runtime = acquire(self._context)
    runtime = self._runtime
    self._reads = runtime.shared(_consumers.SHARED_NAME,
                                 lambda: _consumers.PartitionReads(self._config))
    self._progress = runtime.shared(_progress.SHARED_NAME,
                                    lambda: _progress.PartitionProgress(self._config,
                                                                        runtime.monitor))
    self._rewound: Dict[Tuple[str, int], int] = {}

  def teardown(self):
    release(self._runtime)

  def start_bundle(self):
    self._bundle_deadline = None
    self._bundle_records = 0
    self._bundle_wait_secs = self._poll_timeout_secs

  def process(self, spec: PartitionSpec,
              tracker=beam.DoFn.RestrictionParam(PartitionRestrictionProvider()),
              watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
                  ManualWatermarkEstimator.default_provider())):
    try:
      outcome = Outcome()
      yield from self.read(spec, tracker, watermark_estimator, outcome)
      self._settle(spec, tracker, outcome)
    except Exception as error:
      self._runtime.fail(error)
      raise

  def _settle(self, spec: PartitionSpec, tracker, outcome: Outcome) -> None:
    """Completes or checkpoints the restriction as ``outcome`` says."""
    if outcome.action == Outcome.DONE:
      tracker.try_claim(tracker.current_restriction().stop)  # exhausted: done
      self.ended_in_drain(spec.topic, spec.partition)
    elif outcome.action == Outcome.DEFER:
      durable = self.checkpoint_at(spec.topic, spec.partition)
      if durable is not None:
        tracker.try_claim(Durable(durable))
      tracker.defer_remainder(None if outcome.delay_secs is None
                              else Duration(seconds=outcome.delay_secs))

  def ended_in_drain(self, topic: str, partition: int) -> None:
    """A read ended: in a drain, its offset is committed now and its end reported."""
    if self._runtime.stop_requested():
      if self._durable:
        self._progress.commit_now(topic, partition)
      self._runtime.report_done((topic, partition))

  def checkpoint_at(self, topic: str, partition: int) -> Optional[int]:
    """Where a checkpoint of the partition resumes: its durable offset, or its read position."""
    if self._durable:
      return self._progress.durable(topic, partition)
    return self._reads.position(topic, partition)

  # ---------------------------------------------------------------- reading

  def _checkout(self, spec: PartitionSpec, start: int, stop: int) -> _consumers.CachedConsumer:
    """The partition's consumer, positioned where this process reads it next."""
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    topic, partition = spec.topic, spec.partition
    cached = self._reads.checkout(topic, partition)
    if cached is not None and cached.next_offset >= start:
      return cached
    known = self._reads.position(topic, partition)
    consumer = cached.consumer if cached is not None else self._reads.new_consumer(
        spec.partition_count)
    if known is not None and known >= start:
      begin = known  # a consumer of ours closed (or in use); the rows before are in batches
    elif not self._durable:
      begin = start
    elif start == spec.start_offset and self._progress.still_committed(spec.committed_asked_at):
      begin = start  # the planned start, asked of the group a moment ago
      self._progress.start(topic, partition, begin)
    else:
      # A fresh start here: the group's committed offset is the truth (a restore may hand us a
      # checkpoint older than what later loads committed); never before the restriction.
      committed = self._progress.committed_offset(consumer, topic, partition,
                                                  spec.partition_count)
      begin = min(stop, start if committed is None else max(start, committed))
      if begin > start:
        _LOGGER.info('%s[%d]: the group committed offset %d after the checkpointed %d; reading '
                     'from %d', topic, partition, committed, start, begin)
      self._progress.start(topic, partition, begin)
    consumer.assign([TopicPartition(topic, partition, begin)])
    return _consumers.CachedConsumer(consumer, begin, assigned_at=time.monotonic())

  def _poll(self, cached: _consumers.CachedConsumer, deadline: float):
    """Returns messages: what is queued, else waits for the first one.

    ``consume(n, timeout)`` waits for all ``n`` messages or the whole
    timeout, so it is only called without waiting; waiting is a ``poll()``
    that returns with the first message.  One bundle waits at most
    ``poll_timeout_secs`` in total, so idle partitions do not add up.
    """
    consumer = cached.consumer
    messages = consumer.consume(self._max_chunk_records, 0)
    if messages:
      cached.assigned_at = None
      return messages
    if (cached.at_end or _fresh(cached)) and self._bundle_wait_secs <= 0:
      # A partition just assigned, in a bundle that has waited its share: its first fetch is
      # under way (its leader was woken); read another partition meanwhile rather than wait a
      # fetch's round trip for each of hundreds, in turn.
      return messages
    wait = min(self._bundle_wait_secs, max(0.0, deadline - time.monotonic()))
    if wait <= 0 and not cached.at_end:
      wait = min(self._poll_timeout_secs, 0.01)
    started = time.monotonic()
    first = consumer.poll(wait)
    self._bundle_wait_secs -= time.monotonic() - started
    if first is None:
      return []
    cached.assigned_at = None
    rest = consumer.consume(self._max_chunk_records - 1, 0)
    return [first] + rest if rest else [first]

  def _stopping(self, spec: PartitionSpec, restriction) -> bool:
    return (self._runtime.stop_requested() or isinstance(restriction, DrainingRange) or
            spec.stop_at_epoch_secs is not None and time.time() >= spec.stop_at_epoch_secs)

  def read(self, spec: PartitionSpec, tracker, watermark_estimator, outcome: Outcome,
           stopping: bool = False):
    """Reads ``tracker``'s restriction of ``spec``'s partition; says in ``outcome`` how it ended.

    The caller completes or checkpoints the restriction accordingly
    (``_settle``); the discovery loop calls this for the partitions it reads.
    """
    restriction = tracker.current_restriction()
    topic, partition = spec.topic, spec.partition
    source = (topic, partition)
    sources = self._runtime.sources
    sources.reading(source)
    natural_end = spec.stop_offset  # the end offset seen at start, or unbounded
    if self._bundle_deadline is None:
      self._bundle_deadline = time.monotonic() + self._max_bundle_secs
    if restriction.start >= natural_end:
      # A bounded read with nothing to read (an empty partition): no consumer, no request.
      if self._durable and self._progress.durable(topic, partition) is None:
        self._progress.start(topic, partition, restriction.start)
      self._at_end(spec, restriction.start, outcome)
      return
    cached = self._checkout(spec, restriction.start, restriction.stop)
    position = cached.next_offset
    monitor = self._runtime.monitor
    call_deadline = max(self._bundle_deadline, time.monotonic() + _MIN_CALL_SECS)
    try:
      while True:
        restriction = tracker.current_restriction()  # a runner's split may have shortened it
        if position >= natural_end or stopping or self._stopping(spec, restriction):
          self._at_end(spec, position, outcome)
          return
        if position >= restriction.stop:  # split off (a checkpoint the runner asked for)
          outcome.action = Outcome.SPLIT
          return
        messages = self._poll(cached, call_deadline)
        monitor.heartbeat('reader')
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
          end_offset = self._errors(messages, cached, topic, partition)
        if records and records[0].offset < position:
          # Below the read position: the consumer was reset backwards (the topic was deleted
          # and re-created, ``auto.offset.reset`` applied). Those offsets were read (or
          # belonged to the old topic): reading them would load them twice.
          self._report_rewind(topic, partition, position, records[0].offset)
          records = [r for r in records if r.offset >= position]
        if records:
          cached.at_end = False
          stop_offset = min(restriction.stop, natural_end)
          if records[-1].offset >= stop_offset:
            records = [r for r in records if r.offset < stop_offset]
            if stop_offset < natural_end and _consumers.owns(cached.consumer):
              # The consumer went past a split: the next restriction reads from its start.
              cached.consumer.assign([_topic_partition(topic, partition, stop_offset)])
          if records:
            if not tracker.try_claim(records[-1].offset):
              outcome.action = Outcome.SPLIT  # split off meanwhile: the remainder is not ours
              return
            first_offset = position
            position = records[-1].offset + 1
            cached.next_offset = position
            yield self._output(records, first_offset, watermark_estimator)
            self._bundle_records += len(records)
            self._report_lag(cached.consumer, topic, partition, position)
          elif stop_offset > position:
            # Every record fetched lies past the end: the offsets up to it hold none for us
            # (transaction markers): an empty chunk covers them, so they become durable.
            if not tracker.try_claim(stop_offset - 1):
              outcome.action = Outcome.SPLIT
              return
            yield self._output_empty(topic, partition, position, stop_offset, watermark_estimator)
            position = cached.next_offset = stop_offset
        if end_offset > position:
          # No record for us before the end: transaction markers, aborted
          # records (read_committed), compacted-away offsets.  An empty chunk
          # covers them, so the committed offset can reach the end offset (else
          # the group's lag never reaches 0 past a transaction's last marker).
          end = min(end_offset, restriction.stop, natural_end)
          if end > position and tracker.try_claim(end - 1):
            yield self._output_empty(topic, partition, position, end, watermark_estimator)
            position = cached.next_offset = end
        if not records and (cached.at_end or not messages):
          if position < natural_end:
            fresh = _fresh(cached)
            if not cached.at_end and (fresh or self._behind(cached.consumer, topic, partition,
                                                            position, natural_end)):
              # Records wait in Kafka that the process's consumer has not fetched for this
              # partition yet (it was reading others), or its first fetch is under way: come
              # back soon, read another meanwhile.
              wake = getattr(cached.consumer, 'wake', None)
              if wake is not None and not fresh:
                wake()  # its broker may be idle (a wake skipped in a burst of assignments)
              outcome.action, outcome.delay_secs = Outcome.DEFER, _RESUME_SECS
              return
            # Caught up.  Let the watermark follow wall time like an idle
            # Java KafkaIO partition, and come back later.
            self._idle_watermark(watermark_estimator)
            outcome.action, outcome.delay_secs = Outcome.DEFER, _IDLE_RESUME_SECS
            return
        if (time.monotonic() >= call_deadline or
            self._bundle_records >= self._max_bundle_records):
          if position >= natural_end:
            # Read to the end on the call's last turn: end it here, or a checkpoint whose rows
            # are all durable leaves nothing to resume and the read would end unannounced.
            self._at_end(spec, position, outcome)
            return
          outcome.action, outcome.delay_secs = Outcome.DEFER, _RESUME_SECS
          return
    finally:
      cached.next_offset = position
      if outcome.action == Outcome.DONE:
        self._reads.done(topic, partition, cached)
      else:
        self._reads.release(topic, partition, cached)

  def _at_end(self, spec: PartitionSpec, position: int, outcome: Outcome) -> None:
    """No record follows: done once every row read is durable, else check back shortly."""
    source = (spec.topic, spec.partition)
    if not self._runtime.sources.has_ended(source):
      _LOGGER.info('Stopping %s[%d] at offset %d', spec.topic, spec.partition, position)
      self._runtime.sources.ended(source)
    durable = self._progress.durable(spec.topic, spec.partition) if self._durable else position
    if durable is not None and durable >= position:
      outcome.action = Outcome.DONE
    else:
      outcome.action, outcome.delay_secs = Outcome.DEFER, _FINISH_RECHECK_SECS

  def _errors(self, messages, cached, topic: str, partition: int) -> int:
    """Handles the consumer's error events; returns the end offset an EOF event gave, or -1."""
    end_offset = -1
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
      _LOGGER.warning('Kafka error reading %s[%d]: %s', topic, partition, error)
    return end_offset

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

  @staticmethod
  def _cached_high(consumer, topic: str, partition: int) -> Optional[int]:
    """The partition's high watermark as of the last fetch (no request), or None."""
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    try:
      _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
    except KafkaException:
      return None
    return high if high is not None and high >= 0 else None

  def _behind(self, consumer, topic: str, partition: int, position: int,
              natural_end: int) -> bool:
    """Whether records past ``position`` are known to exist (the end seen at start, or the
    high watermark of the last fetch)."""
    if natural_end != UNBOUNDED_STOP_OFFSET:
      return True  # below the end offset seen at start: records (or markers) remain
    high = self._cached_high(consumer, topic, partition)
    return high is not None and high > position

  def _report_lag(self, consumer, topic: str, partition: int, position: int) -> None:
    """Sets the lag gauges from the high watermark of the last fetch (no request)."""
    high = self._cached_high(consumer, topic, partition)
    if high is not None:
      lag = max(0, high - position)
      metrics.KAFKA_LAG.labels(topic, str(partition)).set(lag)
      self._runtime.monitor.partition_progress(topic, partition, lag=lag, high=high)

  def _idle_watermark(self, watermark_estimator) -> None:
    idle = Timestamp.now() - Duration(seconds=IDLE_WATERMARK_LAG_SECS)
    current = watermark_estimator.current_watermark()
    if current is None or idle > current:
      watermark_estimator.set_watermark(idle)

  def _output_empty(self, topic, partition, first_offset, next_offset, watermark_estimator):
    """A chunk without records over ``[first_offset, next_offset)``; the watermark stays."""
    self._chunks_read.inc()
    chunk = KafkaChunk(topic, partition, first_offset, next_offset, [])
    current = watermark_estimator.current_watermark()
    return window.TimestampedValue(chunk, current if current is not None else Timestamp.now())

  def _output(self, records, first_offset, watermark_estimator):
    self._records_read.inc(len(records))
    self._runtime.monitor.count('records_read', len(records))
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
