"""Operating a long-running job: /healthz, /readyz, stall detection through an outage.

A streaming job (the CLI) with ``--metrics_port`` and a short ``--stall_timeout_secs``; the
local Stream Load server's BE stops answering mid-run, then comes back.  Everything observed
is the job's own: its endpoints, its log, its table.
"""

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import pipeline_argv, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import assert_events_exactly_once, event_bytes
from tests.pipelines.helpers import free_port

pytestmark = pytest.mark.reliability


def _get(port, path):
  try:
    with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=5) as response:
      return response.status, response.read().decode()
  except urllib.error.HTTPError as error:
    return error.code, error.read().decode()
  except OSError:
    return None, ''


def _gauge(port, name, **labels):
  status, text = _get(port, '/metrics')
  if status != 200:
    return None
  for family in text_string_to_metric_families(text):
    for sample in family.samples:
      if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
        return sample.value
  return None


def _log_lines(path, fragment):
  with open(path, encoding='utf-8', errors='replace') as handle:
    return [line for line in handle if fragment in line]


def test_a_be_outage_sets_the_stall_gauge_and_one_error_then_clears_losing_nothing(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('stall')
  kafka_cluster.produce(topic, event_bytes(range(100)))
  port = free_port()
  argv = [a for a in pipeline_argv(kafka_cluster, server, [topic], f'g-{topic}',
                                   str(tmp_path / 'dead'), table='demo.events', metrics_port=port,
                                   batch_interval_secs=1, stall_timeout_secs=3, max_retries=1)
          if a != '--stop_at_end']
  log = str(tmp_path / 'job.log')
  proc = start_cli(argv, log_path=log)
  try:
    wait_for(lambda: server.query('SELECT count(*) FROM demo.events') == [(100,)],
             'the first rows loaded', proc=proc)
    wait_for(lambda: _get(port, '/readyz')[0] == 200, 'ready', proc=proc)
    assert _get(port, '/healthz')[0] == 200
    wait_for(lambda: _gauge(port, 'doris_table_stalled', table='demo.events') == 0,
             'the stall gauge published', proc=proc)

    server.inject_fault('be_down', node=0)
    kafka_cluster.produce(topic, event_bytes(range(100, 300)))
    wait_for(lambda: _gauge(port, 'doris_table_stalled', table='demo.events') == 1,
             'the stall gauge set', timeout_secs=60, proc=proc)
    errors = _log_lines(log, 'table demo.events is stalled')
    assert len(errors) == 1 and 'ERROR' in errors[0] and 'rows pending' in errors[0]
    # Waiting through an outage is alive, not hung: healthy; the loads keep being retried.
    status, body = _get(port, '/healthz')
    assert status == 200 and json.loads(body)['stalled_tables'] == ['demo.events']
    failures = _gauge(port, 'doris_load_failures_total', table='demo.events', reason='connection')
    assert failures and failures > 0

    server.clear_faults()
    wait_for(lambda: _gauge(port, 'doris_table_stalled', table='demo.events') == 0,
             'the stall cleared', timeout_secs=60, proc=proc)
    assert len(_log_lines(log, 'table demo.events is stalled')) == 1
    assert _log_lines(log, 'table demo.events loads again')
    wait_for(lambda: server.query('SELECT count(*) FROM demo.events') == [(300,)],
             'the rows held by the outage loaded', proc=proc)
    assert _gauge(port, 'doris_last_successful_load_timestamp_seconds', table='demo.events') > 0
  finally:
    if proc.poll() is None:
      proc.terminate()
      proc.wait(timeout=60)
  assert_events_exactly_once(server, list(range(300)))


def test_readyz_is_not_ready_while_the_fe_is_down_or_the_job_drains(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('ready')
  kafka_cluster.produce(topic, event_bytes(range(10)))
  port = free_port()
  argv = [a for a in pipeline_argv(kafka_cluster, server, [topic], f'g-{topic}',
                                   str(tmp_path / 'dead'), table='demo.events', metrics_port=port,
                                   batch_interval_secs=1) if a != '--stop_at_end']
  proc = start_cli(argv, log_path=str(tmp_path / 'job.log'))
  try:
    wait_for(lambda: _get(port, '/readyz')[0] == 200, 'ready', proc=proc)
    server.inject_fault('fe_down', node=0)
    wait_for(lambda: _get(port, '/readyz')[0] == 503, 'not ready with the FE down', proc=proc)
    assert 'FE' in json.loads(_get(port, '/readyz')[1])['status']
    assert _get(port, '/healthz')[0] == 200  # only waiting: alive
    server.clear_faults()
    wait_for(lambda: _get(port, '/readyz')[0] == 200, 'ready again', proc=proc)
  finally:
    if proc.poll() is None:
      proc.terminate()
      proc.wait(timeout=60)
  assert proc.returncode == 0
