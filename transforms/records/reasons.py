"""Why a record produced no rows: dead-letter reason codes and skip codes.

A record that cannot be loaded raises ``Reject`` and becomes a dead letter
whose reason reads ``'<code>: <detail>'``; each code has its own
``dead_letters_<code>`` counter.  A record that legitimately produces nothing
(a Debezium tombstone, a DDL event, an empty array) raises ``Skip`` and is
counted in ``skipped_<code>``.
"""

from __future__ import annotations

from typing import Any, Optional

import orjson

from transforms.errors import RowFault

__all__ = ['Reject', 'Skip', 'REASON_CODES', 'SKIP_CODES', 'json_type', 'json_error']

# Dead-letter reason codes; ``DeadLetter.reason`` is ``'<code>: <detail>'`` and
# each code has its own ``dead_letters_<code>`` counter.
TOO_LARGE = 'too_large'
EMPTY_VALUE = 'empty_value'
INVALID_UTF8 = 'invalid_utf8'
INVALID_JSON = 'invalid_json'
NOT_OBJECT = 'not_object'
MISSING_TABLE = 'missing_table'
UNMAPPED_TOPIC = 'unmapped_topic'
BAD_TABLE_NAME = 'bad_table_name'
BAD_ENVELOPE = 'bad_envelope'
UNENCODABLE = 'unencodable'
# Schema-registry formats (--format=avro|protobuf|json_schema):
BAD_WIRE_FORMAT = 'bad_wire_format'  # no Confluent framing (magic byte, schema id)
UNKNOWN_SCHEMA = 'unknown_schema'    # the registry does not know the schema id (404)
UNDECODABLE = 'undecodable'          # the bytes do not match the writer schema
REASON_CODES = (TOO_LARGE, EMPTY_VALUE, INVALID_UTF8, INVALID_JSON, NOT_OBJECT,
                 MISSING_TABLE, UNMAPPED_TOPIC, BAD_TABLE_NAME, BAD_ENVELOPE, UNENCODABLE,
                 BAD_WIRE_FORMAT, UNKNOWN_SCHEMA, UNDECODABLE)

# Skip reason codes (records producing nothing; counted in ``skipped_<code>``).
SKIP_TOMBSTONE = 'tombstone'
SKIP_DDL = 'ddl'
SKIP_CONTROL = 'control'
SKIP_EMPTY = 'empty'
SKIP_EXCLUDED = 'excluded'  # a source table --include_tables / --exclude_tables leave out
SKIP_CODES = (SKIP_TOMBSTONE, SKIP_DDL, SKIP_CONTROL, SKIP_EMPTY, SKIP_EXCLUDED)


class Reject(RowFault):
  """A record cannot be loaded: becomes a dead letter with ``code: detail``."""

  def __init__(self, code: str, detail: str, table: Optional[str] = None):
    super().__init__(f'{code}: {detail}')
    self.code = code
    self.detail = detail
    self.table = table


class Skip(Exception):
  """A record that legitimately produces no rows (tombstone, DDL, ...)."""

  def __init__(self, code: str, detail: str):
    super().__init__(detail)
    self.code = code
    self.detail = detail



def json_error(value: bytes, error: orjson.JSONDecodeError) -> Reject:
  try:
    value.decode('utf-8')
  except UnicodeDecodeError as e:
    return Reject(INVALID_UTF8, f'value is not valid UTF-8: {e}')
  return Reject(INVALID_JSON, f'invalid JSON: {error}')


def json_type(value: Any) -> str:
  if value is None:
    return 'null'
  if isinstance(value, bool):
    return 'a boolean'
  if isinstance(value, (int, float)):
    return 'a number'
  if isinstance(value, str):
    return 'a string'
  if isinstance(value, list):
    return 'an array'
  if isinstance(value, dict):
    return 'an object'
  return type(value).__name__

