"""End to end with schema-registry formats: mock Kafka -> the CLI -> the local Stream Load server.

The registry is confluent-kafka's in-memory mock (``mock://``, one per URL in
the process), so the pipeline runs in this process (``run_in_process``); the
unreachable-registry case runs the real CLI (``run_cli``) against a closed port.
"""

import decimal
import socket

import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, run_in_process
from tests.transforms.records.registry_helpers import (avro_serializer, debezium_avro_schemas,
                                                       debezium_event, mock_url,
                                                       order_message_class, protobuf_serializer)

pytestmark = pytest.mark.e2e

SCHEMA_SQL = '''
CREATE DATABASE IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.accounts (
  id BIGINT NOT NULL,
  name VARCHAR(64) NULL,
  balance DECIMAL(12, 2) NULL,
  opened DATE NULL,
  updated_at DATETIME(6) NULL,
  ratio STRING NULL
) ENGINE=OLAP
UNIQUE KEY(id)
DISTRIBUTED BY HASH(id) BUCKETS 2
PROPERTIES ("replication_num" = "1", "enable_unique_key_merge_on_write" = "true");
CREATE TABLE IF NOT EXISTS shop.orders (
  id BIGINT NOT NULL,
  customer VARCHAR(64) NULL,
  created DATETIME(6) NULL,
  ship_day DATE NULL,
  blob STRING NULL,
  status VARCHAR(16) NULL,
  qty INT NULL,
  price DOUBLE NULL,
  lines STRING NULL,
  paid BOOLEAN NULL
) ENGINE=OLAP
DUPLICATE KEY(id)
DISTRIBUTED BY HASH(id) BUCKETS 2
PROPERTIES ("replication_num" = "1");
'''


# How order 10**12 + 5 of ``order_messages`` reads back from shop.orders.
ORDER_5 = ['c5', '2023-11-14 22:13:25.000000', '2024-01-06', 'AQ==', 'PAID', '1.25']


def order_messages(order_class, count: int) -> list:
  """``count`` Protobuf orders (ids from 10**12) with a Timestamp and a Date each."""
  messages = []
  for i in range(count):
    message = order_class(id=10**12 + i, customer=f'c{i}', blob=b'\x01', status=i % 2,
                          qty=i, price=i / 4, paid=i % 2 == 0)
    message.created.FromSeconds(1_700_000_000 + i)
    message.ship_day.year, message.ship_day.month, message.ship_day.day = 2024, 1, 1 + i % 28
    messages.append(message)
  return messages


def bad_values(good: bytes) -> list:
  """Three records no schema decodes, made from a good wire-format value."""
  return [b'\x00\x00\x00\x03\xe7' + good[5:],  # schema id 999: unknown to the registry
          good[:12],                           # truncated
          b'{"id": 1, "op": "c"}']             # JSON: the first byte is no magic byte


def assert_bad_values_dead_lettered(letters: list, first_offset: int) -> None:
  """``bad_values`` produced at ``first_offset``.. became dead letters with their reasons."""
  assert sorted((letter['offset'], letter['reason'].split(':')[0]) for letter in letters) == [
      (first_offset, 'unknown_schema'), (first_offset + 1, 'undecodable'),
      (first_offset + 2, 'bad_wire_format')]


def assert_logical_values_of_account_13(query) -> None:
  """``_image(13, ...)``'s decimal, date, micros timestamp and variable-scale decimal."""
  (row,) = query('SELECT balance, opened, updated_at, ratio FROM shop.accounts WHERE id = 13')
  assert [str(v) for v in row] == ['13.13', '2022-01-21', '2023-11-14 22:13:33.000013', '0.091']


def assert_orders_loaded(query, count: int) -> None:
  """``order_messages(..., count)`` are in shop.orders once each, order 5 with all its types."""
  assert query('SELECT count(*), count(DISTINCT id), sum(qty) FROM shop.orders') == [
      (count, count, sum(range(count)))]
  (row,) = query(f'SELECT customer, created, ship_day, blob, status, price FROM shop.orders '
                 f'WHERE id = {10**12 + 5}')
  assert [str(v) for v in row] == ORDER_5


def _image(i: int, name: str) -> dict:
  return {'id': i, 'name': name, 'balance': decimal.Decimal(f'{i}.{i % 100:02d}'),
          'opened': 19000 + i, 'updated_at': 1_700_000_000_000_000 + i * 1_000_001,
          'ratio': {'scale': 3, 'value': (i * 7).to_bytes(2, 'big', signed=True)}}


def test_debezium_avro_inserts_updates_deletes_and_bad_records(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(schema_sql=SCHEMA_SQL)
  url = mock_url('e2e-debezium')
  topic = kafka_cluster.unique_topic('accounts-avro')
  key_schema, envelope = debezium_avro_schemas()
  value_of = avro_serializer(url, envelope, topic=topic)
  key_of = avro_serializer(url, key_schema, topic=topic, is_key=True)
  values, keys = [], []
  for i in range(50):
    values.append(value_of(debezium_event('c', None, _image(i, f'u{i}'))))
    keys.append(key_of({'id': i}))
  for i in range(0, 50, 2):
    values.append(value_of(debezium_event('u', _image(i, f'u{i}'), _image(i, f'v{i}'))))
    keys.append(key_of({'id': i}))
  for i in range(0, 50, 10):
    values.append(value_of(debezium_event('d', _image(i, f'v{i}'), None)))
    keys.append(key_of({'id': i}))
    values.append(None)  # Debezium's tombstone
    keys.append(key_of({'id': i}))
  bad = bad_values(values[0])
  # One partition keeps every change of a key in order (Debezium keys by primary key).
  kafka_cluster.produce(topic, values + bad, keys=keys + [b'k'] * len(bad), partition=0)
  group = f'g-{topic}'
  dead_dir = str(tmp_path / 'dead')
  summary = run_in_process(pipeline_argv(
      kafka_cluster, server, [topic], group, dead_dir, format='avro', schema_registry_url=url,
      cdc_format='debezium', batch_rows=1000))

  query = server.query
  assert query('SELECT count(*) FROM shop.accounts') == [(45,)]
  assert query('SELECT name FROM shop.accounts WHERE id = 2') == [('v2',)]
  assert query('SELECT name FROM shop.accounts WHERE id = 3') == [('u3',)]
  assert query('SELECT count(*) FROM shop.accounts WHERE id IN (0, 10, 20, 30, 40)') == [(0,)]
  assert_logical_values_of_account_13(query)
  assert_bad_values_dead_lettered(read_dead_letters(dead_dir), len(values))
  assert summary.totals['rows_loaded'] == 50 + 25 + 5
  assert kafka_cluster.committed(group, topic) == {0: len(values) + len(bad)}


def test_a_protobuf_topic_loads_without_generated_classes(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(schema_sql=SCHEMA_SQL)
  url = mock_url('e2e-protobuf')
  topic = kafka_cluster.unique_topic('orders-proto')
  order_class = order_message_class('e2e')
  serialize = protobuf_serializer(url, order_class, topic=topic)
  kafka_cluster.produce(topic, [serialize(m) for m in order_messages(order_class, 200)])
  group = f'g-{topic}'
  summary = run_in_process(pipeline_argv(
      kafka_cluster, server, [topic], group, str(tmp_path / 'dead'), format='protobuf',
      schema_registry_url=url, table='shop.orders'))
  assert summary.totals['rows_loaded'] == 200
  assert_orders_loaded(server.query, 200)
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_an_unreachable_registry_fails_the_job_clearly_and_commits_nothing(
    kafka_cluster, stream_load_server, tmp_path):
  with socket.socket() as probe:  # a port nobody listens on
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  topic = kafka_cluster.unique_topic('avro-down')
  schema = {'type': 'record', 'name': 'Event', 'fields': [{'name': 'event_id', 'type': 'long'}]}
  serialize = avro_serializer(mock_url('e2e-down'), schema, topic=topic)
  kafka_cluster.produce(topic, [serialize({'event_id': i}) for i in range(20)])
  group = f'g-{topic}'
  registry = f'http://127.0.0.1:{port}'
  completed = run_cli(pipeline_argv(
      kafka_cluster, stream_load_server, [topic], group, str(tmp_path / 'dead'), format='avro',
      schema_registry_url=registry, table='demo.events'), timeout_secs=180)
  assert completed.returncode == 1, completed.stderr[-3000:]
  error_lines = [line for line in completed.stderr.splitlines() if line.startswith('error:')]
  assert len(error_lines) == 1, completed.stderr[-3000:]
  assert f'schema registry {registry} is unavailable' in error_lines[0]
  assert 'ConnectError' in error_lines[0]
  # The CLI ends on that line (Beam's runner logs the DoFn's traceback before it, at ERROR).
  assert completed.stderr.strip().splitlines()[-1] == error_lines[0]
  assert kafka_cluster.committed(group, topic) == {}
  assert stream_load_server.query('SELECT count(*) FROM demo.events') == [(0,)]


def test_a_registry_format_without_the_registry_extra_fails_at_config_time(monkeypatch):
  import sys
  from apache_beam.options.pipeline_options import PipelineOptions
  from pipelines.config import ConfigurationError, PipelineConfig
  monkeypatch.setitem(sys.modules, 'confluent_kafka.schema_registry.avro', None)
  with pytest.raises(ConfigurationError, match=r"pip install '\.\[registry\]'"):
    PipelineConfig.from_options(PipelineOptions([
        '--topics=t', '--group_id=g', '--fe_nodes=http://fe:8030', '--table=db.t',
        '--format=avro', '--schema_registry_url=http://registry:8081']))
