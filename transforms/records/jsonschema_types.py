"""A JSON Schema -> Doris column types of the rows its objects make (pure).

Values of ``--format=json_schema`` records load as they are (JSON); only
the column types come from the schema: ``integer`` -> ``BIGINT``,
``number`` -> ``DOUBLE``, ``boolean`` -> ``BOOLEAN``, ``string`` ->
``STRING`` (``format: date`` -> ``DATE``), objects and arrays -> ``JSON``;
Kafka Connect's ``connect.type`` hints (``int8``...``float64``) narrow them.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ['column_types', 'doris_type']

_TYPES = {'integer': 'BIGINT', 'number': 'DOUBLE', 'boolean': 'BOOLEAN', 'string': 'STRING',
          'object': 'JSON', 'array': 'JSON'}
_CONNECT_TYPES = {'int8': 'TINYINT', 'int16': 'SMALLINT', 'int32': 'INT', 'int64': 'BIGINT',
                  'float32': 'FLOAT', 'float64': 'DOUBLE', 'boolean': 'BOOLEAN',
                  'string': 'STRING', 'bytes': 'STRING'}


def _not_null(options: Any) -> list:
  return [o for o in options if not (isinstance(o, dict) and o.get('type') == 'null')]


def doris_type(schema: Any) -> Optional[str]:
  """The Doris type of a property's schema (None for ``null`` only)."""
  if not isinstance(schema, dict):
    return 'STRING'
  connect = schema.get('connect.type')
  if connect in _CONNECT_TYPES:
    return _CONNECT_TYPES[connect]
  for key in ('oneOf', 'anyOf'):
    if isinstance(schema.get(key), list):
      options = _not_null(schema[key])
      types = {doris_type(o) for o in options}
      if len(types) == 1:
        return types.pop()
      return 'JSON' if 'JSON' in types else 'STRING'
  kind = schema.get('type')
  if isinstance(kind, list):
    kinds = [k for k in kind if k != 'null']
    if not kinds:
      return None
    kind = kinds[0] if len(kinds) == 1 else None
    if kind is None:
      return 'STRING'
  if kind == 'null':
    return None
  if kind == 'string' and schema.get('format') == 'date':
    return 'DATE'
  return _TYPES.get(kind, 'JSON' if '$ref' in schema or 'properties' in schema else 'STRING')


def _object_of(schema: Any) -> Optional[dict]:
  if not isinstance(schema, dict):
    return None
  if isinstance(schema.get('properties'), dict):
    return schema
  for key in ('oneOf', 'anyOf'):
    if isinstance(schema.get(key), list):
      options = _not_null(schema[key])
      if len(options) == 1:
        return _object_of(options[0])
  return None


def column_types(schema: Any, envelope: bool = False) -> Dict[str, str]:
  """Column -> Doris type for the rows objects of ``schema`` make.

  Args:
    schema: the JSON Schema (parsed).
    envelope: the objects are Debezium envelopes: the columns are those of
      ``after`` (or ``before``).
  """
  record = _object_of(schema)
  if record is None:
    return {}
  properties = record['properties']
  if envelope and 'op' in properties:
    for name in ('after', 'before'):
      row = _object_of(properties.get(name))
      if row is not None:
        properties = row['properties']
        break
  types: Dict[str, str] = {}
  for name, prop in properties.items():
    column_type = doris_type(prop)
    if column_type is not None:
      types[name] = column_type
  return types
