"""The Stream Load exception taxonomy.

Like ``apache_beam.io.requestresponse`` (``UserCodeExecutionException`` and its
quota/timeout subclasses), the retry logic reads the type of an error, not its
text: ``RetryableLoadError`` is retried with backoff, ``PermanentLoadError``
fails the batch at once (it goes to dead letters).  Messages never contain
the password or an ``Authorization`` header.
"""

from __future__ import annotations

from typing import List, Optional

__all__ = [
    'StreamLoadError',
    'RetryableLoadError',
    'PermanentLoadError',
    'AuthenticationError',
    'TableNotFoundError',
    'DataQualityError',
    'RetriesExhaustedError',
    'StreamLoadUnavailableError',
]


class StreamLoadError(Exception):
  """Base class of every Stream Load failure.

  Attributes:
    table: ``db.tbl`` the load was for.
    label: the load's label.
    status: Doris's ``Status`` (or an HTTP/transport description).
    response: the parsed response JSON when there was one.
  """

  def __init__(self, message: str, *, table: Optional[str] = None, label: Optional[str] = None,
               status: Optional[str] = None, response: Optional[dict] = None):
    super().__init__(message)
    self.table = table
    self.label = label
    self.status = status
    self.response = response


class RetryableLoadError(StreamLoadError):
  """A failure that may pass on a later attempt with the same label."""


class PermanentLoadError(StreamLoadError):
  """A failure that no retry will fix (bad credentials, unknown table, bad data)."""


class AuthenticationError(PermanentLoadError):
  """The FE or BE refused the user name or password."""


class TableNotFoundError(PermanentLoadError):
  """The database or table does not exist."""


class DataQualityError(PermanentLoadError):
  """Too many rows were filtered (beyond ``max_filter_ratio``).

  Attributes:
    rejected: lines of the load's error log (``ErrorURL``): the rejected rows
      and the reason for each, as far as Doris reported them.
  """

  def __init__(self, message: str, *, rejected: Optional[List[str]] = None, **kwargs):
    super().__init__(message, **kwargs)
    self.rejected = rejected or []


class RetriesExhaustedError(PermanentLoadError):
  """A retryable failure persisted through ``max_retries`` attempts."""


class StreamLoadUnavailableError(StreamLoadError):
  """The sink gives up on a bundle: the cluster stayed unusable through every retry.

  Raised from the DoFn (not dead-lettered), so the bundle fails and nothing
  after it -- offsets included -- is committed.
  """
