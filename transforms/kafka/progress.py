"""``PartitionProgress``: per partition, what is read, what is durable, what is committed.

One per run in each worker process (``Runtime.shared``).  The reader starts a
partition here (at the group's committed offset, or the restriction's start
if that is later) and registers every chunk it hands on; the committer
acknowledges rows as they are loaded or dead-lettered.  A partition's
*durable* offset is the end of the longest prefix of chunks whose rows are
all finished (``OffsetTracker``): it is committed to Kafka (by a committer
thread as it moves, synchronously when the runtime closes), and it is where
the reader's checkpointed restriction resumes, so a runner restoring a
checkpoint in a fresh process reads again everything that was only held in
memory.

The committer thread sends the newest durable offset of every partition that
moved in one synchronous request; one that fails (the group coordinator
moving after a broker failure) is sent again, with backoff, until it lands or
a newer offset replaces it.  An asynchronous commit per advance would be lost
when it failed and no later advance came (a partition whose input stopped
stayed behind in Kafka), and its result waited in librdkafka's queue for a
poll that never came (~300 bytes per commit, for as long as the job ran).
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
# A failed commit is sent again after this long, doubling up to the last.
_RETRY_SECS = (0.5, 1.0, 2.0, 5.0)
# How long closing waits for a commit in flight before its own final commit.
_CLOSE_WAIT_SECS = 10.0
# Errors that say a topic no longer exists (deleted): its offsets are not sent again.
# UNKNOWN_TOPIC_OR_PART, and librdkafka's _UNKNOWN_TOPIC and _UNKNOWN_PARTITION.
_TOPIC_GONE = frozenset({3, -188, -190})
# While commits fail, a warning at most this often (the recovery is logged too).
_WARN_EVERY_SECS = 60.0
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
    self._committer = _Committer(config, monitor)
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
      if not (last is None or tracker.position > last or tracker.committed is not None):
        return
      position = tracker.position
    # Again, synchronously: the committer thread's commit of this position may be on its way.
    self._committer.commit_now(topic, partition, position)

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
    self._committer.submit(topic, partition, position)
    tracker.committed = position
    return position

  def close(self) -> None:
    """Commits every durable offset synchronously (the last word), then closes the client."""
    with self._lock:
      self._closed = True
      trackers = dict(self._trackers)
    self._committer.close(trackers)


class _Committer:
  """Commits offsets to Kafka from its own thread, retrying failures (thread-safe).

  ``submit`` records a partition's newest offset and wakes the thread, which
  commits every recorded offset in one synchronous request; offsets recorded
  meanwhile go in the next.  A failed request's offsets are recorded again
  (unless newer ones came) and sent after ``_RETRY_SECS``.
  """

  def __init__(self, config: Dict[str, Any], monitor: Optional[Monitor]):
    self._config = config
    self._monitor = monitor
    self._lock = threading.Lock()
    self._pending: Dict[Tuple[str, int], int] = {}
    self._wake = threading.Event()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._consumer = None
    self._landed: Dict[Tuple[str, int], int] = {}  # the newest offset Kafka took, per partition

  def submit(self, topic: str, partition: int, position: int) -> None:
    with self._lock:
      if self._stop.is_set():
        return
      self._pending[(topic, partition)] = position
      if self._thread is None:
        self._thread = threading.Thread(target=self._run, name='kafka-offset-committer',
                                        daemon=True)
        self._thread.start()
    self._wake.set()

  def commit_now(self, topic: str, partition: int, position: int) -> None:
    """Commits one offset synchronously in the caller's thread (the thread retries a failure)."""
    retry, _ = self._send({(topic, partition): position})
    if retry:
      self._requeue(retry)
      self._wake.set()

  def _client(self):
    with self._lock:
      if self._consumer is None:
        self._consumer = new_consumer(self._config)
      return self._consumer

  def _send(self, offsets: Dict[Tuple[str, int], int]
            ) -> Tuple[Dict[Tuple[str, int], int], Optional[Exception]]:
    """Commits ``offsets``; returns those to send again (their topic's commit failed) and
    one of their errors, for the log."""
    try:
      failed = dict(_commit_offsets(self._client(), offsets))
    except RuntimeError as error:  # the client was closed under a late commit
      _LOGGER.debug('an offset commit after close: %s', error)
      return {}, None
    retry = {}
    for (topic, partition), position in offsets.items():
      error = failed.get(topic)
      if error is None:
        with self._lock:
          key = (topic, partition)
          self._landed[key] = max(position, self._landed.get(key, -1))
        metrics.KAFKA_COMMITTED_OFFSET.labels(topic, str(partition)).set(position)
        if self._monitor is not None:
          self._monitor.partition_progress(topic, partition, committed=position)
      elif _error_code(error) not in _TOPIC_GONE:
        retry[(topic, partition)] = position
    for topic, error in failed.items():
      if _error_code(error) in _TOPIC_GONE:
        _LOGGER.warning('Committing the offsets of topic %s failed (%s): the topic is gone, its '
                        'offsets are not sent again', topic, error)
    return retry, next(iter(failed.values()), None) if retry else None

  def _requeue(self, offsets: Dict[Tuple[str, int], int]) -> None:
    with self._lock:
      for key, position in offsets.items():
        # Unless a newer one came meanwhile, or landed (a drain's commit from its own thread):
        # sent again, this one would take the group's offset back.
        if max(self._pending.get(key, -1), self._landed.get(key, -1)) < position:
          self._pending[key] = position

  def _run(self) -> None:
    failures, warned_at = 0, float('-inf')
    while not self._stop.is_set():
      self._wake.wait()
      self._wake.clear()
      with self._lock:
        offsets, self._pending = self._pending, {}
      if not offsets or self._stop.is_set():
        continue
      try:
        retry, failure = self._send(offsets)
      except Exception as error:  # pylint: disable=broad-except
        # The thread goes on whatever happened: a committer that died would commit no more.
        _LOGGER.warning('Committing offsets failed unexpectedly; they are sent again',
                        exc_info=True)
        retry, failure = offsets, error
      if not retry:
        if failures:
          _LOGGER.info('Offsets are committed again after %d failed attempt(s)', failures)
        failures = 0
        continue
      self._requeue(retry)
      if time.monotonic() - warned_at >= _WARN_EVERY_SECS:
        warned_at = time.monotonic()
        _LOGGER.warning('Committing the offsets of %d partition(s) failed (%s); they are sent '
                        'again until Kafka takes them', len(retry), failure)
      self._stop.wait(_RETRY_SECS[min(failures, len(_RETRY_SECS) - 1)])
      failures += 1
      self._wake.set()

  def close(self, trackers: Dict[Tuple[str, int], OffsetTracker]) -> None:
    """Stops the thread, commits every tracker's offset synchronously, closes the client."""
    with self._lock:
      self._stop.set()
      thread = self._thread
    self._wake.set()
    stuck = False
    if thread is not None:
      thread.join(_CLOSE_WAIT_SECS)
      stuck = thread.is_alive()  # a commit still waiting for Kafka
    if self._consumer is None and all(t.committed is None for t in trackers.values()):
      return
    consumer = self._client()
    with self._lock:
      self._consumer = None
    try:
      for topic, error in _commit_all(consumer, trackers):
        _LOGGER.warning('the final offset commit of topic %s failed (%s); the other topics\' '
                        'offsets are committed, and a restart re-reads that topic from its '
                        'last committed offsets', topic, error)
    except Exception:  # pylint: disable=broad-except
      _LOGGER.warning('the final offset commit failed; a restart re-reads from the last '
                      'committed offsets', exc_info=True)
    finally:
      if stuck:
        # Closing a client another thread is inside would free it under that thread.
        _LOGGER.warning('an offset commit still waits for Kafka after %.0f s; its client is '
                        'left to the process\'s exit', _CLOSE_WAIT_SECS)
      else:
        consumer.close()


def _commit_all(consumer, trackers: Dict[Tuple[str, int], OffsetTracker]
                ) -> List[Tuple[str, Exception]]:
  """Commits every tracker's committed position synchronously (the last word).

  Returns:
    ``(topic, error)`` for each topic whose commit failed (``_commit_offsets``).

  Raises:
    KafkaException: the one request failed and there is no other topic to try.
  """
  offsets = {key: tracker.committed for key, tracker in sorted(trackers.items())
             if tracker.committed is not None}
  failed = _commit_offsets(consumer, offsets)
  if failed and len({topic for topic, _ in offsets}) == 1:
    raise failed[0][1]
  return failed


def _commit_offsets(consumer, offsets: Dict[Tuple[str, int], int]
                    ) -> List[Tuple[str, Exception]]:
  """Commits ``offsets`` synchronously: one request for all; if it fails, one per topic, so
  that a topic the broker refuses (deleted: ``UNKNOWN_TOPIC_OR_PART``) does not cost the others
  their commit.

  Returns:
    ``(topic, error)`` for each topic whose commit failed.
  """
  from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
  by_topic: Dict[str, list] = {}
  for (topic, partition), position in sorted(offsets.items()):
    by_topic.setdefault(topic, []).append(TopicPartition(topic, partition, position))
  if not by_topic:
    return []
  try:
    _commit(consumer, [tp for tps in by_topic.values() for tp in tps])
    return []
  except KafkaException as error:
    if len(by_topic) == 1:
      return [(next(iter(by_topic)), error)]
  failed = []
  for topic, topic_offsets in by_topic.items():
    try:
      _commit(consumer, topic_offsets)
    except KafkaException as error:
      failed.append((topic, error))
  return failed


def _commit(consumer, offsets) -> None:
  """One synchronous commit; a partition's error raises as the request's would."""
  from confluent_kafka import KafkaException  # pylint: disable=import-outside-toplevel
  for tp in consumer.commit(offsets=offsets, asynchronous=False) or ():
    if tp.error is not None:
      raise KafkaException(tp.error)


def _error_code(error: Exception) -> Optional[int]:
  kafka_error = error.args[0] if error.args else None
  return kafka_error.code() if hasattr(kafka_error, 'code') else None
