"""Registry formats end to end on a real Kafka broker with a real schema registry.

The broker is Apache Kafka 4.1.1 (``real_kafka``), the registry Apicurio Registry
2.0.2 through its Confluent-compatible API (``real_registry``); the records are
written with confluent-kafka's own serializers registering their schemas over
HTTP, and the job is the command line as a user runs it.  Needs Java 17+ and
Maven (the fixtures skip without them, or fail under ``REQUIRE_INTEGRATION=1``).
"""

from __future__ import annotations

import copy
import re
import signal

import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import free_port, records_consumed
from tests.pipelines.test_registry_formats_e2e import (
    SCHEMA_SQL, _image, assert_bad_values_dead_lettered, assert_logical_values_of_account_13,
    assert_orders_loaded, bad_values, order_messages)
from tests.pipelines.test_schema_evolution import _columns
from tests.transforms.records.registry_helpers import (avro_serializer, debezium_avro_schemas,
                                                       debezium_event, order_message_class,
                                                       protobuf_serializer)

pytestmark = pytest.mark.integration

DRAIN_SECS = 120


def _with_city(envelope: dict) -> dict:
  """The Debezium envelope after the source table gained a nullable ``city`` column."""
  changed = copy.deepcopy(envelope)
  changed['fields'][0]['type'][1]['fields'].append(
      {'name': 'city', 'type': ['null', 'string'], 'default': None})
  return changed


def _log_text(path) -> str:
  with open(path, encoding='utf-8', errors='replace') as handle:
    return handle.read()


def test_debezium_avro_changes_a_column_added_mid_stream_and_bad_records(
    real_kafka, real_registry, make_stream_load_server, tmp_path):
  """Inserts, updates, deletes; the schema gains a column between records (``add_columns``:
  the column appears and later rows fill it); an unknown schema id (the registry's real 404),
  truncated bytes and a record without the magic byte are dead letters."""
  server = make_stream_load_server(schema_sql=SCHEMA_SQL)
  url = real_registry.url
  topic = real_kafka.create_topic(real_kafka.unique_topic('rr-accounts'), partitions=1)
  key_schema, v1 = debezium_avro_schemas()
  key_of = avro_serializer(url, key_schema, topic=topic, is_key=True)
  first, second = avro_serializer(url, v1, topic=topic), avro_serializer(url, _with_city(v1),
                                                                          topic=topic)
  values = [first(debezium_event('c', None, _image(i, f'u{i}'))) for i in range(40)]
  values += [first(debezium_event('u', _image(i, f'u{i}'), _image(i, f'v{i}')))
             for i in range(0, 40, 2)]
  values += [first(debezium_event('d', _image(i, f'v{i}'), None)) for i in range(0, 40, 10)]
  # The source table gained `city`: Debezium registers a second schema and goes on.
  values += [second(debezium_event('c', None, dict(_image(i, f'n{i}'), city=f'c{i}')))
             for i in range(40, 60)]
  values += [second(debezium_event('u', _image(1, 'u1'), dict(_image(1, 'w1'), city='x')))]
  keys = [key_of({'id': i}) for i in list(range(40)) + list(range(0, 40, 2)) +
          list(range(0, 40, 10)) + list(range(40, 60)) + [1]]
  bad = bad_values(values[0])
  real_kafka.produce(topic, values + bad, keys=keys + [b'k'] * len(bad), partition=0)
  group = f'g-{topic}'
  dead_dir = str(tmp_path / 'dead')
  result = run_cli(pipeline_argv(real_kafka, server, [topic], group, dead_dir, format='avro',
                                 schema_registry_url=url, cdc_format='debezium',
                                 schema_evolution='add_columns', batch_rows=20,
                                 max_chunk_records=25))
  assert result.returncode == 0, result.stderr[-3000:]

  _, columns = _columns(server, 'shop.accounts')
  assert [name for name, _ in columns][-1] == 'city'
  query = server.query
  assert query('SELECT count(*) FROM shop.accounts') == [(56,)]
  assert query('SELECT name, city FROM shop.accounts WHERE id = 1') == [('w1', 'x')]
  assert query('SELECT name, city FROM shop.accounts WHERE id = 2') == [('v2', None)]
  assert query('SELECT name, city FROM shop.accounts WHERE id = 45') == [('n45', 'c45')]
  assert query('SELECT count(*) FROM shop.accounts WHERE id IN (0, 10, 20, 30)') == [(0,)]
  assert_logical_values_of_account_13(query)
  letters = read_dead_letters(dead_dir)
  assert_bad_values_dead_lettered(letters, len(values))
  unknown = next(letter for letter in letters if letter['reason'].startswith('unknown_schema'))
  assert url in unknown['reason'] and 'HTTP 404' in unknown['reason']
  assert real_kafka.committed(group, topic) == {0: len(values) + len(bad)}


def test_a_protobuf_topic_on_a_real_broker_and_registry(
    real_kafka, real_registry, make_stream_load_server, tmp_path):
  server = make_stream_load_server(schema_sql=SCHEMA_SQL)
  topic = real_kafka.unique_topic('rr-orders-proto')
  order_class = order_message_class('realreg')
  serialize = protobuf_serializer(real_registry.url, order_class, topic=topic)
  real_kafka.produce(topic, [serialize(m) for m in order_messages(order_class, 300)])
  group = f'g-{topic}'
  result = run_cli(pipeline_argv(real_kafka, server, [topic], group, str(tmp_path / 'dead'),
                                 format='protobuf', schema_registry_url=real_registry.url,
                                 table='shop.orders'))
  assert result.returncode == 0, result.stderr[-3000:]
  assert_orders_loaded(server.query, 300)
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert real_kafka.committed(group, topic) == real_kafka.end_offsets(topic)


def test_a_streaming_job_picks_up_an_avro_topic_created_after_it_started(
    real_kafka, real_registry, make_stream_load_server, tmp_path):
  """``--topic_pattern``: the topic appears while the job runs, its records gain a field the
  table lacks (``--schema_evolution=none``: reported once, no row lost); SIGTERM drains."""
  server = make_stream_load_server(schema_sql=SCHEMA_SQL)
  uid = real_kafka.unique_topic('p').replace('-', '_')
  topic = f'rrcdc_{uid}_accounts'
  port = free_port()
  group = f'g-{uid}'
  argv = [a for a in pipeline_argv(real_kafka, server, ['unused'], group,
                                   str(tmp_path / 'dead'), format='avro',
                                   schema_registry_url=real_registry.url,
                                   cdc_format='debezium', table='shop.accounts',
                                   metrics_port=port, topic_discovery_interval_secs=1,
                                   batch_interval_secs=2)
          if a not in ('--stop_at_end', '--topics=unused')]
  argv.append(rf'--topic_pattern=rrcdc_{uid}_.*')
  log = str(tmp_path / 'job.log')
  proc = start_cli(argv, log_path=log)
  try:
    wait_for(lambda: 'matches the' in _log_text(log), 'the job waiting for a topic', proc=proc)
    key_schema, v1 = debezium_avro_schemas()
    key_of = avro_serializer(real_registry.url, key_schema, topic=topic, is_key=True)
    first = avro_serializer(real_registry.url, v1, topic=topic)
    second = avro_serializer(real_registry.url, _with_city(v1), topic=topic)
    values = [first(debezium_event('c', None, _image(i, f'u{i}'))) for i in range(30)]
    values += [second(debezium_event('c', None, dict(_image(i, f'u{i}'), city=f'c{i}')))
               for i in range(30, 60)]
    real_kafka.produce(topic, values, keys=[key_of({'id': i}) for i in range(60)], partition=0)
    wait_for(lambda: records_consumed(port, topic) == 60, 'the new topic read', proc=proc)
    wait_for(lambda: server.query('SELECT count(*) FROM shop.accounts') == [(60,)],
             'the rows loaded', proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DRAIN_SECS) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  text = _log_text(log)
  # Found by the discovery of a running read, or by the start of the read if that was still
  # waiting for a first matching topic: either way once.
  found = re.findall(rf'(?:Discovered topic {topic} |Reading 4 partitions from \S+ {topic}\[)',
                     text)
  assert len(found) == 1, text[-3000:]
  reports = re.findall(r'field\(s\) city not in the table', text)
  assert len(reports) == 1, text[-3000:]
  _, columns = _columns(server, 'shop.accounts')
  assert 'city' not in [name for name, _ in columns]
  assert server.query('SELECT name FROM shop.accounts WHERE id = 45') == [('u45',)]
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert real_kafka.committed(group, topic) == {0: 60}  # the other partitions stayed empty
