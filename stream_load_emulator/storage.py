"""Row storage in SQLite: one file per Doris database, queried with Doris SQL.

Each Doris database is a SQLite file ``<data_dir>/<db>.sqlite`` ATTACHed under the database
name, so ``SELECT ... FROM demo.users`` works after sqlglot transpiles Doris SQL to SQLite.
The key models of https://doris.apache.org/docs/table-design/data-model/overview map to
SQLite upserts: DUPLICATE appends, UNIQUE replaces the row (``INSERT ... ON CONFLICT DO
UPDATE``, guarded by the sequence column when there is one, see
https://doris.apache.org/docs/data-operate/update/unique-update-sql), AGGREGATE folds values
with SUM/MAX/MIN/REPLACE/REPLACE_IF_NOT_NULL. One connection is shared by all threads
behind a lock: SQLite serializes writers anyway and loads are small transactions.
"""

import dataclasses
import decimal
import logging
import os
import sqlite3
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlglot

from stream_load_emulator import convert
from stream_load_emulator import schema as schema_lib

_LOGGER = logging.getLogger(__name__)

META_FILE = '_emulator_meta.sqlite'
UPSERT = 'upsert'
DELETE = 'delete'


def _q(name: str) -> str:
  return '"%s"' % name.replace('"', '""')


def _dec(value):
  return None if value is None else decimal.Decimal(str(value))


def _dec_add(a, b):
  if a is None:
    return b
  if b is None:
    return a
  return format(_dec(a) + _dec(b), 'f')


def _dec_pick(fn):
  def pick(a, b):
    if a is None:
      return b
    if b is None:
      return a
    return a if fn(_dec(a), _dec(b)) == _dec(a) else b
  return pick


sqlite3.register_converter('DORIS_DECIMAL', lambda b: decimal.Decimal(b.decode()))


class Storage:
  """Typed tables in SQLite, plus the label/transaction metadata the FE would keep."""

  def __init__(self, data_dir: str, catalog: schema_lib.Catalog):
    self.data_dir = data_dir
    self.catalog = catalog
    os.makedirs(data_dir, exist_ok=True)
    self.lock = threading.RLock()
    self._conn = sqlite3.connect(os.path.join(data_dir, META_FILE), check_same_thread=False,
                                 detect_types=sqlite3.PARSE_DECLTYPES, isolation_level=None)
    self._conn.execute('PRAGMA journal_mode=WAL')
    self._conn.execute('PRAGMA synchronous=NORMAL')
    self._conn.create_function('doris_dec_add', 2, _dec_add, deterministic=True)
    self._conn.create_function('doris_dec_max', 2, _dec_pick(max), deterministic=True)
    self._conn.create_function('doris_dec_min', 2, _dec_pick(min), deterministic=True)
    self._conn.execute(
        'CREATE TABLE IF NOT EXISTS labels (db TEXT, label TEXT, txn_id INTEGER, '
        'table_name TEXT, status TEXT, finish_ts REAL, PRIMARY KEY (db, label))')
    self._conn.execute('CREATE TABLE IF NOT EXISTS ddl (seq INTEGER PRIMARY KEY AUTOINCREMENT, '
                       'db TEXT, stmt TEXT)')
    self._conn.execute("ATTACH DATABASE ':memory:' AS information_schema")
    self._conn.execute(
        'CREATE TABLE information_schema.columns (TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, '
        'TABLE_NAME TEXT, COLUMN_NAME TEXT, ORDINAL_POSITION INTEGER, COLUMN_DEFAULT TEXT, '
        'IS_NULLABLE TEXT, DATA_TYPE TEXT, COLUMN_TYPE TEXT, COLUMN_KEY TEXT, '
        'COLUMN_COMMENT TEXT)')
    self._attached = set()
    # (db, table) -> {old column name (lower case): new name}: loads planned before a RENAME
    # COLUMN still name the old column; their values follow it (Doris keys columns by id).
    self._renamed: Dict[Tuple[str, str], Dict[str, str]] = {}
    for db, tables in catalog.databases.items():
      self._attach(db)
      for table in tables.values():
        self._create_table(table)

  # --- DDL (the SQL API's CREATE / ALTER) ---------------------------------------------------

  def attach(self, db: str) -> None:
    """Makes database ``db`` (its SQLite file) available."""
    with self.lock:
      self._attach(db)

  def create_table(self, table: schema_lib.Table) -> None:
    """Creates the SQLite table of ``table`` (idempotent)."""
    with self.lock:
      self._create_table(table)

  def add_columns(self, table: schema_lib.Table, columns) -> None:
    """Adds ``columns`` to ``table``'s rows: NULL, or their DEFAULT, in existing rows."""
    with self.lock:
      existing = {r[1].lower() for r in self._conn.execute(
          'PRAGMA %s.table_info(%s)' % (_q(table.db), _q(table.name)))}
      for c in columns:
        if c.name.lower() not in existing:
          self._conn.execute('ALTER TABLE %s.%s ADD COLUMN %s' % (
              _q(table.db), _q(table.name), self._column_decl(c)))

  def rename_column(self, table: schema_lib.Table, old: str, new: str) -> None:
    """Renames ``old`` to ``new`` in ``table``'s rows (light schema change: no rewrite)."""
    with self.lock:
      self._conn.execute('ALTER TABLE %s.%s RENAME COLUMN %s TO %s' % (
          _q(table.db), _q(table.name), _q(old), _q(new)))
      renamed = self._renamed.setdefault((table.db, table.name), {})
      for before, after in list(renamed.items()):
        if after.lower() == old.lower():
          renamed[before] = new
      renamed[old.lower()] = new

  def rewrite(self, old: schema_lib.Table, new: schema_lib.Table,
              convert_columns: Optional[Dict[str, Any]] = None) -> None:
    """Rewrites ``old``'s rows into the schema of ``new``, in one SQLite transaction.

    Columns of ``new`` take the values of the column of the same name in ``old`` (NULL or
    their DEFAULT when ``old`` has none); ``convert_columns`` maps a column name to the
    function turning a stored value into the new type's (it raises
    ``convert.ConversionError`` for a value that does not fit). Rows are written in their
    order with the key model's merge, so an AGGREGATE table that lost a key column folds the
    rows that now share a key.
    """
    convert_columns = {k.lower(): f for k, f in (convert_columns or {}).items()}
    kept = [c.name for c in new.columns if old.column(c.name) is not None]
    sources = [old.column(name).name for name in kept]
    scratch = '__emulator_rewrite_%s' % new.name
    with self.lock:
      cur = self._conn.cursor()
      cur.execute('BEGIN')
      try:
        cur.execute('DROP TABLE IF EXISTS %s.%s' % (_q(new.db), _q(scratch)))
        cur.execute('ALTER TABLE %s.%s RENAME TO %s' % (_q(old.db), _q(old.name), _q(scratch)))
        self._create_table(new, cur)
        rows = cur.execute('SELECT %s FROM %s.%s ORDER BY rowid' % (
            ', '.join(_q(c) for c in sources) or 'NULL', _q(new.db), _q(scratch))).fetchall()
        fixes = [convert_columns.get(name.lower()) for name in kept]
        out = []
        for row in rows:
          values = []
          for fix, value in zip(fixes, row):
            if isinstance(value, decimal.Decimal):
              value = format(value, 'f')
            if fix is not None and value is not None:
              value = fix(value)
            values.append(value)
          out.append(values)
        if kept and out:
          cur.executemany(self._upsert_sql(new, kept, False), out)
        cur.execute('DROP TABLE %s.%s' % (_q(new.db), _q(scratch)))
        cur.execute('COMMIT')
      except BaseException:
        cur.execute('ROLLBACK')
        raise

  def truncate(self, db: str, name: str) -> None:
    """Deletes every row of ``db.name``; the table stays."""
    with self.lock:
      self._conn.execute('DELETE FROM %s.%s' % (_q(db), _q(name)))

  def delete_where(self, db: str, name: str, condition: str) -> int:
    """Deletes the rows of ``db.name`` matching ``condition`` (SQLite); returns how many."""
    with self.lock:
      return self._conn.execute('DELETE FROM %s.%s WHERE %s' % (_q(db), _q(name),
                                                                 condition)).rowcount

  def drop_table(self, db: str, name: str) -> None:
    """Drops ``db.name`` and its rows."""
    with self.lock:
      self._conn.execute('DROP TABLE IF EXISTS %s.%s' % (_q(db), _q(name)))
      self._renamed.pop((db, name), None)

  def reconcile(self, db: str, name: str, table: Optional[schema_lib.Table]) -> None:
    """Makes the rows' table of ``db.name`` match the catalog after DDL replay at start.

    Storage already holds every change of the earlier run; only what the start itself put
    back from the schema file goes: a dropped table recreated empty, empty columns re-added
    for dropped or renamed ones.
    """
    with self.lock:
      if db not in self._attached:
        return
      if table is None:
        self._conn.execute('DROP TABLE IF EXISTS %s.%s' % (_q(db), _q(name)))
        return
      self._create_table(table)
      wanted = {c.name.lower() for c in table.columns}
      for row in self._conn.execute('PRAGMA %s.table_info(%s)' % (_q(db), _q(name))).fetchall():
        if row[1].lower() not in wanted:
          try:
            self._conn.execute('ALTER TABLE %s.%s DROP COLUMN %s' % (_q(db), _q(name),
                                                                   _q(row[1])))
          except sqlite3.OperationalError as e:
            _LOGGER.warning('cannot drop the leftover column %s of %s.%s: %s', row[1], db,
                            name, e)

  def save_ddl(self, stmt: str, db: Optional[str]) -> None:
    with self.lock:
      self._conn.execute('INSERT INTO ddl (db, stmt) VALUES (?, ?)', (db, stmt))

  def load_ddl(self) -> List[Tuple[Optional[str], str]]:
    """Every DDL statement run through the SQL API, oldest first: ``(db, stmt)``."""
    with self.lock:
      return self._conn.execute('SELECT db, stmt FROM ddl ORDER BY seq').fetchall()

  def _refresh_information_schema(self) -> None:
    rows = []
    for db, tables in sorted(self.catalog.databases.items()):
      for table in tables.values():
        key = {schema_lib.UNIQUE: 'UNI', schema_lib.PRIMARY: 'PRI', schema_lib.AGGREGATE: 'AGG',
               schema_lib.DUPLICATE: 'DUP'}[table.keys_type]
        for i, c in enumerate(table.columns):
          rows.append(('internal', db, table.name, c.name, i + 1,
                       c.default if c.has_default else None, 'YES' if c.nullable else 'NO',
                       c.type_name.lower(), c.sql_type.lower(), key if c.is_key else '', ''))
    self._conn.execute('DELETE FROM information_schema.columns')
    self._conn.executemany('INSERT INTO information_schema.columns VALUES '
                           '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', rows)

  def close(self) -> None:
    with self.lock:
      self._conn.close()

  def _attach(self, db: str) -> None:
    if db in self._attached:
      return
    path = os.path.join(self.data_dir, '%s.sqlite' % db)
    self._conn.execute('ATTACH DATABASE ? AS %s' % _q(db), (path,))
    self._conn.execute('PRAGMA %s.journal_mode=WAL' % _q(db))
    self._conn.execute('PRAGMA %s.synchronous=NORMAL' % _q(db))
    self._attached.add(db)

  @staticmethod
  def _column_decl(c: schema_lib.Column) -> str:
    decl = '%s %s' % (_q(c.name), convert.sqlite_type(c))
    if c.has_default and c.default is not None:
      ok, value, _ = convert.convert(convert.make_converter(c), c, c.default, False)
      if ok and value is not None:
        decl += ' DEFAULT %s' % (value if isinstance(value, (int, float)) else
                                 "'%s'" % str(value).replace("'", "''"))
    return decl

  def _create_table(self, table: schema_lib.Table, cur=None) -> None:
    cur = cur or self._conn
    cols = [self._column_decl(c) for c in table.columns]
    if table.keys_type != schema_lib.DUPLICATE:
      cols.append('PRIMARY KEY (%s)' % ', '.join(_q(k) for k in table.key_columns))
    cur.execute('CREATE TABLE IF NOT EXISTS %s.%s (%s)'
                % (_q(table.db), _q(table.name), ', '.join(cols)))
    existing = {r[1].lower() for r in cur.execute(
        'PRAGMA %s.table_info(%s)' % (_q(table.db), _q(table.name))).fetchall()}
    for c in table.columns:
      if c.name.lower() not in existing:
        cur.execute('ALTER TABLE %s.%s ADD COLUMN %s %s' % (
            _q(table.db), _q(table.name), _q(c.name), convert.sqlite_type(c)))

  # --- writes -----------------------------------------------------------------------------

  def apply(self, table: schema_lib.Table,
            ops: Iterable[Tuple[str, Sequence[str], Sequence[Any]]],
            partial: bool = False) -> None:
    """Applies ``ops`` in load order, in one SQLite transaction.

    Args:
      table: target table.
      ops: ``(UPSERT | DELETE, column names, values aligned with the names)`` per row.
      partial: a partial-column update: only the named columns change on existing rows.
    """
    self.apply_many([(table, ops, partial)])

  def apply_many(self, writes) -> None:
    """Applies several loads' ``(table, ops, partial)`` in order, in ONE SQLite transaction
    (a merged group commit is one Doris transaction / one version)."""
    with self.lock:
      cur = self._conn.cursor()
      cur.execute('BEGIN')
      try:
        for planned, ops, partial in writes:
          table = self._current(planned)
          if table is None:
            continue  # dropped since the load was planned: its rows went with it
          statements: Dict[tuple, Any] = {}
          run_key, run = None, []
          for kind, columns, values in ops:
            key = (kind, tuple(columns))
            if key != run_key and run:
              self._flush(cur, run_key, run, statements, table, partial)
              run = []
            run_key = key
            run.append(values)
          if run:
            self._flush(cur, run_key, run, statements, table, partial)
        cur.execute('COMMIT')
      except BaseException:
        cur.execute('ROLLBACK')
        raise

  def _current(self, planned: schema_lib.Table) -> Optional[schema_lib.Table]:
    """``planned`` as the catalog has it now (a DDL may have run since the load was planned),
    keeping the load's own sequence column; None when the table was dropped."""
    table = self.catalog.table(planned.db, planned.name)
    if table is None or table is planned:
      return table
    seq = planned.sequence_col and self._column_now(table, planned.sequence_col)
    if seq and seq != table.sequence_col:
      table = dataclasses.replace(table, properties=dict(
          table.properties, **{'function_column.sequence_col': seq}))
    return table

  def _column_now(self, table: schema_lib.Table, name: str) -> Optional[str]:
    """The current name of the column a load planned as ``name`` (None: dropped since)."""
    column = table.column(name)
    if column is None:
      renamed = self._renamed.get((table.db, table.name), {}).get(name.lower())
      column = table.column(renamed) if renamed else None
    return column.name if column is not None else None

  def _flush(self, cur, key, rows, statements, table, partial):
    kind, columns = key
    if key not in statements:
      names, keep = list(columns), None
      now = [self._column_now(table, c) for c in columns]
      if any(n is None or n.lower() != c.lower() for n, c in zip(now, columns)):
        keep = [i for i, n in enumerate(now) if n is not None]
        names = [now[i] for i in keep]
      if kind == UPSERT:
        statements[key] = (self._upsert_sql(table, names, partial) if names else None, None,
                           keep)
      else:
        statements[key] = self._delete_sql(table, names) + (keep,)
    sql, idx, keep = statements[key]
    if keep is not None:
      rows = [[r[i] for i in keep] for r in rows]
    if sql is None:
      return
    if kind == UPSERT:
      cur.executemany(sql, rows)
    else:
      cur.executemany(sql, [[r[i] for i in idx] for r in rows])

  def _upsert_sql(self, table, columns, partial):
    target = '%s.%s' % (_q(table.db), _q(table.name))
    sql = 'INSERT INTO %s (%s) VALUES (%s)' % (
        target, ', '.join(_q(c) for c in columns), ', '.join('?' * len(columns)))
    if table.keys_type == schema_lib.DUPLICATE:
      return sql
    keys = {k.lower() for k in table.key_columns}
    sets = []
    for name in columns:
      if name.lower() in keys:
        continue
      col = table.column(name)
      new, old = 'excluded.%s' % _q(name), _q(name)
      is_dec = convert.sqlite_type(col) == 'DORIS_DECIMAL'
      agg = col.aggregation if table.keys_type == schema_lib.AGGREGATE else 'REPLACE'
      if agg == 'SUM':
        expr = ('doris_dec_add(%s, %s)' % (old, new) if is_dec else
                'CASE WHEN %s IS NULL THEN %s WHEN %s IS NULL THEN %s ELSE %s + %s END'
                % (old, new, new, old, old, new))
      elif agg in ('MAX', 'MIN'):
        expr = ('doris_dec_%s(%s, %s)' % (agg.lower(), old, new) if is_dec else
                '%s(coalesce(%s, %s), coalesce(%s, %s))' % (agg.lower(), old, new, new, old))
      elif agg == 'REPLACE_IF_NOT_NULL':
        expr = 'coalesce(%s, %s)' % (new, old)
      else:
        expr = new
      sets.append('%s = %s' % (_q(name), expr))
    conflict = ', '.join(_q(k) for k in table.key_columns)
    if not sets:
      return sql + ' ON CONFLICT (%s) DO NOTHING' % conflict
    sql += ' ON CONFLICT (%s) DO UPDATE SET %s' % (conflict, ', '.join(sets))
    seq = table.sequence_col
    if seq and any(c.lower() == seq.lower() for c in columns):
      # Doris: a row only replaces one whose sequence value is not higher.
      sql += ' WHERE %s IS NULL OR (excluded.%s IS NOT NULL AND excluded.%s >= %s)' % (
          _q(seq), _q(seq), _q(seq), _q(seq))
    return sql

  def _delete_sql(self, table, columns):
    lower = [c.lower() for c in columns]
    idx = [lower.index(k.lower()) for k in table.key_columns if k.lower() in lower]
    where = ' AND '.join('%s = ?' % _q(k) for k in table.key_columns)
    seq = table.sequence_col
    if seq and seq.lower() in lower:
      idx.append(lower.index(seq.lower()))
      where += ' AND (%s IS NULL OR ? >= %s)' % (_q(seq), _q(seq))
    return 'DELETE FROM %s.%s WHERE %s' % (_q(table.db), _q(table.name), where), idx

  # --- reads ------------------------------------------------------------------------------

  def query(self, sql: str, db: Optional[str] = None) -> Tuple[List[str], List[tuple]]:
    """Runs Doris SQL; returns ``(column names, rows)``.

    Args:
      sql: one Doris SQL statement (SELECT / SHOW-free subset SQLite can run).
      db: default database for unqualified table names.
    """
    expression = sqlglot.parse_one(sql, dialect='doris')
    if db and db in self._attached:
      ctes = {c.alias_or_name for c in expression.find_all(sqlglot.exp.CTE)}
      for table in expression.find_all(sqlglot.exp.Table):
        if not table.args.get('db') and table.name not in ctes:
          table.set('db', sqlglot.exp.to_identifier(db))
    text = expression.sql(dialect='sqlite')
    with self.lock:
      if 'information_schema' in text.lower():
        self._refresh_information_schema()
      cur = self._conn.execute(text)
      names = [d[0] for d in cur.description or ()]
      rows = [tuple(r) for r in cur.fetchall()]
    return names, rows

  # --- label metadata ---------------------------------------------------------------------

  def save_label(self, db: str, label: str, txn_id: int, table: str, status: str,
                 finish_ts: float) -> None:
    with self.lock:
      self._conn.execute('INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?)',
                         (db, label, txn_id, table, status, finish_ts))

  def load_labels(self) -> List[tuple]:
    with self.lock:
      return self._conn.execute(
          'SELECT db, label, txn_id, table_name, status, finish_ts FROM labels').fetchall()

  def forget_labels_before(self, ts: float) -> None:
    with self.lock:
      self._conn.execute('DELETE FROM labels WHERE finish_ts < ?', (ts,))

  def max_txn_id(self) -> int:
    with self.lock:
      row = self._conn.execute('SELECT max(txn_id) FROM labels').fetchone()
    return row[0] or 0
