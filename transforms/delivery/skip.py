"""``SkipLoadedRows``: drops rows that a crashed run had already loaded, and acknowledges them.

After a crash the restarted job reads again everything after the committed
offsets (or, on a runner restoring a checkpoint, after the durable offsets
it holds).  Recovery (``pipelines.recovery``) tells which of those
rows batches of the dead run had already loaded; this transform drops them
from the ``(table, rows)`` chunks and emits their ``OffsetAck``s, so their
offsets move on without loading them twice under new labels.  Recovery runs
once per run in each worker process, before the first row (``setup``): the
launcher's own process is handed its answer (``SHARED_NAME``), any other
worker -- a fresh one after a crash among them -- asks the journal itself.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import metrics
from transforms.delivery.entries import LoadedRanges
from transforms.runtime import RunContext, acquire, release
from transforms.types import OffsetAck, Row

__all__ = ['SkipLoadedRows', 'SHARED_NAME']

# The runtime's name for the rows the journal says were loaded.
SHARED_NAME = 'delivery.loaded'


class _SkipLoadedRowsFn(beam.DoFn):

  def __init__(self, loaded: Optional[LoadedRanges], context: RunContext,
               recover: Optional[Callable[[], LoadedRanges]]):
    self._fixed = loaded
    self._context = context
    self._recover = recover
    self._skipped = Metrics.counter(metrics.NAMESPACE, 'rows_already_loaded')

  def setup(self):
    self._runtime = acquire(self._context)
    if self._fixed is not None:
      self._loaded = self._fixed
    else:
      self._loaded = self._runtime.shared(SHARED_NAME, self._recover or LoadedRanges)

  def teardown(self):
    release(self._runtime)

  def process(self, element):
    table, rows = element
    if not rows or not self._loaded.holds_source(table, rows[0].topic, rows[0].partition):
      yield element
      return
    kept: List[Row] = []
    skipped: List[Row] = []
    for row in rows:
      (skipped if self._loaded.covers(row) else kept).append(row)
    if kept:
      yield table, kept
    if skipped:
      self._skipped.inc(len(skipped))
      yield TaggedOutput(SkipLoadedRows.ACKS, OffsetAck(
          skipped[0].topic, skipped[0].partition, tuple(row.offset for row in skipped)))


class SkipLoadedRows(beam.PTransform):
  """``(table, [Row])`` chunks minus the rows ``loaded`` holds.

  Input chunks hold the rows of one table from one partition (what
  ``ParseRecords`` emits).

  Args:
    loaded: the rows already loaded (``RecoveryReport.loaded``); or else
    recover: what asks the journal, once per run in each worker (unless the
      process's runtime was handed the answer under ``SHARED_NAME``).
    context: the run.

  Returns:
    A ``DoOutputsTuple``: the remaining chunks (main, ``rows``) and ``acks``
    (``OffsetAck``s of the dropped rows, for ``CommitOffsets``).
  """
  ROWS = 'rows'
  ACKS = 'acks'

  def __init__(self, loaded: Optional[LoadedRanges] = None, *,
               recover: Optional[Callable[[], LoadedRanges]] = None,
               context: Optional[RunContext] = None):
    super().__init__()
    self._loaded = loaded
    self._recover = recover
    self._context = context or RunContext()

  def expand(self, chunks):
    return chunks | 'SkipLoadedRows' >> beam.ParDo(
        _SkipLoadedRowsFn(self._loaded, self._context, self._recover)).with_outputs(
            self.ACKS, main=self.ROWS)
