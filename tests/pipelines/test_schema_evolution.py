"""Schema evolution and table creation end to end: mock Kafka -> the CLI -> the local server.

Records gain fields mid-stream; with ``--schema_evolution=add_columns`` the table gets the
columns before any row that needs them loads, with ``none`` each unknown column is reported
once; ``--create_tables`` makes missing tables from Debezium (UNIQUE KEY) and plain JSON
(DUPLICATE KEY) records.  Exactly once throughout: counts equal distinct ids, offsets at the
end.
"""

import logging
import signal

import orjson
import pytest
import requests

from pipelines.config import ConfigurationError, PipelineConfig, options_of
from tests.harness import PASSWORD, pipeline_argv, read_dead_letters, run_in_process, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import free_port, records_consumed

pytestmark = pytest.mark.e2e


def _event(i, **extra):
  fields = {'event_id': i, 'user_id': i % 7, 'event_type': 'view', 'amount': 1.5,
            'payload': f'p{i}'}
  fields.update(extra)
  return orjson.dumps(fields)


def _columns(server, table):
  db, tbl = table.split('.')
  body = requests.get(f'{server.fe_url}/api/{db}/{tbl}/_schema', auth=('root', PASSWORD),
                      timeout=10).json()
  assert body['code'] == 0, body
  return body['data']['keysType'], [(p['name'], p['type']) for p in body['data']['properties']]


def _produce_evolving_events(kafka, topic, old=300, new=300):
  kafka.produce(topic, [_event(i) for i in range(old)])
  kafka.produce(topic, [_event(i, city=f'c{i}', score=i * 2) for i in range(old, old + new)])


def test_add_columns_adds_new_fields_mid_stream_and_later_rows_fill_them(
    kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('evolve')
  _produce_evolving_events(kafka_cluster, topic)
  group = f'g-{topic}'
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [topic], group, str(tmp_path / 'dead'),
      table='demo.events', schema_evolution='add_columns', batch_rows=100))

  _, columns = _columns(stream_load_server, 'demo.events')
  assert columns[-2:] == [('city', 'STRING'), ('score', 'BIGINT')]
  query = stream_load_server.query
  assert query('SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [(600, 600)]
  assert query('SELECT count(*) FROM demo.events WHERE event_id < 300 AND city IS NULL AND '
               'score IS NULL') == [(300,)]
  assert query('SELECT count(*) FROM demo.events WHERE event_id >= 300 AND '
               "city = CONCAT('c', CAST(event_id AS STRING)) AND score = event_id * 2") == [(300,)]
  assert summary.totals['schema_columns_added'] == 2
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)
  ran = [stmt for _, stmt in stream_load_server.storage.load_ddl()]
  assert len(ran) == 1 and ran[0].startswith('ALTER TABLE')  # one ALTER for both columns, once


@pytest.mark.parametrize('load_format', ['json', 'csv', 'arrow'])
def test_none_reports_each_unknown_column_once_and_loses_no_row(
    kafka_cluster, stream_load_server, tmp_path, caplog, load_format):
  topic = kafka_cluster.unique_topic('report')
  _produce_evolving_events(kafka_cluster, topic)
  group = f'g-{topic}'
  caplog.set_level(logging.WARNING, logger='transforms.schema')
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [topic], group, str(tmp_path / 'dead'),
      table='demo.events', batch_rows=100, load_format=load_format))

  warnings = [r.getMessage() for r in caplog.records if r.name == 'transforms.schema']
  assert warnings == ['table demo.events: field(s) city, score not in the table; left out '
                      '(--schema_evolution=none)']
  assert summary.totals['schema_unknown_columns'] == 2
  _, columns = _columns(stream_load_server, 'demo.events')
  assert 'city' not in [name for name, _ in columns]
  assert stream_load_server.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events'
                                  ) == [(600, 600)]
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_a_schema_change_the_fe_refuses_dead_letters_only_the_rows_that_need_it(
    kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('denied')
  _produce_evolving_events(kafka_cluster, topic, old=50, new=20)
  stream_load_server.inject_fault('ddl_denied', times=None)
  group = f'g-{topic}'
  dead = str(tmp_path / 'dead')
  run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [topic], group, dead,
                               table='demo.events', schema_evolution='add_columns'))

  letters = read_dead_letters(dead)
  assert len(letters) == 20
  assert all(letter['reason'].startswith('schema_change_failed: ALTER TABLE `demo`.`events`')
             and 'Access denied' in letter['reason'] for letter in letters)
  assert sorted(orjson.loads(letter['payload'])['event_id'] for letter in letters) == list(
      range(50, 70))
  assert stream_load_server.query('SELECT count(*), min(event_id), max(event_id) FROM '
                                  'demo.events') == [(50, 0, 49)]
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def _debezium(op, before, after, table='customers'):
  return orjson.dumps({'op': op, 'before': before, 'after': after,
                       'source': {'db': 'demo', 'table': table}})


def test_create_tables_makes_a_unique_key_table_from_keyed_debezium_records_and_deletes_work(
    kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('dbz')
  records = [_debezium('c', None, {'id': i, 'name': f'u{i}', 'age': 30}) for i in range(40)]
  records += [_debezium('u', {'id': i}, {'id': i, 'name': f'v{i}', 'age': 31, 'vip': True})
              for i in range(0, 40, 2)]
  records += [_debezium('d', {'id': i, 'name': f'v{i}', 'age': 31}, None)
              for i in range(0, 40, 10)]
  keys = [orjson.dumps({'id': orjson.loads(r)['after' if orjson.loads(r)['after'] else
                                                'before']['id']}) for r in records]
  kafka_cluster.produce(topic, records, keys=keys)
  group = f'g-{topic}'
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [topic], group, str(tmp_path / 'dead'),
      cdc_format='debezium', create_tables='true', schema_evolution='add_columns',
      batch_rows=1000))

  keys_type, columns = _columns(stream_load_server, 'demo.customers')
  assert keys_type == 'UNIQUE_KEYS'
  assert columns == [('id', 'BIGINT'), ('name', 'STRING'), ('age', 'BIGINT'),
                     ('vip', 'BOOLEAN')]
  query = stream_load_server.query
  assert query('SELECT count(*) FROM demo.customers') == [(36,)]
  assert query('SELECT name, age, vip FROM demo.customers WHERE id = 2') == [('v2', 31, 1)]
  assert query('SELECT name, age, vip FROM demo.customers WHERE id = 3') == [('u3', 30, None)]
  assert query('SELECT count(*) FROM demo.customers WHERE id IN (0, 10, 20, 30)') == [(0,)]
  assert summary.totals['schema_tables_created'] == 1
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_starrocks_tables_are_created_and_evolved_over_the_mysql_port(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(flavor='starrocks')
  topic = kafka_cluster.unique_topic('sr')
  group = f'g-{topic}'

  def produce_and_run(records):
    keys = [orjson.dumps({'id': orjson.loads(r)['after' if orjson.loads(r)['after'] else
                                                  'before']['id']}) for r in records]
    kafka_cluster.produce(topic, records, keys=keys)
    return run_in_process(pipeline_argv(
        kafka_cluster, server, [topic], group, str(tmp_path / 'dead'),
        cdc_format='debezium', create_tables='true', schema_evolution='add_columns',
        target='starrocks', query_port=server.query_port, batch_rows=25))

  created = produce_and_run([_debezium('c', None, {'id': i, 'name': f'u{i}', 'age': 30})
                             for i in range(40)])
  assert created.totals['schema_tables_created'] == 1
  # Later a column appears; some rows change, some go.
  evolved = produce_and_run(
      [_debezium('u', {'id': i}, {'id': i, 'name': f'v{i}', 'age': 31, 'vip': True})
       for i in range(0, 40, 2)]
      + [_debezium('d', {'id': i, 'name': f'v{i}', 'age': 31}, None) for i in range(0, 40, 10)])
  assert evolved.totals['schema_columns_added'] == 1

  keys_type, columns = _columns(server, 'demo.customers')
  assert keys_type == 'PRIMARY_KEYS'
  assert [name for name, _ in columns] == ['id', 'name', 'age', 'vip']
  query = server.query
  assert query('SELECT count(*) FROM demo.customers') == [(36,)]
  assert query('SELECT name, age, vip FROM demo.customers WHERE id = 2') == [('v2', 31, 1)]
  assert query('SELECT name, age, vip FROM demo.customers WHERE id = 3') == [('u3', 30, None)]
  assert query('SELECT count(*) FROM demo.customers WHERE id IN (0, 10, 20, 30)') == [(0,)]
  # Every statement went over the MySQL port: none reached the FE's HTTP SQL API.
  assert not [entry for entry in server.request_log if '/api/query/' in entry.get('path', '')]
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_create_tables_makes_a_duplicate_key_table_from_plain_json(
    kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('plain')
  kafka_cluster.produce(topic, [orjson.dumps({'click_id': i, 'page': f'/p{i % 3}',
                                              'ms': i * 0.5}) for i in range(200)])
  table_config = tmp_path / 'tables.yaml'
  table_config.write_text('tables:\n  demo.clicks:\n    buckets: 4\n'
                          '    properties: {replication_num: "1"}\n')
  group = f'g-{topic}'
  run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [topic], group, str(tmp_path / 'dead'),
      table='demo.clicks', create_tables='true', table_config=str(table_config)))

  keys_type, columns = _columns(stream_load_server, 'demo.clicks')
  assert keys_type == 'DUP_KEYS'
  assert columns == [('click_id', 'BIGINT'), ('page', 'STRING'), ('ms', 'DOUBLE')]
  assert stream_load_server.query('SELECT count(*), count(DISTINCT click_id), sum(ms) FROM '
                                  'demo.clicks') == [(200, 200, sum(i * 0.5 for i in range(200)))]
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_without_create_tables_a_missing_table_still_fails_the_start_up_check(
    kafka_cluster, stream_load_server, tmp_path):
  from pipelines.preflight import PreflightError
  argv = pipeline_argv(kafka_cluster, stream_load_server, ['t'], 'g-missing',
                       str(tmp_path / 'dead'), table='demo.nosuch')
  with pytest.raises(PreflightError, match='demo.nosuch'):
    run_in_process(argv)


def test_a_streaming_job_adds_a_column_mid_stream_and_drains_on_sigterm(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('stream-evolve')
  port = free_port()
  argv = [a for a in pipeline_argv(kafka_cluster, server, [topic], f'g-{topic}',
                                   str(tmp_path / 'dead'), table='demo.events',
                                   schema_evolution='add_columns', metrics_port=port,
                                   batch_interval_secs=60)
          if a != '--stop_at_end']
  kafka_cluster.produce(topic, [_event(i) for i in range(100)])
  proc = start_cli(argv, log_path=str(tmp_path / 'job.log'))
  try:
    wait_for(lambda: records_consumed(port, topic) == 100, 'the first records read', proc=proc)
    kafka_cluster.produce(topic, [_event(i, city=f'c{i}') for i in range(100, 250)])
    wait_for(lambda: records_consumed(port, topic) == 250, 'the records with a new field read',
             proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  query = server.query
  assert query('SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [(250, 250)]
  assert query('SELECT count(*) FROM demo.events WHERE city IS NULL') == [(100,)]
  assert query("SELECT count(*) FROM demo.events WHERE "
               "city = CONCAT('c', CAST(event_id AS STRING))") == [(150,)]
  assert kafka_cluster.committed(f'g-{topic}', topic) == kafka_cluster.end_offsets(topic)


def _starrocks_options(**flags):
  return options_of({'bootstrap_servers': 'k:9092', 'topics': 't', 'group_id': 'g',
                     'fe_nodes': 'http://fe:8030', 'table': 'db.t', 'target': 'starrocks',
                     **flags})


@pytest.mark.unit
@pytest.mark.parametrize('flags', [{'schema_evolution': 'add_columns'},
                                   {'create_tables': True}])
def test_starrocks_ddl_goes_over_the_mysql_port_and_never_over_http(flags):
  config = PipelineConfig.from_options(_starrocks_options(**flags, query_port=19030))
  assert config.schema.over_mysql and config.schema.query_port == 19030
  with pytest.raises(ConfigurationError, match='StarRocks runs DDL only over the MySQL protocol'):
    PipelineConfig.from_options(_starrocks_options(**flags, ddl_protocol='http'))
  doris = PipelineConfig.from_options(_starrocks_options(**flags, target='doris'))
  assert not doris.schema.over_mysql  # Doris keeps its HTTP SQL API unless told otherwise
  assert PipelineConfig.from_options(_starrocks_options(**flags, target='doris',
                                                        ddl_protocol='mysql')).schema.over_mysql


@pytest.mark.unit
def test_the_table_config_carries_creation_settings(tmp_path):
  path = tmp_path / 't.yaml'
  path.write_text('tables:\n  db.a:\n    key_columns: [k]\n    distributed_by: random\n'
                  '    buckets: auto\n    properties: {replication_num: 1}\n'
                  '  db.b:\n    distributed_by: [x, y]\n    buckets: 3\n')
  config = PipelineConfig.from_options(options_of({
      'bootstrap_servers': 'k:9092', 'topics': 't', 'group_id': 'g', 'fe_nodes': 'http://fe:8030',
      'table': 'db.a', 'table_config': str(path), 'create_tables': True}))
  a, b = config.schema.tables['db.a'], config.schema.tables['db.b']
  assert (a.key_columns, a.distributed_by, a.buckets, dict(a.properties)) == (
      ('k',), (), None, {'replication_num': '1'})
  assert (b.key_columns, b.distributed_by, b.buckets) == (None, ('x', 'y'), 3)
  assert config.schema.create_tables and config.schema.mode == 'none'


@pytest.mark.unit
@pytest.mark.parametrize('text, message', [
    ('distributed_by: hash', 'distributed_by must be a list of columns or "random"'),
    ('buckets: 0', 'buckets: must be an integer >= 1'),
    ('buckets: many', 'buckets must be a positive integer or "auto"'),
    ('properties: [a]', 'properties must be dict'),
])
def test_bad_creation_settings_fail_at_start(tmp_path, text, message):
  path = tmp_path / 't.yaml'
  path.write_text(f'tables:\n  db.a:\n    {text}\n')
  with pytest.raises(ConfigurationError, match=message):
    PipelineConfig.from_options(options_of({
        'bootstrap_servers': 'k:9092', 'topics': 't', 'group_id': 'g',
        'fe_nodes': 'http://fe:8030', 'table': 'db.a', 'table_config': str(path)}))


def test_debezium_avro_creates_the_table_from_its_schema_and_follows_a_schema_change(
    kafka_cluster, make_stream_load_server, tmp_path):
  import copy
  from tests.transforms.records.registry_helpers import (avro_serializer, debezium_avro_schemas,
                                                         debezium_event, mock_url)
  server = make_stream_load_server(schema_sql='CREATE DATABASE IF NOT EXISTS shop;')
  url = mock_url('e2e-evolve')
  topic = kafka_cluster.unique_topic('accounts-evolve')
  key_schema, v1 = debezium_avro_schemas()
  v2 = copy.deepcopy(v1)  # the source table gained a column: Debezium registers a new schema
  v2['fields'][0]['type'][1]['fields'].append(
      {'name': 'city', 'type': ['null', 'string'], 'default': None})
  key_of = avro_serializer(url, key_schema, topic=topic, is_key=True)
  first, second = avro_serializer(url, v1, topic=topic), avro_serializer(url, v2, topic=topic)

  def image(i, name, **extra):
    return {'id': i, 'name': name, 'balance': None, 'opened': 19000 + i, 'updated_at': None,
            'ratio': None, **extra}
  values = [first(debezium_event('c', None, image(i, f'u{i}'))) for i in range(20)]
  values += [second(debezium_event('c', None, image(i, f'u{i}', city=f'c{i}')))
             for i in range(20, 40)]
  values += [second(debezium_event('u', image(0, 'u0'), image(0, 'v0', city='x')))]
  values += [second(debezium_event('d', image(i, f'u{i}', city=f'c{i}'), None))
             for i in (21, 22)]
  keys = [key_of({'id': i}) for i in list(range(40)) + [0, 21, 22]]
  kafka_cluster.produce(topic, values, keys=keys, partition=0)
  group = f'g-{topic}'
  # Chunks of 20 records: the first (schema v1 only) creates the table, the next adds `city`.
  summary = run_in_process(pipeline_argv(
      kafka_cluster, server, [topic], group, str(tmp_path / 'dead'), format='avro',
      schema_registry_url=url, cdc_format='debezium', create_tables='true',
      schema_evolution='add_columns', batch_rows=10, max_chunk_records=20))

  keys_type, columns = _columns(server, 'shop.accounts')
  assert keys_type == 'UNIQUE_KEYS'
  assert [name for name, _ in columns] == ['id', 'name', 'balance', 'opened', 'updated_at',
                                           'ratio', 'city']
  assert dict(columns)['opened'] == 'DATE' and dict(columns)['city'] == 'STRING'
  query = server.query
  assert query('SELECT count(*) FROM shop.accounts') == [(38,)]
  assert query('SELECT count(*) FROM shop.accounts WHERE id < 20 AND id > 0 AND city IS NULL'
               ) == [(19,)]
  assert query("SELECT name, city, opened FROM shop.accounts WHERE id = 0") == [
      ('v0', 'x', '2022-01-08')]
  assert query("SELECT city FROM shop.accounts WHERE id = 39") == [('c39',)]
  assert summary.totals['schema_tables_created'] == 1
  assert summary.totals['schema_columns_added'] == 1
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert kafka_cluster.committed(group, topic) == {0: len(values)}
