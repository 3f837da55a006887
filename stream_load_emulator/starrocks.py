"""StarRocks's Stream Load transaction interface on the emulator (``--flavor starrocks``).

Follows https://docs.starrocks.io/docs/loading/Stream_Load_transaction_interface/:
``POST /api/transaction/begin`` opens a transaction for a label (headers ``label``, ``db``,
``table``), ``PUT /api/transaction/load`` (redirected by the FE to a BE) adds data to it,
``/prepare`` pre-commits, ``/commit`` makes the rows visible, ``/rollback`` drops them.
Responses use StarRocks's keys (``Status`` ``OK`` / ``FAILED`` / ``LABEL_ALREADY_EXISTS`` /
``TXN_NOT_EXISTS``, ``Message``, ``Label``, ``TxnId`` and the row counters).
"""

import threading
import time
from typing import Any, Dict

from stream_load_emulator import load as load_lib
from stream_load_emulator import txn as txn_lib


_NOT_EXIST = 'Transcation Not Exist'  # sic, StarRocks's text


def _counters(txn: txn_lib.Txn, start: float) -> Dict[str, Any]:
  info = txn.info
  return {'NumberTotalRows': info.get('total', 0), 'NumberLoadedRows': info.get('loaded', 0),
          'NumberFilteredRows': info.get('filtered', 0),
          'NumberUnselectedRows': info.get('unselected', 0),
          'LoadBytes': info.get('bytes', 0),
          'LoadTimeMs': int((time.time() - txn.created) * 1000),
          'StreamLoadPutTimeMs': 0, 'ReceivedDataTimeMs': info.get('read_ms', 0),
          'WriteDataTimeMs': info.get('write_ms', 0),
          'CommitAndPublishTimeMs': int((time.monotonic() - start) * 1000)}


def _head(txn_id, label, status='OK', message=''):
  return {'TxnId': txn_id, 'Label': label, 'Status': status, 'Message': message}


class TransactionApi:
  """The begin / load / prepare / commit / rollback operations of one server."""

  def __init__(self, app):
    self.app = app
    self._lock = threading.Lock()

  def _find(self, db: str, label: str):
    txn = self.app.txns.find(db, label=label)
    if txn is None or txn.status in (txn_lib.ABORTED,):
      return None
    return txn

  def operate(self, op: str, db: str, table: str, label: str, h) -> Dict[str, Any]:
    """Runs begin / prepare / commit / rollback; returns the response body."""
    txns = self.app.txns
    start = time.monotonic()
    if op == 'begin':
      if db not in self.app.catalog.databases or self.app.catalog.table(db, table) is None:
        return {'Status': 'FAILED', 'Message': 'Table %s.%s does not exist' % (db, table)}
      try:
        txn = txns.begin(db, table, label)
      except txn_lib.LabelAlreadyExists as e:
        return {'Status': 'LABEL_ALREADY_EXISTS', 'ExistingJobStatus': e.job_status,
                'Message': 'Label [%s] has already been used.' % label}
      txn.info.update(ops=[], total=0, loaded=0, filtered=0, unselected=0, bytes=0,
                      timeout=h.get('timeout'))
      return {'Status': 'OK', 'Message': '', 'Label': label, 'TxnId': txn.txn_id,
              'BeginTxnTimeMs': int((time.monotonic() - start) * 1000)}
    txn = self._find(db, label)
    if txn is None:
      return _head(-1, label, 'FAILED', _NOT_EXIST)
    if op == 'rollback':
      if txn.status in (txn_lib.VISIBLE, txn_lib.COMMITTED):
        return _head(txn.txn_id, label, 'FAILED', 'Transcation State Invalid')
      txns.abort(txn, 'User Abort')
      return _head(txn.txn_id, label)
    if op == 'prepare':
      if txn.status == txn_lib.PREPARE:
        self._set_apply(txn)
        txns.precommit(txn)
      elif txn.status != txn_lib.PRECOMMITTED:
        return _head(txn.txn_id, label, 'FAILED', 'Transcation State Invalid')
      result = _head(txn.txn_id, label)
      result.update(_counters(txn, start))
      return result
    if txn.status in (txn_lib.VISIBLE, txn_lib.COMMITTED):
      return _head(txn.txn_id, label, 'OK', 'Transaction already commited')
    if txn.apply is None:
      self._set_apply(txn)
    txns.commit(txn)
    result = _head(txn.txn_id, label)
    result.update(_counters(txn, start))
    return result

  def _set_apply(self, txn: txn_lib.Txn) -> None:
    table = self.app.catalog.table(txn.db, txn.table)
    batches = list(txn.info.get('ops', []))

    def apply():
      for seq_table, ops, partial in batches:
        if ops:
          self.app.storage.apply(seq_table or table, ops, partial=partial)
    txn.apply = apply

  def load(self, h, body, counted: int, nbytes: int, read_ms: int,
           error_log_base: str) -> Dict[str, Any]:
    """``/api/transaction/load``: parses ``body`` into the open transaction's rows."""
    db, table, label = h.get('db'), h.get('table'), h.get('label')
    txn = self._find(db, label)
    if txn is None:
      return _head(-1, label, 'FAILED', 'TXN_NOT_EXISTS')
    if txn.status != txn_lib.PREPARE:
      return _head(txn.txn_id, label, 'FAILED', 'Transcation State Invalid')
    ctx = load_lib.LoadContext(db=db, table=table or txn.table, label=label)
    ctx.txn_id = txn.txn_id
    ctx.receive_bytes = nbytes
    ctx.read_ms = read_ms
    start = time.monotonic()
    loader = self.app.loader
    try:
      if body is None:
        ctx.total_rows = ctx.loaded_rows = counted
        ops = None
      else:
        tbl = self.app.catalog.table(db, ctx.table)
        ops, partial, seq_table, errors = loader.parse_rows(ctx, tbl, h, body)
        if ctx.filtered_rows:
          ctx.error_url = loader.save_error_log(error_log_base, errors)
        ratio = load_lib.max_filter_ratio(h)
        selected = ctx.total_rows - ctx.unselected_rows
        if ctx.filtered_rows and selected and ctx.filtered_rows / selected > ratio:
          raise load_lib.LoadFailed('DATA_QUALITY_ERROR', 'too many filtered rows')
    except load_lib.LoadFailed as e:
      result = _head(txn.txn_id, label, 'FAILED', e.msg)
      if ctx.error_url:
        result['ErrorURL'] = ctx.error_url
      return result
    with self._lock:
      info = txn.info
      if ops is not None and not loader.count_only:
        info['ops'].append((seq_table, ops, partial))
      info['total'] += ctx.total_rows
      info['loaded'] += ctx.loaded_rows
      info['filtered'] += ctx.filtered_rows
      info['unselected'] += ctx.unselected_rows
      info['bytes'] += nbytes
      info['read_ms'] = info.get('read_ms', 0) + ctx.read_ms
      info['write_ms'] = info.get('write_ms', 0) + int((time.monotonic() - start) * 1000)
      seq = info.setdefault('seq', 0)
      info['seq'] = seq + 1
    elapsed = int((time.monotonic() - start) * 1000)
    result = {'TxnId': txn.txn_id, 'Seq': seq, 'Label': label, 'Status': 'OK', 'Message': '',
              'NumberTotalRows': ctx.total_rows, 'NumberLoadedRows': ctx.loaded_rows,
              'NumberFilteredRows': ctx.filtered_rows,
              'NumberUnselectedRows': ctx.unselected_rows, 'LoadBytes': nbytes,
              'LoadTimeMs': elapsed, 'StreamLoadPutTimeMs': 0, 'ReceivedDataTimeMs': ctx.read_ms}
    if ctx.error_url:
      result['ErrorURL'] = ctx.error_url
    return result
