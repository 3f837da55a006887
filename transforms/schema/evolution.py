"""``SchemaEvolution``: per worker, makes a table fit the rows about to be loaded into it.

Given ``(table, rows)`` before they are batched:

* the table's columns come from the FE once and are cached; a row whose
  fields are all known costs one C-level set test; an unknown field makes
  the cache refresh first (another worker may have added the column);
* ``--schema_evolution=none``: each unknown column is reported once per table
  and column (one WARNING line, a counter); the rows load as they are --
  Doris's JSON and CSV Stream Loads leave out fields that are no column
  (an Arrow body would fail, so for Arrow tables they are left out here);
* ``add_columns``: the missing columns are added with one ``ALTER TABLE ...
  ADD COLUMN`` (nullable, typed from the record's schema or its values; a
  column whose values are all ``null`` waits for a value), then the loader
  waits until the FE shows them.  "Can not add column which already exists"
  (another worker was first) counts as success; "state is not NORMAL. Do not
  allow doing ALTER ops" (the table's other schema change job) is retried
  with backoff until ``ddl_timeout_secs``.  Columns are never dropped,
  narrowed or retyped;
* ``--create_tables``: a missing table is created (``CREATE TABLE IF NOT
  EXISTS``) from the first rows: ``UNIQUE KEY`` on the key of keyed CDC rows,
  ``DUPLICATE KEY`` on the first column that can be a key otherwise.

Failures by whose fault: no FE answering (after retries within
``ddl_timeout_secs``) raises ``FeUnavailableError`` -- the bundle fails and
no offset moves; refused credentials raise ``FeAuthError``; a statement the
FE rejects (a type it refuses, no ALTER/CREATE privilege, CDC rows without a
known key) dead-letters the rows that need the change, with the reason
``schema_change_failed: ...``, and the statement is tried again after
``REJECTED_RETRY_SECS``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import orjson

from transforms import retry
from transforms.errors import ClusterFault
from transforms.schema import types
from transforms.schema.config import SchemaEvolutionConfig, TableDdlOptions
from transforms.schema.fe_sql import (FeSqlClient, FeSqlError, FeUnavailableError,
                                      SqlRejectedError)
from transforms.schema.mysql_sql import MysqlFeClient
from transforms.stream_load.config import STARROCKS, split_table
from transforms.types import MAX_DEAD_LETTER_PAYLOAD_BYTES, OP_DELETE, DeadLetter, Row

__all__ = ['SchemaEvolution', 'SCHEMA_CHANGE_FAILED', 'REJECTED_RETRY_SECS', 'MissingDatabaseError',
           'MISSING_TABLE_RECHECK_SECS', 'is_busy', 'is_already_exists']

_LOGGER = logging.getLogger('transforms.schema')

SCHEMA_CHANGE_FAILED = 'schema_change_failed'
REJECTED_RETRY_SECS = 60.0
MISSING_TABLE_RECHECK_SECS = 30.0
# How long a database's listing answers for the tables first needed after it.
LISTING_FRESH_SECS = 30.0
_POLL_INITIAL_SECS = 0.05
_POLL_MAX_SECS = 2.0

# Doris: SchemaChangeHandler.addColumnInternal; OlapTable.checkNormalStateForAlter; CREATE
# TABLE without IF NOT EXISTS racing another.
_ALREADY_EXISTS = ('can not add column which already exists', 'already exists')
_BUSY = ('is not normal', 'do not allow doing alter ops', 'is doing rollup job',
         'schema change operation is in progress', 'there is a schema change job')
_TRANSIENT = ('timeout', 'timed out', 'please retry', 'not ready', 'failed to get master')
_NO_DATABASE = ('unknown database',)  # Doris ErrorCode.ERR_BAD_DB_ERROR


def is_busy(message: str) -> bool:
  """Whether the FE refused because the table is in another schema change (retry later)."""
  lowered = message.lower()
  return any(text in lowered for text in _BUSY + _TRANSIENT)


def is_missing_database(message: str) -> bool:
  """Whether the FE refused because the table's database does not exist."""
  lowered = message.lower()
  return any(text in lowered for text in _NO_DATABASE)


class MissingDatabaseError(FeSqlError, ClusterFault):
  """A table cannot be created: its database does not exist. Not the rows' fault: the job
  stops (no offset moves) until the database is there."""


def is_already_exists(message: str) -> bool:
  """Whether the FE refused because the column (or table) is already there (success)."""
  lowered = message.lower()
  return any(text in lowered for text in _ALREADY_EXISTS)


@dataclasses.dataclass
class _Table:
  """What a worker knows of one table."""
  columns: Dict[str, str]                 # lower-case name -> name
  known: Set[str]                         # field names that need no look: columns, ignored
  reported: Set[str] = dataclasses.field(default_factory=set)   # lower-case names reported
  rejected: Dict[str, Tuple[float, str]] = dataclasses.field(default_factory=dict)
  missing: bool = False                   # the table did not exist when last asked
  unknown: bool = False                   # the FE could not be asked (--schema_evolution=none)
  recheck_at: float = float('inf')        # when to ask again (missing or unknown)

  @classmethod
  def of(cls, columns: Optional[Sequence[Tuple[str, str]]], now: float) -> '_Table':
    if columns is None:
      return cls({}, set(), missing=True, recheck_at=now + MISSING_TABLE_RECHECK_SECS)
    by_lower = {name.lower(): name for name, _ in columns}
    return cls(by_lower, set(by_lower.values()) | set(by_lower))

  def learn(self, columns: Sequence[Tuple[str, str]]) -> None:
    for name, _ in columns:
      self.columns[name.lower()] = name
      self.known.update((name, name.lower()))
    self.missing = self.unknown = False
    self.recheck_at = float('inf')


class SchemaEvolution:
  """Per-worker schema evolution and table creation (see the module docstring).

  Args:
    config: the validated settings.
    client: an FE client (tests); else one is made from ``config.load``.
    clock, sleep: time (tests).
    counter: ``counter(name, table, n)`` for metrics (``unknown_columns``,
      ``columns_added``, ``tables_created``, ``schema_change_failed``).
  """

  def __init__(self, config: SchemaEvolutionConfig, client: Optional[FeSqlClient] = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep,
               counter: Optional[Callable[[str, str, int], None]] = None):
    self.config = config
    if client is None:
      client = (MysqlFeClient(config.load, config.query_port) if config.over_mysql
                else FeSqlClient(config.load))
    self._client = client
    self._clock = clock
    self._sleep = sleep
    self._count = counter or (lambda name, table, n: None)
    self._tables: Dict[str, _Table] = {}
    # db -> (when, columns by table): a database's tables asked in one query, each used once
    self._listings: Dict[str, Tuple[float, Dict[str, List[Tuple[str, str]]]]] = {}
    self._mapped = frozenset(config.mapped_tables)
    # Only reports to make: an FE that cannot be asked is no reason to stop loading.
    self._strict = config.adds_columns or config.create_tables or config.ddl is not None

  def close(self) -> None:
    self._client.close()

  # ------------------------------------------------------------------ for schema change topics

  def run_statement(self, table: str, stmt: str) -> None:
    """Runs ``stmt`` on ``table``'s database, waiting out a busy table or an unreachable FE
    for up to ``ddl_timeout_secs``; then forgets what it knew of the table.

    Raises:
      SqlRejectedError: the FE refused it.
      FeUnavailableError: no FE answered in time (or the table stayed busy).
    """
    db, _ = split_table(table)
    try:
      self._execute(db, stmt, self._clock() + self.config.ddl_timeout_secs)
    finally:
      self._tables.pop(table, None)

  def table_columns(self, table: str) -> Optional[List[Tuple[str, str]]]:
    """The table's ``(name, type)`` columns now (None: no such table), retried like DDL."""
    return self._columns(table)

  def fits(self, table: str, rows: Sequence[Row]) -> bool:
    """Whether this worker knows ``table`` and every field of ``rows`` (no schema change is
    needed, as far as it knows)."""
    if table in self._mapped:
      return True
    state = self._tables.get(table)
    if state is None or state.missing or state.unknown:
      return False
    known = state.known
    return all(known.issuperset(_names(row)) for row in rows)

  # ------------------------------------------------------------------ entry point

  def ensure(self, table: str, rows: List[Row], column_types: Optional[Mapping[str, str]] = None,
             key_columns: Optional[Sequence[str]] = None
             ) -> Tuple[List[Row], List[DeadLetter]]:
    """Makes ``table`` fit ``rows``; returns the rows to load and the dead letters.

    Args:
      table: ``db.tbl``.
      rows: its rows (``fields`` set), in Kafka order.
      column_types: column -> Doris type from the record's schema (wins over
        inference from values).
      key_columns: the source's primary key (a key schema's, or a CDC record key's fields),
        if known.

    Raises:
      FeUnavailableError: no FE answered within ``ddl_timeout_secs``.
      FeAuthError: the FE refused the credentials.
    """
    if table in self._mapped or not rows:
      return rows, []
    state = self._tables.get(table)
    if state is None:
      state = self._list_database(table)
    now = self._clock()
    if state is None or now >= state.recheck_at:
      try:
        columns = self._columns(table)
      except FeSqlError as error:
        if self._strict:
          raise
        if state is None or not state.unknown:
          _LOGGER.warning('table %s: cannot read its columns (%s); unknown fields are not '
                          'reported for now', table, error)
        state = self._tables[table] = _Table({}, set(), unknown=True,
                                             recheck_at=now + MISSING_TABLE_RECHECK_SECS)
        return rows, []
      state = self._tables[table] = _Table.of(columns, now)
    if state.unknown:
      return rows, []
    if state.missing:
      if not self.config.create_tables:
        return rows, []  # the sink dead-letters them: "table not found"
      failed = self._create(table, state, rows, column_types or {}, key_columns)
      if failed is not None:
        return [], [_dead_letter(row, failed) for row in rows]
    known = state.known
    if all(known.issuperset(_names(row)) for row in rows):
      # Known, but maybe as fields left out (reported): an Arrow body must not carry them.
      return (self._strip(table, state, rows) if state.reported else rows), []
    return self._evolve(table, state, rows, column_types or {})

  def _list_database(self, table: str) -> Optional[_Table]:
    """``table``'s state from one query that asked for every table of its database, the first
    time one of them was needed (300 tables: one round trip, not 300 on the bundle's thread).

    The listing answers for ``LISTING_FRESH_SECS``; a table first needed later, one it did not
    have (made since) or one of a database the FE would not list is asked on its own, as before.
    """
    db, _ = split_table(table)
    now = self._clock()
    listing = self._listings.get(db)
    if listing is None:
      try:
        found = self._client.database_columns(db)
      except FeSqlError as error:
        _LOGGER.debug('database %s: cannot list its columns (%s); its tables are asked one by '
                      'one', db, error)
        found = {}
      listing = self._listings[db] = (now, found)
    when, found = listing
    if now - when > LISTING_FRESH_SECS:
      found.clear()
      return None
    columns = found.pop(table, None)
    if columns is None:
      return None
    state = self._tables[table] = _Table.of(columns, now)
    return state

  # ------------------------------------------------------------------ unknown columns

  def _unknown(self, state: _Table, rows: Iterable[Row], column_types: Mapping[str, str]
               ) -> Tuple[Dict[str, Tuple[str, Optional[str]]], Set[str]]:
    """(lower name -> (name, widened type or None)) of unknown fields, and bad names."""
    known, columns = state.known, state.columns
    found: Dict[str, Tuple[str, Optional[str]]] = {}
    bad: Set[str] = set()
    for row in rows:
      fields = _fields(row)
      extra = fields.keys() - known
      if not extra:
        continue
      for name in [name for name in fields if name in extra]:  # in field order
        lowered = name.lower()
        if lowered in columns or lowered in types.HIDDEN_COLUMNS:
          known.add(name)  # another spelling of a column (Doris names ignore case)
          continue
        if not types.is_column_name(name):
          bad.add(name)
          continue
        declared = column_types.get(name)
        inferred = declared if declared else types.infer_type(fields[name])
        previous = found.get(lowered)
        if previous is None:
          found[lowered] = (name, inferred)
        elif not declared:
          found[lowered] = (previous[0], types.widen(previous[1], inferred))
    return found, bad

  def _evolve(self, table: str, state: _Table, rows: List[Row],
              column_types: Mapping[str, str]) -> Tuple[List[Row], List[DeadLetter]]:
    found, bad = self._unknown(state, rows, column_types)
    if bad:
      self._report(table, state, sorted(bad), 'cannot be a column name (letters, digits, _)')
    if not found:
      return self._strip(table, state, rows), []
    # Refresh on a miss: another worker (or an operator) may have added them.
    try:
      columns = self._columns(table)
    except FeSqlError:
      if self._strict:
        raise
      columns = None
    if columns is not None:
      state.learn(columns)
    missing = {k: v for k, v in found.items() if k not in state.columns}
    if not missing:
      return self._strip(table, state, rows), []
    if not self.config.adds_columns:
      self._report(table, state, sorted(name for name, _ in missing.values()),
                   'not in the table; left out (--schema_evolution=none)')
      return self._strip(table, state, rows), []
    typed = [(name, type_name) for name, type_name in missing.values() if type_name is not None]
    failed: Dict[str, str] = {}
    now = self._clock()
    to_add = []
    for name, type_name in typed:
      rejected = state.rejected.get(name.lower())
      if rejected is not None and now - rejected[0] < REJECTED_RETRY_SECS:
        failed[name.lower()] = rejected[1]
      else:
        to_add.append((name, type_name))
    if to_add:
      reason = self._add_columns(table, state, to_add)
      if reason is not None:
        for name, _ in to_add:
          state.rejected[name.lower()] = (self._clock(), reason)
          failed[name.lower()] = reason
    if not failed:
      return self._strip(table, state, rows), []
    keep, letters = [], []
    for row in rows:
      fields = _fields(row)
      culprit = next((name for name in fields if name.lower() in failed
                      and fields[name] is not None), None)
      if culprit is None:
        keep.append(row)
      else:
        letters.append(_dead_letter(row, failed[culprit.lower()]))
    self._count(SCHEMA_CHANGE_FAILED, table, len(letters))
    return self._strip(table, state, keep), letters

  def _report(self, table: str, state: _Table, names: List[str], why: str) -> None:
    new = [name for name in names if name.lower() not in state.reported]
    for name in names:
      state.known.add(name)
    state.reported.update(name.lower() for name in names)
    if not new:
      return
    self._count('unknown_columns', table, len(new))
    _LOGGER.warning('table %s: field(s) %s %s', table, ', '.join(new), why)

  def _strip(self, table: str, state: _Table, rows: List[Row]) -> List[Row]:
    """For Arrow tables: rows without the fields that are no column."""
    if not self.config.is_arrow(table):
      return rows
    columns = state.columns
    out = []
    for row in rows:
      fields = _fields(row)
      extra = [name for name in fields.keys() - columns.values() if name.lower() not in columns
               and name.lower() not in types.HIDDEN_COLUMNS]
      if not extra:
        out.append(row)
        continue
      kept = {k: v for k, v in fields.items() if k not in extra}
      out.append(row._replace(fields=kept, raw=None, columns=None,
                              size=len(orjson.dumps(kept, default=str))))
    return out

  # ------------------------------------------------------------------ DDL

  def _add_columns(self, table: str, state: _Table, columns: List[Tuple[str, str]]
                   ) -> Optional[str]:
    """Adds ``columns``; None on success, else the FE's reason."""
    db, _ = split_table(table)
    pending = list(columns)
    deadline = self._clock() + self.config.ddl_timeout_secs
    delay = self.config.load.backoff_initial_secs or _POLL_INITIAL_SECS
    while pending:
      stmt = types.add_columns_ddl(table, pending)
      try:
        self._execute(db, stmt, deadline)
        _LOGGER.info('table %s: added column(s) %s', table,
                     ', '.join(f'{n} {t}' for n, t in pending))
        self._count('columns_added', table, len(pending))
      except SqlRejectedError as error:
        if is_already_exists(error.message):
          pass  # another worker was first: learn what is there now, add the rest
        else:
          _LOGGER.error('table %s: cannot add column(s) %s: %s', table,
                        ', '.join(n for n, _ in pending), error.message)
          return f'{SCHEMA_CHANGE_FAILED}: {stmt}: {error.message}'
      # Without light schema change the column shows once the job ends: wait for it.
      def missing_now() -> List[Tuple[str, str]]:
        columns_now = self._columns(table, deadline)
        if columns_now is not None:
          state.learn(columns_now)
        return [(n, t) for n, t in pending if n.lower() not in state.columns]

      still = retry.until_deadline(
          deadline=deadline, initial_secs=delay, max_secs=_POLL_MAX_SECS, clock=self._clock,
          sleep=self._sleep, retry_while=lambda missing: len(missing) == len(pending))(missing_now)
      if still and len(still) == len(pending):
        raise FeUnavailableError(f'{table}: column(s) {", ".join(n for n, _ in still)} did not '
                                 f'show within {self.config.ddl_timeout_secs:.0f}s')
      pending = still
    return None

  def _columns(self, table: str, deadline: Optional[float] = None
               ) -> Optional[List[Tuple[str, str]]]:
    """The table's columns (None: no such table); strict modes retry until ``deadline``."""
    if not self._strict:
      return self._client.table_columns(table)
    if deadline is None:
      deadline = self._clock() + self.config.ddl_timeout_secs
    return self._until(deadline, lambda error: isinstance(error, FeUnavailableError))(
        self._client.table_columns, table)

  def _until(self, deadline: float, retry_on, before_sleep=None):
    return retry.until_deadline(
        deadline=deadline, initial_secs=self.config.load.backoff_initial_secs or _POLL_INITIAL_SECS,
        max_secs=self.config.load.backoff_max_secs, retry_on=retry_on, clock=self._clock,
        sleep=self._sleep, before_sleep=before_sleep)

  def _execute(self, db: str, stmt: str, deadline: float) -> None:
    """Runs ``stmt``, retrying busy tables and unreachable FEs until ``deadline``."""
    head = stmt.splitlines()[0]

    def busy_or_away(error: BaseException) -> bool:
      return isinstance(error, FeUnavailableError) or (
          isinstance(error, SqlRejectedError) and is_busy(error.message))

    def log_busy(attempt: retry.Attempt) -> None:
      error = attempt.outcome.exception()
      if isinstance(error, SqlRejectedError):
        _LOGGER.info('%s: the FE is busy (%s); retrying', head, error.message)

    try:
      self._until(deadline, busy_or_away, log_busy)(self._client.execute, db, stmt)
    except SqlRejectedError as error:
      if not is_busy(error.message):
        raise
      # The table's other schema change (or the FE) is not done: the cluster's fault.
      raise FeUnavailableError(f'{head}: still refused after '
                               f'{self.config.ddl_timeout_secs:.0f}s: {error.message}') from None

  def _create(self, table: str, state: _Table, rows: List[Row], column_types: Mapping[str, str],
              key_columns: Optional[Sequence[str]]) -> Optional[str]:
    """Creates the table from ``rows``; None on success, else the reason."""
    rejected = state.rejected.get('')
    if rejected is not None and self._clock() - rejected[0] < REJECTED_RETRY_SECS:
      return rejected[1]
    try:
      stmt = self.create_statement(table, rows, column_types, key_columns)
    except ValueError as error:
      reason = f'{SCHEMA_CHANGE_FAILED}: cannot create {table}: {error}'
      _LOGGER.error('%s', reason)
      state.rejected[''] = (self._clock(), reason)
      self._count(SCHEMA_CHANGE_FAILED, table, len(rows))
      return reason
    db, _ = split_table(table)
    try:
      self._execute(db, stmt, self._clock() + self.config.ddl_timeout_secs)
    except SqlRejectedError as error:
      if is_missing_database(error.message):
        raise MissingDatabaseError(
            f'cannot create table {table}: database {db} does not exist ({error.message}); '
            f'--create_tables creates tables, not databases: CREATE DATABASE {db} (or route the '
            'rows to an existing one), then start the job again') from None
      if not is_already_exists(error.message):
        reason = f'{SCHEMA_CHANGE_FAILED}: {stmt}: {error.message}'
        _LOGGER.error('table %s: cannot create it: %s', table, error.message)
        state.rejected[''] = (self._clock(), reason)
        self._count(SCHEMA_CHANGE_FAILED, table, len(rows))
        return reason
    columns = self._columns(table)
    if columns is None:
      raise FeUnavailableError(f'{table}: created, but the FE does not show it')
    state.learn(columns)
    state.rejected.pop('', None)
    _LOGGER.info('table %s: created: %s', table, ' '.join(stmt.split()))
    self._count('tables_created', table, 1)
    return None

  def create_statement(self, table: str, rows: Sequence[Row],
                       column_types: Mapping[str, str] = (),
                       key_columns: Optional[Sequence[str]] = None) -> str:
    """The ``CREATE TABLE`` for ``rows`` (see ``types.create_table_ddl``).

    Raises:
      ValueError: no column, no usable key.
    """
    column_types = dict(column_types or {})
    order: Dict[str, Tuple[str, Optional[str]]] = {}
    cdc = False
    for row in rows:
      fields = _fields(row)
      if row.op == OP_DELETE or any(k.lower() in types.HIDDEN_COLUMNS for k in fields):
        cdc = True
      for name, value in fields.items():
        lowered = name.lower()
        if lowered in types.HIDDEN_COLUMNS or not types.is_column_name(name):
          continue
        declared = column_types.get(name)
        inferred = declared if declared else types.infer_type(value)
        previous = order.get(lowered)
        order[lowered] = ((name, inferred) if previous is None else
                          (previous[0], previous[1] if declared else
                           types.widen(previous[1], inferred)))
    columns = [(name, type_name) for name, type_name in order.values() if type_name is not None]
    if not columns:
      raise ValueError('no column with a non-null value to take a type from')
    options = self.config.tables.get(table, TableDdlOptions())
    if key_columns and not all(types.is_column_name(name) for name in key_columns):
      key_columns = None
    keys = options.key_columns or (tuple(key_columns) if key_columns else None)
    if cdc:
      if not keys:
        raise ValueError('CDC rows need a key for a UNIQUE KEY table: set key_columns in '
                         '--table_config, or produce records with their key (Debezium does)')
      model = types.UNIQUE
    else:
      model = types.DUPLICATE
      if not keys:
        first = next((name for name, type_name in columns if types.can_be_key(type_name)), None)
        if first is None:
          raise ValueError('no column can be a key (all are FLOAT, DOUBLE or JSON): set '
                           'key_columns in --table_config')
        keys = (first,)
    starrocks = self.config.load.target == STARROCKS
    properties = {} if starrocks else {'light_schema_change': 'true'}
    if model == types.UNIQUE and not starrocks:
      properties['enable_unique_key_merge_on_write'] = 'true'
      sequence = self.config.sequence_columns.get(table)
      if sequence:
        properties['function_column.sequence_col'] = sequence
    properties.update(options.properties)
    return types.create_table_ddl(table, columns, model, keys,
                                  distributed_by=options.distributed_by, buckets=options.buckets,
                                  properties=properties, starrocks=starrocks)


def _fields(row: Row) -> dict:
  return row.fields if row.fields is not None else orjson.loads(row.raw)


def _names(row: Row):
  """The row's field names (a slim row's, without decoding its JSON again)."""
  return row.fields if row.fields is not None else row.columns


def _dead_letter(row: Row, reason: str) -> DeadLetter:
  payload = row.raw if row.raw is not None else orjson.dumps(_fields(row), default=str)
  return DeadLetter(stage='parse', reason=reason, topic=row.topic, partition=row.partition,
                    offset=row.offset, table=row.table,
                    payload=payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES])
