"""``WriteToStreamLoad``: the Beam sink that loads batches into Doris or StarRocks.

Each input element is one batch, ``((table, shard), [Row, ...])`` (or
``(table, rows)``).  The DoFn creates one pooled ``StreamLoadClient``, the
load journal (exactly-once) and a pool of ``flush_workers`` threads in
``setup()`` and keeps up to that many loads in flight (seed 000's worker
pool).  Two batches with the same key of an ordered table (unique,
aggregate, primary-key) never load at the same time (``LoadScheduler``).

Two implementations, as for batching:

* portable runners: every load of a bundle is waited for in
  ``finish_bundle()``, so a bundle never completes before its rows are
  durable;
* the local runner's in-process worker: loads stay in flight across bundles
  while the read goes on, finished ones are reported at the next element or
  bundle end, and everything is waited for when the read has finished (the
  rows are acknowledged only once loaded, so a crash loses nothing).

Outputs (``StreamLoadWriteResult``): one ``LoadResult`` per loaded piece, and
``DeadLetter``s for rows that failed through their own fault (stage ``load``:
rejected by the server, not encodable, routed to a table that does not exist)
or that the server filtered within ``max_filter_ratio`` (stage ``rejected``,
for the record only: their batch was loaded).  A cluster fault fails the
bundle with ``StreamLoadUnavailableError`` instead.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any, Iterable, List, Mapping, Optional, Tuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics, monitoring
from transforms.delivery.journal import JournalConfig, LoadJournal
from transforms.kafka import stop
from transforms.runtime import runs_in_process
from transforms.stream_load.client import StreamLoadClient
from transforms.stream_load.config import GROUP_COMMIT_OFF, StreamLoadConfig, TableLoadOptions
from transforms.stream_load.errors import RowFaultError
from transforms.stream_load.labels import sanitize_label_part
from transforms.stream_load.loader import BatchLoader, BatchReport
from transforms.stream_load.outcome import STATUS_LABEL_EXISTS, LoadOutcome
from transforms.stream_load.scheduler import Job, LoadScheduler
from transforms.types import (MAX_DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, LoadResult, Row,
                              offsets_of, table_of_key)

__all__ = ['WriteToStreamLoad', 'StreamLoadWriteResult', 'DEAD_LETTER_TAG',
           'DEFAULT_FLUSH_WORKERS', 'DEFAULT_LABEL_PREFIX']

_LOGGER = logging.getLogger('transforms.stream_load')

DEAD_LETTER_TAG = 'dead_letters'
DEFAULT_FLUSH_WORKERS = 4
DEFAULT_LABEL_PREFIX = 'beam'
# Batches a worker holds, loading or waiting behind their key, beyond its
# flush workers before the bundle waits: bounds memory to a few batches.
_QUEUED_JOBS = 2


class StreamLoadWriteResult:
  """What ``WriteToStreamLoad`` produced, like BigQuery's ``WriteResult``.

  Attributes:
    load_results: ``LoadResult`` per loaded batch (or bisected piece).
    dead_letters: ``DeadLetter`` per row that failed for good or was rejected.
  """

  def __init__(self, load_results: beam.PCollection, dead_letters: beam.PCollection):
    self.load_results = load_results
    self.dead_letters = dead_letters

  def __getitem__(self, tag: str) -> beam.PCollection:
    return {'load_results': self.load_results, DEAD_LETTER_TAG: self.dead_letters}[tag]


def _row_payload(row: Row) -> bytes:
  if row.raw is not None:
    return row.raw[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
  try:
    payload = orjson.dumps(row.fields, default=str)
  except (TypeError, orjson.JSONEncodeError):
    payload = repr(row.fields).encode('utf-8', 'replace')
  return payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]


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


def _in_global_window(value):
  if isinstance(value, beam.pvalue.TaggedOutput):
    return beam.pvalue.TaggedOutput(value.tag, WindowedValue(value.value, MIN_TIMESTAMP,
                                                             [GlobalWindow()]))
  return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class _SinkSettings:
  """The sink's configuration, pickled with its DoFn (the password stays out with a file)."""

  def __init__(self, config: StreamLoadConfig, flush_workers: int, label_prefix: str,
               table_options: Mapping[str, TableLoadOptions],
               table_sharding: Mapping[str, Tuple[int, Tuple[str, ...]]],
               journal: Optional[JournalConfig], stop_token: Optional[str],
               keep_retrying: bool = False):
    self.config = config
    self.keep_retrying = keep_retrying
    self.flush_workers = flush_workers
    self.label_prefix = label_prefix
    self.table_options = dict(table_options)
    self.table_sharding = dict(table_sharding)
    self.journal = journal
    self.stop_token = stop_token


class _WriteBatchesFn(beam.DoFn):
  """Loads batches with up to ``flush_workers`` loads in flight; waits in ``finish_bundle``."""

  # The in-process subclass keeps loads in flight across bundles.
  _WAITS_EACH_BUNDLE = True

  def __init__(self, settings: _SinkSettings, client_factory=None):
    self._settings = settings
    self._client_factory = client_factory
    self._client: Optional[StreamLoadClient] = None
    self._journal: Optional[LoadJournal] = None
    self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._jobs: List[Job] = []
    ns = metrics.NAMESPACE
    self._rows_loaded = Metrics.counter(ns, 'rows_loaded')
    self._rows_filtered = Metrics.counter(ns, 'rows_filtered')
    self._bytes_loaded = Metrics.counter(ns, 'bytes_loaded')
    self._batches_loaded = Metrics.counter(ns, 'batches_loaded')
    self._load_failures = Metrics.counter(ns, 'load_failures')
    self._rows_dead_lettered = Metrics.counter(ns, 'rows_dead_lettered')
    self._retries = Metrics.counter(ns, 'retries')
    self._label_exists = Metrics.counter(ns, 'labels_already_loaded')
    self._batch_rows = Metrics.distribution(ns, 'batch_rows')
    self._batch_bytes = Metrics.distribution(ns, 'batch_bytes')
    self._load_latency = Metrics.distribution(ns, 'load_latency_ms')

  def setup(self):
    settings = self._settings
    # The password is read here, on the worker: with --password_file it never
    # travels with the pipeline.
    factory = self._client_factory or StreamLoadClient
    self._client = factory(settings.config.resolved())
    if settings.journal is not None:
      self._journal = LoadJournal(settings.journal)
    self._loader = BatchLoader(self._client, self._journal,
                               settings.journal.group if settings.journal else '',
                               settings.label_prefix, settings.table_options,
                               settings.table_sharding, keep_retrying=settings.keep_retrying)
    self._ordered = {}
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=settings.flush_workers, thread_name_prefix='stream-load')
    self._scheduler = LoadScheduler(self._executor, self._run_job)
    self._jobs = []

  def _is_ordered(self, table: str) -> bool:
    """Whether batches of ``table`` (per key) must load one after another."""
    ordered = self._ordered.get(table)
    if ordered is None:
      options = self._settings.table_options.get(table)
      if options is not None and options.ordered is not None:
        ordered = options.ordered
      else:
        # Only append-only (duplicate-key) tables are safe to load out of order.
        ordered = self._client.table_keys_type(table) != 'DUP_KEYS'
      self._ordered[table] = ordered
    return ordered

  def process(self, element):
    key, batch = element
    table = table_of_key(key)
    rows = _as_rows(table, batch)
    if not rows:
      return
    # Encode here, on the bundle thread, while up to flush_workers loads are on
    # the wire: encoding holds the GIL, so doing it in the flush threads would
    # only make the loads wait for each other's encoding.
    job = Job(key, (table, rows, self._loader.encode(table, rows)))
    monitoring.monitor().load_started(table)
    self._scheduler.submit(job, self._is_ordered(table))
    self._jobs.append(job)
    # Back-pressure: report finished loads; hold the bundle while too many wait.
    yield from self._harvest(block_above=self._settings.flush_workers + _QUEUED_JOBS,
                             windowed=False)

  def finish_bundle(self):
    wait_all = self._WAITS_EACH_BUNDLE or stop.source_finished(self._settings.stop_token)
    yield from self._harvest(block_above=0 if wait_all else None, windowed=True)
    if self._journal is not None:
      self._journal.collect()

  def teardown(self):
    # Best effort, never flushes: finish_bundle already waited for every load.
    if self._executor is not None:
      self._executor.shutdown(wait=False, cancel_futures=True)
      self._executor = None
    if self._journal is not None:
      self._journal.close()
      self._journal = None
    if self._client is not None:
      self._client.close()
      self._client = None

  def display_data(self):
    config = self._settings.config
    return {
        'fe_nodes': ','.join(config.fe_nodes),
        'target': config.target,
        'flush_workers': self._settings.flush_workers,
        'label_prefix': self._settings.label_prefix,
        'compression': config.compression,
        'max_retries': config.max_retries,
        'exactly_once': self._settings.journal is not None,
    }

  # Runs on a flush thread.
  def _run_job(self, job: Job) -> BatchReport:
    table, rows, encoded = job.payload
    report = self._loader.load(job.key, table, rows, encoded)
    job.payload = (table, rows, None)  # the body is sent: let it go now
    return report

  def _harvest(self, block_above: Optional[int], windowed: bool):
    """Reports finished jobs; waits while more than ``block_above`` are pending (None: never)."""
    monitor = monitoring.monitor()
    while True:
      monitor.heartbeat('sink')
      pending = []
      for job in self._jobs:
        if job.future.done():
          for value in self._report(job):
            yield _in_global_window(value) if windowed else value
        else:
          pending.append(job)
      self._jobs = pending
      if block_above is None or len(pending) <= block_above:
        return
      concurrent.futures.wait([job.future for job in pending],
                              return_when=concurrent.futures.FIRST_COMPLETED)

  def _report(self, job: Job):
    table = job.payload[0]
    report: BatchReport = job.future.result()  # a cluster fault raises here: the bundle fails
    for row, reason in report.encode_failures:
      self._rows_dead_lettered.inc()
      yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _dead_letter(row, table, 'load', reason))
    for rows, outcome, error in report.pieces:
      if error is not None:
        yield from self._report_failure(table, rows, error)
      else:
        yield from self._report_success(table, outcome, rows)

  def _report_failure(self, table: str, rows: List[Row], error: RowFaultError):
    self._load_failures.inc()
    self._rows_dead_lettered.inc(len(rows))
    metrics.ROWS_DEAD_LETTERED.labels(table).inc(len(rows))
    reason = f'{type(error).__name__}: {error}'
    rejected = getattr(error, 'rejected', None)
    if rejected:
      reason += ' | rejected rows: ' + ' || '.join(rejected[:5])
    _LOGGER.error('stream load failed: table=%s rows=%d status=%s error=%s', table, len(rows),
                  error.status, error)
    for row in rows:
      yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _dead_letter(row, table, 'load', reason))

  def _report_success(self, table: str, outcome: LoadOutcome, rows: List[Row]):
    self._rows_loaded.inc(outcome.loaded_rows)
    self._rows_filtered.inc(outcome.filtered_rows)
    self._bytes_loaded.inc(outcome.load_bytes)
    self._batches_loaded.inc()
    self._retries.inc(max(0, outcome.attempts - 1))
    if outcome.status == STATUS_LABEL_EXISTS:
      self._label_exists.inc()
    self._batch_rows.update(len(rows))
    self._batch_bytes.update(outcome.load_bytes)
    self._load_latency.update(int(outcome.load_ms))
    _LOGGER.info(
        'stream load: table=%s rows=%d filtered=%d bytes=%d ms=%.0f status=%s label=%s attempt=%d '
        'be=%s', table, outcome.loaded_rows, outcome.filtered_rows, outcome.load_bytes,
        outcome.load_ms, outcome.status, outcome.label, outcome.attempts, outcome.be)
    yield LoadResult(table, outcome.label, outcome.status, len(rows), outcome.loaded_rows,
                     outcome.filtered_rows, outcome.load_bytes, outcome.load_ms, outcome.attempts,
                     outcome.txn_id, outcome.message, offsets_of(rows))
    for line in outcome.rejected:
      yield beam.pvalue.TaggedOutput(
          DEAD_LETTER_TAG, DeadLetter('rejected', line[:2000], None, None, None, table, None))


class _InProcessWriteFn(_WriteBatchesFn):
  """The local runner's sink: loads stay in flight across bundles until the read ends."""
  _WAITS_EACH_BUNDLE = False


class WriteToStreamLoad(beam.PTransform):
  """Loads ``((table, shard), rows)`` batches into Doris or StarRocks with Stream Load.

  Example::

    config = StreamLoadConfig(fe_nodes=('http://fe1:8030', 'http://fe2:8030'), user='loader',
                              password_file='/secrets/doris')
    result = batches | WriteToStreamLoad(config, flush_workers=4, label_prefix='orders')
    result.load_results | ...   # LoadResult per batch
    result.dead_letters | ...   # DeadLetter per failed or rejected row

  Guarantees: a batch's label comes from its table, the Kafka offsets of its
  rows and its body, so a retried bundle re-sends the same label and the
  server keeps one copy; with a ``journal`` every batch is written ahead, so
  a restart after a crash skips what was loaded (see ``transforms.delivery``).

  Args:
    config: the cluster and retry settings (validated once, passed unchanged).
    flush_workers: loads in flight per worker (seed 000: 4).
    label_prefix: first part of every label; keep it stable across restarts.
    table_options: per-table ``TableLoadOptions`` (``db.tbl`` -> options).
    table_sharding: per-table ``(shards, key_columns)`` as ``KeyByTable``
      used them (recorded in the journal).
    journal: where the load journal lives (exactly-once), or None.
    stop_token: the run token of the Kafka read (local runner: wait for all
      loads when the read has finished).
    keep_retrying: a long-running job: while the cluster is unavailable, retry
      a batch without end (the stall detector reports it) instead of failing.
    in_process: force the in-process (True) or the portable (False) DoFn;
      default: in-process on the local runner's in-process worker when a
      ``stop_token`` tells it when the read ends.
    client_factory: builds the client from the config (tests).

  Raises:
    ValueError: a bad argument, naming its flag.
  """

  def __init__(self, config: StreamLoadConfig, *, flush_workers: int = DEFAULT_FLUSH_WORKERS,
               label_prefix: str = DEFAULT_LABEL_PREFIX,
               table_options: Optional[Mapping[str, TableLoadOptions]] = None,
               table_sharding: Optional[Mapping[str, Tuple[int, Tuple[str, ...]]]] = None,
               journal: Optional[JournalConfig] = None, stop_token: Optional[str] = None,
               keep_retrying: bool = False, in_process: Optional[bool] = None,
               client_factory=None):
    super().__init__()
    if not isinstance(config, StreamLoadConfig):
      raise ValueError(f'config: a StreamLoadConfig is required, got {type(config).__name__}')
    if isinstance(flush_workers, bool) or not isinstance(flush_workers, int) or flush_workers < 1:
      raise ValueError(f'--flush_workers: must be an integer >= 1, got {flush_workers!r}')
    if (not label_prefix or sanitize_label_part(label_prefix) != label_prefix
        or len(label_prefix) > 64):
      raise ValueError('--label_prefix: must be 1-64 characters of [-_A-Za-z0-9], got '
                       f'{label_prefix!r}')
    for table, options in (table_options or {}).items():
      if not isinstance(options, TableLoadOptions):
        raise ValueError(f'table_options[{table!r}] must be a TableLoadOptions')
    merged = config.group_commit != GROUP_COMMIT_OFF or any(
        options.group_commit not in (None, GROUP_COMMIT_OFF)
        for options in (table_options or {}).values())
    if journal is not None and merged:
      raise ValueError('journal: group commit loads carry no label, so the load journal cannot '
                       'recognise them after a crash; use no journal (at-least-once)')
    self._settings = _SinkSettings(config, flush_workers, label_prefix, table_options or {},
                                   table_sharding or {}, journal, stop_token, keep_retrying)
    self._in_process = in_process
    self._client_factory = client_factory

  @property
  def config(self) -> StreamLoadConfig:
    return self._settings.config

  def expand(self, batches):
    in_process = self._in_process
    if in_process is None:
      # Without a read to watch, the sink could not tell when the input ends.
      in_process = (self._settings.stop_token is not None
                    and runs_in_process(batches.pipeline))
    fn_class = _InProcessWriteFn if in_process else _WriteBatchesFn
    outputs = batches | 'LoadBatches' >> beam.ParDo(
        fn_class(self._settings, self._client_factory)).with_outputs(DEAD_LETTER_TAG,
                                                                     main='load_results')
    return StreamLoadWriteResult(outputs.load_results, outputs[DEAD_LETTER_TAG])
