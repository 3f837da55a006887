"""The FE's MySQL port (Doris ``query_port``, 9030): the MySQL protocol on mysql-mimic.

A client (``mysql``, pymysql, JDBC) logs in with the server's user and password (Doris's
``default_cluster:`` prefix accepted); a wrong one gets MySQL error 1045 with Doris's text
(``Access denied for user 'root@127.0.0.1' (using password: YES)``). Then:

* SELECT (and ``WITH``) over stored tables, ``CREATE DATABASE``, ``CREATE TABLE``,
  ``ALTER TABLE ... ADD / DROP / MODIFY / RENAME COLUMN``, ``TRUNCATE TABLE``, ``DROP TABLE``,
  ``DELETE FROM ... WHERE`` and ``DESC`` run on the server's SQL engine
  (``StreamLoadServer.sql``, the engine of the HTTP SQL API, same rules and messages, see
  ``ddl`` and ``delete``); errors come back as Doris sends them:
  ``errCode = 2, detailMessage = ...``, MySQL error 1105 (1109 for DROP TABLE of an unknown
  table, 1049 for an unknown database).
* ``USE db`` and the connection's default database (``COM_INIT_DB``; 1049 for an unknown
  database).
* ``SHOW DATABASES [LIKE]``, ``SHOW [FULL] TABLES [FROM db] [LIKE]``,
  ``SHOW CREATE TABLE [db.]tbl`` (``Table``, ``Create Table``: a DDL rendered from the
  catalog that the emulator's DDL parser accepts again) and ``SHOW TRANSACTION [FROM db]
  WHERE id = n | label = 'x' | label LIKE 'x%' | status = 'visible'`` with Doris 2.1's columns
  (``TransProcDir.TITLE_NAMES``; fe ``ShowTransactionCommand``, ``DatabaseTransactionMgr``).
* What clients send on connect: ``SET NAMES``, ``SET autocommit``, ``SELECT
  @@version_comment LIMIT 1``, ``SELECT DATABASE()``, ``SHOW VARIABLES LIKE ...`` (mysql-mimic's
  session middlewares), with Doris's ``version`` (5.7.99) and ``version_comment``.

Other statements (INSERT, UPDATE, other DROPs, other SHOWs) are refused with MySQL error 1235:
rows are loaded with Stream Load. The server runs on its own asyncio event loop in a daemon thread;
blocking work (SQLite) runs in the loop's thread pool so one slow query does not hold the rest.
"""

import asyncio
import contextvars
import datetime
import functools
import logging
import os
import re
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import sqlglot
from mysql_mimic import ColumnType, IdentityProvider, MysqlServer, ResultColumn, Session, User
from mysql_mimic import NativePasswordAuthPlugin
from mysql_mimic.auth import Forbidden, Success
from mysql_mimic.errors import MysqlError
from mysql_mimic.variables import SYSTEM_VARIABLES, GlobalVariables, SessionVariables

from stream_load_emulator import ddl as ddl_lib
from stream_load_emulator import delete as delete_lib
from stream_load_emulator import schema as schema_lib
from stream_load_emulator import txn as txn_lib

_LOGGER = logging.getLogger(__name__)

ER_NO_DB_ERROR = 1046
ER_BAD_DB_ERROR = 1049
ER_UNKNOWN_ERROR = 1105
ER_UNKNOWN_TABLE = 1109
ER_NOT_SUPPORTED_YET = 1235
INFORMATION_SCHEMA = 'information_schema'
STREAM_LOAD_DEFAULT_TIMEOUT_MS = 86400 * 3 * 1000  # Doris stream_load_default_timeout_second
TRANSACTION_COLUMNS = (
    'TransactionId', 'Label', 'Coordinator', 'TransactionStatus', 'LoadJobSourceType',
    'PrepareTime', 'PreCommitTime', 'CommitTime', 'PublishTime', 'FinishTime', 'Reason',
    'ErrorReplicasCount', 'ListenerId', 'TimeoutMs', 'ErrMsg')
_TXN_WHERE_HELP = ("Where clause should looks like one of them: id = 123 or label =/like 'label' "
                   "or status = 'prepare/precommitted/committed/visible/aborted'")
_TXN_STATUSES = ('PREPARE', 'PRECOMMITTED', 'COMMITTED', 'VISIBLE', 'ABORTED')

# What the server reports about itself (``SELECT @@version``, the handshake).
_VERSIONS = {
    'doris': ('5.7.99', 'Doris version doris-2.1.x-emulator'),
    'starrocks': ('5.1.0', 'StarRocks version 3.3.x-emulator'),
}
# Doris session variables clients read or set on connect, next to mysql-mimic's MySQL ones
# (name: (type, default, settable)).
_EXTRA_VARIABLES = {
    'query_timeout': (int, 900, True),
    'insert_timeout': (int, 14400, True),
    'exec_mem_limit': (int, 2147483648, True),
    'enable_profile': (bool, False, True),
    'query_cache_size': (int, 1048576, True),
    'query_cache_type': (str, 'OFF', True),
    'tx_isolation': (str, 'REPEATABLE-READ', True),
    'tx_read_only': (bool, False, True),
    'character_set_system': (str, 'utf8mb4', False),
    'language': (str, '/palo/share/english/', False),
}

_LITERAL = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_NAME = r'([`\w]+)'
_SHOW_DATABASES = re.compile(r'^SHOW\s+(?:DATABASES|SCHEMAS)(?:\s+LIKE\s+%s)?$' % _LITERAL, re.I)
_SHOW_TABLES = re.compile(r'^SHOW\s+(FULL\s+)?TABLES(?:\s+(?:FROM|IN)\s+%s)?(?:\s+LIKE\s+%s)?$'
                          % (_NAME, _LITERAL), re.I)
_SHOW_CREATE_TABLE = re.compile(r'^SHOW\s+CREATE\s+TABLE\s+([`\w.]+)$', re.I)
_SHOW_TRANSACTION = re.compile(r'^SHOW\s+TRANSACTION(?:\s+(?:FROM|IN)\s+%s)?(?:\s+WHERE\s+(.*))?$'
                               % _NAME, re.I | re.S)
_TXN_CONDITION = re.compile(r'^\(?\s*`?(\w+)`?\s*(=|LIKE\b)\s*(%s|-?\d+)\s*\)?$' % _LITERAL,
                            re.I | re.S)
_QUERY = re.compile(r'^[(\s]*(SELECT|WITH)\b', re.I)

# ``StreamLoadServer.sql`` type names -> the MySQL column type sent to the client.
_COLUMN_TYPES = {'BIGINT': ColumnType.LONGLONG, 'DOUBLE': ColumnType.DOUBLE,
                 'DECIMAL': ColumnType.NEWDECIMAL, 'BOOLEAN': ColumnType.TINY}
# Doris prints these type names differently in SHOW CREATE TABLE.
_SHOW_TYPE_NAMES = {'STRING': 'text', 'DATEV2': 'date', 'DATETIMEV2': 'datetime',
                    'DECIMALV3': 'decimal'}
_KEYS_CLAUSE = {schema_lib.DUPLICATE: 'DUPLICATE KEY', schema_lib.UNIQUE: 'UNIQUE KEY',
                schema_lib.AGGREGATE: 'AGGREGATE KEY', schema_lib.PRIMARY: 'PRIMARY KEY'}
_DEFAULT_FUNCTION = re.compile(r'^(CURRENT_TIMESTAMP|CURRENT_DATE|NOW)(\(\d*\))?$', re.I)

# The client address of the connection being served (for Doris's access-denied text).
_PEER_HOST = contextvars.ContextVar('stream_load_emulator_mysql_peer', default='127.0.0.1')


def doris_error(message: str, code: int = ER_UNKNOWN_ERROR) -> MysqlError:
  """A MySQL error the way Doris's FE sends an ``AnalysisException``."""
  return MysqlError('errCode = 2, detailMessage = %s' % message, code)  # type: ignore[arg-type]


def _unquote(literal: str) -> str:
  body = literal[1:-1]
  return re.sub(r'\\(.)', r'\1', body)


def _like(pattern: str) -> re.Pattern:
  """A MySQL ``LIKE`` pattern (``%``, ``_``) as a case-insensitive regular expression."""
  parts = ['.*' if ch == '%' else '.' if ch == '_' else re.escape(ch) for ch in pattern]
  return re.compile(''.join(parts), re.I | re.S)


def _time_text(ts: Optional[float]) -> Optional[str]:
  """Doris ``TimeUtils.longToTimeString``: local time, NULL (``\\N``, sent as NULL) if unset."""
  if not ts or ts <= 0:
    return None
  return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ts))


def _varchar_columns(names: Sequence[str]) -> List[ResultColumn]:
  return [ResultColumn(name, ColumnType.VARCHAR) for name in names]


def _table_name(text: str, db: Optional[str]) -> Tuple[str, str]:
  parts = [p.strip('`') for p in text.split('.')]
  if len(parts) == 2:
    return parts[0], parts[1]
  if not db:
    raise doris_error('No database selected', ER_NO_DB_ERROR)
  return db, parts[0]


# --- SHOW CREATE TABLE ------------------------------------------------------------------------

def _column_sql(column: schema_lib.Column, keys_type: str) -> str:
  """One column as Doris's ``Column.toSql`` prints it."""
  type_name = _SHOW_TYPE_NAMES.get(column.type_name, column.type_name.lower())
  if column.params:
    type_name += '(%s)' % ','.join(str(p) for p in column.params)
  text = '`%s` %s' % (column.name, type_name)
  if column.aggregation and keys_type == schema_lib.AGGREGATE and not column.is_key:
    text += ' ' + column.aggregation
  text += ' NULL' if column.nullable else ' NOT NULL'
  if column.has_default and column.default is not None:
    function = _DEFAULT_FUNCTION.match(column.default)
    if function:  # sqlglot reads CURRENT_TIMESTAMP as NOW()
      name = function.group(1).upper()
      text += ' DEFAULT %s' % ('CURRENT_TIMESTAMP' if name == 'NOW' else name)
    else:
      text += ' DEFAULT "%s"' % column.default.replace('\\', '\\\\').replace('"', '\\"')
  return text


def show_create_table(table: schema_lib.Table, flavor: str = 'doris') -> str:
  """``CREATE TABLE`` text for ``table`` in the layout of Doris's ``SHOW CREATE TABLE``.

  The emulator keeps the hash columns of ``DISTRIBUTED BY`` (the key columns when the DDL
  named none) but no bucket count (``AUTO``); column comments are not kept either.
  """
  keys = ', '.join('`%s`' % k for k in table.key_columns)
  distribution = 'RANDOM' if table.distribution == [] else 'HASH(%s)' % ', '.join(
      '`%s`' % c for c in table.distribution_columns)
  lines = ['CREATE TABLE `%s` (' % table.name,
           ',\n'.join('  ' + _column_sql(c, table.keys_type) for c in table.columns),
           ') ENGINE=OLAP',
           '%s(%s)' % (_KEYS_CLAUSE[table.keys_type], keys),
           "COMMENT 'OLAP'",
           'DISTRIBUTED BY %s BUCKETS AUTO' % distribution]
  properties = dict(table.properties)
  if flavor == 'doris' and 'replication_allocation' not in properties:
    replicas = properties.pop('replication_num', None) or '3'  # Doris's default: 3 replicas
    properties = {'replication_allocation': 'tag.location.default: %s' % replicas, **properties}
  if properties:
    lines += ['PROPERTIES (', ',\n'.join('"%s" = "%s"' % kv for kv in properties.items()), ')']
  return '\n'.join(lines) + ';'


# --- SHOW TRANSACTION -------------------------------------------------------------------------

def _transaction_row(app, txn: txn_lib.Txn, loads) -> List[Optional[str]]:
  """One row of ``SHOW TRANSACTION`` (``DatabaseTransactionMgr.getTxnStateInfo``)."""
  load = loads.get(txn.txn_id)
  headers = {k.lower(): v for k, v in ((load or {}).get('headers') or {}).items()}
  timeout = headers.get('timeout', '')
  timeout_ms = int(timeout) * 1000 if timeout.isdigit() else STREAM_LOAD_DEFAULT_TIMEOUT_MS
  be = load.get('be') if load else None
  host = app.node('be', be).host if isinstance(be, int) else app.host
  status = txn.status
  commit_time = txn.commit_time if status in (txn_lib.COMMITTED, txn_lib.VISIBLE) else None
  publish_time = txn.finished if status == txn_lib.VISIBLE else None
  finish_time = txn.finished if status in (txn_lib.VISIBLE, txn_lib.ABORTED) else None
  return [str(txn.txn_id), txn.label, 'BE: %s' % host, status, 'BACKEND_STREAMING',
          _time_text(txn.created), _time_text(txn.precommit_time), _time_text(commit_time),
          _time_text(publish_time), _time_text(finish_time), txn.abort_reason, '0', '-1',
          str(timeout_ms), '']


def show_transaction(app, db: Optional[str], where: Optional[str]):
  """Rows of ``SHOW TRANSACTION [FROM db] WHERE ...`` (Doris's ``ShowTransactionCommand``)."""
  if not db:
    raise doris_error('No database selected', ER_NO_DB_ERROR)
  if where is None:
    raise doris_error('Missing transaction id')
  match = _TXN_CONDITION.match(where.strip())
  if not match:
    raise doris_error(_TXN_WHERE_HELP)
  key, op, value = match.group(1).lower(), match.group(2).upper(), match.group(3)
  is_text = value[0] in '\'"'
  if db not in app.catalog.databases:
    raise doris_error("Unknown database '%s'" % db, ER_BAD_DB_ERROR)
  if key == 'id' and op == '=' and not is_text:
    txns = app.txns.transactions(db, txn_id=int(value))
    if not txns:
      raise doris_error('transaction with id %s does not exist' % value)
  elif key == 'label' and is_text and op == '=':
    label = _unquote(value)
    txns = app.txns.transactions(db, label=label)
    if not txns:
      raise doris_error('transaction with label %s does not exist' % label)
  elif key == 'label' and is_text:  # LIKE: Doris turns % into .* and matches the whole label
    pattern = '.*'.join(re.escape(p) for p in _unquote(value).split('%'))
    txns = app.txns.transactions(db, label_regex=pattern)
  elif key == 'status' and op == '=' and is_text:
    status = _unquote(value).upper()
    if status not in _TXN_STATUSES:
      raise doris_error('status should be prepare/precommitted/committed/visible/aborted')
    txns = app.txns.transactions(db, status=status)
  else:
    raise doris_error(_TXN_WHERE_HELP)
  loads = {entry['txn_id']: entry for entry in app.loads if entry.get('txn_id', -1) > 0}
  return [_transaction_row(app, t, loads) for t in txns], _varchar_columns(TRANSACTION_COLUMNS)


# --- authentication ---------------------------------------------------------------------------

class _DorisNativePassword(NativePasswordAuthPlugin):
  """``mysql_native_password`` whose refusal carries Doris's access-denied text."""

  async def auth(self, auth_info=None):
    info = auth_info
    state = super().auth(auth_info)
    decision = await state.__anext__()
    while True:
      if isinstance(decision, Forbidden):
        user = info.username if info is not None else ''
        yield Forbidden("Access denied for user '%s@%s' (using password: %s)" % (
            user, _PEER_HOST.get(), 'YES' if info is not None and info.data else 'NO'))
        return
      if isinstance(decision, Success):
        yield decision
        return
      info = yield decision
      decision = await state.asend(info)


class _Identity(IdentityProvider):
  """One account, the server's user (``default_cluster:`` prefix accepted)."""

  def __init__(self, app):
    self._app = app
    self._plugin = _DorisNativePassword()
    # Unknown users get a password nobody knows, so they are refused with 1045 like Doris.
    self._nobody = NativePasswordAuthPlugin.create_auth_string(os.urandom(16).hex())

  def get_plugins(self):
    return [self._plugin]

  async def get_user(self, username: str) -> Optional[User]:
    name = username[len('default_cluster:'):] if username.startswith('default_cluster:') else (
        username)
    if name == self._app.user:
      password = self._app.password
      auth_string = NativePasswordAuthPlugin.create_auth_string(password) if password else None
    else:
      auth_string = self._nobody
    return User(name=username, auth_string=auth_string, auth_plugin=self._plugin.name)


class _Server(MysqlServer):
  """Notes each connection's client address before mysql-mimic serves it (mysql-mimic 3.0.5
  does not hand it to the auth plugins)."""

  async def _client_connected_cb(self, reader, writer):
    peer = writer.get_extra_info('peername')
    _PEER_HOST.set(peer[0] if peer else '127.0.0.1')
    try:
      await super()._client_connected_cb(reader, writer)
    except asyncio.CancelledError:
      # stop() cancels the connections (mysql-mimic closes the socket on its way out). End the
      # task normally: asyncio 3.11's stream callback logs a cancelled one as an error.
      pass


# --- the session ------------------------------------------------------------------------------

class _DorisSession(Session):
  """One MySQL connection: Doris statements on the emulator, the rest on mysql-mimic."""

  def __init__(self, app, variables: GlobalVariables):
    super().__init__(SessionVariables(variables))
    self._app = app
    self._statement: Optional[str] = None
    # INFORMATION_SCHEMA queries go to the emulator's own tables (as on the HTTP SQL API).
    self.middlewares = [m for m in self.middlewares if m != self._info_schema_middleware]

  def timezone(self):
    try:
      return super().timezone()
    except MysqlError:  # a Doris zone name (SET time_zone = 'Asia/Shanghai'): keep UTC
      return datetime.timezone.utc

  async def _blocking(self, fn: Callable[..., Any], *args) -> Any:
    """Runs ``fn`` in the loop's thread pool; other errors become Doris errors (1105)."""
    loop = asyncio.get_running_loop()
    try:
      return await loop.run_in_executor(None, functools.partial(fn, *args))
    except MysqlError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise doris_error(str(e), getattr(e, 'mysql_code', None) or ER_UNKNOWN_ERROR) from e

  async def handle_query(self, sql: str, attrs):
    text = sql.strip().rstrip(';').strip()
    handler = self._doris_statement(text)
    if handler is not None:
      return await self._blocking(handler, text)
    try:
      return await super().handle_query(sql, attrs)
    except sqlglot.errors.ParseError:  # Doris syntax MySQL's parser does not know
      return await self._blocking(self._run_sql, text)

  def _parse(self, sql: str):
    expressions = super()._parse(sql)
    self._statement = sql.strip().rstrip(';').strip() if len(expressions) == 1 else None
    return expressions

  async def query(self, expression, sql: str, attrs):
    """The end of mysql-mimic's middlewares: a query for the emulator's SQL engine."""
    del sql, attrs
    text = self._statement or expression.sql(dialect='doris')
    return await self._blocking(self._run_sql, text)

  async def use(self, database: str) -> None:
    if database.lower() != INFORMATION_SCHEMA and database not in self._app.catalog.databases:
      raise doris_error("Unknown database '%s'" % database, ER_BAD_DB_ERROR)
    self.database = database

  def _doris_statement(self, text: str) -> Optional[Callable[[str], Any]]:
    """The handler of a statement the emulator answers itself, None for mysql-mimic's."""
    if ddl_lib.is_ddl(text) or delete_lib.is_delete(text):
      return self._run_sql
    for pattern, handler in ((_SHOW_DATABASES, self._show_databases),
                             (_SHOW_TABLES, self._show_tables),
                             (_SHOW_CREATE_TABLE, self._show_create_table),
                             (_SHOW_TRANSACTION, self._show_transaction)):
      if pattern.match(text):
        return handler
    return None

  # --- handlers (run in the thread pool) ---

  def _run_sql(self, text: str):
    if not (ddl_lib.is_ddl(text) or delete_lib.is_delete(text) or _QUERY.match(text)):
      raise MysqlError('The emulator\'s MySQL port runs SELECT, SHOW, DESC, CREATE DATABASE, '
                       'CREATE TABLE, ALTER TABLE ADD / DROP / MODIFY / RENAME COLUMN, '
                       'TRUNCATE TABLE, DROP TABLE and DELETE FROM ... WHERE; load rows '
                       'with Stream Load: '
                       + text[:60], ER_NOT_SUPPORTED_YET)  # type: ignore[arg-type]
    names, rows, types = self._app.sql(text, self.database)
    if not names:
      return [], []
    columns = [ResultColumn(n, _COLUMN_TYPES.get(t, ColumnType.VARCHAR))
               for n, t in zip(names, types)]
    return [list(r) for r in rows], columns

  def _show_databases(self, text: str):
    like = _SHOW_DATABASES.match(text).group(1)
    with self._app.storage.lock:
      names = sorted(set(self._app.catalog.databases) | {INFORMATION_SCHEMA})
    if like:
      pattern = _like(_unquote(like))
      names = [n for n in names if pattern.fullmatch(n)]
    return [[n] for n in names], _varchar_columns(['Database'])

  def _show_tables(self, text: str):
    match = _SHOW_TABLES.match(text)
    full, db, like = match.group(1), (match.group(2) or '').strip('`') or self.database, (
        match.group(3))
    if not db:
      raise doris_error('No database selected', ER_NO_DB_ERROR)
    with self._app.storage.lock:
      if db.lower() == INFORMATION_SCHEMA:
        names = ['columns']
      elif db in self._app.catalog.databases:
        names = sorted(self._app.catalog.databases[db])
      else:
        raise doris_error("Unknown database '%s'" % db, ER_BAD_DB_ERROR)
    if like:
      pattern = _like(_unquote(like))
      names = [n for n in names if pattern.fullmatch(n)]
    columns = ['Tables_in_%s' % db] + (['Table_type'] if full else [])
    rows = [[n, 'BASE TABLE'] if full else [n] for n in names]
    return rows, _varchar_columns(columns)

  def _show_create_table(self, text: str):
    db, tbl = _table_name(_SHOW_CREATE_TABLE.match(text).group(1), self.database)
    with self._app.storage.lock:
      if db not in self._app.catalog.databases:
        raise doris_error("Unknown database '%s'" % db, ER_BAD_DB_ERROR)
      table = self._app.catalog.table(db, tbl)
      if table is None:
        raise doris_error("Unknown table '%s' in %s" % (tbl, db), ER_UNKNOWN_TABLE)
      ddl = show_create_table(table, self._app.flavor)
    return [[table.name, ddl]], _varchar_columns(['Table', 'Create Table'])

  def _show_transaction(self, text: str):
    match = _SHOW_TRANSACTION.match(text)
    db = (match.group(1) or '').strip('`') or self.database
    return show_transaction(self._app, db, match.group(2))


# --- the port ---------------------------------------------------------------------------------

def session_variables(flavor: str) -> GlobalVariables:
  """MySQL's system variables as mysql-mimic keeps them, with Doris's (or StarRocks's)
  version, engine and the session variables clients touch."""
  version, comment = _VERSIONS[flavor]
  schema = dict(SYSTEM_VARIABLES)
  schema.update(_EXTRA_VARIABLES)
  schema.update({
      'version': (str, version, False),
      'version_comment': (str, comment, False),
      'license': (str, 'Apache License, Version 2.0', False),
      'default_storage_engine': (str, 'olap', True),
      'default_tmp_storage_engine': (str, 'olap', True),
      'sql_mode': (str, 'ONLY_FULL_GROUP_BY', True),
      'transaction_isolation': (str, 'REPEATABLE-READ', True),
  })
  return GlobalVariables(schema)


class MysqlPort:
  """The MySQL listener of a ``StreamLoadServer``: its own event loop in a daemon thread.

  ``stop()`` closes the listening socket and drops open connections (clients see the
  connection lost); ``start()`` binds the same port again (a down FE coming back).
  """

  def __init__(self, app, host: str, port: int = 0):
    self.app = app
    self.host = host
    self.port = port
    self._variables = session_variables(app.flavor)
    self._identity = _Identity(app)
    self._loop: Optional[asyncio.AbstractEventLoop] = None
    self._thread: Optional[threading.Thread] = None
    self._server: Optional[_Server] = None
    self._lock = threading.Lock()

  @property
  def running(self) -> bool:
    return self._thread is not None

  def start(self) -> None:
    """Binds the port (a free one when 0) and serves; raises OSError if it cannot bind."""
    with self._lock:
      if self._thread is not None:
        return
      loop = asyncio.new_event_loop()
      server = _Server(session_factory=lambda: _DorisSession(self.app, self._variables),
                       identity_provider=self._identity)
      ready = threading.Event()
      failure: List[BaseException] = []

      def serve():
        asyncio.set_event_loop(loop)
        try:
          loop.run_until_complete(server.start_server(host=self.host, port=self.port))
        except BaseException as e:  # pylint: disable=broad-except
          failure.append(e)
          ready.set()
          loop.close()
          return
        ready.set()
        loop.run_forever()
        loop.close()

      thread = threading.Thread(target=serve, name='stream-load-mysql', daemon=True)
      thread.start()
      ready.wait()
      if failure:
        thread.join()
        raise failure[0]
      self.port = server.sockets()[0].getsockname()[1]
      self._loop, self._thread, self._server = loop, thread, server
      _LOGGER.info('MySQL port of the Stream Load emulator on %s:%d', self.host, self.port)

  def stop(self, timeout: float = 10.0) -> None:
    """Closes the listening socket and every open connection, then the event loop."""
    with self._lock:
      loop, thread, server = self._loop, self._thread, self._server
      self._loop = self._thread = self._server = None
      if thread is None:
        return
      try:
        asyncio.run_coroutine_threadsafe(_shutdown(server), loop).result(timeout)
      except Exception:  # pylint: disable=broad-except
        _LOGGER.exception('MySQL port did not shut down cleanly')
      loop.call_soon_threadsafe(loop.stop)
      thread.join(timeout)


async def _shutdown(server: MysqlServer) -> None:
  server.close()
  current = asyncio.current_task()
  tasks = [t for t in asyncio.all_tasks() if t is not current]  # the connections
  for task in tasks:
    task.cancel()
  await asyncio.gather(*tasks, return_exceptions=True)
  await server.wait_closed()
  await asyncio.get_running_loop().shutdown_default_executor()
