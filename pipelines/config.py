"""``PipelineConfig``: every setting of the loader, validated once, passed as one object.

Built from the flags (``PipelineConfig.from_options``) by every front end --
the command line, the templates, Beam YAML -- so defaults and checks live in
one place (``options.FLAG_SPECS`` and the config classes of ``transforms``).
A wrong value raises ``ConfigurationError`` naming the flag, before anything
runs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import AT_LEAST_ONCE, EXACTLY_ONCE, KafkaToDorisOptions
from pipelines.table_config import TableConfig, TableConfigError, load_table_config
from transforms.batching import BatchLimits
from transforms.dead_letters import DeadLetterBudget
from transforms.delivery import DEFAULT_JOURNAL_TOPIC, JournalConfig, JournalWriteAhead
from transforms.errors import ConfigFault
from transforms.records import Routing, parse_topic_table_map
from transforms.records.routing import (DEFAULT_TABLE_TEMPLATE, SourceNaming,
                                        parse_merge_tables)
from transforms.records.formats import ValueFormat, require_registry_support
from transforms.schema import SchemaEvolutionConfig
from transforms.schema.config import SchemaChangeTopic
from transforms.stream_load import SinkSettings, StreamLoadConfig
from transforms.stream_load.labels import sanitize_label_part

__all__ = ['PipelineConfig', 'KafkaSettings', 'ConfigurationError', 'consumer_config_of',
           'options_of']

_LABEL_PREFIX_CHARS = 48


class ConfigurationError(ConfigFault):
  """A flag or the table config is wrong; raised before anything runs."""


def _split_list(value: Optional[str]) -> List[str]:
  return [item.strip() for item in (value or '').split(',') if item.strip()]


def consumer_config_of(opts: KafkaToDorisOptions) -> Dict[str, Any]:
  """The librdkafka settings every Kafka client of the job uses (auto commit always off)."""
  config: Dict[str, Any] = {
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


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
  """What to read and how.

  Attributes:
    consumer_config: librdkafka settings (bootstrap servers, group, security).
    topics: the topics.
    group_id: the consumer group (offsets, start positions, the journal's job).
    stop_at_end: read to the end offsets seen at start, then finish.
    max_chunk_records: most records per chunk.
    topic_pattern: a regular expression every read topic's whole name
      matches (instead of ``topics``), or None.
    discovery_interval_secs: how often a streaming read looks for new
      matching topics and new partitions.
    excluded_topics: topics a pattern never matches: the load journal's
      (``--journal_topic`` and the default one); internal topics (``__*``)
      never match anyway.
    skip_topic: a predicate on a topic's name: True, a pattern never matches it (a Debezium
      topic whose table ``--exclude_tables`` leaves out).
  """
  consumer_config: Mapping[str, Any]
  topics: Tuple[str, ...]
  group_id: str
  stop_at_end: bool
  max_chunk_records: int
  topic_pattern: Optional[str] = None
  discovery_interval_secs: float = 30.0
  excluded_topics: Tuple[str, ...] = (DEFAULT_JOURNAL_TOPIC,)
  skip_topic: Optional[Callable[[str], bool]] = None

  @classmethod
  def from_options(cls, options: PipelineOptions, require_topics: bool = True) -> 'KafkaSettings':
    """Validates the Kafka flags.

    Raises:
      ConfigurationError: naming the flag and the bad value.
    """
    opts = options.view_as(KafkaToDorisOptions)
    missing = [f'--{name}' for name in ('bootstrap_servers', 'group_id')
               if not getattr(opts, name)]
    if require_topics and not opts.topics and not opts.topic_pattern:
      missing.append('--topics (or --topic_pattern)')
    if missing:
      raise ConfigurationError('missing required flag(s): ' + ', '.join(missing))
    if opts.topics and opts.topic_pattern:
      raise ConfigurationError('give --topics or --topic_pattern, not both')
    pattern = opts.topic_pattern or None
    if pattern is not None:
      try:
        re.compile(pattern)
      except re.error as error:
        raise ConfigurationError(f'--topic_pattern: {pattern!r} is not a regular expression: '
                                 f'{error}') from None
    excluded = tuple(sorted({DEFAULT_JOURNAL_TOPIC, opts.journal_topic or DEFAULT_JOURNAL_TOPIC}
                            | ({opts.ddl_topic} if opts.ddl_topic else set())))
    if opts.max_chunk_records < 1:
      raise ConfigurationError(f'--max_chunk_records: must be >= 1, got {opts.max_chunk_records}')
    if not opts.topic_discovery_interval_secs > 0:
      raise ConfigurationError('--topic_discovery_interval_secs: must be > 0, got '
                               f'{opts.topic_discovery_interval_secs}')
    return cls(consumer_config_of(opts), tuple(_split_list(opts.topics)), opts.group_id,
               bool(opts.stop_at_end), opts.max_chunk_records,
               topic_pattern=pattern,
               discovery_interval_secs=float(opts.topic_discovery_interval_secs),
               excluded_topics=excluded)


def _missing_flags(opts: KafkaToDorisOptions, require_topics: bool) -> List[str]:
  """Every required flag that is missing, so that one start names them all."""
  missing = [f'--{name}' for name in ('bootstrap_servers', 'group_id') if not getattr(opts, name)]
  if require_topics and not opts.topics and not opts.topic_pattern:
    missing.append('--topics (or --topic_pattern)')
  if not opts.fe_nodes:
    missing.append('--fe_nodes')
  if (not any(getattr(opts, name) for name in ('table', 'topic_table_map', 'table_field'))
      and opts.cdc_format == 'none'):
    missing.append('--table (or --topic_table_map, --table_field, or a --cdc_format whose '
                   'envelope names the table)')
  return missing


def _routing_of(opts: KafkaToDorisOptions) -> Routing:
  chosen = [name for name in ('table', 'topic_table_map', 'table_field') if getattr(opts, name)]
  if len(chosen) > 1:
    raise ConfigurationError('give only one of --table, --topic_table_map, --table_field (got '
                             + ', '.join(f'--{c}' for c in chosen) + ')')
  if not chosen and opts.cdc_format == 'none':
    raise ConfigurationError('one of --table, --topic_table_map or --table_field is required '
                             '(or a --cdc_format whose envelope names the table)')
  naming = None
  if (opts.table_template != DEFAULT_TABLE_TEMPLATE or opts.include_tables
      or opts.exclude_tables or opts.merge_tables):
    naming = SourceNaming(table_template=opts.table_template,
                          include_tables=opts.include_tables or None,
                          exclude_tables=opts.exclude_tables or None,
                          merge_tables=parse_merge_tables(opts.merge_tables))
  return Routing(table=opts.table or None,
                 topic_table_map=parse_topic_table_map(opts.topic_table_map)
                 if opts.topic_table_map else None,
                 table_field=opts.table_field or None,
                 default_database=opts.default_database or None, naming=naming)


def _table_sharding(table_config: TableConfig) -> Dict[str, Tuple[int, Tuple[str, ...]]]:
  return {table: (limits.shards, limits.key_columns)
          for table, limits in table_config.batch_limits().items()}


def _check_group_commit(load: StreamLoadConfig, table_config: TableConfig) -> None:
  """A table's group commit cannot be combined with 2PC (exactly-once: ``SinkSettings``)."""
  for table, options in table_config.load_options().items():
    if options.group_commit and options.group_commit != 'off_mode' and load.two_phase_commit:
      raise ConfigurationError(f'--table_config: {table}: group_commit cannot be combined with '
                               '--two_phase_commit')


SCHEMA_REGISTRY_AUTH_ENV_VAR = 'SCHEMA_REGISTRY_BASIC_AUTH'
_REGISTRY_TLS_FLAGS = (('schema_registry_ca_location', 'ssl.ca.location'),
                       ('schema_registry_certificate_location', 'ssl.certificate.location'),
                       ('schema_registry_key_location', 'ssl.key.location'))


def _schema_registry_of(opts: KafkaToDorisOptions) -> Optional[Dict[str, str]]:
  """confluent-kafka ``SchemaRegistryClient`` settings from the registry flags, or None."""
  if opts.format == 'json':
    if opts.schema_registry_url:
      raise ConfigurationError('--schema_registry_url is set but --format=json reads no '
                               'registry; give --format=avro|protobuf|json_schema')
    return None
  if opts.format not in ('avro', 'protobuf', 'json_schema'):
    raise ConfigurationError(f'--format: expected json|avro|protobuf|json_schema, '
                             f'got {opts.format!r}')
  try:
    require_registry_support(opts.format)
  except ValueError as error:
    raise ConfigurationError(str(error)) from None
  urls = _split_list(opts.schema_registry_url)
  if not urls:
    raise ConfigurationError(f'--format={opts.format} needs --schema_registry_url')
  for url in urls:
    if not url.startswith(('http://', 'https://', 'mock://')):
      raise ConfigurationError(f'--schema_registry_url: {url!r} is not an http(s) URL')
  conf = {'url': ','.join(urls)}
  auth = opts.schema_registry_basic_auth or os.environ.get(SCHEMA_REGISTRY_AUTH_ENV_VAR, '')
  if auth:
    if ':' not in auth:
      raise ConfigurationError('--schema_registry_basic_auth: expected USER:PASSWORD '
                               '(value not shown)')
    conf['basic.auth.user.info'] = auth
  for flag, key in _REGISTRY_TLS_FLAGS:
    path = getattr(opts, flag)
    if path:
      if not os.path.isfile(path):
        raise ConfigurationError(f'--{flag}: no such file: {path}')
      conf[key] = path
  if bool(conf.get('ssl.certificate.location')) != bool(conf.get('ssl.key.location')):
    raise ConfigurationError('--schema_registry_certificate_location and '
                             '--schema_registry_key_location go together')
  return conf


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Every setting of the loader (see ``python -m pipelines.kafka_to_doris --help``)."""
  kafka: KafkaSettings
  routing: Routing
  cdc_format: str
  max_record_bytes: int
  default_limits: BatchLimits
  table_config: TableConfig
  load: StreamLoadConfig
  journal: Optional[JournalConfig]
  sink: SinkSettings
  control_topic: JournalConfig
  max_pending_bytes: int
  dead_letter_path: str
  dead_letter_budget: DeadLetterBudget
  metrics_port: int
  stall_timeout_secs: float
  progress_interval_secs: float
  validate_tables: bool
  value_format: str = 'json'
  schema_registry: Optional[Mapping[str, str]] = None
  schema: Optional[SchemaEvolutionConfig] = None

  @property
  def flush_workers(self) -> int:
    return self.sink.flush_workers

  @property
  def label_prefix(self) -> str:
    return self.sink.label_prefix

  @property
  def exactly_once(self) -> bool:
    return self.journal is not None

  def static_tables(self) -> List[str]:
    """The tables known before any record is read (for the start-up checks)."""
    tables = set(self.table_config.tables)
    if self.routing.table:
      tables.add(self.routing.table)
    if self.routing.topic_table_map:
      tables.update(self.routing.topic_table_map.values())
    return sorted(tables)

  def table_sharding(self) -> Dict[str, Tuple[int, Tuple[str, ...]]]:
    """table -> (shards, key_columns), as ``KeyByTable`` spreads it."""
    return _table_sharding(self.table_config)

  @classmethod
  def from_options(cls, options: PipelineOptions, require_topics: bool = True) -> 'PipelineConfig':
    """Validates the flags.

    Args:
      options: the parsed flags.
      require_topics: False where another step reads Kafka (Beam YAML).

    Raises:
      ConfigurationError: naming the flag and the bad value.
    """
    opts = options.view_as(KafkaToDorisOptions)
    missing = _missing_flags(opts, require_topics)
    if missing:
      raise ConfigurationError('missing required flag(s): ' + ', '.join(missing))
    kafka = KafkaSettings.from_options(options, require_topics)
    for name in ('max_record_bytes',):
      if getattr(opts, name) < 1:
        raise ConfigurationError(f'--{name}: must be >= 1, got {getattr(opts, name)}')
    if opts.delivery_guarantee not in (EXACTLY_ONCE, AT_LEAST_ONCE):
      raise ConfigurationError(f'--delivery_guarantee: must be {EXACTLY_ONCE} or '
                               f'{AT_LEAST_ONCE}, got {opts.delivery_guarantee!r}')
    try:
      routing = _routing_of(opts)
      if routing.topic_table_map and kafka.topics:
        unmapped = [t for t in kafka.topics if t not in routing.topic_table_map]
        if unmapped:
          raise ConfigurationError(f'--topic_table_map: topic(s) {unmapped} are read (--topics) '
                                   'but not mapped to a table')
      if (kafka.topic_pattern and routing.naming is not None and routing.naming.exclude_tables
          and opts.cdc_format in ('debezium', 'auto')):
        kafka = dataclasses.replace(kafka, skip_topic=routing.naming.excludes_topic)
      default_limits = BatchLimits(rows=opts.batch_rows, bytes=opts.batch_bytes,
                                   interval_secs=opts.batch_interval_secs)
      table_config = load_table_config(opts.table_config, default_limits)
      load = StreamLoadConfig(
          fe_nodes=tuple(_split_list(opts.fe_nodes)), user=opts.user, password=opts.password,
          password_file=opts.password_file or None, target=opts.target,
          compression=opts.compression, max_retries=opts.max_retries,
          two_phase_commit=opts.two_phase_commit, load_timeout_secs=opts.load_timeout_secs,
          connect_timeout_secs=opts.connect_timeout_secs, pool_maxsize=opts.pool_maxsize,
          verify=opts.ca_bundle or True, load_format=opts.load_format,
          group_commit=opts.group_commit)
      _check_group_commit(load, table_config)
      schema = _schema_evolution_of(opts, load, table_config, kafka, routing)
      control_topic = JournalConfig(dict(kafka.consumer_config), opts.journal_topic)
      journal = control_topic if opts.delivery_guarantee == EXACTLY_ONCE else None
      dead_letter_budget = DeadLetterBudget(max_ratio=opts.max_dead_letter_ratio)
      label_prefix = (opts.label_prefix
                      or sanitize_label_part(opts.group_id)[:_LABEL_PREFIX_CHARS])
      sink = SinkSettings(
          load, flush_workers=opts.flush_workers, label_prefix=label_prefix,
          table_options=table_config.load_options(),
          write_ahead=(JournalWriteAhead(journal, _table_sharding(table_config))
                       if journal is not None else None),
          keep_retrying=not kafka.stop_at_end)
    except (TableConfigError, ValueError) as error:
      if isinstance(error, ConfigurationError):
        raise
      raise ConfigurationError(str(error)) from None
    return cls(
        kafka=kafka, routing=routing, cdc_format=opts.cdc_format,
        max_record_bytes=opts.max_record_bytes, default_limits=default_limits,
        table_config=table_config, load=load, sink=sink,
        journal=journal, control_topic=control_topic,
        max_pending_bytes=opts.max_pending_bytes or opts.flush_workers * opts.batch_bytes,
        dead_letter_path=opts.dead_letter_path, dead_letter_budget=dead_letter_budget,
        metrics_port=opts.metrics_port,
        stall_timeout_secs=opts.stall_timeout_secs,
        progress_interval_secs=opts.progress_interval_secs,
        validate_tables=bool(opts.validate_tables),
        value_format=opts.format, schema_registry=_schema_registry_of(opts),
        schema=schema)



def _schema_evolution_of(opts: KafkaToDorisOptions, load: StreamLoadConfig,
                         table_config: TableConfig, kafka: 'KafkaSettings',
                         routing: Routing) -> SchemaEvolutionConfig:
  """``--schema_evolution`` / ``--create_tables`` / ``--ddl_topic`` with what they need from the
  other flags."""
  change_types = frozenset(_split_list(opts.schema_change_types)) or None
  if change_types and not opts.ddl_topic:
    raise ConfigurationError('--schema_change_types applies to the changes of --ddl_topic: give '
                             '--ddl_topic too')
  ddl = None
  if opts.ddl_topic:
    if opts.cdc_format not in ('debezium', 'auto'):
      raise ConfigurationError(f'--ddl_topic: Debezium\'s schema change topic goes with '
                               f'--cdc_format=debezium (or auto), got {opts.cdc_format}')
    if not routing.from_envelope:
      raise ConfigurationError('--ddl_topic names the tables of Debezium\'s envelopes: it cannot be '
                               'combined with --table, --topic_table_map or --table_field (use '
                               '--table_template / --merge_tables to name the targets)')
    if opts.ddl_topic in kafka.topics:
      raise ConfigurationError(f'--ddl_topic={opts.ddl_topic} is also in --topics: the schema '
                               'change topic is read on its own; leave it out of --topics')
    try:
      ddl = SchemaChangeTopic(
          opts.ddl_topic, dict(kafka.consumer_config),
          naming=routing.naming or SourceNaming(),
          value_format=ValueFormat(opts.format, _schema_registry_of(opts)))
    except ValueError as error:
      raise ConfigurationError(str(error)) from None
  try:
    return SchemaEvolutionConfig(
        load=load, mode=opts.schema_evolution, create_tables=bool(opts.create_tables),
        ddl_protocol=opts.ddl_protocol, query_port=opts.query_port,
        tables=table_config.ddl_options(),
        mapped_tables=tuple(sorted(table for table, options in table_config.load_options().items()
                                   if options.columns or options.jsonpaths)),
        sequence_columns=table_config.sequence_columns(),
        load_formats={table: options.load_format
                      for table, options in table_config.load_options().items()
                      if options.load_format},
        change_types=change_types, ddl=ddl)
  except ValueError as error:
    raise ConfigurationError(str(error)) from None


def options_of(flags: Mapping[str, Any]) -> PipelineOptions:
  """``{flag name: value}`` (a Beam YAML step's config) as parsed flags.

  Lists become comma lists, mappings of ``consumer_config`` become
  ``key=value;key=value``, booleans ``true``/``false``.
  """
  argv = []
  for name, value in flags.items():
    if value is None:
      continue
    if isinstance(value, Mapping):
      value = ';'.join(f'{k}={v}' for k, v in value.items())
    elif isinstance(value, (list, tuple)):
      value = ','.join(str(v) for v in value)
    elif isinstance(value, bool):
      value = 'true' if value else 'false'
    argv.append(f'--{name}={value}')
  return PipelineOptions(argv)
