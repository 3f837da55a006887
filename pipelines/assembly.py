"""The one assembly of the loader's graph, for every front end.

::

  ReadFromKafka (chunks) -> ParseRecords -> [SkipLoadedRows] -> KeyByTable -> BatchPerTable
      -> WriteToStreamLoad -> AckLoadedRows -> CommitOffsets
  dead letters (parse, load) -> WriteDeadLetters -> CommitOffsets
  chunk reads --------------------------------------> CommitOffsets

``build_pipeline`` adds the whole graph (the command line, the Flink and
Dataflow templates); ``load_chunks`` adds everything after the read (Beam
YAML's ``WriteToStreamLoad`` feeds it records from its own read step).
``start_up`` runs before the graph: the start-up checks and, for
exactly-once, the recovery of the load journal.

No ``Flatten`` on the way to ``CommitOffsets``: the FnApiRunner holds a
multi-input Flatten's output until every input ends, so no offset would be
committed while a streaming run runs (see transforms/KAFKA.md).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.config import ConfigurationError, PipelineConfig
from pipelines.preflight import check_tables
from transforms import metrics
from transforms.batching import BatchPerTable, KeyByTable
from transforms.dead_letters import WriteDeadLetters
from transforms.delivery import (JournalUnavailableError, LoadedRanges, SkipLoadedRows,
                                 ensure_journal_topic, recover)
from transforms.records import ParseRecords, ValueFormat
from transforms.runtime import runs_in_process
from transforms.stream_load import WriteToStreamLoad
from transforms.types import LoadResult, acks_of_load_result

__all__ = ['build_pipeline', 'load_chunks', 'load_rows', 'start_up', 'PipelineOutputs',
           'LoadedTables', 'TABLE_COUNTERS']

_LOGGER = logging.getLogger(__name__)

# Per-table Beam counters: namespace -> what it counts; the table is the metric's name.
TABLE_ROWS_LOADED = f'{metrics.NAMESPACE}.table_rows_loaded'
TABLE_LOADS = f'{metrics.NAMESPACE}.table_loads'
TABLE_BYTES_LOADED = f'{metrics.NAMESPACE}.table_bytes_loaded'
TABLE_COUNTERS = (TABLE_ROWS_LOADED, TABLE_LOADS, TABLE_BYTES_LOADED)


class PipelineOutputs:
  """The graph's named outputs (tests assert on them).

  Attributes:
    load_results: ``LoadResult`` per load.
    dead_letters: the parser's and the sink's dead letters (a tuple).
    commits: ``(topic, partition, offset)`` per offset commit.
  """

  def __init__(self, load_results, dead_letters, commits):
    self.load_results = load_results
    self.dead_letters = dead_letters
    self.commits = commits


def start_up(config: PipelineConfig, check_cluster: Optional[bool] = None) -> LoadedRanges:
  """What runs before the graph: the start-up checks, then the journal's recovery.

  Args:
    config: the validated settings.
    check_cluster: check that the FE answers and the tables exist (default:
      ``--validate_tables``).

  Returns:
    The rows that batches of an earlier run had loaded but not committed
    (empty for at-least-once).

  Raises:
    PreflightError: the FE is unreachable or a table does not exist.
    StreamLoadError, JournalUnavailableError: recovery could not ask the
      cluster or Kafka.
  """
  try:
    load = config.load.resolved()  # the password, once, for the checks and the recovery
  except ValueError as error:
    raise ConfigurationError(str(error)) from None
  if check_cluster if check_cluster is not None else config.validate_tables:
    check_tables(load, config.static_tables(), create_missing=config.create_tables)
  if config.journal is None:
    return LoadedRanges()
  try:
    ensure_journal_topic(config.journal)
    return recover(config.journal, load).loaded
  except JournalUnavailableError as error:
    raise ConfigurationError(
        f'Kafka (--bootstrap_servers={config.kafka.consumer_config.get("bootstrap.servers")}, '
        f'the load journal --journal_topic={config.journal.topic}): {error}') from None


class _ProgressFn(beam.DoFn):
  """Per-table counters, and a progress line every ``interval_secs``."""

  def __init__(self, interval_secs: float):
    self._interval = interval_secs

  def setup(self):
    self._started = time.monotonic()
    self._last_log = self._started
    self._rows: Dict[str, int] = {}
    self._bytes = 0
    self._batches = 0

  def process(self, result: LoadResult):
    table = result.table
    self._rows[table] = self._rows.get(table, 0) + result.loaded_rows
    self._bytes += result.bytes
    self._batches += 1
    Metrics.counter(TABLE_ROWS_LOADED, table).inc(result.loaded_rows)
    Metrics.counter(TABLE_LOADS, table).inc()
    Metrics.counter(TABLE_BYTES_LOADED, table).inc(result.bytes)
    now = time.monotonic()
    if self._interval and now - self._last_log >= self._interval:
      self._last_log = now
      elapsed = max(now - self._started, 1e-6)
      total = sum(self._rows.values())
      _LOGGER.info('progress: %d rows loaded in %d batches, %.1f MB/s, %.0f rows/s (%s)', total,
                   self._batches, self._bytes / elapsed / 1e6, total / elapsed,
                   ', '.join(f'{t}={n}' for t, n in sorted(self._rows.items())))


def _count_consumed(chunk) -> None:
  metrics.KAFKA_RECORDS_CONSUMED.labels(chunk.topic).inc(len(chunk.records))


def _read_chunks(p: beam.Pipeline, config: PipelineConfig, stop_token: Optional[str]):
  """The Kafka read: native chunks, or Beam's Java KafkaIO as one-record chunks.

  The native read of a streaming job also picks up new partitions (and, with
  ``--topic_pattern``, new matching topics) every
  ``--topic_discovery_interval_secs``.
  """
  from transforms import kafka  # pylint: disable=import-outside-toplevel  (confluent-kafka)
  settings = config.kafka
  try:
    if settings.reader == 'xlang':
      reader = kafka.ReadKafkaChunksXlang(dict(settings.consumer_config), settings.topics,
                                          stop_at_end=settings.stop_at_end)
    else:
      reader = kafka.ReadKafkaChunks(dict(settings.consumer_config), settings.topics or None,
                                     stop_at_end=settings.stop_at_end,
                                     max_chunk_records=settings.max_chunk_records,
                                     stop_token=stop_token,
                                     topic_pattern=settings.topic_pattern,
                                     discovery_interval_secs=settings.discovery_interval_secs,
                                     excluded_topics=settings.excluded_topics)
    chunks = p | 'ReadFromKafka' >> reader
  except kafka.KafkaSourceError as error:
    # Found while the graph is built: the flags are wrong, nothing has run.
    topics = (f'--topic_pattern={settings.topic_pattern}' if settings.topic_pattern
              else f'--topics={",".join(settings.topics)}')
    raise ConfigurationError(f'Kafka (--bootstrap_servers='
                             f'{settings.consumer_config.get("bootstrap.servers")}, {topics}): '
                             f'{error}') from None
  if config.metrics_port:
    _ = chunks | 'CountConsumed' >> beam.Map(_count_consumed)
  return chunks


class LoadedTables(NamedTuple):
  """What ``load_rows`` added: the sink's outputs and the acknowledgements for the committer."""
  load_results: Any
  dead_letters: Tuple
  dead_letter_acks: Tuple
  replayed_acks: Tuple


def load_rows(rows, config: PipelineConfig, *, parse_dead_letters=None,
              loaded: Optional[LoadedRanges] = None,
              stop_token: Optional[str] = None) -> LoadedTables:
  """``(table, [Row])`` chunks -> skip, key, batch, load; dead letters written.

  Args:
    rows: ``(table, [Row])`` elements (``ParseRecords`` output, or rows from
      elsewhere).
    config: the validated settings.
    parse_dead_letters: the dead letters of whatever made the rows.
    loaded: rows an earlier run already loaded (from ``start_up``).
    stop_token: the run token of the read (local runner: drain and end).
  """
  replayed_acks: Tuple = ()
  if loaded:
    skipped = rows | 'SkipLoadedRows' >> SkipLoadedRows(loaded)
    rows, replayed_acks = skipped.rows, (skipped.acks,)
  table_limits = config.table_config.batch_limits()
  # On the local runner everything here fuses into one stage: rows cross no pickle.
  fused = stop_token is not None and runs_in_process(rows.pipeline)
  batches = (rows
             | 'KeyByTable' >> KeyByTable(table_limits, slim_rows=not fused)
             | 'BatchPerTable' >> BatchPerTable(config.default_limits, table_limits,
                                                max_pending_bytes=config.max_pending_bytes,
                                                stop_token=stop_token))
  written = batches | 'WriteToStreamLoad' >> WriteToStreamLoad(
      config.load, flush_workers=config.flush_workers, label_prefix=config.label_prefix,
      table_options=config.table_config.load_options(), table_sharding=config.table_sharding(),
      journal=config.journal, stop_token=stop_token, keep_retrying=not config.kafka.stop_at_end)
  dead_letters = tuple(pc for pc in (parse_dead_letters, written.dead_letters) if pc is not None)
  dead_letter_acks = dead_letters | 'WriteDeadLetters' >> WriteDeadLetters(config.dead_letter_path)
  _ = written.load_results | 'Progress' >> beam.ParDo(_ProgressFn(config.progress_interval_secs))
  return LoadedTables(written.load_results, dead_letters, tuple(dead_letter_acks), replayed_acks)


def load_chunks(chunks, config: PipelineConfig, *, loaded: Optional[LoadedRanges] = None,
                stop_token: Optional[str] = None) -> PipelineOutputs:
  """Everything after the read: parse, batch, load, dead letters, offset commits.

  Args:
    chunks: a PCollection of ``KafkaChunk``.
    config: the validated settings.
    loaded: rows an earlier run already loaded (from ``start_up``).
    stop_token: the run token of the read (local runner: drain and end).
  """
  from transforms import kafka  # pylint: disable=import-outside-toplevel  (confluent-kafka)
  parsed = chunks | 'ParseRecords' >> ParseRecords(
      config.routing, cdc=config.cdc_format, target=config.load.target,
      sequence_columns=config.table_config.sequence_columns(),
      max_record_bytes=config.max_record_bytes, schema_evolution=config.schema,
      value_format=ValueFormat(config.value_format, config.schema_registry),
      keep_retrying=not config.kafka.stop_at_end)
  tables = load_rows(parsed.rows, config, parse_dead_letters=parsed.dead_letters, loaded=loaded,
                     stop_token=stop_token)
  load_acks = tables.load_results | 'AckLoadedRows' >> beam.FlatMap(acks_of_load_result)
  commits = ((parsed.chunk_reads, load_acks) + tables.replayed_acks + tables.dead_letter_acks
             | 'CommitOffsets' >> kafka.CommitOffsets(dict(config.kafka.consumer_config)))
  return PipelineOutputs(tables.load_results, tables.dead_letters, commits)


def build_pipeline(p: beam.Pipeline, config: PipelineConfig, *,
                   loaded: Optional[LoadedRanges] = None,
                   stop_token: Optional[str] = None) -> PipelineOutputs:
  """Adds the whole Kafka -> Stream Load graph to ``p``.

  Args:
    p: the pipeline.
    config: the validated settings (``PipelineConfig.from_options``).
    loaded: rows an earlier run already loaded (``start_up``'s answer).
    stop_token: a run token for draining on the local runner
      (``transforms.kafka.stop``).

  Returns:
    The named outputs: load results, dead letters, committed offsets.

  Raises:
    ConfigurationError: the Kafka flags are wrong (found while building).
  """
  chunks = _read_chunks(p, config, stop_token)
  return load_chunks(chunks, config, loaded=loaded, stop_token=stop_token)
