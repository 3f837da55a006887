"""HTTP to the cluster: the pooled session, the FE rotation and the FE -> BE redirect.

* One pooled ``requests.Session`` (keep-alive, pool sizes from the config;
  100 idle / 50 per host by default), no proxies from the environment (no
  proxy may see the credentials), retries left to the caller (they depend on
  the response body).
* Requests to the FEs go round-robin and fail over: ``on_each_fe`` tries each
  FE in turn until one answers.
* The FE answers a load with a 307 whose ``Location`` carries
  ``user:password@``.  Since Doris 3.1.3 it answers before reading the body,
  which resets Python clients that stream a body to it (apache/doris#63325),
  and ``requests`` drops ``Authorization`` on a cross-host redirect.  So
  ``resolve_be`` asks the FE with an empty body and returns the BE from
  ``Location`` with the userinfo stripped (never logged); the caller sends the
  body once, to that BE only, with ``Authorization`` set again.  Credentials
  go to the configured FEs and the BEs they redirect to, nowhere else.
"""

from __future__ import annotations

import itertools
import logging
import threading
import urllib.parse
from typing import Callable, List, Mapping, Optional, Tuple, TypeVar

import orjson
import requests
from requests.adapters import HTTPAdapter

from transforms.stream_load.classify import classify_failure
from transforms.stream_load.config import StreamLoadConfig
from transforms.stream_load.errors import (AuthenticationError, ProtocolError,
                                           RetryableLoadError)

__all__ = ['Transport', 'NextFe', 'json_or_none', 'load_response_json', 'strip_userinfo', 'host_of']

_LOGGER = logging.getLogger(__name__)

_T = TypeVar('_T')
_REDIRECTS = (301, 302, 303, 307, 308)
_STATE_TIMEOUT_SECS = 30.0


class NextFe(Exception):
  """Raised by an ``on_each_fe`` attempt: this FE could not answer; try the next."""


def json_or_none(response: requests.Response) -> Optional[dict]:
  """The response's JSON object, or None."""
  try:
    value = orjson.loads(response.content)
  except (orjson.JSONDecodeError, ValueError):
    return None
  return value if isinstance(value, dict) else None


def strip_userinfo(url: str) -> str:
  """``url`` without ``user:password@``."""
  parts = urllib.parse.urlsplit(url)
  netloc = parts.hostname or ''
  if ':' in netloc:
    netloc = f'[{netloc}]'
  if parts.port:
    netloc += f':{parts.port}'
  return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def host_of(url: str) -> str:
  """``host:port`` of ``url`` (no credentials), for messages."""
  try:
    parts = urllib.parse.urlsplit(url)
    return f'{parts.hostname}:{parts.port}' if parts.port else str(parts.hostname)
  except ValueError:
    return '?'


def _be_base_url(location: str) -> Optional[str]:
  """``http://u:p@be:8040/api/...`` -> ``http://be:8040`` (no credentials, no path)."""
  try:
    parts = urllib.parse.urlsplit(location)
    port = parts.port
  except ValueError:
    return None
  if parts.scheme not in ('http', 'https') or not parts.hostname:
    return None
  host = parts.hostname if ':' not in parts.hostname else f'[{parts.hostname}]'
  return f'{parts.scheme}://{host}' + (f':{port}' if port else '')


def _fe_error_message(body: Optional[dict], response: requests.Response) -> str:
  if body is None:
    return f'HTTP {response.status_code} without a JSON body'
  if body.get('code') == 401:
    return 'Unauthorized'
  return str(body.get('msg') or body.get('Message') or body.get('data') or body)


class Transport:
  """The session, credentials and FE rotation of one client (thread-safe).

  Args:
    config: the resolved config (its password is used).
    session: a session to use (tests inject one); else a pooled one.
  """

  def __init__(self, config: StreamLoadConfig, session: Optional[requests.Session] = None):
    self.config = config
    self.session = session or self._new_session(config)
    self.auth = (config.user, config.password or '')
    self._fe_cycle = itertools.cycle(range(len(config.fe_nodes)))
    self._fe_lock = threading.Lock()
    self._warned_plain_be = False

  @staticmethod
  def _new_session(config: StreamLoadConfig) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=config.pool_connections,
                          pool_maxsize=config.pool_maxsize, max_retries=0, pool_block=False)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    session.verify = config.verify
    session.trust_env = False  # no proxy may see the credentials
    return session

  def close(self) -> None:
    self.session.close()

  def load_timeout(self) -> Tuple[float, float]:
    """(connect, read) timeouts of a load: the server's own (header) fires first."""
    load = self.config.load_timeout_secs
    return (self.config.connect_timeout_secs, load + min(5.0, load * 0.2))

  def state_timeout(self) -> Tuple[float, float]:
    """(connect, read) timeouts of a small FE request."""
    return (self.config.connect_timeout_secs, _STATE_TIMEOUT_SECS)

  def fe_order(self) -> List[str]:
    """The FEs, starting at the next one round-robin (loads spread over them)."""
    with self._fe_lock:
      start = next(self._fe_cycle)
    nodes = self.config.fe_nodes
    return [nodes[(start + i) % len(nodes)] for i in range(len(nodes))]

  def on_each_fe(self, attempt: Callable[[str], _T], *, what: str, table: str = '',
                 label: str = '', first: Optional[str] = None) -> _T:
    """``attempt(fe)`` on each FE in turn (``first`` first) until one answers.

    ``attempt`` raises ``NextFe`` (or a ``requests`` error) when its FE could
    not answer; any other exception ends the round.

    Raises:
      RetryableLoadError: no FE answered.
    """
    errors = []
    order = self.fe_order()
    if first is not None:
      order = [first] + [fe for fe in order if fe != first]
    for fe in order:
      try:
        return attempt(fe)
      except requests.RequestException as error:
        errors.append(f'{host_of(fe)}: {type(error).__name__}')
      except NextFe as error:
        errors.append(f'{host_of(fe)}: {error}')
    raise RetryableLoadError(f'{table or what}: {what}: no FE answered ({"; ".join(errors)})',
                             table=table, label=label, status='FE unavailable', reason='connection')

  def resolve_be(self, path: str, headers: Mapping[str, str], table: str, label: str,
                 method: str = 'PUT') -> Tuple[str, str]:
    """Asks the FEs (in spreading order, failing over) where to send ``path``.

    Returns:
      (BE base URL without credentials, FE base URL that answered).

    Raises:
      RetryableLoadError: no FE could take it now.
      AuthenticationError, ProtocolError, or what ``classify_failure`` makes
      of an FE's own error answer.
    """
    probe_headers = dict(headers)
    probe_headers['Content-Length'] = '0'

    def attempt(fe: str) -> Tuple[str, str]:
      response = self.session.request(method, fe + path, headers=probe_headers, data=b'',
                                      auth=self.auth, allow_redirects=False,
                                      timeout=self.load_timeout())
      if response.status_code in _REDIRECTS:
        be = _be_base_url(response.headers.get('Location', ''))
        if be is None:
          raise ProtocolError(f'{table}: FE {host_of(fe)} redirected to an unusable location',
                              table=table, label=label, status='redirect')
        self._warn_plain_be(fe, be)
        return be, fe
      if response.status_code >= 500:
        raise NextFe(f'HTTP {response.status_code}')
      if response.status_code in (401, 403):
        raise AuthenticationError(f'{table}: FE {host_of(fe)} refused the credentials (HTTP '
                                  f'{response.status_code})', table=table, label=label,
                                  status=str(response.status_code))
      # The FE answered itself (HTTP 200 + JSON): an error.
      body = json_or_none(response)
      message = _fe_error_message(body, response)
      error = classify_failure(message, table=table, label=label, status='FE error', response=body)
      if isinstance(error, RetryableLoadError):
        raise NextFe(message)
      raise error

    return self.on_each_fe(attempt, what='redirect to a BE', table=table, label=label)

  def _warn_plain_be(self, fe: str, be: str) -> None:
    if fe.startswith('https:') and be.startswith('http:') and not self._warned_plain_be:
      self._warned_plain_be = True
      _LOGGER.warning('FE %s (https) redirects loads to BE %s over plain http: the credentials '
                      'and rows cross the network unencrypted; enable TLS on the BEs '
                      '(enable_https) to avoid it', host_of(fe), host_of(be))


def load_response_json(response: requests.Response, table: str, label: str, be: str) -> dict:
  """The JSON a BE answered a load (or transaction load) with.

  Raises:
    RetryableLoadError: HTTP 5xx, or no JSON body.
    AuthenticationError: HTTP 401/403.
    ProtocolError: the BE redirected again (never followed: credentials stay put).
  """
  if response.status_code >= 500:
    raise RetryableLoadError(f'{table}: BE {host_of(be)} answered HTTP {response.status_code}',
                             table=table, label=label, status=str(response.status_code),
                             reason='server_error')
  if response.status_code in (401, 403):
    raise AuthenticationError(f'{table}: BE {host_of(be)} refused the credentials',
                              table=table, label=label, status=str(response.status_code))
  if response.status_code in _REDIRECTS:
    raise ProtocolError(f'{table}: BE {host_of(be)} redirected again; not followed',
                        table=table, label=label, status=str(response.status_code))
  result = json_or_none(response)
  if result is None:
    raise RetryableLoadError(f'{table}: BE {host_of(be)} answered HTTP {response.status_code} '
                             'without a JSON body', table=table, label=label,
                             status=str(response.status_code))
  return result
