"""Per-table batching: ``KeyByTable`` and ``BatchPerTable``.

Seed 002's flush strategy, per table (``limits``): each table (each shard of
a hot table) flushes its own batch when its rows, bytes or waiting time reach
its own limits, or its columns change; when the job drains, everything is
flushed.  ``BatchPerTable`` picks the engine for the runner: in memory across
bundles on the local runner (``in_process``), Beam state and timers on
portable runners (``stateful``); both cut batches with the same rule.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Optional

import apache_beam as beam

from transforms.batching.in_process import Batcher, _InProcessBatchFn
from transforms.batching.keying import KeyByTable
from transforms.batching.limits import (DEFAULT_BATCH_BYTES, DEFAULT_BATCH_INTERVAL_SECS,
                                        DEFAULT_BATCH_ROWS, FLUSH_REASONS, BatchLimits)
from transforms.batching.stateful import _StatefulBatchFn
from transforms.runtime import runs_in_process
from transforms.types import RowBatch

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
  ``((table, shard), [Row])`` batches ready for ``WriteToStreamLoad``.

  Args:
    default_limits: limits of tables without their own
      (``--batch_rows``, ``--batch_bytes``, ``--batch_interval_secs``).
    table_limits: per-table ``BatchLimits`` (from ``--table_config``).
    clock: seconds since the epoch (tests inject a fake clock).
    max_pending_bytes: in-process engine: flush the largest open batch when
      all open batches together hold more (None: no bound).
    stop_token: in-process engine: the run token of the Kafka read, whose end
      (or stop) flushes everything (see ``transforms.kafka.stop``).
    in_process: force the in-process (True) or the stateful (False) engine;
      default: in-process on the local runner's in-process worker when a
      ``stop_token`` tells it when the read ends.
  """

  def __init__(self, default_limits: Optional[BatchLimits] = None,
               table_limits: Optional[Mapping[str, BatchLimits]] = None,
               clock: Callable[[], float] = time.time, *,
               max_pending_bytes: Optional[int] = None, stop_token: Optional[str] = None,
               in_process: Optional[bool] = None):
    super().__init__()
    self._default = default_limits or BatchLimits()
    self._limits = dict(table_limits or {})
    for table, limits in self._limits.items():
      if not isinstance(limits, BatchLimits):
        raise ValueError(f'table_limits[{table!r}] must be a BatchLimits')
    if max_pending_bytes is not None and max_pending_bytes < 1:
      raise ValueError(f'max_pending_bytes: must be >= 1, got {max_pending_bytes!r}')
    self._clock = clock
    self._max_pending_bytes = max_pending_bytes
    self._stop_token = stop_token
    self._in_process = in_process

  def expand(self, keyed_chunks):
    in_process = self._in_process
    if in_process is None:
      # Without a read to watch, the engine could not tell when the input ends.
      in_process = self._stop_token is not None and runs_in_process(keyed_chunks.pipeline)
    if in_process:
      fn = _InProcessBatchFn(self._default, self._limits, self._max_pending_bytes,
                             self._stop_token, self._clock)
    else:
      fn = _StatefulBatchFn(self._default, self._limits, self._clock)
    return keyed_chunks | 'BatchRows' >> beam.ParDo(fn).with_output_types(
        beam.typehints.Tuple[beam.typehints.Tuple[str, int], RowBatch])
