"""Kafka client configuration: validation, the source's errors, consumers and producers.

Every Kafka client of the loader -- the partition readers, the offset committer,
the load journal -- is created here from one validated librdkafka config, so
security settings (SASL, TLS) given once reach all of them, and librdkafka's
own logs and errors go to Python logging instead of stderr.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from typing import Any, Dict

from transforms.errors import ClusterFault, ConfigFault, LoaderError

__all__ = [
    'KafkaSourceError',
    'KafkaConfigError',
    'KafkaUnreachableError',
    'UnknownTopicError',
    'reader_config',
    'new_consumer',
    'new_producer',
    'new_admin',
    'client_failure_cause',
    'producer_config_of',
    'describe_servers',
    'EARLIEST',
    'LATEST',
]

_LOGGER = logging.getLogger(__name__)


class RepeatedMessageFilter(logging.Filter):
  """Lets a message through once per ``window_secs``; the next one says how many it stood for.

  A Kafka cluster that is down makes every client of the job report the same failure several
  times a second (hundreds of lines before the one clear error). Messages that differ only in
  the client's name or a duration are the same message here.
  """

  _VARIABLE = re.compile(r'rdkafka#(consumer|producer)-\d+|after \d+ms|\d+ms')

  def __init__(self, window_secs: float = 60.0, clock=time.monotonic):
    super().__init__()
    self._window_secs = window_secs
    self._clock = clock
    self._lock = threading.Lock()
    self._seen: Dict[str, list] = {}  # message -> [window start, suppressed count]

  def filter(self, record: logging.LogRecord) -> bool:
    text = record.getMessage()
    key = self._VARIABLE.sub('#', text)
    now = self._clock()
    with self._lock:
      if len(self._seen) > 1000:
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window_secs}
      entry = self._seen.get(key)
      if entry is not None and now - entry[0] < self._window_secs:
        entry[1] += 1
        return False
      suppressed = entry[1] if entry is not None else 0
      self._seen[key] = [now, 0]
    if suppressed:
      record.msg, record.args = (f'{text} (and {suppressed} more like it in the last '
                                 f'{self._window_secs:.0f} s)'), ()
    return True


_LOGGER.addFilter(RepeatedMessageFilter())

EARLIEST = frozenset(['earliest', 'smallest', 'beginning'])
LATEST = frozenset(['latest', 'largest', 'end'])
# Consumer-only librdkafka settings: a producer built from the consumer config
# leaves them out (librdkafka would warn about each).
_CONSUMER_ONLY = frozenset([
    'group.id', 'group.instance.id', 'auto.offset.reset', 'enable.auto.commit',
    'enable.auto.offset.store', 'auto.commit.interval.ms', 'isolation.level',
    'enable.partition.eof', 'queued.min.messages', 'queued.max.messages.kbytes',
    'fetch.wait.max.ms', 'fetch.min.bytes', 'fetch.max.bytes', 'max.partition.fetch.bytes',
    'fetch.message.max.bytes', 'session.timeout.ms', 'heartbeat.interval.ms',
    'max.poll.interval.ms', 'partition.assignment.strategy', 'group.protocol',
    'check.crcs', 'allow.auto.create.topics', 'group.remote.assignor',
])


class KafkaSourceError(LoaderError, RuntimeError):
  """Base class of the Kafka source's errors that a user can act on."""


class KafkaConfigError(KafkaSourceError, ConfigFault):
  """The consumer configuration or the transform arguments are invalid."""


class KafkaUnreachableError(KafkaSourceError, ClusterFault):
  """No broker answered within the configured timeout."""


class UnknownTopicError(KafkaSourceError, ConfigFault):
  """A topic or partition to read does not exist."""


def reader_config(consumer_config: Dict[str, Any]) -> Dict[str, Any]:
  """Validates ``consumer_config`` and returns the config the reader uses.

  Raises:
    KafkaConfigError: ``group.id`` or ``bootstrap.servers`` is missing, or
      auto commit was asked for.
  """
  if not isinstance(consumer_config, dict):
    raise KafkaConfigError(
        f'consumer_config must be a dict, got {type(consumer_config)!r}')
  config = dict(consumer_config)
  if not config.get('group.id'):
    raise KafkaConfigError(
        'consumer_config needs "group.id": the consumer group stores the '
        'committed offsets (CommitOffsets) and the start positions')
  if not (config.get('bootstrap.servers') or
          config.get('metadata.broker.list')):
    raise KafkaConfigError('consumer_config needs "bootstrap.servers"')
  for key in ('enable.auto.commit', 'enable.auto.offset.store'):
    if str(config.get(key, 'false')).lower() in ('true', '1'):
      _LOGGER.warning('Ignoring %s=%s: offsets are committed by CommitOffsets '
                      'only after the rows are loaded', key, config[key])
    config[key] = False
  # Only records of committed transactions may load: an aborted transaction's
  # records must never reach a table.  read_committed is librdkafka's default
  # too; it is set here so the guarantee does not hang on a default.
  isolation = str(config.setdefault('isolation.level', 'read_committed')).lower()
  if isolation != 'read_committed':
    _LOGGER.warning('isolation.level=%s: records of aborted or still open Kafka transactions '
                    'will be loaded too', config['isolation.level'])
  reset = str(config.get('auto.offset.reset', 'latest')).lower()
  if reset not in EARLIEST | LATEST | {'error'}:
    raise KafkaConfigError(
        f'auto.offset.reset must be earliest or latest, got {reset!r}')
  return config


# Recent client errors (monotonic time, KafkaError), so that a failed request
# can name its cause: librdkafka fails a metadata request with "Broker
# transport failure" and reports why (a refused password, an untrusted
# certificate) only to ``error_cb``.
_RECENT_ERRORS: collections.deque = collections.deque(maxlen=64)
# KafkaError._AUTHENTICATION, KafkaError._SSL: the causes a user must fix.
_TELLING_ERROR_CODES = (-169, -181)
_ALL_BROKERS_DOWN = -187


def _log_client_error(error) -> None:
  # librdkafka reports broker trouble (all brokers down, auth failures) here;
  # without a callback it would be silent and a dead cluster looks idle.
  _LOGGER.warning('Kafka client error: %s', error)
  _RECENT_ERRORS.append((time.monotonic(), error))


def client_failure_cause(client, since: float) -> str:
  """Why ``client``'s request failed, as librdkafka reported it since ``since``; or ''.

  librdkafka hands errors to ``error_cb`` only when the client is polled, so
  this polls it once without waiting, then picks an authentication or TLS
  error if there is one, else the last error ("Connection refused", ...).
  ``since`` is a ``time.monotonic()`` from before the request.
  """
  try:
    client.poll(0)
  except Exception:  # pylint: disable=broad-except  (a closed client: nothing more to learn)
    pass
  errors = [error for at, error in list(_RECENT_ERRORS) if at >= since]
  telling = [e for e in errors if _code_of(e) in _TELLING_ERROR_CODES]
  others = [e for e in errors if _code_of(e) != _ALL_BROKERS_DOWN]
  chosen = (telling or others or [None])[-1]
  if chosen is None:
    return ''
  text = chosen.str() if hasattr(chosen, 'str') else str(chosen)
  return f' (the Kafka client reported: {text})'


def _code_of(error) -> Any:
  try:
    return error.code()
  except AttributeError:
    return None


def _new_client(client_class, config: Dict[str, Any], overrides: Dict[str, Any], what: str):
  from confluent_kafka import KafkaException  # pylint: disable=import-outside-toplevel
  full = dict(config)
  full.update(overrides)
  full.setdefault('logger', _LOGGER)
  full.setdefault('error_cb', _log_client_error)
  try:
    return client_class(full)
  except (KafkaException, ValueError, TypeError) as e:
    raise KafkaConfigError(f'invalid {what}: {e}') from e


def new_consumer(config: Dict[str, Any], **overrides):
  """Creates a confluent_kafka Consumer; librdkafka logs go to logging.

  Raises:
    KafkaConfigError: librdkafka refused the configuration.
  """
  from confluent_kafka import Consumer  # pylint: disable=import-outside-toplevel
  return _new_client(Consumer, config, overrides, 'consumer_config')


def new_admin(config: Dict[str, Any], **overrides):
  """Creates a confluent_kafka AdminClient; librdkafka logs go to logging.

  Raises:
    KafkaConfigError: librdkafka refused the configuration.
  """
  from confluent_kafka.admin import AdminClient  # pylint: disable=import-outside-toplevel
  return _new_client(AdminClient, config, overrides, 'Kafka admin config')


def describe_servers(config: Dict[str, Any]) -> str:
  """The bootstrap servers of ``config``, for messages."""
  return str(config.get('bootstrap.servers') or
             config.get('metadata.broker.list'))


def producer_config_of(consumer_config: Dict[str, Any]) -> Dict[str, Any]:
  """The connection and security settings of ``consumer_config``, for a producer."""
  return {key: value for key, value in consumer_config.items()
          if key not in _CONSUMER_ONLY and key not in ('logger', 'error_cb', 'stats_cb')}


def new_producer(config: Dict[str, Any], **overrides):
  """Creates a confluent_kafka Producer; librdkafka logs go to logging.

  Raises:
    KafkaConfigError: librdkafka refused the configuration.
  """
  from confluent_kafka import Producer  # pylint: disable=import-outside-toplevel
  return _new_client(Producer, config, overrides, 'Kafka producer config')


class KafkaProbe:
  """A readiness probe: does Kafka answer a metadata request?  (Picklable: plain settings.)"""

  def __init__(self, config: Dict[str, Any], timeout_secs: float = 5.0):
    self._config = dict(config)
    self._timeout_secs = timeout_secs

  def __call__(self):
    consumer = new_consumer(self._config)
    try:
      metadata = consumer.list_topics(timeout=self._timeout_secs)
    finally:
      consumer.close()
    return True, f'{len(metadata.brokers)} brokers answer'
