"""``StreamLoadClient``: loads bodies into Doris or StarRocks tables; usable without Beam.

It follows the protocol of Doris's Stream Load manual
(https://doris.apache.org/docs/data-operate/import/import-way/stream-load-manual)
and of StarRocks' (https://docs.starrocks.io/docs/loading/StreamLoad/ and
https://docs.starrocks.io/docs/loading/Stream_Load_transaction_interface/):

* The FE is asked with an empty body; the body goes once, to the BE it names
  (``transport``).
* Labels are the caller's (see ``labels``): a retry re-sends the same label,
  and ``Label Already Exists`` is resolved through ``ExistingJobStatus`` /
  ``get_load_state`` instead of loading twice (``transactions``).
* ``Success`` and ``Publish Timeout`` are loaded (a Publish Timeout is never
  retried: the transaction is committed).  Retryable failures (connection
  errors, 5xx, too many versions, too many running transactions, timeouts,
  unknown messages) are retried with exponential backoff and full jitter
  (tenacity), then raise ``RetriesExhaustedError``; the rows' faults (data
  beyond ``max_filter_ratio``, an unknown table) and the cluster's (refused
  credentials) raise at once, with the rejected rows fetched from
  ``ErrorURL``.
* Optional two-phase commit: Doris's ``two_phase_commit`` header and
  ``_stream_load_2pc``; StarRocks' transaction API.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Callable, Dict, List, Mapping, Optional

import requests
import tenacity

from transforms import metrics
from transforms.stream_load.bodies import gzip_body
from transforms.stream_load.classify import classify_failure
from transforms.stream_load.config import (DEFAULT_MERGE_COMMIT_INTERVAL_MS,
                                           DEFAULT_MERGE_COMMIT_PARALLEL, DORIS, GROUP_COMMIT_OFF,
                                           STARROCKS, StreamLoadConfig, TableLoadOptions,
                                           split_table)
from transforms.stream_load.errors import (DataQualityError, RetriesExhaustedError,
                                           RetryableLoadError, UnclassifiedLoadError)
from transforms.stream_load.labels import is_valid_label
from transforms.stream_load.outcome import (LABEL_EXISTS_STATUSES, LOADED_STATUSES, STATUS_SUCCESS,
                                            LoadOutcome)
from transforms.stream_load.transactions import Transactions
from transforms.stream_load.transport import (NextFe, Transport, host_of, json_or_none,
                                              load_response_json, strip_userinfo)

__all__ = ['StreamLoadClient']

_LOGGER = logging.getLogger(__name__)

MAX_ERROR_LOG_BYTES = 1 << 20
MAX_ERROR_LOG_LINES = 1000


class StreamLoadClient:
  """Loads bodies into Doris or StarRocks tables over Stream Load.

  Thread-safe: one client (one connection pool) serves all flush threads of
  a worker.  Create it in ``DoFn.setup()``, ``close()`` it in ``teardown()``.

  Args:
    config: the connection and retry settings; its password is resolved here
      (``StreamLoadConfig.resolved``).
    session: a ``requests.Session`` to use (tests inject one); the client
      mounts its pooled adapters on a new one when omitted.
    sleep: the sleep function for backoff (tests inject a fake).
    clock: monotonic clock in seconds (tests inject a fake).
  """

  def __init__(self, config: StreamLoadConfig, session: Optional[requests.Session] = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic):
    self._config = config.resolved()
    self._sleep = sleep
    self._clock = clock
    self._transport = Transport(self._config, session)
    self.transactions = Transactions(self._transport, sleep=sleep, clock=clock)

  @property
  def config(self) -> StreamLoadConfig:
    return self._config

  def close(self) -> None:
    """Closes the pooled connections."""
    self._transport.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # ---------------------------------------------------------------- loading

  def load(self, table: str, body: bytes, label: str, *, rows: Optional[int] = None,
           options: Optional[TableLoadOptions] = None,
           extra_headers: Optional[Mapping[str, str]] = None,
           body_headers: Optional[Mapping[str, str]] = None) -> LoadOutcome:
    """Loads one body into ``table`` under ``label``, retrying as needed.

    Args:
      table: ``db.tbl``.
      body: the uncompressed body (NDJSON for Doris, a JSON array for
        StarRocks, or the format ``extra_headers`` name).
      label: a label valid for Doris; the same on every retry.
      rows: number of rows in the body (reported when the label existed).
      options: per-table Stream Load options.
      extra_headers: headers for this load only (e.g. ``hidden_columns``).
      body_headers: the headers describing the body (``EncodedBatch.headers``);
        default: JSON lines for Doris, a JSON array for StarRocks.

    Returns:
      The outcome of the successful attempt.

    Raises:
      RowFaultError: the rows were rejected (``DataQualityError``) or their
        table does not exist (``TableNotFoundError``).
      ClusterFaultError: credentials refused, an unusable answer, or retries
        exhausted (``RetriesExhaustedError``).
    """
    if not is_valid_label(label):
      raise ValueError(f'label {label!r} does not match ^[-_A-Za-z0-9:]{{1,128}}$')
    db, tbl = split_table(table)
    headers = self._load_headers(table, label, options, extra_headers, body_headers)
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
        return self.transactions.starrocks_load(db, tbl, payload, label, headers, rows)
      return self._load_once(db, tbl, payload, label, headers, rows)

    def before_sleep(state) -> None:
      error = state.outcome.exception()
      metrics.LOAD_FAILURES.labels(table, error.reason).inc()
      metrics.LOAD_RETRIES.labels(table).inc()
      log = _LOGGER.error if isinstance(error, UnclassifiedLoadError) else _LOGGER.warning
      log('stream load retry: table=%s label=%s attempt=%d error=%s', table, label,
          state.attempt_number, error)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(self._config.max_retries + 1),
        wait=tenacity.wait_random_exponential(multiplier=self._config.backoff_initial_secs,
                                              max=self._config.backoff_max_secs),
        retry=tenacity.retry_if_exception_type(RetryableLoadError),
        sleep=self._sleep,
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
      outcome = retrying(attempt)
    except tenacity.RetryError as error:
      last = error.last_attempt.exception()
      raise RetriesExhaustedError(
          f'{table}: gave up after {attempts} attempts: {last}', table=table, label=label,
          status=getattr(last, 'status', None), response=getattr(last, 'response', None),
          reason=getattr(last, 'reason', None)) from last
    outcome.attempts = attempts
    outcome.load_ms = (self._clock() - started) * 1000.0
    outcome.load_bytes = len(payload)
    return outcome

  def _load_headers(self, table: str, label: str, options: Optional[TableLoadOptions],
                    extra: Optional[Mapping[str, str]],
                    body_headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    config = self._config
    headers = {
        'Expect': '100-continue',
        'timeout': str(max(1, int(config.load_timeout_secs))),
    }
    if body_headers:
      headers.update(body_headers)
    elif config.target == DORIS:
      headers.update({'format': 'json', 'read_json_by_line': 'true'})
    else:
      headers.update({'format': 'json', 'strip_outer_array': 'true'})
    group_commit = (options.group_commit if options is not None and options.group_commit
                    else config.group_commit)
    if group_commit == GROUP_COMMIT_OFF:
      headers['label'] = label
    elif config.target == DORIS:
      # Doris refuses a label with group commit ("label and group_commit can't be set at
      # the same time"): the merged transaction gets a group_commit_ label of its own.
      headers['group_commit'] = group_commit
    else:
      # StarRocks merge commit keeps the caller's label as the request id.
      headers.update({
          'label': label, 'enable_merge_commit': 'true',
          'merge_commit_async': 'true' if group_commit == 'async_mode' else 'false',
          'merge_commit_interval_ms': str(options.merge_commit_interval_ms if options is not None
                                          else DEFAULT_MERGE_COMMIT_INTERVAL_MS),
          'merge_commit_parallel': str(options.merge_commit_parallel if options is not None
                                       else DEFAULT_MERGE_COMMIT_PARALLEL)})
    if config.two_phase_commit and config.target == DORIS:
      headers['two_phase_commit'] = 'true'
    if options is not None:
      headers.update(options.to_headers())
    if extra:
      headers.update(extra)
    return headers

  def _load_once(self, db: str, tbl: str, payload: bytes, label: str, headers: Dict[str, str],
                 rows: Optional[int]) -> LoadOutcome:
    table = f'{db}.{tbl}'
    transport = self._transport
    path = f'/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_stream_load'
    be, fe = transport.resolve_be(path, headers, table, label)
    try:
      response = transport.session.put(be + path, data=payload, headers=headers,
                                       auth=transport.auth, allow_redirects=False,
                                       timeout=transport.load_timeout())
    except requests.Timeout as error:
      raise RetryableLoadError(f'{table}: load timed out on BE {host_of(be)}: '
                               f'{type(error).__name__}', table=table, label=label,
                               status='timeout', reason='timeout') from None
    except requests.RequestException as error:
      raise RetryableLoadError(f'{table}: connection to BE {host_of(be)} failed: '
                               f'{type(error).__name__}', table=table, label=label,
                               status='connection error', reason='connection') from None
    result = load_response_json(response, table, label, be)
    outcome = self._outcome_from(result, table, label, rows, fe, be)
    if (self._config.two_phase_commit and self._config.target == DORIS and outcome.txn_id
        and outcome.txn_id > 0 and outcome.status not in LABEL_EXISTS_STATUSES):
      self.transactions.doris_2pc(db, outcome.txn_id, table=table, label=label)
    return outcome

  def _outcome_from(self, result: dict, table: str, label: str, rows: Optional[int], fe: str,
                    be: str) -> LoadOutcome:
    status = result.get('Status') or result.get('status') or ''
    message = str(result.get('Message') or result.get('msg') or '')
    txn_id = result.get('TxnId')
    if status in LOADED_STATUSES or status == 'OK':  # 'OK': StarRocks transaction API answers
      outcome = LoadOutcome(
          table=table, label=label, status=STATUS_SUCCESS if status == 'OK' else status,
          txn_id=txn_id, loaded_rows=int(result.get('NumberLoadedRows', rows or 0)),
          filtered_rows=int(result.get('NumberFilteredRows', 0)), message=message,
          be=host_of(be))
      if outcome.filtered_rows and result.get('ErrorURL'):
        outcome.rejected = self._fetch_error_log(result['ErrorURL'])
      return outcome
    if status in LABEL_EXISTS_STATUSES:
      return self.transactions.resolve_existing_label(result, table, label, rows, fe, be)
    error = classify_failure(message, table=table, label=label, status=status or 'unknown',
                             response=result)
    if int(result.get('NumberFilteredRows') or 0) > 0 and result.get('ErrorURL'):
      rejected = self._fetch_error_log(result['ErrorURL'])
      if not isinstance(error, DataQualityError):
        error = DataQualityError(f'{table}: rows rejected: {message}', table=table, label=label,
                                 status=status, response=result)
      error.rejected = rejected
    raise error

  def _fetch_error_log(self, error_url: str) -> List[str]:
    """Reads the rejected rows and reasons the server kept for a load."""
    transport = self._transport
    try:
      # The error log needs no credentials; none are sent.
      response = transport.session.get(strip_userinfo(error_url), stream=True,
                                       timeout=transport.state_timeout())
      content = response.raw.read(MAX_ERROR_LOG_BYTES, decode_content=True)
      response.close()
    except requests.RequestException as error:
      return [f'(error log at {host_of(error_url)} unavailable: {type(error).__name__})']
    lines = content.decode('utf-8', errors='replace').splitlines()
    return [line for line in lines if line.strip()][:MAX_ERROR_LOG_LINES]

  # ----------------------------------------------------------------- tables

  def table_keys_type(self, table: str) -> Optional[str]:
    """The table's key model from the FE's schema endpoint, or None if unknown.

    Doris answers ``GET /api/{db}/{tbl}/_schema`` with ``keysType``:
    ``DUP_KEYS``, ``UNIQUE_KEYS``, ``AGG_KEYS`` (StarRocks: also
    ``PRIMARY_KEYS``).  Used to decide whether batches of one table may load
    concurrently; any failure answers None, and the caller stays safe.
    """
    db, tbl = split_table(table)
    transport = self._transport

    def attempt(fe: str) -> Optional[str]:
      response = transport.session.get(
          f'{fe}/api/{urllib.parse.quote(db)}/{urllib.parse.quote(tbl)}/_schema',
          auth=transport.auth, allow_redirects=False, timeout=transport.state_timeout())
      data = (json_or_none(response) or {}).get('data')
      if isinstance(data, dict) and isinstance(data.get('keysType'), str):
        return data['keysType'].upper()
      return None

    try:
      return transport.on_each_fe(attempt, what='table schema', table=table)
    except (RetryableLoadError, NextFe):
      return None

  # ------------------------------------------------------ labels (recovery)

  def load_state(self, table: str, label: str) -> str:
    """The state of ``label`` (see ``Transactions.load_state``)."""
    db, _ = split_table(table)
    return self.transactions.load_state(db, label)

  def settle_label(self, table: str, label: str, *, commit_prepared: bool = True) -> str:
    """Waits until ``label``'s load has ended and settles a prepared one.

    Used after a crash, for labels whose fate is unknown: a RUNNING load is
    waited for (bounded by ``label_state_timeout_secs``); a PRECOMMITTED one
    is committed (or aborted).  Returns the final state: one of
    ``LOADED_STATES`` or ``FREE_STATES``.
    """
    db, _ = split_table(table)
    state = self.transactions.wait_for_label(db, table, label)
    if state in ('PRECOMMITTED', 'PREPARED'):
      if commit_prepared:
        self.transactions.commit_prepared(table, label)
        return 'COMMITTED'
      self.transactions.abort_prepared(table, label)
      return 'ABORTED'
    return state
