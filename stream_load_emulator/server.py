"""``StreamLoadServer``: a local Doris/StarRocks Stream Load endpoint for tests and demos.

Starts ``num_fes`` FE nodes and ``num_bes`` BE nodes on their own ports and the FE's MySQL
port (``query_port``, ``stream_load_emulator.mysql_port``), loads the schema
from Doris DDL, keeps rows in SQLite under ``data_dir`` (they survive a restart with the
same ``data_dir``), and offers fault injection, a count-only mode and a cost model. See
``stream_load_emulator/README.md`` for the behaviour and how it differs from real Doris.
"""

import decimal
import itertools
import logging
import os
import re
import shutil
import sqlite3
import ssl
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from stream_load_emulator import cost as cost_lib
from stream_load_emulator import ddl as ddl_lib
from stream_load_emulator import faults as faults_lib
from stream_load_emulator import load as load_lib
from stream_load_emulator import delete as delete_lib
from stream_load_emulator import mysql_port as mysql_port_lib
from stream_load_emulator import nodes
from stream_load_emulator import schema as schema_lib
from stream_load_emulator import starrocks as starrocks_lib
from stream_load_emulator import storage as storage_lib
from stream_load_emulator import txn as txn_lib

_LOGGER = logging.getLogger(__name__)
DEFAULT_LABEL_KEEP_MAX_SECS = 43200  # Doris streaming_label_keep_max_second
DEFAULT_MAX_RUNNING_TXN_PER_DB = 1000  # Doris max_running_txn_num_per_db
FLAVORS = ('doris', 'starrocks')
_MAX_LOG_ENTRIES = 100000
_NO_SUCH_TABLE = re.compile(r'^no such table: (?:(\w+)\.)?(\w+)$')


class SqlError(Exception):
  """A query the SQL engine refuses, with Doris's text (the FE wraps it as errCode = 2)."""


class StreamLoadServer:
  """A local Stream Load server: FE and BE HTTP nodes over SQLite storage.

  Args:
    schema_sql: Doris DDL text (CREATE DATABASE / CREATE TABLE ...).
    schema_path: a file of Doris DDL (used in addition to ``schema_sql``).
    data_dir: where the SQLite files live; None -> a temporary directory removed on stop.
    user: the one account the server accepts (Basic auth).
    password: its password.
    flavor: ``'doris'`` or ``'starrocks'``.
    host: interface to listen on.
    num_fes: number of FE nodes.
    num_bes: number of BE nodes (the FE redirects round-robin).
    fe_ports: fixed FE ports (default: free ports).
    be_ports: fixed BE ports (default: free ports).
    count_only: parse and count rows, store nothing (benchmarks).
    cost_model: a ``CostModel`` that makes loads take realistic time.
    label_keep_max_secs: how long finished labels are remembered.
    max_body_bytes: largest body a BE accepts (Doris ``streaming_load_max_mb``).
    tls_cert: PEM certificate path; with ``tls_key`` every node serves HTTPS.
    tls_key: PEM private key path.
    group_commit_interval_ms: Doris group commit interval for tables without the
      ``group_commit_interval_ms`` property (Doris: 10000).
    group_commit_data_bytes: likewise ``group_commit_data_bytes`` (Doris docs: 64 MB).
    clock: wall-clock time of labels (their retention); tests move it on.
    query_port: the FE's MySQL port (Doris ``query_port``); None or 0 -> a free port.
  """

  def __init__(self, schema_sql: Optional[str] = None, schema_path: Optional[str] = None,
               data_dir: Optional[str] = None, user: str = 'root', password: str = '',
               flavor: str = 'doris', host: str = '127.0.0.1', num_fes: int = 1,
               num_bes: int = 1, fe_ports: Optional[Sequence[int]] = None,
               be_ports: Optional[Sequence[int]] = None, count_only: bool = False,
               cost_model: Optional[cost_lib.CostModel] = None,
               label_keep_max_secs: float = DEFAULT_LABEL_KEEP_MAX_SECS,
               max_body_bytes: int = load_lib.DEFAULT_MAX_BODY_BYTES,
               tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
               group_commit_interval_ms: float = load_lib.DEFAULT_GROUP_COMMIT_INTERVAL_MS,
               group_commit_data_bytes: int = load_lib.DEFAULT_GROUP_COMMIT_DATA_BYTES,
               clock: Callable[[], float] = time.time, query_port: Optional[int] = None):
    if flavor not in FLAVORS:
      raise ValueError('flavor must be one of %s, got %r' % (FLAVORS, flavor))
    if num_fes < 1 or num_bes < 1:
      raise ValueError('num_fes and num_bes must be >= 1, got %r, %r' % (num_fes, num_bes))
    if fe_ports is not None and len(fe_ports) != num_fes:
      raise ValueError('fe_ports needs %d ports, got %r' % (num_fes, fe_ports))
    if be_ports is not None and len(be_ports) != num_bes:
      raise ValueError('be_ports needs %d ports, got %r' % (num_bes, be_ports))
    if bool(tls_cert) != bool(tls_key):
      raise ValueError('tls_cert and tls_key go together')
    if max_body_bytes <= 0:
      raise ValueError('max_body_bytes must be > 0, got %r' % max_body_bytes)
    if group_commit_interval_ms <= 0 or group_commit_data_bytes <= 0:
      raise ValueError('group_commit_interval_ms and group_commit_data_bytes must be > 0')
    self.group_commit_interval_ms = group_commit_interval_ms
    self.group_commit_data_bytes = group_commit_data_bytes
    self.user = user
    self.password = password
    self.flavor = flavor
    self.host = host
    self.count_only = count_only
    self.cost_model = cost_model
    self.label_keep_max_secs = label_keep_max_secs
    self._clock = clock
    self.max_body_bytes = max_body_bytes
    self.max_running_txn = DEFAULT_MAX_RUNNING_TXN_PER_DB
    self.catalog = schema_lib.Catalog()
    if schema_path:
      with open(schema_path, encoding='utf-8') as f:
        self.catalog.add_sql(f.read())
    if schema_sql:
      self.catalog.add_sql(schema_sql)
    self._own_data_dir = data_dir is None
    self.data_dir = data_dir
    ssl_context = None
    if tls_cert:
      ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      ssl_context.load_cert_chain(tls_cert, tls_key)
    fe_ports = list(fe_ports or [0] * num_fes)
    be_ports = list(be_ports or [0] * num_bes)
    self._fes = [nodes.Node(self, 'fe', i, host, p, ssl_context) for i, p in enumerate(fe_ports)]
    self._bes = [nodes.Node(self, 'be', i, host, p, ssl_context) for i, p in enumerate(be_ports)]
    self._mysql = mysql_port_lib.MysqlPort(self, host, query_port or 0)
    self.faults = faults_lib.FaultRegistry()
    self.be_slots = [cost_model.new_slots() if cost_model else None for _ in self._bes]
    self._rr = itertools.count()
    self._log_lock = threading.Lock()
    self._loads: List[Dict[str, Any]] = []
    self._requests: List[Dict[str, Any]] = []
    self._timers: List[threading.Timer] = []
    self.storage = None
    self.txns = None
    self.loader = None
    self.starrocks = None
    self._started = False

  # --- lifecycle ----------------------------------------------------------------------------

  def start(self) -> 'StreamLoadServer':
    """Opens storage and starts listening; returns self."""
    if self._started:
      return self
    if self.data_dir is None:
      self.data_dir = tempfile.mkdtemp(prefix='stream-load-emulator-')
    self.storage = storage_lib.Storage(self.data_dir, self.catalog)
    ddl_lib.replay(self)  # tables created / altered / dropped by an earlier run
    self.txns = txn_lib.TxnManager(self.storage, self.label_keep_max_secs, clock=self._clock)
    self.loader = load_lib.Loader(self.catalog, self.storage, self.txns, self.flavor,
                                  self.max_body_bytes, self.count_only,
                                  group_commit_interval_ms=self.group_commit_interval_ms,
                                  group_commit_data_bytes=self.group_commit_data_bytes)
    self.starrocks = starrocks_lib.TransactionApi(self)
    try:
      for node in self._fes + self._bes:
        node.start()
      self._mysql.start()
    except OSError:
      self.stop()
      raise
    self._started = True
    _LOGGER.info('Stream Load emulator (%s) FE %s BE %s MySQL %s:%d data %s', self.flavor,
                 self.fe_urls, self.be_urls, self.host, self.query_port, self.data_dir)
    return self

  def stop(self) -> None:
    """Stops all nodes and closes storage (removes a temporary data_dir)."""
    for timer in self._timers:
      timer.cancel()
    self._mysql.stop()
    for node in self._fes + self._bes:
      node.stop()
    if self.loader is not None:
      # Rows of async group commits are in Doris's WAL and replayed: commit them, do not drop.
      self.loader.group_commit.flush()
    if self.storage is not None:
      self.storage.close()
      self.storage = None
    if self._own_data_dir and self.data_dir and os.path.isdir(self.data_dir):
      shutil.rmtree(self.data_dir, ignore_errors=True)
      self.data_dir = None
    self._started = False

  def __enter__(self) -> 'StreamLoadServer':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # --- addresses ----------------------------------------------------------------------------

  @property
  def fe_urls(self) -> List[str]:
    return [n.url for n in self._fes]

  @property
  def fe_url(self) -> str:
    return self._fes[0].url

  @property
  def be_urls(self) -> List[str]:
    return [n.url for n in self._bes]

  @property
  def query_port(self) -> int:
    """The FE's MySQL port (bound after ``start()``; the requested one, or 0, before)."""
    return self._mysql.port

  def node(self, role: str, index: int) -> nodes.Node:
    return (self._fes if role == 'fe' else self._bes)[index]

  def next_be(self) -> nodes.Node:
    """Round-robin BE choice of the FE (a down BE is still chosen, as before heartbeat)."""
    return self._bes[next(self._rr) % len(self._bes)]

  # --- data ---------------------------------------------------------------------------------

  def query(self, sql: str, db: Optional[str] = None) -> List[tuple]:
    """Runs Doris SQL against the stored rows; returns a list of tuples."""
    return self.sql(sql, db)[1]

  def sql(self, sql: str, db: Optional[str] = None):
    """``(column names, rows, Doris type names)`` of a Doris SQL statement."""
    if self.storage is None:
      raise RuntimeError('server is not started')
    if ddl_lib.is_ddl(sql):
      return ddl_lib.execute(self, sql, db)
    if delete_lib.is_delete(sql):
      delete_lib.execute(self, sql, db)
      return [], [], []
    try:
      names, rows = self.storage.query(sql, db)
    except sqlite3.OperationalError as e:
      missing = _NO_SUCH_TABLE.match(str(e))
      if missing is None:
        raise
      raise SqlError('Table [%s] does not exist in database [%s].' % (
          missing.group(2), missing.group(1) or db)) from e
    types = [_type_of([r[i] for r in rows]) for i in range(len(names))]
    return names, rows, types

  def check_password(self, user: str, password: str) -> bool:
    if user.startswith('default_cluster:'):
      user = user[len('default_cluster:'):]
    return user == self.user and password == self.password

  def db_id(self, db: str) -> int:
    """A stable fake database id for messages (Doris prints ids, not names)."""
    names = sorted(self.catalog.databases)
    return 10000 + (names.index(db) if db in names else len(names))

  def make_visible_later(self, txn: txn_lib.Txn, delay_secs: Optional[float]) -> None:
    """After a Publish Timeout: the label turns VISIBLE once publish "finishes"."""
    timer = threading.Timer(1.0 if delay_secs is None else delay_secs,
                            self.txns.mark_visible, args=(txn,))
    timer.daemon = True
    self._timers.append(timer)
    timer.start()

  def table_version(self, db: str, table: str) -> int:
    """Transactions committed into ``db.table`` since start: one per load, one per merged
    group commit (Doris: one data version each)."""
    return self.txns.versions.get((db, table), 0) if self.txns else 0

  # --- group commit / merge commit ----------------------------------------------------------

  @property
  def group_commits(self) -> List[Dict[str, Any]]:
    """Finished merged transactions (Doris group commit, StarRocks merge commit), oldest
    first: kind, label, txn_id, db, table, loads (how many loads it merged), rows, bytes,
    status (VISIBLE / ABORTED), message."""
    return self.loader.group_commit.snapshot() if self.loader else []

  def flush_group_commits(self) -> int:
    """Commits every open merged transaction now (as if its interval were over); returns
    how many were committed."""
    return self.loader.group_commit.flush() if self.loader else 0

  def wait_group_commit_pending(self, n: int, timeout: float = 30.0) -> bool:
    """Blocks until ``n`` loads wait in open merged transactions (tests synchronise on this
    instead of sleeping); False on timeout."""
    return self.loader.group_commit.wait_pending(n, timeout)

  # --- faults -------------------------------------------------------------------------------

  def inject_fault(self, kind: str, times: Optional[int] = 1, node=None,
                   delay_secs: Optional[float] = None, table: Optional[str] = None) -> None:
    """Injects a fault; see ``stream_load_emulator.faults`` for the kinds.

    Args:
      kind: one of ``faults.KINDS``.
      times: how many requests it affects; None until ``clear_faults()``.
      node: FE/BE index (BE for load faults, FE for ``fe_down``) or ``'fe0'``/``'be1'``.
      delay_secs: for ``slow`` (default 2 s) and ``publish_timeout`` (when VISIBLE).
      table: only loads into this table (``'db.tbl'`` or ``'tbl'``).
    """
    self.faults.add(kind, times, node, delay_secs, table)
    self.sync_nodes()

  def clear_faults(self) -> None:
    """Removes all faults and brings every node back up."""
    self.faults.clear()
    self.sync_nodes()

  def sync_nodes(self, keep=None) -> None:
    """Takes nodes down / up to match the ``*_down`` faults.

    Args:
      keep: a connection not to drop (the admin request that asked for the change).
    """
    if not self._started:
      return
    for node in self._fes + self._bes:
      down = self.faults.is_down(node.role, node.index)
      if down and node.running:
        node.stop(keep=keep)
      elif not down and not node.running:
        node.start()
    # The MySQL port is FE 0's: it goes down and comes back with it.
    if self.faults.is_down('fe', 0):
      self._mysql.stop()
    else:
      self._mysql.start()

  # --- logs ---------------------------------------------------------------------------------

  @property
  def loads(self) -> List[Dict[str, Any]]:
    """Finished load attempts, oldest first."""
    with self._log_lock:
      return list(self._loads)

  @property
  def request_log(self) -> List[Dict[str, Any]]:
    """Every HTTP request: method, path, node (``'fe0'``/``'be1'``), had_authorization."""
    with self._log_lock:
      return list(self._requests)

  def log_request(self, method: str, path: str, node: str, had_authorization: bool) -> None:
    with self._log_lock:
      if len(self._requests) >= _MAX_LOG_ENTRIES:
        del self._requests[:_MAX_LOG_ENTRIES // 10]
      self._requests.append({'method': method, 'path': path, 'node': node,
                             'had_authorization': had_authorization, 'time': time.time()})

  def record_load(self, ctx, db, table, status, headers, be_index, response=None) -> None:
    entry = {
        'label': ctx.label if ctx else headers.get('label'),
        'db': db, 'table': table, 'status': status,
        'message': ctx.message if ctx else '',
        'txn_id': ctx.txn_id if ctx else -1,
        'total_rows': ctx.total_rows if ctx else 0,
        'loaded_rows': ctx.loaded_rows if ctx else 0,
        'filtered_rows': ctx.filtered_rows if ctx else 0,
        'unselected_rows': ctx.unselected_rows if ctx else 0,
        'load_bytes': ctx.receive_bytes if ctx else 0,
        'two_phase_commit': ctx.two_phase_commit if ctx else False,
        'group_commit': (ctx.group_commit_mode or ('merge_commit' if ctx.merge_commit else
                                                   None)) if ctx else None,
        'headers': headers, 'be': be_index, 'response': response, 'time': time.time(),
    }
    with self._log_lock:
      if len(self._loads) >= _MAX_LOG_ENTRIES:
        del self._loads[:_MAX_LOG_ENTRIES // 10]
      self._loads.append(entry)


def _type_of(values) -> str:
  for v in values:
    if v is None:
      continue
    if isinstance(v, bool):
      return 'BOOLEAN'
    if isinstance(v, int):
      return 'BIGINT'
    if isinstance(v, float):
      return 'DOUBLE'
    if isinstance(v, decimal.Decimal):
      return 'DECIMAL'
    return 'VARCHAR'
  return 'NULL_TYPE'
