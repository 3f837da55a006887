"""Crash and restart: SIGKILL the CLI at chosen and at random points of a bounded run, restart
from the committed offsets, and check that no row is lost, that unique-key tables hold each key
once (newest version), and that the duplicate-key table has duplicates only for rows that were
loaded but not committed at a crash (see ``crash.CrashScenario.check``).

Faults of the local Stream Load server hold the run at the point to kill: a slow FE holds the
first load (rows read and batched, nothing loaded), a slow BE holds a load open (mid-load), a
table whose loads keep failing holds every offset commit while the other tables load (after
load, before commit), and a held FE stops a two-phase load between prepare and commit.
Streaming runs (no --stop_at_end) are killed at random points too (heavy).
"""

import random
import time

import orjson
import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, start_cli
from tests.pipelines.crash import (WAIT_SECS, CrashScenario, LiveFeed, be_load_requests,
                                   fe_load_requests, loaded_rows, server_is_quiet, wait_for)
from tests.pipelines.helpers import (assert_users_hold, event, event_bytes, event_counts, user,
                                     user_bytes)
from transforms.delivery import DEFAULT_JOURNAL_TOPIC, JournalConfig, read_journal

pytestmark = pytest.mark.reliability

HOLD_SECS = 3.0  # how long a held request waits on the server; the kill comes before it ends


def _schema_checked(server):
  return any(r['path'].endswith('/_schema') for r in server.request_log)


def test_kill_after_the_write_ahead_before_the_load_then_restart_loses_nothing(
    kafka_cluster, make_stream_load_server, tmp_path):
  """Crash point: the batch is written to the load journal and its load waits at the FE (the run
  reads, parses and batches until then).  Recovery finds the label UNKNOWN: nothing loaded, the
  entry is forgotten and the rows load once."""
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path, max_chunk_records=20)
  server.inject_fault('slow', times=None, node='fe0', delay_secs=HOLD_SECS)
  scenario.kill_when(lambda: fe_load_requests(server), 'reading and batching',
                     validate_tables='false')
  server.clear_faults()
  assert server.loads == [] and not scenario.uncommitted_at_kill  # killed before any load
  journal = JournalConfig(kafka_cluster.consumer_config(scenario.group), DEFAULT_JOURNAL_TOPIC)
  assert [entry.loaded for entry in read_journal(journal)][:1] == [False]  # written ahead
  scenario.finish()
  result = scenario.check()
  assert result['duplicated_events'] == 0  # nothing had been loaded, so nothing is re-sent


def test_kill_mid_load_then_restart_loses_nothing(kafka_cluster, make_stream_load_server,
                                                  tmp_path):
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path)
  server.inject_fault('slow', times=1, table='demo.events', delay_secs=HOLD_SECS)
  # The held load is open on the BE (its body sent): kill the client under it.
  scenario.kill_when(lambda: be_load_requests(server, 'demo.events'), 'mid-load')
  server.clear_faults()
  scenario.finish()
  scenario.check()


def _mixed_record(n):
  """Record ``n`` of a topic holding three tables (routed by its ``table`` field)."""
  if n % 3 == 1:  # (partitions are n % 4: every partition gets all three tables)
    return dict(user(n), table='demo.users')
  if n % 3 == 2:
    return {'table': 'demo.orders', 'order_id': n, 'user_id': n % 50, 'status': 's0',
            'total': '1.50', 'seq': 0}
  return dict(event(n), table='demo.events')


@pytest.mark.parametrize('delivery', ['exactly_once', 'at_least_once'])
def test_kill_after_loads_before_the_offset_commit_then_restart(
    kafka_cluster, make_stream_load_server, tmp_path, delivery):
  """One topic routes to three tables by a field, so each Kafka chunk holds rows of all three.
  demo.orders is failing on the server: events and users load completely, but no chunk is complete,
  so no offset can be committed. The kill lands there.  Exactly-once: the restart skips the loaded
  rows (the journal says which); at-least-once: it re-sends them, and only the unique-key tables
  absorb the copies.  (demo.orders is held by answering HTTP 503 to its loads.)"""
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('mixed')
  n_records = 2400
  records = [_mixed_record(n) for n in range(n_records)]
  kafka_cluster.produce(topic, [orjson.dumps(r) for r in records])
  event_ids = [r['event_id'] for r in records if r['table'] == 'demo.events']
  user_ids = [r['id'] for r in records if r['table'] == 'demo.users']
  order_ids = [r['order_id'] for r in records if r['table'] == 'demo.orders']
  group = f'g-{topic}'
  # Enough flush workers that the retrying orders batches never hold the others back.
  argv = pipeline_argv(kafka_cluster, server, [topic], group, str(tmp_path / 'dead'),
                       table_field='table', batch_rows=200, max_retries=12, flush_workers=32,
                       delivery_guarantee=delivery)
  server.inject_fault('http_503', times=None, table='demo.orders')
  proc = start_cli(argv, log_path=str(tmp_path / 'first.log'))
  try:
    wait_for(lambda: (loaded_rows(server, 'demo.events') >= len(event_ids) and
                      loaded_rows(server, 'demo.users') >= len(user_ids)),
             'events and users loaded', proc=proc)
  finally:
    proc.kill()
    proc.wait()
  killed_at = time.monotonic()
  server.clear_faults()
  wait_for(lambda: server_is_quiet(server, killed_at), 'the held loads to finish')
  # Loaded, and not committed: no offset passed the first (never loaded) order of its partition.
  first_order = {}
  for n, record in enumerate(records):
    if record['table'] == 'demo.orders':
      first_order.setdefault(n % 4, n // 4)
  committed = kafka_cluster.committed(group, topic)
  assert all(offset <= first_order[p] for p, offset in committed.items()), committed
  loads_before_restart = len(server.loads)

  result = run_cli(argv, timeout_secs=240)
  assert result.returncode == 0, result.stderr[-3000:]
  counts = event_counts(server)
  assert sorted(counts) == event_ids  # nothing lost
  assert server.query('SELECT count(*), count(DISTINCT id) FROM demo.users') == [
      (len(user_ids), len(user_ids))]
  assert_users_hold(server, {i: 0 for i in user_ids})
  assert server.query('SELECT order_id FROM demo.orders ORDER BY order_id') == [
      (i,) for i in order_ids]
  resent_users = any(e['table'] == 'users' for e in server.loads[loads_before_restart:])
  if delivery == 'exactly_once':
    assert max(counts.values()) == 1  # the duplicate-key table too
    assert not resent_users, 'loaded rows were sent again after the restart'
    skipped = int(result.stdout.split(' rows skipped as already loaded')[0].rsplit(' ', 1)[1])
    assert skipped == len(event_ids) + len(user_ids)
  else:
    assert max(counts.values()) <= 2  # re-sent at most once: the window at-least-once leaves
    assert resent_users  # ... absorbed by the unique key
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


@pytest.mark.parametrize('delivery, seed', [('exactly_once', 11), ('exactly_once', 12),
                                            ('at_least_once', 13)])
def test_a_live_job_killed_while_records_arrive_then_run_to_the_end(
    kafka_cluster, make_stream_load_server, tmp_path, delivery, seed):
  """The acceptance scenario: a streaming job (time-based flushes, records still arriving) is
  SIGKILLed three times at seeded random moments while it loads, restarted after each kill, then
  run with --stop_at_end.  Exactly-once: the duplicate-key table holds every event once; the
  unique-key tables hold the newest version of each key; offsets are committed to the end."""
  rng = random.Random(seed)
  server = make_stream_load_server(num_bes=2)
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=2000, n_users=200,
                           n_orders=100, batch_rows=300, batch_interval_secs=1,
                           delivery_guarantee=delivery)
  with LiveFeed(scenario) as feed:
    scenario.kill_live(3, rng)
    assert feed.rounds > 3, 'records kept arriving while the job ran'
  scenario.finish()
  result = scenario.check()
  assert len(scenario.kills) == 3
  print(delivery, 'kills', scenario.kills, result)
  if delivery == 'exactly_once':
    assert result['duplicated_events'] == 0


def test_kill_at_random_points_of_a_bounded_run_then_restart(
    kafka_cluster, make_stream_load_server, tmp_path):
  """Two kills at seeded random moments, a restart after each, then a run to the end."""
  rng = random.Random(8)
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=4000)
  _kill_randomly(scenario, rng, kills=2)
  scenario.finish()
  scenario.check()


@pytest.mark.heavy
@pytest.mark.parametrize('seed', [1, 2, 3])
def test_many_random_kills_with_server_faults_and_new_data_between_runs(
    kafka_cluster, make_stream_load_server, tmp_path, seed):
  rng = random.Random(seed)
  server = make_stream_load_server(num_bes=2)
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=8000, n_users=1000,
                           n_orders=500, batch_rows=300)
  for round_number in range(3):
    server.inject_fault('http_503', times=2)
    server.inject_fault('reset_mid_body', times=1)
    server.inject_fault('publish_timeout', times=2, delay_secs=0.3)
    _kill_randomly(scenario, rng, kills=4)
    server.clear_faults()
    scenario.finish()
    scenario.produce(4000, 1000, 0)
  scenario.finish()
  print('seed', seed, 'kills', scenario.kills, scenario.check())


def _kill_randomly(scenario, rng, kills, streaming=False):
  """Kills the CLI ``kills`` times at a seeded random point of its run.

  The point is either a random moment after the start-up checks (reading, parsing, batching or
  the first loads) or a random number of load requests into the run plus a random delay.  A
  bounded run may finish first (a valid point too); a streaming run that has loaded everything
  before the point is killed while idle.
  """
  server = scenario.server
  for _ in range(kills):
    schema_checks = len([r for r in server.request_log if r['path'].endswith('/_schema')])
    loads_before = len(fe_load_requests(server))
    after_loads = rng.choice([0, rng.randrange(1, 12)])
    delay = rng.random() * (0.8 if not after_loads else 0.2)
    proc = scenario.start(streaming=streaming)
    if after_loads:
      condition = lambda: len(fe_load_requests(server)) >= loads_before + after_loads
    else:
      condition = lambda: len([r for r in server.request_log
                               if r['path'].endswith('/_schema')]) > schema_checks
    try:
      try:
        wait_for(lambda: condition() or proc.poll() is not None, 'the kill point',
                 timeout_secs=20 if streaming else WAIT_SECS)
      except AssertionError:
        if not streaming:
          raise
      if proc.poll() is None:
        time.sleep(delay)  # a random moment, not a synchronisation
    finally:
      if proc.poll() is None:
        scenario.kill(proc, f'{after_loads} load requests + {delay:.2f}s into the run')
      else:  # the run finished first: a complete run is a valid point too
        assert proc.returncode == 0 and not streaming


@pytest.mark.heavy
@pytest.mark.parametrize('seed', [4, 5])
def test_random_kills_of_streaming_runs_with_new_data_in_between(
    kafka_cluster, make_stream_load_server, tmp_path, seed):
  """Streaming runs commit as they go, so each crash may re-send only what was loaded and not
  yet committed; new records arrive between the runs."""
  rng = random.Random(seed)
  server = make_stream_load_server()
  scenario = CrashScenario(kafka_cluster, server, tmp_path, n_events=4000,
                           batch_interval_secs=1)
  for _ in range(3):
    _kill_randomly(scenario, rng, kills=3, streaming=True)
    scenario.produce(2000, 400, 0)
  scenario.finish()
  print('seed', seed, 'kills', scenario.kills, scenario.check())


def test_kill_between_two_phase_prepare_and_commit_then_restart_loads_every_row(
    kafka_cluster, make_stream_load_server, tmp_path):
  """With --two_phase_commit a crash can leave a PRECOMMITTED transaction holding the batch's
  label.  The restart re-sends that label; the rows must end up in the table (the dangling
  transaction committed, or aborted and the batch loaded again), not stall or be dead-lettered."""
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('twopc')
  ids = list(range(300))
  kafka_cluster.produce(topic, user_bytes(ids), partition=0)
  group = f'g-{topic}'
  argv = pipeline_argv(kafka_cluster, server, [topic], group, str(tmp_path / 'dead'),
                       table='demo.users', two_phase_commit='true', flush_workers=1,
                       batch_rows=1000, max_retries=0)
  # The FE holds the 2PC commit: the job is killed while the load is prepared, not committed.
  server.inject_fault('slow_2pc', times=None, delay_secs=HOLD_SECS)
  proc = start_cli(argv, log_path=str(tmp_path / 'first.log'))
  try:
    wait_for(lambda: any(r['path'].endswith('_stream_load_2pc') for r in server.request_log),
             'the 2PC commit request', proc=proc)
  finally:
    proc.kill()
    proc.wait()
  server.clear_faults()
  assert [e['status'] for e in server.loads] == ['Success']  # prepared, never committed
  assert server.query('SELECT count(*) FROM demo.users') == [(0,)]

  result = run_cli(argv, timeout_secs=400)
  assert result.returncode == 0, result.stderr[-2000:]
  assert read_dead_letters(str(tmp_path / 'dead')) == [], 'the batch was dead-lettered'
  assert_users_hold(server, {i: 0 for i in ids})
  assert kafka_cluster.committed(group, topic) == {0: len(ids)}


def _streaming(argv):
  return [a for a in argv if a != '--stop_at_end']


def test_a_streaming_run_commits_the_offsets_of_loaded_rows_while_it_runs(
    kafka_cluster, make_stream_load_server, tmp_path):
  """Without --stop_at_end the pipeline streams until killed; offsets of loaded rows must be
  committed as it goes, or every crash and restart re-sends everything since the start."""
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('streaming')
  kafka_cluster.produce(topic, event_bytes(range(2000)))
  group = f'g-{topic}'
  argv = _streaming(pipeline_argv(kafka_cluster, server, [topic], group, str(tmp_path / 'dead'),
                                  table='demo.events', batch_rows=500, batch_interval_secs=1))
  proc = start_cli(argv, log_path=str(tmp_path / 'streaming.log'))
  try:
    wait_for(lambda: server.query('SELECT count(*) FROM demo.events') == [(2000,)],
             'every row loaded', proc=proc)
    wait_for(lambda: kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic),
             'the offsets of the loaded rows committed', timeout_secs=60, proc=proc)
  finally:
    proc.kill()
    proc.wait()
