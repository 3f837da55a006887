"""``CommitOffsets``: commits consumer-group offsets once every row before them is finished.

Per (topic, partition) an ``OffsetTracker`` learns of each chunk read and of
each finished row (loaded, or dead-lettered) and answers the end of the
longest prefix of complete chunks; that offset is committed with a
synchronous ``Consumer.commit()``.  A crash re-reads whatever was not
committed.  Two implementations: a keyed stateful DoFn for portable runners,
and an in-process one for the local runner (see ``CommitOffsets``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from transforms import metrics, monitoring
from transforms.kafka.config import KafkaConfigError, new_consumer, reader_config
from transforms.kafka.offsets import OffsetTracker
from transforms.runtime import runs_in_process
from transforms.types import ChunkRead, OffsetAck

__all__ = ['CommitOffsets']

_LOGGER = logging.getLogger(__name__)


class _CommitMetrics:
  """The committer's Beam metrics (namespace ``kafka``)."""

  def __init__(self):
    self.commits = Metrics.counter(metrics.NAMESPACE, 'offset_commits')
    self.commit_failures = Metrics.counter(metrics.NAMESPACE,
                                           'commit_failures')
    self.chunks = Metrics.counter(metrics.NAMESPACE, 'chunks_tracked')
    self.acks = Metrics.counter(metrics.NAMESPACE, 'acked_offsets')
    self.stale = Metrics.counter(metrics.NAMESPACE, 'stale_acks')


def _track(tracker: OffsetTracker, item, counters: _CommitMetrics
          ) -> Optional[int]:
  """Applies ``item`` to ``tracker``; returns an offset to commit or None."""
  stale_before = tracker.stale_acks
  if isinstance(item, ChunkRead):
    counters.chunks.inc()
    tracker.add_chunk(item.first_offset, item.next_offset, item.count)
  elif isinstance(item, OffsetAck):
    counters.acks.inc(len(item.offsets))
    tracker.ack(item.offsets)
  else:
    raise TypeError(
        f'CommitOffsets takes ChunkRead and OffsetAck, got {type(item)!r}')
  if tracker.stale_acks != stale_before:
    counters.stale.inc(tracker.stale_acks - stale_before)
  position = tracker.position
  if position is not None and (tracker.committed is None or
                               position > tracker.committed):
    return position
  return None


def _report_commit(topic: str, partition: int, position: int) -> None:
  metrics.KAFKA_COMMITTED_OFFSET.labels(topic, str(partition)).set(position)
  monitoring.monitor().partition_progress(topic, partition, committed=position)


def _commit(consumer, tracker: OffsetTracker, topic: str, partition: int,
            position: int, counters: _CommitMetrics, asynchronous: bool = False) -> bool:
  """Commits ``position``; a failure is logged, not raised.

  Asynchronous commits are acknowledged later; a failure is reported by the
  consumer's ``on_commit`` callback, and the next advance commits again
  (commits supersede each other).
  """
  from confluent_kafka import KafkaException, TopicPartition
  try:
    consumer.commit(offsets=[TopicPartition(topic, partition, position)],
                    asynchronous=asynchronous)
  except KafkaException as e:
    # The next advance commits again (commits supersede each other).
    counters.commit_failures.inc()
    _LOGGER.warning('Committing %s[%d]@%d failed: %s', topic, partition,
                    position, e)
    return False
  tracker.committed = position
  counters.commits.inc()
  _report_commit(topic, partition, position)
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
    self._consumer = new_consumer(self._config)

  def teardown(self):
    if self._consumer is not None:
      try:
        self._consumer.close()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('closing the commit consumer failed', exc_info=True)
      self._consumer = None

  def process(self, element, tracker_state=beam.DoFn.StateParam(TRACKER)):
    (topic, partition), item = element
    tracker = tracker_state.read() or OffsetTracker()
    position = _track(tracker, item, self._metrics)
    if position is not None and _commit(self._consumer, tracker, topic,
                                        partition, position, self._metrics):
      yield (topic, partition, position)
    tracker_state.write(tracker)


class _SharedCommitState:
  """Trackers and one consumer of one CommitOffsets, shared in a process."""

  def __init__(self):
    self.lock = threading.Lock()
    self.trackers: Dict[Tuple[str, int], OffsetTracker] = {}
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
        shared.consumer = new_consumer(self._config, on_commit=_on_async_commit)
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
          for topic, error in _commit_all(consumer, shared.trackers):
            _LOGGER.warning('the final offset commit of topic %s failed (%s); the other topics\' '
                            'offsets are committed, and a restart re-reads that topic from its '
                            'last committed offsets', topic, error)
          consumer.close()
        except Exception:  # pylint: disable=broad-except
          _LOGGER.warning('the final offset commit failed; a restart re-reads from the last '
                          'committed offsets', exc_info=True)

  def process(self, item):
    shared = self._shared
    key = (item.topic, item.partition)
    with shared.lock:
      tracker = shared.trackers.get(key)
      if tracker is None:
        tracker = shared.trackers[key] = OffsetTracker()
      position = _track(tracker, item, self._metrics)
      # Asynchronous: the commit request does not hold the read; the last
      # positions are committed synchronously at teardown (an async commit
      # lost in a crash only means re-reading rows the journal skips).
      if position is not None and _commit(shared.consumer, tracker,
                                          item.topic, item.partition,
                                          position, self._metrics, asynchronous=True):
        yield (item.topic, item.partition, position)


def _on_async_commit(error, partitions) -> None:
  if error is not None:
    _LOGGER.warning('an asynchronous offset commit failed (%s); the next one supersedes it',
                    error)
    return
  for tp in partitions:
    if tp.error is not None:
      _LOGGER.warning('committing %s[%d]@%d failed: %s', tp.topic, tp.partition, tp.offset,
                      tp.error)


def _commit_all(consumer, trackers: Dict[Tuple[str, int], OffsetTracker]
                ) -> List[Tuple[str, Exception]]:
  """Commits every tracker's committed position synchronously (the last word).

  One request for all; if it fails, one per topic, so that a topic the broker
  refuses (deleted: ``UNKNOWN_TOPIC_OR_PART``) does not cost the others their
  commit.

  Returns:
    ``(topic, error)`` for each topic whose commit failed.

  Raises:
    KafkaException: the one request failed and there is no other topic to try.
  """
  # pylint: disable=import-outside-toplevel
  from confluent_kafka import KafkaException, TopicPartition
  offsets = [TopicPartition(topic, partition, tracker.committed)
             for (topic, partition), tracker in sorted(trackers.items())
             if tracker.committed is not None]
  if not offsets:
    return []
  try:
    consumer.commit(offsets=offsets, asynchronous=False)
    return []
  except KafkaException:
    by_topic: Dict[str, list] = {}
    for tp in offsets:
      by_topic.setdefault(tp.topic, []).append(tp)
    if len(by_topic) == 1:
      raise
  failed = []
  for topic, topic_offsets in by_topic.items():
    try:
      consumer.commit(offsets=topic_offsets, asynchronous=False)
    except KafkaException as error:
      failed.append((topic, error))
  return failed


def _key_by_partition(item):
  return (item.topic, item.partition), item


class CommitOffsets(beam.PTransform):
  """Commits consumer-group offsets once every row before them is finished.

  (The in-process implementation commits asynchronously as it goes and
  synchronously when it is torn down; the portable one synchronously.)

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
    self._config = reader_config(config)
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
      in_process = runs_in_process(pipeline)
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


