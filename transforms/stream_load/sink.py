"""``WriteToStreamLoad``: the Beam sink that loads batches into Doris or StarRocks.

Each input element is one batch, ``((table, shard), [Row, ...])`` (or
``(table, rows)``).  One engine per run and worker process -- a pooled
``StreamLoadClient``, the load journal (exactly-once) and a pool of
``flush_workers`` threads, made in ``setup()`` through the run's
``Runtime`` -- keeps up to that many loads in flight (a pool of flush
workers, where a serial flush leaves the cluster idle between loads).  Two batches with the same key of an ordered table (unique,
aggregate, primary-key) never load at the same time (``LoadScheduler``).

Loads stay in flight across bundles while the read goes on; finished ones
are reported at the next element or bundle end, and everything is waited for
once every read of the worker has ended (the rows are acknowledged only once
loaded, so a crash loses nothing).  With ``hold_across_bundles=False`` (rows
from another read) each bundle waits for its loads in ``finish_bundle``.

Outputs (``StreamLoadWriteResult``): one ``LoadResult`` per loaded piece, and
``DeadLetter``s for rows that failed through their own fault (stage ``load``:
rejected by the server, not encodable, routed to a table that does not exist)
or that the server filtered within ``max_filter_ratio`` (stage ``rejected``,
for the record only: their batch was loaded).  A cluster fault fails the
bundle with ``StreamLoadUnavailableError`` instead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Union

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.runtime import RunContext, acquire, release
from transforms.stream_load.client import StreamLoadClient
from transforms.stream_load.config import GROUP_COMMIT_OFF, StreamLoadConfig, TableLoadOptions
from transforms.stream_load.errors import RowFaultError
from transforms.stream_load.labels import sanitize_label_part
from transforms.stream_load.loader import BatchLoader, BatchReport
from transforms.stream_load.outcome import STATUS_LABEL_EXISTS, LoadOutcome
from transforms.stream_load.scheduler import Job, LoadScheduler
from transforms.stream_load.write_ahead import WriteAheadLogSpec
from transforms.types import (MAX_DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, LoadResult, Row,
                              TableMap, offsets_of, table_of_key)

__all__ = ['WriteToStreamLoad', 'SinkSettings', 'group_commit_users', 'StreamLoadWriteResult',
           'DEAD_LETTER_TAG', 'DEFAULT_FLUSH_WORKERS', 'DEFAULT_LABEL_PREFIX']

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


@dataclasses.dataclass(frozen=True)
class SinkSettings:
  """Everything ``WriteToStreamLoad`` needs to know, validated once, here (picklable: the
  password stays out with a password file).

  Attributes:
    config: the cluster and retry settings.
    flush_workers: loads in flight per worker.
    label_prefix: first part of every label; keep it stable across restarts.
    table_options: per-table ``TableLoadOptions`` (``db.tbl`` -> options).
    write_ahead: where the write-ahead log lives (``WriteAheadLogSpec``: exactly-once), or None
      (at-least-once).
    keep_retrying: a long-running job: while the cluster is unavailable, retry a batch without
      end (the stall detector reports it) instead of failing.

  Raises:
    ValueError: a bad setting, naming its flag.
  """
  config: StreamLoadConfig
  flush_workers: int = DEFAULT_FLUSH_WORKERS
  label_prefix: str = DEFAULT_LABEL_PREFIX
  table_options: Mapping[str, TableLoadOptions] = dataclasses.field(default_factory=dict)
  write_ahead: Optional[WriteAheadLogSpec] = None
  keep_retrying: bool = False

  def __post_init__(self):
    if not isinstance(self.config, StreamLoadConfig):
      raise ValueError(f'config: a StreamLoadConfig is required, got {type(self.config).__name__}')
    workers = self.flush_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
      raise ValueError(f'--flush_workers: must be an integer >= 1, got {workers!r}')
    prefix = self.label_prefix
    if not prefix or sanitize_label_part(prefix) != prefix or len(prefix) > 64:
      raise ValueError(f'--label_prefix: must be 1-64 characters of [-_A-Za-z0-9], got {prefix!r}')
    object.__setattr__(self, 'table_options', TableMap.of(self.table_options or {}))
    for table, options in self.table_options.items():
      if not isinstance(options, TableLoadOptions):
        raise ValueError(f'table_options[{table!r}] must be a TableLoadOptions')
    merged = group_commit_users(self.config, self.table_options)
    if self.write_ahead is not None and merged:
      raise ValueError(
          f'--group_commit / group_commit for {", ".join(merged)}: group commit loads carry no '
          'label (Doris: "label and group_commit can\'t be set at the same time"), so a batch '
          're-sent after a crash cannot be recognised and may load twice; give '
          '--delivery_guarantee=at_least_once to accept that')


def group_commit_users(config: StreamLoadConfig,
                       table_options: Mapping[str, TableLoadOptions]) -> List[str]:
  """What loads with group commit: ``every table (--group_commit)`` and/or table names."""
  users = ['every table (--group_commit)'] if config.group_commit != GROUP_COMMIT_OFF else []
  users += sorted(table for table, options in table_options.items()
                  if options.group_commit not in (None, GROUP_COMMIT_OFF))
  return users


class _Engine:
  """What loads a worker's batches: client, write-ahead log, loader, flush threads (one per
  process)."""

  def __init__(self, settings: SinkSettings, monitor, client_factory=None):
    # The password is read here, on the worker: with --password_file it never
    # travels with the pipeline.
    factory = client_factory or StreamLoadClient
    self.client = factory(settings.config.resolved())
    self.write_ahead = (settings.write_ahead.open() if settings.write_ahead is not None
                        else None)
    self.loader = BatchLoader(self.client, self.write_ahead, settings.label_prefix,
                              settings.table_options, keep_retrying=settings.keep_retrying,
                              monitor=monitor)
    self.executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=settings.flush_workers, thread_name_prefix='stream-load')
    _start_all(self.executor, settings.flush_workers)
    self.scheduler = LoadScheduler(self.executor, self._run_job)
    self._settings = settings
    self._ordered: Dict[str, bool] = {}
    self._lock = threading.Lock()
    self._loading: Dict[str, Set[concurrent.futures.Future]] = {}  # table -> loads not done

  def submit(self, table: str, job: Job) -> None:
    """Starts ``job`` (a batch of ``table``), in its key's order when the table needs it."""
    with self._lock:
      self._loading.setdefault(table, set()).add(job.future)
    job.future.add_done_callback(lambda done: self._loaded(table, done))
    self.scheduler.submit(job, self.is_ordered(table))

  def _loaded(self, table: str, future: concurrent.futures.Future) -> None:
    with self._lock:
      loading = self._loading.get(table)
      if loading is not None:
        loading.discard(future)
        if not loading:
          del self._loading[table]

  def wait_for_table(self, table: str) -> None:
    """Returns once every load of ``table`` submitted so far (by any bundle of this process)
    has finished."""
    with self._lock:
      futures = list(self._loading.get(table, ()))
    concurrent.futures.wait(futures)

  def is_ordered(self, table: str) -> bool:
    """Whether batches of ``table`` (per key) must load one after another.

    Only append-only (duplicate-key) tables are safe to load out of order.  Until the table's
    first load has asked the FE (on its flush thread, not here: a whole database's hundreds of
    tables would otherwise wait a round trip each, in turn), its batches load in order, which
    is always safe.
    """
    ordered = self._ordered.get(table)
    if ordered is None:
      options = self._settings.table_options.get(table)
      if options is None or options.ordered is None:
        return True
      ordered = self._ordered[table] = options.ordered
    return ordered

  # Runs on a flush thread.
  def _run_job(self, job: Job) -> BatchReport:
    table, rows, encoded = job.payload
    if table not in self._ordered and self.is_ordered(table):
      self._ordered[table] = self.client.table_keys_type(table) != 'DUP_KEYS'
    report = self.loader.load(job.key, table, rows, encoded)
    job.payload = (table, rows, None)  # the body is sent: let it go now
    return report

  def close(self) -> None:
    """Best effort, never loads: pending rows were never acknowledged (a restart reads them)."""
    self.executor.shutdown(wait=False, cancel_futures=True)
    if self.write_ahead is not None:
      self.write_ahead.close()
    self.client.close()


def _start_all(executor: concurrent.futures.ThreadPoolExecutor, workers: int) -> None:
  """Starts every thread of ``executor`` now.  A pool grows at its first burst (a backlog after
  an outage), and each new thread brings its own malloc arena: the soak saw RSS step up ~10 MB
  there and stay.  Started together, the threads are part of the job's memory from the start."""
  barrier = threading.Barrier(workers + 1)
  for _ in range(workers):
    executor.submit(barrier.wait, 10.0)
  try:
    barrier.wait(10.0)
  except threading.BrokenBarrierError:
    pass  # a slow start: the pool grows as loads come, as before


class _WriteBatchesFn(beam.DoFn):
  """Submits batches to the worker's engine; reports finished loads; waits when the input ends."""

  def __init__(self, settings: SinkSettings, context: RunContext, name: str,
               hold_across_bundles: bool, client_factory=None):
    self._settings = settings
    self._context = context
    self._name = name
    self._hold = hold_across_bundles
    self._client_factory = client_factory
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
    self._runtime = acquire(self._context)
    self._monitor = self._runtime.monitor
    self._engine = self._runtime.shared(
        f'stream_load.{self._name}',
        lambda: _Engine(self._settings, self._monitor, self._client_factory))
    self._jobs = []

  def teardown(self):
    # Never flushes: finish_bundle waited for every load the input's end needed.
    release(self._runtime)

  def process(self, element):
    key, batch = element
    if getattr(batch, 'barrier', False):
      # A schema change of the table waits until every load of it before it has finished.
      try:
        self._engine.wait_for_table(table_of_key(key))
        yield from self._harvest(block_above=None, windowed=False)
      except Exception as error:
        self._runtime.fail(error)
        raise
      return
    table = table_of_key(key)
    rows = _as_rows(table, batch)
    if not rows:
      return
    try:
      engine = self._engine
      # Encode here, on the bundle thread, while up to flush_workers loads are on
      # the wire: encoding holds the GIL, so doing it in the flush threads would
      # only make the loads wait for each other's encoding.
      job = Job(key, (table, rows, engine.loader.encode(table, rows)),
                getattr(batch, 'seq', None))
      self._monitor.load_started(table)
      engine.submit(table, job)
      self._jobs.append(job)
      # Back-pressure: report finished loads; hold the bundle while too many wait.
      yield from self._harvest(block_above=self._settings.flush_workers + _QUEUED_JOBS,
                               windowed=False)
    except Exception as error:
      self._runtime.fail(error)
      raise

  def finish_bundle(self):
    try:
      wait_all = not self._hold or self._runtime.sources.finished()
      yield from self._harvest(block_above=0 if wait_all else None, windowed=True)
      if self._engine.write_ahead is not None:
        self._engine.write_ahead.collect()
    except Exception as error:
      self._runtime.fail(error)
      raise

  def display_data(self):
    config = self._settings.config
    return {
        'fe_nodes': ','.join(config.fe_nodes),
        'target': config.target,
        'flush_workers': self._settings.flush_workers,
        'label_prefix': self._settings.label_prefix,
        'compression': config.compression,
        'max_retries': config.max_retries,
        'exactly_once': self._settings.write_ahead is not None,
    }

  def _harvest(self, block_above: Optional[int], windowed: bool):
    """Reports finished jobs; waits while more than ``block_above`` are pending (None: never)."""
    monitor = self._monitor
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
    reason = f'{error.reason}: {error}'  # a stable code (data_quality, table_not_found, ...)
    rejected = getattr(error, 'rejected', None)
    if rejected:
      reason += ' | rejected rows: ' + ' || '.join(rejected[:5])
    # The rows' fault, not the cluster's: they go to dead letters, the job goes on.
    _LOGGER.warning('stream load rejected rows (dead-lettered): table=%s rows=%d status=%s '
                    'error=%s', table, len(rows), error.status, error)
    for row in rows:
      yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, _dead_letter(row, table, 'load', reason))

  def _report_success(self, table: str, outcome: LoadOutcome, rows: List[Row]):
    self._rows_loaded.inc(outcome.loaded_rows)
    self._rows_filtered.inc(outcome.filtered_rows)
    self._bytes_loaded.inc(outcome.load_bytes)
    self._batches_loaded.inc()
    self._retries.inc(max(0, outcome.attempts - 1))
    self._monitor.count('rows_loaded', outcome.loaded_rows)
    self._monitor.count('loads')
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


class WriteToStreamLoad(beam.PTransform):
  """Loads ``((table, shard), rows)`` batches into Doris or StarRocks with Stream Load.

  Example::

    config = StreamLoadConfig(fe_nodes=('http://fe1:8030', 'http://fe2:8030'), user='loader',
                              password_file='/secrets/doris')
    result = batches | WriteToStreamLoad(SinkSettings(config, flush_workers=4,
                                                      label_prefix='orders'))
    result.load_results | ...   # LoadResult per batch
    result.dead_letters | ...   # DeadLetter per failed or rejected row

  Guarantees: a batch's label comes from its table, the Kafka offsets of its
  rows and its body, so a retried bundle re-sends the same label and the
  server keeps one copy; with a ``write_ahead`` log every batch is written
  ahead, so a restart after a crash skips what was loaded (the load journal:
  ``transforms.delivery.JournalWriteAhead``).

  Args:
    settings: the ``SinkSettings`` (validated when they were made); or a ``StreamLoadConfig``
      with the other settings as keyword arguments (``flush_workers``, ``label_prefix``,
      ``table_options``, ``write_ahead``, ``keep_retrying``: see ``SinkSettings``).
    context: the run (the read's): its runtime holds the worker's engine and
      says when every read of the worker has ended.
    hold_across_bundles: keep loads in flight across bundles, waiting for
      them only once every read of the worker has ended (rows from the run's
      own ``ReadKafkaChunks(durable=True)``: the loader's setting); by
      default each bundle waits for its loads (rows from another read).
    client_factory: builds the client from the config (tests).

  Raises:
    ValueError: a bad argument, naming its flag.
  """

  def __init__(self, settings: Union[SinkSettings, StreamLoadConfig], *,
               context: Optional[RunContext] = None, hold_across_bundles: bool = False,
               client_factory=None, **settings_kwargs):
    super().__init__()
    if isinstance(settings, SinkSettings):
      if settings_kwargs:
        raise ValueError(f'WriteToStreamLoad: give the settings in SinkSettings, not also as '
                         f'{sorted(settings_kwargs)}')
      self._settings = settings
    else:
      self._settings = SinkSettings(settings, **settings_kwargs)
    self._context = context or RunContext()
    self._hold = hold_across_bundles
    self._name = uuid.uuid4().hex
    self._client_factory = client_factory

  @property
  def config(self) -> StreamLoadConfig:
    return self._settings.config

  def expand(self, batches):
    outputs = batches | 'LoadBatches' >> beam.ParDo(
        _WriteBatchesFn(self._settings, self._context, self._name, self._hold,
                        self._client_factory)).with_outputs(DEAD_LETTER_TAG, main='load_results')
    return StreamLoadWriteResult(outputs.load_results, outputs[DEAD_LETTER_TAG])
