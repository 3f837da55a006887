"""``PartitionProgress``: per partition, what is read, what is durable, what is committed.

One per run in each worker process (``Runtime.shared``).  The reader starts a
partition here (at the group's committed offset, or the restriction's start
if that is later) and registers every chunk it hands on; the committer
acknowledges rows as they are loaded or dead-lettered.  A partition's
*durable* offset is the end of the longest prefix of chunks whose rows are
all finished (``OffsetTracker``): it is committed to Kafka (asynchronously
as it moves, synchronously when the runtime closes), and it is where the
reader's checkpointed restriction resumes, so a runner restoring a
checkpoint in a fresh process reads again everything that was only held in
memory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from transforms import metrics
from transforms.kafka.config import new_consumer
from transforms.kafka.offsets import OffsetTracker
from transforms.monitoring import Monitor

__all__ = ['PartitionProgress', 'SHARED_NAME']

_LOGGER = logging.getLogger(__name__)

SHARED_NAME = 'kafka.progress'
_COMMITTED_TIMEOUT_SECS = 10.0
# How long a committed offset asked with its topic's others is good for a partition's first read.
_COMMITTED_FRESH_SECS = 5.0


class PartitionProgress:
  """Offset bookkeeping and commits of the partitions this process reads (thread-safe).

  Args:
    config: the reader's librdkafka config (its ``group.id`` commits).
    monitor: the process's stall monitor (committed offsets are reported).
  """

  def __init__(self, config: Dict[str, Any], monitor: Optional[Monitor] = None):
    self._config = config
    self._monitor = monitor
    self._lock = threading.Lock()
    self._trackers: Dict[Tuple[str, int], OffsetTracker] = {}
    self._starts: Dict[Tuple[str, int], int] = {}
    self._consumer = None
    self._closed = False
    self._committed: Dict[Tuple[str, int], Tuple[Optional[int], float]] = {}

  # ---------------------------------------------------------------- the reader

  @staticmethod
  def still_committed(asked_at: Optional[float]) -> bool:
    """Whether a committed offset asked at ``asked_at`` (wall time; None: never) is still the
    group's for a partition's first read here: asked less than ``_COMMITTED_FRESH_SECS`` ago.

    The partitions' start offsets are asked at once when the read is planned; a read starting
    right after uses them instead of asking again, a round trip per topic (hundreds, in turn,
    for a whole database's topics).  Only this job commits for its group, and only after a
    partition's read started, so an answer this fresh is still the truth.
    """
    return asked_at is not None and 0 <= time.time() - asked_at < _COMMITTED_FRESH_SECS

  def committed_offset(self, consumer, topic: str, partition: int,
                       partition_count: int = 0) -> Optional[int]:
    """The group's committed offset of a partition (asked of Kafka), or None.

    With ``partition_count`` (the partitions the source reads, a bound on the topic's), one
    request asks for the topic's partitions below it (those that do not exist answer an error)
    and the answers for the others are kept for ``_COMMITTED_FRESH_SECS``: a job starting on
    many partitions asks once per topic, not once per partition (a round trip each, in turn).
    Each kept answer is used once, for that partition's first read in this process.
    """
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    now = time.monotonic()
    with self._lock:
      kept = self._committed.pop((topic, partition), None)
    if kept is not None and now - kept[1] < _COMMITTED_FRESH_SECS:
      return kept[0]
    asked = range(partition_count) if partition_count > partition else (partition,)
    try:
      found = consumer.committed([TopicPartition(topic, p) for p in asked],
                                 timeout=_COMMITTED_TIMEOUT_SECS)
    except KafkaException as error:
      _LOGGER.warning('%s[%d]: the committed offset could not be read (%s); reading from the '
                      'checkpointed position', topic, partition, error)
      return None
    offsets = {tp.partition: (tp.offset if tp.offset >= 0 and tp.error is None else None)
               for tp in found or ()}
    with self._lock:
      for p, offset in offsets.items():
        if p != partition:
          self._committed[(topic, p)] = (offset, now)
    return offsets.get(partition)

  def start(self, topic: str, partition: int, offset: int) -> None:
    """The partition's read starts (again) at ``offset`` in this process: a fresh prefix."""
    with self._lock:
      tracker = OffsetTracker()
      tracker.position = offset
      tracker.committed = self._trackers[(topic, partition)].committed if (
          (topic, partition) in self._trackers) else None
      self._trackers[(topic, partition)] = tracker
      self._starts[(topic, partition)] = offset

  def durable(self, topic: str, partition: int) -> Optional[int]:
    """The end of the finished prefix: every row before it is loaded or dead-lettered."""
    tracker = self._trackers.get((topic, partition))
    return None if tracker is None else tracker.position

  # ------------------------------------------------------------- the committer

  def add_chunk(self, topic: str, partition: int, first_offset: int, next_offset: int,
                count: int) -> Optional[int]:
    """A chunk was handed on, expecting ``count`` acknowledgements; returns a new durable offset."""
    with self._lock:
      tracker = self._tracker(topic, partition)
      return self._advanced(topic, partition, tracker,
                            tracker.add_chunk(first_offset, next_offset, count))

  def ack(self, topic: str, partition: int, offsets) -> Optional[int]:
    """Rows of these offsets are finished; returns a new durable offset, if it moved."""
    with self._lock:
      tracker = self._tracker(topic, partition)
      return self._advanced(topic, partition, tracker, tracker.ack(offsets))

  def commit_now(self, topic: str, partition: int) -> None:
    """Commits the partition's durable offset synchronously (a read that ends in a drain)."""
    with self._lock:
      tracker = self._trackers.get((topic, partition))
      if tracker is None or tracker.position is None:
        return
      last = tracker.committed if tracker.committed is not None else self._starts.get(
          (topic, partition))
      if last is None or tracker.position > last or tracker.committed is not None:
        # Again, synchronously: the asynchronous commit of this position may still be on its way.
        self._commit(topic, partition, tracker.position, asynchronous=False)

  def stale(self) -> int:
    """Acknowledgements and chunks that arrived behind the durable offset (replays)."""
    with self._lock:
      return sum(t.stale_acks + t.stale_chunks for t in self._trackers.values())

  def _tracker(self, topic: str, partition: int) -> OffsetTracker:
    tracker = self._trackers.get((topic, partition))
    if tracker is None:
      tracker = self._trackers[(topic, partition)] = OffsetTracker()
    return tracker

  def _advanced(self, topic, partition, tracker: OffsetTracker,
                position: Optional[int]) -> Optional[int]:
    if position is None or self._closed:
      return None
    if tracker.committed is not None and position <= tracker.committed:
      return None
    self._commit(topic, partition, position, asynchronous=True)
    tracker.committed = position
    return position

  def _commit(self, topic: str, partition: int, position: int, asynchronous: bool) -> bool:
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    if self._consumer is None:
      self._consumer = new_consumer(self._config, on_commit=_on_async_commit)
    try:
      self._consumer.commit(offsets=[TopicPartition(topic, partition, position)],
                            asynchronous=asynchronous)
    except KafkaException as error:
      _LOGGER.warning('Committing %s[%d]@%d failed: %s; the next advance commits again', topic,
                      partition, position, error)
      return False
    metrics.KAFKA_COMMITTED_OFFSET.labels(topic, str(partition)).set(position)
    if self._monitor is not None:
      self._monitor.partition_progress(topic, partition, committed=position)
    return True

  def close(self) -> None:
    """Commits every durable offset synchronously (the last word), then closes the client."""
    with self._lock:
      self._closed = True
      consumer, self._consumer = self._consumer, None
      trackers = dict(self._trackers)
    if consumer is None:
      return
    try:
      for topic, error in _commit_all(consumer, trackers):
        _LOGGER.warning('the final offset commit of topic %s failed (%s); the other topics\' '
                        'offsets are committed, and a restart re-reads that topic from its '
                        'last committed offsets', topic, error)
    except Exception:  # pylint: disable=broad-except
      _LOGGER.warning('the final offset commit failed; a restart re-reads from the last '
                      'committed offsets', exc_info=True)
    finally:
      consumer.close()


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
  from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
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
