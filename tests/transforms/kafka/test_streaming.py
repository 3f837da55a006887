"""An unbounded read keeps emitting records produced while the pipeline runs."""

import collections
import threading
import time
import uuid
from typing import Tuple

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.fixtures.kafka import values_of
from transforms import kafka
from transforms.runtime import RunContext, acquire, release
from transforms.types import OffsetAck
import pytest

pytestmark = pytest.mark.transform

_SEEN = collections.defaultdict(list)


class _Collect(beam.DoFn):

  def __init__(self, name):
    self._name = name

  def process(self, element):
    _SEEN[self._name].append(element)  # a module global: not pickled


def _wait_for(condition, timeout_secs, what):
  deadline = time.monotonic() + timeout_secs
  while not condition():
    if time.monotonic() > deadline:
      raise AssertionError(f'timed out after {timeout_secs}s waiting for {what}')
    time.sleep(0.05)


def test_streaming_read_emits_records_produced_while_running(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  name = uuid.uuid4().hex
  context = RunContext()
  runtime = acquire(context)
  config = kafka_cluster.consumer_config()
  old_ms = int(time.time() * 1000) - 600_000  # ten minutes ago
  first = values_of(400, 'before')
  kafka_cluster.produce(topic, first, timestamps_ms=[old_ms] * len(first))

  pipeline = beam.Pipeline(runner=FnApiRunner())
  records = pipeline | kafka.ReadFromKafka(config, [topic], context=context)
  # Through GroupIntoBatches, like the real pipeline: its time-limit flushes
  # must fire while the read is still running.  (Behind a GroupByKey or
  # Reshuffle the FnApiRunner hands data on only when the read finishes.)
  _ = (records
       | 'Key' >> beam.Map(lambda r: (r.partition, r.value)).with_output_types(
           Tuple[int, bytes])
       | beam.GroupIntoBatches(100000, max_buffering_duration_secs=0.2)
       | 'Values' >> beam.FlatMap(lambda kv: kv[1])
       | 'Seen' >> beam.ParDo(_Collect(name)))

  errors = []

  def run():
    try:
      pipeline.run().wait_until_finish()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  try:
    _wait_for(lambda: len(_SEEN[name]) >= len(first) or errors, 30,
              'the records produced before start')
    assert not errors, errors
    second = values_of(300, 'after')
    kafka_cluster.produce(topic, second)
    _wait_for(lambda: len(_SEEN[name]) >= len(first) + len(second) or errors,
              30, 'the records produced while running')
    assert thread.is_alive(), 'the unbounded read finished by itself'
  finally:
    runtime.request_stop('test')
    thread.join(60)
    release(runtime)
  assert not thread.is_alive(), 'request_stop did not end the pipeline'
  assert not errors, errors
  assert sorted(_SEEN.pop(name)) == sorted(first + second)


def test_stop_after_secs_ends_an_unbounded_read(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, values_of(100))
  started = time.monotonic()
  with beam.Pipeline(runner=FnApiRunner()) as p:
    _ = p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(), [topic],
                                  stop_after_secs=1.5)
  assert 1.5 <= time.monotonic() - started < 20


def _ack_all(chunk):
  yield OffsetAck(chunk.topic, chunk.partition,
                        tuple(r.offset for r in chunk.records))


def test_offsets_are_committed_while_the_read_runs(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  context = RunContext()
  runtime = acquire(context)
  group = f'g-{uuid.uuid4().hex[:8]}'
  config = kafka_cluster.consumer_config(group)
  kafka_cluster.produce(topic, values_of(200, 'a'))

  pipeline = beam.Pipeline(runner=FnApiRunner())
  chunks = pipeline | kafka.ReadKafkaChunks(config, [topic], context=context, durable=True)
  # A tuple, not a Flatten: on the FnApiRunner a Flatten's output would only
  # be handed on when the read ends (see CommitOffsets).
  _ = ((chunks | 'Reads' >> beam.Map(kafka.chunk_read_of),
        chunks | 'Acks' >> beam.FlatMap(_ack_all))
       | kafka.CommitOffsets(config, context=context))
  thread = threading.Thread(target=lambda: pipeline.run().wait_until_finish(),
                            daemon=True)
  thread.start()
  try:
    _wait_for(lambda: kafka_cluster.committed(group, topic) == {
        0: 50, 1: 50, 2: 50, 3: 50}, 30, 'the first commits')
    kafka_cluster.produce(topic, values_of(100, 'b'))
    _wait_for(lambda: kafka_cluster.committed(group, topic) == {
        0: 75, 1: 75, 2: 75, 3: 75}, 30, 'commits of records produced later')
    assert thread.is_alive()
  finally:
    runtime.request_stop('test')
    thread.join(60)
    release(runtime)
  assert not thread.is_alive()
