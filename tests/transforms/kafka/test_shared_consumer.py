"""The reader's one consumer per process, against the mock cluster: every partition read in turn,
nothing lost or read twice, and what waits for other partitions bounded whatever the backlog."""

import threading

from confluent_kafka import KafkaError, TopicPartition

from transforms.kafka import consumers
from transforms.kafka.consumers import PartitionReads
import pytest

pytestmark = pytest.mark.transform

_EOF = KafkaError._PARTITION_EOF  # pylint: disable=protected-access


def _backlog(kafka_cluster, topics, per_partition, size=1000):
  names = [kafka_cluster.unique_topic('shared') for _ in range(topics)]
  n = per_partition * kafka_cluster.num_partitions
  for name in names:
    kafka_cluster.produce(name, [b'%08d' % i + b'x' * (size - 8) for i in range(n)])
  return [(t, p) for t in names for p in range(kafka_cluster.num_partitions)]


def _read_in_turns(reads, parts, chunk, on_turn=None):
  """Reads every partition to its end the way the reader does: one partition at a time, a
  chunk or two per turn.  Returns {partition: offsets read}."""
  views = {}
  for key in parts:
    views[key] = reads.new_consumer(len(parts))
    views[key].assign([TopicPartition(*key, 0)])
  seen = {key: [] for key in parts}
  open_parts = list(parts)
  for _ in range(20000):
    if not open_parts:
      break
    for key in list(open_parts):
      view = views[key]
      messages = view.consume(chunk, 0) or [m for m in (view.poll(0.05),) if m is not None]
      for m in messages:
        if m.error() is None:
          seen[key].append(m.offset())
        elif m.error().code() == _EOF and m.offset() == len(seen[key]):
          open_parts.remove(key)
          view.close()
          break
      if on_turn is not None:
        on_turn()
  assert not open_parts, f'{len(open_parts)} partitions never reached their end'
  return seen


def test_every_record_of_every_partition_is_read_once_in_order_by_one_client(kafka_cluster):
  parts = _backlog(kafka_cluster, topics=6, per_partition=1500)
  reads = PartitionReads(kafka_cluster.consumer_config())
  threads_before = threading.active_count()
  try:
    seen = _read_in_turns(reads, parts, chunk=400)
  finally:
    reads.close()
  assert {key: offsets for key, offsets in seen.items() if offsets != list(range(1500))} == {}
  assert reads.created == 1  # one librdkafka client for the 24 partitions
  assert threading.active_count() == threads_before


def _peak_waiting_bytes(kafka_cluster, per_partition):
  parts = _backlog(kafka_cluster, topics=4, per_partition=per_partition)
  reads = PartitionReads(kafka_cluster.consumer_config())
  peak = [0]

  def measure():
    shared = reads._shared  # pylint: disable=protected-access
    waiting = sum(b.nbytes for b in shared._buffers.values())  # pylint: disable=protected-access
    peak[0] = max(peak[0], waiting)

  try:
    seen = _read_in_turns(reads, parts, chunk=200, on_turn=measure)
  finally:
    reads.close()
  assert all(offsets == list(range(per_partition)) for offsets in seen.values())
  return peak[0]


def test_records_waiting_for_their_partition_stay_within_the_budget_whatever_the_backlog(
    kafka_cluster, monkeypatch):
  # A small budget so that the small backlog already fills it: 16 partitions x 64 KiB.
  monkeypatch.setattr(consumers, 'BUFFER_BYTES', 1024 * 1024)
  monkeypatch.setattr(consumers, '_MIN_BUFFER_SHARE', 64 * 1024)
  small = _peak_waiting_bytes(kafka_cluster, per_partition=1000)
  large = _peak_waiting_bytes(kafka_cluster, per_partition=3000)
  # Without the pauses everything fetched for the other partitions waits here: ~15 MB for
  # the small backlog, ~45 MB for the large one.  With them: the budget plus what was already
  # in flight when a partition was paused.
  assert large <= 4 * 1024 * 1024
  assert large <= 1.25 * small + 512 * 1024


def test_records_waiting_for_many_partitions_stay_within_the_budget_of_them_all(
    kafka_cluster, monkeypatch):
  # 16 partitions whose shares (512 KiB each, the floor) add up to 8 MiB, past the 1 MiB that
  # all buffers together may hold.
  monkeypatch.setattr(consumers, 'BUFFER_BYTES', 1024 * 1024)
  monkeypatch.setattr(consumers, '_MIN_BUFFER_SHARE', 512 * 1024)
  monkeypatch.setattr(consumers, '_ALL_BUFFERS_MAX_BYTES', 1024 * 1024)
  peak = _peak_waiting_bytes(kafka_cluster, per_partition=3000)
  # Without that bound: ~8 MiB (every share full). With it: the bound plus what was already in
  # flight when the partitions were paused.
  assert peak <= 2 * 1024 * 1024


def _records(view, want, secs=10.0):
  import time  # pylint: disable=import-outside-toplevel
  got, deadline = [], time.monotonic() + secs
  while len(got) < want and time.monotonic() < deadline:
    got += [m.offset() for m in view.consume(500, 0.1) if m.error() is None]
  return got


@pytest.mark.parametrize('first_back', ['stale', 'live'])
def test_a_view_that_lost_its_partition_to_a_later_one_is_never_kept(kafka_cluster, first_back):
  # Two restrictions of one partition read at once in one process (a runner's split): the later
  # assign takes the partition over, and only that view may be kept for the next restriction.
  (key, _, _, _) = _backlog(kafka_cluster, topics=1, per_partition=300)
  reads = PartitionReads(kafka_cluster.consumer_config())
  try:
    stale, live = reads.new_consumer(4), reads.new_consumer(4)
    stale.assign([TopicPartition(*key, 0)])
    live.assign([TopicPartition(*key, 100)])
    assert live.owns() and not stale.owns()
    backs = {'stale': consumers.CachedConsumer(stale, 50),
             'live': consumers.CachedConsumer(live, 120)}
    order = ['stale', 'live'] if first_back == 'stale' else ['live', 'stale']
    for name in order:
      reads.release(*key, backs[name])
    kept = reads.checkout(*key)
    assert kept is not None and kept.consumer is live
    assert reads.position(*key) == 120  # never moved back by the stale view
    assert _records(live, 200) == list(range(100, 300))
  finally:
    reads.close()


def test_readers_starting_at_once_share_one_client(kafka_cluster, monkeypatch):
  parts = _backlog(kafka_cluster, topics=1, per_partition=10)
  slow = consumers.new_consumer

  def made_slowly(*args, **kwargs):
    threading.Event().wait(0.2)  # the window in which another reader starts
    return slow(*args, **kwargs)

  monkeypatch.setattr(consumers, 'new_consumer', made_slowly)
  reads = PartitionReads(kafka_cluster.consumer_config())
  try:
    views = [reads.new_consumer(4) for _ in parts]
    threads = [threading.Thread(target=view.committed, args=([TopicPartition(*key)], 10))
               for view, key in zip(views, parts)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    assert reads.created == 1
    for view, key in zip(views, parts):
      view.assign([TopicPartition(*key, 0)])
    assert all(_records(view, 10) == list(range(10)) for view in views)
  finally:
    reads.close()
