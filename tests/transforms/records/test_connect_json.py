"""Kafka Connect JSON with its schema: Debezium's encodings made loadable by the schema beside them."""

import base64

import orjson
import pytest

from transforms.records import RecordParser, Routing
from transforms.records.connect_json import converted, image_converters
from transforms.types import KafkaChunk, KafkaRecord

pytestmark = pytest.mark.unit


def _b64(unscaled: int) -> str:
  return base64.b64encode(unscaled.to_bytes(unscaled.bit_length() // 8 + 1, 'big',
                                            signed=True)).decode()


_FIELDS = [
    {'type': 'int32', 'optional': False, 'field': 'id'},
    {'type': 'bytes', 'optional': True, 'name': 'org.apache.kafka.connect.data.Decimal',
     'parameters': {'scale': '2', 'connect.decimal.precision': '10'}, 'field': 'price'},
    {'type': 'int64', 'optional': True, 'name': 'io.debezium.time.Timestamp', 'field': 'at'},
    {'type': 'int64', 'optional': True, 'name': 'io.debezium.time.MicroTimestamp', 'field': 'at6'},
    {'type': 'string', 'optional': True, 'name': 'io.debezium.time.ZonedTimestamp',
     'field': 'seen'},
    {'type': 'int32', 'optional': True, 'name': 'io.debezium.time.Date', 'field': 'day'},
    {'type': 'int64', 'optional': True, 'name': 'io.debezium.time.MicroTime', 'field': 'tod'},
    {'type': 'struct', 'optional': True, 'name': 'io.debezium.data.VariableScaleDecimal',
     'field': 'num'},
    {'type': 'string', 'optional': True, 'name': 'io.debezium.data.Json', 'field': 'attrs'},
]
_SCHEMA = {'type': 'struct', 'name': 'p.shop.t.Envelope', 'fields': [
    {'type': 'struct', 'fields': _FIELDS, 'optional': True, 'field': 'before'},
    {'type': 'struct', 'fields': _FIELDS, 'optional': True, 'field': 'after'},
    {'type': 'string', 'optional': False, 'field': 'op'}]}


def test_debeziums_encodings_become_the_text_doris_reads():
  image = {'id': 1, 'price': _b64(-12345), 'at': 1_767_225_600_123, 'at6': 1_767_225_600_000_001,
           'seen': '2026-01-01T12:00:00+02:00', 'day': 20454, 'tod': 3_600_000_001,
           'num': {'scale': 3, 'value': _b64(1500)}, 'attrs': '{"a":1}'}
  out = converted(image, image_converters(_SCHEMA, 'after'))
  assert out == {'id': 1, 'price': '-123.45', 'at': '2026-01-01 00:00:00.123000',
                 'at6': '2026-01-01 00:00:00.000001', 'seen': '2026-01-01 10:00:00.000000',
                 'day': '2026-01-01', 'tod': '01:00:00.000001', 'num': '1.500',
                 'attrs': '{"a":1}'}
  assert image['price'] == _b64(-12345)  # the record's own dict is left alone


def test_values_of_another_type_than_the_schema_says_are_left_to_the_server():
  image = {'id': 2, 'price': 'not base64!', 'at': '2026-01-01 00:00:00', 'seen': 5, 'day': None}
  assert converted(image, image_converters(_SCHEMA, 'after')) == image


def test_a_schema_without_typed_fields_needs_no_conversion():
  plain = {'type': 'struct', 'fields': [
      {'type': 'struct', 'field': 'after', 'fields': [{'type': 'int32', 'field': 'id'}]}]}
  assert image_converters(plain, 'after') is None
  assert image_converters({'type': 'string'}, 'after') is None
  assert image_converters(None, 'after') is None


def _parse(value, routing=None):
  record = KafkaRecord('p.shop.t', 0, 0, None, orjson.dumps(value), 0)
  return RecordParser(routing or Routing(), cdc='debezium').parse_chunk(
      KafkaChunk('p.shop.t', 0, 0, 1, [record]))


def test_an_envelope_with_its_schema_loads_its_datetimes_and_decimals_as_text():
  parsed = _parse({'schema': _SCHEMA, 'payload': {
      'op': 'c', 'before': None, 'after': {'id': 1, 'price': _b64(999), 'at': 0},
      'source': {'db': 'shop', 'table': 't'}}})
  (row,) = parsed.rows_by_table['shop.t']
  assert (row.fields['price'], row.fields['at']) == ('9.99', '1970-01-01 00:00:00.000000')
  deleted = _parse({'schema': _SCHEMA, 'payload': {
      'op': 'd', 'before': {'id': 1, 'price': _b64(5)}, 'after': None,
      'source': {'db': 'shop', 'table': 't'}}})
  assert deleted.rows_by_table['shop.t'][0].fields['price'] == '0.05'


def test_a_flattened_record_with_its_schema_is_converted_too():
  flat = {'type': 'struct', 'fields': _FIELDS + [
      {'type': 'string', 'optional': True, 'field': '__deleted'}]}
  parsed = _parse({'schema': flat, 'payload': {'id': 3, 'at': 86_400_000, '__deleted': 'false'}},
                  Routing(table='shop.t'))
  (row,) = parsed.rows_by_table['shop.t']
  assert row.fields['at'] == '1970-01-02 00:00:00.000000'


def test_the_schema_types_the_tables_columns_as_the_avro_path_would():
  parsed = _parse({'schema': _SCHEMA, 'payload': {
      'op': 'c', 'before': None, 'after': {'id': 1}, 'source': {'db': 'shop', 'table': 't'}}})
  assert parsed.column_types['shop.t'] == {
      'id': 'INT', 'price': 'DECIMAL(10, 2)', 'at': 'DATETIME(3)', 'at6': 'DATETIME(6)',
      'seen': 'DATETIME(6)', 'day': 'DATE', 'tod': 'STRING', 'num': 'STRING', 'attrs': 'JSON'}
  assert _parse({'op': 'c', 'after': {'id': 1}, 'source': {'db': 'shop', 'table': 't'}}
                ).column_types == {}  # no schema, no types: the values decide
