"""Command-line options of the Kafka -> Doris/StarRocks pipeline.

One ``PipelineOptions`` subclass holds every flag; ``FLAG_SPECS`` is the
single list behind the argparse definitions, the Flex Template's ``metadata.json`` and
``docs/flags.md`` (tests check that they agree).  A default with a meaning outside the command
line (10,000 rows, 10 MB, 30 s, 4 flush workers, ...) is the constant of the package that uses
it, referenced here: one definition each.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, List, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.batching.limits import (DEFAULT_BATCH_BYTES, DEFAULT_BATCH_INTERVAL_SECS,
                                       DEFAULT_BATCH_ROWS)
from transforms.dead_letters import DEFAULT_MAX_DEAD_LETTER_RATIO
from transforms.kafka.discovery import DEFAULT_DISCOVERY_INTERVAL_SECS
from transforms.kafka.reader import DEFAULT_MAX_CHUNK_RECORDS
from transforms.records.parser import DEFAULT_MAX_RECORD_BYTES
from transforms.records.routing import DEFAULT_TABLE_TEMPLATE
from transforms.schema.config import DEFAULT_QUERY_PORT
from transforms.stream_load.config import (DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_LOAD_TIMEOUT_SECS,
                                           DEFAULT_MAX_RETRIES, DEFAULT_POOL_MAXSIZE, DORIS,
                                           PASSWORD_ENV_VAR)
from transforms.stream_load.sink import DEFAULT_FLUSH_WORKERS
from transforms.types import DEFAULT_JOURNAL_TOPIC

__all__ = ['KafkaToDorisOptions', 'FLAG_SPECS', 'FLAG_GROUPS', 'FlagSpec', 'str_to_bool',
           'EXACTLY_ONCE', 'AT_LEAST_ONCE', 'add_flags', 'flags_markdown']

EXACTLY_ONCE = 'exactly_once'
AT_LEAST_ONCE = 'at_least_once'


def str_to_bool(value: Any) -> bool:
  """argparse type for flags given as ``--flag``, ``--flag=true`` or ``--flag=false``."""
  if isinstance(value, bool):
    return value
  text = str(value).strip().lower()
  if text in ('1', 'true', 'yes', 'y', 'on'):
    return True
  if text in ('0', 'false', 'no', 'n', 'off'):
    return False
  raise ValueError(f'not a boolean: {value!r}')


str_to_bool.__name__ = 'boolean'


@dataclasses.dataclass(frozen=True)
class FlagSpec:
  """One flag: its name, type, default, help and a validation regex for templates."""
  name: str
  type: Callable
  default: Any
  help: str
  regex: Optional[str] = None
  choices: Optional[List[str]] = None
  is_bool: bool = False
  secret: bool = False
  group: str = ''


_INT = r'^[1-9][0-9]*$'
_NONNEG_INT = r'^[0-9]+$'
_NUMBER = r'^[0-9]+(\.[0-9]+)?$'
_TABLE = r'^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$'
_BOOL = r'^(true|false)$'

FLAG_SPECS: List[FlagSpec] = [
    # Kafka
    FlagSpec('bootstrap_servers', str, 'localhost:9092',
             'Kafka bootstrap servers, host:port[,host:port...].', r'^[^,\s]+(,[^,\s]+)*$'),
    FlagSpec('topics', str, None, 'Comma-separated Kafka topics to read.', r'^[^,\s]+(,[^,\s]+)*$'),
    FlagSpec('topic_pattern', str, '',
             'Read every topic whose whole name matches this regular expression (like the '
             'connectors\' topics.regex); instead of --topics. Topics created and partitions '
             'added while the job runs are picked up within --topic_discovery_interval_secs.',
             r'^.*$'),
    FlagSpec('topic_discovery_interval_secs', float, DEFAULT_DISCOVERY_INTERVAL_SECS,
             'How often a streaming job looks for new topics matching --topic_pattern and new '
             'partitions of its topics.', _NUMBER),
    FlagSpec('group_id', str, None,
             'Kafka consumer group: where offsets are committed after rows are loaded, and where '
             'a restart resumes from.', r'^[A-Za-z0-9._-]+$'),
    FlagSpec('stop_at_end', str_to_bool, False,
             'Read up to the end offsets seen at start, load everything, commit and finish '
             '(backfills, tests, the demo). Without it the pipeline streams until cancelled.',
             _BOOL, is_bool=True),
    FlagSpec('auto_offset_reset', str, 'earliest',
             'Where to start when the group has no committed offset.', r'^(earliest|latest)$',
             choices=['earliest', 'latest']),
    FlagSpec('consumer_config', str, '',
             'Extra librdkafka settings, key=value;key=value (e.g. security.protocol=SASL_SSL;'
             'sasl.mechanism=PLAIN). enable.auto.commit is always false.', r'^.*$'),
    FlagSpec('max_chunk_records', int, DEFAULT_MAX_CHUNK_RECORDS,
             'Most records the reader hands on in one chunk.', _INT),
    # Doris / StarRocks
    FlagSpec('fe_nodes', str, None,
             'Comma-separated FE URLs, http://host:8030[,https://host2:8030]. Loads are spread '
             'over them and fail over.', r'^https?://[^,\s]+(,https?://[^,\s]+)*$'),
    FlagSpec('user', str, 'root', 'Stream Load user.', r'^\S+$'),
    FlagSpec('password', str, None,
             f'Stream Load password (default: the {PASSWORD_ENV_VAR} environment variable, '
             'else empty). Never logged.', r'^.*$', secret=True),
    FlagSpec('password_file', str, '',
             'File holding the Stream Load password (a local path, or any Beam filesystem path '
             'such as gs://...), read by each worker when it starts: keeps the password out of '
             'the pipeline options, which runners display, and out of the process list.',
             r'^.*$'),
    FlagSpec('target', str, DORIS, 'doris or starrocks.', r'^(doris|starrocks)$',
             choices=['doris', 'starrocks']),
    FlagSpec('ca_bundle', str, '',
             'CA bundle (PEM) to verify https FE/BE certificates; default: the system CAs.',
             r'^.*$'),
    # Routing and parsing
    FlagSpec('table', str, '', 'Load every record into this table (db.tbl).', r'^([A-Za-z0-9_]+\.[A-Za-z0-9_]+)?$'),
    FlagSpec('topic_table_map', str, '',
             'Route by topic: topic=db.tbl[,topic2=db.tbl2].', r'^.*$'),
    FlagSpec('table_field', str, '',
             'Route by a field of the JSON value holding "db.tbl" (or "tbl" with '
             '--default_database).', r'^[A-Za-z0-9_.]*$'),
    FlagSpec('default_database', str, '', 'Database for bare table names.', r'^[A-Za-z0-9_]*$'),
    FlagSpec('table_template', str, DEFAULT_TABLE_TEMPLATE,
             'The target of a CDC envelope\'s source table (a whole database\'s topics): '
             'placeholders {prefix} (the topic\'s first part), {db}, {schema}, {table}, {topic}; '
             'e.g. ods.{db}__{table}. Two source tables reaching one target stop the job unless '
             '--merge_tables merges them.', r'^.+$'),
    FlagSpec('include_tables', str, '',
             'Load only source tables whose whole db.table matches this regular expression '
             '(CDC envelopes; others are skipped and counted).', r'^.*$'),
    FlagSpec('exclude_tables', str, '',
             'Skip source tables whose whole db.table matches this regular expression.', r'^.*$'),
    FlagSpec('merge_tables', str, '',
             'Merge families of source tables into one: regex=target rules separated by ; '
             '(first match wins; the target may use the regex\'s groups as {1} or {name} and the '
             '--table_template placeholders), e.g. shop\\.order_\\d+=shop.orders. Merged rows '
             'carry _source_db and _source_table, which join the key of a created table.',
             r'^.*$'),
    FlagSpec('format', str, 'json',
             'Record format of Kafka values: json, or avro, protobuf, json_schema in the '
             'Confluent wire format (magic byte, schema id), decoded with the schemas of '
             '--schema_registry_url.', r'^(json|avro|protobuf|json_schema)$',
             choices=['json', 'avro', 'protobuf', 'json_schema']),
    FlagSpec('schema_registry_url', str, '',
             'Confluent-compatible Schema Registry URL(s), comma-separated (needed by --format '
             'avro, protobuf, json_schema).', r'^(https?://[^,\s]+(,https?://[^,\s]+)*)?$'),
    FlagSpec('schema_registry_basic_auth', str, '',
             'Registry basic auth, USER:PASSWORD (default: the SCHEMA_REGISTRY_BASIC_AUTH '
             'environment variable). Never logged.', r'^.*$', secret=True),
    FlagSpec('schema_registry_ca_location', str, '',
             'CA bundle (PEM) to verify the registry\'s https certificate.', r'^.*$'),
    FlagSpec('schema_registry_certificate_location', str, '',
             'Client certificate (PEM) for a registry that wants mutual TLS.', r'^.*$'),
    FlagSpec('schema_registry_key_location', str, '',
             'Private key (PEM) of --schema_registry_certificate_location.', r'^.*$'),
    FlagSpec('cdc_format', str, 'none',
             'CDC envelope of the values: none, debezium, canal, maxwell or auto; deletes become '
             '__DORIS_DELETE_SIGN__ (Doris) / __op (StarRocks).',
             r'^(none|debezium|canal|maxwell|auto)$',
             choices=['none', 'debezium', 'canal', 'maxwell', 'auto']),
    FlagSpec('max_record_bytes', int, DEFAULT_MAX_RECORD_BYTES,
             'Records larger than this go to dead letters.', _INT),
    FlagSpec('schema_evolution', str, 'none',
             'none: columns a table lacks are reported once per table and column and left out, '
             'as Doris does; add_columns: such columns are added first (ALTER TABLE ... ADD '
             'COLUMN through the FE, typed from the record\'s schema or value), never dropped '
             'or narrowed. With --ddl_topic, what the source\'s DDL may do here: add_columns '
             '(create tables, add columns), lenient (also widen types; a rename adds the new '
             'name, a drop is ignored), evolve (also rename and drop columns); a narrowing is '
             'never applied.', r'^(none|add_columns|lenient|evolve)$',
             choices=['none', 'add_columns', 'lenient', 'evolve']),
    FlagSpec('ddl_topic', str, '',
             'Debezium\'s schema change topic (its topic.prefix), read beside the rows: tables '
             'are created before their first row from its exact types and keys, and columns '
             'added, widened, renamed and dropped in the source\'s order, per '
             '--schema_evolution; each change runs once, after every earlier row of its table '
             'has loaded.', r'^[A-Za-z0-9._-]*$'),
    FlagSpec('schema_change_types', str, '',
             'With --ddl_topic: the only kinds of change applied, comma-separated, of '
             'create_table, add_column, drop_column, rename_column, modify_column, '
             'truncate_table, drop_table (truncate_table and drop_table apply only when listed).',
             r'^[a-z_, ]*$'),
    FlagSpec('create_tables', str_to_bool, False,
             'Create a missing target table from the first record\'s schema: UNIQUE KEY on the '
             'source\'s primary key for keyed CDC (StarRocks: PRIMARY KEY), else DUPLICATE KEY; '
             'DISTRIBUTED BY and BUCKETS from --table_config (distributed_by, buckets).', _BOOL,
             is_bool=True),
    FlagSpec('ddl_protocol', str, 'auto',
             'How DDL and column reads reach the FE: auto (Doris: the HTTP SQL API; StarRocks: '
             'the MySQL port, where StarRocks takes DDL), http or mysql.',
             r'^(auto|http|mysql)$', choices=['auto', 'http', 'mysql']),
    FlagSpec('query_port', int, DEFAULT_QUERY_PORT,
             'The FEs\' MySQL port (query_port), on the hosts of --fe_nodes: StarRocks DDL, and '
             'Doris\'s with --ddl_protocol=mysql.', _INT),
    # Batching
    FlagSpec('batch_rows', int, DEFAULT_BATCH_ROWS, 'Flush a table\'s batch at this many rows.', _INT),
    FlagSpec('batch_bytes', int, DEFAULT_BATCH_BYTES,
             'Flush a table\'s batch at this many bytes (10 MB).', _INT),
    FlagSpec('batch_interval_secs', float, DEFAULT_BATCH_INTERVAL_SECS,
             'Flush a table\'s batch this many seconds after its first row.', _NUMBER),
    FlagSpec('table_config', str, '',
             'YAML file of per-table settings (limits, shards, Stream Load options); see README.',
             r'^.*$'),
    # Loading
    FlagSpec('flush_workers', int, DEFAULT_FLUSH_WORKERS, 'Stream Loads in flight per worker.', _INT),
    FlagSpec('label_prefix', str, '',
             'Prefix of every Stream Load label (default: derived from --group_id). Keep it stable '
             'across restarts: labels make retries idempotent.', r'^[-_A-Za-z0-9]{0,64}$'),
    FlagSpec('compression', str, 'none', 'Body compression: none or gzip.', r'^(none|gzip)$',
             choices=['none', 'gzip']),
    FlagSpec('load_format', str, 'json',
             'Stream Load body: json (JSON lines; Kafka bytes reused as they are), csv (\\x01 '
             'between columns, \\x02 between rows, a columns header) or arrow (an Arrow IPC '
             'stream, Doris >= 2.1). Per table: load_format in --table_config.',
             r'^(json|csv|arrow)$', choices=['json', 'csv', 'arrow']),
    FlagSpec('group_commit', str, 'off_mode',
             'Doris group commit (sync_mode, async_mode) or StarRocks merge commit for every '
             'table: the server merges small loads into one version. Such loads carry no label, '
             'so it needs --delivery_guarantee=at_least_once. Per table: group_commit in '
             '--table_config.', r'^(off_mode|sync_mode|async_mode)$',
             choices=['off_mode', 'sync_mode', 'async_mode']),
    FlagSpec('max_retries', int, DEFAULT_MAX_RETRIES, 'Retries of a retryable load failure.', _NONNEG_INT),
    FlagSpec('two_phase_commit', str_to_bool, False,
             'Use two-phase commit (Doris 2PC / StarRocks transaction API).', _BOOL, is_bool=True),
    FlagSpec('delivery_guarantee', str, EXACTLY_ONCE,
             'exactly_once: every row is loaded once, for every table model, across crashes and '
             'restarts (each batch is written ahead to --journal_topic before its load); '
             'at_least_once: after a crash, rows loaded but not yet committed may load again '
             '(unique/primary-key tables absorb them, duplicate-key tables keep both).',
             r'^(exactly_once|at_least_once)$', choices=[EXACTLY_ONCE, AT_LEAST_ONCE]),
    FlagSpec('journal_topic', str, DEFAULT_JOURNAL_TOPIC,
             'Kafka topic of the load journal (exactly_once) and of drain requests (--drain): '
             'compacted, keyed by label, shared by jobs (entries carry their --group_id). '
             'Created if missing.',
             r'^[A-Za-z0-9._-]+$'),
    FlagSpec('max_pending_bytes', int, 0,
             'Most bytes all open batches of a worker may hold together; past it the largest is '
             'flushed (reason memory_limit). 0: --flush_workers x --batch_bytes.', _NONNEG_INT),
    FlagSpec('load_timeout_secs', float, DEFAULT_LOAD_TIMEOUT_SECS, 'Timeout of one Stream Load.', _NUMBER),
    FlagSpec('connect_timeout_secs', float, DEFAULT_CONNECT_TIMEOUT_SECS, 'HTTP connect timeout.', _NUMBER),
    FlagSpec('pool_maxsize', int, DEFAULT_POOL_MAXSIZE, 'HTTP connections kept per host.', _INT),
    FlagSpec('validate_tables', str_to_bool, True,
             'At start, check that the FE is reachable and the configured tables exist.', _BOOL,
             is_bool=True),
    # Output and observability
    FlagSpec('dead_letter_path', str, 'dead_letters',
             'Where dead letters are written (a directory or gs:// prefix), one JSON line per '
             'record with its reason.', r'^.*$'),
    FlagSpec('max_dead_letter_ratio', float, DEFAULT_MAX_DEAD_LETTER_RATIO,
             'Stop the job when more than this share of the last 10,000 records a worker read '
             'went to dead letters (once there are 100 or more): a bounded run fails, a streaming '
             'one stops, and none of those records\' offsets is committed, so a fixed restart '
             'reads them again. 1 never stops.', r'^(0(\.[0-9]+)?|1(\.0+)?)$'),
    FlagSpec('metrics_port', int, 0,
             'Serve /metrics (Prometheus), /healthz (the job\'s loops are alive) and /readyz '
             '(Kafka and an FE answer, not draining) on this port (0: off).', _NONNEG_INT),
    FlagSpec('stall_timeout_secs', float, 0.0,
             'A table with pending rows and no successful load for this long (or a partition '
             'whose committed offset has not moved while its lag grew) is stalled: one ERROR '
             'line and the doris_table_stalled / kafka_partition_stalled gauge. 0: max(3 x the '
             'table\'s batch interval, 300 s).', _NUMBER),
    FlagSpec('progress_interval_secs', float, 10.0,
             'Log a progress line this often (0: off).', _NUMBER),
]

# The concern of each flag: how --help and docs/flags.md group them.
FLAG_GROUPS = {
    'Kafka': ('bootstrap_servers', 'topics', 'topic_pattern', 'topic_discovery_interval_secs', 'group_id', 'stop_at_end', 'auto_offset_reset', 'consumer_config', 'max_chunk_records'),
    'Doris / StarRocks': ('fe_nodes', 'user', 'password', 'password_file', 'target', 'ca_bundle'),
    'Routing': ('table', 'topic_table_map', 'table_field', 'default_database', 'table_template',
                'include_tables', 'exclude_tables', 'merge_tables'),
    'Formats': ('format', 'schema_registry_url', 'schema_registry_basic_auth', 'schema_registry_ca_location', 'schema_registry_certificate_location', 'schema_registry_key_location', 'cdc_format', 'max_record_bytes'),
    'Schema': ('schema_evolution', 'ddl_topic', 'schema_change_types', 'create_tables',
               'ddl_protocol', 'query_port'),
    'Batching': ('batch_rows', 'batch_bytes', 'batch_interval_secs', 'table_config', 'max_pending_bytes'),
    'Loads and delivery': ('flush_workers', 'label_prefix', 'compression', 'load_format', 'group_commit', 'max_retries', 'two_phase_commit', 'delivery_guarantee', 'journal_topic', 'load_timeout_secs', 'connect_timeout_secs', 'pool_maxsize', 'validate_tables'),
    'Operations': ('dead_letter_path', 'max_dead_letter_ratio', 'metrics_port', 'stall_timeout_secs', 'progress_interval_secs'),
}
_GROUP_OF = {name: group for group, names in FLAG_GROUPS.items() for name in names}
FLAG_SPECS = [dataclasses.replace(spec, group=_GROUP_OF[spec.name]) for spec in FLAG_SPECS]
_SPECS_BY_NAME = {spec.name: spec for spec in FLAG_SPECS}
_DEFINED_BY_BEAM = ('bootstrap_servers',)


class KafkaToDorisOptions(PipelineOptions):
  """Every flag of ``python -m pipelines.kafka_to_doris``."""

  @classmethod
  def _add_argparse_args(cls, parser):
    add_flags(parser)


def add_flags(parser, grouped: bool = False) -> None:
  """Adds every flag of ``FLAG_SPECS`` to ``parser`` (in argument groups by concern, for --help)."""
  sections = {}
  for spec in FLAG_SPECS:
    target = parser
    if grouped:
      if spec.group not in sections:
        sections[spec.group] = parser.add_argument_group(spec.group)
      target = sections[spec.group]
    kwargs = dict(default=spec.default, help=_help_with_default(spec))
    if spec.is_bool:
      kwargs.update(nargs='?', const=True, type=str_to_bool)
    else:
      kwargs.update(type=spec.type)
      if spec.choices:
        kwargs.update(choices=spec.choices)
    try:
      target.add_argument(f'--{spec.name}', **kwargs)
    except argparse.ArgumentError:
      # Beam's KafkaStreamsRunnerOptions already defines --bootstrap_servers (default
      # localhost:9092); the flag is shared, its value is the same.
      if spec.name not in _DEFINED_BY_BEAM:
        raise


def flags_markdown() -> str:
  """docs/flags.md: every flag by concern, with its default and help (from ``FLAG_SPECS``)."""
  lines = ['# Flags', '',
           'Generated from `pipelines/options.py` (`FLAG_SPECS`), the list behind `--help`, the '
           'Flex Template\'s `metadata.json` and the Beam YAML transforms\' parameters: '
           '`python -m pipelines.options > docs/flags.md` (a test checks it is current).', '']
  for group, names in FLAG_GROUPS.items():
    lines += [f'## {group}', '', '| flag | default | meaning |', '| --- | --- | --- |']
    for name in names:
      spec = _SPECS_BY_NAME[name]
      default = '-' if spec.secret or spec.default in (None, '') else f'`{spec.default}`'
      text = spec.help.replace('|', '\\|')
      lines.append(f'| `--{name}` | {default} | {text} |')
    lines.append('')
  return '\n'.join(lines)


def _help_with_default(spec: FlagSpec) -> str:
  if spec.secret or spec.default in (None, ''):
    return spec.help
  return f'{spec.help} Default: {spec.default}.'


if __name__ == '__main__':
  print(flags_markdown())
