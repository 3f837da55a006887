"""CDC envelopes -> upsert and delete rows: Debezium, Canal, Maxwell.

Each function maps one envelope (a parsed JSON object) to rows; the parser
passed in resolves the target table (``envelope_table``) and builds each row
(``make_row``), which marks deletes with ``__DORIS_DELETE_SIGN__`` (Doris
unique-key tables) or ``__op`` (StarRocks primary-key tables).  An update that
changes a primary key (Canal, Maxwell) also deletes the old key.
"""

from __future__ import annotations

import re
from typing import Any, List, Optional

import orjson

from transforms.records import connect_json
from transforms.records.reasons import (BAD_ENVELOPE, SKIP_CONTROL, SKIP_DDL, SKIP_TOMBSTONE,
                                        Reject, Skip, json_type)
from transforms.types import OP_DELETE, OP_UPSERT, KafkaRecord, Row

__all__ = ['debezium', 'canal', 'maxwell', 'detect_envelope', 'json_key', 'source_position',
           'PLAIN', 'DEBEZIUM', 'CANAL', 'MAXWELL']

# Kinds of record values, as detected by ``detect_envelope``.
PLAIN = 'none'
DEBEZIUM = 'debezium'
CANAL = 'canal'
MAXWELL = 'maxwell'

_DEBEZIUM_DDL_KEYS = ('ddl', 'tableChanges', 'historyRecord', 'databaseName')
_CANAL_DML_TYPES = ('INSERT', 'UPDATE', 'DELETE')
_MAXWELL_UPSERT_TYPES = ('insert', 'update', 'bootstrap-insert')
_MAXWELL_CONTROL_TYPES = ('bootstrap-start', 'bootstrap-complete')


_LOG_NUMBER = re.compile(r'(\d+)$')


def source_position(source: Any) -> Optional[tuple]:
  """Where a Debezium ``source`` block sits in its database's log, as a tuple that orders
  events of one connector: MySQL / MariaDB ``('binlog', file number, pos, row)``, Postgres
  ``('lsn', lsn)``, Oracle ``('scn', scn)``, SQL Server ``('lsn', change_lsn or commit_lsn)``
  (fixed-width hex text); None when the block has none of these.

  A row and a schema change compare by these: a row older than a change has a smaller
  position.  Snapshot rows share the position of their table's snapshot ``CREATE``, so equal
  means "not older".
  """
  if type(source) is not dict:
    return None
  pos = source.get('pos')
  log = source.get('file')
  if isinstance(log, str) and type(pos) is int:
    number = _LOG_NUMBER.search(log)
    row = source.get('row')
    return ('binlog', int(number.group(1)) if number else 0, pos, row if type(row) is int else 0)
  lsn = source.get('lsn')
  if type(lsn) is int:
    return ('lsn', lsn)
  scn = source.get('scn')
  if isinstance(scn, str) and scn.isdigit():
    return ('scn', int(scn))
  change_lsn = source.get('change_lsn') or source.get('commit_lsn')
  if isinstance(change_lsn, str) and change_lsn:
    return ('lsn', change_lsn)
  return None


def detect_envelope(obj: dict) -> str:
  """Guesses the envelope of a JSON object (``cdc='auto'``).

  Each test asks for keys every message of that format has, so that plain
  rows with a ``type`` or ``op`` column stay plain; a plain row that happens
  to carry a whole envelope's keys would be misread (give ``cdc`` explicitly
  when the format is known).
  """
  if 'op' in obj:
    if 'after' in obj or 'before' in obj:
      return DEBEZIUM
  elif 'payload' in obj and 'schema' in obj:
    return DEBEZIUM
  if 'type' in obj and 'database' in obj:
    if 'table' in obj and ('isDdl' in obj or type(obj.get('data')) is list):
      return CANAL
    if 'ts' in obj and (('data' in obj and 'table' in obj) or 'sql' in obj):
      return MAXWELL
  if 'ddl' in obj and 'source' in obj and ('tableChanges' in obj or 'databaseName' in obj):
    return DEBEZIUM  # a schema change event
  if debezium_control(obj) is not None:
    return DEBEZIUM  # a transaction, heartbeat or signal record: skipped there
  if '__deleted' in obj:
    return DEBEZIUM  # flattened by ExtractNewRecordState
  return PLAIN


_SIGNAL_TYPES = ('execute-snapshot', 'stop-snapshot', 'pause-snapshot', 'resume-snapshot', 'log',
                 'schema-changes')


def debezium_control(obj: dict) -> Optional[str]:
  """What a Debezium control record is (its transaction topic's BEGIN/END, a heartbeat, a
  signal), or None: they carry no rows and are skipped, counted, never dead-lettered."""
  if obj.get('status') in ('BEGIN', 'END') and 'id' in obj and 'event_count' in obj:
    return 'transaction metadata'
  if len(obj) == 1 and 'ts_ms' in obj:
    return 'heartbeat'
  if obj.get('type') in _SIGNAL_TYPES and 'data' in obj and len(obj) <= 3:
    return 'signal'
  return None


def _key_change_before_image(after: dict, old: Any, pk_names: list) -> Optional[dict]:
  """The old row to delete when an update changed the primary key, else None.

  Canal and Maxwell ``old`` hold the previous values of the changed columns
  only; if a key column is among them, the row moved to a new key and the old
  key must be deleted or it stays in the table.
  """
  if type(old) is not dict or not any(k in old for k in pk_names if isinstance(k, str)):
    return None
  before = dict(after)
  before.update(old)
  return before



def json_key(key: Optional[bytes]) -> Optional[dict]:
  """The key fields of a Debezium record key (JSON, maybe schema-wrapped), or None."""
  if not key:
    return None
  try:
    obj = orjson.loads(key)
  except orjson.JSONDecodeError:
    return None
  if type(obj) is dict and 'payload' in obj and 'schema' in obj:
    obj = obj['payload']
  return obj if type(obj) is dict and obj else None



# -- Debezium

def debezium(parser, obj: dict, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
  schema = None
  if 'payload' in obj and 'schema' in obj:  # JsonConverter with schemas.enable=true.
    schema = obj['schema']
    obj = obj['payload']
    if obj is None:
      raise Skip(SKIP_TOMBSTONE, 'Debezium tombstone (null payload)')
    if type(obj) is not dict:
      raise Reject(BAD_ENVELOPE, f'Debezium "payload" must be an object, got {json_type(obj)}')
  op = obj.get('op')
  if op is None:
    if '__deleted' in obj:
      if schema is not None:  # typed values (datetimes, decimals) as the schema says
        obj = connect_json.converted(obj, connect_json.image_converters(schema, None))
        parser.connect_schema = (schema, None)
      return [_debezium_flattened(parser, obj, record, chunk_table)]
    if any(k in obj for k in _DEBEZIUM_DDL_KEYS):
      raise Skip(SKIP_DDL, 'Debezium schema change event')
    control = debezium_control(obj)
    if control is not None:
      raise Skip(SKIP_CONTROL, f'Debezium {control}')
    raise Reject(BAD_ENVELOPE, 'Debezium envelope without "op"')
  if op in ('c', 'r', 'u'):
    image = obj.get('after')
    if image is None:
      raise Reject(BAD_ENVELOPE, f'Debezium op {op!r} without "after" row')
    op_out = OP_UPSERT
  elif op == 'd':
    image = obj.get('before')
    if image is None:
      image = parser.key_image(record)
      if image is None:
        raise Reject(BAD_ENVELOPE, 'Debezium delete without "before" row or a decodable key')
    op_out = OP_DELETE
  elif op in ('t', 'm'):
    # Truncate and logical-decoding messages have no row to load.
    raise Skip(SKIP_CONTROL, f'Debezium op {op!r} (truncate/message) has no rows')
  else:
    raise Reject(BAD_ENVELOPE, f'unknown Debezium op {op!r}')
  if type(image) is not dict:
    raise Reject(BAD_ENVELOPE, f'Debezium row must be an object, got {json_type(image)}')
  if not image:
    raise Reject(BAD_ENVELOPE, f'Debezium op {op!r} with an empty row')
  if schema is not None:  # typed values (datetimes, decimals) as the schema says
    image_field = 'before' if op_out == OP_DELETE else 'after'
    image = connect_json.converted(image, connect_json.image_converters(schema, image_field))
    parser.connect_schema = (schema, image_field)
  if chunk_table is None and parser.routing.table_field is None:
    source = obj.get('source')
    if type(source) is not dict:
      raise Reject(BAD_ENVELOPE, f'Debezium "source" must be an object, '
                    f'got {json_type(source)}')
    table = parser.envelope_table(None, image, source.get('db'), source.get('table'),
                                  'Debezium source', schema=source.get('schema'))
  else:
    table = parser.envelope_table(chunk_table, image, None, None, 'Debezium source')
  if parser.keep_positions:
    parser.row_position = source_position(obj.get('source'))
  return [parser.make_row(table, image, op_out, record, cdc=True)]

def _debezium_flattened(parser, obj: dict, record: KafkaRecord,
                        chunk_table: Optional[str]) -> Row:
  """A row flattened by Debezium's ``ExtractNewRecordState`` (``delete.handling.mode=rewrite``).

  ``__deleted`` says whether it is a delete; ``__op`` (``add.fields=op``) is
  dropped as it would collide with StarRocks' ``__op``; ``__db`` and
  ``__table`` (``add.fields=db,table``) name the table when no flag does.
  """
  deleted = obj.pop('__deleted')
  source_op = obj.pop('__op', None)
  if deleted not in (True, False, 'true', 'false'):
    raise Reject(BAD_ENVELOPE, f'Debezium "__deleted" must be true or false, got {deleted!r}')
  if not obj:
    raise Reject(BAD_ENVELOPE, 'flattened Debezium record without columns')
  op = OP_DELETE if deleted is True or deleted == 'true' or source_op == 'd' else OP_UPSERT
  table = parser.envelope_table(chunk_table, obj, obj.get('__db'), obj.get('__table'),
                          'flattened Debezium record')
  return parser.make_row(table, obj, op, record, cdc=True)

# -- Canal

def canal(parser, obj: dict, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
  is_ddl = obj.get('isDdl', False)
  if type(is_ddl) is not bool:
    raise Reject(BAD_ENVELOPE, f'Canal "isDdl" must be a boolean, got {json_type(is_ddl)}')
  kind = obj.get('type')
  if is_ddl:
    raise Skip(SKIP_DDL, f'Canal DDL {kind!r}')
  if not isinstance(kind, str):
    raise Reject(BAD_ENVELOPE, f'Canal "type" must be a string, got {json_type(kind)}')
  kind = kind.upper()
  if kind not in _CANAL_DML_TYPES:
    raise Reject(BAD_ENVELOPE, f'unknown Canal type {kind!r}')
  data = obj.get('data')
  if type(data) is not list:
    raise Reject(BAD_ENVELOPE, f'Canal "data" must be an array of rows, got {json_type(data)}')
  if not data:
    raise Reject(BAD_ENVELOPE, f'Canal {kind} without rows in "data"')
  old = obj.get('old')
  if kind == 'UPDATE' and old is not None and (type(old) is not list or len(old) != len(data)):
    raise Reject(BAD_ENVELOPE, f'Canal "old" must be an array as long as "data", '
                  f'got {json_type(old)}')
  pk_names = obj.get('pkNames')
  if pk_names is not None and type(pk_names) is not list:
    raise Reject(BAD_ENVELOPE, f'Canal "pkNames" must be an array, got {json_type(pk_names)}')
  for i, row in enumerate(data):
    if type(row) is not dict or not row:
      raise Reject(BAD_ENVELOPE, f'Canal data[{i}] must be a non-empty object, '
                    f'got {json_type(row)}')
  op = OP_DELETE if kind == 'DELETE' else OP_UPSERT
  database = obj.get('database')
  source_table = obj.get('table')
  rows: List[Row] = []
  for i, image in enumerate(data):
    table = parser.envelope_table(chunk_table, image, database, source_table, 'Canal message')
    if kind == 'UPDATE' and old and pk_names:
      before = _key_change_before_image(image, old[i], pk_names)
      if before is not None:
        rows.append(parser.make_row(table, before, OP_DELETE, record, cdc=True))
    rows.append(parser.make_row(table, image, op, record, cdc=True))
  return rows

# -- Maxwell

def maxwell(parser, obj: dict, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
  kind = obj.get('type')
  if not isinstance(kind, str):
    raise Reject(BAD_ENVELOPE, f'Maxwell "type" must be a string, got {json_type(kind)}')
  if kind == 'delete':
    op = OP_DELETE
  elif kind in _MAXWELL_UPSERT_TYPES:
    op = OP_UPSERT
  elif kind in _MAXWELL_CONTROL_TYPES:
    raise Skip(SKIP_CONTROL, f'Maxwell {kind}')
  elif kind.startswith(('table-', 'database-')) or 'sql' in obj:
    raise Skip(SKIP_DDL, f'Maxwell DDL {kind!r}')
  else:
    raise Reject(BAD_ENVELOPE, f'unknown Maxwell type {kind!r}')
  image = obj.get('data')
  if type(image) is not dict:
    raise Reject(BAD_ENVELOPE, f'Maxwell "data" must be an object, got {json_type(image)}')
  if not image:
    raise Reject(BAD_ENVELOPE, f'Maxwell {kind} with an empty "data" row')
  table = parser.envelope_table(chunk_table, image, obj.get('database'), obj.get('table'),
                          'Maxwell message')
  rows: List[Row] = []
  if kind == 'update':
    old = obj.get('old')
    pk_names = obj.get('primary_key_columns')
    if type(old) is dict and type(pk_names) is list:
      before = _key_change_before_image(image, old, pk_names)
      if before is not None:
        rows.append(parser.make_row(table, before, OP_DELETE, record, cdc=True))
  rows.append(parser.make_row(table, image, op, record, cdc=True))
  return rows

