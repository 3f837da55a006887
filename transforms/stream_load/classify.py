"""``classify_failure``: a Doris or StarRocks failure message -> the error class to act on.

Pure, so every message the servers give is unit-tested.  Fragments are matched
in lower case.  Order matters: a data-quality message that quotes a table name
is still a data-quality failure; authentication texts are only the servers'
own (a data error that merely mentions a column called "password" must not
stop the pipeline).  A message no rule knows is ``UnclassifiedLoadError``:
retried (the label makes that safe), logged in full, and fatal to the bundle
when the retries run out -- never silently dead-lettered.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from transforms.stream_load.errors import (AuthenticationError, DataQualityError,
                                           RetryableLoadError, StreamLoadError,
                                           TableNotFoundError, UnclassifiedLoadError)

__all__ = ['classify_failure']

# The cluster is busy or a node is briefly away.
_RETRYABLE_FRAGMENTS = (
    'too many versions', 'version count', '-235', 'current running txns on db', 'larger than limit',
    'timeout', 'timed out', 'service unavailable', 'no backend', 'backend not alive', 'not alive',
    'mem_limit_exceeded', 'memory exceed', 'rpc', 'try again', 'publish', 'too many tablet',
    'connection', 'broken pipe', 'cancelled', 'internal error', 'leader', 'not master',
)
_AUTH_FRAGMENTS = ('no valid basic authorization', 'access denied for user', 'unauthorized',
                   'need auth information', 'authentication failed')
_TABLE_FRAGMENTS = ('unknown table', 'unknown database', 'table not found', 'unknown db',
                    'database not found')
# "Table [t] does not exist", "table [db.t] does not exist in database [db]" --
# but not a tablet, partition or backend that does not exist (cluster trouble).
_TABLE_MISSING = re.compile(r"\b(table|database|db)\b[^,;]{0,80}\b(does not|doesn't|not) exists?\b")
_NOT_A_TABLE = re.compile(r'\b(tablet|partition|backend)\b')
_DATA_FRAGMENTS = ('too many filtered rows', 'data_quality_error', 'data quality', 'filtered rows')


def _contains_any(text: str, fragments: Sequence[str]) -> bool:
  return any(fragment in text for fragment in fragments)


def _retryable_reason(text: str) -> str:
  """The metrics word of a retryable failure (``doris_load_failures_total{reason}``)."""
  if _contains_any(text, ('too many versions', 'version count', '-235')):
    return 'too_many_versions'
  if _contains_any(text, ('current running txns', 'larger than limit')):
    return 'txn_limit'
  if _contains_any(text, ('timeout', 'timed out')):
    return 'timeout'
  return 'retryable'


def classify_failure(message: str, *, table: str, label: str, status: str,
                     response: Optional[dict] = None) -> StreamLoadError:
  """The error to raise for a failed load (or 2PC call) with this message.

  Args:
    message: the server's ``Message`` / ``msg``.
    table: ``db.tbl``.
    label: the load's label.
    status: the server's ``Status`` (or a transport description).
    response: the parsed response, kept on the error.

  Returns:
    ``DataQualityError`` / ``TableNotFoundError`` (the rows' fault),
    ``AuthenticationError`` (the cluster's), ``RetryableLoadError`` (transient),
    or ``UnclassifiedLoadError`` (unknown: retried, then fatal).
  """
  text = (message or '').lower()
  kwargs = dict(table=table, label=label, status=status, response=response)
  if _contains_any(text, _DATA_FRAGMENTS):
    return DataQualityError(f'{table}: rows rejected beyond max_filter_ratio: {message}', **kwargs)
  if _contains_any(text, _AUTH_FRAGMENTS):
    return AuthenticationError(f'{table}: authentication failed: {message}', **kwargs)
  if _contains_any(text, _TABLE_FRAGMENTS) or (
      _TABLE_MISSING.search(text) and not _NOT_A_TABLE.search(text)):
    return TableNotFoundError(f'{table}: table or database not found: {message}', **kwargs)
  if _contains_any(text, _RETRYABLE_FRAGMENTS):
    return RetryableLoadError(f'{table}: retryable failure: {message}',
                              reason=_retryable_reason(text), **kwargs)
  return UnclassifiedLoadError(f'{table}: load failed with a message no rule knows: {message}',
                               **kwargs)
