"""``SkipLoadedRows``: drops rows that a crashed run had already loaded, and acknowledges them.

After a crash the restarted job reads again everything after the committed
offsets.  Recovery (``transforms.delivery.recovery``) tells which of those
rows batches of the dead run had already loaded; this transform drops them
from the ``(table, rows)`` chunks and emits their ``OffsetAck``s, so their
offsets move on without loading them twice under new labels.
"""

from __future__ import annotations

from typing import List

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import metrics
from transforms.delivery.entries import LoadedRanges
from transforms.types import OffsetAck, Row

__all__ = ['SkipLoadedRows']


class _SkipLoadedRowsFn(beam.DoFn):

  def __init__(self, loaded: LoadedRanges):
    self._loaded = loaded
    self._skipped = Metrics.counter(metrics.NAMESPACE, 'rows_already_loaded')

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
    loaded: the rows already loaded (``RecoveryReport.loaded``).

  Returns:
    A ``DoOutputsTuple``: the remaining chunks (main, ``rows``) and ``acks``
    (``OffsetAck``s of the dropped rows, for ``CommitOffsets``).
  """
  ROWS = 'rows'
  ACKS = 'acks'

  def __init__(self, loaded: LoadedRanges):
    super().__init__()
    self._loaded = loaded

  def expand(self, chunks):
    return chunks | 'SkipLoadedRows' >> beam.ParDo(_SkipLoadedRowsFn(self._loaded)).with_outputs(
        self.ACKS, main=self.ROWS)
