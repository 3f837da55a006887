r"""The per-table configuration file (``--table_config``), validated at start.

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
      'ods\.shop__order_\d+':      # a regular expression over whole db.tbl names: a family
        batch_interval_secs: 5
        buckets: 16
    defaults:                 # under every table, named or matched (properties merge by key)
      buckets: 4
      properties: {replication_num: "1"}

A key that is not a plain ``db.tbl`` name is a regular expression the whole
table name must match; exact names win, then expressions in file order.  An
expression or ``defaults`` may not set what decides a table's keys, shards or
body (``shards``, ``key_columns``, ``sequence_column``, ``columns``,
``jsonpaths``, ``load_format``, ``group_commit``, ``merge_commit_*``): name the
table for those.

Every key is checked: an unknown key, a bad type, a bad table name or a bad
regular expression fails the pipeline at start with the file, the table and the
key in the message.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from transforms.batching import BatchLimits
from transforms.errors import ConfigFault
from transforms.schema import TableDdlOptions
from transforms.stream_load.config import TableLoadOptions
from transforms.types import TableMap

__all__ = ['TableConfig', 'TableSettings', 'load_table_config', 'parse_table_config']

_TABLE_NAME = re.compile(r'^[A-Za-z0-9_]+\.[A-Za-z0-9_]+$')
_BARE_NAME = re.compile(r'^[A-Za-z0-9_]+$')

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
# What decides a table's keys, shards or body, which other settings are derived from by listing
# the named tables (the journal's sharding, group commit users...): named tables only.
_NAMED_ONLY = frozenset({'shards', 'key_columns', 'sequence_column', 'columns', 'jsonpaths',
                         'load_format', 'group_commit', 'merge_commit_interval_ms',
                         'merge_commit_parallel'})
_MERGED_BY_KEY = ('properties', 'headers')


@dataclasses.dataclass(frozen=True)
class TableSettings:
  """Everything configured for one table."""
  limits: BatchLimits
  load_options: TableLoadOptions
  ddl: TableDdlOptions = TableDdlOptions()


@dataclasses.dataclass(frozen=True)
class TableConfig:
  """Per-table settings; tables not listed use the flags' defaults.

  Attributes:
    tables: settings of the tables named exactly.
    patterns: ``(regular expression, settings)`` of table families, in file order.
    default: settings of every other table (``defaults:``), or None.
  """
  tables: Mapping[str, TableSettings]
  patterns: Tuple[Tuple[str, TableSettings], ...] = ()
  default: Optional[TableSettings] = None

  def _map(self, pick) -> TableMap:
    return TableMap({t: pick(s) for t, s in self.tables.items()},
                    [(regex, pick(s)) for regex, s in self.patterns],
                    pick(self.default) if self.default is not None else None)

  def batch_limits(self) -> TableMap:
    return self._map(lambda settings: settings.limits)

  def load_options(self) -> TableMap:
    return self._map(lambda settings: settings.load_options)

  def ddl_options(self) -> TableMap:
    return self._map(lambda settings: settings.ddl)

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
  if not isinstance(document, dict) or set(document) - {'tables', 'defaults'}:
    raise TableConfigError(f'{source}: the top level must be a mapping with the keys "tables" '
                           'and (optional) "defaults"')
  tables = document.get('tables') or {}
  if not isinstance(tables, dict):
    raise TableConfigError(f'{source}: "tables" must map db.tbl (or a regular expression) to '
                           'settings')
  base = document.get('defaults') or {}
  if not isinstance(base, dict):
    raise TableConfigError(f'{source}: "defaults" must be a mapping of settings')
  _check_unnamed(f'{source}: defaults', base)
  default = _settings(f'{source}: defaults', base, defaults) if base else None
  parsed: Dict[str, TableSettings] = {}
  patterns: List[Tuple[str, TableSettings]] = []
  for table, settings in tables.items():
    where = f'{source}: table {table!r}'
    if not isinstance(table, str) or not table:
      raise TableConfigError(f'{where}: keys must be db.tbl names or regular expressions')
    settings = settings or {}
    if not isinstance(settings, dict):
      raise TableConfigError(f'{where}: settings must be a mapping')
    merged = _merged(base, settings)
    if _TABLE_NAME.match(table):
      parsed[table] = _settings(where, merged, defaults)
      continue
    if _BARE_NAME.match(table):
      raise TableConfigError(f'{where}: table names must be db.tbl (or a regular expression '
                             'over db.tbl names)')
    try:
      re.compile(table)
    except re.error as error:
      raise TableConfigError(f'{where}: not a db.tbl name, nor a regular expression: '
                             f'{error}') from None
    _check_unnamed(where, settings)
    patterns.append((table, _settings(where, merged, defaults)))
  return TableConfig(parsed, tuple(patterns), default)


def _merged(base: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
  """``settings`` over ``defaults`` (``properties`` and ``headers`` merged by key)."""
  merged = {**base, **settings}
  for key in _MERGED_BY_KEY:
    if isinstance(base.get(key), dict) and isinstance(settings.get(key), dict):
      merged[key] = {**base[key], **settings[key]}
  return merged


def _check_unnamed(where: str, settings: Dict[str, Any]) -> None:
  named = sorted(_NAMED_ONLY & set(settings))
  if named:
    raise TableConfigError(f'{where}: {", ".join(named)} must be set per table, by its name '
                           '(they decide its keys, shards or body)')


def _settings(where: str, settings: Dict[str, Any], defaults: BatchLimits) -> TableSettings:
  """One entry's settings, checked."""
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
  return TableSettings(limits, options, _ddl_options(where, settings))


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
