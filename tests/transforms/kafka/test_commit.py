"""CommitOffsets in a pipeline, and restarting from committed offsets."""

import collections
import uuid

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tests.fixtures.kafka import values_of
from transforms import kafka
from transforms.types import ChunkRead, OffsetAck

pytestmark = pytest.mark.transform

_SINK = collections.defaultdict(list)


class _Collect(beam.DoFn):

  def __init__(self, name):
    self._name = name

  def process(self, element):
    _SINK[self._name].append(element)


def _ack_loaded(chunk, failed_partition, first_failed_offset):
  """A fake sink: acks every record except a failed tail of one partition."""
  offsets = tuple(
      r.offset for r in chunk.records
      if not (r.partition == failed_partition and
              r.offset >= first_failed_offset))
  if offsets:
    yield OffsetAck(chunk.topic, chunk.partition, offsets)


@pytest.mark.parametrize('flatten', [False, True])
def test_commit_stops_before_the_first_unloaded_chunk_and_restart_rereads_tail(
    kafka_cluster, flatten):
  topic = kafka_cluster.unique_topic()
  values = values_of(1000)  # 250 per partition, round robin
  kafka_cluster.produce(topic, values)
  group = f'g-{uuid.uuid4().hex[:8]}'
  config = kafka_cluster.consumer_config(group)
  name = uuid.uuid4().hex

  with beam.Pipeline(runner=FnApiRunner()) as p:
    chunks = p | kafka.ReadKafkaChunks(config, [topic], stop_at_end=True,
                                       max_chunk_records=50)
    reads = chunks | 'Reads' >> beam.Map(kafka.chunk_read_of)
    _ = reads | 'KeepReads' >> beam.ParDo(_Collect(name + '-reads'))
    acks = chunks | 'Sink' >> beam.FlatMap(_ack_loaded, 0, 120)
    inputs = (reads, acks) | beam.Flatten() if flatten else (reads, acks)
    commits = inputs | kafka.CommitOffsets(config)
    if not flatten:
      commits = commits | 'AllCommits' >> beam.Flatten()
    _ = commits | beam.ParDo(_Collect(name))

  # Partition 0 lost offsets >= 120: its commit stops at the start of the
  # chunk holding offset 120, the other partitions are committed to the end.
  committed = kafka_cluster.committed(group, topic)
  assert committed[1] == committed[2] == committed[3] == 250
  [holding] = [c for c in _SINK.pop(name + '-reads')
               if c.partition == 0 and c.first_offset <= 120 < c.next_offset]
  assert committed[0] == holding.first_offset  # the incomplete chunk's start
  emitted = _SINK.pop(name)
  assert max(o for t, p, o in emitted if p == 0) == committed[0]
  assert all(t == topic for t, _, _ in emitted)

  # Restart: exactly the unloaded tail of partition 0 is read again.
  with beam.Pipeline(runner=FnApiRunner()) as p:
    records = p | kafka.ReadFromKafka(config, [topic], stop_at_end=True)
    assert_that(records | beam.Map(lambda r: (r.partition, r.offset)),
                equal_to([(0, o) for o in range(committed[0], 250)]))


def test_commit_offsets_from_out_of_order_acks(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, values_of(40))  # creates the topic
  group = f'g-{uuid.uuid4().hex[:8]}'
  config = kafka_cluster.consumer_config(group)
  items = [
      OffsetAck(topic, 0, (5, 6)),          # before its chunk
      ChunkRead(topic, 0, 0, 5, 5),
      ChunkRead(topic, 0, 5, 10, 4),
      OffsetAck(topic, 0, (0, 1, 2, 3, 4)),  # chunk 1 done -> commit 5
      OffsetAck(topic, 0, (9, 9)),           # chunk 2 done -> commit 10
      ChunkRead(topic, 1, 0, 3, 0),          # empty chunk -> commit 3
      ChunkRead(topic, 2, 0, 3, 1),          # never acked -> no commit
  ]
  name = uuid.uuid4().hex
  with beam.Pipeline(runner=FnApiRunner()) as p:
    _ = (p | beam.Create(items, reshuffle=False)
         | kafka.CommitOffsets(config)
         | beam.ParDo(_Collect(name)))
  assert sorted(_SINK.pop(name)) == [(topic, 0, 5), (topic, 0, 10),
                                     (topic, 1, 3)]
  assert kafka_cluster.committed(group, topic) == {0: 10, 1: 3}


class _RefusingConsumer:
  """Commits like a broker that no longer has some topics (deleted): the whole request fails."""

  def __init__(self, missing):
    self.missing = set(missing)
    self.committed = {}
    self.requests = 0

  def commit(self, offsets, asynchronous):
    from confluent_kafka import KafkaError, KafkaException
    assert asynchronous is False
    self.requests += 1
    if any(tp.topic in self.missing for tp in offsets):
      raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    self.committed.update({(tp.topic, tp.partition): tp.offset for tp in offsets})


def _trackers(positions):
  from transforms.kafka.offsets import OffsetTracker
  trackers = {}
  for key, committed in positions.items():
    trackers[key] = OffsetTracker()
    trackers[key].committed = committed
  return trackers


def test_the_final_commit_of_the_other_topics_survives_a_deleted_one():
  from transforms.kafka.progress import _commit_all  # pylint: disable=import-outside-toplevel
  consumer = _RefusingConsumer(['gone'])
  failed = _commit_all(consumer, _trackers({('a', 0): 5, ('a', 1): 7, ('gone', 0): 3,
                                            ('b', 0): 9}))
  assert consumer.committed == {('a', 0): 5, ('a', 1): 7, ('b', 0): 9}
  assert [topic for topic, _ in failed] == ['gone']
  assert 'UNKNOWN_TOPIC_OR_PART' in str(failed[0][1])
  assert consumer.requests == 4  # all at once, then one per topic


def test_the_final_commit_of_a_single_topic_raises_its_failure():
  from confluent_kafka import KafkaException
  from transforms.kafka.progress import _commit_all  # pylint: disable=import-outside-toplevel
  with pytest.raises(KafkaException):
    _commit_all(_RefusingConsumer(['gone']), _trackers({('gone', 0): 3, ('gone', 1): 4}))
  consumer = _RefusingConsumer([])
  assert _commit_all(consumer, _trackers({('a', 0): 1, ('a', 1): None})) == []
  assert consumer.committed == {('a', 0): 1} and consumer.requests == 1


def _wait_for(condition, what, timeout_secs=30.0):
  import time  # pylint: disable=import-outside-toplevel
  deadline = time.monotonic() + timeout_secs
  while not condition():
    assert time.monotonic() < deadline, f'timed out waiting for: {what}'
    time.sleep(0.01)


def test_a_refused_commit_is_sent_again_though_the_partition_moves_no_more(monkeypatch):
  """The group coordinator refuses the commits of a partition's last advance (it moved after a
  broker failure): the offset still reaches Kafka, with nothing read or loaded after it, and
  before the job closes (a streaming job's lag would otherwise stay above zero)."""
  from devtools.local_kafka import KafkaCluster  # pylint: disable=import-outside-toplevel
  from transforms.kafka.progress import PartitionProgress  # pylint: disable=import-outside-toplevel
  from transforms.kafka import progress as module  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(module, '_RETRY_SECS', (0.05,), raising=False)  # what, not when
  cluster = KafkaCluster(restartable=True)
  progress = None
  try:
    topic = cluster.unique_topic()
    cluster.produce(topic, values_of(20))
    group = f'g-{uuid.uuid4().hex[:8]}'
    progress = PartitionProgress(cluster.consumer_config(group))
    progress.start(topic, 0, 0)
    assert progress.add_chunk(topic, 0, 0, 3, 3) is None
    assert progress.ack(topic, 0, (0, 1, 2)) == 3
    _wait_for(lambda: cluster.committed(group, topic) == {0: 3}, 'the first commit')
    # OffsetCommit (API key 8) answers COORDINATOR_NOT_AVAILABLE (15), then NOT_COORDINATOR (16).
    cluster.fail_requests(8, [15, 16] * 5)
    assert progress.add_chunk(topic, 0, 3, 5, 2) is None
    assert progress.ack(topic, 0, (3, 4)) == 5
    _wait_for(lambda: cluster.committed(group, topic) == {0: 5}, 'the refused commit sent again')
  finally:
    if progress is not None:
      progress.close()
    cluster.close()


class _FlakyConsumer(_RefusingConsumer):
  """Refuses the deleted topics always, and the first ``failures`` requests holding ``flaky``."""

  def __init__(self, missing, flaky, failures):
    super().__init__(missing)
    self.flaky, self.failures = flaky, failures

  def commit(self, offsets, asynchronous):
    from confluent_kafka import KafkaError, KafkaException
    if self.failures and any(tp.topic == self.flaky for tp in offsets):
      self.failures -= 1
      self.requests += 1
      raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))
    return super().commit(offsets, asynchronous)


def test_the_committer_sends_a_refused_topic_again_and_gives_up_on_a_deleted_one(monkeypatch):
  from transforms.kafka import progress  # pylint: disable=import-outside-toplevel
  consumer = _FlakyConsumer(missing=['gone'], flaky='moving', failures=3)
  monkeypatch.setattr(progress, '_RETRY_SECS', (0.01,))
  committer = progress._Committer({}, None)  # pylint: disable=protected-access
  monkeypatch.setattr(committer, '_client', lambda: consumer)
  for topic, position in (('a', 5), ('gone', 3), ('moving', 7)):
    committer.submit(topic, 0, position)
  _wait_for(lambda: consumer.committed == {('a', 0): 5, ('moving', 0): 7} and
            not committer._pending and consumer.failures == 0,  # pylint: disable=protected-access
            'the refused topic committed, the deleted one dropped')
  requests = consumer.requests
  committer.submit('a', 0, 6)  # the thread goes on; the deleted topic is not sent again
  _wait_for(lambda: consumer.committed[('a', 0)] == 6, 'the next commit')
  assert consumer.requests == requests + 1
  monkeypatch.setattr(committer, '_client', lambda: _RefusingConsumer([]))
  committer.close({})


def test_a_refused_commit_is_not_sent_again_once_a_newer_one_landed(monkeypatch):
  """A drain commits a partition from its own thread while the committer's older offset is
  refused: sent again, the older one would take the group's offset back."""
  from transforms.kafka import progress  # pylint: disable=import-outside-toplevel
  consumer = _FlakyConsumer(missing=[], flaky='t', failures=1)
  committer = progress._Committer({}, None)  # pylint: disable=protected-access
  monkeypatch.setattr(committer, '_client', lambda: consumer)
  retry, _ = committer._send({('t', 0): 5})  # pylint: disable=protected-access
  assert retry == {('t', 0): 5}
  committer.commit_now('t', 0, 9)
  committer._requeue({('t', 0): 5})  # pylint: disable=protected-access
  assert committer._pending == {}  # pylint: disable=protected-access
  assert consumer.committed == {('t', 0): 9}
