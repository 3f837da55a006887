"""``EvolveSchema``: the graph's step between parsing and batching that makes tables fit rows.

``(table, rows)`` in, the same out, after ``SchemaEvolution.ensure``: missing columns added (or
reported), missing tables created, per ``--schema_evolution`` / ``--create_tables``. Rows a
refused change cannot take leave as dead letters (``schema_change_failed``); a cluster that
cannot be asked, or a table whose database does not exist, fails the bundle (no offset moves).

With ``--ddl_topic`` the step also follows Debezium's schema change topic
(``ddl_apply.SchemaChangeApplier``): at every element and bundle end it runs the changes
fetched since, in order -- sending a ``RowBatch.table_barrier`` for the table first when the
change reshapes its rows, so that every earlier row of it loads before the change runs, and no
later row passes before it has run.  Rows of a table the worker does not know, or with fields
it does not know, first wait for the topic to be read to its end (their change is there).
Rows older than a change that already ran are made to fit it; those a truncate removed are
acknowledged on ``acks``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.schema.config import SchemaEvolutionConfig
from transforms.schema.ddl_apply import SchemaChangeApplier
from transforms.schema.evolution import SCHEMA_CHANGE_FAILED, SchemaEvolution
from transforms.types import OffsetAck, Row, RowBatch, TableHints

__all__ = ['EvolveSchema']


def _schema_counter(name: str, table: str, n: int) -> None:
  """``schema_<name>``: in total, and per table (namespace ``<NAMESPACE>.schema_<name>``)."""
  full = name if name.startswith('schema_') else f'schema_{name}'
  Metrics.counter(metrics.NAMESPACE, full).inc(n)
  Metrics.counter(f'{metrics.NAMESPACE}.{full}', table).inc(n)


class _EvolveSchemaFn(beam.DoFn):
  """One ``SchemaEvolution`` per DoFn instance (its FE client made in ``setup``)."""

  def __init__(self, config: SchemaEvolutionConfig):
    self._config = config
    self._evolution = None
    self._changes = None
    self._started = False
    self._dead_letters = Metrics.counter(metrics.NAMESPACE, 'dead_letters')
    self._failed = Metrics.counter(metrics.NAMESPACE, f'dead_letters_{SCHEMA_CHANGE_FAILED}')

  def setup(self):
    self._evolution = SchemaEvolution(self._config, counter=_schema_counter)
    self._started = False
    self._changes = (SchemaChangeApplier(self._config, self._evolution, counter=_schema_counter)
                     if self._config.ddl is not None else None)

  def teardown(self):
    if self._changes is not None:
      self._changes.close()
      self._changes = None
    if self._evolution is not None:
      self._evolution.close()
      self._evolution = None

  def _follow(self, catch_up: bool) -> Iterable[Any]:
    """Runs the schema changes fetched since the last call, each after its barrier; returns
    how many records it read."""
    changes = self._changes
    # The first read goes to the topic's end: no row passes before the history (a truncate
    # that ran before a restart, a table's latest shape) is known.
    records = changes.read(catch_up or not self._started)
    self._started = True
    for record in records:
      steps = changes.steps(record)
      if not record.done:
        for step in steps:
          if step.barrier:
            yield step.target, RowBatch.table_barrier()
      changes.follow(record, steps)
    return len(records)

  def process(self, element) -> Iterable[Any]:
    table, rows = element
    if self._changes is not None:
      yield from self._follow(catch_up=False)
      hints = getattr(rows, 'hints', None)
      rows, dropped = self._changes.fit(table, rows)
      if not self._evolution.fits(table, rows):
        # Fields (or a table) this worker does not know: the topic is read to the end offsets
        # Kafka has now, every time, before the rows may change the table themselves -- a
        # rename read late would otherwise be taken for a new column.
        ran = yield from self._follow(catch_up=True)
        if ran:
          rows, more = self._changes.fit(table, rows)
          dropped += more
      for ack in _acks(dropped):
        yield TaggedOutput(EvolveSchema.ACKS, ack)
      if not rows:
        return
      rows = RowBatch(rows)
      rows.hints = hints
    hints = getattr(rows, 'hints', None) or TableHints()
    kept, letters = self._evolution.ensure(table, rows, hints.column_types, hints.key_columns)
    for letter in letters:
      yield TaggedOutput(EvolveSchema.DEAD_LETTERS, letter)
    if letters:
      self._dead_letters.inc(len(letters))
      self._failed.inc(len(letters))
    if kept:
      yield table, kept if isinstance(kept, RowBatch) else RowBatch(kept)

  def finish_bundle(self):
    if self._changes is not None:
      for value in self._follow(catch_up=False):
        yield WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


def _acks(rows: List[Row]) -> Iterable[OffsetAck]:
  """The offsets of ``rows``, per partition."""
  by_partition: Dict[Tuple[str, int], List[int]] = {}
  for row in rows:
    by_partition.setdefault((row.topic, row.partition), []).append(row.offset)
  for (topic, partition), offsets in by_partition.items():
    yield OffsetAck(topic, partition, tuple(offsets))  # one ack per row, as the parser counts


class EvolveSchema(beam.PTransform):
  """Makes each table fit its rows before they are batched (see the module docstring).

  Output (a ``DoOutputsTuple``): ``rows`` (main), ``(table, RowBatch)`` as they came, less the
  rows a refused change cannot take (and, with ``--ddl_topic``, table barriers); ``dead_letters``:
  those rows, reason ``schema_change_failed: <statement>: <the FE's message>``; ``acks``:
  ``OffsetAck``s of rows a later truncate of their table removed.

  Example::

    parsed = chunks | ParseRecords(routing)
    fitted = parsed.rows | EvolveSchema(SchemaEvolutionConfig(load=..., mode='add_columns'))
    fitted.rows | KeyByTable(...) | BatchPerTable(...) | WriteToStreamLoad(...)

  Args:
    config: what to do (``SchemaEvolutionConfig``, validated when it was made).
  """
  ROWS = 'rows'
  DEAD_LETTERS = 'dead_letters'
  ACKS = 'acks'

  def __init__(self, config: SchemaEvolutionConfig):
    super().__init__()
    if not isinstance(config, SchemaEvolutionConfig):
      raise ValueError(f'EvolveSchema: expected a SchemaEvolutionConfig, got {config!r}')
    self._config = config

  def expand(self, rows):
    return rows | 'EnsureTables' >> beam.ParDo(_EvolveSchemaFn(self._config)).with_output_types(
        beam.typehints.Tuple[str, RowBatch]).with_outputs(self.DEAD_LETTERS, self.ACKS,
                                                             main=self.ROWS)

  def display_data(self):
    data = {'schema_evolution': self._config.mode, 'create_tables': self._config.create_tables}
    if self._config.ddl is not None:
      data['ddl_topic'] = self._config.ddl.topic
    return data
