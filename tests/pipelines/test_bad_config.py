"""Bad configuration fails at start: exit code 2, a one-line message naming the problem, and
nothing read from Kafka or loaded."""

import socket

import pytest

from tests.harness import pipeline_argv, run_cli

pytestmark = pytest.mark.e2e


def _closed_port():
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


@pytest.fixture
def topic_with_records(kafka_cluster):
  topic = kafka_cluster.unique_topic('config')
  kafka_cluster.produce(topic, [b'{"event_id": 1}'] * 8)
  return topic


_HARNESS_FLAGS = ('fe_nodes', 'topics', 'bootstrap_servers')


def _argv(kafka_cluster, server, topic, tmp_path, **flags):
  """The harness's flags, with ``flags`` added or (for the harness's own flags) replacing them."""
  overrides = {name: flags.pop(name) for name in _HARNESS_FLAGS if name in flags}
  argv = pipeline_argv(kafka_cluster, server, [topic], f'g-{topic}', str(tmp_path / 'dead'),
                       **flags)
  for name, value in overrides.items():
    argv = [a for a in argv if not a.startswith(f'--{name}=')] + [f'--{name}={value}']
  return argv


CASES = {
    'unknown table in the topic map': (
        lambda t, port: dict(topic_table_map=f'{t}=demo.no_such_table'),
        ['table(s) not found', 'demo.no_such_table']),
    'unmapped topic': (
        lambda t, port: dict(topic_table_map='some-other-topic=demo.events'),
        ['--topic_table_map', 'not mapped']),
    'negative batch rows': (
        lambda t, port: dict(table='demo.events', batch_rows=-5), ['--batch_rows', '-5']),
    'negative batch bytes': (
        lambda t, port: dict(table='demo.events', batch_bytes=-1), ['--batch_bytes', '-1']),
    'negative batch interval': (
        lambda t, port: dict(table='demo.events', batch_interval_secs=-1),
        ['--batch_interval_secs', '-1']),
    'negative max retries': (
        lambda t, port: dict(table='demo.events', max_retries=-1), ['--max_retries', '-1']),
    'zero flush workers': (
        lambda t, port: dict(table='demo.events', flush_workers=0), ['--flush_workers', '0']),
    'unreachable FE': (
        lambda t, port: dict(table='demo.events', fe_nodes=f'http://127.0.0.1:{port}'),
        ['no FE reachable', '127.0.0.1:']),
    'credentials in the FE URL': (
        lambda t, port: dict(table='demo.events', fe_nodes=f'http://root:hunter2@127.0.0.1:{port}'),
        ['--fe_nodes', '--user/--password']),
    'table without a database': (
        lambda t, port: dict(table='events'), ['--table', 'events']),
    'zero max record bytes': (
        lambda t, port: dict(table='demo.events', max_record_bytes=0), ['--max_record_bytes', '0']),
    'unknown topic': (
        lambda t, port: dict(table='demo.events', topics='no-such-topic-anywhere'),
        ['--topics', 'no-such-topic-anywhere']),
    'unreachable Kafka': (
        lambda t, port: dict(table='demo.events', bootstrap_servers=f'127.0.0.1:{port}'),
        ['--bootstrap_servers', '127.0.0.1:']),
    'negative load timeout': (
        lambda t, port: dict(table='demo.events', load_timeout_secs=-1),
        ['--load_timeout_secs', '-1']),
    'negative pool size': (
        lambda t, port: dict(table='demo.events', pool_maxsize=-1), ['--pool_maxsize', '-1']),
    'misspelled flag': (
        lambda t, port: dict(table='demo.events', batch_rowz=50000),
        ['unknown flag --batch_rowz', 'did you mean --batch_rows?']),
    'not a number': (
        lambda t, port: dict(table='demo.events', batch_rows='lots'),
        ['--batch_rows', "invalid int value: 'lots'"]),
    'a Flink option on the local runner': (
        lambda t, port: dict(table='demo.events', checkpointing_interval=2000),
        ['--checkpointing_interval', 'Flink runner']),
    'a schema change topic that does not exist': (
        lambda t, port: dict(cdc_format='debezium', ddl_topic='no_such_dbz_prefix'),
        ['--ddl_topic=no_such_dbz_prefix', 'no such topic']),
    'an unknown schema change type': (
        lambda t, port: dict(cdc_format='debezium', ddl_topic='dbz',
                             schema_change_types='add_column,explode_table'),
        ['--schema_change_types', "'explode_table'", 'rename_column']),
    'schema change types without their topic': (
        lambda t, port: dict(cdc_format='debezium', schema_change_types='add_column'),
        ['--schema_change_types', '--ddl_topic']),
    'a schema change topic of plain records': (
        lambda t, port: dict(table='demo.events', ddl_topic=t),
        ['--ddl_topic', '--cdc_format=debezium']),
    'a schema change topic with routing of its own': (
        lambda t, port: dict(cdc_format='debezium', ddl_topic='dbz',
                             topic_table_map=f'{t}=demo.events'),
        ['--ddl_topic', '--topic_table_map', '--table_template']),
    'the schema change topic among the row topics': (
        lambda t, port: dict(cdc_format='debezium', ddl_topic=t), ['--ddl_topic', '--topics']),
    'an unknown schema evolution policy': (
        lambda t, port: dict(cdc_format='debezium', schema_evolution='everything'),
        ['--schema_evolution', 'everything']),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_configuration_fails_at_start_with_a_clear_message_and_exit_code_2(
    kafka_cluster, stream_load_server, topic_with_records, tmp_path, case):
  make_flags, expected_words = CASES[case]
  port = _closed_port()
  argv = _argv(kafka_cluster, stream_load_server, topic_with_records, tmp_path,
               **make_flags(topic_with_records, port))
  result = run_cli(argv, timeout_secs=120)
  assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
  error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(error_lines) == 1, result.stderr[-3000:]
  for word in expected_words:
    assert word in error_lines[0], error_lines[0]
  assert 'Traceback' not in result.stderr and 'usage:' not in result.stderr
  # Failed before reading or loading anything.
  assert kafka_cluster.committed(f'g-{topic_with_records}', topic_with_records) == {}
  assert stream_load_server.loads == []
  assert not any(r['path'].endswith('_stream_load') for r in stream_load_server.request_log)


def test_a_start_that_fails_on_a_flag_prints_the_error_line_and_nothing_else(tmp_path):
  """No warning a user cannot act on (Beam's apitools notice, type-hint warnings) before it."""
  result = run_cli(['--bootstrap_servers=127.0.0.1:1', '--topics=t', '--group_id=g',
                    '--fe_nodes=http://127.0.0.1:1', '--table=demo.events', '--batch_rowz=5'],
                   timeout_secs=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'error: unknown flag --batch_rowz (did you mean --batch_rows?) (--help lists the flags)']
