"""The reader's Kafka consumer in a worker process: one for every partition it reads.

``PartitionReads`` (one per run in each process, ``Runtime.shared``) holds
one librdkafka consumer (``SharedConsumer``: ``assign()``ed partitions, never
a group member) and, per partition this process reads, a view of it
(``PartitionConsumer``) and its *read position*: the next offset the reader
hands on.  A restriction resumed in the same process continues from there --
the records between its checkpointed (durable) start and the read position
are waiting in batches -- while a fresh process starts at the group's
committed offset.

Why one consumer and not one per partition: each librdkafka client has its
own threads (one per broker, plus two), buffers and fetch requests.  With one
per partition a worker reading 48 partitions of a 3-broker cluster ran ~250
threads and held ~160 MB before reading a record, and 256 partitions would
need ~1,300 threads and most of a gigabyte.  One consumer prefetches for
every partition within one budget (``PREFETCH_KBYTES``, librdkafka's
``queued.max.messages.kbytes``, which for a consumer's own queue bounds all
its partitions together), and its fetches are capped
(``fetch.max.bytes``, ``max.partition.fetch.bytes``), so memory does not grow
with the number of partitions or the backlog.

The reader reads one partition at a time; the consumer hands out records of
every partition.  Records of the other partitions wait in the view's buffer
until their partition is read; a partition whose buffer passes its share of
``BUFFER_BYTES`` (at least 256 KB), or that receives records while all buffers together hold
more than 64 MB, is paused (librdkafka stops fetching it, and resumes from
the last record handed over) until its reader takes what waits.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from transforms.kafka.config import new_consumer

__all__ = ['CachedConsumer', 'PartitionReads', 'PartitionConsumer', 'SharedConsumer',
           'consumer_defaults', 'owns', 'SHARED_NAME', 'PREFETCH_KBYTES', 'BUFFER_BYTES']

_LOGGER = logging.getLogger(__name__)

SHARED_NAME = 'kafka.reads'
# librdkafka's prefetch for all partitions of the process (queued.max.messages.kbytes).
PREFETCH_KBYTES = 16 * 1024
# One fetch response at most (fetch.max.bytes), and a partition's share of it within bounds.
_FETCH_MAX_BYTES = 8 * 1024 * 1024
_PARTITION_FETCH_BOUNDS = (64 * 1024, 1024 * 1024)
_PREFETCH_MIN_MESSAGES = 20000
# How long the broker may hold a fetch for partitions without new records (librdkafka: 500).
# A partition resumed (its reader came back to it) is fetched with the next request, so a long
# hold would stall its reader (300k records over 48 partitions: 7-8 s at 500 ms, 4 s at 10 ms).
_FETCH_WAIT_MAX_MS = 10
# librdkafka waits fetch.queue.backoff.ms (default 1 s) before fetching again for a partition
# whose queue reached its limit: a fast reader would starve.
_FETCH_QUEUE_BACKOFF_MS = 10
# Records fetched for partitions not being read, held in this process: all partitions together.
BUFFER_BYTES = 16 * 1024 * 1024
_MIN_BUFFER_SHARE = 256 * 1024
# ... and whatever the number of partitions (past 256, their shares add up to more), at most this
# much: 1,000 partitions would otherwise hold 256 MB.  The 300 tables' topics of
# bench/many_tables_bench.py read as fast with it as without; at 16 MB they read ~3% slower.
_ALL_BUFFERS_MAX_BYTES = 64 * 1024 * 1024
# A wait for records polls the consumer in slices this long, so readers of other partitions
# (other threads of the process) are not held up by one that waits.
_POLL_SLICE_SECS = 0.05
_YIELD_SECS = 0.001
# Messages taken from the consumer at once while looking for one partition's.
_PULL_MESSAGES = 1000
_PARTITION_EOF = -191
# A wake does not wait for the broker's answer: the request, once queued, wakes the broker's
# thread (measured on the mock cluster: the first record 1.1 ms after an assignment, p90 1.7 ms,
# as with waiting for the answer; without a wake p90 0.8 s).  Waiting cost ~8 ms per partition
# while fetches were in flight: 10 s for a job starting on 1,200 partitions.  A 1 ms timeout
# still cost its millisecond per wake (300 tables' topics: ~0.7 s of a 11 s job); 0.1 ms
# queues the request as well (with another partition's fetch in flight: first record median
# 12 ms, p90 22 ms, as at 1 ms).
_WAKE_TIMEOUT_SECS = 0.0001


def consumer_defaults(partition_count: int) -> Dict[str, Any]:
  """librdkafka settings the reader's consumer gets unless the user's config sets them."""
  low, high = _PARTITION_FETCH_BOUNDS
  return {
      'queued.max.messages.kbytes': PREFETCH_KBYTES,
      'queued.min.messages': _PREFETCH_MIN_MESSAGES,
      'fetch.queue.backoff.ms': _FETCH_QUEUE_BACKOFF_MS,
      'fetch.max.bytes': _FETCH_MAX_BYTES,
      'fetch.wait.max.ms': _FETCH_WAIT_MAX_MS,
      'max.partition.fetch.bytes': max(low, min(high, PREFETCH_KBYTES * 1024 //
                                                max(1, partition_count))),
  }


class _Buffer:
  """Records of one partition fetched while another partition was being read."""
  __slots__ = ('messages', 'nbytes', 'floor', 'paused', 'next_offset', 'dropped')

  def __init__(self, floor: int):
    self.messages: Deque[Any] = collections.deque()
    self.nbytes = 0
    # Records below the offset the partition was last assigned at are stale (fetched before
    # the seek) until the first record at or past it arrives.
    self.floor: Optional[int] = floor
    self.paused = False
    # The offset after the last record kept (buffered or handed on): a paused partition's
    # records that still arrive are dropped, and its read restarts here when it resumes.
    self.next_offset = floor
    self.dropped = False


def _stale(message, buffer: _Buffer) -> bool:
  """Whether ``message`` (of a partition with a ``floor``) was fetched before its last assign.

  A record at or past the floor ends the check: from then on a record below
  the read position is the reader's to see (a topic deleted and re-created).
  """
  error = message.error()
  if error is None:
    if message.offset() < buffer.floor:
      return True
    buffer.floor = None
    return False
  return error.code() == _PARTITION_EOF and message.offset() < buffer.floor


class SharedConsumer:
  """One librdkafka consumer for every partition a process reads, handed out per partition.

  Thread-safe: readers of different partitions may run on different threads.

  Args:
    factory: makes the librdkafka consumer (called once, at the first ``assign``).
  """

  def __init__(self, factory):
    self._factory = factory
    self._consumer = None
    self._lock = threading.RLock()
    self._buffers: Dict[Tuple[str, int], _Buffer] = {}
    self._buffered = 0  # bytes of every buffer together
    self._closed = False

  # ------------------------------------------------------------- partitions

  def assign(self, topic: str, partition: int, offset: int) -> _Buffer:
    """(Re)starts reading ``topic[partition]`` at ``offset``; what waited for it is dropped.

    Returns the assignment's token for ``take`` and ``unassign``: a later
    ``assign`` of the partition makes it stale.
    """
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    with self._lock:
      consumer = self._client()
      key = (topic, partition)
      old = self._buffers.get(key)
      if old is not None:
        self._buffered -= old.nbytes
        if old.paused:  # librdkafka keeps a partition's pause across assignments
          consumer.resume([TopicPartition(topic, partition)])
        consumer.incremental_unassign([TopicPartition(topic, partition)])
      buffer = self._buffers[key] = _Buffer(offset)
      consumer.incremental_assign([TopicPartition(topic, partition, offset)])
      self._wake(key)
      return buffer

  def unassign(self, topic: str, partition: int, token: _Buffer) -> None:
    """Stops reading ``topic[partition]`` if ``token`` is its assignment; drops what waited."""
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    with self._lock:
      if self._buffers.get((topic, partition)) is not token:
        return
      del self._buffers[(topic, partition)]
      self._buffered -= token.nbytes
      if self._consumer is None:
        return
      try:
        if token.paused:
          self._consumer.resume([TopicPartition(topic, partition)])
        self._consumer.incremental_unassign([TopicPartition(topic, partition)])
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('unassigning %s[%d] failed', topic, partition, exc_info=True)

  @property
  def assigned(self) -> int:
    """How many partitions are assigned."""
    return len(self._buffers)

  # ---------------------------------------------------------------- reading

  def take(self, topic: str, partition: int, token: _Buffer, n: int,
           wait_secs: float) -> List[Any]:
    """Up to ``n`` messages of the partition (records and its events), waiting up to
    ``wait_secs`` for the first one; none if ``token`` is not its assignment.

    Messages without a partition (client-wide errors) go to whoever asks next.
    """
    key = (topic, partition)
    deadline = time.monotonic() + wait_secs
    while True:
      with self._lock:
        buffer = self._buffers.get(key)
        if buffer is not token:
          return []
        out = self._from_buffer(key, buffer, n)
        if len(out) < n:
          out.extend(self._fetch(key, buffer, n - len(out), 0))
        if out:
          return out
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          return out
        out = self._fetch(key, buffer, n, min(remaining, _POLL_SLICE_SECS))
        if out:
          return out
      if time.monotonic() >= deadline:
        return []
      time.sleep(_YIELD_SECS)  # the lock is not fair: let a reader of another partition in

  def _from_buffer(self, key, buffer: _Buffer, n: int) -> List[Any]:
    messages = buffer.messages
    if not messages:
      return []
    count = min(n, len(messages))
    out = [messages.popleft() for _ in range(count)]
    taken = sum(len(m.value() or b'') for m in out)
    buffer.nbytes -= taken
    self._buffered -= taken
    if buffer.paused and (not buffer.nbytes or buffer.nbytes <= self._share() // 2 and
                          self._buffered <= _ALL_BUFFERS_MAX_BYTES):
      self._resume(key, buffer)  # an empty one always: its reader is waiting
    return out

  def _fetch(self, key, own: _Buffer, n: int, timeout: float) -> List[Any]:
    """Up to ``n`` messages for ``key`` from the consumer (its buffer is empty); the others'
    go to their buffers, and so do the partition's own beyond ``n``.

    Reads on while the consumer has records for other partitions only, so
    that a partition whose records sit behind others' is not starved.
    """
    consumer = self._client()
    out: List[Any] = []
    buffers = self._buffers
    pull = max(n, _PULL_MESSAGES)
    share = self._share()
    for _ in range(8):
      if timeout > 0:
        first = consumer.poll(timeout)
        messages = [] if first is None else [first] + consumer.consume(pull - 1, 0)
        timeout = 0
      else:
        messages = consumer.consume(pull, 0)
      if not messages:
        break
      for m in messages:
        target = (m.topic(), m.partition())
        if target == key:
          if own.floor is not None and _stale(m, own):
            continue  # fetched before the last assign
          if m.error() is None and not own.paused:
            own.next_offset = m.offset() + 1
          if len(out) < n:
            out.append(m)
          elif not own.paused:
            own.messages.append(m)
            size = len(m.value() or b'')
            own.nbytes += size
            self._buffered += size
            if own.nbytes > share or self._buffered > _ALL_BUFFERS_MAX_BYTES:
              self._pause(key, own)
          else:
            own.dropped = True
          continue
        buffer = buffers.get(target)
        if buffer is None:
          if m.partition() is None or m.partition() < 0:
            out.append(m)  # a client-wide error: the caller logs it
          continue  # a partition no longer read here
        if buffer.floor is not None and _stale(m, buffer):
          continue
        if buffer.paused:
          buffer.dropped = True  # fetched before the pause took effect: read again on resume
          continue
        buffer.messages.append(m)
        if m.error() is None:
          buffer.next_offset = m.offset() + 1
        size = len(m.value() or b'')
        buffer.nbytes += size
        self._buffered += size
        if buffer.nbytes > share or self._buffered > _ALL_BUFFERS_MAX_BYTES:
          # Its share, or all partitions' budget, is full: the next records wait in Kafka.
          self._pause(target, buffer)
      if out:
        break
    return out

  def _share(self) -> int:
    return max(_MIN_BUFFER_SHARE, BUFFER_BYTES // max(1, len(self._buffers)))

  def _pause(self, key, buffer: _Buffer) -> None:
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    self._consumer.pause([TopicPartition(*key)])
    buffer.paused = True

  def _resume(self, key, buffer: _Buffer) -> None:
    from confluent_kafka import TopicPartition  # pylint: disable=import-outside-toplevel
    consumer = self._consumer
    consumer.resume([TopicPartition(*key)])
    buffer.paused = False
    if buffer.dropped:
      # librdkafka would go on after the records dropped while paused: read them again.
      consumer.incremental_unassign([TopicPartition(*key)])
      consumer.incremental_assign([TopicPartition(*key, buffer.next_offset)])
      buffer.floor, buffer.dropped = buffer.next_offset, False
    self._wake(key)

  def _wake(self, key) -> None:
    """Has the partition's leader fetch it now.

    librdkafka picks up a partition assigned or resumed while its broker's
    thread has nothing to fetch only when that thread wakes on its own, up
    to a second later (measured: 1 s for half the resumes).  A request to
    the broker (the partition's offsets) wakes it; its answer is not waited for
    (``_WAKE_TIMEOUT_SECS``).  A reader that finds its partition not fetched yet while
    records wait asks again (``wake``).
    """
    from confluent_kafka import KafkaException, TopicPartition  # pylint: disable=import-outside-toplevel
    try:
      self._consumer.get_watermark_offsets(TopicPartition(*key), timeout=_WAKE_TIMEOUT_SECS,
                                           cached=False)
    except KafkaException:
      pass  # the fetch starts at the broker thread's next turn

  def wake(self, topic: str, partition: int, token: _Buffer) -> None:
    """A reader found records waiting in Kafka that its partition has not fetched: wakes
    the partition's leader (if ``token`` is still its assignment, and not paused)."""
    if self._buffers.get((topic, partition)) is token and not token.paused:
      self._wake((topic, partition))

  # ----------------------------------------------------------- pass-through

  def owns(self, topic: str, partition: int, token: _Buffer) -> bool:
    """Whether ``token`` is the partition's current assignment."""
    return self._buffers.get((topic, partition)) is token

  def get_watermark_offsets(self, topic_partition, cached: bool = False):
    consumer = self._client()
    return consumer.get_watermark_offsets(topic_partition, cached=cached)

  def committed(self, partitions, timeout: float):
    consumer = self._client()  # a request: made without holding the readers up
    return consumer.committed(partitions, timeout=timeout)

  def _client(self):
    with self._lock:
      if self._consumer is None:
        if self._closed:
          from confluent_kafka import KafkaError, KafkaException  # pylint: disable=import-outside-toplevel
          raise KafkaException(KafkaError(KafkaError._STATE,  # pylint: disable=protected-access
                                          'the reader\'s consumer is closed'))
        self._consumer = self._factory()
      return self._consumer

  def close(self) -> None:
    with self._lock:
      self._closed = True
      consumer, self._consumer = self._consumer, None
      self._buffers.clear()
    if consumer is not None:
      close_quietly(consumer)


class PartitionConsumer:
  """One partition's view of the ``SharedConsumer``, with a consumer's calls the reader makes.

  ``assign([TopicPartition(topic, partition, offset)])`` binds it (again) and
  seeks; ``consume(n, 0)`` returns what is there, ``poll(secs)`` waits for one
  message; ``close()`` unassigns the partition.
  """
  __slots__ = ('_shared', '_key', '_token')

  def __init__(self, shared: SharedConsumer):
    self._shared = shared
    self._key: Optional[Tuple[str, int]] = None
    self._token: Optional[_Buffer] = None

  def assign(self, partitions) -> None:
    (tp,) = partitions
    self._key = (tp.topic, tp.partition)
    self._token = self._shared.assign(tp.topic, tp.partition, tp.offset)

  def consume(self, num_messages: int = 1, timeout: float = 0) -> List[Any]:
    if self._key is None:
      return []
    return self._shared.take(*self._key, self._token, num_messages, max(0.0, timeout))

  def poll(self, timeout: float = 0):
    if self._key is None:
      return None
    messages = self._shared.take(*self._key, self._token, 1, max(0.0, timeout))
    return messages[0] if messages else None

  def owns(self) -> bool:
    """Whether this view's assignment is the partition's current one (a later ``assign`` of
    the partition, by another view, takes it over)."""
    return self._key is not None and self._shared.owns(*self._key, self._token)

  def get_watermark_offsets(self, topic_partition, cached: bool = False):
    return self._shared.get_watermark_offsets(topic_partition, cached=cached)

  def wake(self) -> None:
    """Has the partition's leader fetch it now (records wait that were not fetched)."""
    if self._key is not None:
      self._shared.wake(*self._key, self._token)

  def committed(self, partitions, timeout: float):
    return self._shared.committed(partitions, timeout)

  def close(self) -> None:
    if self._key is not None:
      self._shared.unassign(*self._key, self._token)
      self._key = self._token = None


class CachedConsumer:
  """One partition's consumer and where its next read starts; ``assigned_at`` (monotonic) from
  its assignment to its first messages."""
  __slots__ = ('consumer', 'next_offset', 'at_end', 'assigned_at')

  def __init__(self, consumer, next_offset: int, assigned_at: Optional[float] = None):
    self.consumer = consumer
    self.next_offset = next_offset
    self.at_end = False
    self.assigned_at = assigned_at


class PartitionReads:
  """The consumer and read positions of the partitions this process reads (thread-safe).

  Args:
    config: the reader's librdkafka config.
  """

  def __init__(self, config: Dict[str, Any]):
    self._config = config
    self._lock = threading.Lock()
    self._idle: Dict[Tuple[str, int], CachedConsumer] = {}
    self._positions: Dict[Tuple[str, int], int] = {}
    self._shared: Optional[SharedConsumer] = None
    self._closed = False
    self.created = 0  # librdkafka consumers made

  def position(self, topic: str, partition: int) -> Optional[int]:
    """Where this process's read of the partition continues, or None if it never read it."""
    return self._positions.get((topic, partition))

  def new_consumer(self, partition_count: int) -> PartitionConsumer:
    """A partition's consumer (bound by its ``assign``), sharing the process's one."""
    with self._lock:
      if self._closed:
        raise RuntimeError('the reads of this process are closed')
      if self._shared is None:
        self._shared = SharedConsumer(lambda: self._make(partition_count))
      return PartitionConsumer(self._shared)

  def _make(self, partition_count: int):
    overrides: Dict[str, Any] = {'enable.partition.eof': True}
    for key, value in consumer_defaults(partition_count).items():
      if key not in self._config:
        overrides[key] = value
    self.created += 1
    return new_consumer(self._config, **overrides)

  def checkout(self, topic: str, partition: int) -> Optional[CachedConsumer]:
    """The partition's idle consumer (the caller reads with it, then ``release``s it), or None."""
    with self._lock:
      cached = self._idle.pop((topic, partition), None)
    if cached is not None and not owns(cached.consumer):
      close_quietly(cached.consumer)  # another restriction of the partition took it over
      return None
    return cached

  def release(self, topic: str, partition: int, cached: CachedConsumer) -> None:
    """Keeps ``cached`` for the next restriction of the partition; records its position.

    Two restrictions of one partition may read in one process at once (a
    runner's split): only the view that holds the partition's assignment is
    kept, and the position only moves forward.
    """
    key = (topic, partition)
    with self._lock:
      self._advance(key, cached.next_offset)
      parked = self._idle.get(key)
      if self._closed or not owns(cached.consumer) or (parked is not None and owns(
          parked.consumer)):
        close_quietly(cached.consumer)
        return
      self._idle[key] = cached
    if parked is not None:
      close_quietly(parked.consumer)  # it had lost the partition to the one kept now

  def done(self, topic: str, partition: int, cached: CachedConsumer) -> None:
    """The partition's read is finished in this process: its consumer is closed."""
    with self._lock:
      self._advance((topic, partition), cached.next_offset)
    close_quietly(cached.consumer)

  def _advance(self, key: Tuple[str, int], offset: int) -> None:
    known = self._positions.get(key)
    if known is None or offset > known:
      self._positions[key] = offset

  def close(self) -> None:
    with self._lock:
      self._closed = True
      idle, self._idle = self._idle, {}
      shared, self._shared = self._shared, None
    for cached in idle.values():
      close_quietly(cached.consumer)
    if shared is not None:
      shared.close()


def owns(consumer) -> bool:
  """Whether a partition's consumer still holds its partition (one made for it alone always
  does; a view of the shared consumer until another view of the partition is assigned)."""
  check = getattr(consumer, 'owns', None)
  return True if check is None else check()


def close_quietly(consumer) -> None:
  try:
    consumer.close()
  except Exception:  # pylint: disable=broad-except
    _LOGGER.debug('closing a consumer failed', exc_info=True)
