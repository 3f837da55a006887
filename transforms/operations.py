"""A worker's operations: ``/metrics``, ``/healthz``, ``/readyz``, stall checks and progress lines.

Started by each run's ``Runtime`` in every process that runs the loader's
transforms -- the command line's own process on the local runner, each SDK
worker on Flink, Prism or Dataflow -- so a job is observable wherever it runs.

* ``/metrics``: Prometheus's text format (``transforms.metrics``).
* ``/healthz``: 200 while the job's loops beat (the reader at every poll, the
  sink while it waits for loads, through an outage of the cluster too); 503
  when none beat for ``HEARTBEAT_TIMEOUT_SECS`` (a hung worker).
* ``/readyz``: 200 when every probe (Kafka, an FE) answers and the job is not
  draining.

The port is the run's ``metrics_port``, or the next free one when another
worker on the host has it (several SDK workers per TaskManager): each worker
logs where it serves.  A thread checks the probes and the stall monitor every
``CHECK_INTERVAL_SECS`` and logs a progress line every
``progress_interval_secs``, also while nothing loads.
"""

from __future__ import annotations

import errno
import http.server
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import prometheus_client

from transforms import metrics
from transforms.monitoring import Monitor

__all__ = ['HealthServer', 'start', 'HEARTBEAT_TIMEOUT_SECS', 'ProgressLine']

_LOGGER = logging.getLogger('transforms.operations')

HEARTBEAT_TIMEOUT_SECS = 120.0
CHECK_INTERVAL_SECS = 5.0
# Workers sharing a host take the next ports.
_PORTS_TO_TRY = 64


class HealthServer:
  """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for one process.

  Args:
    port: the port to try first (0: any free port).
    monitor: the process's stall monitor.
    probes: readiness checks, name -> callable returning ``(ok, why)``; their
      answers are cached by ``refresh()`` (the probes never run per request).
    addr: the address to listen on.
    tries: how many ports from ``port`` on to try.
  """

  def __init__(self, port: int, monitor: Monitor,
               probes: Optional[Mapping[str, Callable[[], Tuple[bool, str]]]] = None,
               addr: str = '0.0.0.0', tries: int = 1):
    self._monitor = monitor
    self._probes = dict(probes or {})
    self._answers: Dict[str, Tuple[bool, str]] = {
        name: (False, 'not checked yet') for name in self._probes}
    handler = self._handler_class()
    last_error: Optional[OSError] = None
    for candidate in range(port, port + max(1, tries)) if port else (0,):
      try:
        self._server = http.server.ThreadingHTTPServer((addr, candidate), handler)
        break
      except OSError as error:
        if error.errno != errno.EADDRINUSE:
          raise
        last_error = error
    else:
      raise last_error
    self._server.daemon_threads = True
    self.port = self._server.server_address[1]
    self._thread = threading.Thread(target=self._server.serve_forever, name='health-http',
                                    daemon=True)

  def start(self) -> 'HealthServer':
    self._thread.start()
    return self

  def stop(self) -> None:
    self._server.shutdown()
    self._server.server_close()

  def refresh(self) -> None:
    """Runs every probe once (a thread calls this every few seconds)."""
    for name, probe in self._probes.items():
      try:
        self._answers[name] = probe()
      except Exception as error:  # pylint: disable=broad-except
        self._answers[name] = (False, f'{type(error).__name__}: {error}'[:300])

  # ------------------------------------------------------------------ answers

  def health(self) -> Tuple[int, Dict[str, Any]]:
    beats = self._monitor.heartbeats()
    if not beats:
      return 200, {'status': 'starting', 'loops': {}}
    alive = {loop: age < HEARTBEAT_TIMEOUT_SECS for loop, age in beats.items()}
    body = {'loops': {loop: {'seconds_since_heartbeat': round(age, 1), 'alive': alive[loop]}
                      for loop, age in beats.items()},
            'stalled_tables': self._monitor.stalled_tables()}
    if any(alive.values()):
      return 200, dict(body, status='ok')
    return 503, dict(body, status='no loop of the job has beaten for '
                                   f'{HEARTBEAT_TIMEOUT_SECS:.0f} s')

  def readiness(self) -> Tuple[int, Dict[str, Any]]:
    draining = self._monitor.draining
    body: Dict[str, Any] = {name: why for name, (_, why) in self._answers.items()}
    body['draining'] = draining
    reasons = [f'{name}: {why}' for name, (ok, why) in self._answers.items() if not ok]
    if draining:
      reasons.append('draining')
    if not reasons:
      return 200, dict(body, status='ready')
    return 503, dict(body, status='not ready: ' + '; '.join(reasons))

  def _handler_class(self):
    server = self

    class _Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):  # pylint: disable=invalid-name
        path = self.path.split('?', 1)[0]
        if path == '/metrics':
          body = prometheus_client.generate_latest()
          self._send(200, body, prometheus_client.CONTENT_TYPE_LATEST)
        elif path in ('/healthz', '/readyz'):
          status, answer = server.health() if path == '/healthz' else server.readiness()
          self._send(status, json.dumps(answer).encode(), 'application/json')
        else:
          self._send(404, b'{"status": "not found"}', 'application/json')

      def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):  # probes every few seconds: not worth a log line each
        pass

    return _Handler


class ProgressLine:
  """The progress line: totals, and rates over the last interval (not since the start)."""

  def __init__(self, monitor: Monitor, clock: Callable[[], float] = time.monotonic):
    self._monitor = monitor
    self._clock = clock
    self._last = (clock(), monitor.counts())

  def line(self) -> str:
    now, counts = self._clock(), self._monitor.counts()
    then, before = self._last
    self._last = (now, counts)
    elapsed = max(now - then, 1e-6)

    def rate(name):
      return (counts.get(name, 0) - before.get(name, 0)) / elapsed

    lag, committed_lag = self._monitor.lags()
    return (f'progress: read {counts.get("records_read", 0)} records ({rate("records_read"):.0f}/s), '
            f'{self._monitor.pending_rows()} rows pending, loaded {counts.get("rows_loaded", 0)} '
            f'rows ({rate("rows_loaded"):.0f}/s) in {counts.get("loads", 0)} loads, '
            f'{counts.get("dead_letters", 0)} dead letters, lag {lag} records'
            + (f' ({committed_lag} not committed)' if committed_lag is not None else '')
            + (', draining' if self._monitor.draining else ''))


_DRAIN_REPORT_SECS = 10.0


def _report_drain(runtime) -> None:
  """While a drain takes long, says every few seconds what it waits for."""
  now = time.monotonic()
  started = getattr(runtime, '_drain_seen', None)
  if started is None:
    runtime._drain_seen = started = now  # pylint: disable=protected-access
  last = getattr(runtime, '_drain_reported', started)
  if now - last < _DRAIN_REPORT_SECS:
    return
  runtime._drain_reported = now  # pylint: disable=protected-access
  still = sorted(runtime.sources.open())
  _LOGGER.warning('draining for %.0f s: %d reads not ended yet%s; %d rows pending', now - started,
                  len(still), f' ({still[:8]})' if still else '', runtime.monitor.pending_rows())


def start(runtime) -> None:
  """Starts the operations of ``runtime``'s process: endpoint (if asked), checks, progress."""
  context = runtime.context
  monitor = runtime.monitor
  server = None
  if context.metrics_port:
    try:
      server = HealthServer(context.metrics_port, monitor, context.probes,
                            tries=_PORTS_TO_TRY).start()
    except OSError as error:
      _LOGGER.error('cannot serve /metrics, /healthz, /readyz on ports %d-%d: %s',
                    context.metrics_port, context.metrics_port + _PORTS_TO_TRY - 1, error)
    else:
      runtime.on_close(server.stop)
      level = logging.INFO if server.port == context.metrics_port else logging.WARNING
      _LOGGER.log(level, 'this worker serves /metrics, /healthz and /readyz on port %d',
                  server.port)
  stopping = threading.Event()
  runtime.on_close(stopping.set)
  progress = ProgressLine(monitor)
  interval = context.progress_interval_secs

  def loop():
    next_progress = time.monotonic() + interval
    while not stopping.wait(min(CHECK_INTERVAL_SECS, interval) if interval else
                            CHECK_INTERVAL_SECS):
      if server is not None:
        server.refresh()
      monitor.check()
      if interval and time.monotonic() >= next_progress:
        next_progress = time.monotonic() + interval
        _LOGGER.info(progress.line())
      if runtime.stop_requested():
        _report_drain(runtime)

  threading.Thread(target=loop, name='operations', daemon=True).start()
  metrics.DRAINING.set(0)
