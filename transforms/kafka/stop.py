"""The life of a read in this process: stop requests and finished partitions, by run token.

A run on the local runner (the FnApiRunner with its in-process worker) shares
one token between the Kafka reader, the in-process batcher and sink, and the
command line: ``request_stop(token)`` (the first SIGTERM/SIGINT) makes every
partition finish the chunk it is reading and complete its restriction; each
completed partition is reported here, and ``source_finished(token)`` tells the
batcher and the sink, in the same bundle, that no record will follow, so they
flush everything pending (reason ``drain`` or ``end_of_input``) and wait for
their loads.  Other runners have their own drain (Flink stop-with-savepoint
``--drain``, Dataflow drain), which ends the read and fires the batcher's
end-of-window timers instead.

Tokens are plain strings carried in the transforms' configuration, so the
pickled DoFns find the same state; use a fresh token per run.
"""

from __future__ import annotations

import threading
from typing import Dict, Hashable, Iterable, Optional, Set

__all__ = ['request_stop', 'stop_requested', 'expect_partitions', 'partition_done',
           'source_finished']


class _SourceState:
  __slots__ = ('expected', 'done', 'stopping')

  def __init__(self):
    self.expected: Optional[Set[Hashable]] = None
    self.done: Set[Hashable] = set()
    self.stopping = False


_STATES: Dict[str, _SourceState] = {}
_LOCK = threading.Lock()


def _state(token: str) -> _SourceState:
  state = _STATES.get(token)
  if state is None:
    state = _STATES.setdefault(token, _SourceState())
  return state


def request_stop(token: str) -> None:
  """Asks every reader of ``token`` in this process to finish its partitions now."""
  with _LOCK:
    _state(token).stopping = True


def stop_requested(token: Optional[str]) -> bool:
  """Whether a stop was requested for ``token`` (a drain is under way)."""
  if token is None:
    return False
  state = _STATES.get(token)
  return state is not None and state.stopping


def expect_partitions(token: Optional[str], partitions: Iterable[Hashable]) -> None:
  """Records the partitions the read of ``token`` consists of (when it starts)."""
  if token is None:
    return
  with _LOCK:
    state = _state(token)
    state.expected = set(partitions) | (state.expected or set())


def partition_done(token: Optional[str], partition: Hashable) -> None:
  """Records that ``partition`` was read to its end (or stopped)."""
  if token is None:
    return
  with _LOCK:
    _state(token).done.add(partition)


def source_finished(token: Optional[str]) -> bool:
  """Whether every partition of ``token``'s read is done: no record will follow."""
  if token is None:
    return False
  state = _STATES.get(token)
  return (state is not None and state.expected is not None
          and state.expected <= state.done)
