"""The one assembly of the loader's graph, for every front end.

::

  ReadFromKafka (chunks) -> ParseRecords -> EvolveSchema -> [SkipLoadedRows] -> KeyByTable
      -> BatchPerTable -> WriteToStreamLoad -> AckLoadedRows -> CommitOffsets
  dead letters (parse, schema, load) -> WriteDeadLetters -> CommitOffsets
  chunk reads --------------------------------------> CommitOffsets

``build_pipeline`` adds the whole graph (the command line, the Flink and
Dataflow templates); ``load_chunks`` adds everything after the read (Beam
YAML's ``WriteToStreamLoad`` feeds it records from its own read step).
``start_up`` runs before the graph: the start-up checks and, for
exactly-once, the recovery of the load journal; ``run_context`` makes the
run's ``RunContext`` (drain requests, operations), which every transform of
the graph is given.

No ``Flatten`` on the way to ``CommitOffsets``: the FnApiRunner holds a
multi-input Flatten's output until every input ends, so no offset would be
committed while a streaming run runs (see transforms/KAFKA.md).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.config import ConfigurationError, KafkaSettings, PipelineConfig
from pipelines.preflight import check_tables
from pipelines.recovery import recover
from transforms import metrics
from transforms.errors import LoaderError
from transforms.batching import BatchPerTable, KeyByTable
from transforms.dead_letters import WriteDeadLetters
from transforms.delivery import (JournalConfig, JournalUnavailableError,
                                 LoadedRanges, SkipLoadedRows, ensure_journal_topic)
from transforms.records import ParseRecords, ValueFormat
from transforms.runtime import RunContext
from transforms.schema import EvolveSchema
from transforms.stream_load import FeProbe, StreamLoadConfig, WriteToStreamLoad
from transforms.types import LoadResult, acks_of_load_result

__all__ = ['build_pipeline', 'load_chunks', 'load_rows', 'start_up', 'run_context',
           'PipelineOutputs', 'LoadedTables', 'TABLE_COUNTERS']

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
    commits: ``(topic, partition, offset)`` per offset commit (a tuple, one per input).
    reads: the reads a drain waits for (``(topic, partition)``s known when the graph was
      built, and the discovery loops), or None when the read is not this graph's.
  """

  def __init__(self, load_results, dead_letters, commits, reads=None):
    self.load_results = load_results
    self.dead_letters = dead_letters
    self.commits = commits
    self.reads = reads


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
    check_tables(load, config.static_tables(), create_missing=bool(config.schema and config.schema.create_tables))
  if config.schema.ddl is not None:
    _check_schema_change_topic(config)
  try:
    # The journal's topic also carries drain requests (every guarantee).
    ensure_journal_topic(config.control_topic)
    if config.journal is None:
      return LoadedRanges()
    return recover(config.journal, load).loaded
  except JournalUnavailableError as error:
    raise ConfigurationError(
        f'Kafka (--bootstrap_servers={config.kafka.consumer_config.get("bootstrap.servers")}, '
        f'the load journal --journal_topic={config.control_topic.topic}): {error}') from None


def _check_schema_change_topic(config: PipelineConfig) -> None:
  """``--ddl_topic`` names a topic Kafka has (a typo would otherwise follow nothing)."""
  from transforms.schema.ddl_topic import SchemaChangeReader  # pylint: disable=import-outside-toplevel
  reader = SchemaChangeReader(config.schema.ddl)
  try:
    reader.open()
  except LoaderError as error:
    raise ConfigurationError(str(error)) from None
  finally:
    reader.close()


def run_context(config: PipelineConfig, run_id: Optional[str] = None) -> RunContext:
  """The run's ``RunContext``: drain requests through Kafka, the operations settings."""
  from transforms.kafka import KafkaStopChannel  # pylint: disable=import-outside-toplevel
  from transforms.kafka.config import KafkaProbe  # pylint: disable=import-outside-toplevel
  kafka_config = dict(config.kafka.consumer_config)
  return RunContext(
      run_id=run_id,
      stop_channel=KafkaStopChannel(kafka_config, config.control_topic.topic).starting_now(),
      stall_timeout_secs=config.stall_timeout_secs or None, metrics_port=config.metrics_port,
      probes={'Kafka': KafkaProbe(kafka_config), 'FE': FeProbe(config.load)},
      progress_interval_secs=config.progress_interval_secs)


class _RecoverLoaded:
  """A worker's recovery of the load journal (picklable): the rows already loaded."""

  def __init__(self, journal: JournalConfig, load: StreamLoadConfig):
    self._journal = journal
    self._load = load

  def __call__(self) -> LoadedRanges:
    return recover(self._journal, self._load.resolved()).loaded


def _count_table_loads(result: LoadResult) -> None:
  """Per-table Beam counters (the run's summary reads them)."""
  Metrics.counter(TABLE_ROWS_LOADED, result.table).inc(result.loaded_rows)
  Metrics.counter(TABLE_LOADS, result.table).inc()
  Metrics.counter(TABLE_BYTES_LOADED, result.table).inc(result.bytes)


def _count_consumed(chunk) -> None:
  metrics.KAFKA_RECORDS_CONSUMED.labels(chunk.topic).inc(len(chunk.records))


def kafka_reader(settings: KafkaSettings, **options):
  """The ``ReadKafkaChunks`` of the Kafka flags (``options``: the run's own, such as
  ``context``, ``durable``, ``discovery_shards``)."""
  from transforms.kafka import ReadKafkaChunks  # pylint: disable=import-outside-toplevel
  return ReadKafkaChunks(dict(settings.consumer_config), settings.topics or None,
                         stop_at_end=settings.stop_at_end,
                         max_chunk_records=settings.max_chunk_records,
                         topic_pattern=settings.topic_pattern,
                         discovery_interval_secs=settings.discovery_interval_secs,
                         excluded_topics=settings.excluded_topics,
                         skip_topic=settings.skip_topic, **options)


def _read_chunks(p: beam.Pipeline, config: PipelineConfig, context: RunContext,
                 discovery_shards: int):
  """The Kafka read: chunks, checkpointed at durable offsets (the rows held in batches).

  The read of a streaming job also picks up new partitions (and, with
  ``--topic_pattern``, new matching topics) every
  ``--topic_discovery_interval_secs``.
  """
  from transforms import kafka  # pylint: disable=import-outside-toplevel  (confluent-kafka)
  settings = config.kafka
  try:
    reader = kafka_reader(settings, context=context, discovery_shards=discovery_shards,
                          durable=True)
    chunks = p | 'ReadFromKafka' >> reader
    reads = reader.reads()
  except kafka.KafkaSourceError as error:
    # Found while the graph is built: the flags are wrong, nothing has run.
    topics = (f'--topic_pattern={settings.topic_pattern}' if settings.topic_pattern
              else f'--topics={",".join(settings.topics)}')
    raise ConfigurationError(f'Kafka (--bootstrap_servers='
                             f'{settings.consumer_config.get("bootstrap.servers")}, {topics}): '
                             f'{error}') from None
  if config.metrics_port:
    _ = chunks | 'CountConsumed' >> beam.Map(_count_consumed)
  return chunks, reads


class LoadedTables(NamedTuple):
  """What ``load_rows`` added: the sink's outputs and the acknowledgements for the committer."""
  load_results: Any
  dead_letters: Tuple
  dead_letter_acks: Tuple
  replayed_acks: Tuple


def load_rows(rows, config: PipelineConfig, *, context: Optional[RunContext] = None,
              parse_dead_letters=None, own_read: bool = False) -> LoadedTables:
  """``(table, [Row])`` chunks -> skip, key, batch, load; dead letters written.

  Args:
    rows: ``(table, [Row])`` elements (``ParseRecords`` output, or rows from
      elsewhere).
    config: the validated settings.
    context: the run (the read's, when ``own_read``).
    parse_dead_letters: the dead letters of whatever made the rows (one PCollection or a
      tuple of them: each is written on its own, never flattened).
    own_read: the rows come from this run's ``ReadKafkaChunks(durable=True)``:
      batches and loads are held across bundles (a crash re-reads them), and
      rows a crashed run had loaded are skipped (the journal, exactly-once).
      Otherwise every bundle's rows load before it ends.
  """
  context = context or RunContext()
  replayed_acks: Tuple = ()
  if own_read and config.journal is not None:
    skipped = rows | 'SkipLoadedRows' >> SkipLoadedRows(
        context=context, recover=_RecoverLoaded(config.journal, config.load))
    rows, replayed_acks = skipped.rows, (skipped.acks,)
  table_limits = config.table_config.batch_limits()
  batches = (rows
             | 'KeyByTable' >> KeyByTable(table_limits, slim_rows=True)
             | 'BatchPerTable' >> BatchPerTable(config.default_limits, table_limits,
                                                max_pending_bytes=config.max_pending_bytes,
                                                context=context, hold_across_bundles=own_read))
  written = batches | 'WriteToStreamLoad' >> WriteToStreamLoad(
      config.sink, context=context, hold_across_bundles=own_read)
  if parse_dead_letters is None:
    parse_dead_letters = ()
  elif not isinstance(parse_dead_letters, tuple):
    parse_dead_letters = (parse_dead_letters,)
  dead_letters = parse_dead_letters + (written.dead_letters,)
  dead_letter_acks = dead_letters | 'WriteDeadLetters' >> WriteDeadLetters(
      config.dead_letter_path, context=context, budget=config.dead_letter_budget)
  _ = written.load_results | 'CountTableLoads' >> beam.Map(_count_table_loads)
  return LoadedTables(written.load_results, dead_letters, tuple(dead_letter_acks), replayed_acks)


def load_chunks(chunks, config: PipelineConfig, *, context: Optional[RunContext] = None,
                own_read: bool = False) -> PipelineOutputs:
  """Everything after the read: parse, batch, load, dead letters, offset commits.

  Args:
    chunks: a PCollection of ``KafkaChunk``.
    config: the validated settings.
    context: the run (the read's, when ``own_read``).
    own_read: the chunks come from this run's ``ReadKafkaChunks(durable=True)``
      (see ``load_rows``).
  """
  from transforms import kafka  # pylint: disable=import-outside-toplevel  (confluent-kafka)
  context = context or RunContext()
  parsed = chunks | 'ParseRecords' >> ParseRecords(
      config.routing, cdc=config.cdc_format, target=config.load.target,
      sequence_columns=config.table_config.sequence_columns(),
      max_record_bytes=config.max_record_bytes,
      value_format=ValueFormat(config.value_format, config.schema_registry),
      keep_retrying=not config.kafka.stop_at_end,
      keep_positions=config.schema.ddl is not None)
  fitted = parsed.rows | 'EvolveSchema' >> EvolveSchema(config.schema)
  tables = load_rows(fitted.rows, config, context=context,
                     parse_dead_letters=(parsed.dead_letters, fitted.dead_letters),
                     own_read=own_read)
  load_acks = tables.load_results | 'AckLoadedRows' >> beam.FlatMap(acks_of_load_result)
  commits = ((parsed.chunk_reads, load_acks, fitted.acks) + tables.replayed_acks
             + tables.dead_letter_acks
             | 'CommitOffsets' >> kafka.CommitOffsets(dict(config.kafka.consumer_config),
                                                      context=context))
  return PipelineOutputs(tables.load_results, tables.dead_letters, commits)


def build_pipeline(p: beam.Pipeline, config: PipelineConfig, *,
                   context: Optional[RunContext] = None,
                   discovery_shards: int = 1) -> PipelineOutputs:
  """Adds the whole Kafka -> Stream Load graph to ``p``.

  Everything after the read is fused with it in the process that reads, on
  every runner: rows are never pickled, batches and loads live across
  bundles, offsets are committed from the same process (``transforms.runtime``).

  Args:
    p: the pipeline.
    config: the validated settings (``PipelineConfig.from_options``).
    context: the run (``run_context(config)``; its ``Runtime`` in each worker
      drains the job on a stop request).
    discovery_shards: discovery loops of a streaming read (about the
      runner's parallelism, so partitions found while running spread).

  Returns:
    The named outputs: load results, dead letters, committed offsets.

  Raises:
    ConfigurationError: the Kafka flags are wrong (found while building).
  """
  context = context or run_context(config)
  chunks, reads = _read_chunks(p, config, context, discovery_shards)
  outputs = load_chunks(chunks, config, context=context, own_read=True)
  outputs.reads = reads
  return outputs
