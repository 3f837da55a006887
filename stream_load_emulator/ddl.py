"""DDL over the FE's SQL API: CREATE DATABASE / TABLE, ALTER TABLE ... ADD COLUMN, DESC.

What Doris answers (``fe/fe-core`` ``SchemaChangeHandler.addColumnInternal``,
``OlapTable.checkNormalStateForAlter``, ``InternalCatalog.createTable``), with the
messages clients match on:

* ``ALTER TABLE [db.]tbl ADD COLUMN c TYPE [NULL|NOT NULL] [DEFAULT v] [COMMENT 's']
  [FIRST|AFTER x]``, ``ADD COLUMN (a T, b U)`` and several ``ADD COLUMN`` clauses: a light
  schema change (instant); rows loaded before hold NULL (or the DEFAULT).  An existing
  column (names ignore case): ``Can not add column which already exists in base table: c``;
  a value column ``NOT NULL`` without DEFAULT: ``... must have a default value``; unknown
  table: ``Unknown table 'tbl'``.  Injected faults: ``schema_change_busy`` answers
  ``Table[t]'s state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER ops``,
  ``ddl_denied`` answers Doris's missing-privilege error.
* ``CREATE TABLE [IF NOT EXISTS]`` in Doris syntax (``schema.parse_ddl``): an existing table
  without IF NOT EXISTS: ``Table 'tbl' already exists``; ``STRING``/``JSON``/``FLOAT``/
  ``DOUBLE`` key columns are refused as Doris does.
* ``DESC [db.]tbl``: ``Field, Type, Null, Key, Default, Extra``.

Every DDL is kept in the data directory and replayed at start, so created tables and added
columns survive a restart like their rows do.
"""

import re
from typing import List, Optional, Tuple

import sqlglot
from sqlglot.tokens import TokenType

from stream_load_emulator import schema as schema_lib

_ALTER = re.compile(r'^\s*ALTER\s+TABLE\s+([`\w.]+)\s+(ADD\s+COLUMN\b.*)$', re.I | re.S)
_CREATE_TABLE = re.compile(r'^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([`\w.]+)', re.I)
_CREATE_DB = re.compile(r'^\s*CREATE\s+(DATABASE|SCHEMA)\s+(IF\s+NOT\s+EXISTS\s+)?([`\w]+)',
                        re.I)
_DESC = re.compile(r'^\s*(DESC|DESCRIBE)\s+([`\w.]+)\s*;?\s*$', re.I)
_POSITION = re.compile(r'\s+(FIRST|AFTER\s+[`\w]+)\s*$', re.I)
_NOT_KEY_TYPES = {'STRING': 'String Type should not be used in key column[%s].',
                  'JSON': 'JSONB or VARIANT type should not be used in key column[%s].',
                  'JSONB': 'JSONB or VARIANT type should not be used in key column[%s].',
                  'FLOAT': 'Float or double can not used as a key, use decimal instead.',
                  'DOUBLE': 'Float or double can not used as a key, use decimal instead.'}


class DdlError(Exception):
  """Doris's answer to a statement it refuses (the server wraps it as errCode = 2)."""


def is_ddl(stmt: str) -> bool:
  """Whether ``stmt`` is one of the statements this module runs."""
  return bool(_ALTER.match(stmt) or _CREATE_TABLE.match(stmt) or _CREATE_DB.match(stmt)
              or _DESC.match(stmt))


def _name(text: str, db: Optional[str]) -> Tuple[str, str]:
  parts = [p.strip('`') for p in text.split('.')]
  if len(parts) == 2:
    return parts[0], parts[1]
  if not db:
    raise DdlError('No database selected')
  return db, parts[0]


def execute(server, stmt: str, db: Optional[str], replay: bool = False):
  """Runs one DDL statement against ``server``'s catalog and storage.

  Returns:
    ``(column names, rows, types)`` like ``StreamLoadServer.sql``.

  Raises:
    DdlError: what Doris would answer.
  """
  stmt = stmt.strip().rstrip(';').strip()
  with server.storage.lock:
    match = _DESC.match(stmt)
    if match:
      return _describe(server, *_name(match.group(2), db))
    match = _ALTER.match(stmt)
    if match:
      _add_columns(server, *_name(match.group(1), db), match.group(2), replay)
    elif _CREATE_DB.match(stmt):
      _create_database(server, _CREATE_DB.match(stmt))
    else:
      _create_table(server, stmt, db, replay)
    if not replay:
      server.storage.save_ddl(stmt, db)
  return [], [], []


def _create_database(server, match) -> None:
  name = match.group(3).strip('`')
  if name in server.catalog.databases and not match.group(2):
    raise DdlError("Can't create database '%s'; database exists" % name)
  server.catalog.databases.setdefault(name, {})
  server.storage.attach(name)


def _create_table(server, stmt: str, db: Optional[str], replay: bool) -> None:
  match = _CREATE_TABLE.match(stmt)
  db_name, tbl = _name(match.group(2), db)
  if db_name not in server.catalog.databases:
    raise DdlError("Unknown database '%s'" % db_name)
  if server.catalog.table(db_name, tbl) is not None:
    if match.group(1) or replay:
      return
    raise DdlError("Table '%s' already exists" % tbl)
  text = stmt if '.' in match.group(2) else 'USE %s; %s' % (db_name, stmt)
  try:
    parsed = [t for _, t in schema_lib.parse_ddl(text) if t is not None]
  except schema_lib.SchemaError as e:
    raise DdlError(str(e)) from e
  if len(parsed) != 1:
    raise DdlError('expected one CREATE TABLE statement')
  table = parsed[0]
  for column in table.columns:
    if column.is_key and column.type_name in _NOT_KEY_TYPES:
      raise DdlError(_NOT_KEY_TYPES[column.type_name].replace('%s', column.name))
  keys = [c.name.lower() for c in table.columns[:len(table.key_columns)]]
  if keys != [k.lower() for k in table.key_columns]:
    raise DdlError('Key columns should be a ordered prefix of the schema. KeyColumns[%s] '
                   '(starts from zero) is %s, but corresponding column is %s in the previous '
                   'columns declaration.' % (len(keys) - 1, table.key_columns[-1],
                                             table.columns[len(keys) - 1].name))
  server.catalog.databases[db_name][table.name] = table
  server.storage.attach(db_name)
  server.storage.create_table(table)


def _split_top_level(text: str) -> List[str]:
  """``text`` cut at commas outside parentheses."""
  tokens = sqlglot.Dialect.get_or_raise('doris').tokenize(text)
  pieces, depth, start = [], 0, 0
  for tok in tokens:
    if tok.token_type == TokenType.L_PAREN:
      depth += 1
    elif tok.token_type == TokenType.R_PAREN:
      depth -= 1
    elif tok.token_type == TokenType.COMMA and depth == 0:
      pieces.append(text[start:tok.start])
      start = tok.end + 1
  pieces.append(text[start:])
  return [p.strip() for p in pieces if p.strip()]


def _column_defs(clauses: str) -> List[str]:
  """The column definitions of ``ADD COLUMN ...[, ADD COLUMN ...]``."""
  defs = []
  for clause in _split_top_level(clauses):
    body = re.sub(r'^ADD\s+COLUMN\s+', '', clause, flags=re.I)
    if body == clause:
      raise DdlError('only ADD COLUMN is supported by this emulator: %s' % clause[:60])
    body = re.sub(r'\s+TO\s+[`\w]+\s*$', '', body, flags=re.I)  # rollup: base only here
    if body.startswith('('):
      defs.extend(_split_top_level(body[1:body.rindex(')')]))
    else:
      defs.append(_POSITION.sub('', body))
  return defs


def _add_columns(server, db: str, tbl: str, clauses: str, replay: bool) -> None:
  table = server.catalog.table(db, tbl)
  if table is None:
    raise DdlError("Unknown table '%s'" % tbl)
  if not replay and server.faults.take('schema_change_busy', 'fe', 0, db, tbl):
    raise DdlError("Table[%s]'s state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER "
                   'ops' % tbl)
  if not replay and server.faults.take('ddl_denied', 'fe', 0, db, tbl):
    raise DdlError("Access denied; you need (at least one of) the (ALTER) privilege(s) on "
                   "TABLE %s for this operation" % tbl)
  text = 'CREATE TABLE __alter.__alter (%s)' % ', '.join(_column_defs(clauses))
  try:
    new = [c for _, t in schema_lib.parse_ddl(text) if t is not None for c in t.columns]
  except schema_lib.SchemaError as e:
    raise DdlError(str(e)) from e
  seen = set()
  for column in new:
    column.is_key = False
    column.aggregation = column.aggregation or (
        'REPLACE' if table.keys_type == schema_lib.AGGREGATE else None)
    lowered = column.name.lower()
    if table.column(column.name) is not None or lowered in seen:
      if replay:
        continue
      raise DdlError('Can not add column which already exists in base table: %s' % column.name)
    if not column.nullable and not column.has_default:
      raise DdlError('Can not add column %s without default value, or it should be nullable'
                     % column.name)
    seen.add(lowered)
  new = [c for c in new if c.name.lower() in seen]
  if not new:
    return
  updated = schema_lib.Table(db=table.db, name=table.name, columns=table.columns + new,
                             keys_type=table.keys_type, key_columns=list(table.key_columns),
                             properties=dict(table.properties))
  server.storage.add_columns(updated, new)
  server.catalog.databases[db][tbl] = updated  # loads planned before keep the old schema


def _describe(server, db: str, tbl: str):
  table = server.catalog.table(db, tbl)
  if table is None:
    raise DdlError("Unknown table '%s'" % tbl)
  rows = [(c.name, c.sql_type.lower() if c.type_name != 'STRING' else 'text',
           'Yes' if c.nullable else 'No', 'true' if c.is_key else 'false',
           c.default if c.has_default else None,
           'NONE' if c.is_key else (c.aggregation or 'NONE'))
          for c in table.columns]
  names = ['Field', 'Type', 'Null', 'Key', 'Default', 'Extra']
  return names, rows, ['CHAR'] * len(names)
