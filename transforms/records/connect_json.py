"""Kafka Connect JSON with its schema (``JsonConverter``, ``schemas.enable=true``): a row's values
made loadable by the schema beside them (pure).

Debezium writes a MySQL ``DATETIME`` as epoch milliseconds (``io.debezium.time.Timestamp``), a
``TIMESTAMP`` as ISO text with its zone (``ZonedTimestamp``), a ``DATE`` as days since the epoch
and a ``DECIMAL`` as base64 of its unscaled bytes (``decimal.handling.mode=precise``, the default).
Loaded as they are, Doris reads the number as no datetime and the base64 as no number (``NULL``,
or a filtered row).  The envelope's schema names each field's type; these converters give the
same text the Avro path gives (``docs/formats.md``): UTC wall-clock datetimes, exact decimals.
A value of another JSON type than its schema says is left as it is (the server decides).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Dict, Optional, Tuple

from transforms.records import logical
from transforms.records.avro_schema import connect_semantic_type, decimal_type

__all__ = ['image_converters', 'converted', 'column_types']

Converters = Dict[str, Callable[[Any], Any]]


def _ints(convert: Callable[[int], str]) -> Callable[[Any], Any]:
  def on_int(value):
    return convert(value) if type(value) is int else value
  return on_int


def _unscaled(value: Any, scale: Any) -> Any:
  if type(value) is not str:
    return value
  try:
    return logical.unscaled_decimal_text(base64.b64decode(value, validate=True), int(scale))
  except (binascii.Error, ValueError):
    return value


def _decimal(scale: Any) -> Callable[[Any], Any]:
  return lambda value: _unscaled(value, scale)


def _variable_scale_decimal(value: Any) -> Any:
  if type(value) is dict and 'value' in value and 'scale' in value:
    return _unscaled(value['value'], value['scale'])
  return value


def _zoned(value: Any) -> Any:
  return logical.zoned_text(value) if type(value) is str else value


_BY_NAME: Dict[str, Callable[[Any], Any]] = {
    'io.debezium.time.Timestamp': _ints(logical.epoch_millis_text),
    'io.debezium.time.MicroTimestamp': _ints(logical.epoch_micros_text),
    'io.debezium.time.NanoTimestamp': _ints(logical.epoch_nanos_text),
    'io.debezium.time.ZonedTimestamp': _zoned,
    'io.debezium.time.Date': _ints(logical.epoch_days_text),
    'io.debezium.time.Time': _ints(logical.day_millis_text),
    'io.debezium.time.MicroTime': _ints(logical.day_micros_text),
    'io.debezium.time.NanoTime': _ints(logical.day_nanos_text),
    'io.debezium.data.VariableScaleDecimal': _variable_scale_decimal,
    'org.apache.kafka.connect.data.Timestamp': _ints(logical.epoch_millis_text),
    'org.apache.kafka.connect.data.Date': _ints(logical.epoch_days_text),
    'org.apache.kafka.connect.data.Time': _ints(logical.day_millis_text),
}
_DECIMAL = 'org.apache.kafka.connect.data.Decimal'

# A struct's named fields (what decides its converters) -> its converters.
_CACHE: Dict[Tuple, Optional[Converters]] = {}
_CACHE_LIMIT = 10_000


def _struct(schema: Any, field: Optional[str]) -> Optional[list]:
  """The fields of the struct ``field`` of an envelope's schema (None: the schema itself)."""
  if type(schema) is not dict:
    return None
  if field is None:
    fields = schema.get('fields')
    return fields if type(fields) is list else None
  for item in schema.get('fields') or ():
    if type(item) is dict and item.get('field') == field:
      inner = item.get('fields')
      return inner if type(inner) is list else None
  return None


def image_converters(schema: Any, field: Optional[str]) -> Optional[Converters]:
  """column -> converter for the row image ``field`` (``after``/``before``; None: a flattened
  record's own fields) of a record's Connect schema; None when no column needs one."""
  fields = _struct(schema, field)
  if not fields:
    return None
  named = tuple((item.get('field'), item.get('name'), str((item.get('parameters') or {}).get(
      'scale'))) for item in fields if type(item) is dict and item.get('name'))
  if not named:
    return None
  try:
    return _CACHE[named]
  except KeyError:
    pass
  converters: Converters = {}
  for column, name, scale in named:
    if not isinstance(column, str):
      continue
    if name == _DECIMAL:
      converters[column] = _decimal(scale)
    elif name in _BY_NAME:
      converters[column] = _BY_NAME[name]
  result = converters or None
  if len(_CACHE) >= _CACHE_LIMIT:
    _CACHE.clear()
  _CACHE[named] = result
  return result


def converted(image: dict, converters: Optional[Converters]) -> dict:
  """``image`` with its typed values converted (a new dict when one changed)."""
  if not converters:
    return image
  out = None
  for column, convert in converters.items():
    value = image.get(column)
    if value is None:
      continue
    new = convert(value)
    if new is not value:
      if out is None:
        out = dict(image)
      out[column] = new
  return image if out is None else out


_PRIMITIVE_TYPES = {'int8': 'TINYINT', 'int16': 'SMALLINT', 'int32': 'INT', 'int64': 'BIGINT',
                    'float32': 'FLOAT', 'float64': 'DOUBLE', 'boolean': 'BOOLEAN',
                    'string': 'STRING', 'bytes': 'STRING', 'struct': 'JSON', 'map': 'JSON',
                    'array': 'JSON'}
_NOT_COLUMNS = ('__deleted', '__op')


def _int_or_none(text: Any) -> Optional[int]:
  try:
    return int(text)
  except (TypeError, ValueError):
    return None


def column_types(schema: Any, field: Optional[str]) -> Dict[str, str]:
  """Column -> Doris type of the row image ``field`` (None: a flattened record's own fields)
  of a record's Connect schema, as the Avro path types the same schema (``--create_tables``,
  ``add_columns``)."""
  types: Dict[str, str] = {}
  for item in _struct(schema, field) or ():
    if type(item) is not dict or not isinstance(item.get('field'), str):
      continue
    column, name = item['field'], item.get('name')
    if column in _NOT_COLUMNS:
      continue
    if name == _DECIMAL:
      parameters = item.get('parameters') or {}
      types[column] = decimal_type(_int_or_none(parameters.get('connect.decimal.precision')),
                                   _int_or_none(parameters.get('scale')) or 0)
      continue
    known = connect_semantic_type(name) or _PRIMITIVE_TYPES.get(item.get('type'))
    if known is not None:
      types[column] = known
  return types
