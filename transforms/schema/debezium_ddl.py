"""Debezium schema change events -> the schema changes a Doris / StarRocks table follows.

Pure functions, no I/O.  A Debezium connector (MySQL, MariaDB, SQL Server, Oracle, Db2) writes
one record per DDL to its *schema change topic*, the topic named ``<topic.prefix>``; its value
(JSON with or without the ``{"schema": ..., "payload": ...}`` envelope, or Avro decoded to the
same dict shape) reads::

  {"source": {..., "db": "inventory", "file": "mysql-bin.000003", "pos": 570},
   "ts_ms": 1651535750218, "databaseName": "inventory", "schemaName": null,
   "ddl": "ALTER TABLE customers ADD middle_name varchar(255) AFTER first_name",
   "tableChanges": [{"type": "ALTER", "id": "\\"inventory\\".\\"customers\\"",
                     "table": {"defaultCharsetName": "utf8mb4", "primaryKeyColumnNames": ["id"],
                               "comment": null,
                               "columns": [{"name": "id", "jdbcType": 4, "typeName": "INT",
                                            "typeExpression": "INT", "length": null,
                                            "scale": null, "position": 1, "optional": false,
                                            "autoIncremented": true, "comment": null,
                                            "defaultValueExpression": null, ...}, ...]}}]}

``tableChanges[].table`` is the whole table *after* the DDL, so an ``ALTER`` is planned by
diffing it with the table before.  Four steps, each a function:

* ``parse_schema_change(value)`` -> ``[TableChange]``: ``create``, ``alter``, ``drop``, ``rename``
  (a table rename: its ``id`` is ``"old","new"``), and -- from the ``ddl`` text alone, since some
  versions send no ``tableChanges`` for them -- ``truncate`` and ``drop``.  Other DDL without
  ``tableChanges`` (``CREATE DATABASE``, ``CREATE INDEX``...) gives ``[]``.
* ``plan_changes(previous, change)`` -> ``[SchemaOp]``: ``CreateTable``, ``AddColumn``,
  ``DropColumn``, ``RenameColumn``, ``ModifyColumn``, ``DropTable``, ``TruncateTable``, in the
  order the DDL applies them.  A rename is read from the DDL text only (``RENAME COLUMN a TO b``,
  MySQL's ``CHANGE [COLUMN] a b type``), never guessed from column positions or types: without
  it a renamed column is a dropped one and an added one.
* ``policy_allows(op, policy, change_types)`` / ``apply_policy(ops, ...)``: which ops a schema
  evolution policy (``none``, ``add_columns``, ``lenient``, ``evolve``) applies.
* ``render(op, table, dialect)``: the SQL of one op for Doris or StarRocks.

Column types (``doris_type``) follow flink-doris-connector (``MysqlType.toDorisType`` and
``PostgresType.toDorisType`` in apache/doris-flink-connector's ``tools/cdc``); where this
differs, it follows how this loader carries the values:

========================================  ============================================
source ``typeName`` (length, scale)       Doris type
========================================  ============================================
BOOLEAN, BOOL, BIT(1)                     BOOLEAN
TINYINT(1)                                BOOLEAN (``tinyint1_as_boolean=False``:
                                          TINYINT)
TINYINT                                   TINYINT
TINYINT UNSIGNED, SMALLINT                SMALLINT
SMALLINT UNSIGNED, MEDIUMINT, INT, YEAR   INT
MEDIUMINT UNSIGNED, INT UNSIGNED, BIGINT  BIGINT
BIGINT UNSIGNED, SERIAL                   LARGEINT
DECIMAL, NUMERIC, FIXED (p, s)            DECIMAL(p, s); p > 38: STRING; no p: (10, 0)
FLOAT; FLOAT(p > 24)                      FLOAT; DOUBLE
DOUBLE, REAL, DOUBLE PRECISION            DOUBLE
DATE                                      DATE
DATETIME(n), TIMESTAMP(n)                 DATETIME(min(n, 6)) (n = 0: DATETIME)
TIME                                      STRING
CHAR(n)                                   CHAR(3n) if 3n <= 255, else as VARCHAR(n)
VARCHAR(n)                                VARCHAR(3n) (UTF-8 bytes); 3n > 65533: STRING
TEXT kinds, ENUM, SET                     STRING
BINARY, VARBINARY, BLOB kinds             STRING (Debezium sends bytes as base64 text)
BIT(n > 1)                                STRING (Debezium's ``Bits`` are bytes: base64
                                          text, as ``avro_schema`` maps them)
JSON                                      JSON
Postgres int2, int4, int8 (serials too)   SMALLINT, INT, BIGINT
Postgres numeric(p, s)                    DECIMAL(p, s); no p or p > 38: STRING
Postgres float4, float8                   FLOAT, DOUBLE
Postgres bpchar(n), varchar(n)            as CHAR(n), VARCHAR(n); text: STRING
Postgres timestamp, timestamptz           DATETIME(min(scale, 6)); no scale: DATETIME(6)
Postgres date; time, timetz, interval     DATE; STRING
Postgres bool, bit(1); bit(n), varbit     BOOLEAN; STRING
Postgres json, jsonb; uuid                JSON; VARCHAR(36)
Postgres bytea, inet, cidr, macaddr,      STRING
geometric types
========================================  ============================================

A type not in the table (MySQL spatial types, SQL Server's and Oracle's names, Postgres
arrays...) raises ``UnsupportedSchemaChange``.  A primary key column's type is made key-able
with ``types.key_type`` (``STRING`` -> ``VARCHAR(65533)``; StarRocks: ``VARCHAR(128)``).
StarRocks's ``DATETIME`` takes no precision: ``render`` writes ``DATETIME`` there.

What a created table looks like follows the loader's own (``evolution.create_statement``): a
source primary key makes a ``UNIQUE KEY`` table (StarRocks ``PRIMARY KEY``), key columns
``NOT NULL`` and first; no primary key a ``DUPLICATE KEY`` table on the first column that can be
a key; value columns are always ``NULL`` without a ``DEFAULT`` (added and modified columns
likewise, so that ``ADD COLUMN`` stays a light schema change: rows loaded before an added column
read ``NULL`` there, whatever its default in the source); comments are kept.
"""

from __future__ import annotations

import dataclasses
import re
from typing import (Any, ClassVar, Collection, Dict, FrozenSet, Iterable, List, Mapping, Optional,
                    Sequence, Tuple, Union)

import orjson

from transforms.errors import ConfigFault, RowFault
from transforms.records.reasons import BAD_ENVELOPE, Reject, json_type
from transforms.records.routing import SOURCE_COLUMNS, SourceNaming
from transforms.schema import types
from transforms.schema.config import (ADD_COLUMNS, CHANGE_TYPES, EVOLVE, LENIENT, MODES, NONE,
                                      TableDdlOptions)

__all__ = [
    'Column', 'TableChange', 'TableSchema', 'CreateTable', 'AddColumn', 'DropColumn',
    'RenameColumn', 'ModifyColumn', 'DropTable', 'TruncateTable', 'SchemaOp',
    'BadSchemaChange', 'UnsupportedSchemaChange', 'parse_schema_change', 'doris_type',
    'is_widening', 'plan_changes', 'render', 'policy_allows', 'apply_policy', 'target_table',
    'POLICIES', 'CHANGE_TYPES', 'DORIS', 'STARROCKS_DIALECT',
]

CREATE, ALTER, DROP, TRUNCATE, RENAME = 'create', 'alter', 'drop', 'truncate', 'rename'
KINDS = (CREATE, ALTER, DROP, TRUNCATE, RENAME)
DORIS = 'doris'
STARROCKS_DIALECT = 'starrocks'
DIALECTS = (DORIS, STARROCKS_DIALECT)

# Schema evolution policies, and the change types a ``change_types`` set may list.
POLICIES = MODES

# The source position fields a schema change may carry (MySQL binlog, Postgres LSN, SQL Server
# LSNs, Oracle SCNs): kept, in this order, as ``TableChange.position``.
_POSITION_FIELDS = ('file', 'pos', 'row', 'gtid', 'lsn', 'change_lsn', 'commit_lsn', 'scn',
                    'commit_scn', 'event_serial_no')
_SOURCE_TYPE = types.key_type(types.STRING)  # the type of a merged family's SOURCE_COLUMNS
_MAX_DECIMAL_PRECISION = 38
_MAX_VARCHAR = 65533
_MAX_CHAR = 255
_MAX_DATETIME_PRECISION = 6
_ZERO_PRECISION_DATETIME_SIZE = 19  # 'YYYY-MM-DD HH:MM:SS' (a JDBC column size, not a precision)


# -- errors


class BadSchemaChange(Reject):
  """A schema change record that cannot be read: says which field is missing or wrong.

  A ``Reject`` (a ``RowFault``) with code ``bad_envelope``: it is dead-lettered like any other
  record that cannot be read.
  """

  def __init__(self, detail: str, table: Optional[str] = None):
    super().__init__(BAD_ENVELOPE, f'Debezium schema change: {detail}', table)


class UnsupportedSchemaChange(RowFault, ValueError):
  """A schema change this loader cannot apply: a column type it has no Doris type for, a
  changed primary key, a table rename, a primary key column that cannot be a Doris key.

  The record is fine; the caller decides (hold the table's rows, or dead-letter them).
  """

  def __init__(self, detail: str, table: Optional[str] = None):
    super().__init__(detail)
    self.detail = detail
    self.table = table


# -- what a schema change says


@dataclasses.dataclass(frozen=True)
class Column:
  """One column of a source table, typed for Doris.

  Attributes:
    name: as the source spells it.
    doris_type: its Doris type (key-able for a primary key column).
    nullable: the source's ``optional`` (informational: value columns are created ``NULL``).
    comment: the source's column comment.
    default: the source's ``defaultValueExpression`` (informational: never rendered).
    source_type: the source's type, e.g. ``'VARCHAR(255)'``, ``'INT UNSIGNED'``.
  """
  name: str
  doris_type: str
  nullable: bool = True
  comment: Optional[str] = None
  default: Optional[str] = None
  source_type: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TableChange:
  """One table's change in a schema change event.

  Attributes:
    kind: ``create``, ``alter``, ``drop``, ``truncate`` or ``rename`` (a table rename).
    db: the source database.
    table: the source table (after a rename: the new name).
    columns: the table after the change, in ``position`` order (``()`` for drop / truncate).
    primary_key: its primary key columns, in key order.
    comment: the table comment.
    ddl: the DDL text (may hold several statements).
    schema: the source schema (SQL Server, Oracle, Postgres), else None.
    renamed_from: ``(db, table)`` before a table rename, else None.
    position: ``(field, value)`` pairs of the source position present in ``source``
      (``file``/``pos``/``row``/``gtid`` for MySQL, ``lsn`` ..., see ``_POSITION_FIELDS``).
    ts_ms: the event's ``ts_ms`` (or ``source.ts_ms``), if any.
    connector: ``source.connector`` (``mysql``, ``postgresql``...), if any.
  """
  kind: str
  db: str
  table: str
  columns: Tuple[Column, ...] = ()
  primary_key: Tuple[str, ...] = ()
  comment: Optional[str] = None
  ddl: str = ''
  schema: Optional[str] = None
  renamed_from: Optional[Tuple[str, str]] = None
  position: Tuple[Tuple[str, Any], ...] = ()
  ts_ms: Optional[int] = None
  connector: Optional[str] = None

  @property
  def source_values(self) -> Tuple[str, str]:
    """The ``SOURCE_COLUMNS`` values of this table's rows in a merged family (as the parser
    writes them: ``(db, 'schema.table' or 'table')``)."""
    return (self.db or '', f'{self.schema}.{self.table}' if self.schema else self.table)

  @property
  def qualified(self) -> str:
    return '.'.join(part for part in (self.db, self.schema, self.table) if part)


@dataclasses.dataclass(frozen=True)
class TableSchema:
  """What a table looks like: the ``previous`` of ``plan_changes``.

  Attributes:
    columns: in order.
    primary_key: the key (``()``: unknown, or none).
    comment: the table comment.
  """
  columns: Tuple[Column, ...]
  primary_key: Tuple[str, ...] = ()
  comment: Optional[str] = None

  @classmethod
  def of(cls, change: TableChange) -> 'TableSchema':
    """The table after ``change`` (the previous of the next change to it)."""
    return cls(change.columns, change.primary_key, change.comment)

  @classmethod
  def from_columns(cls, columns: Iterable[Tuple[str, str]],
                   primary_key: Sequence[str] = ()) -> 'TableSchema':
    """From a target's ``(name, type)`` pairs (``DESC``, ``FeSqlClient.table_columns``)."""
    return cls(tuple(Column(name, type_name) for name, type_name in columns), tuple(primary_key))


# -- schema ops


@dataclasses.dataclass(frozen=True)
class CreateTable:
  columns: Tuple[Column, ...]
  primary_key: Tuple[str, ...] = ()
  comment: Optional[str] = None
  change_type: ClassVar[str] = 'create_table'


@dataclasses.dataclass(frozen=True)
class AddColumn:
  column: Column
  change_type: ClassVar[str] = 'add_column'


@dataclasses.dataclass(frozen=True)
class DropColumn:
  name: str
  key: bool = False  # a key column (Doris refuses to drop one of a unique-key table)
  change_type: ClassVar[str] = 'drop_column'


@dataclasses.dataclass(frozen=True)
class RenameColumn:
  old: str
  new: str
  column: Column  # the column after the rename (what ``lenient`` adds instead)
  change_type: ClassVar[str] = 'rename_column'


@dataclasses.dataclass(frozen=True)
class ModifyColumn:
  """A column's type changes.  ``narrowing``: the change is not one ``is_widening`` knows
  (values may not fit): never applied by a policy."""
  name: str
  old_type: str
  new_type: str
  narrowing: bool = False
  key: bool = False
  comment: Optional[str] = None
  change_type: ClassVar[str] = 'modify_column'


@dataclasses.dataclass(frozen=True)
class DropTable:
  """``source``: set for a merged family's target (its rows of that source are deleted)."""
  source: Optional[Tuple[str, str]] = None
  change_type: ClassVar[str] = 'drop_table'


@dataclasses.dataclass(frozen=True)
class TruncateTable:
  """``source``: set for a merged family's target (its rows of that source are deleted)."""
  source: Optional[Tuple[str, str]] = None
  change_type: ClassVar[str] = 'truncate_table'


SchemaOp = Union[CreateTable, AddColumn, DropColumn, RenameColumn, ModifyColumn, DropTable,
                 TruncateTable]


# -- a small MySQL / ANSI SQL tokenizer (DDL text: names, renames, truncates, drops)

_TOKEN = re.compile(r"""
   (?P<ws>\s+)
  |(?P<comment>--(?=\s|$)[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
  |(?P<bq>`(?:[^`]|``)*`)
  |(?P<dq>"(?:[^"\\]|\\.|"")*")
  |(?P<sq>'(?:[^'\\]|\\.|'')*')
  |(?P<word>[\w$]+)
  |(?P<punct>.)
""", re.X | re.S)


@dataclasses.dataclass(frozen=True)
class _Tok:
  kind: str  # word, bq, dq, sq, punct
  value: str


def _tokens(text: str) -> List[_Tok]:
  out = []
  for match in _TOKEN.finditer(text):
    kind = match.lastgroup
    raw = match.group()
    if kind in ('ws', 'comment'):
      continue
    if kind == 'bq':
      raw = raw[1:-1].replace('``', '`')
    elif kind == 'dq':
      raw = raw[1:-1].replace('""', '"')
    elif kind == 'sq':
      raw = raw[1:-1]
    out.append(_Tok(kind, raw))
  return out


def _statements(text: str) -> List[List[_Tok]]:
  statements, current = [], []
  for tok in _tokens(text or ''):
    if tok.kind == 'punct' and tok.value == ';':
      if current:
        statements.append(current)
      current = []
    else:
      current.append(tok)
  if current:
    statements.append(current)
  return statements


def _is(tok: Optional[_Tok], *words: str) -> bool:
  return tok is not None and tok.kind == 'word' and tok.value.upper() in words


def _punct(tok: Optional[_Tok], char: str) -> bool:
  return tok is not None and tok.kind == 'punct' and tok.value == char


def _ident(tok: Optional[_Tok]) -> Optional[str]:
  return tok.value if tok is not None and tok.kind in ('word', 'bq', 'dq') else None


def _at(toks: Sequence[_Tok], i: int) -> Optional[_Tok]:
  return toks[i] if 0 <= i < len(toks) else None


def _qualified_name(toks: Sequence[_Tok], i: int) -> Tuple[List[str], int]:
  """``a.b.c`` at ``i``: its parts and the index after it."""
  parts = []
  name = _ident(_at(toks, i))
  while name is not None:
    parts.append(name)
    i += 1
    if not _punct(_at(toks, i), '.'):
      break
    i += 1
    name = _ident(_at(toks, i))
  return parts, i


def _split_top(toks: Sequence[_Tok], start: int = 0) -> List[List[_Tok]]:
  """``toks[start:]`` cut at commas outside parentheses."""
  pieces, current, depth = [], [], 0
  for tok in toks[start:]:
    if tok.kind == 'punct':
      if tok.value == '(':
        depth += 1
      elif tok.value == ')':
        depth -= 1
      elif tok.value == ',' and depth == 0:
        pieces.append(current)
        current = []
        continue
    current.append(tok)
  if current:
    pieces.append(current)
  return pieces


def _skip(toks: Sequence[_Tok], i: int, *words: str) -> int:
  while _is(_at(toks, i), *words):
    i += 1
  return i


def _skip_if_exists(toks: Sequence[_Tok], i: int) -> int:
  if _is(_at(toks, i), 'IF'):
    j = i + 1
    if _is(_at(toks, j), 'NOT'):
      j += 1
    if _is(_at(toks, j), 'EXISTS'):
      return j + 1
  return i


# Words after ADD / DROP that name no column (an unquoted column cannot be one of these).
_NOT_COLUMNS = frozenset({'INDEX', 'KEY', 'PRIMARY', 'UNIQUE', 'FULLTEXT', 'SPATIAL',
                          'CONSTRAINT', 'FOREIGN', 'CHECK', 'PARTITION', 'PARTITIONS',
                          'SUBPARTITION', 'PERIOD', 'SYSTEM', 'DEFAULT'})


def _column_at(toks: Sequence[_Tok], i: int) -> Optional[str]:
  tok = _at(toks, i)
  if tok is None or (tok.kind == 'word' and tok.value.upper() in _NOT_COLUMNS):
    return None
  return _ident(tok)


def _alter_clauses(clause: Sequence[_Tok]) -> List[Tuple[str, ...]]:
  """What one ``ALTER TABLE`` clause does to columns: ``('add', c)``, ``('drop', c)``,
  ``('modify', c)``, ``('change', old, new)``, ``('rename', old, new)``; ``[]`` for others."""
  head = _at(clause, 0)
  if _is(head, 'ADD'):
    i = _skip_if_exists(clause, _skip(clause, 1, 'COLUMN'))
    if _punct(_at(clause, i), '('):
      inner = clause[i + 1:]
      if inner and _punct(inner[-1], ')'):
        inner = inner[:-1]
      names = [_column_at(piece, 0) for piece in _split_top(inner)]
      return [('add', name) for name in names if name is not None]
    name = _column_at(clause, i)
    return [('add', name)] if name is not None else []
  if _is(head, 'DROP'):
    name = _column_at(clause, _skip_if_exists(clause, _skip(clause, 1, 'COLUMN')))
    return [('drop', name)] if name is not None else []
  if _is(head, 'MODIFY'):
    name = _ident(_at(clause, _skip_if_exists(clause, _skip(clause, 1, 'COLUMN'))))
    return [('modify', name)] if name is not None else []
  if _is(head, 'CHANGE'):
    i = _skip_if_exists(clause, _skip(clause, 1, 'COLUMN'))
    old, new = _ident(_at(clause, i)), _ident(_at(clause, i + 1))
    return [('change', old, new)] if old is not None and new is not None else []
  if _is(head, 'RENAME') and _is(_at(clause, 1), 'COLUMN'):
    old, new = _ident(_at(clause, 2)), _ident(_at(clause, 4))
    if old is not None and new is not None and _is(_at(clause, 3), 'TO'):
      return [('rename', old, new)]
  return []


def _names_table(parts: Sequence[str], change: TableChange) -> bool:
  if not parts or parts[-1].lower() != change.table.lower():
    return False
  owners = {name.lower() for name in (change.db, change.schema) if name}
  return all(part.lower() in owners for part in parts[:-1]) if owners else True


def _alter_events(change: TableChange) -> List[Tuple[str, ...]]:
  """The column clauses of the DDL's ``ALTER TABLE`` statements on ``change``'s table, in
  order."""
  events: List[Tuple[str, ...]] = []
  for toks in _statements(change.ddl):
    if not _is(_at(toks, 0), 'ALTER'):
      continue
    i = _skip(toks, 1, 'ONLINE', 'OFFLINE', 'IGNORE')
    if not _is(_at(toks, i), 'TABLE'):
      continue
    i = _skip(toks, _skip_if_exists(toks, i + 1), 'ONLY')
    parts, i = _qualified_name(toks, i)
    if not _names_table(parts, change):
      continue
    for clause in _split_top(toks, i):
      events.extend(_alter_clauses(clause))
  return events


def _ddl_table_changes(ddl: str, default_db: str, base: Mapping[str, Any]) -> List[TableChange]:
  """``TRUNCATE`` and ``DROP TABLE`` statements of a DDL text, as changes."""
  changes = []
  for toks in _statements(ddl):
    if _is(_at(toks, 0), 'TRUNCATE'):
      i = _skip(toks, 1, 'TABLE', 'ONLY')
      names = [_qualified_name(toks, i)[0]]
      kind = TRUNCATE
    elif _is(_at(toks, 0), 'DROP') and _is(_at(toks, 1), 'TABLE', 'TABLES'):
      names = [_qualified_name(piece, 0)[0]
               for piece in _split_top(toks, _skip_if_exists(toks, 2))]
      kind = DROP
    else:
      continue
    for parts in names:
      if not parts:
        continue
      db = parts[-2] if len(parts) >= 2 else default_db
      if not db:
        raise BadSchemaChange(f'{kind.upper()} of {parts[-1]!r} names no database and the '
                              f'event has no "databaseName"')
      changes.append(TableChange(kind=kind, db=db, table=parts[-1], **base))
  return changes


# -- types


_TYPE_WORDS = re.compile(r'\s+')
_PARAMS = re.compile(r'\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)')


def _normal_type_name(type_name: str) -> Tuple[str, bool, Optional[int], Optional[int]]:
  """``'int(10) unsigned zerofill'`` -> ``('INT', True, 10, None)``."""
  params = _PARAMS.search(type_name)
  length = int(params.group(1)) if params else None
  scale = int(params.group(2)) if params and params.group(2) else None
  words = _TYPE_WORDS.split(_PARAMS.sub(' ', type_name).strip().upper())
  unsigned = 'UNSIGNED' in words
  base = ' '.join(w for w in words if w not in ('UNSIGNED', 'SIGNED', 'ZEROFILL'))
  return base, unsigned, length, scale


def _decimal(precision: Optional[int], scale: Optional[int]) -> str:
  if precision is None or precision > _MAX_DECIMAL_PRECISION or precision < 1:
    return types.STRING
  scale = scale if scale is not None and scale >= 0 else 0
  return f'DECIMAL({precision}, {min(scale, precision)})'


def _varchar(length: Optional[int], what: str) -> str:
  if length is None:
    raise UnsupportedSchemaChange(f'{what} without a length')
  size = length * 3  # characters -> UTF-8 bytes, as flink-doris-connector counts them
  return types.STRING if size > _MAX_VARCHAR else f'VARCHAR({max(size, 1)})'


def _char(length: Optional[int], what: str) -> str:
  if length is not None and 0 < length * 3 <= _MAX_CHAR:
    return f'CHAR({length * 3})'
  return _varchar(length, what)


def _datetime(precision: int) -> str:
  precision = min(max(precision, 0), _MAX_DATETIME_PRECISION)
  return 'DATETIME' if precision == 0 else f'DATETIME({precision})'


def _mysql_datetime(length: Optional[int], what: str) -> str:
  # Debezium gives the fractional digits (0..6); a JDBC column size (19, or 20 + digits) is
  # read as flink-doris-connector does.
  if length is None or length <= 0 or length == _ZERO_PRECISION_DATETIME_SIZE:
    return _datetime(0)
  if length > _ZERO_PRECISION_DATETIME_SIZE + 1:
    return _datetime(length - _ZERO_PRECISION_DATETIME_SIZE - 1)
  if length <= 9:
    return _datetime(length)
  raise UnsupportedSchemaChange(f'{what}: length {length} is no DATETIME precision')


_MYSQL_FIXED = {
    'BOOLEAN': types.BOOLEAN, 'BOOL': types.BOOLEAN,
    'SMALLINT': 'SMALLINT', 'MEDIUMINT': 'INT', 'INT': 'INT', 'INTEGER': 'INT', 'YEAR': 'INT',
    'BIGINT': types.BIGINT, 'SERIAL': types.LARGEINT,
    'DOUBLE': types.DOUBLE, 'REAL': types.DOUBLE, 'DOUBLE PRECISION': types.DOUBLE,
    'DATE': 'DATE', 'TIME': types.STRING, 'JSON': types.JSON,
    'TINYTEXT': types.STRING, 'TEXT': types.STRING, 'MEDIUMTEXT': types.STRING,
    'LONGTEXT': types.STRING, 'LONG': types.STRING, 'LONG VARCHAR': types.STRING,
    'ENUM': types.STRING, 'SET': types.STRING,
    'BINARY': types.STRING, 'VARBINARY': types.STRING, 'TINYBLOB': types.STRING,
    'BLOB': types.STRING, 'MEDIUMBLOB': types.STRING, 'LONGBLOB': types.STRING,
    'LONG VARBINARY': types.STRING,
}
_MYSQL_UNSIGNED = {'TINYINT': 'SMALLINT', 'SMALLINT': 'INT', 'MEDIUMINT': types.BIGINT,
                   'INT': types.BIGINT, 'INTEGER': types.BIGINT, 'BIGINT': types.LARGEINT}
_MYSQL_DECIMALS = ('DECIMAL', 'DEC', 'NUMERIC', 'FIXED')
_MYSQL_CHARS = ('CHAR', 'CHARACTER', 'NCHAR', 'NATIONAL CHAR', 'NATIONAL CHARACTER')
_MYSQL_VARCHARS = ('VARCHAR', 'CHARACTER VARYING', 'CHAR VARYING', 'NVARCHAR',
                   'NATIONAL VARCHAR', 'NATIONAL CHAR VARYING', 'NATIONAL CHARACTER VARYING',
                   'VARCHARACTER')
_PG_FIXED = {
    'INT2': 'SMALLINT', 'SMALLSERIAL': 'SMALLINT', 'INT4': 'INT', 'SERIAL': 'INT',
    'INT8': types.BIGINT, 'BIGSERIAL': types.BIGINT, 'OID': types.BIGINT,
    'FLOAT4': 'FLOAT', 'FLOAT8': types.DOUBLE, 'BOOL': types.BOOLEAN, 'TEXT': types.STRING,
    'DATE': 'DATE', 'TIME': types.STRING, 'TIMETZ': types.STRING, 'INTERVAL': types.STRING,
    'JSON': types.JSON, 'JSONB': types.JSON, 'UUID': 'VARCHAR(36)', 'BYTEA': types.STRING,
    'INET': types.STRING, 'CIDR': types.STRING, 'MACADDR': types.STRING,
    'MACADDR8': types.STRING, 'VARBIT': types.STRING, 'POINT': types.STRING,
    'LINE': types.STRING, 'LSEG': types.STRING, 'BOX': types.STRING, 'PATH': types.STRING,
    'POLYGON': types.STRING, 'CIRCLE': types.STRING, 'CITEXT': types.STRING,
}


def doris_type(type_name: str, length: Optional[int] = None, scale: Optional[int] = None, *,
               connector: Optional[str] = None, tinyint1_as_boolean: bool = True) -> str:
  """The Doris type of a source column (the module doc's table).

  Args:
    type_name: Debezium's ``typeName`` (``'INT UNSIGNED'``, ``'VARCHAR'``, ``'int4'``); a
      length in parentheses is read when ``length`` is None.
    length: ``length`` (characters, digits, or DATETIME fractional digits).
    scale: ``scale``.
    connector: ``source.connector``: ``postgresql`` reads Postgres names first, ``mysql`` and
      ``mariadb`` MySQL names only; others (None) MySQL names, then Postgres ones.
    tinyint1_as_boolean: ``TINYINT(1)`` -> ``BOOLEAN`` (MySQL's BOOLEAN is a TINYINT(1)).

  Raises:
    UnsupportedSchemaChange: a type without a Doris type here.
  """
  if not isinstance(type_name, str) or not type_name.strip():
    raise UnsupportedSchemaChange(f'column type {type_name!r} is no type name')
  base, unsigned, text_length, text_scale = _normal_type_name(type_name)
  length = text_length if length is None else length
  scale = text_scale if scale is None else scale
  what = type_name.strip()
  if connector == 'postgresql':
    readers = (_postgres_type, _mysql_type)
  elif connector in ('mysql', 'mariadb'):
    readers = (_mysql_type,)
  else:
    readers = (_mysql_type, _postgres_type)
  for reader in readers:
    found = reader(base, unsigned, length, scale, what, tinyint1_as_boolean)
    if found is not None:
      return found
  raise UnsupportedSchemaChange(f'column type {what!r} has no Doris type here')


def _mysql_type(base: str, unsigned: bool, length: Optional[int], scale: Optional[int],
                what: str, tinyint1_as_boolean: bool) -> Optional[str]:
  if unsigned and base in _MYSQL_UNSIGNED:
    return _MYSQL_UNSIGNED[base]
  if base == 'TINYINT':
    return types.BOOLEAN if tinyint1_as_boolean and length == 1 else 'TINYINT'
  if base == 'BIT':
    return types.BOOLEAN if length in (None, 1) else types.STRING
  if base in _MYSQL_FIXED:
    return _MYSQL_FIXED[base]
  if base in _MYSQL_DECIMALS:
    return _decimal(10 if length is None else length, scale)
  if base == 'FLOAT':
    return types.DOUBLE if length is not None and scale is None and length > 24 else 'FLOAT'
  if base in ('DATETIME', 'TIMESTAMP'):
    return _mysql_datetime(length, what)
  if base in _MYSQL_CHARS:
    return _char(length, what)
  if base in _MYSQL_VARCHARS:
    return _varchar(length, what)
  return None


def _postgres_type(base: str, unsigned: bool, length: Optional[int], scale: Optional[int],
                   what: str, tinyint1_as_boolean: bool) -> Optional[str]:
  del unsigned, tinyint1_as_boolean  # MySQL's
  if base in _PG_FIXED:
    return _PG_FIXED[base]
  if base in ('NUMERIC', 'DECIMAL'):
    return _decimal(length, scale)
  if base in ('TIMESTAMP', 'TIMESTAMPTZ', 'TIMESTAMP WITH TIME ZONE',
              'TIMESTAMP WITHOUT TIME ZONE'):
    return _datetime(_MAX_DATETIME_PRECISION if scale is None else scale)
  if base in ('BPCHAR', 'CHAR', 'CHARACTER'):
    return _char(length, what)
  if base in ('VARCHAR', 'CHARACTER VARYING'):
    return types.STRING if length is None else _varchar(length, what)
  if base == 'BIT':
    return types.BOOLEAN if length in (None, 1) else types.STRING
  return None


_INT_RANKS = {'TINYINT': 0, 'SMALLINT': 1, 'INT': 2, 'BIGINT': 3, 'LARGEINT': 4}
_CANONICAL = {'DECIMALV2': 'DECIMAL', 'DECIMALV3': 'DECIMAL', 'DATEV2': 'DATE',
              'DATETIMEV2': 'DATETIME', 'TEXT': 'STRING', 'JSONB': 'JSON', 'BOOL': 'BOOLEAN',
              'INTEGER': 'INT'}


def _canonical(type_name: str) -> Tuple[str, Tuple[int, ...]]:
  """A type as (base, parameters): spelling, case, ``V2``/``V3`` and display widths aside."""
  text = type_name.strip().upper()
  base = text.split('(', 1)[0].strip()
  base = _CANONICAL.get(base, base)
  params = tuple(int(p) for p in re.findall(r'\d+', text[len(text.split('(', 1)[0]):]))
  if base in _INT_RANKS or base in ('BOOLEAN', 'FLOAT', 'DOUBLE', 'STRING', 'JSON', 'DATE'):
    params = ()  # INT(11), TINYINT(4): display widths
  elif base == 'DATETIME':
    params = params[:1] or (0,)
  elif base == 'DECIMAL':
    params = (params[0] if params else 9, params[1] if len(params) > 1 else 0)
  return base, params


def _same_type(a: str, b: str) -> bool:
  return _canonical(a) == _canonical(b)


def is_widening(old_type: str, new_type: str) -> bool:
  """Whether a column of Doris type ``old_type`` becoming ``new_type`` keeps every value.

  Widenings: up the integers (``TINYINT`` < ``SMALLINT`` < ``INT`` < ``BIGINT`` <
  ``LARGEINT``); a longer ``VARCHAR``; ``CHAR(n)`` -> a longer ``CHAR`` or a ``VARCHAR(m >=
  n)``; ``VARCHAR``/``CHAR`` -> ``STRING``; ``DECIMAL(p, s)`` -> ``DECIMAL(q > p, s)``;
  ``FLOAT`` -> ``DOUBLE``; ``DATETIME(p)`` -> ``DATETIME(q > p)``.  Anything else -- the same
  type included -- is not one.
  """
  (old, old_params), (new, new_params) = _canonical(old_type), _canonical(new_type)
  if (old, old_params) == (new, new_params):
    return False
  if old in _INT_RANKS and new in _INT_RANKS:
    return _INT_RANKS[new] > _INT_RANKS[old]
  if old in ('VARCHAR', 'CHAR') and new == 'STRING':
    return True
  if old == 'VARCHAR' and new == 'VARCHAR':
    return bool(old_params and new_params) and new_params[0] > old_params[0]
  if old == 'CHAR' and new in ('CHAR', 'VARCHAR'):
    if not old_params or not new_params:
      return False
    return new_params[0] > old_params[0] or (new == 'VARCHAR' and new_params[0] >= old_params[0])
  if old == 'DECIMAL' and new == 'DECIMAL':
    return new_params[1] == old_params[1] and new_params[0] > old_params[0]
  if old == 'FLOAT' and new == 'DOUBLE':
    return True
  if old == 'DATETIME' and new == 'DATETIME':
    return new_params[0] > old_params[0]
  return False


# -- parsing


def _table_id(raw: Any, where: str, db: str, connector: Optional[str]
              ) -> List[Tuple[str, Optional[str], str]]:
  """A Debezium table ``id`` (``"db"."table"``; ``"db"."schema"."table"``; a rename:
  ``old,new``) -> ``[(db, schema, table)]``."""
  if not isinstance(raw, str) or not raw.strip():
    raise BadSchemaChange(f'{where}: "id" must be a table id like "\\"db\\".\\"table\\"", '
                          f'got {json_type(raw)}')
  ids = []
  for piece in _split_top(_tokens(raw)):
    parts, end = _qualified_name(piece, 0)
    if not parts or end != len(piece) or len(parts) > 3:
      raise BadSchemaChange(f'{where}: cannot read table id {raw!r}')
    if len(parts) == 3:
      ids.append((parts[0], parts[1], parts[2]))
    elif len(parts) == 2 and connector == 'postgresql':
      ids.append((db, parts[0], parts[1]))
    elif len(parts) == 2:
      ids.append((parts[0], None, parts[1]))
    else:
      ids.append((db, None, parts[0]))
  if len(ids) > 2:
    raise BadSchemaChange(f'{where}: cannot read table id {raw!r}')
  return ids


def _optional_int(column: Mapping[str, Any], field: str, where: str) -> Optional[int]:
  value = column.get(field)
  if value is None:
    return None
  if type(value) is not int:
    raise BadSchemaChange(f'{where}: "{field}" must be an integer, got {json_type(value)}')
  return value


def _optional_str(obj: Mapping[str, Any], field: str, where: str) -> Optional[str]:
  value = obj.get(field)
  if value is None or isinstance(value, str):
    return value
  raise BadSchemaChange(f'{where}: "{field}" must be a string, got {json_type(value)}')


def _source_type(type_name: str, length: Optional[int], scale: Optional[int]) -> str:
  if length is None or '(' in type_name:
    return type_name
  params = f'{length}, {scale}' if scale is not None else f'{length}'
  words = type_name.split(' ', 1)
  return f'{words[0]}({params})' + (f' {words[1]}' if len(words) > 1 else '')


def _columns(table: Mapping[str, Any], where: str, connector: Optional[str],
             primary_key: Sequence[str], tinyint1_as_boolean: bool) -> Tuple[Column, ...]:
  raw = table.get('columns')
  if type(raw) is not list or not raw:
    raise BadSchemaChange(f'{where}: "columns" must be a non-empty array, got {json_type(raw)}')
  keys = {name.lower() for name in primary_key}
  found = []
  for i, column in enumerate(raw):
    at = f'{where}.columns[{i}]'
    if type(column) is not dict:
      raise BadSchemaChange(f'{at} must be an object, got {json_type(column)}')
    name = column.get('name')
    if not isinstance(name, str) or not name:
      raise BadSchemaChange(f'{at}: no "name"')
    type_name = column.get('typeName')
    if not isinstance(type_name, str) or not type_name.strip():
      raise BadSchemaChange(f'{at} ({name}): no "typeName"')
    length = _optional_int(column, 'length', at)
    scale = _optional_int(column, 'scale', at)
    position = _optional_int(column, 'position', at)
    optional = column.get('optional', True)
    if type(optional) is not bool:
      raise BadSchemaChange(f'{at}: "optional" must be a boolean, got {json_type(optional)}')
    try:
      mapped = doris_type(type_name, length, scale, connector=connector,
                          tinyint1_as_boolean=tinyint1_as_boolean)
    except UnsupportedSchemaChange as error:
      raise UnsupportedSchemaChange(f'column {name!r}: {error.detail}') from None
    if name.lower() in keys:
      mapped = types.key_type(mapped)
    found.append((position if position is not None else i + 1, i,
                  Column(name=name, doris_type=mapped, nullable=optional,
                         comment=_optional_str(column, 'comment', at),
                         default=_optional_str(column, 'defaultValueExpression', at),
                         source_type=_source_type(type_name.strip(), length, scale))))
  found.sort(key=lambda item: (item[0], item[1]))
  names = [column.name.lower() for _, _, column in found]
  if len(set(names)) != len(names):
    raise BadSchemaChange(f'{where}: a column name repeats')
  missing = [name for name in primary_key if name.lower() not in names]
  if missing:
    raise BadSchemaChange(f'{where}: primary key column {missing[0]!r} is not among "columns"')
  return tuple(column for _, _, column in found)


def _table_change(item: Any, i: int, base: Mapping[str, Any], default_db: str,
                  connector: Optional[str], tinyint1_as_boolean: bool) -> TableChange:
  where = f'tableChanges[{i}]'
  if type(item) is not dict:
    raise BadSchemaChange(f'{where} must be an object, got {json_type(item)}')
  kind = item.get('type')
  if not isinstance(kind, str) or kind.upper() not in ('CREATE', 'ALTER', 'DROP'):
    raise BadSchemaChange(f'{where}: "type" must be CREATE, ALTER or DROP, got {kind!r}')
  kind = kind.lower()
  ids = _table_id(item.get('id'), where, default_db, connector)
  db, schema, name = ids[-1]
  if not db:
    raise BadSchemaChange(f'{where}: table id {item.get("id")!r} names no database and the '
                          f'event has no "databaseName"')
  renamed_from = (ids[0][0], ids[0][2]) if len(ids) == 2 else None
  table = item.get('table')
  if kind == DROP and table is None:
    return TableChange(kind=DROP, db=db, table=name, schema=schema, **base)
  if type(table) is not dict:
    raise BadSchemaChange(f'{where}: "table" must be an object, got {json_type(table)}',
                          f'{db}.{name}')
  pk = table.get('primaryKeyColumnNames')
  if pk is None:
    pk = []
  if type(pk) is not list or not all(isinstance(k, str) and k for k in pk):
    raise BadSchemaChange(f'{where}: "primaryKeyColumnNames" must be an array of names, got '
                          f'{json_type(pk)}', f'{db}.{name}')
  if kind == DROP:
    return TableChange(kind=DROP, db=db, table=name, schema=schema, primary_key=tuple(pk), **base)
  columns = _columns(table, f'{where}.table', connector, pk, tinyint1_as_boolean)
  if renamed_from is not None:
    kind = RENAME
  return TableChange(kind=kind, db=db, table=name, schema=schema, columns=columns,
                     primary_key=tuple(pk), comment=_optional_str(table, 'comment', where),
                     renamed_from=renamed_from, **base)


def parse_schema_change(value: Any, *, tinyint1_as_boolean: bool = True) -> List[TableChange]:
  """The table changes of one schema change topic record's value.

  Args:
    value: the decoded value: a dict, with or without the ``{"schema", "payload"}`` envelope;
      a ``historyRecord`` JSON string (Flink CDC's Debezium records) or a schema history
      record (``position`` beside ``source``) reads the same.
    tinyint1_as_boolean: see ``doris_type``.

  Returns:
    One ``TableChange`` per ``tableChanges`` item; with none, the ``TRUNCATE`` and
    ``DROP TABLE`` statements of ``ddl`` (other DDL: ``[]``).

  Raises:
    BadSchemaChange: no ``ddl`` and no ``tableChanges``, or a field of the wrong shape (the
      message names it).
    UnsupportedSchemaChange: a column type without a Doris type.
  """
  if type(value) is dict and 'payload' in value and 'schema' in value:
    value = value['payload']
    if value is None:
      raise BadSchemaChange('null "payload" (a tombstone?)')
  if type(value) is not dict:
    raise BadSchemaChange(f'the value must be an object, got {json_type(value)}')
  history = value.get('historyRecord')
  if isinstance(history, str) and value.get('tableChanges') is None:
    try:
      value = orjson.loads(history)
    except orjson.JSONDecodeError as error:
      raise BadSchemaChange(f'"historyRecord" is not JSON: {error}') from None
    if type(value) is not dict:
      raise BadSchemaChange(f'"historyRecord" must hold an object, got {json_type(value)}')
  ddl = value.get('ddl')
  if ddl is not None and not isinstance(ddl, str):
    raise BadSchemaChange(f'"ddl" must be a string, got {json_type(ddl)}')
  changes = value.get('tableChanges')
  if changes is not None and type(changes) is not list:
    raise BadSchemaChange(f'"tableChanges" must be an array, got {json_type(changes)}')
  if not ddl and changes is None:
    raise BadSchemaChange('neither "ddl" nor "tableChanges": not a schema change event')
  source = value.get('source')
  if source is not None and type(source) is not dict:
    raise BadSchemaChange(f'"source" must be an object, got {json_type(source)}')
  source = source or {}
  position = value.get('position')  # a schema history record keeps it apart from "source"
  if type(position) is dict:
    source = {**position, **{k: v for k, v in source.items() if v is not None}}
  default_db = value.get('databaseName') or source.get('db') or ''
  if not isinstance(default_db, str):
    raise BadSchemaChange(f'"databaseName" must be a string, got {json_type(default_db)}')
  connector = source.get('connector') if isinstance(source.get('connector'), str) else None
  ts_ms = value.get('ts_ms', source.get('ts_ms'))
  base = dict(ddl=ddl or '', connector=connector,
              ts_ms=ts_ms if type(ts_ms) is int else None,
              position=tuple((field, source[field]) for field in _POSITION_FIELDS
                             if source.get(field) is not None))
  if changes:
    return [_table_change(item, i, base, default_db, connector, tinyint1_as_boolean)
            for i, item in enumerate(changes)]
  return _ddl_table_changes(ddl or '', default_db, base)


def target_table(change: TableChange, naming: SourceNaming,
                 topic_prefix: str) -> Optional[Tuple[str, bool]]:
  """``(target, merged)`` of ``change``'s table under ``naming``, as ``SourceNaming.target``
  answers for the table's own topic (``<prefix>.<db>[.<schema>].<table>``); None when the table
  is not selected (``--include_tables`` / ``--exclude_tables``)."""
  topic = '.'.join(part for part in (topic_prefix, change.db, change.schema, change.table)
                   if part)
  return naming.target(change.db, change.table, topic, schema=change.schema)


# -- planning


def plan_changes(previous: Optional[TableSchema], change: TableChange, *, merged: bool = False,
                 target_only: Collection[str] = ()) -> List[SchemaOp]:
  """The ops that take a table from ``previous`` to ``change``, in the order the DDL applies
  them.

  Args:
    previous: the table before the change (``TableSchema.of`` the last change to it, or the
      target's columns); None: it does not exist (or is unknown): a create or an alter creates
      it (``IF NOT EXISTS``), from the whole table Debezium sends.
    change: the change (``parse_schema_change``).
    merged: the target is a merged family's (``SourceNaming.target``): a created table gets
      ``SOURCE_COLUMNS`` (in the key when there is one); a drop or a truncate deletes this
      source's rows only.
    target_only: columns of the target that the source does not have (a sequence column...),
      never dropped; ``SOURCE_COLUMNS`` and Doris's hidden columns always are.

  A ``CREATE`` of an existing table (a new snapshot) is planned as an ``ALTER``.  Column
  renames come from the DDL text only; everything else from the difference between the two
  tables.  Changes of nullability, default or comment alone make no op.

  Raises:
    UnsupportedSchemaChange: a table rename; a changed primary key; a primary key column whose
      type cannot be a Doris key.
  """
  if change.kind == RENAME:
    raise UnsupportedSchemaChange(
        f'table {change.renamed_from[0]}.{change.renamed_from[1]} was renamed to '
        f'{change.qualified}: rename or recreate the target table by hand', change.qualified)
  if change.kind == DROP:
    return [DropTable(change.source_values if merged else None)]
  if change.kind == TRUNCATE:
    return [TruncateTable(change.source_values if merged else None)]
  if change.kind not in (CREATE, ALTER):
    raise ValueError(f'unknown change kind {change.kind!r}')
  key_names = {name.lower() for name in change.primary_key}
  for column in change.columns:
    if column.name.lower() in key_names and not types.can_be_key(column.doris_type):
      raise UnsupportedSchemaChange(
          f'primary key column {column.name!r} of {change.qualified} is {column.doris_type} '
          f'({column.source_type}), which cannot be a Doris key', change.qualified)
  if previous is None:
    columns, primary_key = change.columns, tuple(change.primary_key)
    if merged:
      present = {column.name.lower() for column in columns}
      columns += tuple(Column(name, _SOURCE_TYPE, nullable=False) for name in SOURCE_COLUMNS
                       if name not in present)
      if primary_key:
        primary_key += tuple(name for name in SOURCE_COLUMNS if name not in primary_key)
    return [CreateTable(columns, primary_key, change.comment)]
  keep = ({name.lower() for name in target_only} | {name.lower() for name in SOURCE_COLUMNS}
          | set(types.HIDDEN_COLUMNS))
  old_key = [name.lower() for name in previous.primary_key if name.lower() not in keep]
  new_key = [name.lower() for name in change.primary_key]
  if old_key and old_key != new_key:
    raise UnsupportedSchemaChange(
        f'the primary key of {change.qualified} changed from ({", ".join(old_key)}) to '
        f'({", ".join(new_key)}): a Doris table keeps its key; recreate the target table',
        change.qualified)
  return _Planner(previous, change.columns, change.primary_key, keep).plan(
      _alter_events(change) if change.kind == ALTER else [])


class _Planner:
  """Walks the DDL's column clauses over the columns, then diffs what is left."""

  def __init__(self, previous: TableSchema, columns: Sequence[Column],
               primary_key: Sequence[str], keep: Collection[str]):
    self.current: Dict[str, Column] = {c.name.lower(): c for c in previous.columns}
    self.final: Dict[str, Column] = {c.name.lower(): c for c in columns}
    self.keys = {name.lower() for name in primary_key}
    self.keep = keep
    self.ops: List[SchemaOp] = []

  def plan(self, events: Sequence[Tuple[str, ...]]) -> List[SchemaOp]:
    for event in events:
      action, name = event[0], event[1].lower()
      if action in ('rename', 'change'):
        new = event[2].lower()
        if new != name:
          self._rename(name, new)
          name = new
      if action in ('modify', 'change'):
        self._modify(name)
      elif action == 'drop':
        self._drop(name, explicit=True)
      elif action == 'add':
        self._add(name)
    for name in list(self.current):
      self._drop(name)
    for name in self.final:
      self._modify(name)
    for name in self.final:
      self._add(name)
    return self.ops

  def _rename(self, old: str, new: str) -> None:
    if (old in self.current and old not in self.final and old not in self.keep
        and new in self.final and new not in self.current):
      column = self.final[new]
      self.ops.append(RenameColumn(self.current[old].name, column.name, column))
      self.current = {(new if name == old else name):
                      (dataclasses.replace(value, name=column.name) if name == old else value)
                      for name, value in self.current.items()}

  def _modify(self, name: str) -> None:
    if name not in self.current or name not in self.final:
      return
    old, new = self.current[name], self.final[name]
    if not _same_type(old.doris_type, new.doris_type):
      self.ops.append(ModifyColumn(new.name, old.doris_type, new.doris_type,
                                   narrowing=not is_widening(old.doris_type, new.doris_type),
                                   key=name in self.keys, comment=new.comment))
      self.current[name] = dataclasses.replace(old, doris_type=new.doris_type)

  def _drop(self, name: str, explicit: bool = False) -> None:
    # A DDL's own DROP drops even a name the table has again after it (a later ADD or RENAME).
    if name in self.current and (explicit or name not in self.final) and name not in self.keep:
      self.ops.append(DropColumn(self.current.pop(name).name, key=name in self.keys))

  def _add(self, name: str) -> None:
    if name in self.final and name not in self.current:
      self.ops.append(AddColumn(self.final[name]))
      self.current[name] = self.final[name]


# -- policies


def _check_policy(policy: str, change_types: Optional[FrozenSet[str]]) -> None:
  if policy not in POLICIES:
    raise ConfigFault(f'schema evolution policy must be one of {"|".join(POLICIES)}, '
                      f'got {policy!r}')
  unknown = sorted(set(change_types or ()) - set(CHANGE_TYPES))
  if unknown:
    raise ConfigFault(f'unknown schema change type {unknown[0]!r}: use '
                      f'{", ".join(CHANGE_TYPES)}')


_POLICY_TYPES = {
    NONE: frozenset(),
    ADD_COLUMNS: frozenset({'create_table', 'add_column'}),
    LENIENT: frozenset({'create_table', 'add_column', 'modify_column'}),
    EVOLVE: frozenset({'create_table', 'add_column', 'modify_column', 'rename_column',
                       'drop_column'}),
}
_LISTED_ONLY = frozenset({'truncate_table', 'drop_table'})


def policy_allows(op: SchemaOp, policy: str,
                  change_types: Optional[FrozenSet[str]] = None) -> bool:
  """Whether ``policy`` applies ``op``.

  ========================  ===================================================
  policy                    applies
  ========================  ===================================================
  ``none``                  nothing
  ``add_columns``           create table, add column
  ``lenient``               create table, add column, widen a column (a rename
                            is applied as adding the new column, see
                            ``apply_policy``; a drop is ignored)
  ``evolve``                create table, add column, widen, rename and drop a
                            column
  ========================  ===================================================

  ``truncate_table`` and ``drop_table`` are applied only when ``change_types`` lists them (and
  the policy is not ``none``); a given ``change_types`` also limits the others to those listed
  (``create_table``, ``add_column``, ``drop_column``, ``rename_column``, ``modify_column``).

  A narrowing ``ModifyColumn`` (``narrowing=True``: values may not fit the new type) is never
  allowed, whatever the policy: the caller sends it to the FE to have its refusal in the
  job's errors, or holds the table's rows -- it never applies it as an evolution.

  Raises:
    ConfigFault: an unknown policy or change type.
  """
  _check_policy(policy, change_types)
  if policy == NONE:
    return False
  if isinstance(op, ModifyColumn) and op.narrowing:
    return False
  kind = op.change_type
  if kind in _LISTED_ONLY:
    return change_types is not None and kind in change_types
  if change_types is not None and kind not in change_types:
    return False
  return kind in _POLICY_TYPES[policy]


def apply_policy(ops: Iterable[SchemaOp], policy: str,
                 change_types: Optional[FrozenSet[str]] = None) -> List[SchemaOp]:
  """The ops ``policy`` applies, in order: ``policy_allows``, and under ``lenient`` a rename
  becomes adding the renamed column (rows carry on in the new name; the old column stays and
  reads NULL from then on), with its type already the new one."""
  _check_policy(policy, change_types)
  out: List[SchemaOp] = []
  not_renamed = set()  # new names of renames not applied as renames
  for op in ops:
    if isinstance(op, RenameColumn):
      allowed = policy_allows(op, policy, change_types)
      if not allowed:
        not_renamed.add(op.new.lower())
        if policy == LENIENT:
          op = AddColumn(op.column)
          allowed = policy_allows(op, policy, change_types)
      if allowed:
        out.append(op)
    elif isinstance(op, ModifyColumn) and op.name.lower() in not_renamed:
      continue  # added with its final type already, or not there at all
    elif policy_allows(op, policy, change_types):
      out.append(op)
  return out


# -- SQL


def _table_name(table: str) -> str:
  db, dot, tbl = table.partition('.')
  if not dot or not db or not tbl:
    raise ValueError(f'expected "db.table", got {table!r}')
  return f'{types.quote(db)}.{types.quote(tbl)}'


def _literal(text: str) -> str:
  return "'" + text.replace('\\', '\\\\').replace("'", "\\'") + "'"


def _dialect_type(type_name: str, starrocks: bool, key: bool = False) -> str:
  if starrocks:
    if _canonical(type_name)[0] == 'DATETIME':
      return 'DATETIME'  # StarRocks's DATETIME takes no precision (microseconds since 3.3.5)
    if key and type_name == types.KEY_STRING:
      return types.STARROCKS_KEY_STRING
  return type_name


def _comment(comment: Optional[str]) -> str:
  return f' COMMENT {_literal(comment)}' if comment else ''


def render(op: SchemaOp, table: str, dialect: str = DORIS, *,
           options: Optional[TableDdlOptions] = None,
           sequence_column: Optional[str] = None) -> str:
  """The SQL statement of ``op`` on the target ``table`` (``db.tbl``).

  ========================  ===================================================================
  op                        Doris (StarRocks where it differs)
  ========================  ===================================================================
  ``CreateTable``           ``types.create_table_ddl`` (``IF NOT EXISTS``), ``UNIQUE KEY`` on
                            the primary key (``PRIMARY KEY``), else ``DUPLICATE KEY``; with
                            column and table comments
  ``AddColumn``             ``ALTER TABLE t ADD COLUMN c T NULL [COMMENT '...']``
  ``DropColumn``            ``ALTER TABLE t DROP COLUMN c``
  ``RenameColumn``          ``ALTER TABLE t RENAME COLUMN a b`` (``RENAME COLUMN a TO b``)
  ``ModifyColumn``          ``ALTER TABLE t MODIFY COLUMN c T NULL`` (a key column:
                            ``T KEY NOT NULL``)
  ``TruncateTable``         ``TRUNCATE TABLE t``
  ``DropTable``             ``DROP TABLE IF EXISTS t``
  merged drop / truncate    ``DELETE FROM t WHERE _source_db = '..' AND _source_table = '..'``
  ========================  ===================================================================

  Args:
    op: a ``plan_changes`` op.
    table: the target table.
    dialect: ``doris`` or ``starrocks``.
    options: ``--table_config``'s settings of a created table (key, buckets, properties).
    sequence_column: a created unique-key Doris table's ``function_column.sequence_col``.

  Raises:
    ValueError: an unknown dialect or op, a table name that is not ``db.tbl``.
  """
  if dialect not in DIALECTS:
    raise ValueError(f'dialect must be one of {"|".join(DIALECTS)}, got {dialect!r}')
  starrocks = dialect == STARROCKS_DIALECT
  name = _table_name(table)
  if isinstance(op, CreateTable):
    return _create_table(op, table, starrocks, options or TableDdlOptions(), sequence_column)
  if isinstance(op, AddColumn):
    column = op.column
    return (f'ALTER TABLE {name} ADD COLUMN {types.quote(column.name)} '
            f'{_dialect_type(column.doris_type, starrocks)} NULL{_comment(column.comment)}')
  if isinstance(op, DropColumn):
    return f'ALTER TABLE {name} DROP COLUMN {types.quote(op.name)}'
  if isinstance(op, RenameColumn):
    to = ' TO' if starrocks else ''
    return f'ALTER TABLE {name} RENAME COLUMN {types.quote(op.old)}{to} {types.quote(op.new)}'
  if isinstance(op, ModifyColumn):
    spec = 'KEY NOT NULL' if op.key else 'NULL'
    return (f'ALTER TABLE {name} MODIFY COLUMN {types.quote(op.name)} '
            f'{_dialect_type(op.new_type, starrocks, op.key)} {spec}{_comment(op.comment)}')
  if isinstance(op, (DropTable, TruncateTable)):
    if op.source is not None:
      return (f'DELETE FROM {name} WHERE {types.quote(SOURCE_COLUMNS[0])} = '
              f'{_literal(op.source[0])} AND {types.quote(SOURCE_COLUMNS[1])} = '
              f'{_literal(op.source[1])}')
    return (f'DROP TABLE IF EXISTS {name}' if isinstance(op, DropTable)
            else f'TRUNCATE TABLE {name}')
  raise ValueError(f'not a schema op: {op!r}')


def _create_table(op: CreateTable, table: str, starrocks: bool, options: TableDdlOptions,
                  sequence_column: Optional[str]) -> str:
  columns = [(c.name, _dialect_type(c.doris_type, starrocks)) for c in op.columns
             if c.name.lower() not in types.HIDDEN_COLUMNS]
  keys = options.key_columns or op.primary_key
  model = types.UNIQUE if keys else types.DUPLICATE
  if not keys:
    first = next((n for n, t in columns if types.can_be_key(t)), None)
    if first is None:
      raise UnsupportedSchemaChange(f'{table}: no column can be a key (all are FLOAT, DOUBLE '
                                    'or JSON): set key_columns in --table_config', table)
    keys = (first,)
  properties: Dict[str, str] = {} if starrocks else {'light_schema_change': 'true'}
  if model == types.UNIQUE and not starrocks:
    properties['enable_unique_key_merge_on_write'] = 'true'
    if sequence_column:
      properties['function_column.sequence_col'] = sequence_column
  properties.update(options.properties)
  try:
    text = types.create_table_ddl(table, columns, model, keys,
                                  distributed_by=options.distributed_by, buckets=options.buckets,
                                  properties=properties, starrocks=starrocks)
  except ValueError as error:
    raise UnsupportedSchemaChange(str(error), table) from None
  return _with_comments(text, op)


def _with_comments(text: str, op: CreateTable) -> str:
  """``create_table_ddl``'s text with the column comments after their definitions and the table
  comment after the key (where Doris and StarRocks take it)."""
  comments = {c.name.lower(): c.comment for c in op.columns if c.comment}
  lines = text.split('\n')
  for i, line in enumerate(lines):
    if not line.startswith('  `'):
      continue
    body, comma = (line[:-1], ',') if line.endswith(',') else (line, '')
    column = body[3:body.index('` ', 3)].replace('``', '`')
    if column.lower() in comments:
      lines[i] = body + _comment(comments[column.lower()]) + comma
    if op.comment and not comma and i + 1 < len(lines):
      lines[i + 1] += _comment(op.comment)  # ') UNIQUE KEY(...)' ends the column list
  return '\n'.join(lines)
