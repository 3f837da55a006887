"""Plain JSON records (cdc='none'): rows, raw pass-through, dead letters, accounting."""

import orjson
import pytest

from tests.transforms.records.helpers import chunk, record
from transforms.records import RecordParser, Routing
from transforms.stream_load.config import DORIS_DELETE_SIGN
from transforms.types import MAX_DEAD_LETTER_PAYLOAD_BYTES, ChunkRead, KafkaChunk

pytestmark = pytest.mark.unit


def _parser(**kwargs):
  return RecordParser(Routing(table='db.t'), **kwargs)


def test_plain_object_is_used_as_is_with_raw_bytes_and_size():
  value = b'{"id": 1, "name": "a"}'
  result = _parser().parse_chunk(chunk([value], first_offset=41))
  (row,) = result.rows_by_table['db.t']
  assert row.fields == {'id': 1, 'name': 'a'}
  assert row.op == 'upsert'
  assert (row.topic, row.partition, row.offset) == ('orders', 0, 41)
  assert row.raw is value
  assert row.size == len(value)
  assert DORIS_DELETE_SIGN not in row.fields
  assert result.chunk_read == ChunkRead('orders', 0, 41, 42, 1)


def test_value_with_newline_whitespace_is_not_sent_as_it_came():
  value = b'{"id": 1,\n "name": "a"}'
  (row,) = _parser().parse_record(record(value))
  assert row.raw is None
  assert row.fields == {'id': 1, 'name': 'a'}
  assert b'\n' not in orjson.dumps(row.fields)


def test_json_array_of_objects_gives_several_rows_with_the_same_offset():
  result = _parser().parse_chunk(chunk([[{'id': 1}, {'id': 2}], {'id': 3}], first_offset=10))
  rows = result.rows_by_table['db.t']
  assert [(r.fields['id'], r.offset) for r in rows] == [(1, 10), (2, 10), (3, 11)]
  assert rows[0].raw == b'{"id":1}' and rows[0].size == len(b'{"id":1}')
  assert result.chunk_read.count == 3


def test_empty_array_produces_nothing_and_counts_zero():
  result = _parser().parse_chunk(chunk([[], {'id': 1}]))
  assert len(result.rows_by_table['db.t']) == 1
  assert result.skipped == {'empty': 1}
  assert result.chunk_read.count == 1


def test_rows_keep_kafka_order_across_tables():
  parser = RecordParser(Routing(table_field='t'))
  result = parser.parse_chunk(chunk([{'t': 'd.b' if i % 2 else 'd.a', 'i': i} for i in range(6)]))
  assert list(result.rows_by_table) == ['d.a', 'd.b']
  assert [r.offset for r in result.rows_by_table['d.a']] == [0, 2, 4]
  assert [r.fields['i'] for r in result.rows_by_table['d.b']] == [1, 3, 5]


@pytest.mark.parametrize('value, code, detail', [
    (b'{"id": 1', 'invalid_json', 'invalid JSON: unexpected end of data'),
    (b'\xff\xfe{}', 'invalid_utf8', 'value is not valid UTF-8'),
    (b'{"a": "\xc3\x28"}', 'invalid_utf8', 'value is not valid UTF-8'),
    (b'42', 'not_object', 'expected a JSON object or an array of objects, got a number'),
    (b'"s"', 'not_object', 'got a string'),
    (b'null', 'not_object', 'got null'),
    (b'[{"a": 1}, 2]', 'not_object', 'array element 1 is a number'),
    (b'', 'empty_value', 'empty value'),
    (None, 'empty_value', 'null value'),
])
def test_bad_values_become_dead_letters_with_reason(value, code, detail):
  result = _parser().parse_chunk(KafkaChunk('orders', 3, 7, 8, [record(value, 7, partition=3)]))
  (dead,) = result.dead_letters
  assert dead.reason.startswith(f'{code}: ') and detail in dead.reason, dead.reason
  assert (dead.stage, dead.topic, dead.partition, dead.offset, dead.table) == (
      'parse', 'orders', 3, 7, 'db.t')
  assert dead.payload == value
  assert result.rows_by_table == {}
  assert result.dead_letter_codes == {code: 1}
  assert result.chunk_read.count == 1


def test_too_large_record_is_dead_lettered_with_truncated_payload():
  value = b'{"a": "' + b'x' * 100_000 + b'"}'
  result = _parser(max_record_bytes=50_000).parse_chunk(chunk([value]))
  (dead,) = result.dead_letters
  assert dead.reason == (f'too_large: record of {len(value)} bytes is larger than '
                         f'max_record_bytes=50000')
  assert dead.payload == value[:MAX_DEAD_LETTER_PAYLOAD_BYTES]


def test_chunk_read_counts_rows_and_dead_letters_and_keeps_offsets():
  values = [{'id': 1}, b'bad', [{'id': 2}, {'id': 3}], [], None]
  records = [record(v, off) for v, off in zip(values, [100, 101, 103, 104, 106])]
  result = _parser().parse_chunk(KafkaChunk('orders', 0, 100, 107, records))
  assert result.chunk_read == ChunkRead('orders', 0, 100, 107, 5)  # 3 rows + 2 dead letters
  assert result.records_parsed == 2


def test_empty_chunk_has_a_zero_count():
  result = _parser().parse_chunk(KafkaChunk('orders', 1, 5, 9, []))
  assert result.chunk_read == ChunkRead('orders', 1, 5, 9, 0)


def test_sequence_column_gets_the_offset_when_missing():
  parser = _parser(sequence_columns={'db.t': 'seq'})
  rows = parser.parse_chunk(chunk([{'id': 1}, {'id': 1, 'seq': 5}], first_offset=20)
                            ).rows_by_table['db.t']
  assert [r.fields['seq'] for r in rows] == [20, 5]
  assert rows[0].raw == b'{"id":1,"seq":20}' and rows[0].size == len(rows[0].raw)
  assert rows[1].raw == b'{"id":1,"seq":5}'  # unchanged: the Kafka bytes as they came.


def test_sequence_column_only_for_its_table():
  parser = RecordParser(Routing(table_field='t', default_database='db'),
                        sequence_columns={'a': 'seq'})
  rows = parser.parse_chunk(chunk([{'t': 'a'}, {'t': 'b'}], first_offset=3)).rows_by_table
  assert rows['db.a'][0].fields['seq'] == 3
  assert 'seq' not in rows['db.b'][0].fields


def test_bad_sequence_columns_config_is_rejected():
  with pytest.raises(ValueError, match='sequence column'):
    _parser(sequence_columns={'db.t-x': 'seq'})
  with pytest.raises(ValueError, match='sequence column'):
    _parser(sequence_columns={'db.t': ''})


def test_numbers_beyond_double_precision_keep_every_digit_when_encoded_again():
  value = (b'[{"amount": 12345678901234.123456, "big": 123456789012345678901234567890,'
           b' "ok": 1.5, "id": 18446744073709551615, "nested": {"x": 0.1234567890123456789}}]')
  (row,) = _parser().parse_record(record(value))
  assert row.fields == {'amount': '12345678901234.123456', 'big': '123456789012345678901234567890',
                        'ok': 1.5, 'id': 18446744073709551615,
                        'nested': {'x': '0.1234567890123456789'}}
  assert row.size == len(orjson.dumps(row.fields))


def test_raw_rows_keep_their_bytes_even_with_long_numbers():
  value = b'{"amount": 12345678901234.123456}'
  (row,) = _parser().parse_record(record(value))
  assert row.raw == value


def test_maxwell_decimal_keeps_every_digit():
  from tests.transforms.records.helpers import maxwell
  parser = RecordParser(Routing(), cdc='maxwell')
  value = orjson.dumps(maxwell('insert', {'id': 1})).replace(
      b'{"id":1}', b'{"id":1,"price":98765432109876.54321}')
  (row,) = parser.parse_record(record(value))
  assert row.fields['price'] == '98765432109876.54321'
  assert row.fields['__DORIS_DELETE_SIGN__'] == 0


def test_row_too_deep_to_encode_again_is_a_dead_letter():
  value = b'[{"a": ' + b'[' * 300 + b'1' + b']' * 300 + b'}]'
  result = _parser().parse_chunk(chunk([value]))
  (dead,) = result.dead_letters
  assert dead.reason.startswith('unencodable: row cannot be encoded as JSON again')
  assert result.chunk_read.count == 1


def test_deep_rows_with_long_numbers_do_not_fail():
  value = b'{"a":' + b'[' * 1000 + b'1.12345678901234567' + b']' * 1000 + b'}'
  result = _parser().parse_chunk(chunk([value]))  # raw row: no re-encoding, no exact pass.
  assert result.rows_by_table['db.t'][0].raw == value
  result = _parser(sequence_columns={'db.t': 's'}).parse_chunk(chunk([value]))
  assert result.dead_letters[0].reason.startswith('unencodable:')


def test_a_row_encoded_again_holds_about_its_own_size_in_memory():
  """Rows the parser encodes (array items here; CDC, registry formats and sequence columns
  alike) wait in batches by the thousand holding that encoding: it may not hold a writer's
  buffer several times its size (orjson's result kept 8 KB for a 1 KB row)."""
  import tracemalloc  # pylint: disable=import-outside-toplevel
  from transforms.types import slim  # pylint: disable=import-outside-toplevel
  values = [[{'id': i, 'note': f'{i:08d}' * 110}] for i in range(2000)]  # ~900-byte rows
  parser = _parser()
  chunks = [chunk(values[i:i + 100], first_offset=i) for i in range(0, len(values), 100)]
  tracemalloc.start()
  try:
    rows = [slim(row) for c in chunks for row in parser.parse_chunk(c).rows_by_table['db.t']]
    held, _ = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  measured = sum(row.size for row in rows)
  assert len(rows) == 2000 and all(row.fields is None and row.raw for row in rows)
  assert held < 1.5 * measured, (held, measured)
