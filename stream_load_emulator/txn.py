"""Load transactions and labels, as Doris's FE keeps them.

A label names one load per database
(https://doris.apache.org/docs/data-operate/transaction#label-mechanism). Beginning a
transaction with a label whose transaction is not ABORTED fails with LABEL_ALREADY_EXISTS;
the existing job status is RUNNING (PREPARE), PRECOMMITTED, or FINISHED (COMMITTED/VISIBLE)
as in Doris's ``LabelAlreadyUsedException``. Finished labels are forgotten after
``label_keep_max_secs`` (Doris ``streaming_label_keep_max_second``, 12 h by default).
Two-phase commit (https://doris.apache.org/docs/data-operate/transaction#stream-load-2pc)
keeps PRECOMMITTED rows here, invisible, until commit or abort.
"""

import dataclasses
import itertools
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional

PREPARE = 'PREPARE'
PRECOMMITTED = 'PRECOMMITTED'
COMMITTED = 'COMMITTED'
VISIBLE = 'VISIBLE'
ABORTED = 'ABORTED'
UNKNOWN = 'UNKNOWN'

_JOB_STATUS = {PREPARE: 'RUNNING', PRECOMMITTED: 'PRECOMMITTED', COMMITTED: 'FINISHED',
               VISIBLE: 'FINISHED'}


class TxnError(Exception):
  """A transaction operation the FE rejects; ``code`` is the Doris status code name."""

  def __init__(self, msg: str, code: str = 'ANALYSIS_ERROR', err_code: int = 2):
    super().__init__(msg)
    self.msg = msg
    self.code = code
    self.err_code = err_code

  @property
  def detail(self) -> str:
    """The FE's text as the BE relays it: ``TStatus: errCode = 2, detailMessage = ...``."""
    return 'TStatus: errCode = %d, detailMessage = %s' % (self.err_code, self.msg)


class LabelAlreadyExists(TxnError):
  """The label is taken; ``job_status`` is RUNNING / PRECOMMITTED / FINISHED."""

  def __init__(self, label: str, txn_id: int, status: str):
    super().__init__('Label [%s] has already been used, relate to txn [%d], status [%s].'
                     % (label, txn_id, status), code='LABEL_ALREADY_EXISTS')
    self.job_status = _JOB_STATUS.get(status, 'FINISHED')


@dataclasses.dataclass
class Txn:
  """One load transaction."""
  txn_id: int
  db: str
  table: str
  label: str
  status: str = PREPARE
  created: float = dataclasses.field(default_factory=time.time)
  finished: Optional[float] = None
  abort_reason: str = ''
  precommit_time: Optional[float] = None  # 2PC: when it turned PRECOMMITTED
  commit_time: Optional[float] = None  # when it turned COMMITTED (or straight VISIBLE)
  # Deferred write, run on commit (2PC keeps it until the commit call).
  apply: Optional[Callable[[], None]] = None
  info: Dict[str, Any] = dataclasses.field(default_factory=dict)


class TxnManager:
  """Labels and transactions of all databases; persisted through ``storage``."""

  def __init__(self, storage, label_keep_max_secs: float = 43200,
               clock: Callable[[], float] = time.time):
    self._storage = storage
    self._keep = label_keep_max_secs
    self._clock = clock
    self._lock = threading.Lock()
    # Serializes state changes that run a write (commit) against aborts; re-entrant because
    # a 2PC commit goes through commit().
    self._op_lock = threading.RLock()
    self._by_label: Dict[tuple, Txn] = {}
    self._by_id: Dict[int, Txn] = {}
    # Committed transactions per (db, table) since start: each is one data version.
    self.versions: Dict[tuple, int] = {}
    self._last_expire = float('-inf')
    for db, label, txn_id, table, status, finish_ts in storage.load_labels():
      if status in (PREPARE, PRECOMMITTED):
        # Uncommitted work does not survive a restart (the emulator keeps it in memory).
        status = ABORTED
      txn = Txn(txn_id, db, table, label, status, finish_ts or 0, finish_ts)
      if status in (COMMITTED, VISIBLE):
        txn.commit_time = finish_ts
      self._by_label[(db, label)] = txn
      self._by_id[txn_id] = txn
    self._ids = itertools.count(max(storage.max_txn_id(), 1000) + 1)

  def _expire(self) -> None:
    now = self._clock()
    if now - self._last_expire < min(1.0, self._keep / 4):
      return  # a sweep per second keeps begin() O(1) under many labels
    self._last_expire = now
    cutoff = now - self._keep
    for key, txn in list(self._by_label.items()):
      if txn.finished is not None and txn.finished < cutoff and txn.status in (
          VISIBLE, COMMITTED, ABORTED):
        del self._by_label[key]
        self._by_id.pop(txn.txn_id, None)
    self._storage.forget_labels_before(cutoff)

  def running_count(self, db: str) -> int:
    with self._lock:
      return sum(1 for t in self._by_label.values()
                 if t.db == db and t.status in (PREPARE, PRECOMMITTED))

  def begin(self, db: str, table: str, label: str) -> Txn:
    """Starts a transaction for ``label``.

    Raises:
      LabelAlreadyExists: the label belongs to a transaction that is not aborted.
    """
    with self._lock:
      self._expire()
      old = self._by_label.get((db, label))
      if old is not None and old.status != ABORTED:
        raise LabelAlreadyExists(label, old.txn_id, old.status)
      txn = Txn(next(self._ids), db, table, label, created=self._clock())
      self._by_label[(db, label)] = txn
      self._by_id[txn.txn_id] = txn
    return txn

  def _finish(self, txn: Txn, status: str) -> None:
    txn.status = status
    txn.finished = self._clock()
    txn.apply = None
    self._storage.save_label(txn.db, txn.label, txn.txn_id, txn.table, status, txn.finished)

  def commit(self, txn: Txn, visible: bool = True) -> None:
    """Runs the deferred write and marks the transaction VISIBLE (or COMMITTED).

    Raises:
      TxnError: the transaction was aborted meanwhile (e.g. by a 2PC abort of its label).
    """
    with self._op_lock:
      if txn.status == ABORTED:
        raise TxnError('transaction [%d] is already aborted, abort reason: %s'
                       % (txn.txn_id, txn.abort_reason or 'User Abort'))
      if txn.apply is not None:
        txn.apply()
      with self._lock:
        txn.commit_time = self._clock()
        self._finish(txn, VISIBLE if visible else COMMITTED)
        key = (txn.db, txn.table)
        self.versions[key] = self.versions.get(key, 0) + 1

  def mark_visible(self, txn: Txn) -> None:
    """COMMITTED -> VISIBLE (publish finished after a Publish Timeout)."""
    with self._lock:
      if txn.status == COMMITTED:
        self._finish(txn, VISIBLE)

  def precommit(self, txn: Txn) -> None:
    with self._op_lock, self._lock:
      if txn.status == ABORTED:
        raise TxnError('transaction [%d] is already aborted, abort reason: %s'
                       % (txn.txn_id, txn.abort_reason or 'User Abort'))
      txn.status = PRECOMMITTED
      txn.precommit_time = self._clock()
      self._storage.save_label(txn.db, txn.label, txn.txn_id, txn.table, PRECOMMITTED,
                               self._clock())

  def abort(self, txn: Txn, reason: str) -> None:
    with self._op_lock, self._lock:
      txn.abort_reason = reason
      self._finish(txn, ABORTED)

  def state(self, db: str, label: str) -> str:
    """The label's transaction status, ``UNKNOWN`` when there is none."""
    with self._lock:
      self._expire()
      txn = self._by_label.get((db, label))
      return txn.status if txn is not None else UNKNOWN

  def find(self, db: str, txn_id: Optional[int] = None,
           label: Optional[str] = None) -> Optional[Txn]:
    with self._lock:
      if txn_id is not None:
        txn = self._by_id.get(txn_id)
        return txn if txn is not None and txn.db == db else None
      return self._by_label.get((db, label))

  def operate_2pc(self, db: str, operation: str, txn_id: Optional[int] = None,
                  label: Optional[str] = None) -> Txn:
    """Commits or aborts a PRECOMMITTED transaction, with the FE's error texts.

    Raises:
      TxnError: unknown transaction, or it is not in a state that allows ``operation``.
    """
    with self._op_lock:  # one 2PC operation at a time: a commit must not run twice
      return self._operate_2pc(db, operation, txn_id, label)

  def _operate_2pc(self, db, operation, txn_id, label) -> Txn:
    txn = self.find(db, txn_id=txn_id, label=label)
    if txn is None:
      if txn_id is not None:
        raise TxnError('transaction [%d] not found' % txn_id)
      raise TxnError('running transaction not found, label=%s' % label)
    if operation == 'commit':
      if txn.status == ABORTED:
        raise TxnError('transaction [%d] is already aborted, abort reason: %s'
                       % (txn.txn_id, txn.abort_reason or 'User Abort'))
      if txn.status in (COMMITTED, VISIBLE):
        raise TxnError('transaction [%d] is already %s, not pre-committed.'
                       % (txn.txn_id, txn.status.lower()))
      if txn.status != PRECOMMITTED:
        raise TxnError('transaction [%d] is not pre-committed, status: %s'
                       % (txn.txn_id, txn.status))
      self.commit(txn)
    else:
      if txn.status == ABORTED:
        raise TxnError('transaction [%d] is already aborted, abort reason: %s'
                       % (txn.txn_id, txn.abort_reason or 'User Abort'))
      if txn.status in (COMMITTED, VISIBLE):
        raise TxnError('transaction [%d] is already %s, could not abort.'
                       % (txn.txn_id, txn.status))
      self.abort(txn, 'User Abort')
    return txn

  def snapshot(self) -> List[Txn]:
    with self._lock:
      return list(self._by_id.values())

  def transactions(self, db: str, txn_id: Optional[int] = None, label: Optional[str] = None,
                   label_regex: Optional[str] = None,
                   status: Optional[str] = None) -> List[Txn]:
    """Transactions of ``db`` the FE still remembers (running or finished, labels not yet
    forgotten), newest (highest id) first; what ``SHOW TRANSACTION`` lists.

    Args:
      db: the database.
      txn_id: only this transaction.
      label: only the label's latest transaction (Doris ``getTransactionId``).
      label_regex: only labels this regular expression matches in full (``LABEL LIKE``).
      status: only transactions in this state (``PREPARE`` ... ``ABORTED``).
    """
    with self._lock:
      self._expire()
      if label is not None:
        txn = self._by_label.get((db, label))
        found = [txn] if txn is not None else []
      else:
        found = [t for t in self._by_id.values() if t.db == db]
      pattern = re.compile(label_regex) if label_regex is not None else None
      return sorted((t for t in found
                     if (txn_id is None or t.txn_id == txn_id)
                     and (pattern is None or pattern.fullmatch(t.label))
                     and (status is None or t.status == status)),
                    key=lambda t: t.txn_id, reverse=True)
