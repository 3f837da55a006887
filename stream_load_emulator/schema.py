"""Doris / StarRocks DDL -> table definitions the emulator loads into.

Parses ``CREATE DATABASE`` and ``CREATE TABLE`` statements written in real Doris DDL
(https://doris.apache.org/docs/sql-manual/sql-statements/table-and-view/table/CREATE-TABLE
and the data model page https://doris.apache.org/docs/table-design/data-model/overview)
with sqlglot's ``doris`` dialect. sqlglot does not know two Doris-only pieces of syntax, the
per-column aggregation function of AGGREGATE tables (``views BIGINT SUM``) and the
``AGGREGATE KEY(...)`` clause, nor StarRocks's table-level ``PRIMARY KEY(...)``; a token
pass lifts them out of the text first and records them, then sqlglot parses the rest.
"""

import dataclasses
import re
from typing import Any, Dict, List, Optional

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

DUPLICATE = 'DUPLICATE'
UNIQUE = 'UNIQUE'
AGGREGATE = 'AGGREGATE'
PRIMARY = 'PRIMARY'  # StarRocks primary-key tables; behave like merge-on-write UNIQUE.

AGGREGATIONS = frozenset({
    'SUM', 'MAX', 'MIN', 'REPLACE', 'REPLACE_IF_NOT_NULL', 'HLL_UNION', 'BITMAP_UNION',
    'QUANTILE_UNION', 'GENERIC'})

DELETE_SIGN = '__DORIS_DELETE_SIGN__'
SEQUENCE_COL = '__DORIS_SEQUENCE_COL__'


class SchemaError(ValueError):
  """The DDL cannot be understood."""


@dataclasses.dataclass
class Column:
  """One column of a table.

  Attributes:
    name: column name as written.
    type_name: upper-case Doris type (``BIGINT``, ``VARCHAR``, ``DECIMAL``...).
    params: type parameters, e.g. ``(64,)`` for VARCHAR(64), ``(12, 2)`` for DECIMAL.
    nullable: False for NOT NULL columns (Doris's default for key columns is NOT NULL only
      when written; we follow the DDL).
    has_default: whether DEFAULT was given.
    default: the DEFAULT literal (string form, converted at load time), or None for NULL.
    aggregation: SUM/MAX/MIN/REPLACE/... on AGGREGATE tables, else None.
    is_key: part of the key columns.
  """
  name: str
  type_name: str
  params: tuple = ()
  nullable: bool = True
  has_default: bool = False
  default: Optional[str] = None
  aggregation: Optional[str] = None
  is_key: bool = False

  @property
  def sql_type(self) -> str:
    """The Doris type as it is printed (``VARCHAR(64)``)."""
    if self.params:
      return '%s(%s)' % (self.type_name, ', '.join(str(p) for p in self.params))
    return self.type_name


@dataclasses.dataclass
class Table:
  """A table: its columns, key model, properties and hash distribution columns.

  ``distribution`` is None when the DDL named none (shown and checked as the key columns),
  ``[]`` for ``DISTRIBUTED BY RANDOM``.
  """
  db: str
  name: str
  columns: List[Column]
  keys_type: str = DUPLICATE
  key_columns: List[str] = dataclasses.field(default_factory=list)
  properties: Dict[str, str] = dataclasses.field(default_factory=dict)
  distribution: Optional[List[str]] = None

  def __post_init__(self):
    self._by_lower = {c.name.lower(): c for c in self.columns}

  def column(self, name: str) -> Optional[Column]:
    """Case-insensitive column lookup (Doris column names are case-insensitive)."""
    return self._by_lower.get(name.lower())

  @property
  def distribution_columns(self) -> List[str]:
    """The ``DISTRIBUTED BY HASH`` columns (the key columns when the DDL named none)."""
    return list(self.key_columns if self.distribution is None else self.distribution)

  @property
  def full_name(self) -> str:
    return '%s.%s' % (self.db, self.name)

  @property
  def sequence_col(self) -> Optional[str]:
    """The column named by ``function_column.sequence_col``, if any."""
    return self.properties.get('function_column.sequence_col')

  @property
  def is_unique(self) -> bool:
    """True for merge-able key models (Doris UNIQUE, StarRocks PRIMARY)."""
    return self.keys_type in (UNIQUE, PRIMARY)


@dataclasses.dataclass
class Catalog:
  """All databases and tables known to the server."""
  databases: Dict[str, Dict[str, Table]] = dataclasses.field(default_factory=dict)

  def table(self, db: str, name: str) -> Optional[Table]:
    tables = self.databases.get(db)
    if tables is None:
      return None
    return tables.get(name)

  def add_sql(self, sql: str) -> None:
    """Adds every CREATE DATABASE / CREATE TABLE statement of ``sql``."""
    for db, table in parse_ddl(sql):
      tables = self.databases.setdefault(db, {})
      if table is not None:
        tables[table.name] = table


def _unquote(text: str) -> str:
  if len(text) >= 2 and text[0] == text[-1] and text[0] in '"\'`':
    return text[1:-1]
  return text


def _lift_doris_syntax(sql: str):
  """Removes the syntax sqlglot cannot parse, returning (clean_sql, notes).

  notes maps the statement index to ``{'model': ..., 'aggs': {column: func}}``.
  """
  tokens = sqlglot.Dialect.get_or_raise('doris').tokenize(sql)
  cuts = []  # (start, end, replacement)
  notes: Dict[int, Dict[str, Any]] = {}
  stmt = 0
  depth = 0
  in_create_table = False
  col_tokens: List[Any] = []
  i = 0
  while i < len(tokens):
    tok = tokens[i]
    tt = tok.token_type
    note = notes.setdefault(stmt, {'model': None, 'aggs': {}})
    if tt == TokenType.SEMICOLON:
      stmt += 1
      depth = 0
      in_create_table = False
    elif tt == TokenType.TABLE and i > 0 and tokens[i - 1].token_type == TokenType.CREATE:
      in_create_table = True
    elif tt == TokenType.L_PAREN:
      depth += 1
      if depth == 1 and in_create_table:
        col_tokens = []
        i += 1
        continue
    elif tt == TokenType.R_PAREN:
      if depth == 1 and in_create_table:
        _note_aggregation(col_tokens, note, cuts)
        in_create_table = False
      depth -= 1
    elif tt == TokenType.COMMA and depth == 1 and in_create_table:
      _note_aggregation(col_tokens, note, cuts)
      col_tokens = []
      i += 1
      continue
    elif depth == 0 and tok.text.upper() == 'AGGREGATE' and i + 1 < len(tokens) and (
        tokens[i + 1].token_type == TokenType.KEY):
      note['model'] = AGGREGATE
      cuts.append((tok.start, tok.end, 'DUPLICATE'))
    elif depth == 0 and tt == TokenType.PRIMARY_KEY:
      note['model'] = PRIMARY
      cuts.append((tok.start, tok.end, 'UNIQUE KEY'))
    if depth >= 1 and in_create_table:
      col_tokens.append(tok)
    i += 1
  out = []
  last = 0
  for start, end, repl in sorted(cuts):
    out.append(sql[last:start])
    out.append(repl)
    last = end + 1
  out.append(sql[last:])
  return ''.join(out), notes


# Doris types sqlglot's parser does not know -> a stand-in it parses (the real name is kept).
_TYPE_STAND_INS = {
    'LARGEINT': 'BIGINT', 'DATEV2': 'DATE', 'DATETIMEV2': 'DATETIME',
    'DECIMALV2': 'DECIMAL', 'DECIMALV3': 'DECIMAL', 'BITMAP': 'STRING', 'HLL': 'STRING',
    'QUANTILE_STATE': 'STRING', 'IPV4': 'STRING', 'IPV6': 'STRING',
}
_NO_PARAMS = frozenset({'STRING'})


def _note_aggregation(col_tokens, note, cuts):
  """Notes one column definition ``name TYPE[(..)] [AGG] ...``.

  Cuts the aggregation function out, and swaps Doris-only type names for stand-ins.
  """
  if len(col_tokens) < 2:
    return
  name = _unquote(col_tokens[0].text).lower()
  type_tok = col_tokens[1]
  stand_in = _TYPE_STAND_INS.get(type_tok.text.upper())
  if stand_in:
    note.setdefault('types', {})[name] = type_tok.text.upper()
    cuts.append((type_tok.start, type_tok.end, stand_in))
    if stand_in in _NO_PARAMS and len(col_tokens) > 2 and (
        col_tokens[2].token_type == TokenType.L_PAREN):
      level = 0
      for tok in col_tokens[2:]:  # e.g. BITMAP(10) is not valid for STRING: drop the args
        level += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tok.token_type, 0)
        cuts.append((tok.start, tok.end, ''))
        if level == 0:
          break
  if len(col_tokens) < 3:
    return
  j = 2
  if col_tokens[j].token_type == TokenType.L_PAREN:
    level = 0
    while j < len(col_tokens):
      if col_tokens[j].token_type == TokenType.L_PAREN:
        level += 1
      elif col_tokens[j].token_type == TokenType.R_PAREN:
        level -= 1
        if level == 0:
          j += 1
          break
      j += 1
  if j < len(col_tokens) and col_tokens[j].text.upper() in AGGREGATIONS:
    name = _unquote(col_tokens[0].text)
    note['aggs'][name.lower()] = col_tokens[j].text.upper()
    cuts.append((col_tokens[j].start, col_tokens[j].end, ''))


def _literal_value(node) -> Optional[str]:
  if node is None or isinstance(node, exp.Null):
    return None
  if isinstance(node, exp.Literal):
    return node.this
  if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
    return '-' + node.this.this
  return node.sql(dialect='doris')


def _column_from_def(cdef: exp.ColumnDef) -> Column:
  kind = cdef.args.get('kind')
  if kind is None:
    raise SchemaError('column %s has no type' % cdef.name)
  type_name = kind.sql(dialect='doris').split('(')[0].upper()
  params = []
  for p in kind.expressions or []:
    value = p.this if isinstance(p, exp.DataTypeParam) else p
    text = value.sql(dialect='doris')
    params.append(int(text) if text.isdigit() else text)
  col = Column(name=cdef.name, type_name=type_name, params=tuple(params))
  for constraint in cdef.args.get('constraints') or []:
    ckind = constraint.args.get('kind')
    if isinstance(ckind, exp.NotNullColumnConstraint):
      col.nullable = bool(ckind.args.get('allow_null'))
    elif isinstance(ckind, exp.DefaultColumnConstraint):
      col.has_default = True
      col.default = _literal_value(ckind.this)
  return col


def parse_ddl(sql: str):
  """Yields ``(db, Table or None)`` for each CREATE DATABASE / TABLE in ``sql``.

  Raises:
    SchemaError: a statement is not valid Doris DDL.
  """
  clean, notes = _lift_doris_syntax(sql)
  try:
    statements = sqlglot.parse(clean, dialect='doris')
  except sqlglot.errors.ParseError as e:
    raise SchemaError('cannot parse schema DDL: %s' % e) from e
  current_db = None
  for index, stmt in enumerate(statements):
    if stmt is None:
      continue
    if isinstance(stmt, exp.Use):
      current_db = stmt.this.name
      continue
    if not isinstance(stmt, exp.Create):
      continue
    kind = (stmt.args.get('kind') or '').upper()
    if kind in ('DATABASE', 'SCHEMA'):
      current_db = stmt.this.name
      yield current_db, None
    elif kind == 'TABLE':
      yield _table_from_create(stmt, notes.get(index, {}), current_db)
    else:
      raise SchemaError('unsupported statement in schema: %s' % stmt.sql()[:80])


def _table_from_create(stmt: exp.Create, note, current_db):
  schema = stmt.this
  if not isinstance(schema, exp.Schema):
    raise SchemaError('CREATE TABLE without columns: %s' % stmt.sql()[:80])
  tbl = schema.this
  db = tbl.db or current_db
  if not db:
    raise SchemaError('table %s has no database (write db.table or CREATE DATABASE first)'
                      % tbl.name)
  columns = [_column_from_def(c) for c in schema.expressions if isinstance(c, exp.ColumnDef)]
  keys_type = None
  key_columns: List[str] = []
  properties: Dict[str, str] = {}
  distribution: Optional[List[str]] = None
  for prop in (stmt.args.get('properties') or exp.Properties()).expressions:
    if isinstance(prop, exp.DuplicateKeyProperty):
      keys_type = DUPLICATE
      key_columns = [e.name for e in prop.expressions]
    elif isinstance(prop, exp.UniqueKeyProperty):
      keys_type = UNIQUE
      key_columns = [e.name for e in prop.expressions]
    elif isinstance(prop, exp.DistributedByProperty):
      distribution = [e.name for e in prop.expressions or []]
    elif type(prop) is exp.Property:  # pylint: disable=unidiomatic-typecheck
      properties[_unquote(prop.name if isinstance(prop.this, exp.Literal) else
                          prop.this.sql())] = _literal_value(prop.args.get('value')) or ''
  for constraint in schema.expressions:
    if isinstance(constraint, exp.PrimaryKey):
      keys_type = PRIMARY
      key_columns = [e.name for e in constraint.expressions]
  if note.get('model'):
    keys_type = note['model']
  if keys_type is None:
    # Doris: no key clause -> DUPLICATE KEY on the leading columns.
    keys_type = DUPLICATE
    key_columns = [columns[0].name] if columns else []
  lower_keys = {k.lower() for k in key_columns}
  for col in columns:
    col.is_key = col.name.lower() in lower_keys
    col.aggregation = note.get('aggs', {}).get(col.name.lower())
    col.type_name = note.get('types', {}).get(col.name.lower(), col.type_name)
    if keys_type == AGGREGATE and not col.is_key and col.aggregation is None:
      raise SchemaError('column %s of AGGREGATE table %s needs an aggregation type'
                        % (col.name, tbl.name))
  table = Table(db=db, name=tbl.name, columns=columns, keys_type=keys_type,
                key_columns=key_columns, properties=properties, distribution=distribution)
  seq = table.sequence_col
  if seq and (not table.is_unique or table.column(seq) is None):
    raise SchemaError('function_column.sequence_col %r needs a UNIQUE table with that column'
                      % seq)
  return db, table


LABEL_RE = re.compile(r'^[-_A-Za-z0-9:]{1,128}$')
