"""ParseRecords with --format=avro on the DirectRunner: rows, dead letters by reason, counters."""

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.transforms.records.registry_helpers import avro_serializer, mock_url
from transforms.records import ParseRecords, Routing, ValueFormat
from transforms.types import ChunkRead, KafkaChunk, KafkaRecord

pytestmark = pytest.mark.transform


def test_parse_records_decodes_avro_and_counts_registry_dead_letters():
  url = mock_url('transform')
  schema = {'type': 'record', 'name': 'E', 'fields': [{'name': 'id', 'type': 'long'}]}
  serialize = avro_serializer(url, schema)
  values = [serialize({'id': 1}), b'\x00\x00\x00\x03\xe7\x02', b'\x00\x00\x00\x00\x01',
            b'not avro', serialize({'id': 2})]
  records = [KafkaRecord('t', 0, i, None, v, 0) for i, v in enumerate(values)]
  with test_pipeline.TestPipeline() as p:
    result = (p | beam.Create([KafkaChunk('t', 0, 0, 5, records)])
              | ParseRecords(Routing(table='db.t'), value_format=ValueFormat('avro', {'url': url})))
    rows = result.rows | beam.Map(lambda kv: (kv[0], [(r.offset, r.fields, r.raw) for r in kv[1]]))
    assert_that(rows, equal_to([('db.t', [(0, {'id': 1}, b'{"id":1}'), (4, {'id': 2}, b'{"id":2}')])]))
    reasons = result.dead_letters | beam.Map(lambda d: (d.offset, d.reason.split(':')[0]))
    assert_that(reasons, equal_to([(1, 'unknown_schema'), (2, 'undecodable'),
                                   (3, 'bad_wire_format')]), label='CheckDeadLetters')
    assert_that(result.chunk_reads, equal_to([ChunkRead('t', 0, 0, 5, 5)]),
                label='CheckChunkReads')
  counters = {r.key.metric.name: r.committed
              for r in p.result.metrics().query()['counters']}
  assert counters['dead_letters'] == 3
  assert counters['dead_letters_unknown_schema'] == 1
  assert counters['dead_letters_undecodable'] == 1
  assert counters['dead_letters_bad_wire_format'] == 1
  assert counters['rows_parsed'] == 2


def test_display_data_names_the_format_and_registry_without_credentials():
  transform = ParseRecords(Routing(table='db.t'), value_format=ValueFormat(
      'protobuf', {'url': 'https://u:secret@registry:8081'}))
  data = transform.display_data()
  assert data['format'] == 'protobuf'
  assert data['schema_registry_url'] == 'https://registry:8081'
