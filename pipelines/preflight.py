"""Start-up checks: fail before reading Kafka when the FE or a table is wrong.

A pipeline that starts, reads, batches and only then learns that the FE is
unreachable or that a table does not exist wastes minutes and floods dead
letters.  The FE's table schema endpoint (``GET /api/{db}/{tbl}/_schema``,
Doris's ``TableSchemaAction``, also served by StarRocks) answers both
questions in one request per table.
"""

from __future__ import annotations

import urllib.parse
from typing import Iterable, List

import orjson
import requests

from transforms.stream_load_client import StreamLoadConfig, split_table

__all__ = ['PreflightError', 'check_tables']


class PreflightError(RuntimeError):
  """The cluster or a table is not usable; the message says which and why."""


def check_tables(config: StreamLoadConfig, tables: Iterable[str]) -> None:
  """Checks that some FE answers and that each table exists.

  Raises:
    PreflightError: no FE reachable, credentials refused, or a table missing.
  """
  tables = sorted(set(tables))
  session = requests.Session()
  session.trust_env = False
  session.verify = config.verify
  auth = (config.user, config.password)
  timeout = (config.connect_timeout_secs, max(10.0, config.connect_timeout_secs))
  try:
    fe_errors: List[str] = []
    for fe in config.fe_nodes:
      try:
        missing = []
        for table in tables:
          db, tbl = split_table(table)
          url = f'{fe}/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_schema'
          response = session.get(url, auth=auth, timeout=timeout, allow_redirects=False)
          if response.status_code == 404:
            # An FE without the schema endpoint: ask its SQL API instead.
            response = session.post(f'{fe}/api/query/default_cluster/{urllib.parse.quote(db)}',
                                    json={'stmt': f'SELECT * FROM `{tbl}` LIMIT 0'}, auth=auth,
                                    timeout=timeout, allow_redirects=False)
          if not _table_found(response, fe, table):
            missing.append(table)
        if missing:
          raise PreflightError(f'table(s) not found on {_host(fe)}: {", ".join(missing)} '
                               '(check --table / --topic_table_map / --table_config, and that '
                               'the tables were created)')
        return
      except requests.RequestException as error:
        fe_errors.append(f'{_host(fe)}: {type(error).__name__}')
    raise PreflightError('no FE reachable (--fe_nodes): ' + '; '.join(fe_errors))
  finally:
    session.close()


def _table_found(response: requests.Response, fe: str, table: str) -> bool:
  if response.status_code in (401, 403):
    raise PreflightError(f'{_host(fe)} refused the credentials (--user/--password)')
  try:
    body = orjson.loads(response.content)
  except orjson.JSONDecodeError:
    body = None
  if isinstance(body, dict):
    if body.get('code') == 401 or str(body.get('msg', '')).lower() == 'unauthorized':
      raise PreflightError(f'{_host(fe)} refused the credentials (--user/--password)')
    if body.get('code') == 0 and response.status_code == 200:
      return True
    return False
  if response.status_code == 404:
    return False
  raise PreflightError(f'{_host(fe)} answered HTTP {response.status_code} to the schema request '
                       f'for {table}')


def _host(url: str) -> str:
  parts = urllib.parse.urlsplit(url)
  return f'{parts.hostname}:{parts.port}'
