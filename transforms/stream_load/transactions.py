"""Labels and transactions: label states, two-phase commit, StarRocks's transaction API.

* ``load_state``: ``GET /api/{db}/get_load_state?label=`` (Doris's
  ``GetStreamLoadState``; StarRocks serves the same endpoint): PREPARE,
  PRECOMMITTED, COMMITTED, VISIBLE, ABORTED or UNKNOWN.
* ``resolve_existing_label``: an earlier attempt (or run) used this label.
  Labels are derived from the batch's rows, so whatever holds the label holds
  these rows: FINISHED/VISIBLE/COMMITTED means loaded; PRECOMMITTED (a 2PC
  load prepared by a run that died before committing) is committed now; a
  RUNNING load is waited for; ABORTED/UNKNOWN frees the label for a re-send.
* Doris 2PC: ``PUT /api/{db}/_stream_load_2pc`` with ``txn_operation``
  commit/abort and ``txn_id`` or ``label``.
* StarRocks: ``/api/transaction/begin|load|prepare|commit|rollback``.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Callable, Dict, Optional

import requests

from transforms.stream_load.classify import classify_failure
from transforms.stream_load.config import STARROCKS, split_table
from transforms.stream_load.errors import (AuthenticationError, RetryableLoadError,
                                           StreamLoadError)
from transforms.stream_load.outcome import (FREE_STATES, LABEL_EXISTS_STATUSES, LOADED_STATES,
                                            PREPARED_STATES, STATUS_LABEL_EXISTS, STATUS_SUCCESS,
                                            LoadOutcome)
from transforms.stream_load.transport import NextFe, Transport, host_of, json_or_none, load_response_json

__all__ = ['Transactions']

_LOGGER = logging.getLogger(__name__)

LABEL_STATE_POLL_SECS = 1.0
_STARROCKS_OK = ('OK', STATUS_SUCCESS)


class Transactions:
  """Label and transaction calls of one client (thread-safe).

  Args:
    transport: the client's HTTP transport.
    sleep: sleep function while polling a label (tests inject a fake).
    clock: monotonic clock in seconds (tests inject a fake).
  """

  def __init__(self, transport: Transport, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic):
    self._transport = transport
    self._sleep = sleep
    self._clock = clock

  @property
  def _config(self):
    return self._transport.config

  # ------------------------------------------------------------ label states

  def load_state(self, db: str, label: str, fe: Optional[str] = None) -> str:
    """The state of ``label`` in ``db``: PREPARE, PRECOMMITTED, COMMITTED, VISIBLE, ABORTED, UNKNOWN.

    Raises:
      AuthenticationError: the credentials were refused.
      RetryableLoadError: no FE answered.
    """
    transport = self._transport

    def attempt(node: str) -> str:
      response = transport.session.get(f'{node}/api/{urllib.parse.quote(db)}/get_load_state',
                                       params={'label': label}, auth=transport.auth,
                                       timeout=transport.state_timeout())
      body = json_or_none(response) or {}
      if body.get('code') == 401 or response.status_code in (401, 403):
        raise AuthenticationError(f'{db}: get_load_state refused the credentials', label=label)
      data = body.get('data')
      if isinstance(data, str):
        return data.upper()
      if isinstance(data, dict) and 'state' in data:
        return str(data['state']).upper()
      raise NextFe('unexpected get_load_state answer')

    return transport.on_each_fe(attempt, what='get_load_state', table=db, label=label, first=fe)

  def wait_for_label(self, db: str, table: str, label: str, fe: Optional[str] = None) -> str:
    """Polls ``label`` until its load ended (loaded, prepared or free); returns the state.

    Raises:
      RetryableLoadError: still running after ``label_state_timeout_secs``.
    """
    deadline = self._clock() + self._config.label_state_timeout_secs
    while True:
      state = self.load_state(db, label, fe)
      if state in LOADED_STATES + PREPARED_STATES + FREE_STATES:
        return state
      if self._clock() >= deadline:
        raise RetryableLoadError(f'{table}: label {label} still {state} after '
                                 f'{self._config.label_state_timeout_secs:.0f}s', table=table,
                                 label=label, status=STATUS_LABEL_EXISTS)
      self._sleep(LABEL_STATE_POLL_SECS)

  def resolve_existing_label(self, result: dict, table: str, label: str, rows: Optional[int],
                             fe: Optional[str], be: str) -> LoadOutcome:
    """An earlier attempt (or run) used ``label``: find out what became of it.

    Returns:
      An outcome with status ``Label Already Exists`` when the rows are in.

    Raises:
      RetryableLoadError: the label is free again (re-send) or still running.
    """
    db, _ = split_table(table)
    existing = (result.get('ExistingJobStatus') or '').upper()
    if existing not in LOADED_STATES:
      state = existing if existing in PREPARED_STATES else self.wait_for_label(db, table, label, fe)
      if state in PREPARED_STATES:
        _LOGGER.warning('stream load label %s of %s was prepared but never committed (an earlier '
                        'run stopped between prepare and commit); committing it now', label, table)
        self.commit_prepared(table, label)
      elif state not in LOADED_STATES:
        raise RetryableLoadError(f'{table}: earlier load with label {label} ended {state}; resending',
                                 table=table, label=label, status=STATUS_LABEL_EXISTS,
                                 response=result)
    _LOGGER.info('stream load label already loaded: table=%s label=%s existing=%s', table, label,
                 existing or 'FINISHED')
    return LoadOutcome(table=table, label=label, status=STATUS_LABEL_EXISTS,
                       txn_id=result.get('TxnId'), loaded_rows=rows or 0, filtered_rows=0,
                       message=str(result.get('Message') or ''), be=host_of(be))

  # -------------------------------------------------------- two-phase commit

  def commit_prepared(self, table: str, label: str) -> None:
    """Commits the prepared (precommitted) transaction of ``label``."""
    self._finish_prepared(table, label, 'commit')

  def abort_prepared(self, table: str, label: str) -> None:
    """Aborts the prepared (precommitted) transaction of ``label``."""
    self._finish_prepared(table, label, 'abort')

  def _finish_prepared(self, table: str, label: str, operation: str) -> None:
    db, tbl = split_table(table)
    if self._config.target == STARROCKS:
      self.starrocks_call('commit' if operation == 'commit' else 'rollback',
                          {'label': label, 'db': db, 'table': tbl}, table, label)
    else:
      self.doris_2pc(db, None, table=table, label=label, operation=operation)

  def doris_2pc(self, db: str, txn_id: Optional[int], *, table: str = '', label: str = '',
                operation: str = 'commit') -> None:
    """Commits (or aborts) a Doris 2PC transaction through the FE, by id or else by label.

    Raises:
      StreamLoadError: as ``classify_failure`` makes of the answer.
    """
    transport = self._transport
    path = f'/api/{urllib.parse.quote(db)}/_stream_load_2pc'
    headers = {'txn_operation': operation, 'Expect': '100-continue'}
    if txn_id is not None:
      headers['txn_id'] = str(txn_id)
    else:
      headers['label'] = label
    be, _ = transport.resolve_be(path, headers, table or db, label)
    try:
      response = transport.session.put(be + path, headers=headers, data=b'', auth=transport.auth,
                                       allow_redirects=False, timeout=transport.load_timeout())
    except requests.RequestException as error:
      raise RetryableLoadError(f'{table or db}: 2PC {operation} of txn {txn_id or label} failed: '
                               f'{type(error).__name__}', table=table, label=label,
                               status='connection error', reason='connection') from None
    body = json_or_none(response) or {}
    status = str(body.get('status') or body.get('Status') or '')
    message = str(body.get('msg') or body.get('Message') or '')
    lowered = message.lower()
    if status.lower() == 'success' or 'successfully' in lowered:
      return
    if operation == 'commit' and 'already' in lowered and ('visible' in lowered or
                                                           'committed' in lowered):
      return
    if operation == 'abort' and 'already' in lowered and 'abort' in lowered:
      return
    raise classify_failure(message or f'2PC {operation} failed', table=table or db, label=label,
                           status=status or '2pc', response=body)

  # ----------------------------------------------- StarRocks transaction API

  def starrocks_load(self, db: str, tbl: str, payload: bytes, label: str,
                     headers: Dict[str, str], rows: Optional[int]) -> LoadOutcome:
    """begin -> load -> prepare -> commit through StarRocks' transaction API.

    Anything failing before ``prepare`` rolls the transaction back, so the
    label is free for the retry.  A ``begin`` that finds the label taken
    resolves it: an earlier attempt's transaction that never got its data is
    rolled back and re-sent; a PREPARED one (our rows, by construction of the
    label) is committed; a finished one counts as loaded.
    """
    transport = self._transport
    table = f'{db}.{tbl}'
    txn_headers = {'label': label, 'db': db, 'table': tbl}
    begin = self.starrocks_call('begin', txn_headers, table, label)
    if begin.get('Status') in LABEL_EXISTS_STATUSES:
      existing = (begin.get('ExistingJobStatus') or '').upper()
      if existing not in LOADED_STATES + PREPARED_STATES:
        self.starrocks_call('rollback', txn_headers, table, label, check=False)
        raise RetryableLoadError(f'{table}: label {label} held by an unfinished transaction '
                                 f'({existing or "unknown"}); rolled back, resending', table=table,
                                 label=label, status=STATUS_LABEL_EXISTS, response=begin)
      return self.resolve_existing_label(begin, table, label, rows, None,
                                         self._config.fe_nodes[0])
    load_headers = dict(headers)
    load_headers.update(txn_headers)
    try:
      be, _ = transport.resolve_be('/api/transaction/load', load_headers, table, label)
      try:
        response = transport.session.put(be + '/api/transaction/load', data=payload,
                                         headers=load_headers, auth=transport.auth,
                                         allow_redirects=False, timeout=transport.load_timeout())
      except requests.RequestException as error:
        raise RetryableLoadError(f'{table}: transaction load failed: {type(error).__name__}',
                                 table=table, label=label, status='connection error', reason='connection') from None
      result = load_response_json(response, table, label, be)
      if result.get('Status') not in _STARROCKS_OK:
        raise classify_failure(str(result.get('Message', '')), table=table, label=label,
                               status=str(result.get('Status')), response=result)
      self.starrocks_call('prepare', txn_headers, table, label)
    except StreamLoadError:
      self.starrocks_call('rollback', txn_headers, table, label, check=False)
      raise
    # Prepared: from here a failure leaves a PREPARED label the retry commits.
    commit = self.starrocks_call('commit', txn_headers, table, label)
    return LoadOutcome(table=table, label=label, status=STATUS_SUCCESS,
                       txn_id=commit.get('TxnId') or begin.get('TxnId'),
                       loaded_rows=int(result.get('NumberLoadedRows', rows or 0)),
                       filtered_rows=int(result.get('NumberFilteredRows', 0)),
                       message=str(commit.get('Message', '')), be=host_of(be))

  def starrocks_call(self, operation: str, headers: Dict[str, str], table: str, label: str,
                     check: bool = True) -> dict:
    """One ``POST /api/transaction/{operation}`` to the first FE that answers.

    With ``check=False`` (rollbacks on the way out of a failure) nothing is
    raised and an empty dict stands for "no FE answered".
    """
    transport = self._transport

    def attempt(fe: str) -> dict:
      response = transport.session.post(f'{fe}/api/transaction/{operation}', headers=headers,
                                        auth=transport.auth, allow_redirects=False,
                                        timeout=transport.load_timeout())
      body = json_or_none(response) or {}
      status = body.get('Status')
      if not check or status in _STARROCKS_OK + LABEL_EXISTS_STATUSES:
        return body
      if operation == 'commit' and 'visible' in str(body.get('Message', '')).lower():
        return body
      raise classify_failure(str(body.get('Message') or body.get('msg') or status), table=table,
                             label=label, status=str(status), response=body)

    try:
      return transport.on_each_fe(attempt, what=f'transaction {operation}', table=table,
                                  label=label)
    except RetryableLoadError:
      if not check:
        return {}
      raise
