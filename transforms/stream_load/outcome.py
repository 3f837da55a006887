"""What a Stream Load answered: ``LoadOutcome`` and the statuses and label states it reads.

Doris's ``Status`` values and its label states (``ExistingJobStatus`` of a
``Label Already Exists`` answer, ``get_load_state``), with StarRocks's
spellings of the same (its transaction API answers ``OK`` and
``LABEL_ALREADY_EXISTS``).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

__all__ = [
    'LoadOutcome',
    'STATUS_SUCCESS',
    'STATUS_PUBLISH_TIMEOUT',
    'STATUS_LABEL_EXISTS',
    'LOADED_STATUSES',
    'LABEL_EXISTS_STATUSES',
    'LOADED_STATES',
    'PREPARED_STATES',
    'FREE_STATES',
]

STATUS_SUCCESS = 'Success'
STATUS_PUBLISH_TIMEOUT = 'Publish Timeout'
STATUS_LABEL_EXISTS = 'Label Already Exists'
# A load with these statuses is committed: its rows are in (Publish Timeout
# only means the publish is slow; the transaction is committed).
LOADED_STATUSES = (STATUS_SUCCESS, STATUS_PUBLISH_TIMEOUT)
LABEL_EXISTS_STATUSES = (STATUS_LABEL_EXISTS, 'LABEL_ALREADY_EXISTS')  # Doris, StarRocks txn API
# Label states (ExistingJobStatus / get_load_state): the rows are in ...
LOADED_STATES = ('FINISHED', 'VISIBLE', 'COMMITTED')
# ... prepared by a two-phase load and waiting for commit or abort ...
PREPARED_STATES = ('PRECOMMITTED', 'PREPARED')
# ... or the label holds nothing: never used, expired, or its load failed.
FREE_STATES = ('ABORTED', 'UNKNOWN')


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
  load_bytes: int = 0
  load_ms: float = 0.0
  attempts: int = 0
  message: str = ''
  rejected: List[str] = dataclasses.field(default_factory=list)
  be: Optional[str] = None
