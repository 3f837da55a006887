"""``MysqlFeClient``: DDL and table columns over an FE's MySQL port (StarRocks; Doris if asked).

StarRocks takes DDL only over the MySQL protocol (its HTTP SQL API runs SELECT, SHOW, EXPLAIN and
KILL); Doris takes it over both. The client has ``FeSqlClient``'s interface -- ``execute(db,
stmt)``, ``table_columns(table)``, ``close()`` -- so schema evolution does not care which it has.

* The FEs are ``--fe_nodes``' hosts, on ``--query_port`` (9030 by default): the first that answers
  is used until it fails, then the next (the same failover as the HTTP side).
* One connection per client, made on first use (PyMySQL, a well-kept pure-Python driver), with
  the Stream Load user and password; TLS, verified with ``--ca_bundle``, when the FE URLs are
  https and a CA bundle is given.
* Errors by whose fault they are, as ``FeSqlClient``'s: ``FeAuthError`` (1045: the credentials),
  ``FeUnavailableError`` (no FE answered: connection refused, lost, timed out),
  ``SqlRejectedError`` (the FE answered no, with its message: ``(1064) Unknown database 'x'``).
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

from transforms.schema.config import DEFAULT_QUERY_PORT
from transforms.schema.fe_sql import (FeAuthError, FeUnavailableError, SqlRejectedError,
                                      columns_by_table, database_columns_query)
from transforms.stream_load.config import StreamLoadConfig, split_table

__all__ = ['MysqlFeClient']

_ACCESS_DENIED = (1044, 1045, 1227)
# The client could not reach the server or lost it (CR_* codes of the MySQL client library).
_UNREACHABLE = (2002, 2003, 2005, 2006, 2013, 2055)
_UNKNOWN_TABLE = ('unknown table', "doesn't exist", 'does not exist')


class MysqlFeClient:
  """Runs statements on the FEs' MySQL port (thread-safe; one per worker).

  Args:
    config: the FEs, credentials and TLS (its password is resolved here).
    query_port: the FEs' MySQL port.
    connect: ``pymysql.connect`` (tests).
  """

  def __init__(self, config: StreamLoadConfig, query_port: int = DEFAULT_QUERY_PORT,
               connect=None):
    import pymysql  # pylint: disable=import-outside-toplevel
    self._pymysql = pymysql
    self._connect = connect or pymysql.connect
    self._config = config.resolved()
    self._hosts = [urllib.parse.urlsplit(node).hostname for node in self._config.fe_nodes]
    self._port = query_port
    verify = self._config.verify
    self._ssl = ({'ca': verify} if self._config.fe_nodes[0].startswith('https://')
                 and isinstance(verify, str) else None)
    self._lock = threading.Lock()
    self._connection = None
    self._next = 0

  def close(self) -> None:
    with self._lock:
      self._drop()

  def execute(self, db: str, stmt: str) -> Any:
    """Runs one statement with ``db`` as the current database; returns its rows.

    Raises:
      SqlRejectedError: the FE answered with an error.
      FeAuthError: credentials refused.
      FeUnavailableError: no FE answered.
    """
    with self._lock:
      return self._run(db, stmt)

  def table_columns(self, table: str) -> Optional[List[Tuple[str, str]]]:
    """``(name, type)`` of the table's columns in order, or None if it does not exist."""
    db, tbl = split_table(table)
    try:
      with self._lock:
        rows = self._run(db, f'DESC `{db}`.`{tbl}`')
    except SqlRejectedError as error:
      if any(text in error.message.lower() for text in _UNKNOWN_TABLE):
        return None
      raise
    return [(str(row[0]), str(row[1]).upper()) for row in rows] or None

  def database_columns(self, db: str) -> Dict[str, List[Tuple[str, str]]]:
    """Every table of ``db`` with its ``(name, TYPE)`` columns, in one query."""
    with self._lock:
      rows = self._run('', database_columns_query(db))  # no current database: one missing is {}
    return columns_by_table(db, list(rows or ()))

  # -- connections ------------------------------------------------------------------

  def _run(self, db: str, stmt: str) -> Any:
    errors = []
    for _ in range(len(self._hosts)):
      connection = self._connected(errors)
      if connection is None:
        continue
      try:
        if db:
          connection.select_db(db)
        with connection.cursor() as cursor:
          cursor.execute(stmt)
          return cursor.fetchall()
      except self._pymysql.err.MySQLError as error:
        code = error.args[0] if error.args else None
        if code in _UNREACHABLE or isinstance(error, self._pymysql.err.InterfaceError):
          errors.append(f'{self._where()}: {_text(error)}')
          self._drop()
          self._next += 1
          continue
        if code in _ACCESS_DENIED:
          raise FeAuthError(f'FE {self._where()} refused the credentials (--user / --password): '
                            f'{_text(error)}') from None
        raise SqlRejectedError(_text(error)) from None
    raise FeUnavailableError(f'no FE answered on the MySQL port {self._port} (--query_port): '
                             + '; '.join(errors))

  def _connected(self, errors: List[str]):
    if self._connection is not None:
      return self._connection
    host = self._hosts[self._next % len(self._hosts)]
    config = self._config
    try:
      self._connection = self._connect(
          host=host, port=self._port, user=config.user, password=config.password or '',
          connect_timeout=config.connect_timeout_secs, read_timeout=config.load_timeout_secs,
          write_timeout=config.load_timeout_secs, autocommit=True, ssl=self._ssl, charset='utf8mb4')
    except self._pymysql.err.MySQLError as error:
      code = error.args[0] if error.args else None
      if code in _ACCESS_DENIED:
        raise FeAuthError(f'FE {host}:{self._port} refused the credentials (--user / '
                          f'--password): {_text(error)}') from None
      errors.append(f'{host}:{self._port}: {_text(error)}')
      self._next += 1
      return None
    return self._connection

  def _drop(self) -> None:
    if self._connection is not None:
      try:
        self._connection.close()
      except Exception:  # pylint: disable=broad-except  (closing a broken connection)
        pass
      self._connection = None

  def _where(self) -> str:
    return f'{self._hosts[self._next % len(self._hosts)]}:{self._port}'


def _text(error) -> str:
  """``(code) message`` of a driver error."""
  if len(error.args) >= 2:
    return f'({error.args[0]}) {error.args[1]}'
  return str(error)
