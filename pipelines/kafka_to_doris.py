"""The Kafka -> Doris/StarRocks pipeline: ``build_pipeline(p, options)`` and ``run(argv)``.

::

  ReadFromKafka (chunks) -> ParseRecords -> KeyByTable -> BatchPerTable
      -> WriteToStreamLoad -> CommitOffsets          (dead letters -> files -> CommitOffsets)

Run ``python -m pipelines.kafka_to_doris --help`` for every flag.
``--runner=DirectRunner`` (the default) runs on Beam's FnApiRunner in this
process: the DirectRunner would pick the BundleBasedDirectRunner for a
pipeline with processing-time timers, and that runner cannot run an
unbounded splittable DoFn (see the README, "Runners").
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.options import KafkaToDorisOptions
from pipelines.preflight import PreflightError, check_tables
from pipelines.table_config import TableConfigError, load_table_config
from transforms import prom
from transforms.batching import BatchLimits, BatchPerTable, KeyByTable
from transforms.dead_letters import WriteDeadLetters
from transforms.labels import sanitize_label_part
from transforms.records import ParseRecords, Routing, parse_topic_table_map
from transforms.stream_load import METRICS_NAMESPACE, WriteToStreamLoad
from transforms.stream_load_client import StreamLoadConfig
from transforms.types import LoadResult, acks_of_load_result

__all__ = ['build_pipeline', 'run', 'PipelineOutputs', 'ConfigurationError', 'consumer_config_of']

_LOGGER = logging.getLogger(__name__)

_DIRECT_RUNNERS = (None, 'DirectRunner', 'direct', 'FnApiRunner')


class ConfigurationError(ValueError):
  """A flag or the table config is wrong; raised before anything runs."""


class PipelineOutputs:
  """The pipeline's named outputs (tests assert on them).

  ``dead_letters`` is a tuple: the parser's and the sink's dead letters.
  """

  def __init__(self, load_results, dead_letters, commits):
    self.load_results = load_results
    self.dead_letters = dead_letters
    self.commits = commits


def _split_list(value: Optional[str]) -> List[str]:
  return [item.strip() for item in (value or '').split(',') if item.strip()]


def consumer_config_of(opts: KafkaToDorisOptions) -> Dict[str, str]:
  """The librdkafka settings of the reader and of the offset committer."""
  config = {
      'bootstrap.servers': opts.bootstrap_servers,
      'group.id': opts.group_id,
      'auto.offset.reset': opts.auto_offset_reset,
  }
  for item in (opts.consumer_config or '').split(';'):
    if not item.strip():
      continue
    key, sep, value = item.partition('=')
    if not sep or not key.strip():
      raise ConfigurationError(f'--consumer_config: {item!r} is not key=value')
    config[key.strip()] = value.strip()
  config['enable.auto.commit'] = 'false'
  return config


def _routing_of(opts: KafkaToDorisOptions) -> Routing:
  chosen = [name for name in ('table', 'topic_table_map', 'table_field') if getattr(opts, name)]
  if len(chosen) > 1:
    raise ConfigurationError('give only one of --table, --topic_table_map, --table_field (got '
                             + ', '.join(f'--{c}' for c in chosen) + ')')
  if not chosen and opts.cdc_format == 'none':
    raise ConfigurationError('one of --table, --topic_table_map or --table_field is required '
                             '(or a --cdc_format whose envelope names the table)')
  try:
    return Routing(table=opts.table or None,
                   topic_table_map=parse_topic_table_map(opts.topic_table_map)
                   if opts.topic_table_map else None,
                   table_field=opts.table_field or None,
                   default_database=opts.default_database or None)
  except ValueError as error:
    raise ConfigurationError(str(error)) from None


class _Settings:
  """Everything derived from the flags, validated once."""

  def __init__(self, options: PipelineOptions):
    opts = options.view_as(KafkaToDorisOptions)
    self.opts = opts
    missing = [f'--{name}' for name in ('bootstrap_servers', 'topics', 'group_id', 'fe_nodes')
               if not getattr(opts, name)]
    if missing:
      raise ConfigurationError('missing required flag(s): ' + ', '.join(missing))
    self.topics = _split_list(opts.topics)
    self.routing = _routing_of(opts)
    if self.routing.topic_table_map:
      unmapped = [t for t in self.topics if t not in self.routing.topic_table_map]
      if unmapped:
        raise ConfigurationError(f'--topic_table_map: topic(s) {unmapped} are read (--topics) but '
                                 'not mapped to a table')
    try:
      self.default_limits = BatchLimits(rows=opts.batch_rows, bytes=opts.batch_bytes,
                                        interval_secs=opts.batch_interval_secs)
      self.table_config = load_table_config(opts.table_config, self.default_limits)
      self.load_config = StreamLoadConfig(
          fe_nodes=tuple(_split_list(opts.fe_nodes)), user=opts.user,
          password=opts.resolved_password(), target=opts.target, compression=opts.compression,
          max_retries=opts.max_retries, two_phase_commit=opts.two_phase_commit,
          load_timeout_secs=opts.load_timeout_secs,
          connect_timeout_secs=opts.connect_timeout_secs, pool_maxsize=opts.pool_maxsize,
          verify=opts.ca_bundle or True)
    except (TableConfigError, ValueError) as error:
      raise ConfigurationError(str(error)) from None
    if opts.flush_workers < 1:
      raise ConfigurationError(f'--flush_workers: must be >= 1, got {opts.flush_workers}')
    if opts.max_record_bytes < 1:
      raise ConfigurationError(f'--max_record_bytes: must be >= 1, got {opts.max_record_bytes}')
    self.label_prefix = opts.label_prefix or sanitize_label_part(opts.group_id)[:48]
    self.consumer_config = consumer_config_of(opts)

  def static_tables(self) -> List[str]:
    tables = set(self.table_config.tables)
    if self.routing.table:
      tables.add(self.routing.table)
    if self.routing.topic_table_map:
      tables.update(self.routing.topic_table_map.values())
    return sorted(tables)


def _count_consumed(chunk) -> None:
  prom.KAFKA_RECORDS_CONSUMED.labels(chunk.topic).inc(len(chunk.records))


class _ProgressFn(beam.DoFn):
  """Logs loaded rows, MB/s and per-table totals every ``interval_secs``."""

  def __init__(self, interval_secs: float):
    self._interval = interval_secs

  def setup(self):
    self._started = time.monotonic()
    self._last_log = self._started
    self._rows: Dict[str, int] = {}
    self._bytes = 0
    self._batches = 0

  def process(self, result: LoadResult):
    self._rows[result.table] = self._rows.get(result.table, 0) + result.loaded_rows
    self._bytes += result.bytes
    self._batches += 1
    Metrics.counter(f'{METRICS_NAMESPACE}.table', f'rows_loaded[{result.table}]').inc(
        result.loaded_rows)
    Metrics.counter(f'{METRICS_NAMESPACE}.table', f'loads[{result.table}]').inc()
    Metrics.counter(f'{METRICS_NAMESPACE}.table', f'bytes_loaded[{result.table}]').inc(result.bytes)
    now = time.monotonic()
    if self._interval and now - self._last_log >= self._interval:
      self._last_log = now
      elapsed = max(now - self._started, 1e-6)
      total = sum(self._rows.values())
      _LOGGER.info('progress: %d rows loaded in %d batches, %.1f MB/s, %.0f rows/s (%s)', total,
                   self._batches, self._bytes / elapsed / 1e6, total / elapsed,
                   ', '.join(f'{t}={n}' for t, n in sorted(self._rows.items())))


def _read_chunks(p, kafka, settings: '_Settings', opts):
  """The Kafka read step: native chunks, or Beam's Java KafkaIO as one-record chunks."""
  if opts.kafka_reader == 'xlang':
    if opts.stop_at_end:
      raise ConfigurationError('--stop_at_end needs --kafka_reader=native (Beam\'s KafkaIO has no '
                               'read-to-end mode)')
    # One record per chunk: KafkaIO hands records one by one; CommitOffsets
    # still commits only loaded records (KafkaIO's own commit stays off).
    chunks = p | 'ReadFromKafka' >> kafka.build_xlang_chunk_reader(settings.consumer_config,
                                                                    settings.topics)
  else:
    chunks = p | 'ReadFromKafka' >> kafka.ReadKafkaChunks(
        settings.consumer_config, settings.topics, stop_at_end=opts.stop_at_end,
        max_chunk_records=opts.max_chunk_records)
  if opts.metrics_port:
    _ = chunks | 'CountConsumed' >> beam.Map(_count_consumed)
  return chunks


def build_pipeline(p: beam.Pipeline, options: PipelineOptions,
                   check_cluster: Optional[bool] = None) -> PipelineOutputs:
  """Adds the whole Kafka -> Stream Load graph to ``p``.

  Args:
    p: the pipeline.
    options: parsed options (``KafkaToDorisOptions`` flags).
    check_cluster: run the start-up checks (default: ``--validate_tables``).

  Returns:
    The named outputs: load results, dead letters, committed offsets.

  Raises:
    ConfigurationError: a flag or the table config is wrong.
    PreflightError: the FE is unreachable or a table does not exist.
  """
  settings = _Settings(options)
  opts = settings.opts
  if check_cluster if check_cluster is not None else opts.validate_tables:
    check_tables(settings.load_config, settings.static_tables())
  from transforms import kafka  # the reader module pulls in confluent-kafka
  try:
    chunks = _read_chunks(p, kafka, settings, opts)
  except kafka.KafkaSourceError as error:
    # Found while the graph is built: the flags are wrong, nothing has run.
    raise ConfigurationError(f'Kafka (--bootstrap_servers={opts.bootstrap_servers}, '
                             f'--topics={opts.topics}): {error}') from None
  parsed = chunks | 'ParseRecords' >> ParseRecords(
      settings.routing, cdc=opts.cdc_format, target=opts.target,
      sequence_columns=settings.table_config.sequence_columns(),
      max_record_bytes=opts.max_record_bytes)
  table_limits = settings.table_config.batch_limits()
  batches = (parsed.rows
             | 'KeyByTable' >> KeyByTable(table_limits)
             | 'BatchPerTable' >> BatchPerTable(settings.default_limits, table_limits))
  cfg = settings.load_config
  # With --password_file the workers read the password themselves: it is not
  # pickled into the pipeline.
  written = batches | 'WriteToStreamLoad' >> WriteToStreamLoad(
      cfg.fe_nodes, cfg.user, '' if opts.password_file and opts.password is None else cfg.password,
      password_file=opts.password_file if opts.password is None else None,
      target=cfg.target, flush_workers=opts.flush_workers,
      label_prefix=settings.label_prefix, compression=cfg.compression,
      max_retries=cfg.max_retries, table_options=settings.table_config.load_options(),
      two_phase_commit=cfg.two_phase_commit, connect_timeout_secs=cfg.connect_timeout_secs,
      load_timeout_secs=cfg.load_timeout_secs, pool_maxsize=cfg.pool_maxsize, verify=cfg.verify)
  # No Flatten on the way to CommitOffsets: the FnApiRunner would hold a
  # multi-input Flatten's output until the read ends, and no offset would be
  # committed while a streaming run runs (see transforms/KAFKA.md).
  dead_letters = (parsed.dead_letters, written.dead_letters)
  dead_letter_acks = dead_letters | 'WriteDeadLetters' >> WriteDeadLetters(opts.dead_letter_path)
  load_acks = written.load_results | 'AckLoadedRows' >> beam.FlatMap(acks_of_load_result)
  _ = written.load_results | 'Progress' >> beam.ParDo(_ProgressFn(opts.progress_interval_secs))
  commits = ((parsed.chunk_reads, load_acks) + dead_letter_acks
             | 'CommitOffsets' >> kafka.CommitOffsets(settings.consumer_config, opts.group_id))
  return PipelineOutputs(written.load_results, dead_letters, commits)


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
  """A pipeline on the requested runner; DirectRunner means the FnApiRunner here."""
  runner = options.view_as(StandardOptions).runner
  if runner in _DIRECT_RUNNERS:
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return beam.Pipeline(runner=FnApiRunner(), options=options)
  return beam.Pipeline(options=options)


def summarize(result) -> Dict[str, int]:
  """Counters of a finished run, for the summary line."""
  totals: Dict[str, int] = {}
  try:
    counters = result.metrics().query(MetricsFilter())['counters']
  except Exception:  # a runner without metrics support: no summary, not a failure
    return totals
  for counter in counters:
    name = counter.key.metric.name
    totals[name] = totals.get(name, 0) + (counter.committed or counter.attempted or 0)
  return totals


class RunSummary:
  """What a finished run did: Beam counters and wall time."""

  def __init__(self, totals: Dict[str, int], elapsed_secs: float):
    self.totals = totals
    self.elapsed_secs = elapsed_secs

  def tables(self) -> List[str]:
    return sorted(name[len('rows_loaded['):-1] for name in self.totals
                  if name.startswith('rows_loaded['))

  def table_value(self, metric: str, table: str) -> int:
    return self.totals.get(f'{metric}[{table}]', 0)

  def lines(self) -> List[str]:
    t = self.totals
    out = [f'summary: {t.get("rows_loaded", 0)} rows loaded in {t.get("batches_loaded", 0)} loads, '
           f'{t.get("rows_filtered", 0)} filtered, {t.get("dead_letters_written", 0)} dead letters, '
           f'{t.get("bytes_loaded", 0) / 1e6:.1f} MB in {self.elapsed_secs:.1f} s']
    for table in self.tables():
      out.append(f'  {table}: {self.table_value("rows_loaded", table)} rows in '
                 f'{self.table_value("loads", table)} loads')
    return out


def root_cause_message(error: BaseException) -> str:
  """The innermost cause of a runner's wrapped exception, as one line.

  Beam wraps a DoFn's exception (with its traceback as text) in its own; the
  user needs the original message, not the runner's stack.
  """
  while True:
    inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if inner is None:
      break
    error = inner
  text = str(error).strip()
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  for line in reversed(lines):
    if 'Error' in line.split(':', 1)[0] or 'Exception' in line.split(':', 1)[0]:
      return line.split(' [while running', 1)[0]
  return (lines[-1] if lines else type(error).__name__).split(' [while running', 1)[0]


def run_pipeline(argv: Sequence[str]) -> RunSummary:
  """Builds and runs the pipeline from flags; returns its summary.

  Raises:
    ConfigurationError, PreflightError: before anything runs.
  """
  options = PipelineOptions(list(argv))
  opts = options.view_as(KafkaToDorisOptions)
  p = make_pipeline(options)
  build_pipeline(p, options)
  if opts.metrics_port:
    prom.start_metrics_server(opts.metrics_port)
  started = time.monotonic()
  result = p.run()
  result.wait_until_finish()
  return RunSummary(summarize(result), time.monotonic() - started)


def help_text() -> str:
  """``--help``: every flag of the pipeline with its help and default."""
  parser = argparse.ArgumentParser(
      prog='python -m pipelines.kafka_to_doris',
      description='Load Kafka topics into Apache Doris / StarRocks tables with Stream Load.',
      epilog='Any Apache Beam pipeline option is accepted as well (--runner, --streaming, '
      '--setup_file, FlinkRunner and DataflowRunner options, ...); --runner defaults to the '
      'DirectRunner, which runs here on the FnApiRunner. Per-table settings: --table_config '
      '(see README). The password can come from --password_file or the STREAM_LOAD_PASSWORD '
      'environment variable instead of --password.')
  KafkaToDorisOptions._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser.format_help()


def run(argv: Optional[Sequence[str]] = None) -> int:
  """The command line: parses ``argv``, runs, prints a summary; returns an exit code."""
  argv = list(argv) if argv is not None else sys.argv[1:]
  if '--help' in argv or '-h' in argv:
    print(help_text())
    return 0
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                      force=True)
  try:
    summary = run_pipeline(argv)
  except (ConfigurationError, PreflightError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print('interrupted: offsets are committed only for loaded rows; a restart resumes there',
          file=sys.stderr)
    return 130
  except Exception as error:  # pylint: disable=broad-except
    _LOGGER.debug('pipeline failed', exc_info=True)
    print(f'error: the pipeline failed: {root_cause_message(error)}', file=sys.stderr)
    return 1
  for line in summary.lines():
    print(line)
  return 0


if __name__ == '__main__':
  sys.exit(run())
