"""Schema evolution settings, validated once: ``SchemaEvolutionConfig``, ``TableDdlOptions``.

Built when the pipeline is built and pickled to the workers unchanged; the
FE client and the per-worker state are made from it in ``setup()``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Optional, Tuple

from transforms.stream_load.config import STARROCKS, StreamLoadConfig, split_table

__all__ = ['SchemaEvolutionConfig', 'TableDdlOptions', 'NONE', 'ADD_COLUMNS', 'MODES',
           'DEFAULT_DDL_TIMEOUT_SECS', 'DDL_PROTOCOLS', 'DEFAULT_QUERY_PORT']

NONE = 'none'
ADD_COLUMNS = 'add_columns'
MODES = (NONE, ADD_COLUMNS)
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
class SchemaEvolutionConfig:
  """What to do with columns a table lacks, and with tables that do not exist.

  Attributes:
    load: how to reach the FEs (credentials, TLS, failover, retries).
    mode: ``none`` (report once, load without them) or ``add_columns``.
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

  def __post_init__(self):
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
  def over_mysql(self) -> bool:
    """Whether DDL and column reads go over the FEs' MySQL port."""
    return self.ddl_protocol == 'mysql' or (self.ddl_protocol == 'auto'
                                            and self.load.target == STARROCKS)

  def is_arrow(self, table: str) -> bool:
    """Whether ``table`` loads as Arrow bodies."""
    return (self.load_formats.get(table) or self.load.load_format) == 'arrow'
