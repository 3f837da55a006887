"""Stall detection: is a table (or a partition) stuck while the job still looks healthy?

The peers' loudest complaint is a job that stops loading and still looks fine.  The pieces
report what they see to one ``Monitor`` per process -- the batcher the rows pending per table,
the sink each load's success or failure, the committer each partition's committed offset and
lag, the loops their heartbeats -- and ``Monitor.check`` (run every few seconds by the health
server's thread) decides:

* a **table** is stalled when it has pending rows (or loads failing) and no successful load for
  its window -- ``max(3 x its batch interval, 5 min)`` unless ``--stall_timeout_secs`` says
  otherwise;
* a **partition** is stalled when its committed offset has not moved for the window while its
  lag grew.

A stall logs one ERROR line (the table, the last success, the last error, the pending rows) and
sets ``doris_table_stalled`` / ``kafka_partition_stalled`` to 1; it clears itself (one INFO line,
gauge 0) when a load succeeds or the offset moves again.  Pure bookkeeping with an injected
clock; the gauges are Prometheus's.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from transforms import metrics

__all__ = ['Monitor', 'DEFAULT_MIN_STALL_SECS']

_LOGGER = logging.getLogger('transforms.monitoring')

DEFAULT_MIN_STALL_SECS = 300.0
_INTERVALS_PER_WINDOW = 3


@dataclasses.dataclass
class _Table:
  interval_secs: float = 30.0
  pending_rows: int = 0
  last_success: Optional[float] = None
  last_error: str = ''
  failing_since: Optional[float] = None
  idle_since: Optional[float] = None  # since when rows have been pending without a load
  stalled: bool = False


@dataclasses.dataclass
class _Partition:
  committed: Optional[int] = None
  committed_at: Optional[float] = None
  high: Optional[int] = None  # the partition's end offset at the last look
  lag: int = 0
  lag_at_commit: int = 0
  stalled: bool = False


class Monitor:
  """Per-process stall bookkeeping (thread-safe).

  Args:
    clock: seconds (tests inject a fake).
    stall_timeout_secs: the window for every table and partition; None:
      ``max(3 x the table's batch interval, DEFAULT_MIN_STALL_SECS)``.
  """

  def __init__(self, clock: Callable[[], float] = time.monotonic,
               stall_timeout_secs: Optional[float] = None):
    self._clock = clock
    self.stall_timeout_secs = stall_timeout_secs
    self._lock = threading.Lock()
    self._tables: Dict[str, _Table] = {}
    self._partitions: Dict[Tuple[str, int], _Partition] = {}
    self._heartbeats: Dict[str, float] = {}
    self._counts: Dict[str, int] = {}
    self.draining = False

  # ------------------------------------------------------------------ reports

  def heartbeat(self, loop: str) -> None:
    """A loop (the reader, the sink) is alive."""
    self._heartbeats[loop] = self._clock()

  def count(self, name: str, n: int = 1) -> None:
    """Adds ``n`` to a running total of this process (``records_read``, ``rows_loaded``...)."""
    with self._lock:
      self._counts[name] = self._counts.get(name, 0) + n

  def table_interval(self, table: str, interval_secs: float) -> None:
    with self._lock:
      self._tables.setdefault(table, _Table()).interval_secs = interval_secs

  def table_pending(self, table: str, rows: int) -> None:
    now = self._clock()
    with self._lock:
      state = self._tables.setdefault(table, _Table())
      if rows and not state.pending_rows:
        state.idle_since = now
      state.pending_rows = rows

  def load_started(self, table: str) -> None:
    """Rows of ``table`` left their open batch for a load (they are pending until it ends)."""
    now = self._clock()
    with self._lock:
      state = self._tables.setdefault(table, _Table())
      if state.idle_since is None:
        state.idle_since = now

  def load_succeeded(self, table: str) -> None:
    now = self._clock()
    with self._lock:
      state = self._tables.setdefault(table, _Table())
      state.last_success = now
      state.failing_since = None
      state.idle_since = now if state.pending_rows else None
    metrics.LAST_SUCCESSFUL_LOAD.labels(table).set(time.time())

  def load_failed(self, table: str, error: str) -> None:
    now = self._clock()
    with self._lock:
      state = self._tables.setdefault(table, _Table())
      state.last_error = error
      if state.failing_since is None:
        state.failing_since = now

  def partition_progress(self, topic: str, partition: int, committed: Optional[int] = None,
                         lag: Optional[int] = None, high: Optional[int] = None) -> None:
    now = self._clock()
    with self._lock:
      state = self._partitions.setdefault((topic, partition), _Partition())
      if lag is not None:
        state.lag = lag
      if high is not None:
        state.high = high
        if state.committed is not None:
          metrics.KAFKA_COMMITTED_LAG.labels(topic, str(partition)).set(max(0, high - state.committed))
      if committed is not None and committed != state.committed:
        state.committed = committed
        state.committed_at = now
        state.lag_at_commit = state.lag
        if state.high is not None:
          metrics.KAFKA_COMMITTED_LAG.labels(topic, str(partition)).set(
              max(0, state.high - committed))
      elif state.committed_at is None:
        state.committed_at = now
        state.lag_at_commit = state.lag

  # -------------------------------------------------------------------- answers

  def counts(self) -> Dict[str, int]:
    """The running totals (a copy)."""
    with self._lock:
      return dict(self._counts)

  def pending_rows(self) -> int:
    """Rows waiting in open batches, all tables."""
    with self._lock:
      return sum(state.pending_rows for state in self._tables.values())

  def lags(self) -> Tuple[int, Optional[int]]:
    """``(position lag, committed lag)`` over every partition (committed lag: None if unknown)."""
    with self._lock:
      partitions = list(self._partitions.values())
    position = sum(state.lag for state in partitions)
    known = [state for state in partitions if state.high is not None and state.committed is not None]
    committed = (sum(max(0, state.high - state.committed) for state in known)
                 if known else None)
    return position, committed

  def heartbeats(self) -> Dict[str, float]:
    """Seconds since each loop's last heartbeat."""
    now = self._clock()
    return {loop: now - beat for loop, beat in self._heartbeats.items()}

  def window(self, table: Optional[str] = None) -> float:
    if self.stall_timeout_secs:
      return self.stall_timeout_secs
    interval = self._tables[table].interval_secs if table in self._tables else 30.0
    return max(_INTERVALS_PER_WINDOW * interval, DEFAULT_MIN_STALL_SECS)

  def stalled_tables(self) -> List[str]:
    with self._lock:
      return sorted(table for table, state in self._tables.items() if state.stalled)

  def stalled_partitions(self) -> List[Tuple[str, int]]:
    with self._lock:
      return sorted(key for key, state in self._partitions.items() if state.stalled)

  def check(self) -> None:
    """Sets and clears stalls (an ERROR line when one starts, an INFO line when it ends)."""
    now = self._clock()
    with self._lock:
      tables = list(self._tables.items())
      partitions = list(self._partitions.items())
    for table, state in tables:
      since = min(t for t in (state.idle_since, state.failing_since) if t is not None) if (
          state.idle_since is not None or state.failing_since is not None) else None
      stalled = since is not None and now - since >= self.window(table)
      if stalled and not state.stalled:
        last = ('never' if state.last_success is None else
                f'{now - state.last_success:.0f} s ago')
        _LOGGER.error('table %s is stalled: no successful load for %.0f s (last success: %s; '
                      'last error: %s; %d rows pending)', table, now - since, last,
                      state.last_error or 'none', state.pending_rows)
      elif state.stalled and not stalled:
        _LOGGER.info('table %s loads again (stall cleared)', table)
      state.stalled = stalled
      metrics.TABLE_STALLED.labels(table).set(1 if stalled else 0)
    for (topic, partition), state in partitions:
      stalled = (state.committed_at is not None and now - state.committed_at >= self.window()
                 and state.lag > state.lag_at_commit)
      if stalled and not state.stalled:
        _LOGGER.error('partition %s[%d] is stalled: committed offset %s unchanged for %.0f s '
                      'while its lag grew from %d to %d', topic, partition, state.committed,
                      now - state.committed_at, state.lag_at_commit, state.lag)
      elif state.stalled and not stalled:
        _LOGGER.info('partition %s[%d] commits again (stall cleared)', topic, partition)
      state.stalled = stalled
      metrics.PARTITION_STALLED.labels(topic, str(partition)).set(1 if stalled else 0)


