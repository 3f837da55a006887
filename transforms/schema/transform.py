"""``EvolveSchema``: the graph's step between parsing and batching that makes tables fit rows.

``(table, rows)`` in, the same out, after ``SchemaEvolution.ensure``: missing columns added (or
reported), missing tables created, per ``--schema_evolution`` / ``--create_tables``. Rows a
refused change cannot take leave as dead letters (``schema_change_failed``); a cluster that
cannot be asked, or a table whose database does not exist, fails the bundle (no offset moves).
"""

from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import metrics
from transforms.schema.config import SchemaEvolutionConfig
from transforms.schema.evolution import SCHEMA_CHANGE_FAILED, SchemaEvolution
from transforms.types import RowBatch, TableHints

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
    self._dead_letters = Metrics.counter(metrics.NAMESPACE, 'dead_letters')
    self._failed = Metrics.counter(metrics.NAMESPACE, f'dead_letters_{SCHEMA_CHANGE_FAILED}')

  def setup(self):
    self._evolution = SchemaEvolution(self._config, counter=_schema_counter)

  def teardown(self):
    if self._evolution is not None:
      self._evolution.close()
      self._evolution = None

  def process(self, element) -> Iterable[Any]:
    table, rows = element
    hints = getattr(rows, 'hints', None) or TableHints()
    kept, letters = self._evolution.ensure(table, rows, hints.column_types, hints.key_columns)
    for letter in letters:
      yield TaggedOutput(EvolveSchema.DEAD_LETTERS, letter)
    if letters:
      self._dead_letters.inc(len(letters))
      self._failed.inc(len(letters))
    if kept:
      yield table, kept if isinstance(kept, RowBatch) else RowBatch(kept)


class EvolveSchema(beam.PTransform):
  """Makes each table fit its rows before they are batched (see the module docstring).

  Output (a ``DoOutputsTuple``): ``rows`` (main), ``(table, RowBatch)`` as they came, less the
  rows a refused change cannot take; ``dead_letters``: those rows, reason
  ``schema_change_failed: <statement>: <the FE's message>``.

  Example::

    parsed = chunks | ParseRecords(routing)
    fitted = parsed.rows | EvolveSchema(SchemaEvolutionConfig(load=..., mode='add_columns'))
    fitted.rows | KeyByTable(...) | BatchPerTable(...) | WriteToStreamLoad(...)

  Args:
    config: what to do (``SchemaEvolutionConfig``, validated when it was made).
  """
  ROWS = 'rows'
  DEAD_LETTERS = 'dead_letters'

  def __init__(self, config: SchemaEvolutionConfig):
    super().__init__()
    if not isinstance(config, SchemaEvolutionConfig):
      raise ValueError(f'EvolveSchema: expected a SchemaEvolutionConfig, got {config!r}')
    self._config = config

  def expand(self, rows):
    return rows | 'EnsureTables' >> beam.ParDo(_EvolveSchemaFn(self._config)).with_output_types(
        beam.typehints.Tuple[str, RowBatch]).with_outputs(self.DEAD_LETTERS, main=self.ROWS)

  def display_data(self):
    return {'schema_evolution': self._config.mode, 'create_tables': self._config.create_tables}
