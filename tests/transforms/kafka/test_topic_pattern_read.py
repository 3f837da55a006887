"""``ReadKafkaChunks(topic_pattern=...)`` on the FnApiRunner against the mock cluster."""

from __future__ import annotations

import collections
import threading
import time
import uuid

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.fixtures.kafka import values_of
from transforms import kafka
from transforms.runtime import RunContext, acquire, release

pytestmark = pytest.mark.transform

_SEEN = collections.defaultdict(list)


class _Collect(beam.DoFn):
  """Stores (topic, value) per record in a module global (the FnApiRunner runs in-process)."""

  def __init__(self, name):
    self._name = name

  def process(self, chunk):
    _SEEN[self._name].extend((r.topic, r.value) for r in chunk.records)


def _wait_for(condition, timeout_secs, what, errors):
  deadline = time.monotonic() + timeout_secs
  while not condition():
    assert not errors, errors
    if time.monotonic() > deadline:
      raise AssertionError(f'timed out after {timeout_secs}s waiting for {what}')
    time.sleep(0.05)


def test_a_bounded_read_reads_exactly_the_matching_topics(kafka_cluster):
  uid = uuid.uuid4().hex[:10]
  wanted = {f'orders_{uid}_eu': values_of(30, 'eu'), f'orders_{uid}_us': values_of(20, 'us')}
  unwanted = {f'orders_{uid}_eu_old': values_of(5, 'old'), f'x_orders_{uid}_eu': values_of(5, 'x'),
              f'__orders_{uid}_internal': values_of(5, 'internal')}
  for topic, values in {**wanted, **unwanted}.items():
    kafka_cluster.produce(topic, values)
  name = uuid.uuid4().hex
  pattern = rf'(__)?orders_{uid}_[a-z]{{2}}(_internal)?'  # would match the internal one
  with beam.Pipeline(runner=FnApiRunner()) as p:
    _ = (p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(), topic_pattern=pattern,
                                   stop_at_end=True)
         | beam.ParDo(_Collect(name)))
  seen = _SEEN.pop(name)
  assert sorted(seen) == sorted((t, v) for t, values in wanted.items() for v in values)


def test_a_bounded_read_whose_pattern_matches_nothing_fails_while_built(kafka_cluster):
  pattern = f'nothing_{uuid.uuid4().hex}.*'
  p = beam.Pipeline(runner=FnApiRunner())
  with pytest.raises(kafka.UnknownTopicError, match='no topic .* matches the topic pattern'):
    _ = p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(), topic_pattern=pattern,
                                  stop_at_end=True)


def _start(kafka_cluster, pattern, context, name, **config):
  p = beam.Pipeline(runner=FnApiRunner())
  _ = (p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(**config), topic_pattern=pattern,
                                 context=context, discovery_interval_secs=0.5)
       | beam.ParDo(_Collect(name)))
  errors = []

  def run():
    try:
      p.run().wait_until_finish()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  return thread, errors


def test_a_streaming_read_picks_up_a_topic_created_while_it_runs(kafka_cluster):
  uid = uuid.uuid4().hex[:10]
  first, late, other = f'ev_{uid}_1', f'ev_{uid}_2', f'evx_{uid}_2'
  kafka_cluster.produce(first, values_of(40, 'first'))
  name, context = uuid.uuid4().hex, RunContext()
  runtime = acquire(context)
  thread, errors = _start(kafka_cluster, rf'ev_{uid}_\d', context, name,
                          **{'auto.offset.reset': 'earliest'})
  try:
    _wait_for(lambda: len(_SEEN[name]) >= 40, 30, 'the first topic', errors)
    kafka_cluster.produce(late, values_of(60, 'late'))
    kafka_cluster.produce(other, values_of(7, 'other'))
    _wait_for(lambda: len(_SEEN[name]) >= 100, 30, 'the topic created while running', errors)
    kafka_cluster.produce(late, values_of(10, 'later'))
    _wait_for(lambda: len(_SEEN[name]) >= 110, 30, 'more records of the new topic', errors)
    assert thread.is_alive(), 'the unbounded read finished by itself'
  finally:
    runtime.request_stop('test')
    thread.join(60)
  assert not thread.is_alive(), 'request_stop did not end the read and its discovery loop'
  assert not errors, errors
  assert runtime.sources.finished()
  release(runtime)
  seen = collections.Counter(_SEEN.pop(name))
  expected = ([(first, v) for v in values_of(40, 'first')] +
              [(late, v) for v in values_of(60, 'late') + values_of(10, 'later')])
  assert seen == collections.Counter(expected)  # exactly once, nothing of evx_


def test_a_streaming_read_waits_for_a_pattern_that_matches_nothing_yet(kafka_cluster, caplog):
  uid = uuid.uuid4().hex[:10]
  topic = f'later_{uid}'
  name, context = uuid.uuid4().hex, RunContext()
  runtime = acquire(context)
  # latest: partitions found at start would skip what is there; found later, they start at 0.
  thread, errors = _start(kafka_cluster, rf'later_{uid}', context, name,
                          **{'auto.offset.reset': 'latest'})
  try:
    # The read started (its start found no topic), so the topic below is found while running.
    _wait_for(lambda: any(r.name == 'transforms.kafka.partitions' and 'yet' in r.getMessage()
                          for r in caplog.records), 30, 'the "nothing matches yet" warning', errors)
    kafka_cluster.produce(topic, values_of(25, 'late'))
    _wait_for(lambda: len(_SEEN[name]) >= 25, 30, 'the topic created while running', errors)
    assert thread.is_alive()
  finally:
    runtime.request_stop('test')
    thread.join(60)
    release(runtime)
  assert not thread.is_alive(), 'request_stop did not end the discovery loop'
  assert not errors, errors
  assert sorted(_SEEN.pop(name)) == sorted((topic, v) for v in values_of(25, 'late'))
