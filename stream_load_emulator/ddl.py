"""DDL over the FE's SQL API and MySQL port: CREATE DATABASE / TABLE, ALTER TABLE ... ADD /
DROP / MODIFY / RENAME COLUMN, TRUNCATE TABLE, DROP TABLE, DESC.

What Doris 2.1 answers, with the messages clients match on (``fe/fe-core``:
``alter/SchemaChangeHandler`` ``addColumnInternal``, ``processDropColumn``,
``processModifyColumn``, ``createJob``; ``catalog/Column.checkSchemaChangeAllowed``;
``catalog/ColumnType`` (its ``schemaChangeMatrix``); ``catalog/Env.renameColumn``;
``datasource/InternalCatalog`` ``dropTable``, ``truncateTable``, ``createTable``;
``OlapTable.checkNormalStateForAlter``; ``common/ErrorCode``):

* ``ALTER TABLE [db.]tbl ADD COLUMN c TYPE [NULL|NOT NULL] [DEFAULT v] [COMMENT 's']
  [FIRST|AFTER x]``, ``ADD COLUMN (a T, b U)`` and several ``ADD COLUMN`` clauses: a light
  schema change (instant); rows loaded before hold NULL (or the DEFAULT). An existing
  column (names ignore case): ``Can not add column which already exists in base table: c``;
  a value column ``NOT NULL`` without DEFAULT is refused.
* ``ALTER TABLE [db.]tbl DROP COLUMN c`` (several clauses, mixed with ADD / MODIFY, run in
  order): rows keep their other values. A key column of a UNIQUE table: ``Can not drop key
  column in Unique data model table``; its sequence column: ``Can not drop sequence mapping
  column[c] in Unique data model table[t]``; a key column of an AGGREGATE table with a
  REPLACE value column: ``Can not drop key column when table has value column with REPLACE
  aggregation method`` (without one the rows that then share a key are merged); an unknown
  column: ``Column does not exists: c``; the last key column: ``No key column left.
  index[t]``; a distribution column: ``Distribution column[c] cannot be dropped. index[t]``.
* ``ALTER TABLE [db.]tbl MODIFY COLUMN c TYPE [KEY] [AGG] [NULL|NOT NULL] [DEFAULT v]
  [COMMENT 's']``: stored values are converted to the new type. Allowed changes are Doris's
  ``schemaChangeMatrix`` (TINYINT -> SMALLINT -> INT -> BIGINT -> LARGEINT, integers ->
  FLOAT/DOUBLE/VARCHAR/STRING, FLOAT -> DOUBLE, VARCHAR(n) -> VARCHAR(m >= n) / STRING,
  CHAR -> VARCHAR, VARCHAR -> numbers / DATE / JSON, DECIMAL -> DECIMAL / VARCHAR,
  DATE <-> DATETIME); others: ``Can not change BIGINT to INT`` (Doris's type names after
  2.1's conversions: DATEV2, DATETIMEV2, DECIMAL32/64/128, JSON), ``Cannot shorten string
  length``, ``Can not change from wider type int to narrower type varchar(5)``, ``Can not
  change aggregation type`` (also a key made value or the other way round), ``Can not change
  from nullable to non-nullable``, ``Can not change default value``, ``Column[c] does not
  exists``, ``Can not alter sequence column[c]``, ``Can not modify distribution column[c].
  index[t]``, ``Invalid column order. value should be after key. index[t]``, ``Can not
  assign aggregation method on column in Unique data model table: c`` (Duplicate alike),
  and for a statement that changes nothing ``Nothing is changed. please check your alter
  stmt.``. Without NULL / NOT NULL a key column keeps its nullability and a value column is
  nullable; column positions are accepted, not honoured. Where Doris's asynchronous job would
  be cancelled on a stored value the new type cannot hold (VARCHAR 'abc' -> INT, a DECIMAL
  overflow), the emulator refuses the statement and keeps the rows unchanged.
* ``ALTER TABLE [db.]tbl RENAME COLUMN old new`` (StarRocks flavour: ``old TO new``; a light
  schema change, alone in its statement): the values follow the new name (also for loads
  planned before). ``Same column
  name``, ``Column name[new] is already used``, ``Column[old] does not exists``; a table
  created with ``"light_schema_change" = "false"``: ``not implemented for table without
  column unique id, which are created with property 'light_schema_change'.``
* ALTER on an unknown table: ``Unknown table 'tbl'``. Injected faults on every ALTER form:
  ``schema_change_busy`` answers ``Table[t]'s state(SCHEMA_CHANGE) is not NORMAL. Do not
  allow doing ALTER ops``, ``ddl_denied`` answers Doris's missing-privilege error.
* ``TRUNCATE TABLE [db.]tbl``: every row goes, the table stays; unknown: ``Unknown table
  'tbl'``.
* ``DROP TABLE [IF EXISTS] [db.]tbl [FORCE]``: the table and its rows go; a Stream Load into
  it then answers as for any missing table. Unknown without IF EXISTS: ``Unknown table 'tbl'
  in db`` (MySQL error 1109).
* ``CREATE TABLE [IF NOT EXISTS]`` in Doris syntax (``schema.parse_ddl``): an existing table
  without IF NOT EXISTS: ``Table 'tbl' already exists``; ``STRING``/``JSON``/``FLOAT``/
  ``DOUBLE`` key columns are refused as Doris does.
* ``DESC [db.]tbl``: ``Field, Type, Null, Key, Default, Extra``.

Every DDL is kept in the data directory and replayed at start (``replay``): the replay
rebuilds the catalog, the rows already hold every change, so created, altered, truncated and
dropped tables survive a restart like their rows do. The emulator runs schema changes
synchronously (Doris: a job for heavy changes), keeps no rollups, partitions or comments.
"""

import dataclasses
import logging
import re
from typing import Callable, Dict, List, Optional, Set, Tuple

import sqlglot
from sqlglot.tokens import TokenType

from stream_load_emulator import convert
from stream_load_emulator import schema as schema_lib

_LOGGER = logging.getLogger(__name__)

ER_BAD_DB_ERROR = 1049
ER_UNKNOWN_TABLE = 1109

_ALTER = re.compile(r'^\s*ALTER\s+TABLE\s+([`\w.]+)\s+(\S.*)$', re.I | re.S)
_CLAUSE = re.compile(r'^(ADD|DROP|MODIFY|RENAME)\s+COLUMN\s+(\S.*)$', re.I | re.S)
_CREATE_TABLE = re.compile(r'^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([`\w.]+)', re.I)
_CREATE_DB = re.compile(r'^\s*CREATE\s+(DATABASE|SCHEMA)\s+(IF\s+NOT\s+EXISTS\s+)?([`\w]+)',
                        re.I)
_DESC = re.compile(r'^\s*(DESC|DESCRIBE)\s+([`\w.]+)\s*;?\s*$', re.I)
_TRUNCATE = re.compile(r'^\s*TRUNCATE\s+TABLE\s+([`\w.]+)(\s+PARTITIONS?\b.*)?\s*$',
                       re.I | re.S)
_DROP_TABLE = re.compile(r'^\s*DROP\s+TABLE\s+(IF\s+EXISTS\s+)?([`\w.]+)(\s+FORCE)?\s*$', re.I)
_IDENT = r'(?:`[^`]+`|\w+)'
_POSITION = re.compile(r'\s+(FIRST|AFTER\s+%s)\s*$' % _IDENT, re.I)
_ROLLUP = re.compile(r'\s+FROM\s+(%s)\s*$' % _IDENT, re.I)
_NOT_KEY_TYPES = {'STRING': 'String Type should not be used in key column[%s].',
                  'JSON': 'JSONB or VARIANT type should not be used in key column[%s].',
                  'JSONB': 'JSONB or VARIANT type should not be used in key column[%s].',
                  'FLOAT': 'Float or double can not used as a key, use decimal instead.',
                  'DOUBLE': 'Float or double can not used as a key, use decimal instead.'}

# Doris's ColumnType.schemaChangeMatrix: primitive type -> the types it may change to (and
# itself). Names are Doris's PrimitiveType after 2.1's DATEV2 / DATETIMEV2 / DECIMALV3
# conversions of CREATE TABLE.
_INTS = ('TINYINT', 'SMALLINT', 'INT', 'BIGINT', 'LARGEINT')
_DECIMALS = ('DECIMALV2', 'DECIMAL32', 'DECIMAL64', 'DECIMAL128')
_SCHEMA_CHANGES = {
    'TINYINT': {'SMALLINT', 'INT', 'BIGINT', 'LARGEINT', 'FLOAT', 'DOUBLE', 'VARCHAR',
                'STRING'},
    'SMALLINT': {'INT', 'BIGINT', 'LARGEINT', 'FLOAT', 'DOUBLE', 'VARCHAR', 'STRING'},
    'INT': {'BIGINT', 'LARGEINT', 'FLOAT', 'DOUBLE', 'DATE', 'VARCHAR', 'STRING'},
    'BIGINT': {'LARGEINT', 'FLOAT', 'DOUBLE', 'VARCHAR', 'STRING'},
    'LARGEINT': {'FLOAT', 'DOUBLE', 'VARCHAR', 'STRING'},
    'FLOAT': {'DOUBLE', 'VARCHAR', 'STRING'},
    'DOUBLE': {'VARCHAR', 'STRING'},
    'VARCHAR': set(_INTS) | {'FLOAT', 'DOUBLE', 'DATE', 'DATEV2', 'STRING', 'JSONB'},
    'STRING': {'JSONB'},
    'JSONB': {'STRING', 'VARCHAR'},
    'CHAR': set(_INTS) | {'FLOAT', 'DOUBLE', 'DATE', 'VARCHAR', 'STRING'},
    'DATEV2': {'DATE', 'DATETIME', 'DATETIMEV2'},
    'DATETIMEV2': {'DATE', 'DATETIME', 'DATEV2'},
}
for _decimal in _DECIMALS:
  _SCHEMA_CHANGES[_decimal] = {'VARCHAR', 'STRING'} | set(_DECIMALS)
_NUMERIC = set(_INTS) | {'FLOAT', 'DOUBLE'} | set(_DECIMALS) | {'DECIMAL256'}
_STRINGS = ('CHAR', 'VARCHAR', 'STRING')
# Type.getColumnStringRepSize: the widest text of a number (sign and point included).
_STRING_REP_SIZES = {'TINYINT': 4, 'SMALLINT': 6, 'INT': 11, 'BIGINT': 20, 'LARGEINT': 40,
                     'FLOAT': 24, 'DOUBLE': 32}
_SQL_TYPE_NAMES = {'STRING': 'text', 'TEXT': 'text', 'DATEV2': 'date', 'DATETIMEV2': 'datetime',
                   'DECIMALV3': 'decimal', 'INTEGER': 'int'}


class DdlError(Exception):
  """Doris's answer to a statement it refuses (the server wraps it as errCode = 2).

  ``mysql_code`` is the MySQL error number the MySQL port sends (1105 when None).
  """

  def __init__(self, message: str, mysql_code: Optional[int] = None):
    super().__init__(message)
    self.mysql_code = mysql_code


def is_ddl(stmt: str) -> bool:
  """Whether ``stmt`` is one of the statements this module runs."""
  return bool(_ALTER.match(stmt) or _CREATE_TABLE.match(stmt) or _CREATE_DB.match(stmt)
              or _DESC.match(stmt) or _TRUNCATE.match(stmt) or _DROP_TABLE.match(stmt))


def _name(text: str, db: Optional[str]) -> Tuple[str, str]:
  parts = [p.strip('`') for p in text.split('.')]
  if len(parts) == 2:
    return parts[0], parts[1]
  if not db:
    raise DdlError('No database selected')
  return db, parts[0]


def _unquote(name: str) -> str:
  return name[1:-1] if len(name) > 1 and name[0] == name[-1] == '`' else name


def _target(stmt: str, db: Optional[str]) -> Optional[Tuple[str, str]]:
  """``(db, table)`` a table statement works on, None for the others."""
  for pattern, group in ((_ALTER, 1), (_TRUNCATE, 1), (_DROP_TABLE, 2), (_CREATE_TABLE, 2)):
    match = pattern.match(stmt)
    if match:
      try:
        return _name(match.group(group), db)
      except DdlError:
        return None
  return None


def execute(server, stmt: str, db: Optional[str], replay: bool = False):
  """Runs one DDL statement against ``server``'s catalog and storage.

  With ``replay`` (at start, the statements of earlier runs) only the catalog changes: the
  rows on disk already hold the statement's effect, and statements that no longer apply are
  skipped instead of refused.

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
      _alter(server, *_name(match.group(1), db), match.group(2), replay)
    elif _TRUNCATE.match(stmt):
      _truncate(server, _TRUNCATE.match(stmt), db, replay)
    elif _DROP_TABLE.match(stmt):
      _drop_table(server, _DROP_TABLE.match(stmt), db, replay)
    elif _CREATE_DB.match(stmt):
      _create_database(server, _CREATE_DB.match(stmt))
    else:
      _create_table(server, stmt, db, replay)
    if not replay:
      server.storage.save_ddl(stmt, db)
  return [], [], []


def replay(server) -> None:
  """Replays the DDL kept in the data directory (at start, before anything is served)."""
  touched: Set[Tuple[str, str]] = set()
  for db, stmt in server.storage.load_ddl():
    target = _target(stmt, db)
    if target is not None:
      touched.add(target)
    try:
      execute(server, stmt, db, replay=True)
    except DdlError as e:  # the schema file changed since: the statement no longer applies
      _LOGGER.warning('DDL of an earlier run not replayed (%s): %s', e, stmt[:200])
  for db, tbl in sorted(touched):
    server.storage.reconcile(db, tbl, server.catalog.table(db, tbl))


# --- CREATE -----------------------------------------------------------------------------------

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
  if not replay:
    server.storage.create_table(table)


# --- TRUNCATE / DROP TABLE --------------------------------------------------------------------

def _database_known(server, db_name: str, replay: bool) -> bool:
  """Whether ``db_name`` exists; a replay skips a statement of a database since dropped."""
  if db_name in server.catalog.databases:
    return True
  if replay:
    return False
  raise DdlError("Unknown database '%s'" % db_name, ER_BAD_DB_ERROR)


def _truncate(server, match, db: Optional[str], replay: bool) -> None:
  db_name, tbl = _name(match.group(1), db)
  if not _database_known(server, db_name, replay):
    return
  if server.catalog.table(db_name, tbl) is None:
    if replay:
      return
    raise DdlError("Unknown table '%s'" % tbl)
  if match.group(2):
    raise DdlError('TRUNCATE TABLE ... PARTITION: the emulator keeps no partitions; truncate '
                   'the whole table')
  if not replay:
    server.storage.truncate(db_name, tbl)


def _drop_table(server, match, db: Optional[str], replay: bool) -> None:
  db_name, tbl = _name(match.group(2), db)
  if not _database_known(server, db_name, replay):
    return
  if server.catalog.table(db_name, tbl) is None:
    if match.group(1) or replay:
      return
    raise DdlError("Unknown table '%s' in %s" % (tbl, db_name), ER_UNKNOWN_TABLE)
  if not replay:
    server.storage.drop_table(db_name, tbl)
  del server.catalog.databases[db_name][tbl]


# --- ALTER TABLE ------------------------------------------------------------------------------

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


def _column_defs(body: str) -> List[str]:
  """The column definitions of one ``ADD COLUMN`` clause's body."""
  body = re.sub(r'\s+TO\s+[`\w]+\s*$', '', body, flags=re.I)  # rollup: base only here
  if body.startswith('('):
    return _split_top_level(body[1:body.rindex(')')])
  return [_POSITION.sub('', body)]


def _parse_columns(defs: List[str]) -> List[schema_lib.Column]:
  text = 'CREATE TABLE __alter.__alter (%s)' % ', '.join(defs)
  try:
    return [c for _, t in schema_lib.parse_ddl(text) if t is not None for c in t.columns]
  except schema_lib.SchemaError as e:
    raise DdlError(str(e)) from e


def _clauses(text: str) -> List[Tuple[str, str]]:
  """``[(ADD | DROP | MODIFY | RENAME, body)]`` of an ALTER TABLE's clauses."""
  out = []
  for clause in _split_top_level(text):
    match = _CLAUSE.match(clause)
    if not match:
      raise DdlError('this emulator runs ALTER TABLE ... ADD / DROP / MODIFY / RENAME COLUMN '
                     'only: %s' % clause[:60])
    out.append((match.group(1).upper(), match.group(2).strip()))
  if len(out) > 1 and any(kind == 'RENAME' for kind, _ in out):
    raise DdlError('RENAME COLUMN cannot be combined with other ALTER TABLE clauses')
  return out


def _alter(server, db: str, tbl: str, text: str, replay: bool) -> None:
  table = server.catalog.table(db, tbl)
  if table is None:
    raise DdlError("Unknown table '%s'" % tbl)
  clauses = _clauses(text)
  if not replay and server.faults.take('schema_change_busy', 'fe', 0, db, tbl):
    raise DdlError("Table[%s]'s state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER "
                   'ops' % tbl)
  if not replay and server.faults.take('ddl_denied', 'fe', 0, db, tbl):
    raise DdlError("Access denied; you need (at least one of) the (ALTER) privilege(s) on "
                   "TABLE %s for this operation" % tbl)
  if clauses[0][0] == 'RENAME':
    _rename_column(server, table, clauses[0][1], replay)
  else:
    _schema_change(server, table, clauses, replay)


def _schema_change(server, table: schema_lib.Table, clauses, replay: bool) -> None:
  """ADD / DROP / MODIFY COLUMN clauses, applied in order to a copy of the schema, checked as
  Doris's ``SchemaChangeHandler`` does, then written to the catalog and the rows at once."""
  change = _Change(table)
  for kind, body in clauses:
    if kind == 'ADD':
      change.add(_parse_columns(_column_defs(body)), replay)
    elif kind == 'DROP':
      change.drop(body)
    else:
      change.modify(body)
  updated = change.finish()
  if updated is None:
    return
  if not replay:
    if change.dropped or change.converters:
      try:
        server.storage.rewrite(table, updated, change.converters)
      except convert.ConversionError as e:
        raise DdlError(str(e)) from e
    else:
      server.storage.add_columns(updated, change.added)
  server.catalog.databases[table.db][table.name] = updated  # planned loads keep their schema


class _Change:
  """One ALTER TABLE's schema change, built clause by clause."""

  def __init__(self, table: schema_lib.Table):
    self.table = table
    self.columns = [dataclasses.replace(c) for c in table.columns]
    self.added: List[schema_lib.Column] = []
    self.dropped: List[schema_lib.Column] = []
    self.modified: List[Tuple[schema_lib.Column, schema_lib.Column]] = []
    self.commented = False
    self.converters: Dict[str, Callable] = {}

  def _find(self, name: str) -> Optional[int]:
    for i, column in enumerate(self.columns):
      if column.name.lower() == name.lower():
        return i
    return None

  def _check_rollup(self, body: str) -> str:
    match = _ROLLUP.search(body)
    if not match:
      return body
    rollup = _unquote(match.group(1))
    if rollup != self.table.name:
      raise DdlError('Index[%s] does not exist in table[%s]' % (rollup, self.table.name))
    raise DdlError('Do not need to assign base index[%s] to do schema change' % rollup)

  def add(self, new: List[schema_lib.Column], replay: bool) -> None:
    for column in new:
      column.is_key = False
      column.aggregation = column.aggregation or (
          'REPLACE' if self.table.keys_type == schema_lib.AGGREGATE else None)
      if self._find(column.name) is not None:
        if replay:
          continue
        raise DdlError('Can not add column which already exists in base table: %s'
                       % column.name)
      if not column.nullable and not column.has_default:
        raise DdlError('Can not add column %s without default value, or it should be '
                       'nullable' % column.name)
      self.columns.append(column)
      self.added.append(column)

  def drop(self, body: str) -> None:
    body = self._check_rollup(body)
    if not re.fullmatch(_IDENT, body):
      raise DdlError('DROP COLUMN takes one column name: %s' % body[:60])
    name = _unquote(body)
    table, index = self.table, self._find(name)
    column = self.columns[index] if index is not None else None
    if table.keys_type in (schema_lib.UNIQUE, schema_lib.PRIMARY):
      if column is not None and column.is_key:
        raise DdlError('Can not drop key column in Unique data model table')
      if table.sequence_col and name.lower() == table.sequence_col.lower():
        raise DdlError('Can not drop sequence mapping column[%s] in Unique data model '
                       'table[%s]' % (name, table.name))
    elif table.keys_type == schema_lib.AGGREGATE and column is not None and column.is_key:
      if any(c.aggregation in ('REPLACE', 'REPLACE_IF_NOT_NULL') for c in self.columns):
        raise DdlError('Can not drop key column when table has value column with REPLACE '
                       'aggregation method')
    if column is None:
      raise DdlError('Column does not exists: %s' % name)
    del self.columns[index]
    self.dropped.append(column)

  def modify(self, body: str) -> None:
    table = self.table
    body = _POSITION.sub('', self._check_rollup(body))
    [new] = _parse_columns([body])
    flags = _definition_flags(body)
    model = table.keys_type
    if model == schema_lib.AGGREGATE:
      new.is_key = new.aggregation is None  # Doris: no aggregation method -> a key column
    elif new.aggregation is not None:
      raise DdlError('Can not assign aggregation method on column in %s data model table: %s'
                     % ('Duplicate' if model == schema_lib.DUPLICATE else 'Unique', new.name))
    else:
      new.is_key = flags['key']
    index = self._find(new.name)
    if index is None:
      raise DdlError('Column[%s] does not exists' % new.name)
    old = self.columns[index]
    new.name = old.name
    if flags['null'] is None:
      new.nullable = old.nullable if old.is_key else True
    self.commented = self.commented or flags['comment']
    if (table.is_unique and table.sequence_col and new.name.lower() ==
        table.sequence_col.lower() and _definition(new, model) != _definition(old, model)):
      raise DdlError('Can not alter sequence column[%s]' % new.name)
    self.columns[index] = new
    self.modified.append((old, new))

  def finish(self) -> Optional[schema_lib.Table]:
    """The new table after the checks Doris's ``createJob`` makes; None if nothing changed."""
    table, model = self.table, self.table.keys_type
    changed = [(old, new) for old, new in self.modified
               if _definition(old, model) != _definition(new, model)]
    if not (self.added or self.dropped or changed):
      if self.commented:
        return None  # a comment-only change (the emulator keeps no comments)
      raise DdlError('Nothing is changed. please check your alter stmt.')
    # Doris's light schema change (value columns added or dropped, a VARCHAR made longer) is
    # a metadata edit; anything else is a job whose createJob checks the whole new schema.
    light = (table.properties.get('light_schema_change', 'true').lower() != 'false' and
             not any(c.is_key for c in self.dropped) and
             all(_primitive(old) == _primitive(new) == 'VARCHAR' for old, new in changed))
    if not light:
      seen_value, has_key = False, False
      for column in self.columns:
        if column.is_key and seen_value:
          raise DdlError('Invalid column order. value should be after key. index[%s]'
                         % table.name)
        seen_value = seen_value or not column.is_key
        has_key = has_key or column.is_key
      if not has_key:
        raise DdlError('No key column left. index[%s]' % table.name)
    for old, new in changed:
      _check_schema_change(old, new, model)
    distribution = set() if light else {c.lower() for c in table.distribution_columns}
    for old, new in changed:
      if old.name.lower() in distribution:
        raise DdlError('Can not modify distribution column[%s]. index[%s]'
                       % (old.name, table.name))
    for column in self.dropped:
      if column.name.lower() in distribution:
        raise DdlError('Distribution column[%s] cannot be dropped. index[%s]'
                       % (column.name, table.name))
    for old, new in changed:
      if old.is_key == new.is_key and _sqlite_value_changes(old, new):
        self.converters[new.name] = _converter(new)
    keys = [c.name for c in self.columns if c.is_key]
    return dataclasses.replace(table, columns=self.columns, key_columns=keys,
                               properties=dict(table.properties),
                               distribution=None if table.distribution is None
                               else list(table.distribution))


def _definition_flags(body: str) -> Dict[str, Optional[bool]]:
  """What a column definition writes out: KEY, NULL / NOT NULL (None: neither), COMMENT."""
  flags: Dict[str, Optional[bool]] = {'key': False, 'null': None, 'comment': False}
  previous = None
  depth = 0
  for tok in sqlglot.Dialect.get_or_raise('doris').tokenize(body)[1:]:  # after the name
    tt = tok.token_type
    depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tt, 0)
    if depth == 0:
      if tt == TokenType.KEY:
        flags['key'] = True
      elif tt == TokenType.NULL and previous == TokenType.NOT:
        flags['null'] = False
      elif tt == TokenType.NULL and previous != TokenType.DEFAULT:
        flags['null'] = True
      elif tt == TokenType.COMMENT:
        flags['comment'] = True
    previous = tt
  return flags


def _primitive(column: schema_lib.Column) -> str:
  """Doris 2.1's PrimitiveType of a column (DATE -> DATEV2, DECIMAL(p, s) -> DECIMAL64 ...)."""
  t = column.type_name.upper()
  if t in ('DECIMAL', 'DECIMALV3', 'NUMERIC'):
    precision = int(column.params[0]) if column.params else 9
    return ('DECIMAL32' if precision <= 9 else 'DECIMAL64' if precision <= 18 else
            'DECIMAL128' if precision <= 38 else 'DECIMAL256')
  return {'INTEGER': 'INT', 'BOOL': 'BOOLEAN', 'TEXT': 'STRING', 'DATE': 'DATEV2',
          'DATETIME': 'DATETIMEV2', 'TIMESTAMP': 'DATETIMEV2', 'JSON': 'JSONB'}.get(t, t)


def _type_sql(column: schema_lib.Column) -> str:
  """A type as Doris's ``Type.toSql`` prints it (``int``, ``varchar(5)``)."""
  name = _SQL_TYPE_NAMES.get(column.type_name.upper(), column.type_name.lower())
  if column.params and name != 'text':
    name += '(%s)' % ','.join(str(p) for p in column.params)
  return name


def _string_length(column: schema_lib.Column) -> int:
  if _primitive(column) == 'STRING':
    return 2147483647
  if column.params:
    return int(column.params[0])
  return 1 if column.type_name.upper() == 'CHAR' else 65533


def _string_rep_size(column: schema_lib.Column) -> int:
  primitive = _primitive(column)
  if primitive in _STRING_REP_SIZES:
    return _STRING_REP_SIZES[primitive]
  precision = int(column.params[0]) if column.params else 9
  return precision + 2  # DECIMAL: sign and point


def _aggregation(column: schema_lib.Column, model: str) -> Optional[str]:
  """Doris's aggregation type: None for keys, implicit REPLACE / NONE for values of UNIQUE /
  DUPLICATE tables."""
  if column.is_key:
    return None
  if model == schema_lib.AGGREGATE:
    return column.aggregation
  return 'REPLACE' if model in (schema_lib.UNIQUE, schema_lib.PRIMARY) else 'NONE'


def _default(column: schema_lib.Column) -> Optional[str]:
  return column.default if column.has_default else None


def _definition(column: schema_lib.Column, model: str) -> tuple:
  """What makes two definitions of a column equal (Doris's ``Column.equals``, no comment)."""
  return (column.type_name.upper(), tuple(str(p) for p in column.params), column.nullable,
          _default(column), _aggregation(column, model), column.is_key)


def _check_schema_change(old: schema_lib.Column, new: schema_lib.Column, model: str) -> None:
  """Doris's ``Column.checkSchemaChangeAllowed``: the refusals in its order."""
  src, dst = _primitive(old), _primitive(new)
  if src != dst and dst not in _SCHEMA_CHANGES.get(src, ()):
    names = {'JSONB': 'JSON'}
    raise DdlError('Can not change %s to %s' % (names.get(src, src), names.get(dst, dst)))
  if src in _NUMERIC and dst in _STRINGS and _string_length(new) < _string_rep_size(old):
    raise DdlError('Can not change from wider type %s to narrower type %s'
                   % (_type_sql(old), _type_sql(new)))
  if _aggregation(old, model) != _aggregation(new, model):
    raise DdlError('Can not change aggregation type')
  if old.nullable and not new.nullable:
    raise DdlError('Can not change from nullable to non-nullable')
  if _default(old) != _default(new):
    raise DdlError('Can not change default value')
  if (src, dst) in (('VARCHAR', 'VARCHAR'), ('CHAR', 'VARCHAR'), ('CHAR', 'CHAR')) and (
      _string_length(old) > _string_length(new)):
    raise DdlError('Cannot shorten string length')


def _sqlite_value_changes(old: schema_lib.Column, new: schema_lib.Column) -> bool:
  """Whether the stored values need converting (a longer VARCHAR or a NULL / DEFAULT change
  keeps them)."""
  return (convert.sqlite_type(old) != convert.sqlite_type(new) or
          old.type_name.upper() != new.type_name.upper() or
          (_primitive(new) not in _STRINGS and old.params != new.params))


def _converter(column: schema_lib.Column) -> Callable:
  """Stored value of the old type -> the new type's (raises ``convert.ConversionError``)."""
  to_new = convert.make_converter(column)

  def fix(value):
    try:
      return to_new(value if isinstance(value, (str, int, float)) else str(value))
    except convert.ConversionError as e:
      raise convert.ConversionError(
          'Can not modify column %s: the stored value %s does not fit %s (%s); the rows are '
          'unchanged' % (column.name, value, _type_sql(column), e)) from e
  return fix


def _rename_column(server, table: schema_lib.Table, body: str, replay: bool) -> None:
  """Doris's ``Env.renameColumn`` (light schema change: the rows are not rewritten)."""
  to = r'\s+TO' if server.flavor == 'starrocks' else ''  # StarRocks: RENAME COLUMN a TO b
  match = re.fullmatch(r'(%s)%s\s+(%s)' % (_IDENT, to, _IDENT), body, re.I)
  if not match:
    raise DdlError('RENAME COLUMN takes the old and the new name: RENAME COLUMN old %snew'
                   % ('TO ' if to else ''))
  old, new = _unquote(match.group(1)), _unquote(match.group(2))
  if old.lower() == new.lower():
    raise DdlError('Same column name')
  if table.properties.get('light_schema_change', 'true').lower() == 'false':
    raise DdlError("not implemented for table without column unique id, which are created "
                   "with property 'light_schema_change'.")
  if table.column(new) is not None:
    if replay:
      return
    raise DdlError('Column name[%s] is already used' % new)
  column = table.column(old)
  if column is None:
    raise DdlError('Column[%s] does not exists' % old)

  def renamed(name: str) -> str:
    return new if name.lower() == column.name.lower() else name
  properties = dict(table.properties)
  if table.sequence_col:
    properties['function_column.sequence_col'] = renamed(table.sequence_col)
  updated = dataclasses.replace(
      table, columns=[dataclasses.replace(c, name=renamed(c.name)) for c in table.columns],
      key_columns=[renamed(k) for k in table.key_columns], properties=properties,
      distribution=None if table.distribution is None else
      [renamed(d) for d in table.distribution])
  if not replay:
    server.storage.rename_column(updated, column.name, new)
  server.catalog.databases[table.db][table.name] = updated


# --- DESC -------------------------------------------------------------------------------------

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
