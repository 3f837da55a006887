"""Merged commits: Doris group commit and StarRocks merge commit, one engine.

Doris (https://doris.apache.org/docs/data-operate/import/group-commit-manual, BE
``stream_load.cpp`` ``_handle_group_commit``): a load with ``group_commit: sync_mode`` or
``async_mode`` does not begin a transaction of its own; its rows join the table's open
internal load, labelled ``group_commit_<hex>_<hex>``, which commits once
``group_commit_interval_ms`` (table property, 10000 by default) has passed since it opened,
or once it holds ``group_commit_data_bytes`` (64 MB by default). That is one transaction and
one table version for all the loads it holds. ``sync_mode`` callers return after that commit
(their rows are visible); ``async_mode`` callers return once the rows are written (to the WAL
in Doris) and see them visible at the commit. Every caller gets the internal load's ``Label``
and ``TxnId``.

StarRocks ("Merge Commit parameters" of
https://docs.starrocks.io/docs/sql-reference/sql-statements/loading_unloading/STREAM_LOAD/;
FE ``load/batchwrite/MergeCommitJob.java``): requests with
``enable_merge_commit: true`` and identical load parameters are merged per table within
``merge_commit_interval_ms`` into one transaction labelled ``merge_commit_<hex>-<hex>``;
``merge_commit_async: true`` returns at once. One request's data quality problem fails the
whole merged transaction.
"""

import dataclasses
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from stream_load_emulator import txn as txn_lib


@dataclasses.dataclass
class Member:
  """One load's part of a merged transaction."""
  ops: Optional[list]
  table: Any  # schema.Table to write with (carries a header sequence column)
  partial: bool
  total: int
  loaded: int
  filtered: int
  unselected: int
  nbytes: int
  max_filter_ratio: float = 0.0
  request: str = ''


class Batch:
  """An open (then committed or aborted) merged transaction."""

  def __init__(self, key, db: str, table: str, label: str, txn: txn_lib.Txn, kind: str,
               interval_ms: float, data_bytes: Optional[int],
               validate: Optional[Callable[['Batch'], Optional[Tuple[str, str]]]]):
    self.key = key
    self.db = db
    self.table = table
    self.label = label
    self.txn = txn
    self.kind = kind
    self.interval_ms = interval_ms
    self.data_bytes = data_bytes
    self.validate = validate
    self.members: List[Member] = []
    self.nbytes = 0
    self.opened = time.monotonic()
    self.deadline = self.opened + interval_ms / 1000.0
    self.done = threading.Event()
    self.error: Optional[Tuple[str, str]] = None  # (status code, message) when aborted
    self.timer: Optional[threading.Timer] = None

  @property
  def txn_id(self) -> int:
    return self.txn.txn_id


def doris_label() -> str:
  """``group_commit_<16 hex>_<16 hex>`` as in the group commit manual's responses."""
  u = uuid.uuid4().int
  return 'group_commit_%016x_%016x' % (u >> 64, u & (2**64 - 1))


def starrocks_label() -> str:
  """``MergeCommitJob``: ``"merge_commit_" + DebugUtil.printId(loadId)`` (hi-lo in hex)."""
  u = uuid.uuid4().int
  return 'merge_commit_%x-%x' % (u >> 64, u & (2**64 - 1))


def data_quality(batch: Batch) -> Optional[Tuple[str, str]]:
  """StarRocks: max_filter_ratio over the whole merged transaction (the parameters are
  homogeneous, so every member carries the same ratio)."""
  filtered = sum(m.filtered for m in batch.members)
  selected = sum(m.total - m.unselected for m in batch.members)
  ratio = batch.members[0].max_filter_ratio if batch.members else 0.0
  if filtered and selected and filtered / selected > ratio:
    return 'DATA_QUALITY_ERROR', 'too many filtered rows'
  return None


class GroupCommitManager:
  """Open merged transactions per key; commits them on time, size or ``flush()``.

  Args:
    txns: the server's transaction manager (the merged transaction has its label there, so
      ``get_load_state`` shows PREPARE, then VISIBLE).
    storage: writes all members' rows in one SQLite transaction.
    count_only: store nothing.
    on_commit: called with a dict describing each finished merged transaction.
  """

  def __init__(self, txns: txn_lib.TxnManager, storage, count_only: bool = False,
               on_commit: Optional[Callable[[Dict[str, Any]], None]] = None):
    self._txns = txns
    self._storage = storage
    self._count_only = count_only
    self._on_commit = on_commit
    self._lock = threading.Lock()
    self._changed = threading.Condition(self._lock)
    self._open: Dict[Any, Batch] = {}
    self.commits: List[Dict[str, Any]] = []

  def join(self, key, db: str, table: str, member: Member, interval_ms: float,
           data_bytes: Optional[int], new_label: Callable[[], str], kind: str,
           validate=None) -> Batch:
    """Adds ``member`` to the open batch of ``key`` (opening one if needed).

    A batch that reaches ``data_bytes`` is committed here, in the caller's thread, before
    this returns; otherwise its timer commits it when the interval is over.
    """
    with self._lock:
      batch = self._open.get(key)
      if batch is None:
        label = new_label()
        txn = self._txns.begin(db, table, label)
        batch = Batch(key, db, table, label, txn, kind, interval_ms, data_bytes, validate)
        self._open[key] = batch
        batch.timer = threading.Timer(interval_ms / 1000.0, self._close, args=(batch,))
        batch.timer.daemon = True
        batch.timer.start()
      batch.members.append(member)
      batch.nbytes += member.nbytes
      full = data_bytes is not None and batch.nbytes >= data_bytes
      if full:
        del self._open[key]
      self._changed.notify_all()
    if full:
      self._commit(batch)
    return batch

  def _close(self, batch: Batch) -> None:
    with self._lock:
      if self._open.get(batch.key) is not batch:
        return  # already committed (size reached, or flushed)
      del self._open[batch.key]
      self._changed.notify_all()
    self._commit(batch)

  def flush(self) -> int:
    """Commits every open batch now; returns how many."""
    with self._lock:
      batches = list(self._open.values())
      self._open.clear()
      self._changed.notify_all()
    for batch in batches:
      self._commit(batch)
    return len(batches)

  def snapshot(self) -> List[Dict[str, Any]]:
    """The finished merged transactions, oldest first."""
    with self._lock:
      return list(self.commits)

  def pending(self) -> int:
    """Loads waiting in open batches."""
    with self._lock:
      return sum(len(b.members) for b in self._open.values())

  def wait_pending(self, n: int, timeout: float = 30.0) -> bool:
    """Blocks until at least ``n`` loads wait in open batches (False on timeout)."""
    deadline = time.monotonic() + timeout
    with self._lock:
      while sum(len(b.members) for b in self._open.values()) < n:
        left = deadline - time.monotonic()
        if left <= 0:
          return False
        self._changed.wait(left)
    return True

  def _commit(self, batch: Batch) -> None:
    if batch.timer is not None:
      batch.timer.cancel()
    error = batch.validate(batch) if batch.validate is not None else None
    if error is None:
      writes = [(m.table, m.ops, m.partial) for m in batch.members if m.ops]
      if writes and not self._count_only:
        batch.txn.apply = lambda: self._storage.apply_many(writes)
      try:
        self._txns.commit(batch.txn)
      except Exception as e:  # pylint: disable=broad-except
        error = ('INTERNAL_ERROR', 'merged commit failed: %s' % e)
    if error is not None:
      batch.error = error
      if batch.txn.status == txn_lib.PREPARE:
        self._txns.abort(batch.txn, error[1])
    info = {
        'kind': batch.kind, 'label': batch.label, 'txn_id': batch.txn_id, 'db': batch.db,
        'table': batch.table, 'loads': len(batch.members),
        'rows': sum(m.loaded for m in batch.members), 'bytes': batch.nbytes,
        'status': batch.txn.status, 'message': error[1] if error else 'OK',
        'requests': [m.request for m in batch.members if m.request], 'time': time.time()}
    with self._lock:
      self.commits.append(info)
    if self._on_commit is not None:
      self._on_commit(info)
    batch.done.set()
