"""The Stream Load exception taxonomy, by whose fault a failure is.

Like ``apache_beam.io.requestresponse`` (``UserCodeExecutionException`` and its
quota/timeout subclasses), callers act on the type of an error, never on its
text, and each type says what happens to the rows:

* ``RetryableLoadError``: may pass on a later attempt with the same label;
  the client retries it with backoff, then gives up with
  ``RetriesExhaustedError``.
* ``RowFaultError``: the rows are at fault (rejected as bad data, routed to a
  table that does not exist).  The sink dead-letters them, with the reason,
  and their offsets move on.
* ``ClusterFaultError``: the cluster is at fault (credentials refused, down
  past every retry, an answer no client can use).  The rows are fine, so they
  must not be dead-lettered: the sink fails the bundle, no offset moves, and
  a restart loads them.

Messages never contain the password or an ``Authorization`` header.
"""

from __future__ import annotations

from typing import List, Optional

from transforms.errors import ClusterFault, CredentialsFault, LoaderError, RowFault, TransientFault

__all__ = [
    'StreamLoadError',
    'RetryableLoadError',
    'UnclassifiedLoadError',
    'RowFaultError',
    'DataQualityError',
    'TableNotFoundError',
    'ClusterFaultError',
    'AuthenticationError',
    'RetriesExhaustedError',
    'ProtocolError',
    'StreamLoadUnavailableError',
]


class StreamLoadError(LoaderError):
  """Base class of every Stream Load failure.

  Attributes:
    table: ``db.tbl`` the load was for.
    label: the load's label.
    status: Doris's ``Status`` (or an HTTP/transport description).
    response: the parsed response JSON when there was one.
    reason: a short word for metrics and alerts (``transforms.metrics.FAILURE_REASONS``):
      ``too_many_versions``, ``txn_limit``, ``timeout``, ``connection``, ``auth``, ...
  """
  default_reason = 'permanent'

  def __init__(self, message: str, *, table: Optional[str] = None, label: Optional[str] = None,
               status: Optional[str] = None, response: Optional[dict] = None,
               reason: Optional[str] = None):
    super().__init__(message)
    self.table = table
    self.label = label
    self.status = status
    self.response = response
    self.reason = reason or self.default_reason


class RetryableLoadError(StreamLoadError, TransientFault):
  """A failure that may pass on a later attempt with the same label."""
  default_reason = 'retryable'


class UnclassifiedLoadError(RetryableLoadError):
  """A failure whose message no rule knows.

  Retried like a transient one (the label makes that safe) and logged in full
  at every attempt; when the retries run out the bundle fails with it, so an
  unknown failure is never silently dead-lettered nor retried without end.
  """


class RowFaultError(StreamLoadError, RowFault):
  """The rows are at fault: they go to dead letters and their offsets move on."""


class DataQualityError(RowFaultError):
  """Too many rows were filtered (beyond ``max_filter_ratio``).

  Attributes:
    rejected: lines of the load's error log (``ErrorURL``): the rejected rows
      and the reason for each, as far as the server reported them.
  """
  default_reason = 'data_quality'

  def __init__(self, message: str, *, rejected: Optional[List[str]] = None, **kwargs):
    super().__init__(message, **kwargs)
    self.rejected = rejected or []


class TableNotFoundError(RowFaultError):
  """The rows were routed to a database or table that does not exist."""
  default_reason = 'table_not_found'


class ClusterFaultError(StreamLoadError, ClusterFault):
  """The cluster is at fault: the bundle fails and no offset moves past the rows."""


class AuthenticationError(ClusterFaultError, CredentialsFault):
  """The FE or BE refused the user name or password."""
  default_reason = 'auth'


class RetriesExhaustedError(ClusterFaultError):
  """A retryable failure persisted through ``max_retries`` attempts."""


class ProtocolError(ClusterFaultError):
  """An answer no client can act on (a redirect to nowhere, a BE that redirects again)."""


class StreamLoadUnavailableError(ClusterFaultError):
  """Raised by the sink to fail its bundle: the cluster stayed unusable for a batch."""
