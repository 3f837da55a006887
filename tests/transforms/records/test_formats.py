"""--format=avro|protobuf|json_schema: decoding with confluent's mock registry, types, errors."""

import datetime
import decimal
import pickle
import uuid

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryError
from confluent_kafka.schema_registry.common._httpx_compat import httpx

from tests.transforms.records.registry_helpers import (avro_serializer, debezium_avro_schemas,
                                                       debezium_event, json_serializer, mock_url,
                                                       order_message_class, protobuf_serializer)
from transforms.records import RecordParser, Routing, ValueFormat
from transforms.records import avro_schema, formats, jsonschema_types, logical
from transforms.retry import OUTAGE_RETRY_SECS
from transforms.records.formats import (SchemaRegistryAuthError,
                                        SchemaRegistryRequestError,
                                        SchemaRegistryUnavailableError, registry_client)
from transforms.types import KafkaChunk, KafkaRecord

pytestmark = pytest.mark.unit

UTC = datetime.timezone.utc


def _record(value, offset=0, key=None, topic='orders'):
  return KafkaRecord(topic, 0, offset, key, value, 1_700_000_000_000)


def _chunk(values, keys=None, topic='orders'):
  records = [_record(v, i, keys[i] if keys else None, topic) for i, v in enumerate(values)]
  return KafkaChunk(topic, 0, 0, len(values), records)


def _parser(url, fmt='avro', **kwargs):
  kwargs.setdefault('routing', Routing(table='db.t'))
  return RecordParser(value_format=ValueFormat(fmt, {'url': url}), **kwargs)


# -- logical values ---------------------------------------------------------------------

def test_logical_values_become_the_text_stream_load_takes():
  assert logical.decimal_text(decimal.Decimal('1E+3')) == '1000'
  assert logical.decimal_text(decimal.Decimal('0E-10')) == '0.0000000000'
  assert logical.unscaled_decimal_text(b'\x04\xd2', 2) == '12.34'
  assert logical.unscaled_decimal_text(b'\xff\x6a', 3) == '-0.150'
  assert logical.unscaled_decimal_text(b'\x04\xd2', 0) == '1234'
  assert logical.epoch_millis_text(1_700_000_000_123) == '2023-11-14 22:13:20.123000'
  assert logical.epoch_micros_text(1_700_000_000_123_456) == '2023-11-14 22:13:20.123456'
  assert logical.epoch_nanos_text(1_700_000_000_123_456_789) == '2023-11-14 22:13:20.123456'
  assert logical.epoch_millis_text(-1) == '1969-12-31 23:59:59.999000'
  assert logical.epoch_days_text(19000) == '2022-01-08'
  assert logical.epoch_days_text(-1) == '1969-12-31'
  assert logical.day_millis_text(3_723_004) == '01:02:03.004000'
  assert logical.day_micros_text(3_020_399_000_000) == '838:59:59.000000'  # MySQL TIME max
  assert logical.day_micros_text(-1_000_000) == '-00:00:01.000000'
  assert logical.day_nanos_text(1_500) == '00:00:00.000001'
  # Zone-aware instants are converted to UTC; naive ones are kept as they are.
  assert logical.zoned_text('2024-03-01T12:00:00+02:00') == '2024-03-01 10:00:00.000000'
  assert logical.zoned_text('2024-03-01T12:00:00.5Z') == '2024-03-01 12:00:00.500000'
  assert logical.zoned_text('not a time') == 'not a time'
  assert logical.datetime_text(datetime.datetime(2024, 1, 2, 3, 4, 5)) == '2024-01-02 03:04:05.000000'
  assert logical.datetime_text(datetime.datetime(
      2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))) == (
          '2024-01-02 08:04:05.000000')
  assert logical.time_text(datetime.time(13, 14, 15, 123456)) == '13:14:15.123456'
  assert logical.bytes_text(b'\x00\x01\xff') == 'AAH/'


# -- Avro ---------------------------------------------------------------------------------

_LOGICAL_SCHEMA = {
    'type': 'record', 'name': 'Logical', 'namespace': 'test', 'fields': [
        {'name': 'id', 'type': 'long'},
        {'name': 'small', 'type': {'type': 'int', 'connect.type': 'int16'}},
        {'name': 'price', 'type': {'type': 'bytes', 'logicalType': 'decimal', 'precision': 10,
                                   'scale': 2}},
        {'name': 'wide', 'type': {'type': 'fixed', 'name': 'Wide', 'size': 16,
                                  'logicalType': 'decimal', 'precision': 30, 'scale': 4}},
        {'name': 'huge', 'type': {'type': 'bytes', 'logicalType': 'decimal', 'precision': 50,
                                  'scale': 0}},
        {'name': 'at_ms', 'type': {'type': 'long', 'logicalType': 'timestamp-millis'}},
        {'name': 'at_us', 'type': ['null', {'type': 'long', 'logicalType': 'timestamp-micros'}]},
        {'name': 'local', 'type': {'type': 'long', 'logicalType': 'local-timestamp-micros'}},
        {'name': 'day', 'type': {'type': 'int', 'logicalType': 'date'}},
        {'name': 't_ms', 'type': {'type': 'int', 'logicalType': 'time-millis'}},
        {'name': 't_us', 'type': {'type': 'long', 'logicalType': 'time-micros'}},
        {'name': 'uid', 'type': {'type': 'string', 'logicalType': 'uuid'}},
        {'name': 'blob', 'type': 'bytes'},
        {'name': 'ok', 'type': 'boolean'},
        {'name': 'score', 'type': 'double'},
        {'name': 'color', 'type': {'type': 'enum', 'name': 'Color', 'symbols': ['RED', 'BLUE']}},
        {'name': 'tags', 'type': {'type': 'array', 'items': 'string'}},
        {'name': 'stamps', 'type': {'type': 'array', 'items': {
            'type': 'long', 'logicalType': 'timestamp-millis'}}},
        {'name': 'attrs', 'type': {'type': 'map', 'values': 'bytes'}},
        {'name': 'second_color', 'type': 'Color'},
        {'name': 'either', 'type': ['null', 'long', 'bytes']},
    ]}

_LOGICAL_VALUE = {
    'id': 7, 'small': 3, 'price': decimal.Decimal('12.30'),
    'wide': decimal.Decimal('-12345678901234567890.1234'),
    'huge': decimal.Decimal('123456789012345678901234567890123456789012345'),
    'at_ms': datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
    'at_us': datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    'local': datetime.datetime(2024, 5, 6, 7, 8, 9, 10),
    'day': datetime.date(2024, 2, 29), 't_ms': datetime.time(1, 2, 3, 4000),
    't_us': datetime.time(13, 14, 15, 123456),
    'uid': uuid.UUID('12345678-1234-5678-1234-567812345678'), 'blob': b'\x00\x01\xff',
    'ok': True, 'score': 0.5, 'color': 'BLUE', 'tags': ['a', 'b'],
    'stamps': [datetime.datetime(2024, 1, 1, tzinfo=UTC)], 'attrs': {'k': b'\x01'},
    'second_color': 'RED', 'either': b'\x02',
}


def test_avro_logical_types_load_as_exact_text_in_utc():
  url = mock_url()
  value = avro_serializer(url, _LOGICAL_SCHEMA)(_LOGICAL_VALUE)
  rows = _parser(url).parse_record(_record(value))
  assert len(rows) == 1
  row = rows[0]
  assert row.fields == {
      'id': 7, 'small': 3, 'price': '12.30', 'wide': '-12345678901234567890.1234',
      'huge': '123456789012345678901234567890123456789012345',
      'at_ms': '2024-01-02 03:04:05.006000', 'at_us': '2024-01-02 03:04:05.123456',
      'local': '2024-05-06 07:08:09.000010', 'day': '2024-02-29', 't_ms': '01:02:03.004000',
      't_us': '13:14:15.123456', 'uid': '12345678-1234-5678-1234-567812345678',
      'blob': 'AAH/', 'ok': True, 'score': 0.5, 'color': 'BLUE', 'tags': ['a', 'b'],
      'stamps': ['2024-01-01 00:00:00.000000'], 'attrs': {'k': 'AQ=='}, 'second_color': 'RED',
      'either': 'Ag=='}
  # The row's JSON encoding is made once and sent as it is.
  assert row.raw == orjson.dumps(row.fields)
  assert row.size == len(row.raw)


def test_avro_schema_maps_to_doris_column_types():
  assert avro_schema.column_types(_LOGICAL_SCHEMA) == {
      'id': 'BIGINT', 'small': 'SMALLINT', 'price': 'DECIMAL(10, 2)', 'wide': 'DECIMAL(30, 4)',
      'huge': 'STRING', 'at_ms': 'DATETIME(3)', 'at_us': 'DATETIME(6)', 'local': 'DATETIME(6)',
      'day': 'DATE', 't_ms': 'STRING', 't_us': 'STRING', 'uid': 'VARCHAR(36)', 'blob': 'STRING',
      'ok': 'BOOLEAN', 'score': 'DOUBLE', 'color': 'STRING', 'tags': 'JSON', 'stamps': 'JSON',
      'attrs': 'JSON', 'second_color': 'STRING', 'either': 'STRING'}
  assert avro_schema.doris_type(['null', {'type': 'record', 'name': 'X', 'fields': []}]) == 'JSON'
  assert avro_schema.doris_type('null') is None
  assert avro_schema.doris_type({'type': 'float'}) == 'FLOAT'
  assert avro_schema.column_types('string') == {}


def test_debezium_semantic_types_follow_connect_name():
  schema = {'type': 'record', 'name': 'Value', 'namespace': 'db1.shop.t', 'fields': [
      {'name': 'd', 'type': {'type': 'int', 'connect.name': 'io.debezium.time.Date'}},
      {'name': 'ts', 'type': {'type': 'long', 'connect.name': 'io.debezium.time.Timestamp'}},
      {'name': 'mts', 'type': {'type': 'long',
                               'connect.name': 'io.debezium.time.MicroTimestamp'}},
      {'name': 'nts', 'type': {'type': 'long', 'connect.name': 'io.debezium.time.NanoTimestamp'}},
      {'name': 'zts', 'type': {'type': 'string',
                               'connect.name': 'io.debezium.time.ZonedTimestamp'}},
      {'name': 'mt', 'type': {'type': 'long', 'connect.name': 'io.debezium.time.MicroTime'}},
      {'name': 'vsd', 'type': {'type': 'record', 'name': 'VariableScaleDecimal',
                               'namespace': 'io.debezium.data',
                               'fields': [{'name': 'scale', 'type': 'int'},
                                          {'name': 'value', 'type': 'bytes'}],
                               'connect.name': 'io.debezium.data.VariableScaleDecimal'}},
      {'name': 'cdec', 'type': {'type': 'bytes', 'connect.parameters': {'scale': '3'},
                                'connect.name': 'org.apache.kafka.connect.data.Decimal'}},
      {'name': 'cdate', 'type': {'type': 'int', 'logicalType': 'date',
                                 'connect.name': 'org.apache.kafka.connect.data.Date'}},
      {'name': 'cts', 'type': {'type': 'long', 'logicalType': 'timestamp-millis',
                               'connect.name': 'org.apache.kafka.connect.data.Timestamp'}},
      {'name': 'js', 'type': {'type': 'string', 'connect.name': 'io.debezium.data.Json'}},
  ]}
  url = mock_url()
  value = avro_serializer(url, schema)({
      'd': 19000, 'ts': 1_700_000_000_123, 'mts': 1_700_000_000_123_456,
      'nts': 1_700_000_000_123_456_789, 'zts': '2024-03-01T12:00:00+02:00',
      'mt': 3_723_000_004, 'vsd': {'scale': 3, 'value': b'\xff\x6a'}, 'cdec': b'\x04\xd2',
      'cdate': datetime.date(2024, 2, 29), 'cts': datetime.datetime(2024, 1, 2, tzinfo=UTC),
      'js': '{"a": 1}'})
  (row,) = _parser(url).parse_record(_record(value))
  assert row.fields == {
      'd': '2022-01-08', 'ts': '2023-11-14 22:13:20.123000', 'mts': '2023-11-14 22:13:20.123456',
      'nts': '2023-11-14 22:13:20.123456', 'zts': '2024-03-01 10:00:00.000000',
      'mt': '01:02:03.000004', 'vsd': '-0.150', 'cdec': '1.234', 'cdate': '2024-02-29',
      'cts': '2024-01-02 00:00:00.000000', 'js': '{"a": 1}'}
  assert avro_schema.column_types(schema) == {
      'd': 'DATE', 'ts': 'DATETIME(3)', 'mts': 'DATETIME(6)', 'nts': 'DATETIME(6)',
      'zts': 'DATETIME(6)', 'mt': 'STRING', 'vsd': 'STRING', 'cdec': 'DECIMAL(38, 3)',
      'cdate': 'DATE', 'cts': 'DATETIME(3)', 'js': 'JSON'}


def test_debezium_avro_envelopes_upsert_and_delete_like_json_ones():
  url = mock_url()
  key_schema, envelope = debezium_avro_schemas()
  value_of = avro_serializer(url, envelope, topic='cdc')
  key_of = avro_serializer(url, key_schema, topic='cdc', is_key=True)
  image = {'id': 1, 'name': 'ann', 'balance': decimal.Decimal('10.50'), 'opened': 19000,
           'updated_at': 1_700_000_000_123_456, 'ratio': {'scale': 2, 'value': b'\x01\x00'}}
  changed = dict(image, name='bob', balance=decimal.Decimal('-3.00'))
  values = [value_of(debezium_event('c', None, image)),
            value_of(debezium_event('u', image, changed)),
            value_of(debezium_event('d', changed, None)),
            value_of(debezium_event('d', None, None)),  # no before image: the key names the row
            None]                                       # the tombstone after a delete
  keys = [key_of({'id': 1})] * 4 + [key_of({'id': 1})]
  parser = RecordParser(Routing(), cdc='debezium', value_format=ValueFormat('avro', {'url': url}))
  result = parser.parse_chunk(_chunk(values, keys, topic='cdc'))
  assert result.dead_letters == []
  assert result.skipped == {'tombstone': 1}
  rows = result.rows_by_table['shop.accounts']
  assert [(r.op, r.fields['id'], r.fields.get('name'), r.fields['__DORIS_DELETE_SIGN__'])
          for r in rows] == [('upsert', 1, 'ann', 0), ('upsert', 1, 'bob', 0),
                             ('delete', 1, 'bob', 1), ('delete', 1, None, 1)]
  assert rows[0].fields == {
      'id': 1, 'name': 'ann', 'balance': '10.50', 'opened': '2022-01-08',
      'updated_at': '2023-11-14 22:13:20.123456', 'ratio': '2.56', '__DORIS_DELETE_SIGN__': 0}
  assert result.column_types == {'shop.accounts': {
      'id': 'BIGINT', 'name': 'STRING', 'balance': 'DECIMAL(12, 2)', 'opened': 'DATE',
      'updated_at': 'DATETIME(6)', 'ratio': 'STRING'}}
  assert result.key_columns == {'shop.accounts': ('id',)}


def _reference_avro_values(url):
  """Values of a schema with a named reference to another subject, in the wire format."""
  from confluent_kafka.schema_registry import Schema, SchemaReference
  from confluent_kafka.schema_registry.avro import AvroSerializer
  from confluent_kafka.serialization import MessageField, SerializationContext
  client = registry_client({'url': url})
  address = {'type': 'record', 'name': 'Address', 'namespace': 'shop',
             'fields': [{'name': 'city', 'type': 'string'},
                        {'name': 'zip', 'type': ['null', 'string'], 'default': None}]}
  client.register_schema('shop.Address', Schema(orjson.dumps(address).decode(), 'AVRO'))
  person = {'type': 'record', 'name': 'Person', 'namespace': 'shop',
            'fields': [{'name': 'id', 'type': 'long'}, {'name': 'home', 'type': 'shop.Address'},
                       {'name': 'past', 'type': {'type': 'array', 'items': 'shop.Address'}}]}
  schema = Schema(orjson.dumps(person).decode(), 'AVRO',
                  [SchemaReference('shop.Address', 'shop.Address', 1)])
  client.register_schema('people-value', schema)
  serializer = AvroSerializer(client, schema, conf={'auto.register.schemas': False,
                                                    'use.latest.version': True})
  ctx = SerializationContext('people', MessageField.VALUE)
  return [serializer({'id': i, 'home': {'city': f'c{i}', 'zip': None},
                      'past': [{'city': 'old', 'zip': '01234'}] * i}, ctx) for i in range(3)]


def test_avro_reads_what_confluents_avro_deserializer_reads():
  from confluent_kafka.schema_registry.avro import AvroDeserializer
  url = mock_url()
  key_schema, envelope = debezium_avro_schemas()
  image = {'id': 1, 'name': 'ann', 'balance': decimal.Decimal('10.50'), 'opened': 19000,
           'updated_at': 1_700_000_000_123_456, 'ratio': {'scale': 2, 'value': b'\x01\x00'}}
  values = [avro_serializer(url, _LOGICAL_SCHEMA)(_LOGICAL_VALUE),
            avro_serializer(url, envelope, topic='cdc')(debezium_event('c', None, image)),
            avro_serializer(url, envelope, topic='cdc')(debezium_event('d', image, None)),
            avro_serializer(url, key_schema, topic='cdc', is_key=True)({'id': 1}),
            avro_serializer(url, {'type': 'bytes'}, topic='raw')(b'\x00\x01'),
            *_reference_avro_values(url)]
  reference = AvroDeserializer(registry_client({'url': url}))
  decoder = ValueFormat('avro', {'url': url}).decoder()
  for value in values:
    data, plan = decoder.decode(value)
    assert data == plan.convert(reference(value))
  # Not vacuous: the values differ, and the reference fields came through.
  assert [decoder.decode(v)[0]['home']['city'] for v in values[-3:]] == ['c0', 'c1', 'c2']
  assert decoder.decode(values[4])[0] == 'AAE='  # a top-level bytes schema: the bytes, base64
  # A truncated value of the referencing schema is undecodable, as with AvroDeserializer.
  with pytest.raises(formats.Reject, match='does not match its writer schema'):
    decoder.decode(values[-1][:-3])


def test_column_types_of_json_are_empty():
  result = RecordParser(Routing(table='db.t')).parse_chunk(_chunk([b'{"a": 1}']))
  assert result.column_types == {} and result.key_columns == {}


# -- Protobuf -------------------------------------------------------------------------------

def test_protobuf_decodes_without_generated_classes():
  url = mock_url()
  order_class = order_message_class()
  message = order_class(id=2**40, customer='ann', blob=b'\x01\x02', status=1, price=2.5,
                        paid=True)
  message.created.FromDatetime(datetime.datetime(2024, 1, 2, 3, 4, 5, 123456))
  message.ship_day.year, message.ship_day.month, message.ship_day.day = 2024, 3, 1
  line = message.lines.add()
  line.sku, line.units = 'x-1', 2**63
  value = protobuf_serializer(url, order_class)(message)
  result = _parser(url, 'protobuf').parse_chunk(_chunk([value]))
  assert result.dead_letters == []
  (row,) = result.rows_by_table['db.t']
  assert row.fields == {
      'id': 2**40, 'customer': 'ann', 'created': '2024-01-02 03:04:05.123456',
      'ship_day': '2024-03-01', 'blob': 'AQI=', 'status': 'PAID', 'qty': 0, 'price': 2.5,
      'lines': [{'sku': 'x-1', 'units': 2**63}], 'paid': True}
  assert row.raw == orjson.dumps(row.fields)
  assert result.column_types == {'db.t': {
      'id': 'BIGINT', 'customer': 'STRING', 'created': 'DATETIME(6)', 'ship_day': 'DATE',
      'blob': 'STRING', 'status': 'STRING', 'qty': 'INT', 'price': 'DOUBLE', 'lines': 'JSON',
      'paid': 'BOOLEAN'}}


def test_protobuf_truncated_message_is_undecodable():
  url = mock_url()
  order_class = order_message_class()
  value = protobuf_serializer(url, order_class)(order_class(id=5, customer='a' * 40))
  result = _parser(url, 'protobuf').parse_chunk(_chunk([value[:-10]]))
  assert [d.reason.split(':')[0] for d in result.dead_letters] == ['undecodable']
  assert 'shop.Order' in result.dead_letters[0].reason


# -- JSON Schema ------------------------------------------------------------------------------

_JSON_SCHEMA = {
    '$schema': 'http://json-schema.org/draft-07/schema#', 'title': 'Order', 'type': 'object',
    'properties': {
        'id': {'type': 'integer'}, 'amount': {'type': 'number'},
        'note': {'type': ['null', 'string']}, 'day': {'type': 'string', 'format': 'date'},
        'tags': {'type': 'array', 'items': {'type': 'string'}},
        'small': {'type': 'integer', 'connect.type': 'int16'}},
    'required': ['id']}


def test_json_schema_values_load_as_json_with_their_types():
  url = mock_url()
  serialize = json_serializer(url, _JSON_SCHEMA)
  good = serialize({'id': 12345678901234567890, 'amount': 1.25, 'note': None, 'day': '2024-01-01',
                    'tags': ['a'], 'small': 2})
  bad = good[:5] + orjson.dumps({'id': 'not a number'})  # same schema id, fails validation
  result = _parser(url, 'json_schema').parse_chunk(_chunk([good, bad]))
  (row,) = result.rows_by_table['db.t']
  assert row.fields == {'id': 12345678901234567890, 'amount': 1.25, 'note': None,
                        'day': '2024-01-01', 'tags': ['a'], 'small': 2}
  assert [d.reason.split(':')[0] for d in result.dead_letters] == ['undecodable']
  assert result.column_types == {'db.t': {'id': 'BIGINT', 'amount': 'DOUBLE', 'note': 'STRING',
                                          'day': 'DATE', 'tags': 'JSON', 'small': 'SMALLINT'}}
  assert jsonschema_types.column_types(
      {'type': 'object', 'properties': {'op': {'type': 'string'}, 'after': {
          'oneOf': [{'type': 'null'}, {'type': 'object', 'properties': {
              'id': {'type': 'integer'}}}]}}}, envelope=True) == {'id': 'BIGINT'}


# -- bad records -------------------------------------------------------------------------------

def test_bad_records_become_dead_letters_with_reason_codes():
  url = mock_url()
  schema = {'type': 'record', 'name': 'R', 'fields': [{'name': 'id', 'type': 'long'},
                                                      {'name': 'note', 'type': 'string'}]}
  good = avro_serializer(url, schema)({'id': 1, 'note': 'hello world'})
  unknown_id = b'\x00\x00\x00\x03\xe7' + good[5:]  # schema id 999: never registered
  values = [good, unknown_id, good[:-4], b'{"id": 1}', b'\x00\x00', unknown_id]
  result = _parser(url).parse_chunk(_chunk(values))
  assert [(d.offset, d.reason.split(':')[0]) for d in result.dead_letters] == [
      (1, 'unknown_schema'), (2, 'undecodable'), (3, 'bad_wire_format'), (4, 'bad_wire_format'),
      (5, 'unknown_schema')]
  assert result.dead_letter_codes == {'unknown_schema': 2, 'undecodable': 1,
                                      'bad_wire_format': 2}
  assert 'schema id 999 is not in the schema registry' in result.dead_letters[0].reason
  assert url in result.dead_letters[0].reason
  assert 'Invalid magic byte' in result.dead_letters[2].reason
  assert result.dead_letters[0].payload == unknown_id
  assert result.chunk_read.count == 6  # 1 row + 5 dead letters


class _StubClient:
  """A registry client whose lookups fail as told (confluent's mock cannot answer 5xx/401)."""

  def __init__(self, *failures, then=None):
    self.failures = list(failures)
    self.then = then
    self.calls = 0

  def config(self):
    return {}

  def get_schema(self, schema_id, subject_name=None, fmt=None):
    self.calls += 1
    if self.failures:
      raise self.failures.pop(0)
    return self.then.get_schema(schema_id, subject_name, fmt)


def _decoder(client, keep_retrying=False, sleeps=None, url='https://user:pw@registry:8081'):
  return ValueFormat('avro', {'url': url}).decoder(
      keep_retrying=keep_retrying, client=client,
      sleep=(sleeps.append if sleeps is not None else None))


_WIRE = b'\x00\x00\x00\x00\x01\x02'  # schema id 1, an Avro long 1


@pytest.mark.parametrize('status, error_type, words', [
    (500, SchemaRegistryUnavailableError, 'is unavailable'),
    (503, SchemaRegistryUnavailableError, 'is unavailable'),
    (401, SchemaRegistryAuthError, 'authentication failed'),
    (403, SchemaRegistryAuthError, 'authentication failed'),
    (422, SchemaRegistryRequestError, 'unexpected answer'),
])
def test_registry_failures_fail_the_bundle_naming_the_registry(status, error_type, words):
  decoder = _decoder(_StubClient(SchemaRegistryError(status, status * 100, 'boom')))
  with pytest.raises(error_type) as raised:
    decoder.decode(_WIRE, 'orders')
  message = str(raised.value)
  assert 'schema registry https://registry:8081' in message and words in message
  assert 'pw' not in message  # credentials never in messages


def test_an_unreachable_registry_fails_with_its_url():
  decoder = _decoder(_StubClient(httpx.ConnectError('[Errno 111] Connection refused')))
  with pytest.raises(SchemaRegistryUnavailableError,
                     match=r'schema registry https://registry:8081 is unavailable .*'
                           r'ConnectError: \[Errno 111\] Connection refused'):
    decoder.decode(_WIRE, 'orders')


def test_a_long_running_job_waits_out_a_registry_outage_but_not_refused_credentials():
  url = mock_url()
  schema = {'type': 'record', 'name': 'R', 'fields': [{'name': 'id', 'type': 'long'}]}
  value = avro_serializer(url, schema)({'id': 41})
  sleeps = []
  stub = _StubClient(SchemaRegistryError(503, 50301, 'busy'), httpx.ConnectError('refused'),
                     then=registry_client({'url': url}))
  decoder = _decoder(stub, keep_retrying=True, sleeps=sleeps)
  data, _ = decoder.decode(value, 'orders')
  assert data == {'id': 41}
  assert sleeps == [OUTAGE_RETRY_SECS, OUTAGE_RETRY_SECS] and stub.failures == []
  refused = _decoder(_StubClient(SchemaRegistryError(401, 40101, 'no')), keep_retrying=True,
                     sleeps=[])
  with pytest.raises(SchemaRegistryAuthError):
    refused.decode(value, 'orders')


def test_unknown_schema_ids_are_asked_once():
  stub = _StubClient(SchemaRegistryError(404, 40403, 'Schema not found'))
  decoder = _decoder(stub)
  for _ in range(3):
    with pytest.raises(formats.Reject) as raised:
      decoder.decode(_WIRE, 'orders')
    assert raised.value.code == 'unknown_schema'
  assert stub.calls == 1


# -- configuration and lifecycle ------------------------------------------------------------------

def test_value_format_is_validated_at_construction():
  assert ValueFormat().uses_registry is False
  with pytest.raises(ValueError, match='--format: expected one of'):
    ValueFormat('xml')
  with pytest.raises(ValueError, match='needs --schema_registry_url'):
    ValueFormat('avro')
  with pytest.raises(ValueError, match='reads no schema registry'):
    ValueFormat('json', {'url': 'http://r'})
  assert ValueFormat('avro', {'url': 'http://a:pw@r1,http://r2'}).registry_urls == (
      'http://r1,http://r2')


def test_a_missing_registry_extra_fails_with_the_install_hint(monkeypatch):
  import sys
  monkeypatch.setitem(sys.modules, 'confluent_kafka.schema_registry.avro', None)
  with pytest.raises(ValueError, match=r"--format=avro needs .*pip install '\.\[registry\]'"):
    ValueFormat('avro', {'url': 'http://r'})


def test_the_parser_pickles_without_its_client_and_reopens_on_the_worker():
  url = mock_url()
  schema = {'type': 'record', 'name': 'R', 'fields': [{'name': 'id', 'type': 'long'}]}
  value = avro_serializer(url, schema)({'id': 3})
  parser = _parser(url)
  assert parser.parse_record(_record(value))[0].fields == {'id': 3}
  copy = pickle.loads(pickle.dumps(parser))  # a worker's copy: no client travels
  assert copy.parse_record(_record(value))[0].fields == {'id': 3}
  parser.close()
  copy.close()
