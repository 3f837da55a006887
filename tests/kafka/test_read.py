"""ReadKafkaChunks / ReadFromKafka on the FnApiRunner against the mock cluster."""

import collections
import threading
import time
import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tests.fixtures.kafka import values_of
from transforms import kafka
from transforms.types import KafkaChunk, KafkaRecord


def _pipeline(streaming=False):
  return beam.Pipeline(runner=FnApiRunner(),
                       options=PipelineOptions(streaming=streaming))


class _Collect(beam.DoFn):
  """Stores outputs in a process-wide dict (the FnApiRunner runs in-process)."""
  SINKS = collections.defaultdict(list)

  def __init__(self, name):
    self._name = name

  def process(self, element):
    self.SINKS[self._name].append(element)


def test_bounded_read_gets_every_record_exactly_once(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  values = values_of(2000)
  kafka_cluster.produce(topic, values)
  config = kafka_cluster.consumer_config()
  with _pipeline() as p:
    records = p | kafka.ReadFromKafka(config, [topic], stop_at_end=True,
                                      max_chunk_records=100)
    assert_that(records | beam.Map(lambda r: r.value), equal_to(values))
    assert_that(
        records | 'Partitions' >> beam.Map(lambda r: r.partition)
        | beam.Distinct(), equal_to([0, 1, 2, 3]), label='AllPartitions')


def test_chunks_are_contiguous_and_bounded_in_size(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, values_of(1000))
  name = uuid.uuid4().hex
  with _pipeline() as p:
    _ = (p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(), [topic],
                                   stop_at_end=True, max_chunk_records=50)
         | beam.ParDo(_Collect(name)))
  chunks = _Collect.SINKS.pop(name)
  by_partition = collections.defaultdict(list)
  for chunk in chunks:
    assert isinstance(chunk, KafkaChunk)
    assert 0 < len(chunk.records) <= 50
    assert [r.offset for r in chunk.records] == list(
        range(chunk.first_offset, chunk.next_offset))
    by_partition[chunk.partition].append(chunk)
  for partition, cs in by_partition.items():
    cs.sort(key=lambda c: c.first_offset)
    assert cs[0].first_offset == 0
    assert cs[-1].next_offset == 250
    for a, b in zip(cs, cs[1:]):
      assert a.next_offset == b.first_offset
