"""``RunnerElection``: which worker process runs the schema changes that must run once.

Every worker process follows the schema change topic (``ddl_topic``), and most changes may
run in several: ``CREATE TABLE IF NOT EXISTS`` and ``ALTER``s a second worker sends are found
done.  A truncate or a drop is not: run a second time, a moment later, it removes the rows the
first one's worker loaded after it (or the table a later record made).  One worker process
runs those, elected by Kafka's group membership -- the primitive Kafka offers for "one of
these processes": each process joins the consumer group ``<group_id>.ddl-runner`` on the
topic, and the one assigned its first partition is the runner.  It never reads through that
group (its partitions stay paused) nor commits there; the changes' offsets stay under
``--group_id``.  The others wait until the runner has committed past the record.

A runner that dies leaves the group when its session times out (``_SESSION_TIMEOUT_MS``),
and another is assigned; one that stops leaves it at once.  A revocation waits for the
change in flight, so two processes never run one at the same time.  Before it runs a
change, a new runner asks again whether the record was committed (by the runner before it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

__all__ = ['RunnerElection', 'acquire_election', 'release_election']

_LOGGER = logging.getLogger('transforms.schema')

GROUP_SUFFIX = '.ddl-runner'
# How soon a dead runner's place is taken (librdkafka's default is 45 s).
_SESSION_TIMEOUT_MS = 10_000
# A member learns of a rebalance (another process joined or left) at its next heartbeat.
_HEARTBEAT_MS = 1_000
_POLL_SECS = 0.2


class RunnerElection:
  """This process's membership of the topic's runner group (see the module docstring).

  Args:
    consumer_config: the schema change topic's librdkafka settings (``group.id``: the job's).
    topic: the schema change topic.
    consumer_factory: ``factory(config) -> Consumer`` (tests); default ``confluent_kafka``'s.
  """

  def __init__(self, consumer_config: Mapping[str, Any], topic: str,
               consumer_factory: Optional[Callable] = None):
    self._config = dict(consumer_config)
    self._config.update({'group.id': f'{consumer_config["group.id"]}{GROUP_SUFFIX}',
                         'enable.auto.commit': 'false', 'auto.offset.reset': 'latest',
                         'session.timeout.ms': _SESSION_TIMEOUT_MS,
                         'heartbeat.interval.ms': _HEARTBEAT_MS,
                         'enable.partition.eof': 'false'})
    self._topic = topic
    self._factory = consumer_factory
    self._lock = threading.Lock()      # held while this process runs a change
    self._state = threading.Condition()
    self._runner = False
    self._decided = False
    self._stopped = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._consumer = None

  def start(self) -> None:
    """Joins the group (at once; the assignment comes on the group's own time)."""
    if self._thread is not None:
      return
    import confluent_kafka  # pylint: disable=import-outside-toplevel
    factory = self._factory or confluent_kafka.Consumer
    self._consumer = factory(self._config)
    self._consumer.subscribe([self._topic], on_assign=self._assigned, on_revoke=self._revoked)
    self._thread = threading.Thread(target=self._poll, name='ddl-runner-election', daemon=True)
    self._thread.start()

  def _poll(self) -> None:
    while not self._stopped.is_set():
      try:
        self._consumer.poll(_POLL_SECS)
      except Exception as error:  # pylint: disable=broad-except
        _LOGGER.warning('--ddl_topic=%s: the runner election: %s', self._topic, error)
        self._stopped.wait(1.0)

  def _assigned(self, consumer, partitions) -> None:
    if partitions:
      consumer.pause(partitions)  # membership only: nothing is read through this group
    first = min((p.partition for p in partitions), default=None)
    with self._state:
      self._runner = first == 0
      self._decided = True
      self._state.notify_all()
    if self._runner:
      _LOGGER.info('--ddl_topic=%s: this worker runs the changes that must run once (truncate, '
                   'drop table)', self._topic)

  def _revoked(self, consumer, partitions) -> None:
    del consumer, partitions
    with self._lock:  # the change in flight ends first
      with self._state:
        self._runner = False
        self._state.notify_all()

  def wait_decided(self, timeout_secs: float) -> bool:
    """Waits for the group's first assignment; whether one came in time."""
    with self._state:
      return self._state.wait_for(lambda: self._decided, timeout_secs)

  @contextlib.contextmanager
  def running(self) -> Iterator[bool]:
    """Holds off a revocation while the body runs; yields whether this process is the runner."""
    with self._lock:
      with self._state:
        runner = self._runner
      yield runner

  def close(self) -> None:
    """Leaves the group (another process is assigned at once)."""
    self._stopped.set()
    if self._thread is not None:
      self._thread.join(timeout=10)
    consumer, self._consumer = self._consumer, None
    if consumer is not None:
      consumer.close()
    self._thread = None


# One election per process and (cluster, group, topic): every DoFn instance of the process
# that follows the topic shares it, so any of them may run what the process was elected for.
_ELECTIONS: Dict[Tuple, Tuple[RunnerElection, int]] = {}
_ELECTIONS_LOCK = threading.Lock()


def _key(consumer_config: Mapping[str, Any], topic: str) -> Tuple:
  return (str(consumer_config.get('bootstrap.servers')), str(consumer_config.get('group.id')),
          topic)


def acquire_election(consumer_config: Mapping[str, Any], topic: str) -> RunnerElection:
  """The process's election for ``topic`` under the job's group, started (shared, counted)."""
  key = _key(consumer_config, topic)
  with _ELECTIONS_LOCK:
    election, users = _ELECTIONS.get(key, (None, 0))
    if election is None:
      election = RunnerElection(consumer_config, topic)
      election.start()
    _ELECTIONS[key] = (election, users + 1)
    return election


def release_election(election: RunnerElection) -> None:
  """Gives back ``acquire_election``'s; the last user leaves the group."""
  with _ELECTIONS_LOCK:
    for key, (known, users) in list(_ELECTIONS.items()):
      if known is election:
        if users > 1:
          _ELECTIONS[key] = (known, users - 1)
          return
        del _ELECTIONS[key]
        break
  election.close()
