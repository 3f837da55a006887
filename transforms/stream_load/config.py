"""Stream Load settings, validated once: ``StreamLoadConfig`` and per-table ``TableLoadOptions``.

``StreamLoadConfig`` is built (and checked) once, when the pipeline is
built, and passed unchanged to every piece that talks to the cluster: the
start-up checks, the crash recovery, the sink's client.  The password is
resolved once per process, by ``resolved()``, from the explicit value, else
``password_file`` (read on the worker, so the secret is not pickled with the
pipeline), else the ``STREAM_LOAD_PASSWORD`` environment variable.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from typing import Dict, Mapping, Optional, Tuple

# The cluster kinds and delete markers are the rows' vocabulary (shared ground); named here too.
from transforms.types import DORIS, DORIS_DELETE_SIGN, STARROCKS, STARROCKS_OP, TARGETS

__all__ = [
    'StreamLoadConfig',
    'TableLoadOptions',
    'split_table',
    'read_password_file',
    'PASSWORD_ENV_VAR',
    'DORIS',
    'STARROCKS',
    'TARGETS',
    'DORIS_DELETE_SIGN',
    'STARROCKS_OP',
    'DEFAULT_CONNECT_TIMEOUT_SECS',
    'DEFAULT_LOAD_TIMEOUT_SECS',
    'DEFAULT_POOL_CONNECTIONS',
    'DEFAULT_POOL_MAXSIZE',
    'DEFAULT_MAX_RETRIES',
    'DEFAULT_BACKOFF_INITIAL_SECS',
    'DEFAULT_BACKOFF_MAX_SECS',
    'DEFAULT_LABEL_STATE_TIMEOUT_SECS',
    'LOAD_FORMATS',
    'GROUP_COMMIT_OFF',
    'GROUP_COMMIT_MODES',
    'DEFAULT_MERGE_COMMIT_INTERVAL_MS',
    'DEFAULT_MERGE_COMMIT_PARALLEL',
]

PASSWORD_ENV_VAR = 'STREAM_LOAD_PASSWORD'

DEFAULT_CONNECT_TIMEOUT_SECS = 10.0
DEFAULT_LOAD_TIMEOUT_SECS = 600.0
DEFAULT_POOL_CONNECTIONS = 100
DEFAULT_POOL_MAXSIZE = 50
DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_INITIAL_SECS = 0.5
DEFAULT_BACKOFF_MAX_SECS = 30.0
DEFAULT_LABEL_STATE_TIMEOUT_SECS = 60.0
_COMPRESSIONS = ('none', 'gzip')
LOAD_FORMATS = ('json', 'csv', 'arrow')
GROUP_COMMIT_OFF = 'off_mode'
GROUP_COMMIT_MODES = (GROUP_COMMIT_OFF, 'sync_mode', 'async_mode')
DEFAULT_MERGE_COMMIT_INTERVAL_MS = 1000
DEFAULT_MERGE_COMMIT_PARALLEL = 2


def _check_format_and_group_commit(format_name: str, group_name: str, load_format: Optional[str],
                                   group_commit: Optional[str], target: Optional[str]) -> None:
  if load_format is not None and load_format not in LOAD_FORMATS:
    raise ValueError(f'{format_name}: must be one of {", ".join(LOAD_FORMATS)}, '
                     f'got {load_format!r}')
  if load_format == 'arrow' and target == STARROCKS:
    raise ValueError(f'{format_name}: arrow bodies are a Doris (>= 2.1) format; StarRocks '
                     'takes json or csv')
  if group_commit is not None and group_commit not in GROUP_COMMIT_MODES:
    raise ValueError(f'{group_name}: must be one of {", ".join(GROUP_COMMIT_MODES)}, '
                     f'got {group_commit!r}')


def read_password_file(path: str) -> str:
  """The password in ``path`` (any Beam filesystem), without its trailing newline.

  Raises:
    ValueError: the file cannot be read (the message names the flag and path).
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  try:
    with FileSystems.open(path) as handle:
      return handle.read().decode('utf-8').rstrip('\r\n')
  except (IOError, OSError) as error:
    raise ValueError(f'--password_file: cannot read {path}: {type(error).__name__}') from None



@dataclasses.dataclass(frozen=True)
class StreamLoadConfig:
  """How to reach the cluster and how hard to try.

  Attributes:
    fe_nodes: FE base URLs (``http://host:8030`` or ``https://…``); loads are
      spread over them and fail over to the next on connection errors.
    user: Stream Load user.
    password: its password (never logged, never in an exception); None: from
      ``password_file``, else the ``STREAM_LOAD_PASSWORD`` environment variable.
    password_file: a file holding the password (any Beam filesystem path).
    target: ``doris`` or ``starrocks``.
    connect_timeout_secs: TCP/TLS connect timeout.
    load_timeout_secs: read timeout of one load; also sent as the ``timeout``
      header so the server gives up first.
    pool_connections: number of per-host pools kept (idle connections).
    pool_maxsize: connections kept per host.
    max_retries: attempts after the first for retryable failures.
    backoff_initial_secs: first backoff; doubles per attempt, with full jitter.
    backoff_max_secs: backoff cap.
    compression: ``none`` or ``gzip`` (``compress_type: gz``).
    two_phase_commit: prepare with the load and commit right after.
    verify: TLS verification: True, False or a CA bundle path.
    label_state_timeout_secs: how long to poll a label that is still RUNNING.
    load_format: body format of every table without its own: ``json``,
      ``csv`` or ``arrow`` (Doris >= 2.1).
    group_commit: ``off_mode``, or Doris group commit ``sync_mode`` /
      ``async_mode`` (StarRocks: merge commit, synchronous or not) for every
      table without its own.  Such loads carry no label: at-least-once.
  """
  fe_nodes: Tuple[str, ...]
  user: str
  password: Optional[str] = None
  password_file: Optional[str] = None
  target: str = DORIS
  connect_timeout_secs: float = DEFAULT_CONNECT_TIMEOUT_SECS
  load_timeout_secs: float = DEFAULT_LOAD_TIMEOUT_SECS
  pool_connections: int = DEFAULT_POOL_CONNECTIONS
  pool_maxsize: int = DEFAULT_POOL_MAXSIZE
  max_retries: int = DEFAULT_MAX_RETRIES
  backoff_initial_secs: float = DEFAULT_BACKOFF_INITIAL_SECS
  backoff_max_secs: float = DEFAULT_BACKOFF_MAX_SECS
  compression: str = 'none'
  two_phase_commit: bool = False
  verify: object = True
  label_state_timeout_secs: float = DEFAULT_LABEL_STATE_TIMEOUT_SECS
  load_format: str = 'json'
  group_commit: str = GROUP_COMMIT_OFF

  def __post_init__(self):
    nodes = tuple(self.fe_nodes) if not isinstance(self.fe_nodes, str) else tuple(
        n for n in self.fe_nodes.split(',') if n.strip())
    object.__setattr__(self, 'fe_nodes', tuple(n.strip().rstrip('/') for n in nodes))
    if not self.fe_nodes:
      raise ValueError('--fe_nodes: at least one FE URL is required, e.g. http://127.0.0.1:8030')
    for node in self.fe_nodes:
      parsed = urllib.parse.urlsplit(node)
      if parsed.scheme not in ('http', 'https') or not parsed.hostname:
        raise ValueError(f'--fe_nodes: {node!r} is not an http(s)://host:port URL')
      if parsed.username or parsed.password:
        raise ValueError('--fe_nodes: put credentials in --user/--password, not in the URL')
      try:
        parsed.port
      except ValueError:
        raise ValueError(f'--fe_nodes: {node!r} has a bad port') from None
    if not self.user:
      raise ValueError('--user: a Stream Load user is required')
    if self.target not in TARGETS:
      raise ValueError(f'--target: must be doris or starrocks, got {self.target!r}')
    _check_format_and_group_commit('--load_format', '--group_commit', self.load_format,
                                   self.group_commit, self.target)
    if self.group_commit != GROUP_COMMIT_OFF and self.two_phase_commit:
      raise ValueError('--group_commit: two-phase commit loads cannot be merged (Doris falls '
                       'back to a plain load); choose one of --group_commit and '
                       '--two_phase_commit')
    if self.compression not in _COMPRESSIONS:
      raise ValueError(f'--compression: must be none or gzip, got {self.compression!r}')
    if self.max_retries < 0:
      raise ValueError(f'--max_retries: must be >= 0, got {self.max_retries}')
    for name in ('connect_timeout_secs', 'load_timeout_secs', 'backoff_max_secs'):
      if getattr(self, name) <= 0:
        raise ValueError(f'--{name}: must be > 0, got {getattr(self, name)}')
    if self.backoff_initial_secs < 0:
      raise ValueError(f'backoff_initial_secs: must be >= 0, got {self.backoff_initial_secs}')
    for name in ('pool_connections', 'pool_maxsize'):
      if getattr(self, name) < 1:
        raise ValueError(f'--{name}: must be >= 1, got {getattr(self, name)}')

  def __repr__(self):
    # The password never reaches a log line through repr().
    fields = ', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in dataclasses.fields(self)
                       if f.name != 'password')
    return f'StreamLoadConfig({fields}, password=***)'

  def resolved(self) -> 'StreamLoadConfig':
    """This config with the password read: the explicit one, else the file, else the environment.

    Raises:
      ValueError: ``password_file`` cannot be read.
    """
    if self.password is not None:
      return self
    if self.password_file:
      password = read_password_file(self.password_file)
    else:
      password = os.environ.get(PASSWORD_ENV_VAR, '')
    return dataclasses.replace(self, password=password)


@dataclasses.dataclass(frozen=True)
class TableLoadOptions:
  """Per-table Stream Load options (from the table config).

  Attributes:
    columns: the ``columns`` header (column list / expressions).
    jsonpaths: the ``jsonpaths`` header.
    merge_type: APPEND, DELETE or MERGE.
    delete_condition: the ``delete`` header (with merge_type MERGE).
    sequence_column: ``function_column.sequence_col``.
    partial_columns: partial column update (unique-key merge-on-write tables).
    max_filter_ratio: tolerated share of filtered rows (0 = none).
    strict_mode: Doris's strict mode.
    headers: any other Stream Load headers, passed as they are.
    label_prefix: this table's label prefix (default: the pipeline's).
    ordered: load this table's batches one after another (per shard), so
      changes to a key land in Kafka order.  None (default): decided from the
      table's key model -- duplicate-key tables load batches concurrently,
      unique/aggregate/primary-key tables (or an unknown model) in order.
    load_format: this table's body format (default: the pipeline's).
    group_commit: this table's group commit mode (default: the pipeline's).
    merge_commit_interval_ms: StarRocks merge commit: the merge window.
    merge_commit_parallel: StarRocks merge commit: loads merged in parallel.
  """
  columns: Optional[str] = None
  jsonpaths: Optional[str] = None
  merge_type: Optional[str] = None
  delete_condition: Optional[str] = None
  sequence_column: Optional[str] = None
  partial_columns: bool = False
  max_filter_ratio: Optional[float] = None
  strict_mode: Optional[bool] = None
  headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
  label_prefix: Optional[str] = None
  ordered: Optional[bool] = None
  load_format: Optional[str] = None
  group_commit: Optional[str] = None
  merge_commit_interval_ms: int = DEFAULT_MERGE_COMMIT_INTERVAL_MS
  merge_commit_parallel: int = DEFAULT_MERGE_COMMIT_PARALLEL

  def __post_init__(self):
    _check_format_and_group_commit('load_format', 'group_commit', self.load_format,
                                   self.group_commit, None)
    if self.load_format in ('csv', 'arrow') and (self.columns or self.jsonpaths):
      raise ValueError(f'load_format {self.load_format}: columns and jsonpaths map JSON fields; '
                       'a csv or arrow body names its own columns')
    for name in ('merge_commit_interval_ms', 'merge_commit_parallel'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name}: must be an integer >= 1, got {value!r}')
    if self.merge_type is not None and self.merge_type.upper() not in ('APPEND', 'DELETE', 'MERGE'):
      raise ValueError(f'merge_type: must be APPEND, DELETE or MERGE, got {self.merge_type!r}')
    if self.delete_condition and (self.merge_type or '').upper() != 'MERGE':
      raise ValueError('delete_condition needs merge_type MERGE')
    if self.max_filter_ratio is not None and not 0 <= self.max_filter_ratio <= 1:
      raise ValueError(f'max_filter_ratio: must be within [0, 1], got {self.max_filter_ratio}')
    lowered = {k.lower() for k in self.headers}
    if 'authorization' in lowered or 'label' in lowered:
      raise ValueError('headers: Authorization and label are set by the client, not the table config')

  def to_headers(self) -> Dict[str, str]:
    headers = dict(self.headers)
    if self.columns:
      headers['columns'] = self.columns
    if self.jsonpaths:
      headers['jsonpaths'] = self.jsonpaths
    if self.merge_type:
      headers['merge_type'] = self.merge_type.upper()
    if self.delete_condition:
      headers['delete'] = self.delete_condition
    if self.sequence_column:
      headers['function_column.sequence_col'] = self.sequence_column
    if self.partial_columns:
      headers['partial_columns'] = 'true'
    if self.max_filter_ratio is not None:
      headers['max_filter_ratio'] = repr(self.max_filter_ratio)
    if self.strict_mode is not None:
      headers['strict_mode'] = 'true' if self.strict_mode else 'false'
    return headers


def split_table(table: str) -> Tuple[str, str]:
  """``db.tbl`` -> (db, tbl), with a clear error for anything else."""
  db, sep, tbl = table.partition('.')
  if not sep or not db or not tbl or '.' in tbl or '/' in table:
    raise ValueError(f'table {table!r} must be "db.table"')
  return db, tbl
