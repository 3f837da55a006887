"""The write-ahead log a sink can be given for exactly-once: an interface, no implementation.

Before each load the sink records what it is about to load (the label and the rows' offsets),
durably; after the load, that it succeeded. A restarting job reads the log to skip what was
loaded and settle what is unknown. ``transforms.delivery`` implements it on a compacted Kafka
topic (the load journal); this package only calls it, so Stream Load stands on its own.
"""

from __future__ import annotations

from typing import Any, Hashable, Protocol, Sequence

from transforms.types import Row

__all__ = ['WriteAheadLog', 'WriteAheadLogSpec']


class WriteAheadLog(Protocol):
  """One worker's log (thread-safe: the flush threads share it)."""

  def write_ahead(self, key: Hashable, table: str, label: str, rows: Sequence[Row]) -> Any:
    """Records, durably, that ``label`` is about to load ``rows`` (of batching key ``key``).

    Returns:
      A token for ``mark_loaded``, or None when there is nothing to record (rows that did not
      come from Kafka).

    Raises:
      transforms.errors.ClusterFault: the log is unavailable: the load must not be sent.
    """

  def mark_loaded(self, token: Any) -> None:
    """Records that the load of ``token`` succeeded (may be asynchronous)."""

  def collect(self) -> None:
    """Forgets what is no longer needed (now and then; cheap when there is nothing to do)."""

  def close(self) -> None:
    """Sends what is queued (best effort) and closes its clients."""


class WriteAheadLogSpec(Protocol):
  """Where the log lives: picklable settings, travelling with the sink to each worker."""

  group: str

  def open(self) -> WriteAheadLog:
    """The worker's log (called once per worker process, on the worker)."""


