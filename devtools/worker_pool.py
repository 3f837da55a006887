"""Beam's Python SDK worker pool in a process of its own, for ``--environment_type=EXTERNAL``.

``python -m apache_beam.runners.worker.worker_pool_main --service_port=P`` answers a runner's
``StartWorker`` requests by starting one SDK worker *process* each (``python -c ...
SdkHarness``).  It runs ``python`` from ``PATH``, so the pool is started with this interpreter's
directory first: the workers import the loader from this checkout.  This is how Flink runs
Python in a deployment (a worker-pool sidecar beside each TaskManager); with
``--sdk_worker_parallelism`` workers per TaskManager, each subtask gets a process (and a core)
of its own.  ``python -m devtools.worker_pool [--port P]`` starts one by hand.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

__all__ = ['WorkerPool']

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


class WorkerPool:
  """A started worker pool; ``address`` goes to ``--environment_config``.

  Args:
    port: the port to serve on (default: a free one).
    log_path: where the pool and its workers write (default: nowhere).
  """

  def __init__(self, port: Optional[int] = None, log_path: Optional[str] = None):
    self.port = port or _free_port()
    self.address = f'localhost:{self.port}'
    self._log_path = log_path
    self._process: Optional[subprocess.Popen] = None

  def start(self, timeout_secs: float = 60.0) -> 'WorkerPool':
    env = dict(os.environ,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''),
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    out = open(self._log_path, 'ab') if self._log_path else subprocess.DEVNULL
    self._process = subprocess.Popen(
        [sys.executable, '-m', 'apache_beam.runners.worker.worker_pool_main',
         f'--service_port={self.port}'], cwd=REPO_ROOT, env=env, stdout=out,
        stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_secs
    while True:
      with socket.socket() as sock:
        if sock.connect_ex(('127.0.0.1', self.port)) == 0:
          return self
      if self._process.poll() is not None:
        raise RuntimeError(f'the worker pool exited with {self._process.returncode}')
      if time.monotonic() > deadline:
        raise RuntimeError(f'the worker pool did not listen on {self.port} in {timeout_secs} s')
      time.sleep(0.1)

  @property
  def pid(self) -> int:
    return self._process.pid

  def workers(self) -> List[int]:
    """The pids of the SDK worker processes the pool started (alive now)."""
    children = []
    for name in os.listdir('/proc'):
      if not name.isdigit():
        continue
      try:
        with open(f'/proc/{name}/stat', encoding='ascii', errors='replace') as handle:
          parent = int(handle.read().rsplit(')', 1)[1].split()[1])
      except (OSError, ValueError, IndexError):
        continue
      if parent == self.pid:
        children.append(int(name))
    return sorted(children)

  def stop(self) -> None:
    if self._process is None:
      return
    try:
      os.killpg(self._process.pid, signal.SIGTERM)
    except ProcessLookupError:
      pass
    try:
      self._process.wait(30)
    except subprocess.TimeoutExpired:
      os.killpg(self._process.pid, signal.SIGKILL)
      self._process.wait(30)
    self._process = None

  def __enter__(self) -> 'WorkerPool':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--port', type=int, default=50000)
  args = parser.parse_args(argv)
  with WorkerPool(args.port) as pool:
    print(f'--environment_type=EXTERNAL --environment_config={pool.address}', flush=True)
    try:
      while True:
        time.sleep(3600)
    except KeyboardInterrupt:
      pass
  return 0


if __name__ == '__main__':
  sys.exit(main())
