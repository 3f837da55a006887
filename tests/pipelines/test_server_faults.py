"""Server faults during a pipeline run: afterwards every produced row is in the table exactly once.

Each test produces a fresh topic, injects one kind of fault into the local Stream Load server
(``stream_load_emulator``), runs the real pipeline (bounded, in this process) and checks with SQL
that ``demo.events`` holds every produced row once, with its content, and that the fault fired.
"""

import threading

import pytest

from tests.harness import run_cli, pipeline_argv, read_dead_letters, run_in_process
from tests.pipelines.helpers import assert_events_exactly_once, event_bytes, load_statuses

pytestmark = pytest.mark.reliability

N_EVENTS = 1200
BATCH_ROWS = 100


def _run(kafka, server, tmp_path, ids=range(N_EVENTS), **flags):
  topic = kafka.unique_topic('faults')
  kafka.produce(topic, event_bytes(ids))
  group = f'g-{topic}'
  flags.setdefault('batch_rows', BATCH_ROWS)
  flags.setdefault('table', 'demo.events')
  dead_dir = str(tmp_path / 'dead')
  summary = run_in_process(pipeline_argv(kafka, server, [topic], group, dead_dir, **flags))
  return summary, topic, group, dead_dir


def _assert_clean_finish(kafka, server, topic, group, dead_dir):
  assert_events_exactly_once(server, list(range(N_EVENTS)))
  assert read_dead_letters(dead_dir) == []
  assert kafka.committed(group, topic) == kafka.end_offsets(topic)
  assert server.faults.list() == [], 'the injected fault never fired'


@pytest.mark.parametrize('kind, status', [
    ('http_500', 'HTTP 500'),
    ('http_503', 'HTTP 503'),
    ('reset_mid_body', 'Reset'),
])
def test_transient_http_failures_are_retried_and_load_each_row_once(
    kafka_cluster, make_stream_load_server, tmp_path, kind, status):
  server = make_stream_load_server()
  server.inject_fault(kind, times=3)
  _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
  assert load_statuses(server)[status] == 3


@pytest.mark.parametrize('kind, status', [
    ('response_lost', 'Response Lost'),
    ('reset_after_body', 'Reset After Body'),
])
def test_faults_after_the_commit_are_retried_under_the_same_label_and_load_nothing_twice(
    kafka_cluster, make_stream_load_server, tmp_path, kind, status):
  """The load commits on the server, then the answer is lost.  The retry must re-send the same
  label (Doris answers Label Already Exists, FINISHED); a fresh label would load the rows twice."""
  server = make_stream_load_server()
  server.inject_fault(kind, times=3)
  summary, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
  statuses = load_statuses(server)
  assert statuses[status] == 3 and statuses['Label Already Exists'] == 3
  assert summary.totals.get('labels_already_loaded') == 3


@pytest.mark.parametrize('kind, message', [
    ('too_many_versions', 'exceed limit'),
    ('txn_limit', 'larger than limit'),
])
def test_busy_cluster_errors_are_retried_and_load_each_row_once(
    kafka_cluster, make_stream_load_server, tmp_path, kind, message):
  server = make_stream_load_server()
  server.inject_fault(kind, times=2)
  _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
  failed = [entry for entry in server.loads if entry['status'] == 'Fail']
  assert len(failed) == 2 and all(message in entry['message'] for entry in failed)


def test_publish_timeout_counts_as_loaded_and_is_not_sent_again(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  server.inject_fault('publish_timeout', times=3, delay_secs=0.2)
  _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
  statuses = load_statuses(server)
  assert statuses['Publish Timeout'] == 3
  # Nothing was re-sent: every load attempt either succeeded or timed out on publish.
  assert set(statuses) == {'Success', 'Publish Timeout'}


def test_a_be_stalling_past_the_load_timeout_is_retried_under_the_same_label(
    kafka_cluster, make_stream_load_server, tmp_path):
  """The first attempt of a batch stalls past the client's timeout and then loads; the retry
  (held back at the FE until that load is done) gets ``Label Already Exists`` + FINISHED and the
  pipeline counts it as loaded, without a second copy."""
  server = make_stream_load_server()
  server.inject_fault('slow', times=1, delay_secs=1.6)
  stop = threading.Event()

  def hold_the_retry_at_the_fe():
    # The stalled request is the first BE load; once it is in, delay the next FE request
    # (the retry: flush_workers=1 loads one batch at a time) until the stalled one loaded.
    while not stop.is_set():
      if any(r['node'].startswith('be') and r['path'].endswith('_stream_load')
             for r in server.request_log):
        server.inject_fault('slow', times=1, node='fe0', delay_secs=1.5)
        return
      stop.wait(0.005)

  watcher = threading.Thread(target=hold_the_retry_at_the_fe, daemon=True)
  watcher.start()
  try:
    summary, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path, load_timeout_secs=1,
                                           flush_workers=1, validate_tables='false')
  finally:
    stop.set()
    watcher.join()
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
  labels = [entry['label'] for entry in server.loads]
  retried = [e for e in server.loads if e['status'] == 'Label Already Exists']
  assert len(retried) == 1
  assert labels.count(retried[0]['label']) == 2
  assert summary.totals.get('labels_already_loaded') == 1


def test_one_be_down_loads_go_to_the_other_be(kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(num_bes=2)
  server.inject_fault('be_down', node=1)
  summary, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path, max_retries=10)
  assert_events_exactly_once(server, list(range(N_EVENTS)))
  assert read_dead_letters(dead_dir) == []
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)
  assert {entry['be'] for entry in server.loads} == {0}
  # The FE kept redirecting every other load to the down BE: those were refused and retried.
  assert summary.totals.get('retries', 0) > 0


def test_one_fe_down_fails_over_to_the_next_fe(kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(num_fes=2)
  server.inject_fault('fe_down', node=0)
  _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path)
  assert_events_exactly_once(server, list(range(N_EVENTS)))
  assert read_dead_letters(dead_dir) == []
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)
  nodes = {r['node'] for r in server.request_log}
  assert 'fe1' in nodes and 'fe0' not in nodes


def test_an_fe_answering_500_fails_over_to_the_next_fe(kafka_cluster, make_stream_load_server,
                                                      tmp_path):
  server = make_stream_load_server(num_fes=2)
  server.inject_fault('http_500', times=3, node='fe0')
  server.inject_fault('http_503', times=3, node='fe1')
  _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
  # Every injected answer was given (each to a request that then went to the other FE).
  assert server.faults.list() == []
  loads_via = {r['node'] for r in server.request_log if r['path'].endswith('/_stream_load')
               and r['node'].startswith('fe')}
  assert loads_via == {'fe0', 'fe1'}


ALL_LOAD_FAULTS = (('http_503', 2), ('reset_mid_body', 1), ('publish_timeout', 1))
# The emulator's StarRocks transaction API (begin/load/prepare/commit) fires only HTTP faults.
HTTP_FAULTS = (('http_503', 2), ('http_500', 1))


@pytest.mark.parametrize('target, flags, faults', [
    ('doris', dict(compression='gzip'), ALL_LOAD_FAULTS),
    ('doris', dict(two_phase_commit='true'), ALL_LOAD_FAULTS),
    ('starrocks', dict(), ALL_LOAD_FAULTS),
    ('starrocks', dict(two_phase_commit='true'), HTTP_FAULTS),
], ids=['doris-gzip', 'doris-2pc', 'starrocks', 'starrocks-2pc'])
def test_faults_during_gzip_two_phase_and_starrocks_loads_leave_each_row_once(
    kafka_cluster, make_stream_load_server, tmp_path, target, flags, faults):
  server = make_stream_load_server(flavor=target)
  for kind, times in faults:
    server.inject_fault(kind, times=times, delay_secs=0.2 if kind == 'publish_timeout' else None)
  _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path, target=target, **flags)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)


def test_an_outage_longer_than_the_retry_budget_commits_no_offset_of_unloaded_rows(
    kafka_cluster, make_stream_load_server, tmp_path):
  """DESIGN "Delivery guarantee": offsets are committed only for rows whose load returned
  Success / Publish Timeout.  When the only BE stays down past every retry, the rows are not in
  the table, so their offsets must stay uncommitted (the run fails, or keeps retrying) and a
  restart after the outage loads them."""
  server = make_stream_load_server()
  server.inject_fault('be_down', node=0)
  topic = kafka_cluster.unique_topic('outage')
  kafka_cluster.produce(topic, event_bytes(range(200)))
  group = f'g-{topic}'
  argv = pipeline_argv(kafka_cluster, server, [topic], group, str(tmp_path / 'dead'),
                       table='demo.events', max_retries=1)
  result = run_cli(argv, timeout_secs=180)
  # The cluster's fault: the run fails (exit 1) naming it; the rows are not dead-lettered and
  # no offset moves, so a restart after the outage loads them.
  assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
  assert 'StreamLoadUnavailableError' in result.stderr and 'gave up after 2 attempts' in result.stderr
  assert server.query('SELECT count(*) FROM demo.events') == [(0,)]
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert kafka_cluster.committed(group, topic) == {}
  server.clear_faults()
  run_in_process(argv)
  assert_events_exactly_once(server, list(range(200)))
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_a_failed_two_phase_commit_request_is_retried_without_losing_the_batch(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  stop = threading.Event()

  def fail_the_first_commit_request():
    # After the first (prepared) BE load, the next FE request is that batch's 2PC commit.
    while not stop.is_set():
      if any(r['node'] == 'be0' and r['path'].endswith('_stream_load') for r in server.request_log):
        server.inject_fault('http_500', times=1, node='fe0')
        return
      stop.wait(0.002)

  watcher = threading.Thread(target=fail_the_first_commit_request, daemon=True)
  watcher.start()
  try:
    _, topic, group, dead_dir = _run(kafka_cluster, server, tmp_path, two_phase_commit='true',
                                     flush_workers=1, max_retries=1, validate_tables='false')
  finally:
    stop.set()
    watcher.join()
  assert any(r['path'].endswith('_stream_load_2pc') for r in server.request_log)
  _assert_clean_finish(kafka_cluster, server, topic, group, dead_dir)
