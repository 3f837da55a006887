"""An Avro writer schema -> a converter of decoded values, and Doris column types.

``AvroDeserializer`` (fastavro) gives ``Decimal``, ``datetime``, ``date``,
``time``, ``UUID`` and ``bytes`` values; Debezium's semantic types
(``connect.name``: ``io.debezium.time.Date`` day counts, ``Timestamp`` epoch
milliseconds, ``VariableScaleDecimal`` records...) arrive as plain ints,
strings and records.  ``value_converter`` compiles the schema (the JSON the
registry returns) once into a function that turns a decoded value into what
Stream Load takes (``transforms.records.logical``), touching only the fields
that need it.  ``column_types`` maps a record schema's fields to Doris column
types.  Both are pure and cached by the caller per schema id.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from transforms.records import logical

__all__ = ['value_converter', 'column_types', 'doris_type', 'envelope_row_schema',
           'connect_semantic_type', 'decimal_type']

Converter = Optional[Callable[[Any], Any]]  # None: the value stays as it is

_PRIMITIVES = ('null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string')
MAX_DECIMAL_PRECISION = 38  # Doris DECIMAL(38, s); wider decimals load as STRING

_CONNECT_TYPES = {
    'io.debezium.time.Date': 'DATE',
    'io.debezium.time.Timestamp': 'DATETIME(3)',
    'io.debezium.time.MicroTimestamp': 'DATETIME(6)',
    'io.debezium.time.NanoTimestamp': 'DATETIME(6)',
    'io.debezium.time.ZonedTimestamp': 'DATETIME(6)',
    'io.debezium.time.Time': 'STRING',
    'io.debezium.time.MicroTime': 'STRING',
    'io.debezium.time.NanoTime': 'STRING',
    'io.debezium.time.ZonedTime': 'STRING',
    'io.debezium.time.Year': 'INT',
    'io.debezium.data.Json': 'JSON',
    'io.debezium.data.Uuid': 'VARCHAR(36)',
    'io.debezium.data.Enum': 'STRING',
    'io.debezium.data.EnumSet': 'STRING',
    'io.debezium.data.Bits': 'STRING',
    'io.debezium.data.VariableScaleDecimal': 'STRING',  # the scale varies per value
    'org.apache.kafka.connect.data.Date': 'DATE',
    'org.apache.kafka.connect.data.Timestamp': 'DATETIME(3)',
    'org.apache.kafka.connect.data.Time': 'STRING',
}
_VARIABLE_SCALE_DECIMAL = 'io.debezium.data.VariableScaleDecimal'


def connect_semantic_type(name: Optional[str]) -> Optional[str]:
  """The Doris type of a Debezium / Kafka Connect semantic type (``io.debezium.time.Timestamp``
  -> ``DATETIME(3)``), or None for a name it does not know (and for ``Decimal``: see
  ``decimal_type``)."""
  return _CONNECT_TYPES.get(name) if name else None


def decimal_type(precision: Optional[int], scale: int) -> str:
  """``DECIMAL(p, s)`` (no precision: 38), or ``STRING`` past Doris's 38 digits."""
  if precision is None:
    precision = MAX_DECIMAL_PRECISION
  if precision > MAX_DECIMAL_PRECISION:
    return 'STRING'
  return f'DECIMAL({precision}, {scale})'
_CONNECT_DECIMAL = 'org.apache.kafka.connect.data.Decimal'
_CONNECT_INT_TYPES = {'int8': 'TINYINT', 'int16': 'SMALLINT'}

def _decimal_converter(scale: int) -> Callable[[Any], Any]:
  def convert(value):
    if type(value) is bytes:
      return logical.unscaled_decimal_text(value, scale)
    return logical.decimal_text(value) if not isinstance(value, (str, int)) else str(value)
  return convert


def _instant_converter(from_int: Callable[[int], str]) -> Callable[[Any], Any]:
  def convert(value):
    if type(value) is int:
      return from_int(value)
    return logical.datetime_text(value)
  return convert


def _date_converter(value):
  if type(value) is int:
    return logical.epoch_days_text(value)
  return logical.date_text(value)


def _time_converter(from_int: Callable[[int], str]) -> Callable[[Any], Any]:
  def convert(value):
    if type(value) is int:
      return from_int(value)
    return logical.time_text(value)
  return convert


def _variable_scale_decimal(value):
  if type(value) is dict:
    return logical.unscaled_decimal_text(value['value'], value['scale'])
  return value


def _bytes_converter(value):
  return logical.bytes_text(value) if type(value) is bytes else value


# Debezium / Kafka Connect semantic types (``connect.name``); a Kafka Connect one carries the
# Avro logical type too, which fastavro has converted already: the converters take both.
_CONNECT_CONVERTERS = {
    'io.debezium.time.Date': _date_converter,
    'io.debezium.time.Timestamp': _instant_converter(logical.epoch_millis_text),
    'io.debezium.time.MicroTimestamp': _instant_converter(logical.epoch_micros_text),
    'io.debezium.time.NanoTimestamp': _instant_converter(logical.epoch_nanos_text),
    'io.debezium.time.ZonedTimestamp': logical.zoned_text,
    'io.debezium.time.Time': _time_converter(logical.day_millis_text),
    'io.debezium.time.MicroTime': _time_converter(logical.day_micros_text),
    'io.debezium.time.NanoTime': _time_converter(logical.day_nanos_text),
    'org.apache.kafka.connect.data.Date': _date_converter,
    'org.apache.kafka.connect.data.Timestamp': _instant_converter(logical.epoch_millis_text),
    'org.apache.kafka.connect.data.Time': _time_converter(logical.day_millis_text),
}
_LOGICAL_CONVERTERS = {
    'timestamp-millis': _instant_converter(logical.epoch_millis_text),
    'timestamp-micros': _instant_converter(logical.epoch_micros_text),
    'timestamp-nanos': _instant_converter(logical.epoch_nanos_text),
    'local-timestamp-millis': _instant_converter(logical.epoch_millis_text),
    'local-timestamp-micros': _instant_converter(logical.epoch_micros_text),
    'local-timestamp-nanos': _instant_converter(logical.epoch_nanos_text),
    'date': _date_converter,
    'time-millis': _time_converter(logical.day_millis_text),
    'time-micros': _time_converter(logical.day_micros_text),
    'uuid': str,
}
_LOGICAL_TYPES = {
    'timestamp-millis': 'DATETIME(3)',
    'timestamp-micros': 'DATETIME(6)',
    'timestamp-nanos': 'DATETIME(6)',
    'local-timestamp-millis': 'DATETIME(3)',
    'local-timestamp-micros': 'DATETIME(6)',
    'local-timestamp-nanos': 'DATETIME(6)',
    'date': 'DATE',
    'time-millis': 'STRING',
    'time-micros': 'STRING',
    'uuid': 'VARCHAR(36)',
}
_PRIMITIVE_TYPES = {'boolean': 'BOOLEAN', 'int': 'INT', 'long': 'BIGINT', 'float': 'FLOAT',
                    'double': 'DOUBLE', 'bytes': 'STRING', 'string': 'STRING'}


def _full_name(schema: dict, namespace: Optional[str]) -> Tuple[str, Optional[str]]:
  name = schema.get('name', '')
  if '.' in name:
    return name, name.rsplit('.', 1)[0]
  ns = schema.get('namespace', namespace)
  return (f'{ns}.{name}' if ns else name), ns


class _Compiler:
  """Compiles a schema into converters; named types are compiled once (recursion-safe)."""

  def __init__(self):
    self._named: Dict[str, List[Converter]] = {}  # full name -> [converter] (a cell)

  def compile(self, schema: Any, namespace: Optional[str] = None) -> Converter:
    if isinstance(schema, str):
      if schema in _PRIMITIVES:
        return _bytes_converter if schema == 'bytes' else None
      return self._reference(schema, namespace)
    if isinstance(schema, list):
      return self._union(schema, namespace)
    if not isinstance(schema, dict):
      return None
    kind = schema.get('type')
    connect = schema.get('connect.name')
    if kind == 'record' or kind == 'error':
      full, ns = _full_name(schema, namespace)
      if full == _VARIABLE_SCALE_DECIMAL or connect == _VARIABLE_SCALE_DECIMAL:
        self._named[full] = [_variable_scale_decimal]
        return _variable_scale_decimal
      cell: List[Converter] = [None]
      self._named[full] = cell
      fields = []
      for field in schema.get('fields', ()):
        convert = self.compile(field.get('type'), ns)
        if convert is not None:
          fields.append((field['name'], convert))
      cell[0] = _record_converter(fields) if fields else None
      return cell[0]
    if kind == 'enum':
      self._named[_full_name(schema, namespace)[0]] = [None]
      return None
    if kind == 'array':
      items = self.compile(schema.get('items'), namespace)
      return None if items is None else (
          lambda value: [None if v is None else items(v) for v in value])
    if kind == 'map':
      values = self.compile(schema.get('values'), namespace)
      return None if values is None else (
          lambda value: {k: None if v is None else values(v) for k, v in value.items()})
    if connect in _CONNECT_CONVERTERS:
      return _CONNECT_CONVERTERS[connect]
    logical_type = schema.get('logicalType')
    if logical_type == 'decimal' or connect == _CONNECT_DECIMAL:
      return _decimal_converter(_decimal_scale(schema))
    if logical_type in _LOGICAL_CONVERTERS:
      return _LOGICAL_CONVERTERS[logical_type]
    if kind == 'fixed':
      self._named[_full_name(schema, namespace)[0]] = [_bytes_converter]
      return _bytes_converter
    if isinstance(kind, (dict, list)):
      return self.compile(kind, namespace)
    return _bytes_converter if kind == 'bytes' else None

  def _reference(self, name: str, namespace: Optional[str]) -> Converter:
    cell = self._named.get(name)
    if cell is None and namespace and '.' not in name:
      cell = self._named.get(f'{namespace}.{name}')
    if cell is None:  # defined in a referenced schema: convert by the values' Python types
      return logical.any_text
    if cell[0] is not None:
      return cell[0]
    return lambda value: cell[0](value) if cell[0] is not None else value  # recursive type

  def _union(self, branches: list, namespace: Optional[str]) -> Converter:
    others = [b for b in branches if b != 'null']
    if len(others) == 1:
      return self.compile(others[0], namespace)
    converters = [self.compile(b, namespace) for b in others]
    if all(c is None for c in converters):
      return None
    return logical.any_text  # which branch a value took is known only from its Python type


def _record_converter(fields: List[Tuple[str, Callable[[Any], Any]]]) -> Callable[[Any], Any]:
  def convert(value):
    if type(value) is dict:
      for name, field_converter in fields:
        item = value.get(name)
        if item is not None:
          value[name] = field_converter(item)
    return value
  return convert


def _decimal_scale(schema: dict) -> int:
  if 'scale' in schema:
    return int(schema['scale'])
  params = schema.get('connect.parameters') or {}
  return int(params.get('scale', 0))


def _decimal_precision(schema: dict) -> Optional[int]:
  if 'precision' in schema:
    return int(schema['precision'])
  params = schema.get('connect.parameters') or {}
  precision = params.get('connect.decimal.precision')
  return int(precision) if precision is not None else None


def value_converter(schema: Any) -> Callable[[Any], Any]:
  """A function making a value decoded with ``schema`` loadable (identity if none is needed).

  Args:
    schema: the Avro schema as parsed JSON (``json.loads`` of the registry's text).
  """
  convert = _Compiler().compile(schema)
  return convert if convert is not None else (lambda value: value)


# -- Doris column types -------------------------------------------------------

def _collect_names(schema: Any, namespace: Optional[str], names: Dict[str, dict]) -> None:
  """Every named type (record, enum, fixed) defined in ``schema``, by full and short name."""
  if isinstance(schema, list):
    for branch in schema:
      _collect_names(branch, namespace, names)
    return
  if not isinstance(schema, dict):
    return
  kind = schema.get('type')
  if kind in ('record', 'error', 'enum', 'fixed') and 'name' in schema:
    full, namespace = _full_name(schema, namespace)
    names[full] = schema
    names.setdefault(full.rsplit('.', 1)[-1], schema)
  if kind in ('record', 'error'):
    for field in schema.get('fields', ()):
      _collect_names(field.get('type'), namespace, names)
  elif kind == 'array':
    _collect_names(schema.get('items'), namespace, names)
  elif kind == 'map':
    _collect_names(schema.get('values'), namespace, names)
  elif isinstance(kind, (dict, list)):
    _collect_names(kind, namespace, names)


def doris_type(schema: Any, names: Optional[Dict[str, dict]] = None) -> Optional[str]:
  """The Doris column type for values of ``schema`` (None for ``null``).

  Records, maps and arrays are ``JSON``; a union of ``null`` and one type is
  that type; other unions are ``JSON`` when a branch is complex, else ``STRING``.

  Args:
    schema: an Avro schema (parsed JSON).
    names: named types a bare name may refer to (default: those in ``schema``).
  """
  if names is None:
    names = {}
    _collect_names(schema, None, names)
  if isinstance(schema, str):
    if schema == 'null':
      return None
    if schema in _PRIMITIVE_TYPES:
      return _PRIMITIVE_TYPES[schema]
    named = names.get(schema) or names.get(schema.rsplit('.', 1)[-1])
    return doris_type(named, names) if named is not None else 'JSON'
  if isinstance(schema, list):
    others = [b for b in schema if b != 'null']
    types = {doris_type(b, names) for b in others}
    if len(types) == 1:
      return types.pop()
    return 'JSON' if 'JSON' in types else 'STRING'
  if not isinstance(schema, dict):
    return 'STRING'
  kind = schema.get('type')
  connect = schema.get('connect.name')
  if kind in ('record', 'error'):
    full = _full_name(schema, None)[0]
    if full == _VARIABLE_SCALE_DECIMAL or connect == _VARIABLE_SCALE_DECIMAL:
      return 'STRING'
    return 'JSON'
  if kind in ('map', 'array'):
    return 'JSON'
  if kind == 'enum':
    return 'STRING'
  if connect in _CONNECT_TYPES:
    return _CONNECT_TYPES[connect]
  logical_type = schema.get('logicalType')
  if logical_type == 'decimal' or connect == _CONNECT_DECIMAL:
    return decimal_type(_decimal_precision(schema), _decimal_scale(schema))
  if logical_type in _LOGICAL_TYPES:
    return _LOGICAL_TYPES[logical_type]
  if kind == 'fixed':
    return 'STRING'
  if isinstance(kind, (dict, list)):
    return doris_type(kind, names)
  connect_type = schema.get('connect.type')
  if kind == 'int' and connect_type in _CONNECT_INT_TYPES:
    return _CONNECT_INT_TYPES[connect_type]
  return _PRIMITIVE_TYPES.get(kind, 'STRING')


def _record_of(schema: Any, names: Dict[str, dict]) -> Optional[dict]:
  """The record schema of ``schema`` or of a ``[null, record]`` union, else None."""
  if isinstance(schema, str):
    schema = names.get(schema) or names.get(schema.rsplit('.', 1)[-1])
  if isinstance(schema, list):
    others = [b for b in schema if b != 'null']
    return _record_of(others[0], names) if len(others) == 1 else None
  if isinstance(schema, dict) and schema.get('type') in ('record', 'error'):
    return schema
  return None


def envelope_row_schema(schema: Any, names: Optional[Dict[str, dict]] = None) -> Optional[dict]:
  """The row record of a Debezium envelope schema (``before``/``after``), or None."""
  if names is None:
    names = {}
    _collect_names(schema, None, names)
  record = _record_of(schema, names)
  if record is None:
    return None
  fields = {f.get('name'): f.get('type') for f in record.get('fields', ())}
  if 'op' not in fields:
    return None
  for name in ('after', 'before'):
    row = _record_of(fields.get(name), names)
    if row is not None:
      return row
  return None


def column_types(schema: Any, envelope: bool = False) -> Dict[str, str]:
  """Column -> Doris type for the rows a record schema makes.

  Args:
    schema: the Avro schema as parsed JSON.
    envelope: the records are CDC envelopes: the columns are those of the
      Debezium ``after``/``before`` row (a flattened record's ``__deleted`` and
      ``__op`` are not columns).

  Returns:
    Column name -> Doris type, in schema order; empty when the schema is no record.
  """
  names: Dict[str, dict] = {}
  _collect_names(schema, None, names)
  record = envelope_row_schema(schema, names) if envelope else None
  if record is None:
    record = _record_of(schema, names)
  if record is None:
    return {}
  types: Dict[str, str] = {}
  for field in record.get('fields', ()):
    name = field.get('name')
    if envelope and name in ('__deleted', '__op'):
      continue
    column_type = doris_type(field.get('type'), names)
    if column_type is not None:
      types[name] = column_type
  return types
