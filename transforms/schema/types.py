"""Doris column types from JSON values, and the DDL text of added columns and created tables.

Pure functions, no I/O.  Inference from a JSON value (``infer_type``):

==============================  =====================================================
value                           Doris type
==============================  =====================================================
``true`` / ``false``            ``BOOLEAN``
integer in 64 bits              ``BIGINT``
larger integer (128 bits)       ``LARGEINT`` (beyond: ``STRING``)
floating point                  ``DOUBLE``
exact decimal (long numbers)    ``DECIMAL(38, s)``, ``s`` = its digits after the
                                point, at least 10, at most 30
string                          ``STRING`` (``VARCHAR(65533)`` as a key column)
object, array                   ``JSON``
``null``                        nothing yet: the column waits for a non-null value
==============================  =====================================================

Values of one new column that disagree widen (``widen``): integers and
decimals to ``DECIMAL``, any number and ``DOUBLE`` to ``DOUBLE``, anything
else to ``STRING``.  Doris rules the DDL follows: key columns come first, in
key order; ``STRING``, ``JSON``, ``FLOAT`` and ``DOUBLE`` cannot be key
columns (a ``STRING`` key becomes ``VARCHAR(65533)``, as flink-doris-connector
does; the others are never chosen); value columns are added ``NULL`` so an
``ADD COLUMN`` needs no default and is a light (instant) schema change.
"""

from __future__ import annotations

import decimal
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ['infer_type', 'widen', 'key_type', 'can_be_key', 'is_column_name', 'quote',
           'add_columns_ddl', 'create_table_ddl', 'HIDDEN_COLUMNS', 'UNIQUE', 'DUPLICATE',
           'BOOLEAN', 'BIGINT', 'LARGEINT', 'DOUBLE', 'STRING', 'JSON', 'KEY_STRING']

BOOLEAN = 'BOOLEAN'
BIGINT = 'BIGINT'
LARGEINT = 'LARGEINT'
DOUBLE = 'DOUBLE'
STRING = 'STRING'
JSON = 'JSON'
KEY_STRING = 'VARCHAR(65533)'
# StarRocks: a primary key is at most 128 bytes.
STARROCKS_KEY_STRING = 'VARCHAR(128)'
UNIQUE = 'UNIQUE'
DUPLICATE = 'DUPLICATE'

# Columns Doris (or StarRocks) keeps hidden or reads as load directives: never added.
HIDDEN_COLUMNS = frozenset({'__doris_delete_sign__', '__doris_sequence_col__',
                            '__doris_version_col__', '__op'})

_INT64 = 2 ** 63
_INT128 = 2 ** 127
_MIN_SCALE, _MAX_SCALE = 10, 30
# Doris column names: the portable subset (letters, digits, _), at most 256 characters.
_COLUMN_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,255}$')
_NOT_KEYS = ('STRING', 'JSON', 'JSONB', 'FLOAT', 'DOUBLE', 'ARRAY', 'MAP', 'STRUCT', 'VARIANT',
             'HLL', 'BITMAP', 'QUANTILE_STATE', 'AGG_STATE')
_INTEGERS = ('TINYINT', 'SMALLINT', 'INT', 'BIGINT', 'LARGEINT')


def infer_type(value: Any) -> Optional[str]:
  """The Doris type of a JSON value, or None for ``null``."""
  kind = type(value)
  if value is None:
    return None
  if kind is bool:
    return BOOLEAN
  if kind is int:
    if -_INT64 <= value < _INT64:
      return BIGINT
    return LARGEINT if -_INT128 <= value < _INT128 else STRING
  if kind is float:
    return DOUBLE
  if kind is decimal.Decimal:
    exponent = value.as_tuple().exponent
    scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f'DECIMAL(38, {min(max(scale, _MIN_SCALE), _MAX_SCALE)})'
  if kind is str:
    return STRING
  if kind is dict or kind is list:
    return JSON
  return STRING


def _base(type_name: str) -> str:
  return type_name.split('(')[0].strip().upper()


def widen(a: Optional[str], b: Optional[str]) -> Optional[str]:
  """The narrowest type that holds values of both ``a`` and ``b`` (None: no value yet)."""
  if a is None or a == b:
    return b if a is None else a
  if b is None:
    return a
  base_a, base_b = _base(a), _base(b)
  pair = {base_a, base_b}
  if pair <= set(_INTEGERS):
    return a if _INTEGERS.index(base_a) >= _INTEGERS.index(base_b) else b
  if pair <= set(_INTEGERS) | {'DECIMAL', 'DECIMALV3'}:
    if base_a.startswith('DECIMAL') and base_b.startswith('DECIMAL'):
      return a if _scale(a) >= _scale(b) else b
    return a if base_a.startswith('DECIMAL') else b
  if pair <= set(_INTEGERS) | {'DECIMAL', 'DECIMALV3', 'FLOAT', 'DOUBLE'}:
    return DOUBLE
  return STRING


def _scale(type_name: str) -> int:
  match = re.search(r',\s*(\d+)\s*\)', type_name)
  return int(match.group(1)) if match else 0


def can_be_key(type_name: str) -> bool:
  """Whether Doris accepts a column of this type as a key column (STRING: as VARCHAR)."""
  base = _base(type_name)
  return base == 'STRING' or base not in _NOT_KEYS


def key_type(type_name: str) -> str:
  """The type a key column of ``type_name`` is declared with (``STRING`` -> VARCHAR(65533))."""
  return KEY_STRING if _base(type_name) == 'STRING' else type_name


def is_column_name(name: Any) -> bool:
  """Whether ``name`` can be added as a column (and is no hidden column)."""
  return (isinstance(name, str) and bool(_COLUMN_NAME.match(name))
          and name.lower() not in HIDDEN_COLUMNS)


def quote(name: str) -> str:
  """``name`` as a Doris identifier (backquoted)."""
  return '`' + name.replace('`', '``') + '`'


def _table_name(table: str) -> str:
  db, _, tbl = table.partition('.')
  return f'{quote(db)}.{quote(tbl)}'


def add_columns_ddl(table: str, columns: Sequence[Tuple[str, str]]) -> str:
  """``ALTER TABLE db.tbl ADD COLUMN ...``: nullable value columns, at the end.

  One column: ``ADD COLUMN c T NULL``; several: ``ADD COLUMN (a T NULL, b U NULL)``
  (one schema change job for all of them).
  """
  if not columns:
    raise ValueError('add_columns_ddl: no columns')
  defs = [f'{quote(name)} {type_name} NULL' for name, type_name in columns]
  if len(defs) == 1:
    return f'ALTER TABLE {_table_name(table)} ADD COLUMN {defs[0]}'
  return f'ALTER TABLE {_table_name(table)} ADD COLUMN ({", ".join(defs)})'


def create_table_ddl(table: str, columns: Sequence[Tuple[str, str]], key_model: str,
                     key_columns: Sequence[str], *, distributed_by: Optional[Sequence[str]] = None,
                     buckets: Optional[int] = None,
                     properties: Optional[Mapping[str, str]] = None,
                     starrocks: bool = False) -> str:
  """``CREATE TABLE IF NOT EXISTS``: key columns first, the rest in the given order.

  Args:
    table: ``db.tbl``.
    columns: ``(name, Doris type)`` in first-seen order.
    key_model: ``UNIQUE`` or ``DUPLICATE``.
    key_columns: the key (a non-empty subset of ``columns``' names).
    distributed_by: hash columns; ``()`` for ``DISTRIBUTED BY RANDOM``
      (DUPLICATE only); None: the key columns.
    buckets: a bucket count; None: ``BUCKETS AUTO``.
    properties: ``PROPERTIES`` in the given order.
    starrocks: StarRocks's dialect: a ``UNIQUE`` model becomes a ``PRIMARY KEY`` table (upserts
      and deletes by ``__op``), a string key ``VARCHAR(128)`` (StarRocks caps a primary key at
      128 bytes), and no bucket count lets StarRocks choose (``BUCKETS AUTO`` is Doris's).

  Raises:
    ValueError: no key, a key that is no column or cannot be a key.
  """
  if key_model not in (UNIQUE, DUPLICATE):
    raise ValueError(f'key model must be {UNIQUE} or {DUPLICATE}, got {key_model!r}')
  types: Dict[str, str] = {}
  for name, type_name in columns:
    types.setdefault(name.lower(), type_name)
  if not key_columns:
    raise ValueError(f'{table}: no key column')
  by_lower = {name.lower(): name for name, _ in columns}
  keys: List[str] = []
  for key in key_columns:
    if key.lower() not in by_lower:
      raise ValueError(f'{table}: key column {key!r} is not among the columns')
    if not can_be_key(types[key.lower()]):
      raise ValueError(f'{table}: column {key!r} of type {types[key.lower()]} cannot be a key')
    keys.append(by_lower[key.lower()])
  key_set = {k.lower() for k in keys}
  def key_column_type(type_name: str) -> str:
    typed = key_type(type_name)
    return STARROCKS_KEY_STRING if starrocks and typed == KEY_STRING and key_model == UNIQUE \
        else typed

  lines = [f'{quote(k)} {key_column_type(types[k.lower()])} '
           f'{"NOT NULL" if key_model == UNIQUE else "NULL"}' for k in keys]
  lines += [f'{quote(name)} {type_name} NULL' for name, type_name in _unique(columns)
            if name.lower() not in key_set]
  hashed = keys if distributed_by is None else list(distributed_by)
  if not hashed and key_model == UNIQUE:
    raise ValueError(f'{table}: DISTRIBUTED BY RANDOM needs a DUPLICATE KEY table')
  distribution = (f'DISTRIBUTED BY HASH({", ".join(quote(c) for c in hashed)})' if hashed
                  else 'DISTRIBUTED BY RANDOM')
  model = 'PRIMARY' if starrocks and key_model == UNIQUE else key_model
  if buckets is not None:
    distribution += f' BUCKETS {buckets}'
  elif not starrocks:
    distribution += ' BUCKETS AUTO'
  text = (f'CREATE TABLE IF NOT EXISTS {_table_name(table)} (\n  ' + ',\n  '.join(lines)
          + f'\n) {model} KEY({", ".join(quote(k) for k in keys)})\n{distribution}')
  if properties:
    text += '\nPROPERTIES (' + ', '.join(f'{_string(k)} = {_string(v)}'
                                         for k, v in properties.items()) + ')'
  return text


def _unique(columns: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
  seen, out = set(), []
  for name, type_name in columns:
    if name.lower() not in seen:
      seen.add(name.lower())
      out.append((name, type_name))
  return out


def _string(value: Any) -> str:
  return '"' + str(value).replace('\\', '\\\\').replace('"', '\\"') + '"'
