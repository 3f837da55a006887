"""--kafka_reader=xlang: Beam's Java KafkaIO, checked without Java.

There is no JVM here, so the cross-language transform is never expanded:
these tests check the arguments it is built with and the mapping of its
output rows to ``KafkaRecord``.
"""

import apache_beam as beam
import pytest
from apache_beam.coders import RowCoder
from apache_beam.io.kafka import ReadFromKafka as JavaReadFromKafka
from apache_beam.portability.api import external_transforms_pb2

from transforms.kafka import KafkaConfigError, ReadKafkaChunksXlang
from transforms.kafka.xlang import record_of_java_row, single_record_chunk
from transforms.types import KafkaRecord


def _payload_row(transform):
  payload = external_transforms_pb2.ExternalConfigurationPayload.FromString(
      transform._payload)
  return RowCoder(payload.schema).decode(payload.payload)


def test_builds_java_kafkaio_with_metadata_and_string_config():
  reader = ReadKafkaChunksXlang(
      {'bootstrap.servers': 'broker:9092', 'group.id': 'g',
       'session.timeout.ms': 10000, 'enable.auto.commit': False},
      ['orders', 'users'], max_num_records=10,
      expansion_service='localhost:8097')
  read = reader.read
  assert isinstance(read, JavaReadFromKafka)
  assert read._urn == JavaReadFromKafka.URN_WITH_METADATA
  assert read._expansion_service == 'localhost:8097'
  row = _payload_row(read)
  assert dict(row.consumer_config) == {
      'bootstrap.servers': 'broker:9092', 'group.id': 'g',
      'session.timeout.ms': '10000', 'enable.auto.commit': 'false',
      'isolation.level': 'read_committed'}  # Java's default would read aborted transactions
  assert list(row.topics) == ['orders', 'users']
  assert row.max_num_records == 10
  assert row.commit_offset_in_finalize is False
  assert row.timestamp_policy == 'CreateTime'


def test_stop_at_end_is_refused():
  with pytest.raises(KafkaConfigError, match='stop_at_end'):
    ReadKafkaChunksXlang({'bootstrap.servers': 'b:1', 'group.id': 'g'}, ['t'], stop_at_end=True)


def test_java_rows_map_to_kafka_records():
  header = beam.Row(key='h', value=b'1')
  row = beam.Row(topic='t', partition=2, offset=7, timestamp=1234,
                 timestampTypeId=0, timestampTypeName='CreateTime',
                 key=b'k', value=b'v', headers=[header])
  assert record_of_java_row(row) == KafkaRecord(
      't', 2, 7, b'k', b'v', 1234, (('h', b'1'),))


def test_records_become_one_record_chunks():
  record = KafkaRecord('orders', 1, 41, None, b'v', 5, None)
  chunk = single_record_chunk(record)
  assert (chunk.topic, chunk.partition, chunk.first_offset, chunk.next_offset,
          chunk.records) == ('orders', 1, 41, 42, [record])
