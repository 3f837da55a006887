"""``FeSqlClient``: a table's columns, and SQL statements (DDL) run on a Doris FE over HTTP.

* Columns: ``GET /api/{db}/{tbl}/_schema`` (Doris's ``TableSchemaAction``);
  where it cannot tell, ``information_schema.columns`` through the SQL API.  A whole
  database's columns: one ``information_schema.columns`` query (``database_columns``).
* Statements: ``POST /api/query/default_cluster/{db}`` with ``{"stmt": ...}``
  (Doris's ``StmtExecutionAction``, what flink-doris-connector's
  ``SchemaChangeManager`` sends its DDL to).  The answer is
  ``{"code": 0, "data": ...}``, or ``{"code": 1, "msg": "Error", "data":
  "errCode = 2, detailMessage = ..."}`` when the FE rejects the statement.

The HTTP side is the Stream Load client's ``Transport``: the same
credentials, TLS settings, connection pool and FE failover.  Errors by whose
fault they are: ``FeUnavailableError`` (no FE answered: the cluster's, try
later), ``FeAuthError`` (credentials refused: the configuration's),
``SqlRejectedError`` (the FE answered no to this statement, with its
message).  StarRocks runs DDL only over the MySQL protocol, so this is Doris
only.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Tuple

import requests

from transforms.errors import ClusterFault, CredentialsFault, LoaderError
from transforms.stream_load.config import StreamLoadConfig, split_table
from transforms.stream_load.errors import RetryableLoadError
from transforms.stream_load.transport import NextFe, Transport, host_of, json_or_none

__all__ = ['FeSqlClient', 'FeSqlError', 'FeUnavailableError', 'FeAuthError', 'SqlRejectedError',
           'DATABASE_COLUMNS_LIMIT', 'database_columns_query', 'columns_by_table']

# At most this many columns come back from one database's query; a table cut at the limit is left
# out (asked on its own when needed).
DATABASE_COLUMNS_LIMIT = 20_000


class FeSqlError(LoaderError):
  """Base class of the FE SQL client's failures."""


class FeUnavailableError(FeSqlError, ClusterFault):
  """No FE answered (connection refused, timeouts, HTTP 5xx): try again later."""


class FeAuthError(FeSqlError, CredentialsFault):
  """The FE refused the credentials (--user / --password)."""


class SqlRejectedError(FeSqlError):
  """The FE answered the statement with an error.

  Attributes:
    message: the FE's message (``errCode = 2, detailMessage = ...``).
  """

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


def database_columns_query(db: str) -> str:
  """The statement listing ``db``'s columns, ``(table, column, type)`` rows in table order."""
  return ('SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.columns '
          f'WHERE TABLE_SCHEMA = {_quote_literal(db)} ORDER BY TABLE_NAME, ORDINAL_POSITION '
          f'LIMIT {DATABASE_COLUMNS_LIMIT}')


def columns_by_table(db: str, rows: Sequence[Sequence[Any]]
                     ) -> Dict[str, List[Tuple[str, str]]]:
  """``db.table -> [(name, TYPE)]`` from ``database_columns_query``'s rows; at the limit, the
  last table (maybe cut) is left out."""
  found: Dict[str, List[Tuple[str, str]]] = {}
  for table, name, type_name in rows:
    found.setdefault(f'{db}.{table}', []).append((str(name), str(type_name).upper()))
  if len(rows) >= DATABASE_COLUMNS_LIMIT and rows:
    found.pop(f'{db}.{rows[-1][0]}', None)
  return found


def _quote_literal(text: str) -> str:
  return "'" + text.replace('\\', '\\\\').replace("'", "\\'") + "'"


class FeSqlClient:
  """Runs statements on the FEs and reads table columns (thread-safe; one per worker).

  Args:
    config: how to reach the FEs (its password is resolved here).
    session: a session to use (tests); else a pooled one.
  """

  def __init__(self, config: StreamLoadConfig, session: Optional[requests.Session] = None):
    self._transport = Transport(config.resolved(), session)

  def close(self) -> None:
    self._transport.close()

  def execute(self, db: str, stmt: str) -> Any:
    """Runs one statement with ``db`` as the current database; returns the answer's ``data``.

    Raises:
      SqlRejectedError: the FE answered with an error.
      FeAuthError: credentials refused.
      FeUnavailableError: no FE answered.
    """
    transport = self._transport
    path = f'/api/query/default_cluster/{urllib.parse.quote(db)}'

    def attempt(fe: str) -> Any:
      response = transport.session.post(fe + path, json={'stmt': stmt}, auth=transport.auth,
                                        allow_redirects=False, timeout=transport.state_timeout())
      return _answer(response, fe)

    return self._on_each_fe(attempt, 'SQL')

  def table_columns(self, table: str) -> Optional[List[Tuple[str, str]]]:
    """``(name, type)`` of the table's visible columns in order, or None if it does not exist.

    Raises:
      FeAuthError, FeUnavailableError: as ``execute``.
    """
    db, tbl = split_table(table)
    transport = self._transport
    path = f'/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_schema'

    def attempt(fe: str) -> Optional[List[Tuple[str, str]]]:
      response = transport.session.get(fe + path, auth=transport.auth, allow_redirects=False,
                                       timeout=transport.state_timeout())
      try:
        data = _answer(response, fe)
      except SqlRejectedError:
        return None  # no such table -- or an answer to check with the SQL API
      properties = data.get('properties') if isinstance(data, dict) else None
      if not isinstance(properties, list):
        return None
      return [(str(p.get('name')), str(p.get('type', ''))) for p in properties
              if isinstance(p, dict) and p.get('name')]

    try:
      columns = self._on_each_fe(attempt, 'table schema')
    except FeUnavailableError:
      columns = None  # an FE without the endpoint (404 / 5xx): ask the SQL API
    if columns:
      return columns
    data = self.execute(db, 'SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.columns '
                        f'WHERE TABLE_SCHEMA = {_quote_literal(db)} AND TABLE_NAME = '
                        f'{_quote_literal(tbl)} ORDER BY ORDINAL_POSITION')
    rows = data.get('data') if isinstance(data, dict) else None
    if not rows:
      return None
    return [(str(row[0]), str(row[1]).upper()) for row in rows]

  def database_columns(self, db: str) -> Dict[str, List[Tuple[str, str]]]:
    """Every table of ``db`` with its ``(name, TYPE)`` columns, in one query (``db.table`` keys;
    see ``columns_by_table``).

    Raises:
      SqlRejectedError, FeAuthError, FeUnavailableError: as ``execute``.
    """
    data = self.execute(db, database_columns_query(db))
    rows = data.get('data') if isinstance(data, dict) else None
    return columns_by_table(db, rows or [])

  def _on_each_fe(self, attempt, what: str):
    try:
      return self._transport.on_each_fe(attempt, what=what)
    except RetryableLoadError as error:
      raise FeUnavailableError(str(error)) from None


def _answer(response: requests.Response, fe: str) -> Any:
  if response.status_code in (401, 403):
    raise FeAuthError(f'FE {host_of(fe)} refused the credentials (HTTP {response.status_code})')
  if response.status_code >= 300:
    raise NextFe(f'HTTP {response.status_code}')
  body = json_or_none(response)
  if body is None:
    raise NextFe(f'HTTP {response.status_code} without a JSON body')
  code = body.get('code')
  if code == 0:
    return body.get('data')
  if code == 401 or str(body.get('msg', '')).lower() == 'unauthorized':
    raise FeAuthError(f'FE {host_of(fe)} refused the credentials (--user/--password)')
  data = body.get('data')
  message = data if isinstance(data, str) and data else str(body.get('msg') or body)
  raise SqlRejectedError(message[:2000])
