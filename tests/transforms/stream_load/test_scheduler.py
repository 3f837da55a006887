"""LoadScheduler: one load at a time per ordered key, in the order the batches were cut."""

import concurrent.futures
import threading

import pytest

from transforms.stream_load.scheduler import Job, LoadScheduler

pytestmark = pytest.mark.unit


class _Recorder:
  """Runs jobs on a pool, recording the order they start in; each waits for its release."""

  def __init__(self):
    self.started = []
    self.running = 0
    self.most_at_once = 0
    self._lock = threading.Lock()
    self.release = {}

  def __call__(self, job):
    with self._lock:
      self.started.append(job.payload)
      self.running += 1
      self.most_at_once = max(self.most_at_once, self.running)
    self.release[job.payload].wait(10)
    with self._lock:
      self.running -= 1
    return job.payload


def _jobs(recorder, key, names_and_seqs):
  jobs = []
  for name, seq in names_and_seqs:
    recorder.release[name] = threading.Event()
    jobs.append(Job(key, name, seq))
  return jobs


def test_an_ordered_keys_batches_load_one_at_a_time_in_the_order_they_were_cut():
  recorder = _Recorder()
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    scheduler = LoadScheduler(pool, recorder)
    # Two threads handed the batches on out of turn: 2 and 1 before 0.
    jobs = _jobs(recorder, ('db.t', 0), [('b2', 2), ('b1', 1), ('b0', 0), ('b3', 3)])
    for job in jobs:
      scheduler.submit(job, ordered=True)
    for name in ('b0', 'b1', 'b2', 'b3'):
      recorder.release[name].set()
    assert [job.future.result(10) for job in jobs] == ['b2', 'b1', 'b0', 'b3']
  assert recorder.started == ['b0', 'b1', 'b2', 'b3']
  assert recorder.most_at_once == 1


def test_unordered_keys_and_other_keys_load_at_once():
  together = threading.Barrier(3)  # passes only if the three loads run at the same time

  def run(job):
    together.wait(10)
    return job.payload

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    scheduler = LoadScheduler(pool, run)
    jobs = [Job(('db.dup', 0), 'd1', 1), Job(('db.dup', 0), 'd0', 0), Job(('db.u', 0), 'u0', 0)]
    scheduler.submit(jobs[0], ordered=False)
    scheduler.submit(jobs[1], ordered=False)
    scheduler.submit(jobs[2], ordered=True)
    assert [job.future.result(20) for job in jobs] == ['d1', 'd0', 'u0']


def test_a_failed_load_fails_the_keys_later_batches_without_running_them():
  calls = []

  def run(job):
    calls.append(job.payload)
    if job.payload == 'b0':
      raise RuntimeError('cluster down')
    return job.payload

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    scheduler = LoadScheduler(pool, run)
    jobs = [Job(('db.t', 0), 'b1', 1), Job(('db.t', 0), 'b0', 0)]
    for job in jobs:
      scheduler.submit(job, ordered=True)
    for job in jobs:
      with pytest.raises(RuntimeError, match='cluster down'):
        job.future.result(10)
  assert calls == ['b0']
