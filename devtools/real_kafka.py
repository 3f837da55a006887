"""A real Apache Kafka (4.1.1, KRaft) on loopback, from Maven jars: one node or three.

The integration tests run the loader against it where the librdkafka mock
cluster (``devtools.local_kafka``) cannot stand in: broker restarts, leader
failover, transactions, compaction, SASL and TLS, Kafka's own tools.

* :class:`KafkaBroker` -- one combined broker + controller node.
* :class:`KafkaKRaftCluster` -- three combined nodes with static
  ``controller.quorum.voters`` (started together: the quorum needs two).

Each node is a ``java kafka.Kafka`` process on the classpath that
``devtools.jars.fetch('kafka')`` fetched with Maven, in a temporary
directory, on free loopback ports, with settings for tests (single-replica
internal topics on one node, no initial rebalance delay, small thread
counts, auto-created topics with ``num_partitions`` = 4 partitions, like the
mock cluster's).  ``start()`` returns when every node logged "Kafka Server
started" and answers metadata; ``stop()`` (controlled shutdown),
``kill(node)`` (SIGKILL), ``restart(node)`` keep the data.  Every JVM still
running when this Python process exits is stopped (``atexit``; with
``setpriv`` on PATH the kernel also stops it if Python dies without cleaning
up), so none is left behind.

The client helpers mirror ``KafkaCluster`` of ``devtools.local_kafka``
(``bootstrap_servers``, ``num_partitions``, ``unique_topic``, ``produce``
with delivery checks, ``end_offsets``, ``committed``, ``commit``,
``consumer_config``), so ``tests.harness.pipeline_argv`` and
``tests.pipelines.crash.CrashScenario`` take either.  On top:
``create_topic`` (waits for a leader, and a full ISR, on every partition),
``produce_transaction`` (committed or aborted), ``leader_of``,
``describe_group`` (Kafka's own ``kafka-consumer-groups --describe``).

``security=True`` adds a SASL_PLAINTEXT listener (PLAIN, users in
:data:`SASL_USERS`) and an SSL listener with a certificate for 127.0.0.1 and
localhost from a throwaway CA (``trustme``, in the test extra); the
helpers keep using the PLAINTEXT listener.

Run one by hand: ``python -m devtools.real_kafka [--nodes 3] [--security]``
prints the bootstrap servers and keeps the broker up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict, List, NamedTuple, Optional, Sequence

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devtools import jars
from devtools.local_kafka import produce_all, reader_config

__all__ = ['KafkaBroker', 'KafkaKRaftCluster', 'KafkaStartError', 'GroupOffsets', 'SASL_USERS',
           'DEFAULT_PARTITIONS', 'parse_group_description', 'free_ports']

_LOGGER = logging.getLogger(__name__)

JARS = 'kafka'
DEFAULT_PARTITIONS = 4  # like the mock cluster: CrashScenario's round robin relies on it
READY_TIMEOUT_SECS = 90.0
STOP_TIMEOUT_SECS = 30.0
CLIENT_TIMEOUT_SECS = 30.0
TOOL_TIMEOUT_SECS = 120.0
SASL_USERS = {'alice': 'alice-secret', 'admin': 'admin-secret'}
_STARTED_LINE = 'Kafka Server started'
_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""
_TOOL_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ERROR
rootLogger.appenderRef.stderr.ref = STDERR
"""
# Settings of every node; the per-node ones (ids, listeners, dirs, replication) are added.
_COMMON_SETTINGS = {
    'process.roles': 'broker,controller',
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'num.partitions': str(DEFAULT_PARTITIONS),
    'auto.create.topics.enable': 'true',
    'delete.topic.enable': 'true',
    'group.initial.rebalance.delay.ms': '0',
    'num.network.threads': '2',
    'num.io.threads': '2',
    'num.replica.fetchers': '1',
    'num.recovery.threads.per.data.dir': '1',
    'background.threads': '2',
    'log.segment.bytes': str(16 * 1024 * 1024),
    'log.retention.check.interval.ms': '300000',
    'log.cleaner.threads': '1',
    'log.cleaner.backoff.ms': '1000',
    'log.cleaner.dedupe.buffer.size': str(8 * 1024 * 1024),
    # A node that dies without a controlled shutdown is fenced after this long.
    'broker.heartbeat.interval.ms': '500',
    'broker.session.timeout.ms': '4000',
    'unclean.leader.election.enable': 'false',
}
# Short-lived JVMs (the storage tool, kafka-consumer-groups): start fast, compile little.
_TOOL_JVM = ['-Xms64m', '-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1',
             '-Djava.awt.headless=true']


class KafkaStartError(RuntimeError):
  """A node did not start; the message holds the end of its log."""


# -- processes ----------------------------------------------------------------------------------

_LIVE_PROCESSES: Dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
  """atexit: SIGTERM every JVM still running, then SIGKILL what did not stop."""
  with _LIVE_LOCK:
    processes = list(_LIVE_PROCESSES.values())
    _LIVE_PROCESSES.clear()
  for process in processes:
    if process.poll() is None:
      process.terminate()
  deadline = time.monotonic() + 10
  for process in processes:
    try:
      process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


atexit.register(_stop_all_at_exit)


def _java_command(classpath: str, heap_mb: int, log4j_path: str, main: str,
                  args: Sequence[str], jvm_options: Sequence[str] = ()) -> List[str]:
  command = ['java', f'-Xms{min(heap_mb, 128)}m', f'-Xmx{heap_mb}m', '-XX:+UseSerialGC',
             '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true',
             f'-Dlog4j2.configurationFile={log4j_path}', *jvm_options,
             '-cp', classpath, main, *args]
  # The kernel stops the JVM if this Python process dies without running atexit.
  if sys.platform.startswith('linux') and shutil.which('setpriv'):
    command = ['setpriv', '--pdeathsig', 'KILL', '--'] + command
  return command


def _run_tool(classpath: str, work_dir: str, main: str, args: Sequence[str],
              timeout_secs: float = TOOL_TIMEOUT_SECS) -> subprocess.CompletedProcess:
  """Runs a Kafka command line tool to completion (stdout and stderr captured)."""
  log4j = os.path.join(work_dir, 'log4j2-tools.properties')
  if not os.path.exists(log4j):
    with open(log4j, 'w', encoding='utf-8') as handle:
      handle.write(_TOOL_LOG4J2)
  command = ['java', *_TOOL_JVM, f'-Dlog4j2.configurationFile={log4j}', '-cp', classpath,
             main, *args]
  return subprocess.run(command, capture_output=True, text=True, timeout=timeout_secs,
                        check=False)


def free_ports(count: int) -> List[int]:
  """``count`` distinct free TCP ports on 127.0.0.1 (held together while chosen)."""
  sockets = []
  try:
    for _ in range(count):
      sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      sock.bind(('127.0.0.1', 0))
      sockets.append(sock)
    return [sock.getsockname()[1] for sock in sockets]
  finally:
    for sock in sockets:
      sock.close()


def _cluster_id() -> str:
  """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting '-'."""
  while True:
    text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode('ascii').rstrip('=')
    if not text.startswith('-'):
      return text


class _Ports(NamedTuple):
  broker: int
  controller: int
  sasl: Optional[int]
  ssl: Optional[int]


class _Node:
  """One ``kafka.Kafka`` JVM: a combined broker and controller with its own log dir."""

  def __init__(self, node_id: int, work_dir: str, ports: _Ports, settings: Dict[str, str],
               classpath: str, heap_mb: int):
    self.node_id = node_id
    self.ports = ports
    self.dir = os.path.join(work_dir, f'node{node_id}')
    self.data_dir = os.path.join(self.dir, 'data')
    self.log_path = os.path.join(self.dir, 'server.log')
    self.stdout_path = os.path.join(self.dir, 'stdout.log')
    self.properties_path = os.path.join(self.dir, 'server.properties')
    self._log4j_path = os.path.join(self.dir, 'log4j2.properties')
    self._classpath = classpath
    self._heap_mb = heap_mb
    self._process: Optional[subprocess.Popen] = None
    self._log_offset = 0
    os.makedirs(self.data_dir, exist_ok=True)
    with open(self.properties_path, 'w', encoding='utf-8') as handle:
      for key, value in settings.items():
        handle.write(f'{key}={value}\n')
    with open(self._log4j_path, 'w', encoding='utf-8') as handle:
      handle.write(_LOG4J2.format(log=self.log_path))

  @property
  def pid(self) -> Optional[int]:
    return self._process.pid if self._process is not None else None

  @property
  def running(self) -> bool:
    return self._process is not None and self._process.poll() is None

  def format(self, cluster_id: str) -> None:
    """Formats the data dir (``kafka-storage format``) once."""
    if os.path.exists(os.path.join(self.data_dir, 'meta.properties')):
      return
    result = _run_tool(self._classpath, self.dir, 'kafka.tools.StorageTool',
                       ['format', '-t', cluster_id, '-c', self.properties_path])
    if result.returncode != 0:
      raise KafkaStartError(f'node {self.node_id}: kafka-storage format failed '
                            f'({result.returncode}): {(result.stdout + result.stderr)[-2000:]}')

  def launch(self) -> None:
    """Starts the JVM (does not wait for it)."""
    if self.running:
      return
    self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
    command = _java_command(self._classpath, self._heap_mb, self._log4j_path, 'kafka.Kafka',
                            [self.properties_path])
    with open(self.stdout_path, 'ab') as stdout:
      self._process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    with _LIVE_LOCK:
      _LIVE_PROCESSES[self._process.pid] = self._process

  def started(self) -> bool:
    """Whether this run of the JVM logged "Kafka Server started".

    Raises:
      KafkaStartError: the JVM exited.
    """
    if self._process is None or self._process.poll() is not None:
      code = None if self._process is None else self._process.returncode
      raise KafkaStartError(f'node {self.node_id} exited ({code}):\n{self.log_tail()}')
    try:
      with open(self.log_path, 'rb') as handle:
        handle.seek(self._log_offset)
        return _STARTED_LINE.encode() in handle.read()
    except FileNotFoundError:
      return False

  def log_tail(self, lines: int = 40) -> str:
    text = ''
    for path in (self.stdout_path, self.log_path):
      if os.path.exists(path):
        with open(path, 'rb') as handle:
          text += handle.read().decode('utf-8', 'replace')
    return '\n'.join(text.splitlines()[-lines:])

  def stop(self, timeout_secs: float = STOP_TIMEOUT_SECS) -> None:
    """Controlled shutdown (SIGTERM); SIGKILL if it takes longer than ``timeout_secs``."""
    self._end(signal.SIGTERM, timeout_secs)

  def kill(self) -> None:
    """SIGKILL: no controlled shutdown, as a crash."""
    self._end(signal.SIGKILL, STOP_TIMEOUT_SECS)

  def _end(self, signum: int, timeout_secs: float) -> None:
    process = self._process
    if process is None:
      return
    if process.poll() is None:
      process.send_signal(signum)
      try:
        process.wait(timeout=timeout_secs)
      except subprocess.TimeoutExpired:
        _LOGGER.warning('node %d did not stop in %.0fs: killing it', self.node_id, timeout_secs)
        process.kill()
        process.wait()
    with _LIVE_LOCK:
      _LIVE_PROCESSES.pop(process.pid, None)
    self._process = None


# -- kafka-consumer-groups ----------------------------------------------------------------------


class GroupOffsets(NamedTuple):
  """One row of ``kafka-consumer-groups --describe``: offsets of one partition (None for -)."""
  topic: str
  partition: int
  current_offset: Optional[int]
  log_end_offset: Optional[int]
  lag: Optional[int]


def parse_group_description(stdout: str) -> List[GroupOffsets]:
  """The rows of ``kafka-consumer-groups --describe`` output.

  The tool prints a line such as ``Consumer group 'g' has no active
  members.`` (or ``... does not exist.``, still with exit code 0), then a
  table ``GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG
  CONSUMER-ID HOST CLIENT-ID``; ``-`` stands for "none".
  """
  rows: List[GroupOffsets] = []
  header: Optional[List[str]] = None
  for line in stdout.splitlines():
    fields = line.split()
    if not fields:
      continue
    if fields[0] == 'GROUP' and 'PARTITION' in fields:
      header = fields
      continue
    if header is None or len(fields) < len(header):
      continue
    row = dict(zip(header, fields))

    def number(name, row=row):
      value = row.get(name, '-')
      return None if value == '-' else int(value)

    rows.append(GroupOffsets(row['TOPIC'], int(row['PARTITION']), number('CURRENT-OFFSET'),
                             number('LOG-END-OFFSET'), number('LAG')))
  return rows


# -- the clusters -------------------------------------------------------------------------------


class _RealKafka:
  """What one node and three nodes share: lifecycle and the client helpers."""

  num_partitions = DEFAULT_PARTITIONS

  def __init__(self, node_count: int, replication: int, security: bool, heap_mb: int,
               work_dir: Optional[str], extra_settings: Optional[Dict[str, str]]):
    self._classpath = jars.classpath(JARS)
    self._own_dir = work_dir is None
    self.work_dir = work_dir or tempfile.mkdtemp(prefix='real-kafka-')
    self.security = security
    self.replication = replication
    self._counter = itertools.count()
    self._producer: Optional[Producer] = None
    self._known_topics: Dict[str, int] = {}  # topic -> partitions
    self._topics_lock = threading.Lock()
    self.ssl_ca_path: Optional[str] = None
    ssl_settings = self._make_certificates() if security else {}
    ports = []
    for _ in range(node_count):
      broker, controller, sasl, ssl = free_ports(4)
      ports.append(_Ports(broker, controller, sasl if security else None,
                          ssl if security else None))
    voters = ','.join(f'{i + 1}@127.0.0.1:{p.controller}' for i, p in enumerate(ports))
    self.nodes: Dict[int, _Node] = {}
    for i, node_ports in enumerate(ports):
      node_id = i + 1
      settings = dict(_COMMON_SETTINGS)
      settings.update(self._replication_settings(replication))
      settings.update({
          'node.id': str(node_id),
          'controller.quorum.voters': voters,
          'log.dirs': os.path.join(self.work_dir, f'node{node_id}', 'data'),
      })
      settings.update(self._listener_settings(node_ports, ssl_settings))
      settings.update(extra_settings or {})
      self.nodes[node_id] = _Node(node_id, self.work_dir, node_ports, settings, self._classpath,
                                  heap_mb)
    self.bootstrap_servers = ','.join(f'127.0.0.1:{p.broker}' for p in ports)
    self.sasl_bootstrap_servers = (','.join(f'127.0.0.1:{p.sasl}' for p in ports)
                                   if security else None)
    self.ssl_bootstrap_servers = (','.join(f'127.0.0.1:{p.ssl}' for p in ports)
                                  if security else None)
    self._cluster_id = _cluster_id()
    self._formatted = False

  # -- configuration ----------------------------------------------------------------------

  @staticmethod
  def _replication_settings(replication: int) -> Dict[str, str]:
    min_isr = str(max(1, replication - 1))
    return {
        'default.replication.factor': str(replication),
        'min.insync.replicas': min_isr,
        'offsets.topic.replication.factor': str(replication),
        'offsets.topic.num.partitions': '1' if replication == 1 else '3',
        'transaction.state.log.replication.factor': str(replication),
        'transaction.state.log.min.isr': min_isr,
        'transaction.state.log.num.partitions': '1' if replication == 1 else '3',
        'share.coordinator.state.topic.replication.factor': str(replication),
        'share.coordinator.state.topic.min.isr': min_isr,
    }

  def _listener_settings(self, ports: _Ports, ssl_settings: Dict[str, str]) -> Dict[str, str]:
    listeners = [f'PLAINTEXT://127.0.0.1:{ports.broker}']
    protocols = ['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT']
    if self.security:
      listeners += [f'SASL_PLAINTEXT://127.0.0.1:{ports.sasl}', f'SSL://127.0.0.1:{ports.ssl}']
      protocols += ['SASL_PLAINTEXT:SASL_PLAINTEXT', 'SSL:SSL']
    settings = {
        'listeners': ','.join(listeners + [f'CONTROLLER://127.0.0.1:{ports.controller}']),
        'advertised.listeners': ','.join(listeners),
        'listener.security.protocol.map': ','.join(protocols),
    }
    if self.security:
      users = ' '.join(f'user_{name}="{password}"' for name, password in SASL_USERS.items())
      settings.update({
          'sasl.enabled.mechanisms': 'PLAIN',
          'listener.name.sasl_plaintext.plain.sasl.jaas.config':
              'org.apache.kafka.common.security.plain.PlainLoginModule required '
              f'username="admin" password="{SASL_USERS["admin"]}" {users};',
      })
      settings.update(ssl_settings)
    return settings

  def _make_certificates(self) -> Dict[str, str]:
    """A throwaway CA and a certificate for 127.0.0.1/localhost; the broker's SSL settings."""
    # pylint: disable=import-outside-toplevel
    import trustme  # the test extra
    from cryptography.hazmat.primitives import serialization
    ca = trustme.CA()
    cert = ca.issue_cert('127.0.0.1', 'localhost')
    self.ssl_ca_path = os.path.join(self.work_dir, 'ca.pem')
    ca.cert_pem.write_to_path(self.ssl_ca_path)
    # Kafka's PEM key store takes PKCS#8 keys only.
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode('ascii')
    chain = ''.join(pem.bytes().decode('ascii') for pem in cert.cert_chain_pems)

    def inline(pem: str) -> str:  # a properties value on one line
      return pem.strip().replace('\n', '\\n')

    return {
        'ssl.keystore.type': 'PEM',
        'ssl.keystore.key': inline(key_pem),
        'ssl.keystore.certificate.chain': inline(chain),
        'ssl.client.auth': 'none',
    }

  # -- lifecycle --------------------------------------------------------------------------

  def start(self, timeout_secs: float = READY_TIMEOUT_SECS):
    """Formats (the first time) and starts every node; returns when all serve metadata.

    The nodes start together: with static voters, the controller quorum needs
    a majority up before any node finishes starting.

    Raises:
      KafkaStartError: a node exited or did not start within ``timeout_secs``.
    """
    if not self._formatted:
      self._parallel(lambda node: node.format(self._cluster_id), self.nodes.values())
      self._formatted = True
    for node in self.nodes.values():
      node.launch()
    try:
      self._wait_started(self.nodes.values(), timeout_secs)
      self._wait_brokers(len(self.nodes), timeout_secs)
    except BaseException:
      self.stop()
      raise
    return self

  def _wait_started(self, nodes, timeout_secs: float) -> None:
    deadline = time.monotonic() + timeout_secs
    pending = list(nodes)
    while pending:
      pending = [node for node in pending if not node.started()]
      if pending and time.monotonic() > deadline:
        raise KafkaStartError(f'node(s) {[n.node_id for n in pending]} not started in '
                              f'{timeout_secs:.0f}s:\n{pending[0].log_tail()}')
      if pending:
        time.sleep(0.05)  # polling the JVM's log

  def _wait_brokers(self, count: int, timeout_secs: float) -> None:
    """Until metadata lists ``count`` brokers."""
    deadline = time.monotonic() + timeout_secs
    admin = self.admin()
    while True:
      try:
        if len(admin.list_topics(timeout=5).brokers) >= count:
          return
      except KafkaException:
        pass
      if time.monotonic() > deadline:
        raise KafkaStartError(f'metadata does not list {count} brokers after '
                              f'{timeout_secs:.0f}s')
      time.sleep(0.05)

  @staticmethod
  def _parallel(action, nodes) -> None:
    errors: List[BaseException] = []

    def run(node):
      try:
        action(node)
      except BaseException as error:  # pylint: disable=broad-except
        errors.append(error)

    threads = [threading.Thread(target=run, args=(node,)) for node in nodes]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    if errors:
      raise errors[0]

  def stop(self, node_id: Optional[int] = None, timeout_secs: float = STOP_TIMEOUT_SECS) -> None:
    """Controlled shutdown of one node, or of every node (data kept for ``start``)."""
    if node_id is not None:
      self.nodes[node_id].stop(timeout_secs)
      return
    self._close_producer()
    self._parallel(lambda node: node.stop(timeout_secs), self.nodes.values())

  def kill(self, node_id: Optional[int] = None) -> None:
    """SIGKILL one node (or every node): a crash, no controlled shutdown."""
    targets = [self.nodes[node_id]] if node_id is not None else list(self.nodes.values())
    for node in targets:
      node.kill()

  def restart(self, node_id: Optional[int] = None,
              timeout_secs: float = READY_TIMEOUT_SECS) -> None:
    """Starts a stopped or killed node again (all nodes without ``node_id``); waits for it."""
    if node_id is None:
      self.start(timeout_secs)
      return
    node = self.nodes[node_id]
    node.launch()
    self._wait_started([node], timeout_secs)
    self._wait_brokers(sum(1 for n in self.nodes.values() if n.running), timeout_secs)

  def close(self) -> None:
    """Stops every node and removes the temporary directory (if this object made it)."""
    self.stop()
    if self._own_dir:
      shutil.rmtree(self.work_dir, ignore_errors=True)

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.close()

  # -- clients ----------------------------------------------------------------------------

  def client_config(self, **extra) -> dict:
    """librdkafka settings for the PLAINTEXT listener."""
    config = {'bootstrap.servers': self.bootstrap_servers, 'logger': _LOGGER}
    config.update(extra)
    return config

  def consumer_config(self, group_id: Optional[str] = None, **extra) -> dict:
    """A consumer config for the reader: bootstrap servers and a group."""
    return reader_config(self.bootstrap_servers, group_id, **extra)

  def sasl_config(self, user: str = 'alice', password: Optional[str] = None) -> Dict[str, str]:
    """Client settings for the SASL_PLAINTEXT listener (``security=True``)."""
    assert self.security, 'started without security=True'
    return {'bootstrap.servers': self.sasl_bootstrap_servers,
            'security.protocol': 'SASL_PLAINTEXT', 'sasl.mechanisms': 'PLAIN',
            'sasl.username': user,
            'sasl.password': SASL_USERS[user] if password is None else password}

  def ssl_config(self) -> Dict[str, str]:
    """Client settings for the SSL listener (``security=True``)."""
    assert self.security, 'started without security=True'
    return {'bootstrap.servers': self.ssl_bootstrap_servers, 'security.protocol': 'SSL',
            'ssl.ca.location': self.ssl_ca_path}

  def admin(self) -> AdminClient:
    return AdminClient(self.client_config())

  def unique_topic(self, prefix: str = 'test') -> str:
    """Returns a topic name no other test has used in this session."""
    return f'{prefix}-{os.getpid()}-{next(self._counter)}-{uuid.uuid4().hex[:6]}'

  def create_topic(self, name: str, partitions: int = DEFAULT_PARTITIONS,
                   replication: Optional[int] = None,
                   config: Optional[Dict[str, str]] = None,
                   timeout_secs: float = CLIENT_TIMEOUT_SECS) -> str:
    """Creates ``name`` and waits until every partition has a leader and a full ISR.

    (Producing to an explicit partition right after ``create_topics`` can
    otherwise fail with an unknown partition.)
    """
    replication = self.replication if replication is None else replication
    admin = self.admin()  # referenced until the futures are done: its handle serves them
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication,
                  config=dict(config or {}))], operation_timeout=timeout_secs)
    futures[name].result(timeout=timeout_secs)
    self.wait_for_leaders(name, partitions, replication, timeout_secs)
    with self._topics_lock:
      self._known_topics[name] = partitions
    return name

  def wait_for_leaders(self, topic: str, partitions: int, replication: int,
                       timeout_secs: float = CLIENT_TIMEOUT_SECS) -> None:
    """Until metadata shows ``partitions`` partitions, each with a leader and a full ISR."""
    admin = self.admin()
    deadline = time.monotonic() + timeout_secs
    while True:
      try:
        metadata = admin.list_topics(topic, timeout=5).topics.get(topic)
        if (metadata is not None and metadata.error is None and
            len(metadata.partitions) == partitions and
            all(p.leader >= 0 and len(p.isrs) >= replication
                for p in metadata.partitions.values())):
          return
      except KafkaException:
        pass
      if time.monotonic() > deadline:
        raise TimeoutError(f'{topic}: partitions without a leader or full ISR after '
                           f'{timeout_secs:.0f}s')
      time.sleep(0.05)

  def _ensure_topic(self, topic: str) -> int:
    """Creates ``topic`` with ``num_partitions`` partitions if it does not exist; returns its
    partition count."""
    with self._topics_lock:
      if topic in self._known_topics:
        return self._known_topics[topic]
    metadata = self.admin().list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
      try:
        self.create_topic(topic)
      except KafkaException as error:
        if 'already exists' not in str(error).lower():
          raise
    # A new topic's metadata reaches every broker a moment after its creation: until then it
    # can show no partition (a round-robin producer would divide by zero).
    deadline = time.monotonic() + CLIENT_TIMEOUT_SECS
    count = self.partitions_of(topic)
    while count == 0 and time.monotonic() < deadline:
      time.sleep(0.05)
      count = self.partitions_of(topic)
    if count == 0:
      raise KafkaException(f'topic {topic} shows no partition {CLIENT_TIMEOUT_SECS}s after its '
                           'creation')
    with self._topics_lock:
      self._known_topics[topic] = count
    return count

  def partitions_of(self, topic: str) -> int:
    metadata = self.admin().list_topics(topic, timeout=10).topics.get(topic)
    return 0 if metadata is None or metadata.error is not None else len(metadata.partitions)

  def leader_of(self, topic: str, partition: int) -> int:
    """The node id leading ``topic[partition]`` now."""
    metadata = self.admin().list_topics(topic, timeout=10).topics[topic]
    return metadata.partitions[partition].leader

  def _shared_producer(self) -> Producer:
    if self._producer is None:
      self._producer = Producer(self.client_config(**{
          'acks': 'all', 'enable.idempotence': True, 'linger.ms': 5,
          'batch.num.messages': 10000, 'queue.buffering.max.messages': 1000000,
          'delivery.timeout.ms': 120000}))
    return self._producer

  def _close_producer(self) -> None:
    producer, self._producer = self._producer, None
    if producer is not None:
      producer.flush(5)

  def produce(self,
              topic: str,
              values: Sequence[Optional[bytes]],
              keys: Optional[Sequence[Optional[bytes]]] = None,
              partition: Optional[int] = None,
              timestamps_ms: Optional[Sequence[int]] = None,
              headers: Optional[list] = None) -> None:
    """Produces ``values`` to ``topic`` (created with 4 partitions if missing); waits for acks.

    Without ``partition`` and ``keys`` records go round robin over the
    topic's partitions (record ``i`` to partition ``i % partitions``: with
    the default 4 partitions, as ``KafkaCluster.produce`` does).
    ``acks=all`` with the idempotent producer: retries across a broker
    restart or a leader change neither lose nor duplicate a record.

    Raises:
      KafkaException: a record was not delivered.
    """
    partitions = self._ensure_topic(topic)
    producer = self._shared_producer()
    produce_all(producer, topic, values, keys, partition, timestamps_ms, headers, partitions,
                CLIENT_TIMEOUT_SECS * 4)

  def produce_transaction(self, topic: str, values: Sequence[Optional[bytes]],
                          keys: Optional[Sequence[Optional[bytes]]] = None,
                          partition: Optional[int] = None, abort: bool = False) -> None:
    """Produces ``values`` in one transaction, then commits it (or aborts it with ``abort``).

    Records are placed like ``produce``.  Each transaction ends with a
    control record (the commit or abort marker) on every partition it wrote
    to: an offset that no consumer ever receives.
    """
    partitions = self._ensure_topic(topic)
    producer = Producer(self.client_config(**{
        'transactional.id': f'tx-{uuid.uuid4().hex[:12]}', 'acks': 'all', 'linger.ms': 5}))
    producer.init_transactions(CLIENT_TIMEOUT_SECS)
    producer.begin_transaction()
    produce_all(producer, topic, values, keys, partition, None, None, partitions,
                CLIENT_TIMEOUT_SECS * 4)
    if abort:
      producer.abort_transaction(CLIENT_TIMEOUT_SECS)
    else:
      producer.commit_transaction(CLIENT_TIMEOUT_SECS)

  def end_offsets(self, topic: str) -> Dict[int, int]:
    """Returns {partition: high watermark} of ``topic``."""
    consumer = Consumer(self.client_config(**{'group.id': 'fixture-end-offsets'}))
    try:
      metadata = consumer.list_topics(topic, timeout=10)
      return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
              for p in metadata.topics[topic].partitions}
    finally:
      consumer.close()

  def committed(self, group: str, topic: str) -> Dict[int, int]:
    """Returns {partition: committed offset} of ``group`` on ``topic`` (partitions without one
    left out)."""
    consumer = Consumer(self.client_config(**{'group.id': group, 'enable.auto.commit': False}))
    try:
      metadata = consumer.list_topics(topic, timeout=10)
      partitions = sorted(metadata.topics[topic].partitions)
      result = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
      return {tp.partition: tp.offset for tp in result if tp.offset >= 0}
    finally:
      consumer.close()

  def commit(self, group: str, topic: str, offsets: Dict[int, int]) -> None:
    """Commits {partition: offset} for ``group`` (to set up restarts)."""
    consumer = Consumer(self.client_config(**{'group.id': group, 'enable.auto.commit': False}))
    try:
      consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                      asynchronous=False)
    finally:
      consumer.close()

  def read_values(self, topic: str, isolation_level: str = 'read_committed'
                  ) -> Dict[int, List[tuple]]:
    """Every record of ``topic`` as {partition: [(offset, key, value)]} (up to the end offsets)."""
    ends = self.end_offsets(topic)
    consumer = Consumer(self.client_config(**{
        'group.id': f'reader-{uuid.uuid4().hex[:8]}', 'enable.auto.commit': False,
        'enable.partition.eof': True, 'isolation.level': isolation_level}))
    out: Dict[int, List[tuple]] = {p: [] for p in ends}
    try:
      consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
      pending = {p for p, end in ends.items() if end > 0}
      deadline = time.monotonic() + CLIENT_TIMEOUT_SECS
      while pending and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
          if message.error() is not None:
            if message.error().code() == -191:  # partition EOF
              pending.discard(message.partition())
            continue
          out[message.partition()].append((message.offset(), message.key(), message.value()))
      if pending:
        raise TimeoutError(f'{topic}: partitions {sorted(pending)} not read to the end')
      return out
    finally:
      consumer.close()

  # -- Kafka's own tools ------------------------------------------------------------------

  def describe_group(self, group: str) -> List[GroupOffsets]:
    """``kafka-consumer-groups --bootstrap-server ... --describe --group <group>``, parsed.

    Raises:
      RuntimeError: the tool exited with an error.
    """
    result = self.run_tool('org.apache.kafka.tools.consumer.group.ConsumerGroupCommand',
                           ['--bootstrap-server', self.bootstrap_servers, '--describe',
                            '--group', group])
    if result.returncode != 0:
      raise RuntimeError(f'kafka-consumer-groups failed ({result.returncode}): '
                         f'{(result.stdout + result.stderr)[-2000:]}')
    return parse_group_description(result.stdout)

  def run_tool(self, main: str, args: Sequence[str]) -> subprocess.CompletedProcess:
    """Runs a Kafka command line tool (its main class) from the fetched classpath."""
    return _run_tool(self._classpath, self.work_dir, main, args)


class KafkaBroker(_RealKafka):
  """One combined KRaft broker + controller (replication 1).

  Attributes:
    bootstrap_servers: ``127.0.0.1:<port>`` of the PLAINTEXT listener.
    sasl_bootstrap_servers, ssl_bootstrap_servers: the SASL_PLAINTEXT and
      SSL listeners (``security=True``; None otherwise).
    ssl_ca_path: the CA certificate (PEM) that signed the SSL listener's.
    num_partitions: partitions of an auto-created or default topic (4).
  """

  def __init__(self, security: bool = False, heap_mb: int = 512,
               work_dir: Optional[str] = None,
               extra_settings: Optional[Dict[str, str]] = None):
    super().__init__(1, 1, security, heap_mb, work_dir, extra_settings)


class KafkaKRaftCluster(_RealKafka):
  """Three combined KRaft nodes (ids 1, 2, 3), static voters; topics replicated 3 times with
  ``min.insync.replicas=2`` by default, so one node may fail without losing a record."""

  def __init__(self, nodes: int = 3, security: bool = False, heap_mb: int = 384,
               work_dir: Optional[str] = None,
               extra_settings: Optional[Dict[str, str]] = None):
    super().__init__(nodes, min(3, nodes), security, heap_mb, work_dir, extra_settings)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m devtools.real_kafka``: start Kafka, print its addresses, run until Ctrl-C."""
  parser = argparse.ArgumentParser(prog='python -m devtools.real_kafka', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--nodes', type=int, choices=(1, 3), default=1,
                      help='1: one combined node; 3: a three-node KRaft cluster')
  parser.add_argument('--security', action='store_true',
                      help='also SASL_PLAINTEXT (PLAIN) and SSL listeners')
  args = parser.parse_args(argv)
  reason = jars.missing_tools(JARS)
  if reason:
    print(f'error: {reason}', file=sys.stderr)
    return 2
  logging.basicConfig(level=logging.WARNING)
  kafka = KafkaBroker(args.security) if args.nodes == 1 else KafkaKRaftCluster(
      security=args.security)
  started = time.monotonic()
  kafka.start()
  print(f'Kafka 4.1.1 ({args.nodes} node(s)) ready in {time.monotonic() - started:.1f} s, '
        f'data in {kafka.work_dir} (removed when it stops)')
  print(f'bootstrap_servers={kafka.bootstrap_servers}')
  if args.security:
    users = ', '.join(f'{u}/{p}' for u, p in SASL_USERS.items())
    print(f'sasl_plaintext={kafka.sasl_bootstrap_servers} (PLAIN users {users})')
    print(f'ssl={kafka.ssl_bootstrap_servers} (ssl.ca.location={kafka.ssl_ca_path})')
  print('Ctrl-C stops it.', flush=True)
  stop = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: stop.set())
  try:
    while not stop.is_set():
      stop.wait(1.0)  # idle until a signal; the nodes run on their own
      for node in kafka.nodes.values():
        if not node.running:
          print(f'node {node.node_id} exited:\n{node.log_tail()}', file=sys.stderr)
          return 1
  finally:
    kafka.close()
  return 0


if __name__ == '__main__':
  sys.exit(main())
