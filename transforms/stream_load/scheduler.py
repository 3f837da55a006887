"""``LoadScheduler``: runs load jobs on a thread pool, one at a time per ordered key, in order.

A job whose key already has a load in flight waits in that key's queue --
not on a pool thread -- and starts when its predecessor ends, so a slow table
never blocks the loads of the others, and updates to one key land in Kafka
order even with parallel flushes.  A job numbered by the batcher (``seq``,
the order its batch was cut in) also waits for the jobs numbered before it:
two threads of a worker may hand their batches on in another order than
they were cut.  When a job of an ordered key fails, the key's queued jobs
fail with it: loading them now would let the failed (older) batch, re-sent
after a restart, overwrite them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Any, Callable, Deque, Dict, Optional

__all__ = ['LoadScheduler', 'Job']


class Job:
  """One unit of work for a key; ``future`` holds its result; ``seq`` its place among the key's."""
  __slots__ = ('key', 'payload', 'future', 'seq')

  def __init__(self, key: Any, payload: Any, seq: Optional[int] = None):
    self.key = key
    self.payload = payload
    self.seq = seq
    self.future: concurrent.futures.Future = concurrent.futures.Future()


class _KeyState:
  """An ordered key's jobs: the one in flight, those waiting behind it, those out of turn."""
  __slots__ = ('busy', 'queue', 'parked', 'next_seq')

  def __init__(self):
    self.busy = False
    self.queue: Deque[Job] = collections.deque()
    self.parked: Dict[int, Job] = {}
    self.next_seq = 0


class LoadScheduler:
  """Submits jobs to ``executor``, serialising those of an ordered key in their order.

  Args:
    executor: the thread pool (``flush_workers`` threads).
    run: what a job does (called on a pool thread with the job).
  """

  def __init__(self, executor: concurrent.futures.Executor, run: Callable[[Job], Any]):
    self._executor = executor
    self._run = run
    self._lock = threading.Lock()
    self._keys: Dict[Any, _KeyState] = {}

  def submit(self, job: Job, ordered: bool) -> None:
    if not ordered:
      self._start(job, ordered)
      return
    with self._lock:
      state = self._keys.setdefault(job.key, _KeyState())
      if job.seq is not None and job.seq > state.next_seq:
        state.parked[job.seq] = job  # cut after a batch not handed on yet: wait for it
        return
      ready = [job]
      if job.seq is not None:
        state.next_seq = max(state.next_seq, job.seq + 1)
        while state.next_seq in state.parked:
          ready.append(state.parked.pop(state.next_seq))
          state.next_seq += 1
      state.queue.extend(ready)
      start = None if state.busy else state.queue.popleft()
      state.busy = True
    if start is not None:
      self._start(start, ordered)

  def _start(self, job: Job, ordered: bool) -> None:
    future = self._executor.submit(self._run, job)
    future.add_done_callback(lambda done: self._finished(job, ordered, done))

  def _finished(self, job: Job, ordered: bool, done: concurrent.futures.Future) -> None:
    error = done.exception()
    if error is not None:
      job.future.set_exception(error)
    else:
      job.future.set_result(done.result())
    if not ordered:
      return
    with self._lock:
      state = self._keys[job.key]
      following = None
      if error is not None:
        abandoned = list(state.queue) + list(state.parked.values())
        state.queue.clear()
        state.parked.clear()
        state.busy = False
      else:
        abandoned = []
        if state.queue:
          following = state.queue.popleft()
        else:
          state.busy = False
    for waiting in abandoned:
      waiting.future.set_exception(error)
    if following is not None:
      self._start(following, ordered)
