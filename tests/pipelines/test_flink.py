"""The job on a real Flink: Beam's Flink job server, an embedded Flink ([local]), parallelism 2.

``--runner=FlinkRunner --flink_master=[local] --flink_job_server_jar=<devtools.flink jar>``, the
Python SDK workers in the launcher (LOOPBACK) or in processes of their own (EXTERNAL, a worker
pool): everything after the read fused with it in the worker that reads, as on the local
runner.  Checked like the local e2e: every row once, upserts last-wins, offsets committed to the
end; per-key order in Flink's batch and streaming modes; and a streaming job with checkpointing,
cancelled (its job server and worker killed) while records arrive, restarted, then run to the
end.
"""

import os
import random
import signal
import subprocess
import sys

import orjson
import pytest

from tests.harness import REPO_ROOT, pipeline_argv, read_dead_letters, run_cli
from tests.pipelines.crash import CrashScenario, LiveFeed, wait_for

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
