"""The reader's Kafka consumers in a worker process: one per partition, kept across bundles.

``PartitionReads`` (one per run in each process, ``Runtime.shared``) holds,
per partition this process reads, its consumer (``assign()``ed, never a
group member) and its *read position*: the next offset the reader hands on.
A restriction resumed in the same process continues from there -- the
records between its checkpointed (durable) start and the read position are
waiting in batches -- while a fresh process starts at the group's committed
offset.  librdkafka keeps prefetching between bundles; all partitions of a
process share one prefetch budget, so memory does not grow with their
number.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Tuple

from transforms.kafka.config import new_consumer

__all__ = ['CachedConsumer', 'PartitionReads', 'prefetch_kbytes', 'SHARED_NAME']

_LOGGER = logging.getLogger(__name__)

SHARED_NAME = 'kafka.reads'
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


class CachedConsumer:
  """One partition's consumer and where its next read starts."""
  __slots__ = ('consumer', 'next_offset', 'at_end')

  def __init__(self, consumer, next_offset: int):
    self.consumer = consumer
    self.next_offset = next_offset
    self.at_end = False


class PartitionReads:
  """The consumers and read positions of the partitions this process reads (thread-safe).

  Args:
    config: the reader's librdkafka config.
  """

  def __init__(self, config: Dict[str, Any]):
    self._config = config
    self._lock = threading.Lock()
    self._idle: Dict[Tuple[str, int], CachedConsumer] = {}
    self._positions: Dict[Tuple[str, int], int] = {}
    self._closed = False
    self.created = 0

  def position(self, topic: str, partition: int) -> Optional[int]:
    """Where this process's read of the partition continues, or None if it never read it."""
    return self._positions.get((topic, partition))

  def new_consumer(self, partition_count: int):
    overrides: Dict[str, Any] = {'enable.partition.eof': True}
    defaults = {'queued.max.messages.kbytes': prefetch_kbytes(partition_count),
                'queued.min.messages': _PREFETCH_MIN_MESSAGES,
                'fetch.queue.backoff.ms': _FETCH_QUEUE_BACKOFF_MS}
    for key, value in defaults.items():
      if key not in self._config:
        overrides[key] = value
    self.created += 1
    return new_consumer(self._config, **overrides)

  def checkout(self, topic: str, partition: int) -> Optional[CachedConsumer]:
    """The partition's idle consumer (the caller reads with it, then ``release``s it), or None."""
    with self._lock:
      return self._idle.pop((topic, partition), None)

  def release(self, topic: str, partition: int, cached: CachedConsumer) -> None:
    """Keeps ``cached`` for the next restriction of the partition; records its position."""
    with self._lock:
      self._positions[(topic, partition)] = cached.next_offset
      if self._closed or (topic, partition) in self._idle:
        close_quietly(cached.consumer)
        return
      self._idle[(topic, partition)] = cached

  def done(self, topic: str, partition: int, cached: CachedConsumer) -> None:
    """The partition's read is finished in this process: its consumer is closed."""
    with self._lock:
      self._positions[(topic, partition)] = cached.next_offset
    close_quietly(cached.consumer)

  def close(self) -> None:
    with self._lock:
      self._closed = True
      idle, self._idle = self._idle, {}
    for cached in idle.values():
      close_quietly(cached.consumer)


def close_quietly(consumer) -> None:
  try:
    consumer.close()
  except Exception:  # pylint: disable=broad-except
    _LOGGER.debug('closing a consumer failed', exc_info=True)
