"""Fault injection: the failures a Stream Load client must survive, switchable at run time.

Kinds and where they fire (``node`` picks one FE/BE by index, or ``'fe0'``/``'be1'``):

- ``http_500`` / ``http_503``: the BE (or the FE when node is ``'feN'``) answers that HTTP
  status with a short body and does not load.
- ``reset_mid_body``: the BE reads part of the body, then resets the connection; no response,
  nothing loaded, the transaction is aborted.
- ``slow``: the BE (or FE) waits ``delay_secs`` (default 2 s) before handling the request.
- ``slow_2pc``: the FE waits ``delay_secs`` (default 2 s) before handling a two-phase commit
  or abort (``PUT /api/{db}/_stream_load_2pc``): a prepared load whose commit is in flight,
  for as long as a test needs, whatever else the FE answers meanwhile.
- ``publish_timeout``: the load commits (rows stored and visible) but answers ``Status``
  ``Publish Timeout`` (Doris: committed, publish slow; the label turns VISIBLE shortly after).
- ``too_many_versions``: the BE fails the load with Doris's ``[E-235]`` too-many-versions error.
- ``txn_limit``: begin-transaction fails with Doris's ``current running txns on db ... larger
  than limit`` error.
- ``be_down`` / ``fe_down``: the node's listening socket is closed (connection refused) and its
  open connections dropped until the fault is cleared.
- ``response_lost``: the BE reads the whole body and commits the load (rows stored, label
  VISIBLE), then closes the connection without sending any HTTP response (a lost answer: the
  client cannot tell whether the load happened).
- ``reset_after_body``: the same, but the connection is reset (RST) instead of closed.
- ``schema_change_busy``: an ``ALTER TABLE`` on the SQL API answers Doris's "Table[t]'s
  state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER ops" (another schema change job
  of the table is running); ``ddl_denied``: it answers Doris's missing ALTER privilege error.

The two after-commit kinds model what Doris's label mechanism exists for
(https://doris.apache.org/docs/data-operate/transaction#label-mechanism): a client that
retries with the same label gets ``Label Already Exists`` / ``ExistingJobStatus`` ``FINISHED``
and no duplicate rows; one that retries with a fresh label loads the rows twice.

``times`` counts how many requests the fault affects (``None``: until cleared; the two
``*_down`` kinds always last until cleared); ``table``
restricts load faults to one table (``'db.tbl'`` or ``'tbl'``).
"""

import dataclasses
import threading
from typing import Any, Dict, List, Optional, Union

KINDS = ('http_500', 'http_503', 'reset_mid_body', 'slow', 'publish_timeout',
         'too_many_versions', 'txn_limit', 'be_down', 'fe_down', 'response_lost',
         'reset_after_body', 'schema_change_busy', 'ddl_denied', 'slow_2pc')
# Faults of the FE (the others, without a node named 'feN', hit the BEs).
FE_KINDS = ('fe_down', 'schema_change_busy', 'ddl_denied', 'slow_2pc')
AFTER_COMMIT_KINDS = ('response_lost', 'reset_after_body')
DEFAULT_SLOW_SECS = 2.0


@dataclasses.dataclass
class Fault:
  """One injected fault."""
  kind: str
  times: Optional[int] = 1
  node: Optional[Union[int, str]] = None
  delay_secs: Optional[float] = None
  table: Optional[str] = None

  def matches(self, role: str, index: int, db: Optional[str], table: Optional[str]) -> bool:
    """True when this fault applies to node ``role``+``index`` and the target table."""
    node = self.node
    if isinstance(node, str) and not node.isdigit():
      if node.lower() != '%s%d' % (role, index):
        return False
    else:
      if role != ('fe' if self.kind in FE_KINDS else 'be'):
        return False
      if node is not None and int(node) != index:
        return False
    if self.table and table is not None:
      wanted = self.table.split('.')
      if wanted[-1] != table or (len(wanted) == 2 and wanted[0] != db):
        return False
    return True

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


class FaultRegistry:
  """Thread-safe list of active faults."""

  def __init__(self):
    self._lock = threading.Lock()
    self._faults: List[Fault] = []

  def add(self, kind: str, times: Optional[int] = 1, node=None, delay_secs=None,
          table=None) -> Fault:
    if kind not in KINDS:
      raise ValueError('unknown fault kind %r; expected one of %s' % (kind, ', '.join(KINDS)))
    if times is not None and int(times) < 1:
      raise ValueError('times must be >= 1 or None, got %r' % times)
    fault = Fault(kind, None if times is None else int(times), node, delay_secs, table)
    with self._lock:
      self._faults.append(fault)
    return fault

  def clear(self) -> None:
    with self._lock:
      self._faults.clear()

  def list(self) -> List[Fault]:
    with self._lock:
      return list(self._faults)

  def take(self, kind: str, role: str, index: int, db: Optional[str] = None,
           table: Optional[str] = None) -> Optional[Fault]:
    """Returns (and uses up one ``times`` of) the first matching fault, if any."""
    with self._lock:
      for fault in self._faults:
        if fault.kind == kind and fault.matches(role, index, db, table):
          if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
              self._faults.remove(fault)
          return fault
    return None

  def is_down(self, role: str, index: int) -> bool:
    """Whether a ``be_down``/``fe_down`` fault holds this node down (until cleared)."""
    kind = role + '_down'
    with self._lock:
      return any(f.kind == kind and f.matches(role, index, None, None) for f in self._faults)
