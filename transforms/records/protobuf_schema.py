"""A registered Protobuf schema -> a message class, a dict converter, Doris column types.

confluent-kafka-python's ``ProtobufDeserializer`` needs the message class
the data was written with (it has no dynamic mode; confluent-kafka-python
issue #1174).  ``message_class`` builds that class from the schema the
registry holds for the record's schema id, with the same steps the
deserializer takes to find the writer's descriptor: a ``DescriptorPool``
with the well-known and Confluent types (``_init_pool``), the schema's
references (``_resolve_named_schema``), the schema itself (the registry's
``format=serialized`` FileDescriptorProto, ``_str_to_proto``), then the
message the wire format's message indexes name, and
``message_factory.GetMessageClass``.

``MessageToDict(preserving_proto_field_name=True)`` then makes the dict;
``dict_converter`` fixes what the proto3 JSON mapping makes of a few types:
64-bit integers back to numbers, ``google.protobuf.Timestamp`` to
``'YYYY-MM-DD HH:MM:SS.ffffff'`` (UTC), ``google.type.Date`` to
``'YYYY-MM-DD'``, ``confluent.type.Decimal`` to exact decimal text.  Bytes
stay base64 text, enums their names.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from transforms.records import logical

__all__ = ['message_class', 'dict_converter', 'column_types', 'doris_type', 'to_dict']

_INT64_TYPES = ('int64', 'sint64', 'sfixed64', 'uint64', 'fixed64')
_TIMESTAMP = 'google.protobuf.Timestamp'
_DATE = 'google.type.Date'
_DECIMAL = 'confluent.type.Decimal'
_INT64_WRAPPERS = ('google.protobuf.Int64Value', 'google.protobuf.UInt64Value')
_WRAPPER_TYPES = {
    'google.protobuf.DoubleValue': 'DOUBLE', 'google.protobuf.FloatValue': 'FLOAT',
    'google.protobuf.Int64Value': 'BIGINT', 'google.protobuf.UInt64Value': 'LARGEINT',
    'google.protobuf.Int32Value': 'INT', 'google.protobuf.UInt32Value': 'BIGINT',
    'google.protobuf.BoolValue': 'BOOLEAN', 'google.protobuf.StringValue': 'STRING',
    'google.protobuf.BytesValue': 'STRING',
}
_SCALAR_TYPES = {
    'double': 'DOUBLE', 'float': 'FLOAT', 'int32': 'INT', 'sint32': 'INT', 'sfixed32': 'INT',
    'uint32': 'BIGINT', 'fixed32': 'BIGINT', 'int64': 'BIGINT', 'sint64': 'BIGINT',
    'sfixed64': 'BIGINT', 'uint64': 'LARGEINT', 'fixed64': 'LARGEINT', 'bool': 'BOOLEAN',
    'string': 'STRING', 'bytes': 'STRING', 'enum': 'STRING',
}


def message_class(client, schema, message_indexes: Sequence[int]):
  """The message class of the message ``message_indexes`` names in a registered schema.

  Args:
    client: the ``SchemaRegistryClient`` (fetches the schema's references).
    schema: the ``Schema`` from ``client.get_schema(id, fmt='serialized')``.
    message_indexes: the wire format's message indexes (``[0]``: the first message).

  Raises:
    SerializationError, ValueError, KeyError, IndexError: the schema or the
      indexes are not usable; SchemaRegistryError and transport errors from
      fetching references.
  """
  # pylint: disable=import-outside-toplevel  (the registry extra is optional)
  from google.protobuf.descriptor_pool import DescriptorPool
  from google.protobuf.message_factory import GetMessageClass
  from confluent_kafka.schema_registry._sync.protobuf import _resolve_named_schema
  from confluent_kafka.schema_registry.common.protobuf import _init_pool, _str_to_proto
  pool = DescriptorPool()
  _init_pool(pool)
  _resolve_named_schema(schema, client, pool)
  file_proto = _str_to_proto('default', schema.schema_str)
  pool.Add(file_proto)
  file_descriptor = pool.FindFileByName(file_proto.name)
  indexes = list(message_indexes) or [0]
  messages = list(file_descriptor.message_types_by_name.values())
  descriptor = messages[indexes[0]]
  for index in indexes[1:]:
    descriptor = descriptor.nested_types[index]
  return GetMessageClass(descriptor)


def to_dict(message) -> dict:
  """The message as a dict, proto field names, every field without presence included."""
  from google.protobuf.json_format import MessageToDict  # pylint: disable=import-outside-toplevel
  return MessageToDict(message, preserving_proto_field_name=True,
                       always_print_fields_with_no_presence=True)


# -- the dict fix-ups -----------------------------------------------------------

_TYPE_NAMES: Dict[int, str] = {}  # FieldDescriptor.TYPE_INT64 -> 'int64', ...


def _type_name(field) -> str:
  """``int64``, ``message``, ``enum``... of a FieldDescriptor."""
  if not _TYPE_NAMES:
    from google.protobuf.descriptor import FieldDescriptor  # pylint: disable=import-outside-toplevel
    for name in dir(FieldDescriptor):
      if name.startswith('TYPE_'):
        _TYPE_NAMES[getattr(FieldDescriptor, name)] = name[5:].lower()
  return _TYPE_NAMES.get(field.type, 'unknown')


def _is_repeated(field) -> bool:
  try:
    return field.is_repeated
  except AttributeError:  # protobuf < 5.29
    return field.label == field.LABEL_REPEATED


def _is_map(field) -> bool:
  message = field.message_type
  return (message is not None and _is_repeated(field)
          and message.GetOptions().map_entry)


def _timestamp(value):
  return logical.zoned_text(value) if type(value) is str else value


def _date(value):
  if type(value) is dict and value.get('year'):
    return f'{int(value["year"]):04d}-{int(value.get("month", 0)):02d}-{int(value.get("day", 0)):02d}'
  return value


def _decimal(value):
  if type(value) is dict:
    return logical.unscaled_decimal_text(base64.b64decode(value.get('value', '')),
                                         int(value.get('scale', 0)))
  return value


def _int(value):
  return int(value) if type(value) is str else value


class _Compiler:
  """Fix-ups per message type, compiled once (recursive types included)."""

  def __init__(self):
    self._cells: Dict[str, List[Optional[Callable[[Any], Any]]]] = {}

  def message(self, descriptor) -> Optional[Callable[[Any], Any]]:
    name = descriptor.full_name
    cell = self._cells.get(name)
    if cell is not None:
      return cell[0] if cell[0] is not None else (
          lambda value: cell[0](value) if cell[0] is not None else value)
    cell = [None]
    self._cells[name] = cell
    fixes: List[Tuple[str, Callable[[Any], Any], bool]] = []
    for field in descriptor.fields:
      if _is_map(field):
        continue  # a map is a JSON column: values stay as the JSON mapping writes them
      fix = self._field(field)
      if fix is not None:
        fixes.append((field.name, fix, _is_repeated(field)))
    cell[0] = _message_fix(fixes) if fixes else None
    return cell[0]

  def _field(self, field) -> Optional[Callable[[Any], Any]]:
    kind = _type_name(field)
    if kind in _INT64_TYPES:
      return _int
    if kind != 'message':
      return None
    message_name = field.message_type.full_name
    if message_name == _TIMESTAMP:
      return _timestamp
    if message_name == _DATE:
      return _date
    if message_name == _DECIMAL:
      return _decimal
    if message_name in _INT64_WRAPPERS:
      return _int
    if message_name.startswith('google.protobuf.'):
      return None  # Struct, Duration, other wrappers: as the JSON mapping writes them
    return self.message(field.message_type)


def _message_fix(fixes: List[Tuple[str, Callable[[Any], Any], bool]]) -> Callable[[Any], Any]:
  def fix(value):
    if type(value) is dict:
      for name, field_fix, repeated in fixes:
        item = value.get(name)
        if item is None:
          continue
        if repeated:
          value[name] = [field_fix(v) for v in item] if type(item) is list else item
        else:
          value[name] = field_fix(item)
    return value
  return fix


def dict_converter(descriptor) -> Callable[[dict], dict]:
  """A function fixing ``to_dict``'s output for messages of ``descriptor`` (in place)."""
  fix = _Compiler().message(descriptor)
  return fix if fix is not None else (lambda value: value)


# -- Doris column types -----------------------------------------------------------

def doris_type(field) -> str:
  """The Doris column type of a FieldDescriptor's values."""
  if _is_repeated(field):
    return 'JSON'
  kind = _type_name(field)
  if kind == 'message':
    name = field.message_type.full_name
    if name == _TIMESTAMP:
      return 'DATETIME(6)'
    if name == _DATE:
      return 'DATE'
    if name == _DECIMAL:
      return 'STRING'  # the scale travels with each value
    return _WRAPPER_TYPES.get(name, 'JSON')
  return _SCALAR_TYPES.get(kind, 'STRING')


def column_types(descriptor, envelope: bool = False) -> Dict[str, str]:
  """Column -> Doris type for the rows messages of ``descriptor`` make.

  Args:
    descriptor: the message Descriptor.
    envelope: the messages are Debezium-style envelopes (``op`` and a message
      ``after``/``before``): the columns are those of the row message.
  """
  if envelope:
    fields = descriptor.fields_by_name
    if 'op' in fields:
      for name in ('after', 'before'):
        field = fields.get(name)
        if field is not None and field.message_type is not None and not _is_repeated(field):
          descriptor = field.message_type
          break
  return {field.name: doris_type(field) for field in descriptor.fields}
