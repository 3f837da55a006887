"""``SchemaChangeApplier``: a schema change topic's changes run on the cluster, in order.

For each record of the topic (``ddl_topic.SchemaChangeReader``) and each table it changes:

* **the target**, named as the table's rows are (``--table_template``, ``--merge_tables``,
  ``--include_tables`` / ``--exclude_tables``); a table not selected is left alone;
* **the ops**, ``debezium_ddl.plan_changes`` from the source table as the topic last described
  it (the topic is read from its beginning at every start) to the table after the change.  A
  table the topic shows for the first time is created *before its first row*; if the target
  exists already (made before, or by another shard of a merged family), it gets the columns it
  lacks and those narrower are widened, nothing is dropped.  A merged family's target never
  loses a column to one shard's drop or rename (the other shards may still have it): the rename
  adds the new name, the drop is reported;
* **the policy** (``--schema_evolution``, ``--schema_change_types``: ``debezium_ddl.
  apply_policy``).  What it does not apply is logged once per table and change and counted
  (``schema_changes_skipped``), never silent.  Under ``evolve`` a narrowing is sent to the FE,
  which refuses it (``Can not change BIGINT to INT``): the FE's reason is logged and counted
  (``schema_change_failed``); the table keeps its wider type, which takes every row;
* **a barrier** before an op that changes what the table's rows look like (drop or rename a
  column, truncate or drop the table): ``Step.barrier`` tells the caller (``EvolveSchema``) to
  send a ``RowBatch.table_barrier`` down the graph first, which loads every row of the table
  the worker holds; rows after the change pass only once it has run;
* **once**: the record's offset is committed after its ops ran; a restart runs only what
  follows it.  An op found done already (a column there, a name renamed) counts as done.  A
  truncate or a drop (not found done when run again) runs in one worker process, elected
  through Kafka (``ddl_runner``); the others go on once it has committed past the record.

Rows can still reach the worker *after* a change that is older than them in the source (a
table's rows read behind the topic, or read again after a restart).  ``fit`` makes them look
as they would have after loading first: a renamed column's value moves to its new name, a
dropped column's leaves, and rows before a truncate or a drop of their table are dropped
(acknowledged, counted ``rows_before_truncate``), so the table ends as the source's does.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from transforms.records.routing import SOURCE_COLUMNS
from transforms.schema.config import EVOLVE, LENIENT, SchemaEvolutionConfig
from transforms.schema.ddl_runner import RunnerElection, acquire_election, release_election
from transforms.schema.ddl_topic import SchemaChangeReader, SchemaChangeRecord, SchemaTopicError
from transforms.schema.debezium_ddl import (DORIS, DROP, STARROCKS_DIALECT, TRUNCATE, AddColumn,
                                            Column, CreateTable, DropColumn, DropTable,
                                            ModifyColumn, RenameColumn, SchemaOp, TableChange,
                                            TableSchema, TruncateTable,
                                            UnsupportedSchemaChange, is_widening, plan_changes,
                                            policy_allows, render, target_table)
from transforms.schema.evolution import (MissingDatabaseError, SchemaEvolution,
                                         is_already_exists, is_missing_database)
from transforms.schema.fe_sql import SqlRejectedError
from transforms.schema import types
from transforms.stream_load.config import STARROCKS
from transforms.types import Row, encode_fields, fields_of

__all__ = ['SchemaChangeApplier', 'Step']

_LOGGER = logging.getLogger('transforms.schema')

_RESHAPING = (RenameColumn, DropColumn, TruncateTable, DropTable)
# Run twice, a moment apart, these remove what the first one's worker loaded after it (or a
# table a later record made): one elected worker process runs them (``ddl_runner``).
_ONCE_ONLY = (TruncateTable, DropTable)
_ONCE_ONLY_TYPES = {op.change_type for op in _ONCE_ONLY}   # their --schema_change_types
_WAIT_INITIAL_SECS, _WAIT_MAX_SECS = 0.05, 1.0
# Every reader of this process runs one record at a time (several DoFn instances may follow the
# topic in one worker process).
_RUN_LOCK = threading.Lock()
_DONE_ALREADY = ('nothing is changed',)


@dataclasses.dataclass
class Step:
  """One table's part of a schema change record.

  Attributes:
    target: the target table.
    merged: it is a merged family's.
    source: the source's ``SOURCE_COLUMNS`` values (merged families), else None.
    ops: what runs, in order.
    barrier: rows of the target held in the worker load first.
    position: the change's source position.
  """
  target: str
  merged: bool
  source: Optional[Tuple[str, str]]
  ops: List[SchemaOp]
  barrier: bool
  position: Optional[tuple]


def _older(a: tuple, b: tuple) -> bool:
  try:
    return a < b
  except TypeError:  # positions of two kinds of source: not comparable, never older
    return False


def describe(op: SchemaOp) -> str:
  """A short text for logs: ``add column c INT``, ``rename column a to b``..."""
  if isinstance(op, CreateTable):
    return 'create table'
  if isinstance(op, AddColumn):
    return f'add column {op.column.name} {op.column.doris_type}'
  if isinstance(op, DropColumn):
    return f'drop column {op.name}'
  if isinstance(op, RenameColumn):
    return f'rename column {op.old} to {op.new}'
  if isinstance(op, ModifyColumn):
    return (f'modify column {op.name} {op.old_type} -> {op.new_type}'
            + (' (a narrowing)' if op.narrowing else ''))
  if isinstance(op, TruncateTable):
    return 'truncate table'
  return 'drop table'


class SchemaChangeApplier:
  """Follows a schema change topic for one worker (see the module docstring).

  Args:
    config: the settings (``config.ddl`` set).
    evolution: the worker's ``SchemaEvolution`` (its FE client; it forgets a table a change
      ran on).
    reader: the topic's reader (default: one on ``config.ddl``).
    counter: ``counter(name, table, n)`` for metrics.
    dry_run: run nothing: ``planned`` collects the statements a run would send (``--plan``),
      against the cluster's tables as they are and as the statements before them leave them.
    election: which process runs a truncate or a drop (default: the process's, joined at once
      when ``change_types`` lists them, else when the first one comes).
    clock, sleep: monotonic seconds and a sleep (tests).
  """

  def __init__(self, config: SchemaEvolutionConfig, evolution: SchemaEvolution,
               reader: Optional[SchemaChangeReader] = None,
               counter: Optional[Callable[[str, str, int], None]] = None,
               dry_run: bool = False, election: Optional[RunnerElection] = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    if config.ddl is None:
      raise ValueError('SchemaChangeApplier needs config.ddl (--ddl_topic)')
    self._config = config
    self._evolution = evolution
    self._reader = reader or SchemaChangeReader(config.ddl)
    self._count = counter or (lambda name, table, n: None)
    self._dialect = STARROCKS_DIALECT if config.load.target == STARROCKS else DORIS
    self._sources: Dict[str, TableSchema] = {}          # source table -> after its last change
    self._targets: Dict[str, Dict[str, Column]] = {}     # target -> lower name -> column made
    self._reshapes: Dict[Tuple[str, Optional[Tuple[str, str]]], List[Tuple[tuple, SchemaOp]]] = {}
    self._newest: Dict[str, tuple] = {}                  # target -> newest reshaping position
    self._reported: Set[Tuple[str, str]] = set()
    self._dry_run = dry_run
    self._quiet = False
    self.planned: List[Tuple[str, str]] = []             # (target, statement), dry runs
    self.reports: List[str] = []                         # what was reported, in order
    self._simulated: Dict[str, Optional[List[Tuple[str, str]]]] = {}   # dry runs: target columns
    self._election = election
    self._own_election = False
    self._clock, self._sleep = clock, sleep
    if not dry_run and _ONCE_ONLY_TYPES & set(config.change_types or ()):
      self._runner_election(wait=False)  # joined now: elected by the time one comes

  def close(self) -> None:
    self._reader.close()
    if self._own_election:
      release_election(self._election)
      self._election, self._own_election = None, False

  def read(self, catch_up: bool = False) -> List[SchemaChangeRecord]:
    """The topic's records fetched since the last call (``catch_up``: up to its end now)."""
    return self._reader.read(catch_up)

  def commit(self, record: SchemaChangeRecord) -> None:
    self._reader.commit(record)

  def follow(self, record: SchemaChangeRecord, steps: List[Step]) -> None:
    """Runs ``steps`` of ``record`` (their barriers sent) and commits it -- unless it ran
    before this start, or another reader of the job (another DoFn instance, another worker)
    has committed past it since: then it is only remembered.  One record at a time in this
    process."""
    if not self._dry_run and any(isinstance(op, _ONCE_ONLY) for step in steps
                                 for op in step.ops):
      self._follow_once(record, steps)
      return
    with _RUN_LOCK:
      elsewhere = self._reader.ran_elsewhere(record) if not self._dry_run else record.done
      self._run_or_remember(record, steps, elsewhere)

  def _run_or_remember(self, record: SchemaChangeRecord, steps: List[Step],
                       elsewhere: bool) -> None:
    for step in steps:
      if elsewhere:
        self.remember(step)
      else:
        self.run(step)
    if not elsewhere:
      self.commit(record)

  def _follow_once(self, record: SchemaChangeRecord, steps: List[Step]) -> None:
    """A record with a truncate or a drop: run here if this process is the elected runner
    (and no runner before it committed past the record), else remembered once the runner has.

    Raises:
      SchemaTopicError: no runner committed past it within ``ddl_timeout_secs`` (the bundle
        fails; the record is followed again).
    """
    deadline = self._clock() + self._config.ddl_timeout_secs
    delay = _WAIT_INITIAL_SECS
    while True:
      with _RUN_LOCK:
        if self._reader.ran_elsewhere(record):
          self._run_or_remember(record, steps, True)
          return
        with self._runner_election().running() as runner:
          if runner:
            self._run_or_remember(record, steps, False)
            return
      if self._clock() >= deadline:
        raise SchemaTopicError(
            f'--ddl_topic={self._config.ddl.topic}: offset {record.partition}:{record.offset} '
            f'(a truncate or a drop, run by one worker) was not run within '
            f'{self._config.ddl_timeout_secs:.0f}s by the worker elected to run it')
      self._sleep(delay)
      delay = min(delay * 2, _WAIT_MAX_SECS)

  def _runner_election(self, wait: bool = True) -> RunnerElection:
    if self._election is None:
      ddl = self._config.ddl
      self._election = acquire_election(ddl.consumer_config, ddl.topic)
      self._own_election = True
    if wait and self._own_election:
      self._election.wait_decided(min(30.0, self._config.ddl_timeout_secs))
    return self._election

  # ------------------------------------------------------------------ planning

  def steps(self, record: SchemaChangeRecord) -> List[Step]:
    """What ``record`` does to each target, under the policy; reports what it leaves out (a
    record that ran before this start was reported then)."""
    self._quiet = record.done
    if record.error is not None:
      self._report(f'offset {record.partition}:{record.offset}',
                   f'cannot follow this schema change ({record.error}); DDL: '
                   f'{record.ddl[:200] or "-"}', 'schema_changes_unreadable', error=True)
      return []
    steps = []
    for change in record.changes:
      named = target_table(change, self._config.ddl.naming, self._config.ddl.topic)
      if named is None:
        continue  # not selected: its rows are skipped too
      target, merged = named
      previous = self._sources.get(change.qualified)
      try:
        ops = plan_changes(previous, change, merged=merged)
      except UnsupportedSchemaChange as error:
        self._report(target, str(error), 'schema_changes_unsupported', error=True)
        ops = []
      self._remember_source(change)
      ops = self._for_family(target, merged, ops)
      allowed = self._allowed(target, ops)
      steps.append(Step(target, merged, change.source_values if merged else None, allowed,
                        any(isinstance(op, _RESHAPING) for op in allowed), record.position))
    return steps

  def _remember_source(self, change: TableChange) -> None:
    if change.kind == DROP:
      self._sources.pop(change.qualified, None)
    elif change.kind != TRUNCATE:
      self._sources[change.qualified] = TableSchema.of(change)

  def _for_family(self, target: str, merged: bool, ops: List[SchemaOp]) -> List[SchemaOp]:
    """A merged family's target keeps every column: a shard's rename adds the new name, its
    drop is reported."""
    if not merged:
      return ops
    out: List[SchemaOp] = []
    for op in ops:
      if isinstance(op, RenameColumn):
        out.append(AddColumn(op.column))
      elif isinstance(op, DropColumn):
        self._report(target, f'{describe(op)} of one source not applied: the other tables of '
                     'the merged family may still have it', 'schema_changes_skipped')
      else:
        out.append(op)
    return out

  def _allowed(self, target: str, ops: List[SchemaOp]) -> List[SchemaOp]:
    mode, listed = self._config.mode, self._config.change_types
    out: List[SchemaOp] = []
    for op in ops:
      if isinstance(op, RenameColumn) and mode == LENIENT and not policy_allows(op, mode, listed):
        op = AddColumn(op.column)  # lenient: the new name is added, the old column stays
      if policy_allows(op, mode, listed):
        out.append(op)
      elif (isinstance(op, ModifyColumn) and op.narrowing and mode == EVOLVE
            and (listed is None or 'modify_column' in listed)):
        out.append(op)  # sent to have the FE's refusal in the job's log
      else:
        self._report(target, f'{describe(op)} not applied (--schema_evolution={mode}'
                     + (f', --schema_change_types={",".join(sorted(listed))}' if listed else '')
                     + ')', 'schema_changes_skipped')
    return out

  # ------------------------------------------------------------------ running

  def remember(self, step: Step) -> None:
    """A step that ran before this start: what rows older than it must become."""
    for op in step.ops:
      self._made(step, op)

  def run(self, step: Step) -> None:
    """Runs ``step``'s ops in order (the caller has sent the barrier if ``step.barrier``).

    Raises:
      FeUnavailableError, FeAuthError: the FE cannot be asked (the bundle fails, nothing is
        committed, the change runs after the restart).
      MissingDatabaseError: the target's database does not exist.
    """
    for planned in step.ops:
      for op in self._against_cluster(step.target, planned):
        try:
          stmt = render(op, step.target, self._dialect,
                        options=self._config.tables.get(step.target),
                        sequence_column=self._config.sequence_columns.get(step.target))
        except (UnsupportedSchemaChange, ValueError) as error:
          # Never runnable (a table whose columns cannot be a key...): said, not retried forever.
          self._report(step.target, f'{describe(op)} cannot be made: {error}',
                       'schema_changes_unsupported', error=True)
          continue
        if self._dry_run:
          if not self._done_already(step.target, op, ''):
            note = ('  -- a narrowing: the FE refuses it'
                    if isinstance(op, ModifyColumn) and op.narrowing else '')
            self.planned.append((step.target, ' '.join(stmt.split()) + note))
            self._simulate(step.target, op)
          self._made(step, op)
          continue
        try:
          self._evolution.run_statement(step.target, stmt)
        except SqlRejectedError as error:
          if self._done_already(step.target, op, error.message):
            self._made(step, op)
            continue
          if is_missing_database(error.message):
            raise MissingDatabaseError(
                f'schema change of {step.target}: its database does not exist '
                f'({error.message}): CREATE DATABASE {step.target.split(".")[0]}, then start '
                'the job again') from None
          self._report(step.target, f'the FE refused {" ".join(stmt.split())}: '
                       f'{error.message}', 'schema_change_failed', error=True, once=False)
          continue
        _LOGGER.info('table %s: schema change ran: %s', step.target, ' '.join(stmt.split()))
        self._count('schema_changes_applied', step.target, 1)
        self._made(step, op)

  def _against_cluster(self, target: str, op: SchemaOp) -> List[SchemaOp]:
    """A ``CreateTable`` of a target that exists becomes its missing columns and widenings."""
    if not isinstance(op, (CreateTable, ModifyColumn)):
      return [op]
    made = self._targets.setdefault(target, {})
    if isinstance(op, ModifyColumn):
      known = made.get(op.name.lower())
      if op.narrowing or known is None:
        return [op]
      if (known.doris_type.upper() == op.new_type.upper()
          or not is_widening(known.doris_type, op.new_type)):
        return []  # the target (a merged family's) is as wide already
      return [op]
    columns = self._columns_now(target)
    if columns is None:
      return [op]
    present = {name.lower() for name, _ in columns}
    out: List[SchemaOp] = []
    for column in op.columns:
      lowered = column.name.lower()
      if lowered in types.HIDDEN_COLUMNS:
        continue
      if lowered not in present:
        out.append(AddColumn(column))
        continue
      known = made.get(lowered)
      if (known is not None and known.doris_type != column.doris_type
          and is_widening(known.doris_type, column.doris_type)):
        out.append(ModifyColumn(column.name, known.doris_type, column.doris_type,
                                key=lowered in {k.lower() for k in op.primary_key}))
      elif known is None:
        made[lowered] = column  # there already: taken to be as the source says
    return out

  def _done_already(self, target: str, op: SchemaOp, message: str) -> bool:
    """Whether the FE refused ``op`` because it is done already (or, with no message: whether
    the table says so)."""
    lowered = message.lower()
    if isinstance(op, (AddColumn, CreateTable)) and message and is_already_exists(message):
      return True
    if message and any(text in lowered for text in _DONE_ALREADY):
      return True
    if isinstance(op, (AddColumn, RenameColumn, DropColumn)):
      names = {name.lower() for name, _ in self._columns_now(target) or []}
      if isinstance(op, AddColumn):
        return not message and op.column.name.lower() in names
      if isinstance(op, DropColumn):
        return op.name.lower() not in names
      return op.old.lower() not in names and op.new.lower() in names
    if isinstance(op, DropTable):
      return self._columns_now(target) is None
    return False

  def _columns_now(self, target: str) -> Optional[List[Tuple[str, str]]]:
    """The target's columns (a dry run: as the statements planned so far leave them)."""
    if not self._dry_run:
      return self._evolution.table_columns(target)
    if target not in self._simulated:
      self._simulated[target] = self._evolution.table_columns(target)
    return self._simulated[target]

  def _simulate(self, target: str, op: SchemaOp) -> None:
    columns = self._columns_now(target)
    if isinstance(op, CreateTable):
      self._simulated[target] = [(c.name, c.doris_type) for c in op.columns]
    elif isinstance(op, DropTable):
      self._simulated[target] = None
    elif columns is not None:
      if isinstance(op, AddColumn):
        columns.append((op.column.name, op.column.doris_type))
      elif isinstance(op, DropColumn):
        columns[:] = [(n, t) for n, t in columns if n.lower() != op.name.lower()]
      elif isinstance(op, RenameColumn):
        columns[:] = [(op.new if n.lower() == op.old.lower() else n, t) for n, t in columns]

  def _made(self, step: Step, op: SchemaOp) -> None:
    """What the target looks like after ``op``, and what older rows must become."""
    columns = self._targets.setdefault(step.target, {})
    if isinstance(op, CreateTable):
      for column in op.columns:
        columns.setdefault(column.name.lower(), column)
    elif isinstance(op, AddColumn):
      columns[op.column.name.lower()] = op.column
    elif isinstance(op, ModifyColumn) and not op.narrowing:
      old = columns.get(op.name.lower())
      columns[op.name.lower()] = dataclasses.replace(old, doris_type=op.new_type) if old else (
          Column(op.name, op.new_type))
    elif isinstance(op, DropColumn):
      columns.pop(op.name.lower(), None)
    elif isinstance(op, RenameColumn):
      columns.pop(op.old.lower(), None)
      columns[op.new.lower()] = op.column
    elif isinstance(op, DropTable) and op.source is None:
      self._targets.pop(step.target, None)  # a merged family's drop deletes one source's rows
    if isinstance(op, _RESHAPING) and step.position is not None:
      self._reshapes.setdefault((step.target, step.source), []).append((step.position, op))
      newest = self._newest.get(step.target)
      if newest is None or _older(newest, step.position):
        self._newest[step.target] = step.position

  # ------------------------------------------------------------------ rows

  def fit(self, table: str, rows: Sequence[Row]) -> Tuple[List[Row], List[Row]]:
    """``rows`` made to fit the changes that ran after them in the source, and the rows a
    later truncate or drop of their table removed: ``(kept, dropped)``."""
    newest = self._newest.get(table)
    if newest is None:
      return list(rows), []
    kept: List[Row] = []
    dropped: List[Row] = []
    for row in rows:
      position = row.position
      if position is None or not _older(position, newest):
        kept.append(row)
        continue
      fields = fields_of(row)
      source = (fields.get(SOURCE_COLUMNS[0]), fields.get(SOURCE_COLUMNS[1]))
      reshapes = self._reshapes.get((table, source)) or self._reshapes.get((table, None)) or ()
      later = [op for at, op in reshapes if _older(position, at)]
      if not later:
        kept.append(row)
        continue
      fitted = _fitted(fields, later)
      if fitted is None:
        dropped.append(row)
      elif fitted is fields:
        kept.append(row)
      else:
        raw = encode_fields(fitted, default=str)
        kept.append(row._replace(fields=fitted, raw=raw, columns=None, size=len(raw)))
    if dropped:
      self._count('rows_before_truncate', table, len(dropped))
    return kept, dropped

  # ------------------------------------------------------------------ reports

  def _report(self, table: str, what: str, counter: str, error: bool = False,
              once: bool = True) -> None:
    if self._quiet:
      return
    self._count(counter, table, 1)
    if once:
      if (table, what) in self._reported:
        return
      self._reported.add((table, what))
    self.reports.append(f'{table}: {what}')
    if not self._dry_run:
      (_LOGGER.error if error else _LOGGER.warning)('table %s: %s', table, what)


def _fitted(fields: dict, ops: Sequence[SchemaOp]) -> Optional[dict]:
  """``fields`` after ``ops`` (None: the row is gone); ``fields`` itself if nothing changed."""
  out = fields
  for op in ops:
    if isinstance(op, (TruncateTable, DropTable)):
      return None
    if isinstance(op, RenameColumn):
      old = _name_in(out, op.old)
      if old is not None:
        out = dict(out) if out is fields else out
        out[op.new] = out.pop(old)
    elif isinstance(op, DropColumn):
      name = _name_in(out, op.name)
      if name is not None:
        out = dict(out) if out is fields else out
        del out[name]
  return out


def _name_in(fields: dict, name: str) -> Optional[str]:
  if name in fields:
    return name
  lowered = name.lower()
  return next((key for key in fields if key.lower() == lowered), None)
