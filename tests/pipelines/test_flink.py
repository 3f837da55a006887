"""The job on a real Flink: Beam's Flink job server, an embedded Flink ([local]), parallelism 2.

``--runner=FlinkRunner --flink_master=[local] --flink_job_server_jar=<devtools.flink jar>``, the
Python SDK workers in the launcher (LOOPBACK) or in processes of their own (EXTERNAL, a worker
pool): everything after the read fused with it in the worker that reads, as on the local
runner.  Checked like the local e2e: every row once, upserts last-wins, offsets committed to the
end; per-key order in Flink's batch and streaming modes; and a streaming job with checkpointing,
cancelled (its job server and worker killed) while records arrive, restarted, then run to the
end.
"""

import http.client
import os
import random
import signal
import subprocess
import sys

import orjson
import pytest

from tests.harness import REPO_ROOT, pipeline_argv, read_dead_letters, run_cli
from tests.pipelines.crash import CrashScenario, LiveFeed, wait_for
from tests.pipelines.helpers import assert_events_exactly_once, event_bytes

pytestmark = pytest.mark.integration


# Per-key order on Flink: how many runs of each mode CI makes (``ORDER_RUNS``; 20 by hand).
ORDER_RUNS = int(os.environ.get('ORDER_RUNS', '3'))


def _flink(jar, streaming=False, pool=None):
  flags = ['--runner=FlinkRunner', '--flink_master=[local]', f'--flink_job_server_jar={jar}',
           '--parallelism=2']
  flags += (['--environment_type=EXTERNAL', f'--environment_config={pool.address}'] if pool
            else ['--environment_type=LOOPBACK'])
  if streaming:
    # The launcher adds what the loader needs on Flink (finishing bundles before checkpoints...).
    flags += ['--streaming', '--checkpointing_interval=2000']
  return flags


ORDER_SCHEMA = """
CREATE DATABASE demo;
CREATE TABLE demo.kv (k BIGINT, v BIGINT) UNIQUE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1
  PROPERTIES ("enable_unique_key_merge_on_write" = "true");
"""


def _ordered_changes(seed: int, n_records=9000, n_keys=4000):
  """Upserts over many keys reused across batches, every 50th record a delete; the final state."""
  rng = random.Random(seed)
  values, keys, final = [], [], {}
  for i in range(n_records):
    k = rng.randrange(n_keys)
    if i % 50 == 49:
      values.append(orjson.dumps({'k': k, '__DORIS_DELETE_SIGN__': 1}))
      final.pop(k, None)
    else:
      values.append(orjson.dumps({'k': k, 'v': i}))
      final[k] = i
    keys.append(str(k).encode())  # one partition per key, as producers do
  return values, keys, final


@pytest.mark.parametrize('mode', ['batch', 'streaming'])
def test_per_key_order_holds_in_flinks_batch_and_streaming_modes(
    kafka_cluster, make_stream_load_server, tmp_path, flink_job_server_jar, sdk_worker_pool, mode):
  """Many keys reused across batches, deletes cutting batches often, two workers: each key ends
  with its newest version, in every run (Flink's batch mode sorts a shuffle's elements by key
  without keeping their order; the loader shuffles no rows)."""
  for run in range(ORDER_RUNS):
    server = make_stream_load_server(schema_sql=ORDER_SCHEMA)
    topic = kafka_cluster.unique_topic(f'order-{mode}-{run}')
    values, keys, final = _ordered_changes(seed=run)
    kafka_cluster.produce(topic, values, keys=keys)
    argv = pipeline_argv(kafka_cluster, server, [topic], f'g-{topic}', str(tmp_path / f'd{run}'),
                         table='demo.kv', batch_rows=1500, batch_interval_secs=2)
    argv += _flink(flink_job_server_jar, pool=sdk_worker_pool)
    if mode == 'streaming':
      argv.append('--streaming')  # a bounded read in Flink's streaming execution mode
    result = run_cli(argv, timeout_secs=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = dict(server.query('SELECT k, v FROM demo.kv'))
    stale = {k: (rows.get(k), v) for k, v in final.items() if rows.get(k) != v}
    back = sorted(k for k in rows if k not in final)
    assert not stale and not back, (f'{mode} run {run}: {len(stale)} keys hold another value '
                                    f'(first: {list(stale.items())[:5]}), {len(back)} deleted '
                                    f'keys are back ({back[:5]})')
    assert kafka_cluster.committed(f'g-{topic}', topic) == kafka_cluster.end_offsets(topic)


def _debezium(op, before, after):
  return orjson.dumps({'op': op, 'before': before, 'after': after,
                       'source': {'db': 'shop', 'table': 'users'}})


def test_a_bounded_run_on_flink_loads_every_row_once_and_commits(
    kafka_cluster, make_stream_load_server, tmp_path, flink_job_server_jar):
  server = make_stream_load_server()
  events, users = kafka_cluster.unique_topic('flink-e'), kafka_cluster.unique_topic('flink-u')
  kafka_cluster.produce(events, [orjson.dumps({'event_id': i, 'event_type': 'v', 'payload': 'p'})
                                 for i in range(3000)] + [b'{broken'])
  changes = [_debezium('c', None, {'id': i, 'name': f'u{i}', 'age': 1}) for i in range(100)]
  changes += [_debezium('u', {'id': i}, {'id': i, 'name': f'v{i}', 'age': 2})
              for i in range(0, 100, 2)]
  changes += [_debezium('d', {'id': i}, None) for i in range(0, 100, 10)]
  keys = [str((orjson.loads(c)['after'] or orjson.loads(c)['before'])['id']).encode()
          for c in changes]
  kafka_cluster.produce(users, changes, keys=keys)
  group = f'g-{events}'
  dead = str(tmp_path / 'dead')
  argv = pipeline_argv(kafka_cluster, server, [events, users], group, dead,
                       topic_table_map=f'{events}=demo.events,{users}=demo.users',
                       cdc_format='auto', batch_rows=700) + _flink(flink_job_server_jar)
  result = run_cli(argv, timeout_secs=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert server.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [
      (3000, 3000)]
  expected = {i: f'u{i}' for i in range(100)}
  expected.update({i: f'v{i}' for i in range(0, 100, 2)})
  for i in range(0, 100, 10):
    expected.pop(i)
  assert server.query('SELECT id, name FROM demo.users ORDER BY id') == sorted(expected.items())
  assert [letter['reason'].split(':')[0] for letter in read_dead_letters(dead)] == ['invalid_json']
  assert kafka_cluster.committed(group, events) == kafka_cluster.end_offsets(events)
  assert kafka_cluster.committed(group, users) == kafka_cluster.end_offsets(users)
  # The stateful batcher on Flink cut batches at the row limit.
  loads = [entry['loaded_rows'] for entry in server.loads if entry['table'] == 'events']
  assert max(loads) == 700


def _start_in_own_session(argv, log_path):
  """The CLI with its job server (a child JVM) in a process group of their own."""
  return subprocess.Popen([sys.executable, '-m', 'pipelines.kafka_to_doris', *argv],
                          cwd=REPO_ROOT, stdout=open(log_path, 'wb'), stderr=subprocess.STDOUT,
                          start_new_session=True)


def _cancel(proc):
  """Cancels the job as an operator's kill does: the CLI, its job server and Flink, at once."""
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait(timeout=60)


def test_a_streaming_job_with_checkpoints_cancelled_and_restarted_loads_every_row_once(
    kafka_cluster, make_stream_load_server, tmp_path, flink_job_server_jar):
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=400, n_users=100,
                           n_orders=50, batch_rows=100_000, batch_interval_secs=2,
                           validate_tables='false')
  with LiveFeed(scenario, events_per_round=100, users_per_round=20, pause_secs=0.3):
    for run in range(2):
      proc = _start_in_own_session(scenario.argv(streaming=True) + _flink(flink_job_server_jar,
                                                                           streaming=True),
                                   str(tmp_path / f'flink-{run}.log'))
      try:
        loads = len(server.loads)
        # Flink's processing-time timers flush the batches every 2 s while records arrive.
        wait_for(lambda: len(server.loads) >= loads + 6, f'run {run} loading on Flink',
                 timeout_secs=180, proc=proc)
      finally:
        _cancel(proc)
      scenario.kills.append(f'flink cancel {run}')
  with open(tmp_path / 'flink-0.log', encoding='utf-8', errors='replace') as log:
    flushes = [line for line in log if 'flush triggered by' in line]
  assert flushes and all('flush triggered by timeout' in line for line in flushes)
  result = run_cli(scenario.argv() + _flink(flink_job_server_jar), timeout_secs=300)
  assert result.returncode == 0, result.stderr[-3000:]
  checked = scenario.check()  # exactly once, newest versions, offsets at the end
  assert checked['duplicated_events'] == 0


def _rows_below_committed_only(scenario, committed):
  """The events table holds, once each, exactly the events below the committed offsets."""
  partitions = scenario.kafka.num_partitions
  expected = sorted(i for n, i in enumerate(scenario.event_ids)
                    if n // partitions < committed.get(n % partitions, 0))
  counts = dict(scenario.server.query(
      'SELECT event_id, count(*) FROM demo.events GROUP BY event_id'))
  assert sorted(counts) == expected, (
      f'{len(set(counts) - set(expected))} events loaded past the committed offsets, '
      f'{len(set(expected) - set(counts))} committed but not loaded')
  assert all(n == 1 for n in counts.values())


@pytest.mark.parametrize('stop', ['sigterm-loopback', 'sigterm-external', 'drain-flag-external'])
def test_a_streaming_flink_job_drains_while_records_arrive(
    kafka_cluster, make_stream_load_server, tmp_path, flink_job_server_jar, sdk_worker_pool, stop):
  """SIGTERM to the launcher (or ``--drain`` from elsewhere) while records arrive: the reads stop,
  pending rows load, offsets commit, exit 0 -- with the SDK workers in the launcher or in
  processes of their own.  Nothing read is left uncommitted; a later run loads the rest once."""
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=400, n_users=100,
                           n_orders=50, batch_rows=100_000, batch_interval_secs=2,
                           validate_tables='false')
  pool = sdk_worker_pool if stop.endswith('external') else None
  log = str(tmp_path / 'flink.log')
  with LiveFeed(scenario, events_per_round=100, users_per_round=20, pause_secs=0.3):
    proc = _start_in_own_session(scenario.argv(streaming=True) +
                                 _flink(flink_job_server_jar, streaming=True, pool=pool), log)
    try:
      loads = len(server.loads)
      wait_for(lambda: len(server.loads) >= loads + 4, 'the job loading on Flink',
               timeout_secs=180, proc=proc)
      if stop.startswith('sigterm'):
        proc.send_signal(signal.SIGTERM)  # the launcher only, as Kubernetes or systemd would
      else:
        drain = run_cli([f'--bootstrap_servers={kafka_cluster.bootstrap_servers}',
                         f'--group_id={scenario.group}', '--drain'], timeout_secs=60)
        assert drain.returncode == 0 and 'drain requested' in drain.stdout, drain.stderr[-2000:]
    except BaseException:
      _cancel(proc)
      raise
  try:
    assert proc.wait(timeout=180) == 0, open(log, errors='replace').read()[-3000:]
  finally:
    if proc.poll() is None:
      _cancel(proc)
  with open(log, encoding='utf-8', errors='replace') as handle:
    text = handle.read()
  assert 'summary: ' in text
  events = scenario.kafka.committed(scenario.group, scenario.events_topic)
  _rows_below_committed_only(scenario, events)
  result = run_cli(scenario.argv(), timeout_secs=300)  # the rest, on the local runner
  assert result.returncode == 0, result.stderr[-3000:]
  scenario.check()  # every row once, newest versions, committed to the end (lag 0)


def _scrape_all(first_port, count=12):
  """Every worker's /metrics among ``count`` ports from ``first_port``: port -> samples."""
  from prometheus_client.parser import text_string_to_metric_families
  import urllib.request
  found = {}
  for port in range(first_port, first_port + count):
    try:
      with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=3) as response:
        text = response.read().decode()
    except (OSError, http.client.HTTPException):
      continue  # nothing there, or another server (the job server's gRPC ports)
    if '# TYPE' not in text:
      continue
    found[port] = [sample for family in text_string_to_metric_families(text)
                   for sample in family.samples]
  return found


def _series(scraped, name, **labels):
  """(port, labels, value) of every sample named ``name`` whose labels include ``labels``."""
  return [(port, sample.labels, sample.value) for port, samples in scraped.items()
          for sample in samples
          if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())]


def test_flink_workers_serve_metrics_a_stall_and_read_partitions_found_while_running(
    kafka_cluster, make_stream_load_server, tmp_path, flink_job_server_jar, sdk_worker_pool):
  """Two SDK worker processes each serve /metrics (the next port when one is taken): rows
  loaded, a stalled table while the BE is down (cleared after), and topics created while the
  job runs, found by --topic_pattern, read in both processes."""
  from tests.pipelines.helpers import free_port
  server = make_stream_load_server()
  prefix = kafka_cluster.unique_topic('spread')
  kafka_cluster.produce(f'{prefix}-0', event_bytes(range(100)))
  port = free_port()
  argv = [a for a in pipeline_argv(
      kafka_cluster, server, [], f'g-{prefix}', str(tmp_path / 'dead'), table='demo.events',
      metrics_port=port, batch_interval_secs=1, stall_timeout_secs=3, max_retries=1,
      topic_pattern=rf'{prefix}-\d+', topic_discovery_interval_secs=1)
      if a not in ('--stop_at_end',) and not a.startswith('--topics=')]
  log = str(tmp_path / 'flink.log')
  proc = _start_in_own_session(argv + _flink(flink_job_server_jar, streaming=True,
                                             pool=sdk_worker_pool), log)
  try:
    count = lambda: server.query('SELECT count(*) FROM demo.events')[0][0]  # noqa: E731
    wait_for(lambda: count() == 100, 'the first topic loaded', timeout_secs=180, proc=proc)
    # Six topics (24 partitions) created while the job runs.
    ids = iter(range(100, 100_000))
    for topic in range(1, 7):
      kafka_cluster.produce(f'{prefix}-{topic}', event_bytes([next(ids) for _ in range(40)]))
    wait_for(lambda: count() == 340, 'the topics created while running loaded', proc=proc)
    scraped = _scrape_all(port)
    loaded = _series(scraped, 'doris_rows_loaded_total', table='demo.events')
    assert sum(value for _, _, value in loaded) == 340
    readers = {p for p, labels, _ in _series(scraped, 'kafka_consumer_lag_records')
               if labels['topic'] != f'{prefix}-0'}
    assert len(readers) >= 2, f'the partitions found while running were read by {readers}'

    server.inject_fault('be_down', node=0)
    kafka_cluster.produce(f'{prefix}-0', event_bytes([next(ids) for _ in range(20)]))
    wait_for(lambda: any(v == 1 for _, _, v in _series(_scrape_all(port), 'doris_table_stalled',
                                                        table='demo.events')),
             'a worker reporting demo.events stalled', timeout_secs=90, proc=proc)
    server.clear_faults()
    wait_for(lambda: count() == 360, 'the rows held by the outage loaded', proc=proc)
    wait_for(lambda: all(v == 0 for _, _, v in _series(_scrape_all(port), 'doris_table_stalled',
                                                        table='demo.events')),
             'the stall cleared', timeout_secs=60, proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == 0, open(log, errors='replace').read()[-3000:]
  finally:
    if proc.poll() is None:
      _cancel(proc)
  assert_events_exactly_once(server, list(range(100)) + list(range(100, 360)))


def test_a_killed_flink_worker_process_restarts_and_every_row_loads_once(
    kafka_cluster, make_stream_load_server, tmp_path, flink_job_server_jar, sdk_worker_pool):
  """SIGKILL of the busiest SDK worker process while records arrive: Flink restarts the tasks, a
  fresh worker starts at the committed offsets (its checkpoint may be older) and recovers the
  journal, so every row loads once; a later SIGTERM still drains the job."""
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('kill-worker')
  group = f'g-{topic}'
  argv = [a for a in pipeline_argv(kafka_cluster, server, [topic], group, str(tmp_path / 'dead'),
                                   table='demo.events', batch_interval_secs=1)
          if a != '--stop_at_end']
  log = str(tmp_path / 'flink.log')
  produced = 0

  def produce(n):
    nonlocal produced
    kafka_cluster.produce(topic, event_bytes(range(produced, produced + n)))
    produced += n

  produce(400)
  proc = _start_in_own_session(argv + _flink(flink_job_server_jar, streaming=True,
                                             pool=sdk_worker_pool), log)
  try:
    count = lambda: server.query('SELECT count(*) FROM demo.events')[0][0]  # noqa: E731
    wait_for(lambda: count() >= 400, 'the first rows loaded', timeout_secs=180, proc=proc)
    busiest = max(sdk_worker_pool.workers(), key=_cpu_ticks)
    produce(400)
    os.kill(busiest, signal.SIGKILL)
    produce(400)
    wait_for(lambda: count() >= 1200, 'the rows after the kill loaded', timeout_secs=180,
             proc=proc)
    produce(200)
    wait_for(lambda: count() >= 1400, 'more rows loaded', proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == 0, open(log, errors='replace').read()[-3000:]
  finally:
    if proc.poll() is None:
      _cancel(proc)
  with open(log, encoding='utf-8', errors='replace') as handle:
    assert 'RESTARTING' in handle.read()  # Flink did restart the job's tasks
  assert_events_exactly_once(server, list(range(produced)))
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def _cpu_ticks(pid):
  with open(f'/proc/{pid}/stat', encoding='ascii') as handle:
    fields = handle.read().rsplit(')', 1)[1].split()
  return int(fields[11]) + int(fields[12])
