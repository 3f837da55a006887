"""A Stream Load client for Apache Doris and StarRocks, usable without Beam.

It follows the protocol of Doris's Stream Load manual
(https://doris.apache.org/docs/data-operate/import/import-way/stream-load-manual)
and of StarRocks' (https://docs.starrocks.io/docs/loading/StreamLoad/ and
https://docs.starrocks.io/docs/loading/Stream_Load_transaction_interface/):

* One pooled ``requests.Session`` per client (keep-alive, pool sizes set by
  the caller; seed 000 used 100 idle / 50 per host).
* The FE answers a load with a 307 to a BE whose ``Location`` carries
  ``user:password@``.  Since Doris 3.1.3 the FE answers before reading the
  body, which resets Python clients that stream a body to it
  (apache/doris#63325), and ``requests`` drops ``Authorization`` on a
  cross-host redirect.  So the client asks the FE with an empty body, takes
  the BE from ``Location`` (userinfo stripped, never logged), and sends the
  body once, to that BE only, with ``Authorization`` set again.  Credentials
  go to the configured FEs and to the BEs they redirect to, nowhere else.
* Labels are the caller's (see ``transforms.labels``): a retry re-sends the
  same label, and ``Label Already Exists`` is resolved through
  ``ExistingJobStatus`` / ``get_load_state`` instead of loading twice.
* ``Success`` and ``Publish Timeout`` are loaded (a Publish Timeout is never
  retried: the transaction is committed).  Retryable failures (connection
  errors, 5xx, too many versions, too many running transactions, timeouts)
  are retried with exponential backoff and jitter (tenacity); permanent ones
  (auth, unknown table, data beyond ``max_filter_ratio``) raise at once, with
  the rejected rows fetched from ``ErrorURL``.
* Optional two-phase commit: Doris's ``two_phase_commit`` header and
  ``/api/{db}/_stream_load_2pc``; StarRocks' transaction API
  (``/api/transaction/begin|load|prepare|commit|rollback``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import threading
import time
import urllib.parse
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import orjson
import requests
import tenacity
from requests.adapters import HTTPAdapter

from transforms.encoding import gzip_body
from transforms.labels import is_valid_label
from transforms.stream_load_errors import (AuthenticationError, DataQualityError, PermanentLoadError,
                                           RetriesExhaustedError, RetryableLoadError, StreamLoadError,
                                           TableNotFoundError)

__all__ = [
    'StreamLoadConfig',
    'TableLoadOptions',
    'LoadOutcome',
    'StreamLoadClient',
    'DEFAULT_CONNECT_TIMEOUT_SECS',
    'DEFAULT_LOAD_TIMEOUT_SECS',
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_SECS = 10.0
DEFAULT_LOAD_TIMEOUT_SECS = 600.0
DEFAULT_POOL_CONNECTIONS = 100
DEFAULT_POOL_MAXSIZE = 50
DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_INITIAL_SECS = 0.5
DEFAULT_BACKOFF_MAX_SECS = 30.0
DEFAULT_LABEL_STATE_POLL_SECS = 1.0
MAX_ERROR_LOG_BYTES = 1 << 20
MAX_ERROR_LOG_LINES = 1000

STATUS_SUCCESS = 'Success'
STATUS_PUBLISH_TIMEOUT = 'Publish Timeout'
STATUS_LABEL_EXISTS = 'Label Already Exists'
STATUS_FAIL = 'Fail'
LOADED_STATUSES = (STATUS_SUCCESS, STATUS_PUBLISH_TIMEOUT)
# ExistingJobStatus / get_load_state values.
_LOADED_JOB_STATES = ('FINISHED', 'VISIBLE', 'COMMITTED')
_PREPARED_JOB_STATES = ('PRECOMMITTED', 'PREPARED')
_LABEL_EXISTS_STATUSES = (STATUS_LABEL_EXISTS, 'LABEL_ALREADY_EXISTS')  # Doris, StarRocks txn API

DORIS = 'doris'
STARROCKS = 'starrocks'
DORIS_DELETE_SIGN = '__DORIS_DELETE_SIGN__'
STARROCKS_OP = '__op'

# Fragments of Doris/StarRocks messages, lower case.  Retryable: the cluster is
# busy or a node is briefly away.  Permanent: no retry can help.
_RETRYABLE_FRAGMENTS = (
    'too many versions', 'version count', '-235', 'current running txns on db', 'larger than limit',
    'timeout', 'timed out', 'service unavailable', 'no backend', 'backend not alive', 'not alive',
    'mem_limit_exceeded', 'memory exceed', 'rpc', 'try again', 'publish', 'too many tablet',
    'connection', 'broken pipe', 'cancelled', 'internal error', 'leader', 'not master',
)
# Only the servers' own authentication texts: a data error that merely quotes a
# column called "password" must not stop the pipeline.
_AUTH_FRAGMENTS = ('no valid basic authorization', 'access denied for user', 'unauthorized',
                   'need auth information', 'authentication failed')
_TABLE_FRAGMENTS = ('unknown table', 'unknown database', 'table not found', 'unknown db',
                    'database not found')
# "Table [t] does not exist", "table [db.t] does not exist in database [db]" --
# but not a tablet, partition or backend that does not exist (cluster trouble).
_TABLE_MISSING = re.compile(r"\b(table|database|db)\b[^,;]{0,80}\b(does not|doesn't|not) exists?\b")
_DATA_FRAGMENTS = ('too many filtered rows', 'data_quality_error', 'data quality', 'filtered rows')


@dataclasses.dataclass(frozen=True)
class StreamLoadConfig:
  """How to reach the cluster and how hard to try.

  Attributes:
    fe_nodes: FE base URLs (``http://host:8030`` or ``https://…``); loads are
      spread over them and fail over to the next on connection errors.
    user: Stream Load user.
    password: its password (never logged, never in an exception).
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
  """
  fe_nodes: Tuple[str, ...]
  user: str
  password: str = ''
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
  label_state_timeout_secs: float = 60.0

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
    if self.target not in (DORIS, STARROCKS):
      raise ValueError(f'--target: must be doris or starrocks, got {self.target!r}')
    if self.compression not in ('none', 'gzip'):
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

  def __post_init__(self):
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


@dataclasses.dataclass
class LoadOutcome:
  """What a finished load did.

  Attributes:
    table: ``db.tbl``.
    label: the load's label.
    status: ``Success`` / ``Publish Timeout``, or ``Label Already Exists``
      when an earlier attempt (or run) had already loaded this label.
    txn_id: the transaction id, when known.
    loaded_rows: ``NumberLoadedRows`` (the batch size when the label existed).
    filtered_rows: ``NumberFilteredRows``.
    load_bytes: bytes sent (after compression).
    load_ms: wall time of the whole call, retries included.
    attempts: HTTP load attempts made.
    message: Doris's ``Message``.
    rejected: error-log lines for filtered rows (from ``ErrorURL``).
    be: ``host:port`` of the BE that loaded it (no credentials).
  """
  table: str
  label: str
  status: str
  txn_id: Optional[int]
  loaded_rows: int
  filtered_rows: int
  load_bytes: int
  load_ms: float
  attempts: int
  message: str = ''
  rejected: List[str] = dataclasses.field(default_factory=list)
  be: Optional[str] = None


def _contains_any(text: str, fragments: Sequence[str]) -> bool:
  return any(fragment in text for fragment in fragments)


def classify_failure(message: str, *, table: str, label: str, status: str,
                     response: Optional[dict] = None) -> StreamLoadError:
  """Maps a failure message to the error class the retry logic acts on.

  Pure, so each message Doris or StarRocks gives is unit-tested.
  """
  text = (message or '').lower()
  kwargs = dict(table=table, label=label, status=status, response=response)
  if _contains_any(text, _DATA_FRAGMENTS):
    return DataQualityError(f'{table}: rows rejected beyond max_filter_ratio: {message}', **kwargs)
  if _contains_any(text, _AUTH_FRAGMENTS):
    return AuthenticationError(f'{table}: authentication failed: {message}', **kwargs)
  if _contains_any(text, _TABLE_FRAGMENTS) or (
      _TABLE_MISSING.search(text) and not re.search(r'\b(tablet|partition|backend)\b', text)):
    return TableNotFoundError(f'{table}: table or database not found: {message}', **kwargs)
  if _contains_any(text, _RETRYABLE_FRAGMENTS):
    return RetryableLoadError(f'{table}: retryable failure: {message}', **kwargs)
  # An unknown failure: retried (same label, so safe), then dead-lettered.
  return RetryableLoadError(f'{table}: load failed: {message}', **kwargs)


def split_table(table: str) -> Tuple[str, str]:
  """``db.tbl`` -> (db, tbl), with a clear error for anything else."""
  db, sep, tbl = table.partition('.')
  if not sep or not db or not tbl or '.' in tbl or '/' in table:
    raise ValueError(f'table {table!r} must be "db.table"')
  return db, tbl


class StreamLoadClient:
  """Loads bodies into Doris or StarRocks tables over Stream Load.

  Thread-safe: one client (one connection pool) serves all flush threads of
  a worker.  Create it in ``DoFn.setup()``, ``close()`` it in ``teardown()``.

  Args:
    config: the connection and retry settings.
    session: a ``requests.Session`` to use (tests inject one); the client
      mounts its pooled adapters on a new one when omitted.
    sleep: the sleep function for backoff (tests inject a fake).
    clock: monotonic clock in seconds (tests inject a fake).
  """

  def __init__(self, config: StreamLoadConfig, session: Optional[requests.Session] = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic):
    self._config = config
    self._sleep = sleep
    self._clock = clock
    self._session = session or self._new_session(config)
    self._auth = (config.user, config.password)
    self._fe_cycle = itertools.cycle(range(len(config.fe_nodes)))
    self._fe_lock = threading.Lock()
    self._warned_plain_be = False

  @staticmethod
  def _new_session(config: StreamLoadConfig) -> requests.Session:
    session = requests.Session()
    # Retries are ours (they depend on the response body); the pool is urllib3's.
    adapter = HTTPAdapter(pool_connections=config.pool_connections, pool_maxsize=config.pool_maxsize,
                          max_retries=0, pool_block=False)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    session.verify = config.verify
    session.trust_env = False  # no proxy may see the credentials
    return session

  @property
  def config(self) -> StreamLoadConfig:
    return self._config

  def close(self) -> None:
    """Closes the pooled connections."""
    self._session.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # ---------------------------------------------------------------- loading

  def load(self, table: str, body: bytes, label: str, *, rows: Optional[int] = None,
           options: Optional[TableLoadOptions] = None,
           extra_headers: Optional[Mapping[str, str]] = None) -> LoadOutcome:
    """Loads one body into ``table`` under ``label``, retrying as needed.

    Args:
      table: ``db.tbl``.
      body: NDJSON (Doris) or a JSON array (StarRocks), uncompressed.
      label: a label valid for Doris; the same on every retry.
      rows: number of rows in the body (reported when the label existed).
      options: per-table Stream Load options.
      extra_headers: headers for this load only (e.g. ``hidden_columns``).

    Returns:
      The outcome of the successful attempt.

    Raises:
      PermanentLoadError: (or a subclass) when no retry can help, or when
        retries ran out (``RetriesExhaustedError``).
    """
    if not is_valid_label(label):
      raise ValueError(f'label {label!r} does not match ^[-_A-Za-z0-9:]{{1,128}}$')
    db, tbl = split_table(table)
    headers = self._load_headers(label, options, extra_headers)
    payload = body
    if self._config.compression == 'gzip':
      payload = gzip_body(body)
      # Doris reads compress_type; StarRocks (3.2.7+) reads compression.
      if self._config.target == DORIS:
        headers['compress_type'] = 'gz'
      else:
        headers['compression'] = 'gzip'
    started = self._clock()
    attempts = 0

    def attempt() -> LoadOutcome:
      nonlocal attempts
      attempts += 1
      if self._config.two_phase_commit and self._config.target == STARROCKS:
        return self._starrocks_transaction(db, tbl, payload, label, headers, rows)
      return self._load_once(db, tbl, payload, label, headers, rows)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(self._config.max_retries + 1),
        wait=tenacity.wait_random_exponential(multiplier=self._config.backoff_initial_secs,
                                              max=self._config.backoff_max_secs),
        retry=tenacity.retry_if_exception_type(RetryableLoadError),
        sleep=self._sleep,
        before_sleep=lambda state: _LOGGER.warning(
            'stream load retry: table=%s label=%s attempt=%d error=%s', table, label,
            state.attempt_number, state.outcome.exception()),
        reraise=False,
    )
    try:
      outcome = retrying(attempt)
    except tenacity.RetryError as error:
      last = error.last_attempt.exception()
      raise RetriesExhaustedError(
          f'{table}: gave up after {attempts} attempts: {last}', table=table, label=label,
          status=getattr(last, 'status', None), response=getattr(last, 'response', None)) from last
    outcome.attempts = attempts
    outcome.load_ms = (self._clock() - started) * 1000.0
    outcome.load_bytes = len(payload)
    return outcome

  def _load_headers(self, label: str, options: Optional[TableLoadOptions],
                    extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
    headers = {
        'label': label,
        'format': 'json',
        'Expect': '100-continue',
        'timeout': str(max(1, int(self._config.load_timeout_secs))),
    }
    if self._config.target == DORIS:
      headers['read_json_by_line'] = 'true'
    else:
      headers['strip_outer_array'] = 'true'
    if self._config.two_phase_commit and self._config.target == DORIS:
      headers['two_phase_commit'] = 'true'
    if options is not None:
      headers.update(options.to_headers())
    if extra:
      headers.update(extra)
    return headers

  def _next_fe_order(self) -> List[str]:
    with self._fe_lock:
      start = next(self._fe_cycle)
    nodes = self._config.fe_nodes
    return [nodes[(start + i) % len(nodes)] for i in range(len(nodes))]

  def _timeout(self) -> Tuple[float, float]:
    # The server's own timeout (the header) fires first; a small margin for the answer.
    load = self._config.load_timeout_secs
    return (self._config.connect_timeout_secs, load + min(5.0, load * 0.2))

  def _resolve_be(self, path: str, headers: Mapping[str, str], table: str, label: str,
                  method: str = 'PUT') -> Tuple[str, str]:
    """Asks the FEs (in spreading order, failing over) where to send ``path``.

    Returns:
      (BE base URL without credentials, FE base URL that answered).
    """
    probe_headers = dict(headers)
    probe_headers['Content-Length'] = '0'
    errors = []
    for fe in self._next_fe_order():
      try:
        response = self._session.request(method, fe + path, headers=probe_headers, data=b'',
                                         auth=self._auth, allow_redirects=False,
                                         timeout=self._timeout())
      except requests.RequestException as error:
        errors.append(f'{_host_of(fe)}: {type(error).__name__}')
        continue
      if response.status_code in (301, 302, 303, 307, 308):
        location = response.headers.get('Location', '')
        be = _be_base_url(location)
        if be is None:
          raise PermanentLoadError(f'{table}: FE {_host_of(fe)} redirected to an unusable location',
                                   table=table, label=label, status='redirect')
        if fe.startswith('https:') and be.startswith('http:') and not self._warned_plain_be:
          self._warned_plain_be = True
          _LOGGER.warning('FE %s (https) redirects loads to BE %s over plain http: the '
                          'credentials and rows cross the network unencrypted; enable TLS on '
                          'the BEs (enable_https) to avoid it', _host_of(fe), _host_of(be))
        return be, fe
      if response.status_code >= 500:
        errors.append(f'{_host_of(fe)}: HTTP {response.status_code}')
        continue
      # The FE answered itself (HTTP 200 + JSON): an error, or a StarRocks FE
      # that loads without redirecting (it answers with the load result).
      body = _json_or_none(response)
      if response.status_code in (401, 403):
        raise AuthenticationError(f'{table}: FE {_host_of(fe)} refused the credentials (HTTP '
                                  f'{response.status_code})', table=table, label=label,
                                  status=str(response.status_code))
      message = _fe_error_message(body, response)
      error = classify_failure(message, table=table, label=label, status='FE error', response=body)
      if isinstance(error, RetryableLoadError):
        errors.append(f'{_host_of(fe)}: {message}')
        continue
      raise error
    raise RetryableLoadError(f'{table}: no FE could take the load ({"; ".join(errors)})',
                             table=table, label=label, status='FE unavailable')

  def _load_once(self, db: str, tbl: str, payload: bytes, label: str, headers: Dict[str, str],
                 rows: Optional[int]) -> LoadOutcome:
    table = f'{db}.{tbl}'
    path = f'/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_stream_load'
    be, fe = self._resolve_be(path, headers, table, label)
    try:
      response = self._session.put(be + path, data=payload, headers=headers, auth=self._auth,
                                   allow_redirects=False, timeout=self._timeout())
    except requests.Timeout as error:
      raise RetryableLoadError(f'{table}: load timed out on BE {_host_of(be)}: {type(error).__name__}',
                               table=table, label=label, status='timeout') from None
    except requests.RequestException as error:
      raise RetryableLoadError(f'{table}: connection to BE {_host_of(be)} failed: '
                               f'{type(error).__name__}', table=table, label=label,
                               status='connection error') from None
    result = self._parse_load_response(response, table, label, be)
    outcome = self._outcome_from(result, table, label, rows, fe, db, be)
    if self._config.two_phase_commit and self._config.target == DORIS and outcome.txn_id and \
        outcome.txn_id > 0 and outcome.status != STATUS_LABEL_EXISTS:
      self.commit_doris_transaction(db, outcome.txn_id, table=table, label=label)
    return outcome

  def _parse_load_response(self, response: requests.Response, table: str, label: str,
                           be: str) -> dict:
    if response.status_code >= 500:
      raise RetryableLoadError(f'{table}: BE {_host_of(be)} answered HTTP {response.status_code}',
                               table=table, label=label, status=str(response.status_code))
    if response.status_code in (401, 403):
      raise AuthenticationError(f'{table}: BE {_host_of(be)} refused the credentials',
                                table=table, label=label, status=str(response.status_code))
    if response.status_code in (301, 302, 303, 307, 308):
      raise PermanentLoadError(f'{table}: BE {_host_of(be)} redirected again; not followed',
                               table=table, label=label, status=str(response.status_code))
    result = _json_or_none(response)
    if result is None:
      raise RetryableLoadError(f'{table}: BE {_host_of(be)} answered HTTP {response.status_code} '
                               'without a JSON body', table=table, label=label,
                               status=str(response.status_code))
    return result

  def _outcome_from(self, result: dict, table: str, label: str, rows: Optional[int], fe: str,
                    db: str, be: str) -> LoadOutcome:
    status = result.get('Status') or result.get('status') or ''
    message = str(result.get('Message') or result.get('msg') or '')
    txn_id = result.get('TxnId')
    if status in LOADED_STATUSES:
      outcome = LoadOutcome(
          table=table, label=label, status=status, txn_id=txn_id,
          loaded_rows=int(result.get('NumberLoadedRows', rows or 0)),
          filtered_rows=int(result.get('NumberFilteredRows', 0)), load_bytes=0, load_ms=0.0,
          attempts=0, message=message, be=_host_of(be))
      if outcome.filtered_rows and result.get('ErrorURL'):
        outcome.rejected = self._fetch_error_log(result['ErrorURL'])
      return outcome
    if status in _LABEL_EXISTS_STATUSES:
      return self._resolve_existing_label(result, table, label, rows, fe, db, be)
    if status in ('OK',):  # StarRocks transaction API answers
      return LoadOutcome(table=table, label=label, status=STATUS_SUCCESS, txn_id=txn_id,
                         loaded_rows=int(result.get('NumberLoadedRows', rows or 0)),
                         filtered_rows=int(result.get('NumberFilteredRows', 0)), load_bytes=0,
                         load_ms=0.0, attempts=0, message=message, be=_host_of(be))
    error = classify_failure(message, table=table, label=label, status=status or 'unknown',
                             response=result)
    if int(result.get('NumberFilteredRows') or 0) > 0 and result.get('ErrorURL'):
      rejected = self._fetch_error_log(result['ErrorURL'])
      if not isinstance(error, DataQualityError):
        error = DataQualityError(f'{table}: rows rejected: {message}', table=table, label=label,
                                 status=status, response=result)
      error.rejected = rejected
    raise error

  def _resolve_existing_label(self, result: dict, table: str, label: str, rows: Optional[int],
                              fe: str, db: str, be: str) -> LoadOutcome:
    """An earlier attempt (or run) used this label: find out what became of it.

    Labels are derived from the batch's rows, so whatever holds the label holds
    these rows: FINISHED/VISIBLE/COMMITTED means loaded; PRECOMMITTED (a 2PC
    load prepared by a run that died before committing) is committed now; a
    RUNNING load is waited for; ABORTED/UNKNOWN frees the label for a re-send.
    """
    existing = (result.get('ExistingJobStatus') or '').upper()
    if existing not in _LOADED_JOB_STATES:
      state = existing if existing in _PREPARED_JOB_STATES else self._wait_for_label(
          fe, db, table, label)
      if state in _PREPARED_JOB_STATES:
        _LOGGER.warning('stream load label %s of %s was prepared but never committed (an earlier '
                        'run stopped between prepare and commit); committing it now', label, table)
        self._commit_prepared(db, table, label)
      elif state not in _LOADED_JOB_STATES:
        # ABORTED / UNKNOWN: the label is free again; resend it.
        raise RetryableLoadError(f'{table}: earlier load with label {label} ended {state}; resending',
                                 table=table, label=label, status=STATUS_LABEL_EXISTS,
                                 response=result)
    _LOGGER.info('stream load label already loaded: table=%s label=%s existing=%s', table, label,
                 existing or 'FINISHED')
    return LoadOutcome(table=table, label=label, status=STATUS_LABEL_EXISTS,
                       txn_id=result.get('TxnId'), loaded_rows=rows or 0, filtered_rows=0,
                       load_bytes=0, load_ms=0.0, attempts=0,
                       message=str(result.get('Message') or ''), be=_host_of(be))

  def _commit_prepared(self, db: str, table: str, label: str) -> None:
    if self._config.target == STARROCKS:
      _, tbl = split_table(table)
      self._starrocks_call('commit', {'label': label, 'db': db, 'table': tbl}, table, label)
    else:
      self.commit_doris_transaction(db, None, table=table, label=label)

  def get_load_state(self, db: str, label: str, fe: Optional[str] = None) -> str:
    """The state of a label: PREPARE, COMMITTED, VISIBLE, ABORTED or UNKNOWN."""
    errors = []
    for node in ([fe] if fe else []) + self._next_fe_order():
      try:
        response = self._session.get(f'{node}/api/{urllib.parse.quote(db)}/get_load_state',
                                     params={'label': label}, auth=self._auth,
                                     timeout=(self._config.connect_timeout_secs, 30.0))
      except requests.RequestException as error:
        errors.append(f'{_host_of(node)}: {type(error).__name__}')
        continue
      body = _json_or_none(response) or {}
      if body.get('code') == 401:
        raise AuthenticationError(f'{db}: get_load_state refused the credentials', label=label)
      data = body.get('data')
      if isinstance(data, str):
        return data.upper()
      if isinstance(data, dict) and 'state' in data:
        return str(data['state']).upper()
      errors.append(f'{_host_of(node)}: unexpected answer')
    raise RetryableLoadError(f'{db}: get_load_state failed ({"; ".join(errors)})', label=label,
                             status='FE unavailable')

  def _wait_for_label(self, fe: str, db: str, table: str, label: str) -> str:
    deadline = self._clock() + self._config.label_state_timeout_secs
    while True:
      state = self.get_load_state(db, label, fe)
      if state in _LOADED_JOB_STATES + _PREPARED_JOB_STATES + ('ABORTED', 'UNKNOWN'):
        return state
      if self._clock() >= deadline:
        raise RetryableLoadError(f'{table}: label {label} still {state} after '
                                 f'{self._config.label_state_timeout_secs:.0f}s', table=table,
                                 label=label, status=STATUS_LABEL_EXISTS)
      self._sleep(DEFAULT_LABEL_STATE_POLL_SECS)

  def _fetch_error_log(self, error_url: str) -> List[str]:
    """Reads the rejected rows and reasons Doris kept for a load."""
    try:
      # The error log needs no credentials; none are sent.
      response = self._session.get(_strip_userinfo(error_url), stream=True,
                                   timeout=(self._config.connect_timeout_secs, 30.0))
      content = response.raw.read(MAX_ERROR_LOG_BYTES, decode_content=True)
      response.close()
    except requests.RequestException as error:
      return [f'(error log at {_host_of(error_url)} unavailable: {type(error).__name__})']
    lines = content.decode('utf-8', errors='replace').splitlines()
    return [line for line in lines if line.strip()][:MAX_ERROR_LOG_LINES]

  def table_keys_type(self, table: str) -> Optional[str]:
    """The table's key model from the FE's schema endpoint, or None if unknown.

    Doris answers ``GET /api/{db}/{tbl}/_schema`` with ``keysType``:
    ``DUP_KEYS``, ``UNIQUE_KEYS``, ``AGG_KEYS`` (StarRocks: also
    ``PRIMARY_KEYS``).  Used to decide whether batches of one table may load
    concurrently; any failure answers None, and the caller stays safe.
    """
    db, tbl = split_table(table)
    for fe in self._next_fe_order():
      try:
        response = self._session.get(
            f'{fe}/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_schema',
            auth=self._auth, allow_redirects=False,
            timeout=(self._config.connect_timeout_secs, 30.0))
      except requests.RequestException:
        continue
      body = _json_or_none(response) or {}
      data = body.get('data')
      if isinstance(data, dict) and isinstance(data.get('keysType'), str):
        return data['keysType'].upper()
      return None
    return None

  # ------------------------------------------------------- two-phase commit

  def commit_doris_transaction(self, db: str, txn_id: Optional[int], *, table: str = '',
                               label: str = '', operation: str = 'commit') -> None:
    """Commits (or aborts) a Doris 2PC transaction through the FE, by id or else by label."""
    path = f'/api/{urllib.parse.quote(db)}/_stream_load_2pc'
    headers = {'txn_operation': operation, 'Expect': '100-continue'}
    if txn_id is not None:
      headers['txn_id'] = str(txn_id)
    else:
      headers['label'] = label
    be, _ = self._resolve_be(path, headers, table or db, label)
    try:
      response = self._session.put(be + path, headers=headers, data=b'', auth=self._auth,
                                   allow_redirects=False, timeout=self._timeout())
    except requests.RequestException as error:
      raise RetryableLoadError(f'{table or db}: 2PC {operation} of txn {txn_id} failed: '
                               f'{type(error).__name__}', table=table, label=label,
                               status='connection error') from None
    body = _json_or_none(response) or {}
    status = str(body.get('status') or body.get('Status') or '')
    message = str(body.get('msg') or body.get('Message') or '')
    if status.lower() == 'success' or 'successfully' in message.lower():
      return
    if 'already' in message.lower() and ('visible' in message.lower() or 'committed' in message.lower()):
      return
    raise classify_failure(message or f'2PC {operation} failed', table=table or db, label=label,
                           status=status or '2pc', response=body)

  def _starrocks_transaction(self, db: str, tbl: str, payload: bytes, label: str,
                             headers: Dict[str, str], rows: Optional[int]) -> LoadOutcome:
    """begin -> load -> prepare -> commit through StarRocks' transaction API.

    Anything failing before ``prepare`` rolls the transaction back, so the
    label is free for the retry.  A ``begin`` that finds the label taken
    resolves it: an earlier attempt's transaction that never got its data is
    rolled back and re-sent; a PREPARED one (our rows, by construction of the
    label) is committed; a finished one counts as loaded.
    """
    table = f'{db}.{tbl}'
    fe = self._config.fe_nodes[0]
    txn_headers = {'label': label, 'db': db, 'table': tbl}
    begin = self._starrocks_call('begin', txn_headers, table, label)
    if begin.get('Status') in _LABEL_EXISTS_STATUSES:
      existing = (begin.get('ExistingJobStatus') or '').upper()
      if existing not in _LOADED_JOB_STATES + _PREPARED_JOB_STATES:
        self._starrocks_call('rollback', txn_headers, table, label, check=False)
        raise RetryableLoadError(f'{table}: label {label} held by an unfinished transaction '
                                 f'({existing or "unknown"}); rolled back, resending', table=table,
                                 label=label, status=STATUS_LABEL_EXISTS, response=begin)
      return self._resolve_existing_label(begin, table, label, rows, fe, db, fe)
    load_headers = dict(headers)
    load_headers.update(txn_headers)
    try:
      be, _ = self._resolve_be('/api/transaction/load', load_headers, table, label)
      try:
        response = self._session.put(be + '/api/transaction/load', data=payload,
                                     headers=load_headers, auth=self._auth,
                                     allow_redirects=False, timeout=self._timeout())
      except requests.RequestException as error:
        raise RetryableLoadError(f'{table}: transaction load failed: {type(error).__name__}',
                                 table=table, label=label, status='connection error') from None
      result = self._parse_load_response(response, table, label, be)
      if result.get('Status') not in ('OK', STATUS_SUCCESS):
        raise classify_failure(str(result.get('Message', '')), table=table, label=label,
                               status=str(result.get('Status')), response=result)
      self._starrocks_call('prepare', txn_headers, table, label)
    except StreamLoadError:
      self._starrocks_call('rollback', txn_headers, table, label, check=False)
      raise
    # Prepared: from here a failure leaves a PREPARED label the retry commits.
    commit = self._starrocks_call('commit', txn_headers, table, label)
    return LoadOutcome(table=table, label=label, status=STATUS_SUCCESS,
                       txn_id=commit.get('TxnId') or begin.get('TxnId'),
                       loaded_rows=int(result.get('NumberLoadedRows', rows or 0)),
                       filtered_rows=int(result.get('NumberFilteredRows', 0)), load_bytes=0,
                       load_ms=0.0, attempts=0, message=str(commit.get('Message', '')),
                       be=_host_of(be))

  def _starrocks_call(self, operation: str, headers: Dict[str, str], table: str, label: str,
                      check: bool = True) -> dict:
    errors = []
    for fe in self._next_fe_order():
      try:
        response = self._session.post(f'{fe}/api/transaction/{operation}', headers=headers,
                                      auth=self._auth, allow_redirects=False, timeout=self._timeout())
      except requests.RequestException as error:
        errors.append(f'{_host_of(fe)}: {type(error).__name__}')
        continue
      body = _json_or_none(response) or {}
      status = body.get('Status')
      if not check or status in ('OK', STATUS_SUCCESS) + _LABEL_EXISTS_STATUSES:
        return body
      if operation == 'commit' and 'visible' in str(body.get('Message', '')).lower():
        return body
      raise classify_failure(str(body.get('Message') or body.get('msg') or status), table=table,
                             label=label, status=str(status), response=body)
    if not check:
      return {}
    raise RetryableLoadError(f'{table}: transaction {operation} failed ({"; ".join(errors)})',
                             table=table, label=label, status='FE unavailable')


def _json_or_none(response: requests.Response) -> Optional[dict]:
  try:
    value = orjson.loads(response.content)
  except (orjson.JSONDecodeError, ValueError):
    return None
  return value if isinstance(value, dict) else None


def _fe_error_message(body: Optional[dict], response: requests.Response) -> str:
  if body is None:
    return f'HTTP {response.status_code} without a JSON body'
  if body.get('code') == 401:
    return 'Unauthorized'
  return str(body.get('msg') or body.get('Message') or body.get('data') or body)


def _strip_userinfo(url: str) -> str:
  parts = urllib.parse.urlsplit(url)
  netloc = parts.hostname or ''
  if ':' in netloc:
    netloc = f'[{netloc}]'
  if parts.port:
    netloc += f':{parts.port}'
  return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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


def _host_of(url: str) -> str:
  try:
    parts = urllib.parse.urlsplit(url)
    return f'{parts.hostname}:{parts.port}' if parts.port else str(parts.hostname)
  except ValueError:
    return '?'
