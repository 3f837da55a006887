"""``DELETE FROM [db.]tbl WHERE ...`` over the FE's SQL API and MySQL port.

What Doris 2.1 runs (``fe/fe-core``: ``analysis/DeleteStmt``, ``load/DeleteHandler``; docs
"DELETE"): the rows matching the conditions go, in one transaction; the table and its other
rows stay. The conditions are predicates on columns joined by ``AND`` (``=``, ``!=``, ``<``,
``<=``, ``>``, ``>=``, ``IN``, ``NOT IN``, ``IS [NOT] NULL``) against literals. Refusals, with
Doris's messages:

* no ``WHERE``: ``Where clause only supports compound predicate, binary predicate, is_null
  predicate or in predicate`` (the legacy planner's; the emulator does not take the Nereids
  ``DELETE ... USING`` form);
* ``OR``, functions or another column on the right: the same message;
* an unknown column: ``Unknown column 'c' in 'tbl'``;
* a value column of an AGGREGATE table: ``delete predicate on value column only supports
  Unique table with merge-on-write enabled and Duplicate table, but Table[t] is an Aggregate
  table.`` (UNIQUE tables count as merge-on-write, Doris 2.1's default);
* an unknown table: ``Unknown table 'tbl'``.

A whole-database sync removes a merged family member's rows this way
(``_source_db`` / ``_source_table`` are key columns).
"""

import re
from typing import List, Optional, Tuple

import sqlglot
from sqlglot import exp

from stream_load_emulator import schema as schema_lib
from stream_load_emulator.ddl import DdlError, _database_known, _name

__all__ = ['is_delete', 'execute']

_DELETE = re.compile(r'^\s*DELETE\s+FROM\s+([`\w.]+)(?:\s+(?:WHERE\b.*)?)?$', re.I | re.S)
_UNSUPPORTED = ('Where clause only supports compound predicate, binary predicate, is_null '
                'predicate or in predicate')
_PREDICATES = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.In, exp.Is)


def is_delete(stmt: str) -> bool:
  """Whether ``stmt`` is a ``DELETE FROM``."""
  return bool(_DELETE.match(stmt.strip().rstrip(';')))


def execute(server, stmt: str, db: Optional[str]) -> int:
  """Runs ``stmt`` on ``server``'s storage; returns the number of rows deleted.

  Raises:
    DdlError: what Doris would answer.
  """
  stmt = stmt.strip().rstrip(';').strip()
  db_name, tbl = _name(_DELETE.match(stmt).group(1), db)
  try:
    parsed = sqlglot.parse_one(stmt, dialect='doris')
  except sqlglot.errors.ParseError as error:
    raise DdlError('Syntax error in DELETE: %s' % str(error).splitlines()[0]) from error
  with server.storage.lock:
    _database_known(server, db_name, replay=False)
    table = server.catalog.table(db_name, tbl)
    if table is None:
      raise DdlError("Unknown table '%s'" % tbl)
    where = parsed.args.get('where')
    if where is None:
      raise DdlError(_UNSUPPORTED)
    _check(table, _conjuncts(where.this))
    condition = where.this.sql(dialect='sqlite')
    return server.storage.delete_where(db_name, tbl, condition)


def _conjuncts(condition: exp.Expression) -> List[exp.Expression]:
  if isinstance(condition, exp.Paren):
    return _conjuncts(condition.this)
  if isinstance(condition, exp.And):
    return _conjuncts(condition.left) + _conjuncts(condition.right)
  return [condition]


def _check(table: schema_lib.Table, predicates: List[exp.Expression]) -> None:
  for predicate in predicates:
    negated = isinstance(predicate, exp.Not)
    inner = predicate.this if negated else predicate
    if not isinstance(inner, _PREDICATES) or (negated and not isinstance(inner, exp.In)):
      raise DdlError(_UNSUPPORTED)
    column, values = _sides(inner)
    if column is None or any(not isinstance(v, (exp.Literal, exp.Null, exp.Boolean))
                             for v in values):
      raise DdlError(_UNSUPPORTED)
    found = table.column(column)
    if found is None:
      raise DdlError("Unknown column '%s' in '%s'" % (column, table.name))
    if table.keys_type == schema_lib.AGGREGATE and not found.is_key:
      raise DdlError('delete predicate on value column only supports Unique table with '
                     'merge-on-write enabled and Duplicate table, but Table[%s] is an '
                     'Aggregate table.' % table.name)


def _sides(predicate: exp.Expression) -> Tuple[Optional[str], List[exp.Expression]]:
  """(column name, the literals it is compared with), or (None, []) if not that shape."""
  left = predicate.this
  if not isinstance(left, exp.Column):
    return None, []
  if isinstance(predicate, exp.In):
    return left.name, list(predicate.expressions)
  return left.name, [predicate.expression]
