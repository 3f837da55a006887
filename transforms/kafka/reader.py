"""``ReadKafkaChunks`` / ``ReadFromKafka``: a native Python Kafka source on confluent-kafka.

A splittable DoFn reads each partition's offset range (one restriction per
partition, never split) with a consumer of its own that it ``assign()``s --
the group is never joined; ``CommitOffsets`` commits once the rows are
loaded.  It emits ``KafkaChunk``s, the records one consume call returned,
because the Python runners spend tens of microseconds per element per
transform.  Watermarks follow record timestamps; an idle partition's
watermark follows wall time.  Bounded (``stop_at_end``: up to the end offsets
seen at start) or unbounded (until the run stops: ``stop_after_secs``, a
drain of the run's ``Runtime``, or the runner's drain).

The pieces: ``partitions`` (what to read, where to start), ``restriction``
(the offset ranges and their durable checkpoints), ``consumers`` (the
process's consumers and read positions), ``read_fn`` (reading a partition),
``watch_fn`` (streaming: discovery loops), ``discovery`` (looking for new
partitions).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.transforms import window
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.utils.timestamp import Timestamp

from transforms.kafka import coders as _coders  # noqa: F401  (registers the chunk coders)
from transforms.kafka.config import KafkaConfigError, describe_servers, new_consumer, reader_config
from transforms.kafka.discovery import DEFAULT_DISCOVERY_INTERVAL_SECS, Discovery
from transforms.kafka.partitions import (_ResolvePartitionsFn, list_partitions,
                                         normalize_partitions)
from transforms.kafka.read_fn import IDLE_WATERMARK_LAG_SECS, ReadPartitionFn
from transforms.kafka.topics import DEFAULT_JOURNAL_TOPIC, TopicSelector
from transforms.kafka.watch_fn import ReadUnboundedFn
from transforms.runtime import RunContext
from transforms.types import ChunkRead, KafkaChunk, KafkaRecord

__all__ = ['ReadKafkaChunks', 'ReadFromKafka', 'chunk_read_of', 'DEFAULT_MAX_CHUNK_RECORDS',
           'DEFAULT_DISCOVERY_INTERVAL_SECS', 'IDLE_WATERMARK_LAG_SECS']

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_RECORDS = 1000
DEFAULT_POLL_TIMEOUT_SECS = 0.1
DEFAULT_START_TIMEOUT_SECS = 10.0
# A bundle of the reading stage ends (every restriction defers its remainder)
# after this long or this many records: the runner checkpoints the read, and
# the stages fused behind it (the batcher and the sink) check their time
# limits, between bundles.
DEFAULT_MAX_BUNDLE_SECS = 1.0
DEFAULT_MAX_BUNDLE_RECORDS = 100000


def _timestamp_of(timestamp_ms: int) -> Timestamp:
  if timestamp_ms is None or timestamp_ms < 0:
    return Timestamp.now()
  return Timestamp(micros=timestamp_ms * 1000)


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
  that long after the read started), or a stop of the run (``context``'s
  ``Runtime.request_stop`` in a worker, or a drain request through its stop
  channel, which reaches every worker): the reads stop and each partition
  finishes once its rows are durable, so the pipeline drains and ``run()``
  returns.  A runner's drain (``truncate``) does the same.

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
               context: Optional[RunContext] = None,
               max_bundle_secs: float = DEFAULT_MAX_BUNDLE_SECS,
               max_bundle_records: int = DEFAULT_MAX_BUNDLE_RECORDS,
               topic_pattern: Optional[str] = None,
               discovery_interval_secs: Optional[float] = DEFAULT_DISCOVERY_INTERVAL_SECS,
               excluded_topics: Sequence[str] = (DEFAULT_JOURNAL_TOPIC,),
               skip_topic: Optional[Callable[[str], bool]] = None,
               discovery_shards: int = 1,
               durable: bool = False):
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
      context: the run (its ``Runtime`` is shared with the transforms after
        the read: the batcher, the sink, ``CommitOffsets``); default: a run of
        its own.
      max_bundle_secs: checkpoint the reading bundle after this long.
      max_bundle_records: checkpoint the reading bundle after this many
        records.
      topic_pattern: read every topic whose whole name matches this regular
        expression (instead of ``topics``).
      discovery_interval_secs: an unbounded read looks for new topics and
        partitions this often; None: never.
      excluded_topics: names ``topic_pattern`` never matches (the load
        journal's topic).
      skip_topic: a picklable predicate: a topic it says yes to is never
        read, whatever ``topic_pattern`` says (its name shows its rows are
        not wanted).
      discovery_shards: how many discovery loops a streaming read runs (the
        partitions found while running are spread over them, and they over
        the workers).
      durable: checkpoint each partition at its *durable* offset -- what
        ``CommitOffsets`` with the same ``context`` has seen loaded -- not at
        its read position, and finish a partition only once its rows are
        durable: rows held in batches across bundles are read again after a
        restore (the loader's setting).  Without it the read is a plain
        source.

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
        self._selector = TopicSelector(pattern=topic_pattern, excluded=excluded_topics,
                                       skip=skip_topic)
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
    self._context = context or RunContext()
    if not isinstance(discovery_shards, int) or discovery_shards < 1:
      raise KafkaConfigError(f'discovery_shards must be >= 1, got {discovery_shards!r}')
    self._discovery_shards = discovery_shards
    self._durable = bool(durable)
    self._found: List[Tuple[str, int]] = []
    self._max_bundle_secs = float(max_bundle_secs)
    self._max_bundle_records = int(max_bundle_records)
    # Partitions chosen by hand are a fixed set: no discovery.
    self._discovery = (
        Discovery(self._selector, float(discovery_interval_secs), self._start_timeout_secs)
        if not self._stop_at_end and discovery_interval_secs is not None and partitions is None
        else None)

  def reads(self) -> List[Tuple[str, int]]:
    """The reads of this transform known when it was built: its partitions then (with
    ``validate``), and its discovery loops (``('', -1 - shard)``, see ``watch_fn``)."""
    loops = self._discovery_shards if self._discovery is not None else 0
    return list(self._found) + [('', -1 - shard) for shard in range(loops)]

  def expand(self, pbegin):
    if self._validate:
      consumer = new_consumer(self._config)
      try:
        found = list_partitions(consumer, self._config, self._selector, self._partitions,
                                self._start_timeout_secs, allow_empty=not self._stop_at_end)
      finally:
        consumer.close()
      self._found = list(found)
      if not found:
        _LOGGER.warning('No topic on %s matches the %s yet: the read waits for one (looking '
                        'every %ss)', describe_servers(self._config), self._selector.describe(),
                        self._discovery.interval_secs if self._discovery else '-')
    if self._stop_at_end:
      read_fn = ReadPartitionFn(self._config, self._max_chunk_records, self._poll_timeout_secs,
                                self._max_bundle_secs, self._max_bundle_records, self._context,
                                self._durable)
    else:
      read_fn = ReadUnboundedFn(self._config, self._max_chunk_records, self._poll_timeout_secs,
                                self._max_bundle_secs, self._max_bundle_records, self._context,
                                self._durable, discovery=self._discovery)
    return (
        pbegin
        | 'Impulse' >> beam.Impulse()
        | 'ResolvePartitions' >> beam.ParDo(
            _ResolvePartitionsFn(self._config, self._selector, self._partitions,
                                 self._stop_at_end, self._start_timeout_secs,
                                 self._stop_after_secs,
                                 watch_shards=self._discovery_shards if self._discovery else 0))
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


