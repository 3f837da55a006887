"""The loader's runtime in a worker process: one ``Runtime`` per run, handed to its transforms.

Everything after the Kafka read runs fused with it, in the process that reads
(the local runner's in-process worker, a Flink or Prism SDK worker): rows are
never pickled, batches and loads live across bundles, and offsets are
committed from the same process.  What those transforms share in a process --
whether the job drains, which reads have ended, the stall monitor, the
per-partition progress, the open batches and the loads in flight -- lives in
one ``Runtime``, found through the ``RunContext`` every such transform is
given explicitly (``acquire``/``release`` in ``setup``/``teardown``).  No
transform imports another package to learn whether the job is stopping.

A failure inside a transform ``fail()``s the runtime: its loads and open
batches are dropped (their offsets were never committed), and the next
``acquire`` starts a fresh one that reads again from the committed offsets,
as a new process would after a crash.  A runner restoring a checkpoint in a
process whose runtime is intact simply continues: the runtime's positions are
authoritative while it lives.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, Hashable, Mapping, Optional, Set, Tuple

from transforms import metrics
from transforms.monitoring import Monitor

__all__ = ['RunContext', 'Runtime', 'Sources', 'acquire', 'release', 'StopChannel']

_LOGGER = logging.getLogger(__name__)


class StopChannel:
  """How a stop request reaches workers in other processes (an interface).

  ``watch(on_stop, since_ms)`` starts watching for requests made after
  ``since_ms`` (epoch milliseconds) and returns a callable that stops the
  watching; ``request(reason)`` makes one.  ``transforms.kafka.control``
  implements it on the job's own Kafka.
  """

  def watch(self, on_stop: Callable[[str], None], since_ms: int) -> Callable[[], None]:
    raise NotImplementedError

  def request(self, reason: str) -> None:
    raise NotImplementedError

  def report_done(self, run_id: str, sources) -> None:
    """Says that these reads of the run ended in a drain (their rows loaded and committed)."""


class RunContext:
  """What identifies a run and configures its runtime; small, picklable, passed to transforms.

  Args:
    run_id: unique per launch (default: a fresh one).
    started_ms: when the run was launched (epoch ms); stop requests older
      than this are not for it.
    stop_channel: a ``StopChannel`` reaching every worker, or None (stops
      only by ``Runtime.request_stop`` in the same process).
    stall_timeout_secs: the stall window (None: per table, see ``Monitor``).
    metrics_port: serve ``/metrics``, ``/healthz``, ``/readyz`` from each
      worker process on this port or the next free one (0: off).
    probes: readiness checks, name -> callable returning ``(ok, why)``.
    progress_interval_secs: a progress line this often (0: never).
  """

  def __init__(self, run_id: Optional[str] = None, started_ms: Optional[int] = None,
               stop_channel: Optional[StopChannel] = None,
               stall_timeout_secs: Optional[float] = None, metrics_port: int = 0,
               probes: Optional[Mapping[str, Callable[[], Tuple[bool, str]]]] = None,
               progress_interval_secs: float = 0.0):
    self.run_id = run_id or f'run-{uuid.uuid4().hex}'
    self.started_ms = started_ms if started_ms is not None else int(time.time() * 1000)
    self.stop_channel = stop_channel
    self.stall_timeout_secs = stall_timeout_secs or None
    self.metrics_port = int(metrics_port or 0)
    self.probes = dict(probes or {})
    self.progress_interval_secs = float(progress_interval_secs or 0.0)

  def __repr__(self):
    return f'RunContext({self.run_id})'


class Sources:
  """The reads of this process: which sources (partitions, discovery loops) run, which ended.

  A source is registered when its read starts here, and marked ended when no
  record of it will follow (its bounded end, or a stop).  ``finished()`` is
  what the batcher and the sink wait for to flush everything and wait for
  their loads.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._reading: Set[Hashable] = set()
    self._ended: Set[Hashable] = set()

  def reading(self, source: Hashable) -> None:
    with self._lock:
      self._reading.add(source)

  def ended(self, source: Hashable) -> None:
    with self._lock:
      self._reading.add(source)
      self._ended.add(source)

  def has_ended(self, source: Hashable) -> bool:
    return source in self._ended

  def ended_count(self) -> int:
    """How many reads here have ended (it only grows: a cheap sign that one did)."""
    return len(self._ended)

  def finished(self) -> bool:
    """Every source read here has ended (and there is at least one)."""
    with self._lock:
      return bool(self._reading) and self._reading <= self._ended

  def open(self) -> Set[Hashable]:
    """The sources read here that have not ended."""
    with self._lock:
      return self._reading - self._ended


class Runtime:
  """One run's shared state in this process (see the module docstring).

  Attributes:
    context: the run's ``RunContext``.
    monitor: the stall bookkeeping of this process.
    sources: the reads of this process.
  """

  def __init__(self, context: RunContext):
    self.context = context
    self.monitor = Monitor(stall_timeout_secs=context.stall_timeout_secs)
    self.sources = Sources()
    self._stop = threading.Event()
    self._stop_reason = ''
    self._failed: Optional[BaseException] = None
    self._lock = threading.Lock()
    self._shared: Dict[str, Any] = {}
    self._closers = []
    self.users = 0

  # ------------------------------------------------------------------- stopping

  def stop_requested(self) -> bool:
    """Whether the job drains: reads stop, everything pending loads."""
    return self._stop.is_set()

  def request_stop(self, reason: str = 'stop requested') -> None:
    """Drains the reads of this process (idempotent)."""
    if not self._stop.is_set():
      self._stop_reason = reason
      self._stop.set()
      self.monitor.draining = True
      metrics.DRAINING.set(1)
      _LOGGER.warning('draining (%s): the reads stop, every pending batch loads, offsets are '
                      'committed', reason)

  @property
  def stop_reason(self) -> str:
    return self._stop_reason

  def report_done(self, *sources: Hashable) -> None:
    """Tells the launcher that these reads ended in a drain (see ``StopChannel.report_done``)."""
    channel = self.context.stop_channel
    if channel is not None and self.stop_requested():
      channel.report_done(self.context.run_id, sources)

  # --------------------------------------------------------------------- shared

  def shared(self, name: str, factory: Callable[[], Any]) -> Any:
    """The runtime's one ``name`` object, made by ``factory`` on first use."""
    with self._lock:
      value = self._shared.get(name)
      if value is None:
        value = self._shared[name] = factory()
        close = getattr(value, 'close', None)
        if callable(close):
          self._closers.append((name, close))
      return value

  def seed(self, name: str, value: Any) -> None:
    """Sets ``name`` before any transform asks (the launcher, in its own process)."""
    with self._lock:
      self._shared[name] = value

  def on_close(self, close: Callable[[], None]) -> None:
    with self._lock:
      self._closers.append(('', close))

  # ------------------------------------------------------------------- failure

  @property
  def failed(self) -> bool:
    return self._failed is not None

  def fail(self, error: BaseException) -> None:
    """A transform failed: this runtime is done; the next ``acquire`` starts afresh."""
    if self._failed is None:
      self._failed = error
      _LOGGER.warning('run %s: a step failed (%s: %s); its loads and open batches are dropped '
                      'in this process, and the read starts again from the committed offsets',
                      self.context.run_id, type(error).__name__, str(error)[:300])
      _discard(self)

  def close(self) -> None:
    """Closes what the transforms opened (best effort, never flushes)."""
    with self._lock:
      closers, self._closers = list(reversed(self._closers)), []
    for name, close in closers:
      try:
        close()
      except Exception:  # pylint: disable=broad-except
        _LOGGER.debug('closing %s failed', name or 'a runtime service', exc_info=True)


_RUNTIMES: Dict[str, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def acquire(context: RunContext) -> Runtime:
  """This process's runtime of ``context``'s run (created on first use); pair with ``release``."""
  with _RUNTIMES_LOCK:
    runtime = _RUNTIMES.get(context.run_id)
    if runtime is None or runtime.failed:
      runtime = _RUNTIMES[context.run_id] = Runtime(context)
      _start_services(runtime)
    runtime.users += 1
    return runtime


def release(runtime: Runtime) -> None:
  """A transform is done with ``runtime``; the last one closes it."""
  with _RUNTIMES_LOCK:
    runtime.users -= 1
    last = runtime.users <= 0
    if last and _RUNTIMES.get(runtime.context.run_id) is runtime:
      del _RUNTIMES[runtime.context.run_id]
  if last:
    runtime.close()


def _discard(runtime: Runtime) -> None:
  with _RUNTIMES_LOCK:
    if _RUNTIMES.get(runtime.context.run_id) is runtime:
      del _RUNTIMES[runtime.context.run_id]
  runtime.close()


def _start_services(runtime: Runtime) -> None:
  """The stop watcher, the health endpoint and the progress line of a new runtime."""
  context = runtime.context
  if context.stop_channel is not None:
    try:
      runtime.on_close(context.stop_channel.watch(runtime.request_stop, context.started_ms))
    except Exception as error:  # pylint: disable=broad-except
      _LOGGER.warning('stop requests from other processes will not reach this worker: %s', error)
  from transforms import operations  # pylint: disable=import-outside-toplevel
  operations.start(runtime)
