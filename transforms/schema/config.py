"""Schema evolution settings, validated once: ``SchemaEvolutionConfig``, ``TableDdlOptions``.

Built when the pipeline is built and pickled to the workers unchanged; the
FE client and the per-worker state are made from it in ``setup()``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, FrozenSet, Mapping, Optional, Tuple

from transforms.records.formats import ValueFormat
from transforms.records.routing import SourceNaming
from transforms.stream_load.config import STARROCKS, StreamLoadConfig, split_table

__all__ = ['SchemaEvolutionConfig', 'TableDdlOptions', 'SchemaChangeTopic', 'NONE',
           'ADD_COLUMNS', 'LENIENT', 'EVOLVE', 'MODES', 'CHANGE_TYPES',
           'DEFAULT_DDL_TIMEOUT_SECS', 'DDL_PROTOCOLS', 'DEFAULT_QUERY_PORT']

NONE = 'none'
ADD_COLUMNS = 'add_columns'
LENIENT = 'lenient'
EVOLVE = 'evolve'
MODES = (NONE, ADD_COLUMNS, LENIENT, EVOLVE)
# What ``--schema_change_types`` may list (the ops of ``debezium_ddl.plan_changes``).
CHANGE_TYPES = ('create_table', 'add_column', 'drop_column', 'rename_column', 'modify_column',
                'truncate_table', 'drop_table')
# How long a schema change may wait for the table's other schema change job (Doris runs one
# per table) or for an added column to show; past it the bundle fails and is read again.
DEFAULT_DDL_TIMEOUT_SECS = 300.0
# How DDL reaches the FE: ``auto`` is Doris's HTTP SQL API and StarRocks's MySQL port (StarRocks
# takes DDL only there); ``mysql`` sends Doris's there too.
DDL_PROTOCOLS = ('auto', 'http', 'mysql')
DEFAULT_QUERY_PORT = 9030
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


@dataclasses.dataclass(frozen=True)
class TableDdlOptions:
  """How ``--create_tables`` creates one table (``--table_config``).

  Attributes:
    key_columns: the key; None: the record key (keyed CDC) or the first
      column that can be a key.
    distributed_by: hash columns; ``()`` for ``DISTRIBUTED BY RANDOM``
      (duplicate-key tables); None: the key columns.
    buckets: bucket count; None: ``BUCKETS AUTO`` (Doris >= 2.0).
    properties: extra ``PROPERTIES`` (e.g. ``replication_num: "1"`` for a
      one-BE cluster); they win over the defaults.
  """
  key_columns: Optional[Tuple[str, ...]] = None
  distributed_by: Optional[Tuple[str, ...]] = None
  buckets: Optional[int] = None
  properties: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for name in ('key_columns', 'distributed_by'):
      value = getattr(self, name)
      if value is None:
        continue
      if isinstance(value, str) or not all(isinstance(c, str) and _NAME.match(c) for c in value):
        raise ValueError(f'{name}: expected a list of column names, got {value!r}')
      object.__setattr__(self, name, tuple(value))
    if self.key_columns is not None and not self.key_columns:
      raise ValueError('key_columns: must not be empty')
    if self.buckets is not None and (isinstance(self.buckets, bool) or
                                     not isinstance(self.buckets, int) or self.buckets < 1):
      raise ValueError(f'buckets: must be an integer >= 1 or "auto", got {self.buckets!r}')
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.properties.items()):
      raise ValueError(f'properties: expected a mapping of strings, got {self.properties!r}')


@dataclasses.dataclass(frozen=True)
class SchemaChangeTopic:
  """``--ddl_topic``: Debezium's schema change topic, read beside the rows.

  Attributes:
    topic: its name (Debezium's ``topic.prefix``); the prefix of the tables' own topics.
    consumer_config: librdkafka settings (bootstrap servers, security, ``group.id``: the
      topic's offsets are committed there once a change has run).
    naming: how a source table names its target (``--table_template``, ``--merge_tables``,
      ``--include_tables`` / ``--exclude_tables``), as for its rows.
    value_format: how its values are encoded (``--format``).
  """
  topic: str
  consumer_config: Mapping[str, Any]
  naming: SourceNaming = dataclasses.field(default_factory=SourceNaming)
  value_format: ValueFormat = dataclasses.field(default_factory=ValueFormat)

  def __post_init__(self):
    if not isinstance(self.topic, str) or not self.topic.strip():
      raise ValueError(f'--ddl_topic: expected a topic name, got {self.topic!r}')
    if not self.consumer_config.get('group.id'):
      raise ValueError('--ddl_topic needs --group_id: the topic\'s offsets say which changes ran')


@dataclasses.dataclass(frozen=True)
class SchemaEvolutionConfig:
  """What to do with columns a table lacks, and with tables that do not exist.

  Attributes:
    load: how to reach the FEs (credentials, TLS, failover, retries).
    mode: ``none`` (report once, load without them), ``add_columns``, ``lenient`` or
      ``evolve`` (the last two: what a schema change topic's changes may do, see
      ``debezium_ddl.policy_allows``; for rows, as ``add_columns``).
    create_tables: create missing tables from the first rows.
    tables: per-table creation settings.
    mapped_tables: tables whose JSON fields are mapped (``columns`` /
      ``jsonpaths`` in ``--table_config``): their fields are not column
      names, so they are left alone.
    sequence_columns: table -> sequence column (a created unique-key table
      gets ``function_column.sequence_col``).
    load_formats: table -> its own ``load_format``; others use
      ``load.load_format``.  An Arrow body with a field that is no column
      fails its load, so for Arrow tables such fields are left out of rows.
    ddl_timeout_secs: see ``DEFAULT_DDL_TIMEOUT_SECS``.
    ddl_protocol: see ``DDL_PROTOCOLS``.
    query_port: the FEs' MySQL port (``--query_port``).
    change_types: ``--schema_change_types``: the only kinds of change applied (None: the
      mode's; ``truncate_table`` and ``drop_table`` only when listed).
    ddl: ``--ddl_topic``'s settings, or None.
  """
  load: StreamLoadConfig
  mode: str = NONE
  create_tables: bool = False
  tables: Mapping[str, TableDdlOptions] = dataclasses.field(default_factory=dict)
  mapped_tables: Tuple[str, ...] = ()
  sequence_columns: Mapping[str, str] = dataclasses.field(default_factory=dict)
  load_formats: Mapping[str, str] = dataclasses.field(default_factory=dict)
  ddl_timeout_secs: float = DEFAULT_DDL_TIMEOUT_SECS
  ddl_protocol: str = 'auto'
  query_port: int = DEFAULT_QUERY_PORT
  change_types: Optional[FrozenSet[str]] = None
  ddl: Optional[SchemaChangeTopic] = None

  def __post_init__(self):
    if self.change_types is not None:
      object.__setattr__(self, 'change_types', frozenset(self.change_types))
      unknown = sorted(self.change_types - set(CHANGE_TYPES))
      if unknown:
        raise ValueError(f'--schema_change_types: unknown type {unknown[0]!r}: use any of '
                         f'{", ".join(CHANGE_TYPES)}')
    if self.mode not in MODES:
      raise ValueError(f'--schema_evolution: expected one of {"|".join(MODES)}, '
                       f'got {self.mode!r}')
    if self.ddl_protocol not in DDL_PROTOCOLS:
      raise ValueError(f'--ddl_protocol: expected one of {"|".join(DDL_PROTOCOLS)}, '
                       f'got {self.ddl_protocol!r}')
    if self.ddl_protocol == 'http' and self.load.target == STARROCKS:
      raise ValueError('--ddl_protocol=http: StarRocks runs DDL only over the MySQL protocol (its '
                       'HTTP SQL API takes SELECT, SHOW, EXPLAIN and KILL); use auto or mysql')
    if (isinstance(self.query_port, bool) or not isinstance(self.query_port, int)
        or not 0 < self.query_port < 65536):
      raise ValueError(f'--query_port: expected a port number, got {self.query_port!r}')
    for table in list(self.tables) + list(self.mapped_tables) + list(self.sequence_columns):
      split_table(table)
    if not self.ddl_timeout_secs > 0:
      raise ValueError(f'ddl_timeout_secs: must be > 0, got {self.ddl_timeout_secs}')

  @property
  def adds_columns(self) -> bool:
    """Whether rows' new columns are added (every mode but ``none``)."""
    return self.mode != NONE

  @property
  def over_mysql(self) -> bool:
    """Whether DDL and column reads go over the FEs' MySQL port."""
    return self.ddl_protocol == 'mysql' or (self.ddl_protocol == 'auto'
                                            and self.load.target == STARROCKS)

  def is_arrow(self, table: str) -> bool:
    """Whether ``table`` loads as Arrow bodies."""
    return (self.load_formats.get(table) or self.load.load_format) == 'arrow'
