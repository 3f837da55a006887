"""``BatchLoader``: one batch from rows to a finished load; no Beam.

For each batch: encode the body (once, orjson, Kafka bytes reused), derive
its label, write it ahead to the write-ahead log (exactly-once; the load
journal), load it, mark it loaded.  With Doris's default ``max_filter_ratio`` of 0 one bad row fails
the whole batch: rather than dead-letter 10,000 good rows with it, the batch
is halved and each half loaded under its own label, down to the rows the
server really rejects, within ``MAX_BISECT_LOADS`` loads per batch.

Failures by whose fault (``errors``): the rows' (``RowFaultError``) are
reported for dead letters; the cluster's (``ClusterFaultError``) raise
``StreamLoadUnavailableError``, which fails the bundle so no offset moves.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from transforms import metrics, retry
from transforms.errors import ClusterFault
from transforms.monitoring import Monitor
from transforms.stream_load.bodies import EncodedBatch, encode_rows
from transforms.stream_load.client import StreamLoadClient
from transforms.stream_load.config import (DORIS, DORIS_DELETE_SIGN, STARROCKS_OP,
                                           TableLoadOptions)
from transforms.stream_load.errors import (ClusterFaultError, DataQualityError,
                                           RetriesExhaustedError, RowFaultError,
                                           StreamLoadUnavailableError, UnclassifiedLoadError)
from transforms.stream_load.labels import make_label
from transforms.stream_load.outcome import LoadOutcome
from transforms.stream_load.write_ahead import WriteAheadLog
from transforms.types import Row, TableMap, column_names, offsets_of

__all__ = ['BatchLoader', 'BatchReport', 'MAX_BISECT_LOADS']

_LOGGER = logging.getLogger('transforms.stream_load')

MAX_BISECT_LOADS = 64
# While the cluster is unavailable, a long-running job tries a batch again this often (each
# round is a full retry cycle of its own, with backoff).


class BatchReport(NamedTuple):
  """What became of a batch: rows that could not be encoded, and each load.

  ``pieces`` holds ``(rows, outcome, None)`` for each load that succeeded and
  ``(rows, None, error)`` for rows that failed through their own fault.
  """
  encode_failures: List[Tuple[Row, str]]
  pieces: List[Tuple[List[Row], Optional[LoadOutcome], Optional[RowFaultError]]]


class BatchLoader:
  """Loads batches of one worker (thread-safe: flush threads share it).

  Args:
    client: the worker's client.
    write_ahead: the worker's write-ahead log (exactly-once), or None (at-least-once).
    label_prefix: the pipeline's label prefix.
    table_options: per-table Stream Load options.
    keep_retrying: retry a batch without end while the cluster is unavailable
      (long-running jobs); else fail the bundle when the retries run out.
    sleep: the pause between those rounds (tests inject a fake).
    monitor: the process's stall monitor (a private one if None).
  """

  def __init__(self, client: StreamLoadClient, write_ahead: Optional[WriteAheadLog],
               label_prefix: str, table_options: Mapping[str, TableLoadOptions],
               keep_retrying: bool = False, sleep: Callable[[float], None] = time.sleep,
               monitor: Optional[Monitor] = None):
    self._client = client
    self._keep_retrying = keep_retrying
    self._sleep = sleep
    self._monitor = monitor if monitor is not None else Monitor()
    self._write_ahead = write_ahead
    self._label_prefix = label_prefix
    self._table_options = TableMap.of(table_options)
    self._target = client.config.target

  def load_format(self, table: str) -> str:
    """The body format of ``table``: its own, else the pipeline's."""
    options = self._table_options.get(table)
    return (options.load_format if options is not None and options.load_format
            else self._client.config.load_format)

  def encode(self, table: str, rows: List[Row]) -> EncodedBatch:
    """The body of ``rows`` (done on the bundle thread, while loads are on the wire)."""
    return encode_rows(rows, as_array=self._target != DORIS, load_format=self.load_format(table))

  def load(self, key: Any, table: str, rows: List[Row],
           encoded: Optional[EncodedBatch] = None) -> BatchReport:
    """Loads ``rows`` (bisecting on rejected data); see the module docstring.

    Raises:
      StreamLoadUnavailableError: the cluster (or the write-ahead log) is unusable.
    """
    report = BatchReport([], [])
    self._load_rows(key, table, rows, report, [MAX_BISECT_LOADS], encoded)
    return report

  def _load_rows(self, key: Any, table: str, rows: List[Row], report: BatchReport,
                 budget: List[int], encoded: Optional[EncodedBatch] = None) -> None:
    if encoded is None:
      encoded = self.encode(table, rows)
    if encoded.failed:
      failed = {index for index, _ in encoded.failed}
      report.encode_failures.extend((rows[index], reason) for index, reason in encoded.failed)
      rows = [row for index, row in enumerate(rows) if index not in failed]
      if not rows:
        return
    label = make_label(self._label_prefix_for(table), table, offsets_of(rows), body=encoded.body)
    token = self._log_ahead(key, table, label, rows)
    budget[0] -= 1
    try:
      outcome = self._load_through_outages(table, label, rows, encoded)
    except DataQualityError as error:
      self._monitor.load_failed(table, str(error))
      if len(rows) > 1 and budget[0] >= 2:
        _LOGGER.warning('stream load rejected data: table=%s rows=%d; splitting the batch to '
                        'isolate the bad rows (%s)', table, len(rows), error)
        middle = len(rows) // 2
        self._load_rows(key, table, rows[:middle], report, budget)
        self._load_rows(key, table, rows[middle:], report, budget)
        return
      metrics.LOAD_FAILURES.labels(table, error.reason).inc()
      report.pieces.append((rows, None, error))
      return
    except RowFaultError as error:
      metrics.LOAD_FAILURES.labels(table, error.reason).inc()
      self._monitor.load_failed(table, str(error))
      report.pieces.append((rows, None, error))
      return
    except ClusterFaultError as error:
      # The rows are fine and must not be dead-lettered: their offsets would
      # be committed and they would never load.  Fail the bundle instead.
      metrics.LOAD_FAILURES.labels(table, error.reason).inc()
      self._monitor.load_failed(table, str(error))
      raise StreamLoadUnavailableError(
          f'{table}: cannot load {len(rows)} rows, the cluster is not usable: {error}',
          table=table, label=error.label, status=error.status, reason=error.reason) from error
    if token is not None:
      self._write_ahead.mark_loaded(token)
    self._monitor.load_succeeded(table)
    metrics.observe_load(table, outcome.load_ms / 1000.0, outcome.loaded_rows,
                         outcome.filtered_rows, outcome.load_bytes)
    report.pieces.append((rows, outcome, None))

  def _load_through_outages(self, table: str, label: str, rows: List[Row],
                            encoded: EncodedBatch) -> LoadOutcome:
    """``client.load``; with ``keep_retrying``, again and again while the cluster is away.

    A long-running job outlives an outage of its cluster: when every retry of a transient
    failure (connection refused, 5xx, timeouts, too many versions) is used up, the batch is
    tried again under the same label every ``retry.OUTAGE_RETRY_SECS`` -- the stall detector
    reports the table meanwhile -- instead of failing the job.  Refused credentials and failures no
    rule knows still fail it at once.
    """
    def cluster_away(error: BaseException) -> bool:
      return (self._keep_retrying and isinstance(error, RetriesExhaustedError)
              and not isinstance(error.__cause__, UnclassifiedLoadError))

    def report(attempt: retry.Attempt) -> None:
      error = attempt.outcome.exception()
      metrics.LOAD_FAILURES.labels(table, error.reason).inc()
      self._monitor.load_failed(table, str(error))
      self._monitor.heartbeat('sink')
      _LOGGER.warning('stream load: the cluster is unavailable for %s (%s); trying label %s '
                      'again in %.0f s', table, error, label, retry.OUTAGE_RETRY_SECS)

    return retry.through_outages(retry_on=cluster_away, sleep=self._sleep, before_sleep=report)(
        self._client.load, table, encoded.body, label, rows=encoded.rows,
        options=self._table_options.get(table),
        extra_headers=self._special_column_headers(table, rows, encoded.headers),
        body_headers=encoded.headers)

  def _log_ahead(self, key: Any, table: str, label: str, rows: List[Row]) -> Any:
    """Writes the batch ahead (exactly-once); no load is sent when that fails."""
    if self._write_ahead is None:
      return None
    try:
      return self._write_ahead.write_ahead(key, table, label, rows)
    except ClusterFault as error:
      metrics.LOAD_FAILURES.labels(table, 'journal').inc()
      self._monitor.load_failed(table, str(error))
      raise StreamLoadUnavailableError(f'{table}: cannot load {len(rows)} rows: {error}',
                                       table=table, label=label, status='journal',
                                       reason='journal') from error

  def _label_prefix_for(self, table: str) -> str:
    options = self._table_options.get(table)
    return (options.label_prefix if options is not None else None) or self._label_prefix

  def _special_column_headers(self, table: str, rows: List[Row],
                              body_headers: Dict[str, str]) -> Dict[str, str]:
    """Headers for the hidden delete columns, looking at every row of the batch.

    Doris: ``hidden_columns: __DORIS_DELETE_SIGN__`` when any row carries it
    (rows without it default to 0, an upsert).  StarRocks: a ``columns``
    list with ``__op`` and every column any row has.  A CSV body names its
    columns (delete marker included) itself.
    """
    options = self._table_options.get(table)
    if (options is not None and options.columns) or 'columns' in body_headers:
      return {}
    marker = DORIS_DELETE_SIGN if self._target == DORIS else STARROCKS_OP
    # A membership test per row first (this runs on a flush thread, for every batch).
    if not any(marker in (row.fields if row.fields is not None else row.columns)
               for row in rows):
      return {}
    if self._target == DORIS:
      return {'hidden_columns': DORIS_DELETE_SIGN}
    seen: Dict[str, None] = {}
    for row in rows:
      seen.update(dict.fromkeys(column_names(row)))
    return {'columns': ','.join(f'`{name}`' for name in seen)}
