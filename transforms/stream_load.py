"""``WriteToStreamLoad``: the Beam sink that loads batches into Doris or StarRocks.

Each input element is one batch, ``(table, [Row, ...])`` (or ``((table, shard),
rows)`` from a sharded batcher).  The DoFn creates one pooled
``StreamLoadClient`` and a thread pool of ``flush_workers`` in ``setup()``,
keeps up to that many loads in flight (seed 000's worker pool) and waits for
all of them in ``finish_bundle()``, so a bundle never completes before its
rows are durable.  Two batches with the same key are never loaded at the same
time: the later one starts when the earlier one is done, so updates to one
key land in Kafka order even with parallel flushes.

Outputs (see ``StreamLoadWriteResult``): one ``LoadResult`` per loaded batch,
and ``DeadLetter``s for rows that failed for good through their own fault
(stage ``load``: rejected by the server, not encodable, or routed to a table
that does not exist) or that the server filtered within ``max_filter_ratio``
(stage ``rejected``, for the record only: their batch was loaded).  A cluster
fault that outlasts every retry (all BEs down, credentials refused) never
dead-letters good rows: it fails the bundle with ``StreamLoadUnavailableError``,
so no offset moves past the rows and a restart loads them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
from typing import Any, Deque, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import prom
from transforms.encoding import encode_rows
from transforms.labels import make_label, sanitize_label_part
from transforms.stream_load_client import (DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_LOAD_TIMEOUT_SECS,
                                           DEFAULT_MAX_RETRIES, DEFAULT_POOL_CONNECTIONS,
                                           DEFAULT_POOL_MAXSIZE, DORIS, DORIS_DELETE_SIGN,
                                           STARROCKS_OP, LoadOutcome, StreamLoadClient,
                                           StreamLoadConfig, TableLoadOptions)
from transforms.stream_load_errors import (DataQualityError, PermanentLoadError,
                                           StreamLoadUnavailableError, TableNotFoundError)
from transforms.types import DeadLetter, LoadResult, Row, column_names, offsets_of, table_of_key

__all__ = ['WriteToStreamLoad', 'StreamLoadWriteResult', 'METRICS_NAMESPACE', 'DEAD_LETTER_TAG']

_LOGGER = logging.getLogger(__name__)

METRICS_NAMESPACE = 'kafka_to_doris'
DEAD_LETTER_TAG = 'dead_letters'
DEFAULT_FLUSH_WORKERS = 4
DEFAULT_LABEL_PREFIX = 'beam'
_MAX_DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
_MAX_BISECT_LOADS = 64
# Batches a worker holds (in flight or waiting behind their key) before the bundle waits.
_QUEUED_JOBS_PER_WORKER = 4


class StreamLoadWriteResult:
  """What ``WriteToStreamLoad`` produced, like BigQuery's ``WriteResult``.

  Attributes:
    load_results: ``LoadResult`` per loaded batch.
    dead_letters: ``DeadLetter`` per row that failed for good or was rejected.
  """

  def __init__(self, load_results: beam.PCollection, dead_letters: beam.PCollection):
    self.load_results = load_results
    self.dead_letters = dead_letters

  def __getitem__(self, tag: str) -> beam.PCollection:
    return {'load_results': self.load_results, DEAD_LETTER_TAG: self.dead_letters}[tag]


def _row_payload(row: Any) -> bytes:
  if isinstance(row, Row):
    if row.raw is not None:
      return row.raw[:_MAX_DEAD_LETTER_PAYLOAD_BYTES]
    fields = row.fields
  else:
    fields = row
  try:
    return orjson.dumps(fields, default=str)[:_MAX_DEAD_LETTER_PAYLOAD_BYTES]
  except (TypeError, orjson.JSONEncodeError):
    return repr(fields).encode('utf-8', 'replace')[:_MAX_DEAD_LETTER_PAYLOAD_BYTES]


def _as_rows(table: str, rows: Iterable[Any]) -> List[Row]:
  """Accepts Rows or plain dicts (users of the sink without the parser)."""
  out = []
  for row in rows:
    if isinstance(row, Row):
      out.append(row)
    elif isinstance(row, dict):
      out.append(Row(table, row, 'upsert', None, None, None, 0, None))
    else:
      raise TypeError(f'{table}: a batch holds Row or dict elements, got {type(row).__name__}')
  return out


def _dead_letter(row: Row, table: str, stage: str, reason: str) -> DeadLetter:
  return DeadLetter(stage, reason, row.topic, row.partition, row.offset, table, _row_payload(row))


class _BatchReport(NamedTuple):
  """What became of a batch: rows that could not be encoded, and each load."""
  encode_failures: List[Tuple[Row, str]]
  pieces: List[Tuple[List[Row], Optional[LoadOutcome], Optional[PermanentLoadError]]]


class _Job:
  """One batch on its way: what is needed to load it and to report it when done."""
  __slots__ = ('key', 'table', 'rows', 'encoded', 'future')

  def __init__(self, key, table, rows, encoded):
    self.key = key
    self.table = table
    self.rows = rows
    self.encoded = encoded
    self.future: concurrent.futures.Future = concurrent.futures.Future()


class _Scheduler:
  """Runs load jobs on a thread pool, one at a time per ordered key.

  A job whose key already has a load in flight waits in that key's queue --
  not on a pool thread -- and starts when its predecessor ends, so a slow
  table never blocks the loads of the others.
  """

  def __init__(self, executor: concurrent.futures.ThreadPoolExecutor, run):
    self._executor = executor
    self._run = run
    self._lock = threading.Lock()
    self._busy_keys: Dict[Any, Deque[_Job]] = {}

  def submit(self, job: _Job, ordered: bool) -> None:
    if ordered:
      with self._lock:
        queue = self._busy_keys.get(job.key)
        if queue is not None:
          queue.append(job)
          return
        self._busy_keys[job.key] = collections.deque()
    self._start(job, ordered)

  def _start(self, job: _Job, ordered: bool) -> None:
    future = self._executor.submit(self._run, job)
    future.add_done_callback(lambda done: self._finished(job, ordered, done))

  def _finished(self, job: _Job, ordered: bool, done: concurrent.futures.Future) -> None:
    error = done.exception()
    if error is not None:
      job.future.set_exception(error)
    else:
      job.future.set_result(done.result())
    if not ordered:
      return
    with self._lock:
      queue = self._busy_keys[job.key]
      if error is not None:
        # The bundle fails: loading the key's later batches now would let the
        # failed (older) batch, re-sent after a restart, overwrite them.
        abandoned, following = list(queue), None
        del self._busy_keys[job.key]
      else:
        abandoned, following = [], queue.popleft() if queue else None
        if following is None:
          del self._busy_keys[job.key]
    for waiting in abandoned:
      waiting.future.set_exception(error)
    if following is not None:
      self._start(following, ordered)


class _WriteBatchesFn(beam.DoFn):
  """Loads batches with up to ``flush_workers`` loads in flight."""

  def __init__(self, config: StreamLoadConfig, flush_workers: int, label_prefix: str,
               table_options: Mapping[str, TableLoadOptions], client_factory=None,
               password_file: Optional[str] = None):
    self._config = config
    self._password_file = password_file
    self._flush_workers = flush_workers
    self._label_prefix = label_prefix
    self._table_options = dict(table_options)
    self._client_factory = client_factory
    self._client: Optional[StreamLoadClient] = None
    self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._rows_loaded = Metrics.counter(METRICS_NAMESPACE, 'rows_loaded')
    self._rows_filtered = Metrics.counter(METRICS_NAMESPACE, 'rows_filtered')
    self._bytes_loaded = Metrics.counter(METRICS_NAMESPACE, 'bytes_loaded')
    self._batches_loaded = Metrics.counter(METRICS_NAMESPACE, 'batches_loaded')
    self._load_failures = Metrics.counter(METRICS_NAMESPACE, 'load_failures')
    self._rows_dead_lettered = Metrics.counter(METRICS_NAMESPACE, 'rows_dead_lettered')
    self._retries = Metrics.counter(METRICS_NAMESPACE, 'retries')
    self._label_exists = Metrics.counter(METRICS_NAMESPACE, 'labels_already_loaded')
    self._batch_rows = Metrics.distribution(METRICS_NAMESPACE, 'batch_rows')
    self._batch_bytes = Metrics.distribution(METRICS_NAMESPACE, 'batch_bytes')
    self._load_latency = Metrics.distribution(METRICS_NAMESPACE, 'load_latency_ms')

  def setup(self):
    factory = self._client_factory or StreamLoadClient
    if self._password_file:
      # Read on the worker: the password never travels with the pipeline.
      from pipelines.options import read_password_file  # pylint: disable=import-outside-toplevel
      self._config = dataclasses.replace(self._config,
                                         password=read_password_file(self._password_file))
    self._client = factory(self._config)
    self._ordered: Dict[str, bool] = {}
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=self._flush_workers, thread_name_prefix='stream-load')
    self._scheduler = _Scheduler(self._executor, self._run_job)

  def _is_ordered(self, table: str) -> bool:
    """Whether batches of ``table`` (per key) must load one after another."""
    ordered = self._ordered.get(table)
    if ordered is None:
      options = self._table_options.get(table)
      if options is not None and options.ordered is not None:
        ordered = options.ordered
      else:
        # Only append-only (duplicate-key) tables are safe to load out of order.
        ordered = self._client.table_keys_type(table) != 'DUP_KEYS'
      self._ordered[table] = ordered
    return ordered

  def start_bundle(self):
    self._jobs: List[_Job] = []

  def process(self, element):
    key, batch = element
    table = table_of_key(key)
    rows = _as_rows(table, batch)
    if not rows:
      return
    # Encode here, on the bundle thread, while up to flush_workers loads are on
    # the wire: encoding holds the GIL, so doing it in the flush threads would
    # only make the loads wait for each other's encoding.
    job = _Job(key, table, rows, encode_rows(rows, as_array=self._config.target != DORIS))
    self._scheduler.submit(job, self._is_ordered(table))
    self._jobs.append(job)
    # Back-pressure: report finished loads; hold the bundle while too many wait.
    yield from self._harvest_done(block_above=self._flush_workers * _QUEUED_JOBS_PER_WORKER)

  def _harvest_done(self, block_above: int):
    while True:
      pending = []
      for job in self._jobs:
        if job.future.done():
          yield from self._harvest(job, windowed=False)
        else:
          pending.append(job)
      self._jobs = pending
      if len(self._jobs) <= block_above:
        return
      concurrent.futures.wait([job.future for job in self._jobs],
                              return_when=concurrent.futures.FIRST_COMPLETED)

  def finish_bundle(self):
    jobs, self._jobs = self._jobs, []
    for job in jobs:
      yield from self._harvest(job, windowed=True)

  def teardown(self):
    # Best effort, never flushes: finish_bundle already waited for every load.
    if self._executor is not None:
      self._executor.shutdown(wait=False, cancel_futures=True)
      self._executor = None
    if self._client is not None:
      self._client.close()
      self._client = None

  def display_data(self):
    return {
        'fe_nodes': ','.join(self._config.fe_nodes),
        'target': self._config.target,
        'flush_workers': self._flush_workers,
        'label_prefix': self._label_prefix,
        'compression': self._config.compression,
        'max_retries': self._config.max_retries,
    }

  # Runs on a flush thread: encode, load, and report back.
  def _run_job(self, job: _Job) -> '_BatchReport':
    report = _BatchReport([], [])
    self._load_rows(job.table, job.rows, report, [_MAX_BISECT_LOADS], job.encoded)
    job.encoded = None  # the body is sent: let it go before the bundle ends
    return report

  def _load_rows(self, table: str, rows: List[Row], report: '_BatchReport', budget: List[int],
                 encoded=None):
    """Loads ``rows``; on a data-quality failure, splits them to isolate the bad rows.

    With Doris's default ``max_filter_ratio`` of 0 one bad row fails the whole
    batch.  Rather than dead-lettering 10,000 good rows with it, the batch is
    halved and each half loaded (labels follow the halves' offsets, so this is
    as idempotent as the whole), down to the rows the server really rejects,
    within ``_MAX_BISECT_LOADS`` loads per batch.
    """
    if encoded is None:
      encoded = encode_rows(rows, as_array=self._config.target != DORIS)
    if encoded.failed:
      failed_idx = {index for index, _ in encoded.failed}
      report.encode_failures.extend((rows[index], reason) for index, reason in encoded.failed)
      rows = [row for i, row in enumerate(rows) if i not in failed_idx]
      if not rows:
        return
    label = make_label(self._label_prefix_for(table), table, offsets_of(rows), body=encoded.body)
    extra = self._special_column_headers(table, rows)
    budget[0] -= 1
    try:
      outcome = self._client.load(table, encoded.body, label, rows=encoded.rows,
                                  options=self._table_options.get(table), extra_headers=extra)
    except DataQualityError as error:
      if len(rows) > 1 and budget[0] >= 2:
        _LOGGER.warning('stream load rejected data: table=%s rows=%d; splitting the batch to '
                        'isolate the bad rows (%s)', table, len(rows), error)
        middle = len(rows) // 2
        self._load_rows(table, rows[:middle], report, budget)
        self._load_rows(table, rows[middle:], report, budget)
        return
      prom.LOAD_FAILURES.labels(table).inc()
      report.pieces.append((rows, None, error))
      return
    except TableNotFoundError as error:
      # The rows' own fault (routed to a table that does not exist): dead letters.
      prom.LOAD_FAILURES.labels(table).inc()
      report.pieces.append((rows, None, error))
      return
    except PermanentLoadError as error:
      # The cluster's fault (down past every retry, credentials refused): the rows
      # are fine and must not be dead-lettered -- their offsets would be committed
      # and they would never load.  Fail the bundle: nothing is acknowledged, a
      # bounded run exits non-zero, a runner retries the bundle, a restart
      # re-reads the rows.
      prom.LOAD_FAILURES.labels(table).inc()
      raise StreamLoadUnavailableError(
          f'{table}: cannot load {len(rows)} rows, the cluster is not usable: {error}',
          table=table, label=error.label, status=error.status) from error
    prom.observe_load(table, outcome.load_ms / 1000.0, outcome.loaded_rows, outcome.filtered_rows,
                      outcome.load_bytes)
    report.pieces.append((rows, outcome, None))

  def _label_prefix_for(self, table: str) -> str:
    options = self._table_options.get(table)
    return (options.label_prefix if options is not None else None) or self._label_prefix

  def _special_column_headers(self, table: str, rows: List[Row]) -> Dict[str, str]:
    """Headers for the hidden delete columns, looking at every row of the batch.

    Doris: ``hidden_columns: __DORIS_DELETE_SIGN__`` when any row carries it
    (rows without it default to 0, an upsert).  StarRocks: a ``columns``
    list with ``__op`` and every column any row has.
    """
    options = self._table_options.get(table)
    if options is not None and options.columns:
      return {}
    marker = DORIS_DELETE_SIGN if self._config.target == DORIS else STARROCKS_OP
    seen: Dict[str, None] = {}
    for row in rows:
      seen.update(dict.fromkeys(column_names(row)))
    if marker not in seen:
      return {}
    if self._config.target == DORIS:
      return {'hidden_columns': DORIS_DELETE_SIGN}
    return {'columns': ','.join(f'`{name}`' for name in seen)}

  def _harvest(self, job: _Job, windowed: bool):
    report: _BatchReport = job.future.result()
    outputs: List[Any] = []
    for row, reason in report.encode_failures:
      outputs.append(beam.pvalue.TaggedOutput(
          DEAD_LETTER_TAG, _dead_letter(row, job.table, 'load', reason)))
    self._rows_dead_lettered.inc(len(report.encode_failures))
    for rows, outcome, error in report.pieces:
      if error is not None:
        outputs.extend(self._report_failure(job.table, rows, error))
      else:
        outputs.extend(self._report_success(job.table, outcome, rows))
    for value in outputs:
      yield _in_global_window(value) if windowed else value

  def _report_failure(self, table: str, rows: List[Row], error: PermanentLoadError):
    self._load_failures.inc()
    self._rows_dead_lettered.inc(len(rows))
    prom.ROWS_DEAD_LETTERED.labels(table).inc(len(rows))
    reason = f'{type(error).__name__}: {error}'
    rejected = getattr(error, 'rejected', None)
    if rejected:
      reason += ' | rejected rows: ' + ' || '.join(rejected[:5])
    _LOGGER.error('stream load failed: table=%s rows=%d status=%s error=%s', table, len(rows),
                  error.status, error)
    for row in rows:
      yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _dead_letter(row, table, 'load', reason))

  def _report_success(self, table: str, outcome: LoadOutcome, loaded_rows: List[Row]):
    self._rows_loaded.inc(outcome.loaded_rows)
    self._rows_filtered.inc(outcome.filtered_rows)
    self._bytes_loaded.inc(outcome.load_bytes)
    self._batches_loaded.inc()
    self._retries.inc(max(0, outcome.attempts - 1))
    if outcome.status == 'Label Already Exists':
      self._label_exists.inc()
    self._batch_rows.update(len(loaded_rows))
    self._batch_bytes.update(outcome.load_bytes)
    self._load_latency.update(int(outcome.load_ms))
    _LOGGER.info(
        'stream load: table=%s rows=%d filtered=%d bytes=%d ms=%.0f status=%s label=%s attempt=%d '
        'be=%s', table, outcome.loaded_rows, outcome.filtered_rows, outcome.load_bytes,
        outcome.load_ms, outcome.status, outcome.label, outcome.attempts, outcome.be)
    yield LoadResult(table, outcome.label, outcome.status, len(loaded_rows), outcome.loaded_rows,
                     outcome.filtered_rows, outcome.load_bytes, outcome.load_ms, outcome.attempts,
                     outcome.txn_id, outcome.message, offsets_of(loaded_rows))
    for line in outcome.rejected:
      yield beam.pvalue.TaggedOutput(
          DEAD_LETTER_TAG, DeadLetter('rejected', line[:2000], None, None, None, table, None))


def _in_global_window(value):
  if isinstance(value, beam.pvalue.TaggedOutput):
    return beam.pvalue.TaggedOutput(value.tag, WindowedValue(value.value, MIN_TIMESTAMP,
                                                             [GlobalWindow()]))
  return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class WriteToStreamLoad(beam.PTransform):
  """Loads ``(table, rows)`` batches into Doris or StarRocks with Stream Load.

  Example::

    result = batches | WriteToStreamLoad(
        fe_nodes=['http://fe1:8030', 'http://fe2:8030'], user='loader', password=secret,
        flush_workers=4, label_prefix='orders_pipeline')
    result.load_results | ...   # LoadResult per batch
    result.dead_letters | ...   # DeadLetter per failed or rejected row

  Guarantees: a batch's label comes from its table and the Kafka offsets of
  its rows, so a retried bundle re-sends the same label and Doris keeps one
  copy; a bundle completes only after all its loads have finished.

  Args:
    fe_nodes: FE URLs (list or comma-separated string).
    user: Stream Load user.
    password: its password.
    password_file: or a file holding it (any Beam filesystem path), read by
      each worker in ``setup()``, so the password is not pickled with the
      pipeline; it wins over ``password``.
    target: ``doris`` or ``starrocks``.
    flush_workers: loads in flight per worker (seed 000: 4).
    label_prefix: first part of every label; keep it stable across restarts
      of the same pipeline so that re-sent batches are recognised.
    compression: ``none`` or ``gzip``.
    max_retries: retries of retryable failures, with backoff and jitter.
    table_options: per-table ``TableLoadOptions`` (``db.tbl`` -> options).
    two_phase_commit: prepare with the load, commit right after.
    connect_timeout_secs / load_timeout_secs: HTTP timeouts.
    pool_connections / pool_maxsize: the HTTP pool.
    verify: TLS: True, False or a CA bundle path.
    client_factory: builds the client from the config (tests).
  """

  def __init__(self, fe_nodes, user: str, password: str = '', *, target: str = DORIS,
               flush_workers: int = DEFAULT_FLUSH_WORKERS, label_prefix: str = DEFAULT_LABEL_PREFIX,
               compression: str = 'none', max_retries: int = DEFAULT_MAX_RETRIES,
               table_options: Optional[Mapping[str, TableLoadOptions]] = None,
               two_phase_commit: bool = False,
               connect_timeout_secs: float = DEFAULT_CONNECT_TIMEOUT_SECS,
               load_timeout_secs: float = DEFAULT_LOAD_TIMEOUT_SECS,
               pool_connections: int = DEFAULT_POOL_CONNECTIONS,
               pool_maxsize: int = DEFAULT_POOL_MAXSIZE, verify: Any = True,
               backoff_initial_secs: float = 0.5, backoff_max_secs: float = 30.0,
               client_factory=None, password_file: Optional[str] = None):
    super().__init__()
    if isinstance(fe_nodes, str):
      fe_nodes = [node for node in fe_nodes.split(',') if node.strip()]
    self._config = StreamLoadConfig(
        fe_nodes=tuple(fe_nodes), user=user, password=password, target=target,
        compression=compression, max_retries=max_retries, two_phase_commit=two_phase_commit,
        connect_timeout_secs=connect_timeout_secs, load_timeout_secs=load_timeout_secs,
        pool_connections=pool_connections, pool_maxsize=pool_maxsize, verify=verify,
        backoff_initial_secs=backoff_initial_secs, backoff_max_secs=backoff_max_secs)
    if not isinstance(flush_workers, int) or flush_workers < 1:
      raise ValueError(f'--flush_workers: must be an integer >= 1, got {flush_workers!r}')
    if not label_prefix or sanitize_label_part(label_prefix) != label_prefix or len(label_prefix) > 64:
      raise ValueError(f'--label_prefix: must be 1-64 characters of [-_A-Za-z0-9], got {label_prefix!r}')
    self._flush_workers = flush_workers
    self._label_prefix = label_prefix
    self._table_options = dict(table_options or {})
    for table, options in self._table_options.items():
      if not isinstance(options, TableLoadOptions):
        raise ValueError(f'table_options[{table!r}] must be a TableLoadOptions')
    self._client_factory = client_factory
    self._password_file = password_file

  @property
  def config(self) -> StreamLoadConfig:
    return self._config

  def expand(self, batches):
    outputs = batches | 'LoadBatches' >> beam.ParDo(
        _WriteBatchesFn(self._config, self._flush_workers, self._label_prefix, self._table_options,
                        self._client_factory, self._password_file)).with_outputs(DEAD_LETTER_TAG, main='load_results')
    return StreamLoadWriteResult(outputs.load_results, outputs[DEAD_LETTER_TAG])
