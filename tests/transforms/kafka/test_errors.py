"""Bad addresses, unknown topics and unreachable clusters fail fast and clearly."""

import time

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from transforms import kafka

pytestmark = pytest.mark.transform

TIMEOUT_SECS = 2.0


def _config(servers):
  return {'bootstrap.servers': servers, 'group.id': 'errors'}


@pytest.mark.parametrize('servers', [
    'no-such-host.invalid:9092',   # bad broker address (DNS fails)
    '127.0.0.1:1',                 # unreachable cluster (connection refused)
    '192.0.2.1:9092',              # unreachable cluster (TEST-NET, no answer)
])
def test_unreachable_brokers_fail_at_construction_within_timeout(servers):
  p = beam.Pipeline(runner=FnApiRunner())
  started = time.monotonic()
  with pytest.raises(kafka.KafkaUnreachableError,
                     match=r'did not answer a metadata request within 2.0s'):
    _ = p | kafka.ReadKafkaChunks(_config(servers), ['t'],
                                  start_timeout_secs=TIMEOUT_SECS)
  assert time.monotonic() - started < TIMEOUT_SECS + 3


def test_unknown_topic_fails_at_construction(kafka_cluster):
  p = beam.Pipeline(runner=FnApiRunner())
  with pytest.raises(kafka.UnknownTopicError, match='does not exist'):
    _ = p | kafka.ReadFromKafka(kafka_cluster.consumer_config(),
                                [kafka_cluster.unique_topic('missing')])


def test_unknown_partition_fails_at_construction(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, [b'x'])
  p = beam.Pipeline(runner=FnApiRunner())
  with pytest.raises(kafka.UnknownTopicError, match=r'not \[7\]'):
    _ = p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(), [topic],
                                  partitions=[0, 7])


def test_unreachable_cluster_fails_the_run_without_validation():
  p = beam.Pipeline(runner=FnApiRunner())
  _ = p | kafka.ReadKafkaChunks(_config('127.0.0.1:1'), ['t'],
                                stop_at_end=True, validate=False,
                                start_timeout_secs=TIMEOUT_SECS)
  started = time.monotonic()
  # The runner wraps the DoFn's exception; the message survives.
  with pytest.raises(Exception, match='did not answer a metadata request'):
    p.run().wait_until_finish()
  assert time.monotonic() - started < TIMEOUT_SECS + 10


def test_unknown_topic_fails_the_run_without_validation(kafka_cluster):
  p = beam.Pipeline(runner=FnApiRunner())
  _ = p | kafka.ReadKafkaChunks(kafka_cluster.consumer_config(),
                                [kafka_cluster.unique_topic('missing')],
                                validate=False)
  with pytest.raises(Exception, match='does not exist'):
    p.run().wait_until_finish()


@pytest.mark.parametrize('config, match', [
    ({'bootstrap.servers': 'x:1'}, 'group.id'),
    ({'group.id': 'g'}, 'bootstrap.servers'),
    ({'bootstrap.servers': 'x:1', 'group.id': 'g',
      'auto.offset.reset': 'sideways'}, 'auto.offset.reset'),
])
def test_bad_config_is_a_value_error(config, match):
  with pytest.raises(ValueError, match=match):
    kafka.ReadKafkaChunks(config, ['t'])


def test_unknown_librdkafka_setting_is_a_config_error():
  p = beam.Pipeline(runner=FnApiRunner())
  with pytest.raises(kafka.KafkaConfigError, match='no.such.setting'):
    _ = p | kafka.ReadKafkaChunks(
        {'bootstrap.servers': 'x:1', 'group.id': 'g', 'no.such.setting': 1},
        ['t'])


def test_auto_commit_is_forced_off():
  read = kafka.ReadKafkaChunks(
      {'bootstrap.servers': 'x:1', 'group.id': 'g',
       'enable.auto.commit': True}, ['t'])
  assert read._config['enable.auto.commit'] is False
  assert read._config['enable.auto.offset.store'] is False


def test_the_reader_reads_committed_transactions_only_unless_told_otherwise():
  """Records of aborted transactions must never load: read_committed is set explicitly."""
  read = kafka.ReadKafkaChunks({'bootstrap.servers': 'x:1', 'group.id': 'g'}, ['t'])
  assert read._config['isolation.level'] == 'read_committed'
  chosen = kafka.ReadKafkaChunks({'bootstrap.servers': 'x:1', 'group.id': 'g',
                                  'isolation.level': 'read_uncommitted'}, ['t'])
  assert chosen._config['isolation.level'] == 'read_uncommitted'  # the user's choice, warned


def test_a_refused_login_is_named_in_the_unreachable_error():
  """librdkafka fails the metadata request with "transport failure" and tells why (a refused
  SASL login, an untrusted certificate) only to error_cb, served on poll(): the error says it."""
  from confluent_kafka import KafkaError, KafkaException
  from transforms.kafka import config as kafka_config
  from transforms.kafka.partitions import list_partitions

  class _RefusedConsumer:
    def list_topics(self, topic, timeout):
      raise KafkaException(KafkaError(KafkaError._TRANSPORT, 'Broker transport failure'))

    def poll(self, timeout):  # serves the queued error callback, as librdkafka does
      kafka_config._log_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, '1/1 brokers down'))
      kafka_config._log_client_error(KafkaError(
          KafkaError._AUTHENTICATION, 'sasl_plaintext://b:9092/bootstrap: SASL authentication '
          'error: Authentication failed: Invalid username or password'))

  with pytest.raises(kafka.KafkaUnreachableError,
                     match='reported: .*SASL authentication error: Authentication failed'):
    list_partitions(_RefusedConsumer(), _config('b:9092'), ['t'], None, TIMEOUT_SECS)
