"""The job on Beam's Prism runner: bounded exact, streaming within its limits, SIGTERM drains.

``--runner=PrismRunner --prism_location=<devtools.prism binary> --environment_type=LOOPBACK``:
Beam's portable reference runner with the SDK worker in the launcher, everything after the read
fused with it as on every runner.
"""

import signal

import pytest

from tests.harness import pipeline_argv, run_cli
from tests.pipelines.crash import CrashScenario, LiveFeed, wait_for
from tests.pipelines.helpers import assert_events_exactly_once, event_bytes
from tests.pipelines.test_flink import (_cancel, _ordered_changes, _rows_below_committed_only,
                                        _start_in_own_session, ORDER_SCHEMA)

pytestmark = pytest.mark.integration


def _prism(binary):
  return ['--runner=PrismRunner', f'--prism_location={binary}', '--environment_type=LOOPBACK']


def test_a_bounded_run_on_prism_loads_every_row_once_in_key_order(
    kafka_cluster, make_stream_load_server, tmp_path, prism_binary):
  server = make_stream_load_server(schema_sql=ORDER_SCHEMA + """
CREATE TABLE demo.events (event_id BIGINT, user_id BIGINT, event_type VARCHAR(20),
  amount DECIMAL(10, 2), payload STRING) DUPLICATE KEY(event_id) DISTRIBUTED BY HASH(event_id)
  BUCKETS 1;
""")
  events, changes = kafka_cluster.unique_topic('prism-e'), kafka_cluster.unique_topic('prism-kv')
  kafka_cluster.produce(events, event_bytes(range(3000)))
  values, keys, final = _ordered_changes(seed=7)
  kafka_cluster.produce(changes, values, keys=keys)
  argv = pipeline_argv(kafka_cluster, server, [events, changes], f'g-{events}',
                       str(tmp_path / 'dead'), topic_table_map=f'{events}=demo.events,'
                       f'{changes}=demo.kv', batch_rows=1500, batch_interval_secs=2)
  result = run_cli(argv + _prism(prism_binary), timeout_secs=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_events_exactly_once(server, list(range(3000)))
  assert dict(server.query('SELECT k, v FROM demo.kv')) == final
  for topic in (events, changes):
    assert kafka_cluster.committed(f'g-{events}', topic) == kafka_cluster.end_offsets(topic)


def test_a_streaming_prism_job_flushes_on_its_limits_and_drains_on_sigterm(
    kafka_cluster, make_stream_load_server, tmp_path, prism_binary):
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=400, n_users=100,
                           n_orders=50, batch_rows=100_000, batch_interval_secs=2,
                           validate_tables='false')
  log = str(tmp_path / 'prism.log')
  with LiveFeed(scenario, events_per_round=100, users_per_round=20, pause_secs=0.3):
    proc = _start_in_own_session(scenario.argv(streaming=True) + _prism(prism_binary), log)
    try:
      loads = len(server.loads)
      wait_for(lambda: len(server.loads) >= loads + 6, 'the job loading on Prism',
               timeout_secs=120, proc=proc)
      proc.send_signal(signal.SIGTERM)
    except BaseException:
      _cancel(proc)
      raise
  try:
    assert proc.wait(timeout=120) == 0, open(log, errors='replace').read()[-3000:]
  finally:
    if proc.poll() is None:
      _cancel(proc)
  with open(log, encoding='utf-8', errors='replace') as handle:
    flushes = [line for line in handle if 'flush triggered by' in line]
  # Limits honoured while streaming: the 2 s interval cut every batch until the drain.
  assert flushes and all(' by timeout' in line or ' by drain' in line for line in flushes)
  assert sum(' by timeout' in line for line in flushes) >= 6
  _rows_below_committed_only(scenario, kafka_cluster.committed(scenario.group,
                                                               scenario.events_topic))
  result = run_cli(scenario.argv(), timeout_secs=300)
  assert result.returncode == 0, result.stderr[-3000:]
  scenario.check()
