"""The loader's error taxonomy: every failure is someone's fault, and its class says whose.

Each IO package keeps its own error classes (``stream_load.errors``, ``kafka.config``,
``schema.fe_sql``, ``records.formats``, ``delivery.journal``) and classifies in one place; all of
them derive from these, so a caller acts on the fault, never on the text:

* ``RowFault`` -- the rows (or records) are at fault: bad data, a table that does not exist for
  them. They go to dead letters with a reason and their offsets move on (within the dead-letter
  budget).
* ``ClusterFault`` -- the cluster (Doris/StarRocks, Kafka, the schema registry) is at fault: down
  past every retry, an answer no client can use. The rows are fine, so they are never
  dead-lettered: the bundle fails, no offset moves, and a restart (or the runner's retry) loads
  them. ``CredentialsFault``: it refused the user or password -- the same, but no retry helps.
* ``TransientFault`` -- may pass on a later attempt: retried with backoff (the same label makes
  that safe), then a ``ClusterFault``.
* ``ConfigFault`` -- the job's configuration is wrong (a flag, the table config, a setting the
  client refused): found at start, before anything is read.
* ``RowsOverBudget`` -- the rows are at fault, but too many of them to skip: the job stops.

Every one of them carries a message that says what happened and what to do; the command line
prints it as one line (without a traceback).
"""

from __future__ import annotations

__all__ = ['LoaderError', 'RowFault', 'ClusterFault', 'CredentialsFault', 'TransientFault',
           'ConfigFault', 'RowsOverBudget', 'fault_of']


class LoaderError(Exception):
  """A failure the loader understands; ``fault`` says whose it is."""
  fault = 'unknown'


class RowFault(LoaderError):
  """The rows are at fault: dead letters, offsets move on."""
  fault = 'rows'


class ClusterFault(LoaderError):
  """The cluster is at fault: the bundle fails, no offset moves."""
  fault = 'cluster'


class CredentialsFault(ClusterFault):
  """The cluster refused the credentials: fails at once (no retry helps)."""
  fault = 'credentials'


class TransientFault(LoaderError):
  """May pass on a later attempt: retried with backoff."""
  fault = 'transient'


class ConfigFault(LoaderError, ValueError):
  """The configuration is wrong: the start fails, naming the setting."""
  fault = 'config'


class RowsOverBudget(LoaderError):
  """Too many rows at fault to skip: the job stops, no offset moves past them."""
  fault = 'rows'


def fault_of(error: BaseException) -> str:
  """``rows``, ``cluster``, ``credentials``, ``transient``, ``config`` or ``unknown``."""
  return error.fault if isinstance(error, LoaderError) else 'unknown'
