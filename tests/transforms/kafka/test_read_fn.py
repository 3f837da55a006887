"""The reading DoFn's claim, stop and watermark logic, with a fake consumer."""

import time

from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners import sdf_utils
from apache_beam.utils.timestamp import Timestamp
from confluent_kafka import KafkaError

from transforms import kafka
from transforms.kafka import consumers, progress, read_fn
from transforms.kafka.partitions import UNBOUNDED_STOP_OFFSET, PartitionSpec
from transforms.kafka.read_fn import ReadPartitionFn
from transforms.kafka.restriction import (DrainingRange, PartitionOffsetTracker,
                                          PartitionRestrictionProvider)
from transforms.kafka.watch_fn import ReadUnboundedFn
from transforms.runtime import RunContext, acquire, release
from transforms.types import ChunkRead, OffsetAck
import pytest

pytestmark = pytest.mark.unit


class _Msg:

  def __init__(self, offset, ts_ms=1000, err=None):
    self._offset, self._ts, self._err = offset, ts_ms, err

  def error(self):
    return self._err

  def topic(self):
    return 't'

  def partition(self):
    return 0

  def offset(self):
    return self._offset

  def key(self):
    return None

  def value(self):
    return b'v%d' % self._offset

  def timestamp(self):
    return (1, self._ts)

  def headers(self):
    return None


class _FakeConsumer:
  """One partition: ``offsets`` exist, the partition ends at ``end``."""

  def __init__(self, offsets, end, ts_ms=lambda o: 1000 + o, committed=-1001):
    self.offsets, self.end, self.ts_ms = list(offsets), end, ts_ms
    self.committed_offset = committed
    self.position = None
    self.assigns = 0
    self.closed = False
    self._eof_sent = False

  def assign(self, tps):
    self.assigns += 1
    self.position = tps[0].offset
    self._eof_sent = False

  incremental_assign = assign  # the reader's one consumer assigns partitions one by one

  def incremental_unassign(self, tps):
    pass

  def _next(self):
    for o in self.offsets:
      if o >= self.position:
        self.position = o + 1
        return _Msg(o, self.ts_ms(o))
    if not self._eof_sent:
      self._eof_sent = True
      return _Msg(self.end, err=KafkaError(KafkaError._PARTITION_EOF))
    return None

  def get_watermark_offsets(self, tp, timeout=None, cached=False):
    return 0, self.end

  def consume(self, n, timeout):
    out = []
    while len(out) < n:
      m = self._next()
      if m is None:
        break
      out.append(m)
    return out

  def poll(self, timeout):
    return self._next()

  def close(self):
    self.closed = True

  def committed(self, tps, timeout=None):
    from confluent_kafka import TopicPartition
    return [TopicPartition(tp.topic, tp.partition, self.committed_offset) for tp in tps]


def _fn(monkeypatch, consumer, unbounded=False, chunk=3, context=None, durable=False):
  monkeypatch.setattr(consumers, 'new_consumer', lambda *a, **k: consumer)
  cls = ReadUnboundedFn if unbounded else ReadPartitionFn
  fn = cls({'group.id': 'g'}, chunk, 0.01, 5.0, 100000, context or RunContext(), durable)
  fn.setup()
  fn.start_bundle()
  return fn


def _run(fn, start, stop, watermark=None, spec_stop=None, restriction=OffsetRange):
  tracker = sdf_utils.ThreadsafeRestrictionTracker(
      PartitionOffsetTracker(restriction(start, stop)))
  estimator = ManualWatermarkEstimator(watermark)
  spec = PartitionSpec('t', 0, start, stop if spec_stop is None else spec_stop, None)
  out = list(fn.process(spec, sdf_utils.RestrictionTrackerView(tracker),
                        estimator))
  return out, tracker, estimator


def test_bounded_read_trims_at_the_stop_offset(monkeypatch):
  fn = _fn(monkeypatch, _FakeConsumer(range(10), 10))
  out, tracker, _ = _run(fn, 0, 8)
  chunks = [tv.value for tv in out]
  assert [r.offset for c in chunks for r in c.records] == list(range(8))
  assert [(c.first_offset, c.next_offset) for c in chunks] == [
      (0, 3), (3, 6), (6, 8)]
  tracker.check_done()
  assert tracker.deferred_status() is None


def test_bounded_read_finishes_when_the_end_is_transaction_markers(
    monkeypatch):
  # Offsets 5 and 6 are markers: never returned, but inside [0, 7).
  fn = _fn(monkeypatch, _FakeConsumer(range(5), 7))
  out, tracker, _ = _run(fn, 0, 7)
  assert [r.offset for tv in out for r in tv.value.records] == list(range(5))
  # An empty chunk covers the markers, so the committed offset reaches the end (7).
  assert [(tv.value.first_offset, tv.value.next_offset) for tv in out][-1] == (5, 7)
  assert out[-1].value.records == []
  tracker.check_done()


def test_bounded_read_covers_markers_before_its_end_when_later_records_exist(monkeypatch):
  # A transactional topic still written to: records 0..5, a marker at 6, the end seen at start
  # is 7, and records 7.. were written since. The marker must still become a chunk, or the
  # read never reaches its end (and a durable read waits for it forever).
  fn = _fn(monkeypatch, _FakeConsumer(list(range(6)) + list(range(7, 12)), 12))
  out, tracker, _ = _run(fn, 0, 7)
  chunks = [tv.value for tv in out]
  assert [r.offset for c in chunks for r in c.records] == list(range(6))
  assert (chunks[-1].first_offset, chunks[-1].next_offset, chunks[-1].records) == (6, 7, [])
  assert all(a.next_offset == b.first_offset for a, b in zip(chunks, chunks[1:]))
  tracker.check_done()


def test_unbounded_read_covers_trailing_markers_with_an_empty_chunk(monkeypatch):
  # Records 0..4, then markers (or aborted records) at 5 and 6; the partition ends at 7.
  fn = _fn(monkeypatch, _FakeConsumer(range(5), 7), unbounded=True)
  out, tracker, _ = _run(fn, 0, UNBOUNDED_STOP_OFFSET)
  chunks = [tv.value for tv in out]
  assert [(c.first_offset, c.next_offset, len(c.records)) for c in chunks] == [
      (0, 3, 3), (3, 5, 2), (5, 7, 0)]
  assert [kafka.chunk_read_of(c).count for c in chunks] == [3, 2, 0]
  residual, _ = tracker.deferred_status()
  assert residual.start == 7  # the next bundle reads on from the end


def test_chunk_timestamp_and_watermark_follow_records(monkeypatch):
  fn = _fn(monkeypatch, _FakeConsumer(range(3), 3, ts_ms=lambda o: [5, 9, 7][o]))
  out, _, estimator = _run(fn, 0, 3)
  assert out[0].timestamp == Timestamp(micros=9000)
  assert estimator.current_watermark() == Timestamp(micros=9000)


def test_idle_unbounded_read_defers_and_moves_watermark_to_wall_time(
    monkeypatch):
  fn = _fn(monkeypatch, _FakeConsumer([0, 1], 2), unbounded=True)
  before = Timestamp.now()
  out, tracker, estimator = _run(fn, 0, UNBOUNDED_STOP_OFFSET)
  assert [r.offset for tv in out for r in tv.value.records] == [0, 1]
  residual, _ = tracker.deferred_status()
  assert residual.start == 2
  lag = before - estimator.current_watermark()
  assert 1.5 <= lag.micros / 1e6 <= 3


def test_resumed_restriction_reuses_the_consumer_without_seeking(monkeypatch):
  consumer = _FakeConsumer([0, 1], 2)
  context = RunContext()
  runtime = acquire(context)
  fn = _fn(monkeypatch, consumer, unbounded=True, context=context)
  _run(fn, 0, UNBOUNDED_STOP_OFFSET)
  consumer.offsets.extend([2, 3])
  consumer.end = 4
  fn.start_bundle()
  out, _, _ = _run(fn, 2, UNBOUNDED_STOP_OFFSET)
  assert [r.offset for tv in out for r in tv.value.records] == [2, 3]
  assert consumer.assigns == 1
  # A restriction behind this process's read position continues there: the rows between are
  # held in batches here (a checkpoint resumes at what is durable, not at what is read).
  fn.start_bundle()
  consumer.offsets.append(4)
  consumer.end = 5
  out, _, _ = _run(fn, 1, UNBOUNDED_STOP_OFFSET)
  assert [r.offset for tv in out for r in tv.value.records] == [4]
  assert consumer.assigns == 1
  fn.teardown()
  release(runtime)  # the last user closes the process's consumers
  assert consumer.closed


def test_a_stop_completes_an_unbounded_restriction(monkeypatch):
  consumer = _FakeConsumer(range(100), 100)
  context = RunContext()
  runtime = acquire(context)
  fn = _fn(monkeypatch, consumer, unbounded=True, chunk=10, context=context)
  runtime.request_stop('test')
  out, tracker, _ = _run(fn, 0, UNBOUNDED_STOP_OFFSET)
  assert out == []
  tracker.check_done()
  assert tracker.deferred_status() is None
  assert runtime.sources.finished()
  release(runtime)


def test_a_runners_drain_truncates_to_a_restriction_that_reads_no_further(monkeypatch):
  consumer = _FakeConsumer(range(100), 100)
  fn = _fn(monkeypatch, consumer, unbounded=True, chunk=10)
  restriction = PartitionRestrictionProvider().truncate(None, OffsetRange(0, UNBOUNDED_STOP_OFFSET))
  assert isinstance(restriction, DrainingRange)
  out, tracker, _ = _run(fn, 0, UNBOUNDED_STOP_OFFSET, restriction=DrainingRange)
  assert out == []
  tracker.check_done()
  assert tracker.deferred_status() is None


def _commit(context, *items):
  """What CommitOffsets does with chunk reads and acks, in the run's bookkeeping."""
  runtime = acquire(context)
  try:
    bookkeeping = runtime.shared(progress.SHARED_NAME, lambda: None)
    for item in items:
      if isinstance(item, ChunkRead):
        bookkeeping.add_chunk(item.topic, item.partition, item.first_offset, item.next_offset,
                              item.count)
      else:
        bookkeeping.ack(item.topic, item.partition, item.offsets)
  finally:
    release(runtime)


def _no_commits(monkeypatch):
  """Offsets are not committed to Kafka (there is none): what is durable is asserted."""
  for name in ('submit', 'commit_now', 'close'):
    monkeypatch.setattr(progress._Committer, name,  # pylint: disable=protected-access
                        lambda *a, **k: None)


def test_a_durable_read_checkpoints_at_the_loaded_offset_not_the_read_position(monkeypatch):
  _no_commits(monkeypatch)
  consumer = _FakeConsumer(range(9), 9)
  context = RunContext()
  runtime = acquire(context)
  fn = _fn(monkeypatch, consumer, unbounded=True, context=context, durable=True)
  out, tracker, _ = _run(fn, 0, UNBOUNDED_STOP_OFFSET)
  chunks = [tv.value for tv in out]
  assert [(c.first_offset, c.next_offset) for c in chunks] == [(0, 3), (3, 6), (6, 9)]
  residual, _ = tracker.deferred_status()
  assert residual.start == 0  # nothing loaded yet: a restore must read it all again
  # The first two chunks load; the third waits in a batch.
  _commit(context, *(kafka.chunk_read_of(c) for c in chunks),
          OffsetAck('t', 0, (0, 1, 2, 3, 4, 5)))
  fn.start_bundle()
  consumer.offsets.append(9)
  consumer.end = 10
  out, tracker, _ = _run(fn, residual.start, UNBOUNDED_STOP_OFFSET)
  assert [r.offset for tv in out for r in tv.value.records] == [9]  # read on from 9, not 0
  residual, _ = tracker.deferred_status()
  assert residual.start == 6
  release(runtime)


def test_a_durable_bounded_read_finishes_only_once_its_rows_are_loaded(monkeypatch):
  _no_commits(monkeypatch)
  consumer = _FakeConsumer(range(4), 4)
  context = RunContext()
  runtime = acquire(context)
  fn = _fn(monkeypatch, consumer, context=context, durable=True)
  out, tracker, _ = _run(fn, 0, 4)
  assert runtime.sources.finished()  # every read of the process ended: batches flush now
  residual, _ = tracker.deferred_status()  # but the rows are not loaded: check back
  assert (residual.start, residual.stop) == (0, 4)
  _commit(context, *(kafka.chunk_read_of(tv.value) for tv in out),
          OffsetAck('t', 0, (0, 1, 2, 3)))
  fn.start_bundle()
  out, tracker, _ = _run(fn, 0, 4)
  assert out == []
  tracker.check_done()
  assert tracker.deferred_status() is None
  release(runtime)


def test_a_read_that_reaches_its_end_on_a_calls_last_turn_ends_announced(monkeypatch):
  """Rows finished while their chunk is handed on (dead letters, rows a truncate removed) and a
  call whose time is up on that turn: the read still ends through its end check, so the process
  knows every read ended (its batches flush at the end of input, not at their time limits)."""
  _no_commits(monkeypatch)
  monkeypatch.setattr(read_fn, '_MIN_CALL_SECS', 0.0)
  monkeypatch.setattr(consumers, 'new_consumer', lambda *a, **k: consumer)
  consumer = _FakeConsumer(range(3), 3)
  context = RunContext()
  runtime = acquire(context)
  fn = ReadPartitionFn({'group.id': 'g'}, 3, 0.01, 0.0, 100000, context, True)  # no time to spare
  fn.setup()
  fn.start_bundle()
  tracker = sdf_utils.ThreadsafeRestrictionTracker(PartitionOffsetTracker(OffsetRange(0, 3)))
  spec = PartitionSpec('t', 0, 0, 3, None)
  for tv in fn.process(spec, sdf_utils.RestrictionTrackerView(tracker),
                       ManualWatermarkEstimator(None)):
    chunk = tv.value
    _commit(context, kafka.chunk_read_of(chunk),
            OffsetAck('t', 0, tuple(r.offset for r in chunk.records)))
  assert runtime.sources.finished()
  tracker.check_done()
  assert tracker.deferred_status() is None
  release(runtime)


def test_a_fresh_process_starts_at_the_groups_committed_offset_past_an_old_checkpoint(
    monkeypatch):
  _no_commits(monkeypatch)
  consumer = _FakeConsumer(range(10), 10, committed=6)  # loads after the checkpoint committed 6
  fn = _fn(monkeypatch, consumer, unbounded=True, context=RunContext(), durable=True)
  out, _, _ = _run(fn, 2, UNBOUNDED_STOP_OFFSET)  # the runner restored a checkpoint at 2
  assert [r.offset for tv in out for r in tv.value.records] == [6, 7, 8, 9]


@pytest.mark.parametrize('asked_secs_ago, asks, first', [(0.0, 0, 2), (60.0, 1, 6), (None, 1, 6)])
def test_a_planned_start_asked_a_moment_ago_is_not_asked_again(monkeypatch, asked_secs_ago,
                                                               asks, first):
  # A whole database's topics: one round trip each, in turn, when every first read asked the
  # group again what the plan asked of it a moment before.  Older answers are asked again.
  _no_commits(monkeypatch)
  consumer = _FakeConsumer(range(10), 10, committed=6)
  calls = []
  committed = consumer.committed
  consumer.committed = lambda tps, timeout=None: calls.append(tps) or committed(tps, timeout)
  fn = _fn(monkeypatch, consumer, unbounded=True, context=RunContext(), durable=True)
  asked_at = None if asked_secs_ago is None else time.time() - asked_secs_ago
  spec = PartitionSpec('t', 0, 2, UNBOUNDED_STOP_OFFSET, None, 1, asked_at)
  tracker = sdf_utils.ThreadsafeRestrictionTracker(PartitionOffsetTracker(
      OffsetRange(2, UNBOUNDED_STOP_OFFSET)))
  out = list(fn.process(spec, sdf_utils.RestrictionTrackerView(tracker),
                        ManualWatermarkEstimator(None)))
  assert len(calls) == asks
  assert [r.offset for tv in out for r in tv.value.records][0] == first


@pytest.mark.parametrize('unbounded', [False, True])
def test_a_partition_whose_first_fetch_is_under_way_is_not_waited_for_nor_woken_again(
    monkeypatch, unbounded):
  # Hundreds of partitions starting in turn (a whole database's topics): each waited a fetch's
  # round trip, and was woken twice.  Once the bundle has waited its share, a partition just
  # assigned comes back soon instead; an older assignment is waited for and woken.
  consumer = _FakeConsumer(range(5), 5)
  fetched = []  # nothing arrives until the test says so
  consume, poll = consumer.consume, consumer.poll
  consumer.consume = lambda n, timeout: consume(n, timeout) if fetched else []
  waits = []
  consumer.poll = lambda timeout: waits.append(timeout) or (poll(timeout) if fetched else None)
  wakes = []
  consumer.get_watermark_offsets = (
      lambda tp, timeout=None, cached=False: wakes.append(cached) or (0, 5))
  fn = _fn(monkeypatch, consumer, unbounded=unbounded)
  stop = UNBOUNDED_STOP_OFFSET if unbounded else 5
  fn._bundle_wait_secs = 0  # pylint: disable=protected-access
  out, tracker, _ = _run(fn, 0, stop, spec_stop=stop)
  residual, delay = tracker.deferred_status()
  assert out == [] and residual.start == 0
  assert 0 < delay.micros <= read_fn._RESUME_SECS * 1e6  # soon: not an idle partition's 1 s  # pylint: disable=protected-access
  assert waits == [] and wakes.count(False) == 1  # the assignment's wake only
  monkeypatch.setattr(read_fn, '_FIRST_FETCH_SECS', 0.0)  # now an old assignment
  fn._bundle_wait_secs = 0  # pylint: disable=protected-access
  _run(fn, 0, stop, spec_stop=stop)
  assert waits and waits[0] > 0 and wakes.count(False) == 2
  fetched.append(True)
  out, _, _ = _run(fn, 0, stop, spec_stop=stop)
  assert [r.offset for tv in out for r in tv.value.records] == list(range(5))


def test_non_fatal_kafka_errors_are_skipped(monkeypatch):
  consumer = _FakeConsumer([0, 1], 2)
  original = consumer.consume
  calls = []

  def consume(n, timeout):
    if not calls:
      calls.append(1)
      return [_Msg(0, err=KafkaError(KafkaError._TRANSPORT))]
    return original(n, timeout)

  consumer.consume = consume
  fn = _fn(monkeypatch, consumer)
  out, tracker, _ = _run(fn, 0, 2)
  assert [r.offset for tv in out for r in tv.value.records] == [0, 1]
  tracker.check_done()
