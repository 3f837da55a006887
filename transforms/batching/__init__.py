"""Per-table batching: ``KeyByTable`` and ``BatchPerTable``.

The per-table flush strategy (``limits``): each table (each shard of a hot
table) flushes its own batch when its rows, bytes or waiting time reach its
own limits, or its columns change; when every read of the worker has ended
(the input's end, or a drain), everything is flushed.  ``BatchPerTable``
keeps the open batches in the worker's memory across bundles
(``in_process``), fused behind the read on every runner.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Mapping, Optional

import apache_beam as beam

from transforms.batching.in_process import Batcher, BatchFn
from transforms.batching.keying import KeyByTable
from transforms.batching.limits import (DEFAULT_BATCH_BYTES, DEFAULT_BATCH_INTERVAL_SECS,
                                        DEFAULT_BATCH_ROWS, FLUSH_REASONS, BatchLimits)
from transforms.runtime import RunContext
from transforms.types import RowBatch, TableMap

__all__ = [
    'BatchLimits',
    'BatchPerTable',
    'Batcher',
    'KeyByTable',
    'DEFAULT_BATCH_ROWS',
    'DEFAULT_BATCH_BYTES',
    'DEFAULT_BATCH_INTERVAL_SECS',
    'FLUSH_REASONS',
]


class BatchPerTable(beam.PTransform):
  """Batches keyed row chunks per table on each table's own limits.

  Input: ``((table, shard), [Row])`` chunks from ``KeyByTable``.  Output:
  ``((table, shard), [Row])`` batches ready for ``WriteToStreamLoad``, each
  in the order its rows arrived (a partition's rows in offset order).

  Args:
    default_limits: limits of tables without their own
      (``--batch_rows``, ``--batch_bytes``, ``--batch_interval_secs``).
    table_limits: per-table ``BatchLimits`` (from ``--table_config``).
    clock: seconds since the epoch (tests inject a fake clock).
    max_pending_bytes: flush the largest open batch when all open batches
      of the worker together hold more (None: no bound).
    context: the run (the read's): its runtime says when every read of the
      worker has ended, so that everything pending is flushed.
    hold_across_bundles: keep open batches across bundles: only when the rows
      come from the run's own ``ReadKafkaChunks(durable=True)`` with the same
      ``context``, which reads again whatever a crash lost (the loader's
      setting); by default everything is flushed at the end of each bundle
      (rows from another read, which may consider them done once the bundle
      ends).
  """

  def __init__(self, default_limits: Optional[BatchLimits] = None,
               table_limits: Optional[Mapping[str, BatchLimits]] = None,
               clock: Callable[[], float] = time.time, *,
               max_pending_bytes: Optional[int] = None, context: Optional[RunContext] = None,
               hold_across_bundles: bool = False):
    super().__init__()
    self._default = default_limits or BatchLimits()
    self._limits = TableMap.of(table_limits or {})
    for table, limits in self._limits.items():
      if not isinstance(limits, BatchLimits):
        raise ValueError(f'table_limits[{table!r}] must be a BatchLimits')
    if max_pending_bytes is not None and max_pending_bytes < 1:
      raise ValueError(f'max_pending_bytes: must be >= 1, got {max_pending_bytes!r}')
    self._clock = clock
    self._max_pending_bytes = max_pending_bytes
    self._context = context or RunContext()
    self._hold = hold_across_bundles
    self._name = uuid.uuid4().hex

  def expand(self, keyed_chunks):
    fn = BatchFn(self._default, self._limits, self._max_pending_bytes, self._context,
                 self._clock, self._name, self._hold)
    return keyed_chunks | 'BatchRows' >> beam.ParDo(fn).with_output_types(
        beam.typehints.Tuple[beam.typehints.Tuple[str, int], RowBatch])
