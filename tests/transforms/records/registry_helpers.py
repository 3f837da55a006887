"""Schemas and serializers for the registry-format tests (confluent's mock registry).

Records are written with confluent-kafka's own serializers (``AvroSerializer``,
``ProtobufSerializer``, ``JSONSerializer``) into a ``mock://`` registry that
``transforms.records.formats.registry_client`` shares per URL in the process.
Protobuf message classes are built from a ``FileDescriptorProto`` (no protoc).
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Callable, Dict, Optional

from confluent_kafka.serialization import MessageField, SerializationContext

from transforms.records.formats import registry_client

_COUNTER = itertools.count()


def mock_url(prefix: str = 'test') -> str:
  """A fresh ``mock://`` registry URL (one in-memory registry per URL in this process)."""
  return f'mock://{prefix}-{next(_COUNTER)}'


def avro_serializer(url: str, schema: Dict[str, Any], topic: str = 'orders',
                    is_key: bool = False) -> Callable[[Any], bytes]:
  """value -> Confluent wire-format bytes, with ``schema`` registered in ``url``'s registry."""
  from confluent_kafka.schema_registry.avro import AvroSerializer
  serializer = AvroSerializer(registry_client({'url': url}), json.dumps(schema))
  ctx = SerializationContext(topic, MessageField.KEY if is_key else MessageField.VALUE)
  return lambda value: serializer(value, ctx)


def json_serializer(url: str, schema: Dict[str, Any], topic: str = 'orders') -> Callable[[Any], bytes]:
  from confluent_kafka.schema_registry.json_schema import JSONSerializer
  serializer = JSONSerializer(json.dumps(schema), registry_client({'url': url}))
  ctx = SerializationContext(topic, MessageField.VALUE)
  return lambda value: serializer(value, ctx)


def protobuf_serializer(url: str, message_class, topic: str = 'orders') -> Callable[[Any], bytes]:
  from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
  serializer = ProtobufSerializer(message_class, registry_client({'url': url}),
                                  {'use.deprecated.format': False})
  ctx = SerializationContext(topic, MessageField.VALUE)
  return lambda message: serializer(message, ctx)


def order_message_class(package: str = 'shop'):
  """A Protobuf ``<package>.Order`` class: int64, string, Timestamp, Date, bytes, enum, nested.

  Each call builds its own pool, so tests may register it in several registries.
  """
  from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2
  from google.protobuf.message_factory import GetMessageClass
  from google.type import date_pb2
  field = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(
      name=f'{package}/order.proto', package=package, syntax='proto3',
      dependency=['google/protobuf/timestamp.proto', 'google/type/date.proto'])
  status = proto.enum_type.add(name='Status')
  status.value.add(name='NEW', number=0)
  status.value.add(name='PAID', number=1)
  line = proto.message_type.add(name='Line')
  line.field.add(name='sku', number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
  line.field.add(name='units', number=2, type=field.TYPE_UINT64, label=field.LABEL_OPTIONAL)
  order = proto.message_type.add(name='Order')
  for name, number, kind, type_name, label in (
      ('id', 1, field.TYPE_INT64, None, field.LABEL_OPTIONAL),
      ('customer', 2, field.TYPE_STRING, None, field.LABEL_OPTIONAL),
      ('created', 3, field.TYPE_MESSAGE, '.google.protobuf.Timestamp', field.LABEL_OPTIONAL),
      ('ship_day', 4, field.TYPE_MESSAGE, '.google.type.Date', field.LABEL_OPTIONAL),
      ('blob', 5, field.TYPE_BYTES, None, field.LABEL_OPTIONAL),
      ('status', 6, field.TYPE_ENUM, f'.{package}.Status', field.LABEL_OPTIONAL),
      ('qty', 7, field.TYPE_INT32, None, field.LABEL_OPTIONAL),
      ('price', 8, field.TYPE_DOUBLE, None, field.LABEL_OPTIONAL),
      ('lines', 9, field.TYPE_MESSAGE, f'.{package}.Line', field.LABEL_REPEATED),
      ('paid', 10, field.TYPE_BOOL, None, field.LABEL_OPTIONAL)):
    added = order.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
      added.type_name = type_name
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
  pool.AddSerializedFile(date_pb2.DESCRIPTOR.serialized_pb)
  pool.Add(proto)
  return GetMessageClass(pool.FindMessageTypeByName(f'{package}.Order'))


def debezium_avro_schemas(table: str = 'accounts', db: str = 'shop'):
  """``(key_schema, envelope_schema)`` as Debezium's AvroConverter writes them for a MySQL table

  ``accounts(id BIGINT PK, name VARCHAR, balance DECIMAL(12,2), opened DATE,
  updated_at DATETIME(6), ratio DECIMAL (variable scale))``.
  """
  ns = f'dbserver1.{db}.{table}'
  key = {'type': 'record', 'name': 'Key', 'namespace': ns,
         'fields': [{'name': 'id', 'type': 'long'}], 'connect.name': f'{ns}.Key'}
  value = {
      'type': 'record', 'name': 'Value', 'namespace': ns, 'connect.name': f'{ns}.Value',
      'fields': [
          {'name': 'id', 'type': 'long'},
          {'name': 'name', 'type': ['null', 'string'], 'default': None},
          {'name': 'balance', 'type': ['null', {
              'type': 'bytes', 'scale': 2, 'precision': 12, 'connect.version': 1,
              'connect.parameters': {'scale': '2', 'connect.decimal.precision': '12'},
              'connect.name': 'org.apache.kafka.connect.data.Decimal',
              'logicalType': 'decimal'}], 'default': None},
          {'name': 'opened', 'type': ['null', {'type': 'int', 'connect.version': 1,
                                               'connect.name': 'io.debezium.time.Date'}],
           'default': None},
          {'name': 'updated_at', 'type': ['null', {
              'type': 'long', 'connect.version': 1,
              'connect.name': 'io.debezium.time.MicroTimestamp'}], 'default': None},
          {'name': 'ratio', 'type': ['null', {
              'type': 'record', 'name': 'VariableScaleDecimal', 'namespace': 'io.debezium.data',
              'fields': [{'name': 'scale', 'type': 'int'}, {'name': 'value', 'type': 'bytes'}],
              'connect.doc': 'Variable scaled decimal', 'connect.version': 1,
              'connect.name': 'io.debezium.data.VariableScaleDecimal'}], 'default': None},
      ]}
  source = {'type': 'record', 'name': 'Source', 'namespace': 'io.debezium.connector.mysql',
            'fields': [{'name': 'version', 'type': 'string'},
                       {'name': 'connector', 'type': 'string'},
                       {'name': 'name', 'type': 'string'},
                       {'name': 'ts_ms', 'type': 'long'},
                       {'name': 'db', 'type': 'string'},
                       {'name': 'table', 'type': ['null', 'string'], 'default': None}],
            'connect.name': 'io.debezium.connector.mysql.Source'}
  envelope = {
      'type': 'record', 'name': 'Envelope', 'namespace': ns, 'connect.name': f'{ns}.Envelope',
      'fields': [
          {'name': 'before', 'type': ['null', value], 'default': None},
          {'name': 'after', 'type': ['null', 'Value'], 'default': None},
          {'name': 'source', 'type': source},
          {'name': 'op', 'type': 'string'},
          {'name': 'ts_ms', 'type': ['null', 'long'], 'default': None},
      ]}
  return key, envelope


def debezium_event(op: str, before: Optional[dict], after: Optional[dict],
                   db: str = 'shop', table: str = 'accounts') -> dict:
  return {'before': before, 'after': after, 'op': op, 'ts_ms': 1_700_000_000_999,
          'source': {'version': '2.5.0.Final', 'connector': 'mysql', 'name': 'dbserver1',
                     'ts_ms': 1_700_000_000_000, 'db': db, 'table': table}}
