"""The per-table configuration file (``--table_config``), validated at start.

Example::

    tables:
      demo.events:            # a hot table: 4 shards, bigger batches
        batch_rows: 50000
        batch_bytes: 52428800
        batch_interval_secs: 10
        shards: 4
      demo.users:             # a small table: flushes on its own 2 s limit
        batch_interval_secs: 2
        key_columns: [id]
        partial_columns: true
      demo.orders:
        sequence_column: seq
        max_filter_ratio: 0.01
        headers: {strict_mode: "true"}
      demo.clicks:            # --create_tables: how to create it if it does not exist
        key_columns: [click_id]
        distributed_by: random      # or a list of columns (default: the key)
        buckets: 8                  # default: auto
        properties: {replication_num: "1"}

Every key is checked: an unknown key, a bad type or a bad table name fails
the pipeline at start with the file, the table and the key in the message.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Mapping, Optional

import yaml

from transforms.batching import BatchLimits
from transforms.errors import ConfigFault
from transforms.schema import TableDdlOptions
from transforms.stream_load.config import TableLoadOptions

__all__ = ['TableConfig', 'TableSettings', 'load_table_config', 'parse_table_config']

_TABLE_NAME = re.compile(r'^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$')

_BATCH_KEYS = {
    'batch_rows': ('rows', int),
    'batch_bytes': ('bytes', int),
    'batch_interval_secs': ('interval_secs', (int, float)),
    'split_on_column_change': ('split_on_column_change', bool),
    'shards': ('shards', int),
    'key_columns': ('key_columns', list),
}
_LOAD_KEYS = {
    'columns': str,
    'jsonpaths': str,
    'merge_type': str,
    'delete_condition': str,
    'sequence_column': str,
    'partial_columns': bool,
    'max_filter_ratio': (int, float),
    'strict_mode': bool,
    'headers': dict,
    'label_prefix': str,
    'ordered': bool,
    'load_format': str,
    'group_commit': str,
    'merge_commit_interval_ms': int,
    'merge_commit_parallel': int,
}
# --create_tables: how a missing table is made (key_columns, from _BATCH_KEYS, is its key).
_DDL_KEYS = {
    'distributed_by': (str, list),
    'buckets': (int, str),
    'properties': dict,
}


@dataclasses.dataclass(frozen=True)
class TableSettings:
  """Everything configured for one table."""
  limits: BatchLimits
  load_options: TableLoadOptions
  ddl: TableDdlOptions = TableDdlOptions()


@dataclasses.dataclass(frozen=True)
class TableConfig:
  """Per-table settings; tables not listed use the flags' defaults."""
  tables: Mapping[str, TableSettings]

  def batch_limits(self) -> Dict[str, BatchLimits]:
    return {table: settings.limits for table, settings in self.tables.items()}

  def load_options(self) -> Dict[str, TableLoadOptions]:
    return {table: settings.load_options for table, settings in self.tables.items()}

  def ddl_options(self) -> Dict[str, TableDdlOptions]:
    return {table: settings.ddl for table, settings in self.tables.items()}

  def sequence_columns(self) -> Dict[str, str]:
    return {table: s.load_options.sequence_column for table, s in self.tables.items()
            if s.load_options.sequence_column}


class TableConfigError(ConfigFault):
  """The table config file is wrong; the message says where."""


def _check_type(where: str, key: str, value: Any, expected) -> None:
  if isinstance(value, bool) and expected in (int, (int, float)):
    raise TableConfigError(f'{where}: {key} must be a number, got {value!r}')
  if not isinstance(value, expected):
    names = (expected.__name__ if isinstance(expected, type) else
             ' or '.join(t.__name__ for t in expected))
    raise TableConfigError(f'{where}: {key} must be {names}, got {value!r}')


def parse_table_config(document: Any, defaults: BatchLimits, source: str = '--table_config'
                       ) -> TableConfig:
  """Validates a parsed YAML document into a ``TableConfig``.

  Args:
    document: the YAML document (``None`` for an empty file).
    defaults: the flag-level limits a table's own values override.
    source: how to name the file in errors.

  Raises:
    TableConfigError: with the file, table and key at fault.
  """
  if document is None:
    return TableConfig({})
  if not isinstance(document, dict) or set(document) - {'tables'}:
    raise TableConfigError(f'{source}: the top level must be a mapping with one key, "tables"')
  tables = document.get('tables') or {}
  if not isinstance(tables, dict):
    raise TableConfigError(f'{source}: "tables" must map db.tbl to settings')
  parsed: Dict[str, TableSettings] = {}
  for table, settings in tables.items():
    where = f'{source}: table {table!r}'
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
      raise TableConfigError(f'{where}: table names must be db.tbl')
    settings = settings or {}
    if not isinstance(settings, dict):
      raise TableConfigError(f'{where}: settings must be a mapping')
    unknown = set(settings) - set(_BATCH_KEYS) - set(_LOAD_KEYS) - set(_DDL_KEYS)
    if unknown:
      raise TableConfigError(f'{where}: unknown key(s) {sorted(unknown)}; known keys: '
                             f'{sorted(set(_BATCH_KEYS) | set(_LOAD_KEYS) | set(_DDL_KEYS))}')
    limit_args = {}
    for key, (field, expected) in _BATCH_KEYS.items():
      if key in settings:
        _check_type(where, key, settings[key], expected)
        limit_args[field] = settings[key]
    load_args = {}
    for key, expected in _LOAD_KEYS.items():
      if key in settings:
        _check_type(where, key, settings[key], expected)
        load_args[key] = settings[key]
    if 'headers' in load_args:
      load_args['headers'] = {str(k): str(v) for k, v in load_args['headers'].items()}
    if 'max_filter_ratio' in load_args:
      load_args['max_filter_ratio'] = float(load_args['max_filter_ratio'])
    try:
      limits = dataclasses.replace(defaults, **limit_args)
      options = TableLoadOptions(**load_args)
    except (ValueError, TypeError) as error:
      raise TableConfigError(f'{where}: {error}') from None
    if limits.shards > 1 and not limits.key_columns and (
        options.sequence_column is None and options.merge_type is not None):
      raise TableConfigError(f'{where}: shards > 1 with deletes needs key_columns to keep each '
                             'key on one shard')
    parsed[table] = TableSettings(limits, options, _ddl_options(where, settings))
  return TableConfig(parsed)


def _ddl_options(where: str, settings: Dict[str, Any]) -> TableDdlOptions:
  """``key_columns``, ``distributed_by``, ``buckets``, ``properties`` as creation options."""
  for key, expected in _DDL_KEYS.items():
    if key in settings:
      _check_type(where, key, settings[key], expected)
  distributed = settings.get('distributed_by')
  if isinstance(distributed, str):
    if distributed.lower() != 'random':
      raise TableConfigError(f'{where}: distributed_by must be a list of columns or "random", '
                             f'got {distributed!r}')
    distributed = ()
  buckets = settings.get('buckets')
  if isinstance(buckets, str):
    if buckets.lower() != 'auto':
      raise TableConfigError(f'{where}: buckets must be a positive integer or "auto", '
                             f'got {buckets!r}')
    buckets = None
  keys = settings.get('key_columns')
  try:
    return TableDdlOptions(
        key_columns=tuple(keys) if keys else None,
        distributed_by=tuple(distributed) if distributed is not None else None,
        buckets=buckets,
        properties={str(k): str(v) for k, v in (settings.get('properties') or {}).items()})
  except ValueError as error:
    raise TableConfigError(f'{where}: {error}') from None


def load_table_config(path: Optional[str], defaults: BatchLimits) -> TableConfig:
  """Reads and validates ``--table_config`` (empty when no path)."""
  if not path:
    return TableConfig({})
  try:
    with open(path, 'rb') as handle:
      document = yaml.safe_load(handle)
  except OSError as error:
    raise TableConfigError(f'--table_config: cannot read {path}: {error.strerror}') from None
  except yaml.YAMLError as error:
    raise TableConfigError(f'--table_config: {path} is not valid YAML: {error}') from None
  return parse_table_config(document, defaults, source=f'--table_config {path}')
