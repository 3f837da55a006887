"""``LoadScheduler``: runs load jobs on a thread pool, one at a time per ordered key.

A job whose key already has a load in flight waits in that key's queue --
not on a pool thread -- and starts when its predecessor ends, so a slow table
never blocks the loads of the others, and updates to one key land in Kafka
order even with parallel flushes.  When a job of an ordered key fails, the
key's queued jobs fail with it: loading them now would let the failed
(older) batch, re-sent after a restart, overwrite them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Any, Callable, Deque, Dict

__all__ = ['LoadScheduler', 'Job']


class Job:
  """One unit of work for a key; ``future`` holds its result."""
  __slots__ = ('key', 'payload', 'future')

  def __init__(self, key: Any, payload: Any):
    self.key = key
    self.payload = payload
    self.future: concurrent.futures.Future = concurrent.futures.Future()


class LoadScheduler:
  """Submits jobs to ``executor``, serialising those of an ordered key.

  Args:
    executor: the thread pool (``flush_workers`` threads).
    run: what a job does (called on a pool thread with the job).
  """

  def __init__(self, executor: concurrent.futures.Executor, run: Callable[[Job], Any]):
    self._executor = executor
    self._run = run
    self._lock = threading.Lock()
    self._busy_keys: Dict[Any, Deque[Job]] = {}

  def submit(self, job: Job, ordered: bool) -> None:
    if ordered:
      with self._lock:
        queue = self._busy_keys.get(job.key)
        if queue is not None:
          queue.append(job)
          return
        self._busy_keys[job.key] = collections.deque()
    self._start(job, ordered)

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
      queue = self._busy_keys[job.key]
      if error is not None:
        abandoned, following = list(queue), None
        del self._busy_keys[job.key]
      else:
        abandoned, following = [], queue.popleft() if queue else None
        if following is None:
          del self._busy_keys[job.key]
    for waiting in abandoned:
      waiting.future.set_exception(error)
    if following is not None:
      self._start(following, ordered)
