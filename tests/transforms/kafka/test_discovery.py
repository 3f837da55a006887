"""Topic patterns and new partitions: selection, diffing, the discovery loop with fake clients."""

from __future__ import annotations

import logging
import types
import uuid

import pytest
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners import sdf_utils
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from transforms import kafka
from transforms.delivery import DEFAULT_JOURNAL_TOPIC as JOURNAL_DEFAULT
from transforms.kafka import consumers, discovery, watch_fn
from transforms.kafka.discovery import Discovery, WatchRestriction, WatchTracker, shard_of
from transforms.kafka.partitions import WatchSpec
from transforms.runtime import RunContext, acquire, release
from transforms.kafka.topics import TopicSelector, is_internal_topic, new_partitions

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- pure parts


def test_a_pattern_must_match_the_whole_topic_name():
  selector = TopicSelector(pattern=r'orders_[a-z]+')
  assert selector.matches('orders_eu')
  assert not selector.matches('orders_eu2')      # fullmatch: no trailing extra
  assert not selector.matches('old_orders_eu')   # nor leading
  assert not selector.matches('orders_')
  assert selector.select(['orders_us', 'x', 'orders_eu', 'orders_eu']) == ['orders_eu', 'orders_us']


@pytest.mark.parametrize('topic', ['__consumer_offsets', '__transaction_state', '__share_group_state',
                                   '__anything', 'stream_load_journal', 'my_journal', '_schemas',
                                   '_confluent-metrics'])
def test_a_pattern_never_matches_internal_topics_nor_the_journal(topic):
  selector = TopicSelector(pattern='.*', excluded=('stream_load_journal', 'my_journal'))
  assert not selector.matches(topic)
  assert selector.matches('orders')
  assert selector.matches('_orders')  # one underscore is an ordinary name


def test_the_default_exclusion_is_the_journals_default_topic():
  assert TopicSelector(pattern='.*').excluded == frozenset([JOURNAL_DEFAULT])
  assert not TopicSelector(pattern='stream_.*').matches('stream_load_journal')


def test_exact_topic_names_are_read_as_given():
  selector = TopicSelector(topics=['a', '__odd'])
  assert selector.matches('a') and selector.matches('__odd')
  assert not selector.matches('b')
  assert not selector.is_pattern


def test_internal_topics():
  assert is_internal_topic('__consumer_offsets')
  assert not is_internal_topic('orders')
  assert not is_internal_topic('_orders')


@pytest.mark.parametrize('kwargs', [{}, {'topics': ['a'], 'pattern': 'a'}, {'pattern': '('}])
def test_a_selector_needs_exactly_one_valid_choice(kwargs):
  with pytest.raises(ValueError):
    TopicSelector(**kwargs)


def test_new_partitions_are_the_ones_not_known_yet():
  known = {('a', 0), ('a', 1), ('gone', 0)}
  current = {'a': [0, 1, 2, 3], 'b': [1, 0]}
  assert new_partitions(current, known) == [('a', 2), ('a', 3), ('b', 0), ('b', 1)]
  assert new_partitions({'a': [0, 1]}, known) == []


def test_the_watch_tracker_checkpoints_its_state_and_refuses_claims_after():
  tracker = WatchTracker(WatchRestriction(frozenset([('a', 0)])))
  state = WatchRestriction(frozenset([('a', 0), ('b', 0)]), (('b', 0, 7),), 12.0)
  assert tracker.try_claim(state)
  with pytest.raises(ValueError):
    tracker.check_done()  # neither finished nor deferred
  primary, residual = tracker.try_split(0)
  assert residual == state
  assert primary.done
  assert not tracker.try_claim(state._replace(next_check_epoch=13.0))
  tracker.check_done()
  assert tracker.try_split(0) is None
  assert not tracker.is_bounded()


def test_the_watch_tracker_does_not_split_dynamically():
  tracker = WatchTracker(WatchRestriction(frozenset()))
  assert tracker.try_split(0.5) is None


@pytest.mark.parametrize('kwargs, match', [
    ({'topics': ['a'], 'topic_pattern': 'a.*'}, 'not both'),
    ({'topic_pattern': '('}, 'not a regular expression'),
    ({'topic_pattern': 'a.*', 'partitions': [0]}, 'partitions'),
    ({'topic_pattern': 'a.*', 'discovery_interval_secs': 0}, 'discovery_interval_secs'),
])
def test_bad_pattern_arguments_are_config_errors(kwargs, match):
  with pytest.raises(kafka.KafkaConfigError, match=match):
    kafka.ReadKafkaChunks({'group.id': 'g', 'bootstrap.servers': 'b:9092'}, **kwargs)


# ---------------------------------------------------------- fake Kafka clients


class _Md:
  """``list_topics()``'s answer for {topic: partition count}."""

  def __init__(self, counts):
    self.topics = {t: types.SimpleNamespace(error=None, partitions=dict.fromkeys(range(n)))
                   for t, n in counts.items()}


class _Msg:

  def __init__(self, topic, partition, offset, err=None):
    self._t, self._p, self._o, self._err = topic, partition, offset, err

  def error(self):
    return self._err

  def topic(self):
    return self._t

  def partition(self):
    return self._p

  def offset(self):
    return self._o

  def key(self):
    return None

  def value(self):
    return f'{self._t}-{self._p}-{self._o}'.encode()

  def timestamp(self):
    return (1, 1000 + self._o)

  def headers(self):
    return None


class _Cluster:
  """Topics as {topic: {partition: (low, high)}}, committed offsets, and the clients made."""

  def __init__(self, partitions, committed=None):
    self.partitions = partitions
    self.committed = committed or {}
    self.metadata_requests = 0
    self.fail_metadata = False
    self.readers = []

  def consumer(self, config, **overrides):
    if 'enable.partition.eof' in overrides:
      consumer = _PartitionConsumer(self, overrides)
      self.readers.append(consumer)
      return consumer
    return _MetadataConsumer(self)


class _MetadataConsumer:

  def __init__(self, cluster):
    self._cluster = cluster

  def list_topics(self, topic=None, timeout=None):
    self._cluster.metadata_requests += 1
    if self._cluster.fail_metadata:
      raise KafkaException(KafkaError(KafkaError._TRANSPORT))
    return _Md({t: len(ps) for t, ps in self._cluster.partitions.items()})

  def committed(self, tps, timeout=None):
    return [TopicPartition(tp.topic, tp.partition,
                           self._cluster.committed.get((tp.topic, tp.partition), -1001))
            for tp in tps]

  def get_watermark_offsets(self, tp, timeout=None, cached=False):
    return self._cluster.partitions[tp.topic][tp.partition]

  def close(self):
    pass


class _PartitionConsumer(_MetadataConsumer):
  """The reader's consumer: every offset in [low, high) of an assigned partition is a record,
  then end of partition; partitions are served in turn."""

  def __init__(self, cluster, overrides):
    super().__init__(cluster)
    self.overrides = overrides
    self.positions = {}  # (topic, partition) -> [next offset, eof sent]

  def incremental_assign(self, tps):
    for tp in tps:
      self.positions[(tp.topic, tp.partition)] = [tp.offset, False]

  def incremental_unassign(self, tps):
    for tp in tps:
      self.positions.pop((tp.topic, tp.partition), None)

  def _next(self):
    for (topic, partition), state in self.positions.items():
      _, high = self._cluster.partitions[topic][partition]
      if state[0] < high:
        state[0] += 1
        return _Msg(topic, partition, state[0] - 1)
      if not state[1]:
        state[1] = True
        return _Msg(topic, partition, high, KafkaError(KafkaError._PARTITION_EOF))
    return None

  def consume(self, n, timeout):
    out = []
    while len(out) < n and (m := self._next()) is not None:
      out.append(m)
    return out

  def poll(self, timeout):
    return self._next()


def _watch_fn(monkeypatch, cluster, selector, context=None, interval=60.0):
  monkeypatch.setattr(consumers, 'new_consumer', cluster.consumer)
  monkeypatch.setattr(watch_fn, 'new_consumer', cluster.consumer)
  fn = watch_fn.ReadUnboundedFn(
      {'group.id': 'g', 'bootstrap.servers': 'fake:9092'}, 1000, 0.01, 5.0, 100000,
      context or RunContext(), False, discovery=Discovery(selector, interval, 1.0))
  fn.setup()
  return fn


def _turn(fn, spec, restriction, watermark=None):
  """One process() call of the loop's element; returns (records, residual or None, tracker)."""
  fn.start_bundle()
  tracker = sdf_utils.ThreadsafeRestrictionTracker(WatchTracker(restriction))
  out = list(fn.process(spec, sdf_utils.RestrictionTrackerView(tracker),
                        ManualWatermarkEstimator(watermark)))
  tracker.check_done()
  status = tracker.deferred_status()
  records = [r.value.decode() for tv in out for r in tv.value.records]
  return records, (status[0] if status else None), tracker


def test_the_loop_reads_a_new_topic_from_the_earliest_offset_and_resumes_there(
    monkeypatch, caplog):
  context = RunContext()
  runtime = acquire(context)
  cluster = _Cluster({'orders_a': {0: (0, 2)}, 'other': {0: (0, 5)}})
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(pattern='orders_.*'), context)
  spec = WatchSpec((('orders_a', 0),), None)
  initial = WatchRestriction(frozenset(spec.known))

  records, residual, _ = _turn(fn, spec, initial)
  assert records == []  # nothing new: orders_a[0] is read by its own element
  assert residual.late == () and residual.known == initial.known

  # A topic appears, records already in it (low 3: the first offsets are gone).
  cluster.partitions['orders_b'] = {0: (3, 6), 1: (0, 1)}
  with caplog.at_level(logging.INFO, logger='transforms.kafka.discovery'):
    records, residual, _ = _turn(fn, spec, residual._replace(next_check_epoch=0))
  assert sorted(records) == ['orders_b-0-3', 'orders_b-0-4', 'orders_b-0-5', 'orders_b-1-0']
  assert residual.late == (('orders_b', 0, 6), ('orders_b', 1, 1))
  assert residual.known == {('orders_a', 0), ('orders_b', 0), ('orders_b', 1)}
  lines = [r.getMessage() for r in caplog.records if 'Discovered' in r.getMessage()]
  assert len(lines) == 1 and 'topic orders_b' in lines[0] and '[0]@3 (lag 3)' in lines[0], lines
  assert not runtime.sources.finished()  # the found partitions are part of the read now

  # More records arrive; the next turn reads on from the recorded positions, no new lookup.
  cluster.partitions['orders_b'][0] = (3, 8)
  requests = cluster.metadata_requests
  records, residual, _ = _turn(fn, spec, residual)
  assert records == ['orders_b-0-6', 'orders_b-0-7']
  assert cluster.metadata_requests == requests  # the interval (60 s) has not passed
  assert residual.late == (('orders_b', 0, 8), ('orders_b', 1, 1))
  release(runtime)


def test_a_committed_offset_wins_over_earliest_and_new_partitions_of_a_known_topic(
    monkeypatch, caplog):
  cluster = _Cluster({'t': {0: (0, 4)}}, committed={('t', 1): 5})
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(topics=['t']))
  spec = WatchSpec((('t', 0),), None)
  cluster.partitions['t'][1] = (0, 7)   # a partition added to a read topic
  with caplog.at_level(logging.INFO, logger='transforms.kafka.discovery'):
    records, residual, _ = _turn(fn, spec, WatchRestriction(frozenset(spec.known)))
  assert records == ['t-1-5', 't-1-6']
  assert residual.late == (('t', 1, 7),)
  assert any('1 new partition(s) of topic t' in r.getMessage() for r in caplog.records)


def test_every_partition_a_process_reads_shares_one_consumer_and_one_prefetch_budget(
    monkeypatch):
  cluster = _Cluster({'t': {p: (0, 3) for p in range(40)}})
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(topics=['t']))
  spec = WatchSpec(tuple(('t', p) for p in range(8)), None)
  records, _, _ = _turn(fn, spec, WatchRestriction(frozenset(spec.known)))
  # The 32 partitions found late are read here (the first 8 by their own elements).
  assert sorted(records) == sorted(f't-{p}-{o}' for p in range(8, 40) for o in range(3))
  # One librdkafka client for the 32 partitions, not one each: 16 MiB of prefetch in all.
  assert len(cluster.readers) == 1
  overrides = cluster.readers[0].overrides
  assert overrides['queued.max.messages.kbytes'] == 16 * 1024
  assert overrides['fetch.max.bytes'] == 8 * 1024 * 1024


def test_a_failed_lookup_is_retried_at_the_next_interval_and_the_loop_goes_on(
    monkeypatch, caplog):
  cluster = _Cluster({'t': {0: (0, 1)}})
  cluster.fail_metadata = True
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(topics=['t']), interval=60.0)
  spec = WatchSpec((), None)
  with caplog.at_level(logging.WARNING, logger='transforms.kafka.discovery'):
    records, residual, _ = _turn(fn, spec, WatchRestriction(frozenset()))
  assert records == [] and residual is not None and residual.late == ()
  assert residual.next_check_epoch > 0
  assert any('failed' in r.getMessage() for r in caplog.records)


def test_a_stop_ends_the_loop_and_reports_its_partitions_done(monkeypatch):
  context = RunContext()
  runtime = acquire(context)
  cluster = _Cluster({'t': {0: (0, 1), 1: (0, 0)}})
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(topics=['t']), context)
  spec = WatchSpec((('t', 0),), None)
  _, residual, _ = _turn(fn, spec, WatchRestriction(frozenset(spec.known)))
  assert residual.late == (('t', 1, 0),)
  runtime.sources.ended(('t', 0))  # its own element ended
  assert not runtime.sources.finished()  # t[1] (found) and the loop are still running
  runtime.request_stop('test')
  records, residual, tracker = _turn(fn, spec, residual)
  assert records == [] and residual is None  # finished, not deferred
  assert tracker.current_restriction().done
  assert runtime.sources.finished()
  release(runtime)


def test_partitions_found_while_running_are_spread_over_the_loops(monkeypatch):
  cluster = _Cluster({'t': {p: (0, 1) for p in range(64)}})
  read_by = {}
  for shard in range(4):
    fn = _watch_fn(monkeypatch, cluster, TopicSelector(topics=['t']))
    spec = WatchSpec((), None, shard, 4)
    records, residual, _ = _turn(fn, spec, WatchRestriction(frozenset()))
    for topic, partition, _ in residual.late:
      read_by.setdefault((topic, partition), []).append(shard)
    assert sorted(records) == sorted(f't-{p}-0' for t, p, _ in residual.late)
  # Every partition is read by exactly one loop, the one it hashes to, and every loop reads some.
  assert sorted(read_by) == [('t', p) for p in range(64)]
  assert all(shards == [shard_of('t', p, 4)] for (_, p), shards in read_by.items())
  assert {shard for shards in read_by.values() for shard in shards} == {0, 1, 2, 3}


def test_the_loop_ends_at_stop_after_secs(monkeypatch):
  cluster = _Cluster({'t': {0: (0, 1)}})
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(topics=['t']))
  spec = WatchSpec((), 1.0)  # a wall time long past
  records, residual, _ = _turn(fn, spec, WatchRestriction(frozenset()))
  assert records == [] and residual is None
  assert cluster.metadata_requests == 0


def test_discover_reports_the_lag_of_found_partitions():
  from transforms import metrics
  cluster = _Cluster({'lagged': {0: (2, 9)}})
  found, _ = discovery.check_topics(_MetadataConsumer(cluster), {'group.id': 'g'},
                                    Discovery(TopicSelector(topics=['lagged']), 1.0, 1.0),
                                    frozenset())
  assert found == [discovery.FoundPartition('lagged', 0, 2, 9)]
  assert metrics.KAFKA_LAG.labels('lagged', '0')._value.get() == 7  # pylint: disable=protected-access


def test_a_deleted_topic_is_reported_once_when_it_goes_and_once_when_it_comes_back(
    monkeypatch, caplog):
  """The loop's state remembers the topics gone at the last check: one WARNING when a topic
  it read disappears, none at the next checks, one when a topic of that name is back."""
  cluster = _Cluster({'kept': {0: (0, 0)}, 'doomed': {0: (0, 0)}})
  fn = _watch_fn(monkeypatch, cluster, TopicSelector(pattern='kept|doomed'), interval=0.0)
  spec = WatchSpec((('kept', 0), ('doomed', 0)), None)
  caplog.set_level(logging.INFO, logger='transforms.kafka.discovery')
  state = WatchRestriction(frozenset(spec.known))

  def turn(state):
    _, residual, _ = _turn(fn, spec, state)
    return residual

  state = turn(state)
  assert state.gone == frozenset() and not caplog.records
  del cluster.partitions['doomed']
  for _ in range(3):
    state = turn(state)
  assert state.gone == frozenset(['doomed'])
  cluster.partitions['doomed'] = {0: (0, 0)}
  state = turn(state)
  assert state.gone == frozenset()
  lines = [(r.levelname, r.getMessage()) for r in caplog.records]
  assert [level for level, _ in lines] == ['WARNING', 'WARNING'], lines
  assert lines[0][1].startswith('Topic doomed is no longer on fake:9092 (deleted?)')
  assert lines[1][1].startswith('Topic doomed is back on fake:9092')
  assert cluster.metadata_requests == 5

