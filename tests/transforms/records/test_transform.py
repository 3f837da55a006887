"""ParseRecords as a Beam transform on the DirectRunner."""

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.transforms.records.helpers import canal, chunk, debezium
from transforms.records import ParseRecords, Routing
from transforms.types import ChunkRead
import pytest

pytestmark = pytest.mark.transform


def test_parse_records_emits_rows_dead_letters_and_chunk_reads():
  chunks = [
      chunk([debezium('c', None, {'id': 1}), b'{oops', None, debezium('d', {'id': 1}, None)],
            topic='cdc', partition=0, first_offset=10),
      chunk([canal('INSERT', [{'id': 2}, {'id': 3}], table='items'),
             debezium('u', None, {'id': 4})], topic='cdc', partition=1, first_offset=0),
  ]
  with test_pipeline.TestPipeline() as p:
    result = p | beam.Create(chunks) | ParseRecords(Routing(), cdc='auto', target='starrocks')
    rows = result.rows | 'Summarize' >> beam.Map(
        lambda kv: (kv[0], [(r.partition, r.offset, r.op, r.fields['id'], r.fields['__op'])
                            for r in kv[1]]))
    assert_that(rows, equal_to([
        ('shop.orders', [(0, 10, 'upsert', 1, 0), (0, 13, 'delete', 1, 1)]),
        ('shop.items', [(1, 0, 'upsert', 2, 0), (1, 0, 'upsert', 3, 0)]),
        ('shop.orders', [(1, 1, 'upsert', 4, 0)]),
    ]))
    dead = result.dead_letters | beam.Map(lambda d: (d.stage, d.reason.split(':')[0], d.topic,
                                                    d.partition, d.offset, d.payload))
    assert_that(dead, equal_to([('parse', 'invalid_json', 'cdc', 0, 11, b'{oops')]),
                label='CheckDeadLetters')
    assert_that(result.chunk_reads, equal_to([
        ChunkRead('cdc', 0, 10, 14, 3), ChunkRead('cdc', 1, 0, 2, 3)]), label='CheckChunkReads')
  counters = _counters(p.result)
  assert counters['records_parsed'] == 4
  assert counters['rows_parsed'] == 5
  assert counters['cdc_deletes'] == 1
  assert counters['skipped_records'] == 1 and counters['skipped_tombstone'] == 1
  assert counters['dead_letters_invalid_json'] == 1


def test_parse_records_metrics():
  with test_pipeline.TestPipeline() as p:
    _ = (p | beam.Create([chunk([{'a': 1}, b'[1]', {'a': 2}])])
         | ParseRecords(Routing(table='db.t')))
  values = _counters(p.result)
  assert values['records_parsed'] == 2
  assert values['rows_parsed'] == 2
  assert values['dead_letters'] == 1
  assert values['dead_letters_not_object'] == 1


def test_parse_records_display_data_shows_the_configuration():
  transform = ParseRecords(Routing(topic_table_map='a=db.x,b=db.y'), cdc='canal',
                           sequence_columns={'db.x': 'seq'})
  assert transform.display_data() == {
      'cdc': 'canal', 'target': 'doris', 'max_record_bytes': 10 * 1024 * 1024,
      'topic_table_map': 'a=db.x,b=db.y', 'sequence_columns': 'db.x=seq'}


def _counters(result):
  metrics = result.metrics().query(beam.metrics.MetricsFilter())['counters']
  return {m.key.metric.name: m.committed for m in metrics
          if m.key.metric.namespace == 'kafka_to_doris'}
