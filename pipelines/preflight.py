"""Start-up checks: fail before reading Kafka when the FE or a table is wrong.

A pipeline that starts, reads, batches and only then learns that the FE is
unreachable or that a table does not exist wastes minutes and floods dead
letters.  The FE's table schema endpoint (``GET /api/{db}/{tbl}/_schema``,
Doris's ``TableSchemaAction``, also served by StarRocks) answers both
questions in one request per table.  With ``--create_tables`` a missing
table is no failure: the loader creates it from its first rows (logged).
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Iterable, List, Optional, Tuple

import orjson
import requests

from transforms.errors import LoaderError
from transforms.stream_load.config import StreamLoadConfig, split_table

__all__ = ['PreflightError', 'check_tables']

_LOGGER = logging.getLogger(__name__)


class PreflightError(LoaderError, RuntimeError):
  """The cluster or a table is not usable; the message says which and why."""


def check_tables(config: StreamLoadConfig, tables: Iterable[str],
                 create_missing: bool = False) -> None:
  """Checks that some FE answers and that each table exists.

  A table counts as missing only on a definite answer (the FE says so); an
  FE that has neither endpoint is reachable but cannot tell, and the run
  goes on with a warning (a missing table then shows up as dead letters).

  Args:
    config: how to reach the FEs.
    tables: ``db.tbl`` names.
    create_missing: ``--create_tables``: missing tables are logged (they
      will be created), not a failure.

  Raises:
    PreflightError: no FE reachable, credentials refused, or a table missing.
  """
  tables = sorted(set(tables))
  session = requests.Session()
  session.trust_env = False
  session.verify = config.verify
  config = config.resolved()
  auth = (config.user, config.password)
  timeout = (config.connect_timeout_secs, max(10.0, config.connect_timeout_secs))
  try:
    fe_errors: List[str] = []
    for fe in config.fe_nodes:
      try:
        missing, unknown = [], []
        for table in tables:
          found, detail = _ask_fe(session, fe, table, auth, timeout)
          if found is False:
            missing.append(f'{table} ({detail})' if detail else table)
          elif found is None:
            unknown.append(table)
        if missing and create_missing:
          _LOGGER.info('table(s) %s do not exist yet: --create_tables creates them from their '
                       'first rows', ', '.join(missing))
        elif missing:
          raise PreflightError(f'table(s) not found on {_host(fe)}: {", ".join(missing)} '
                               '(check --table / --topic_table_map / --table_config, and that '
                               'the tables were created)')
        if unknown:
          _LOGGER.warning('could not check that %s exist: %s answers neither the schema nor the '
                          'SQL API', ', '.join(unknown), _host(fe))
        return
      except requests.RequestException as error:
        fe_errors.append(f'{_host(fe)}: {type(error).__name__}')
    raise PreflightError('no FE reachable (--fe_nodes): ' + '; '.join(fe_errors))
  finally:
    session.close()


def _ask_fe(session, fe: str, table: str, auth, timeout) -> Tuple[Optional[bool], str]:
  """(True | False | None for "cannot tell", the FE's message)."""
  db, tbl = split_table(table)
  url = f'{fe}/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_schema'
  found, detail = _table_found(session.get(url, auth=auth, timeout=timeout,
                                           allow_redirects=False), fe)
  if found is None:
    # An FE without the schema endpoint: ask its SQL API instead.
    response = session.post(f'{fe}/api/query/default_cluster/{urllib.parse.quote(db)}',
                            json={'stmt': f'SELECT * FROM `{tbl}` LIMIT 0'}, auth=auth,
                            timeout=timeout, allow_redirects=False)
    found, detail = _table_found(response, fe)
  return found, detail


def _table_found(response: requests.Response, fe: str) -> Tuple[Optional[bool], str]:
  if response.status_code in (401, 403):
    raise PreflightError(f'{_host(fe)} refused the credentials (--user/--password)')
  try:
    body = orjson.loads(response.content)
  except orjson.JSONDecodeError:
    body = None
  if not isinstance(body, dict) or response.status_code != 200 or body.get('code') == 404:
    return None, ''  # no such endpoint, or an FE in trouble: cannot tell
  if body.get('code') == 401 or str(body.get('msg', '')).lower() == 'unauthorized':
    raise PreflightError(f'{_host(fe)} refused the credentials (--user/--password)')
  if body.get('code') == 0:
    return True, ''
  return False, str(body.get('data') or body.get('msg') or '')[:200]


def _host(url: str) -> str:
  parts = urllib.parse.urlsplit(url)
  return f'{parts.hostname}:{parts.port}'
