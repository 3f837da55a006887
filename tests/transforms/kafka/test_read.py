"""ReadKafkaChunks / ReadFromKafka on the FnApiRunner against the mock cluster."""

import collections
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from tests.fixtures.kafka import values_of
from transforms import kafka
from transforms.types import KafkaChunk, KafkaRecord
import pytest

pytestmark = pytest.mark.transform


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


def test_record_fields_round_trip(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, [b'value'], keys=[b'key'], partition=2,
                        timestamps_ms=[1_700_000_000_123],
                        headers=[('h1', b'x'), ('h2', None)])
  name = uuid.uuid4().hex
  with _pipeline() as p:
    _ = (p | kafka.ReadFromKafka(kafka_cluster.consumer_config(), [topic],
                                 stop_at_end=True)
         | beam.Map(lambda r, ts=beam.DoFn.TimestampParam: (r, ts))
         | beam.ParDo(_Collect(name)))
  [(record, ts)] = _Collect.SINKS.pop(name)
  assert record == KafkaRecord(topic, 2, 0, b'key', b'value',
                               1_700_000_000_123,
                               (('h1', b'x'), ('h2', None)))
  assert ts.micros == 1_700_000_000_123_000


def test_reads_only_the_given_partitions(kafka_cluster):
  topic_a = kafka_cluster.unique_topic()
  topic_b = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic_a, values_of(40, 'a'))
  kafka_cluster.produce(topic_b, values_of(40, 'b'))
  with _pipeline() as p:
    records = p | kafka.ReadFromKafka(
        kafka_cluster.consumer_config(), [topic_a, topic_b],
        partitions=[(topic_a, 1), (topic_b, 3)], stop_at_end=True)
    assert_that(
        records | beam.Map(lambda r: (r.topic, r.partition)) | beam.Distinct(),
        equal_to([(topic_a, 1), (topic_b, 3)]))


def test_latest_without_committed_offsets_skips_existing_records(
    kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, values_of(40))
  config = kafka_cluster.consumer_config()
  config['auto.offset.reset'] = 'latest'
  with _pipeline() as p:
    records = p | kafka.ReadFromKafka(config, [topic], stop_at_end=True)
    assert_that(records, equal_to([]))


def test_streaming_option_on_the_fnapi_runner(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  values = values_of(100)
  kafka_cluster.produce(topic, values)
  with _pipeline(streaming=True) as p:
    records = p | kafka.ReadFromKafka(kafka_cluster.consumer_config(),
                                      [topic], stop_after_secs=1)
    assert_that(records | beam.Map(lambda r: r.value), equal_to(values))
