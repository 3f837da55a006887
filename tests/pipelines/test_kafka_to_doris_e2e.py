"""End to end: mock Kafka -> the pipeline (DirectRunner) -> the local Stream Load server."""

import orjson
import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, run_in_process

pytestmark = pytest.mark.e2e


def _event(i, size=200):
  return orjson.dumps({'event_id': i, 'user_id': i % 17, 'event_type': 'view',
                       'amount': 1.5, 'payload': 'p' * size})


def _debezium(op, before, after):
  return orjson.dumps({'op': op, 'before': before, 'after': after,
                       'source': {'db': 'shop', 'table': 'users'}})


def test_several_tables_load_exactly_once_with_deletes_dead_letters_and_commits(
    kafka_cluster, stream_load_server, tmp_path):
  events, users = kafka_cluster.unique_topic('events'), kafka_cluster.unique_topic('users')
  n_events = 5000
  kafka_cluster.produce(events, [_event(i) for i in range(n_events)] +
                        [b'{not json', b'\xff\xfe', b'"a string"'])
  user_records = [_debezium('c', None, {'id': i, 'name': f'u{i}', 'age': 30}) for i in range(100)]
  user_records += [_debezium('u', {'id': i}, {'id': i, 'name': f'v{i}', 'age': 31})
                   for i in range(0, 100, 2)]
  user_records += [_debezium('d', {'id': i}, None) for i in range(0, 100, 10)]
  keys = [str(orjson.loads(r)['after' if orjson.loads(r)['after'] else 'before']['id']).encode()
          for r in user_records]
  kafka_cluster.produce(users, user_records, keys=keys)
  group = f'g-{events}'
  dead_dir = str(tmp_path / 'dead')
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [events, users], group, dead_dir,
      topic_table_map=f'{events}=demo.events,{users}=demo.users', cdc_format='auto',
      batch_rows=1000, batch_interval_secs=60))

  query = stream_load_server.query
  assert query('SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [(n_events, n_events)]
  assert query('SELECT count(*) FROM demo.users') == [(90,)]
  assert query('SELECT name FROM demo.users WHERE id = 2') == [('v2',)]
  assert query('SELECT name FROM demo.users WHERE id = 3') == [('u3',)]
  assert query('SELECT count(*) FROM demo.users WHERE id = 10') == [(0,)]
  letters = read_dead_letters(dead_dir)
  assert sorted(letter['reason'].split(':')[0] for letter in letters) == [
      'invalid_json', 'invalid_utf8', 'not_object']
  assert all(letter['topic'] == events and letter['offset'] is not None for letter in letters)
  assert kafka_cluster.committed(group, events) == kafka_cluster.end_offsets(events)
  assert kafka_cluster.committed(group, users) == kafka_cluster.end_offsets(users)
  assert summary.totals['rows_loaded'] == n_events + len(user_records)


def test_a_restart_reads_only_what_was_not_committed(kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('restart')
  group = f'g-{topic}'
  kafka_cluster.produce(topic, [_event(i, 50) for i in range(400)])
  argv = pipeline_argv(kafka_cluster, stream_load_server, [topic], group, str(tmp_path / 'd'),
                       table='demo.events', batch_rows=150)
  first = run_in_process(argv)
  assert first.totals['rows_loaded'] == 400
  kafka_cluster.produce(topic, [_event(i, 50) for i in range(400, 500)])
  second = run_in_process(argv)
  assert second.totals.get('rows_loaded', 0) == 100
  assert stream_load_server.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [
      (500, 500)]
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_the_cli_runs_with_the_documented_flags(kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('cli')
  kafka_cluster.produce(topic, [_event(i, 30) for i in range(300)])
  argv = pipeline_argv(kafka_cluster, stream_load_server, [topic], f'g-{topic}',
                       str(tmp_path / 'dead'), table='demo.events', batch_rows=100,
                       batch_bytes=1048576, batch_interval_secs=5, flush_workers=2,
                       label_prefix='cli_test', compression='gzip', target='doris',
                       format='json')
  completed = run_cli(argv)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert 'summary: 300 rows loaded' in completed.stdout
  assert stream_load_server.query('SELECT count(*) FROM demo.events') == [(300,)]
  assert all(load['label'].startswith('cli_test-') for load in stream_load_server.loads)


@pytest.mark.parametrize('flags, message', [
    ({'table': 'demo.nosuch'}, 'not found'),
    ({'table': 'demo.events', 'batch_rows': -1}, '--batch_rows'),
    ({'table': 'demo.events', 'topic_table_map': 'x=demo.events'}, 'only one of'),
])
def test_bad_configuration_fails_at_start_with_a_clear_message(
    kafka_cluster, stream_load_server, tmp_path, flags, message):
  argv = pipeline_argv(kafka_cluster, stream_load_server, ['whatever'], 'g-bad',
                       str(tmp_path / 'dead'), **flags)
  completed = run_cli(argv, timeout_secs=60)
  assert completed.returncode == 2
  assert message in completed.stderr
  assert 'Traceback' not in completed.stderr


def _prometheus_samples():
  """Every sample of this process's Prometheus registry: (name, labels) -> value."""
  from prometheus_client import REGISTRY
  return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
          for family in REGISTRY.collect() for sample in family.samples}


def test_prometheus_metrics_are_served(kafka_cluster, stream_load_server, tmp_path):
  import socket
  import requests
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  topic = kafka_cluster.unique_topic('metrics')
  kafka_cluster.produce(topic, [_event(i, 20) for i in range(120)] + [b'{bad'])
  before = _prometheus_samples()  # earlier tests of this process counted too: compare deltas
  run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [topic], f'g-{topic}',
                               str(tmp_path / 'dead'), table='demo.events', metrics_port=port))
  import prometheus_client  # the endpoint stops with the run: read what it served
  text = prometheus_client.generate_latest().decode()
  from prometheus_client.parser import text_string_to_metric_families
  samples = {}
  for family in text_string_to_metric_families(text):
    for sample in family.samples:
      key = (sample.name, tuple(sorted(sample.labels.items())))
      samples[key] = sample.value

  def delta(name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return samples.get(key, 0) - before.get(key, 0)

  assert delta('kafka_records_consumed_total', topic=topic) == 121
  lags = [value for (name, labels), value in samples.items()
          if name == 'kafka_consumer_lag_records' and ('topic', topic) in labels]
  assert lags and all(lag == 0 for lag in lags)  # read to the end
  assert delta('doris_rows_loaded_total', table='demo.events') == 120
  assert delta('doris_stream_load_duration_seconds_count', table='demo.events') == 1
  assert delta('doris_batch_flush_duration_seconds_count', table='demo.events',
               reason='end_of_input') == 1
  assert 'secret' not in text


def test_password_file_keeps_the_password_out_of_the_pipeline(kafka_cluster, stream_load_server,
                                                              tmp_path):
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions
  from pipelines.assembly import build_pipeline
  from pipelines.config import PipelineConfig
  topic = kafka_cluster.unique_topic('pwfile')
  kafka_cluster.produce(topic, [_event(i, 10) for i in range(50)])
  secret_file = tmp_path / 'password'
  secret_file.write_text('secret\n')
  argv = [a for a in pipeline_argv(kafka_cluster, stream_load_server, [topic], f'g-{topic}',
                                   str(tmp_path / 'dead'), table='demo.events')
          if not a.startswith('--password=')] + [f'--password_file={secret_file}']
  summary = run_in_process(argv)
  assert summary.totals['rows_loaded'] == 50
  options = PipelineOptions(argv)
  p = beam.Pipeline(options=options)
  build_pipeline(p, PipelineConfig.from_options(options))
  from transforms.stream_load.sink import _WriteBatchesFn
  sinks = []

  class _FindSink(beam.pipeline.PipelineVisitor):
    def visit_transform(self, node):
      fn = getattr(node.transform, 'fn', None)
      if isinstance(fn, _WriteBatchesFn):
        sinks.append(fn)

  p.visit(_FindSink())
  assert len(sinks) == 1
  pickled_config = sinks[0]._settings.config
  assert pickled_config.password is None and pickled_config.password_file == str(secret_file)
  bad = argv[:-1] + [f'--password_file={tmp_path / "missing"}']
  completed = run_cli(bad, timeout_secs=60)
  assert completed.returncode == 2 and '--password_file' in completed.stderr
