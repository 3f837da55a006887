"""The job's operations endpoint on ``--metrics_port``: ``/metrics``, ``/healthz``, ``/readyz``.

* ``/metrics``: Prometheus's text format (``transforms.metrics``).
* ``/healthz``: 200 while the job's loops are alive -- the Kafka reader and the sink beat a
  heartbeat (``transforms.monitoring``) at every poll and while they wait for loads, even during
  an outage of the cluster; 503 when none beat for ``HEARTBEAT_TIMEOUT_SECS`` (a hung job: a
  liveness probe restarts it).  Waiting for records is healthy.
* ``/readyz``: 200 when Kafka and an FE answer and the job is not draining; 503 otherwise (a
  readiness probe takes the pod out of service: its loads would fail, or it is stopping).

Each answers a short JSON body saying why.  A thread here checks Kafka and the FEs every
``CHECK_INTERVAL_SECS`` and runs the stall detector (``Monitor.check``) between, so the probes
only read cached answers.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from typing import Any, Dict, Optional, Tuple

import prometheus_client
import requests

from transforms import metrics, monitoring
from transforms.kafka.config import new_consumer
from transforms.stream_load import StreamLoadConfig

__all__ = ['HealthServer', 'HEARTBEAT_TIMEOUT_SECS']

_LOGGER = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_SECS = 120.0
CHECK_INTERVAL_SECS = 5.0
_PROBE_TIMEOUT_SECS = 5.0


class _Checks:
  """The cached answers of the readiness checks, refreshed by the checker thread."""

  def __init__(self):
    self.kafka: Tuple[bool, str] = (False, 'not checked yet')
    self.fe: Tuple[bool, str] = (False, 'not checked yet')


class HealthServer:
  """Serves ``/metrics``, ``/healthz`` and ``/readyz``; checks and detects stalls in a thread.

  Args:
    port: the port (``--metrics_port``).
    kafka_config: librdkafka settings, to ask Kafka for metadata.
    load_config: the resolved Stream Load config, to ask the FEs.
    monitor: the process's stall monitor.
    addr: the address to listen on.
  """

  def __init__(self, port: int, kafka_config: Dict[str, Any], load_config: StreamLoadConfig,
               monitor: Optional[monitoring.Monitor] = None, addr: str = '0.0.0.0'):
    self._kafka_config = dict(kafka_config)
    self._load_config = load_config
    self._monitor = monitor or monitoring.monitor()
    self._checks = _Checks()
    self._stopping = threading.Event()
    handler = self._handler_class()
    self._server = http.server.ThreadingHTTPServer((addr, port), handler)
    self._server.daemon_threads = True
    self.port = self._server.server_address[1]
    self._threads = [threading.Thread(target=self._server.serve_forever, name='health-http',
                                      daemon=True),
                     threading.Thread(target=self._check_loop, name='health-checks',
                                      daemon=True)]

  def start(self) -> 'HealthServer':
    for thread in self._threads:
      thread.start()
    return self

  def stop(self) -> None:
    self._stopping.set()
    self._server.shutdown()
    self._server.server_close()

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
    kafka_ok, kafka_why = self._checks.kafka
    fe_ok, fe_why = self._checks.fe
    draining = self._monitor.draining
    body = {'kafka': kafka_why, 'fe': fe_why, 'draining': draining}
    if kafka_ok and fe_ok and not draining:
      return 200, dict(body, status='ready')
    reasons = [why for ok, why in ((kafka_ok, f'Kafka: {kafka_why}'), (fe_ok, f'FE: {fe_why}'),
                                   (not draining, 'draining')) if not ok]
    return 503, dict(body, status='not ready: ' + '; '.join(reasons))

  # ------------------------------------------------------------------- checks

  def _check_loop(self) -> None:
    while not self._stopping.is_set():
      self._checks.kafka = self._check_kafka()
      self._checks.fe = self._check_fe()
      self._monitor.check()
      self._stopping.wait(CHECK_INTERVAL_SECS)

  def _check_kafka(self) -> Tuple[bool, str]:
    try:
      consumer = new_consumer(self._kafka_config)
      try:
        metadata = consumer.list_topics(timeout=_PROBE_TIMEOUT_SECS)
      finally:
        consumer.close()
    except Exception as error:  # pylint: disable=broad-except
      return False, f'no answer ({type(error).__name__}: {error})'[:300]
    return True, f'{len(metadata.brokers)} brokers answer'

  def _check_fe(self) -> Tuple[bool, str]:
    errors = []
    for fe in self._load_config.fe_nodes:
      try:
        # Doris's and StarRocks's FE answer /api/health without credentials.
        response = requests.get(f'{fe}/api/health', timeout=_PROBE_TIMEOUT_SECS,
                                verify=self._load_config.verify)
      except requests.RequestException as error:
        errors.append(f'{fe}: {type(error).__name__}')
        continue
      if response.status_code < 500:
        return True, f'{fe} answers'
      errors.append(f'{fe}: HTTP {response.status_code}')
    return False, 'no FE answers (' + '; '.join(errors) + ')'

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


def mark_draining() -> None:
  """The job drains: /readyz answers 503 from now on."""
  monitoring.monitor().draining = True
  metrics.DRAINING.set(1)
