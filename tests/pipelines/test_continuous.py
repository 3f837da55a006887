"""A long-running job on the real local runner: limits while streaming, drain, bounded memory.

The job is the CLI (``python -m pipelines.kafka_to_doris`` without ``--stop_at_end``) against the
mock Kafka and the local Stream Load server.  What the job has read is observed through its own
Prometheus endpoint (``--metrics_port``), so the tests wait on facts, never on sleeps.
"""

import os
import re
import signal

import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import (assert_events_exactly_once, event_bytes, free_port,
                                     records_consumed)

pytestmark = pytest.mark.reliability

_FLUSH = re.compile(r'flush triggered by (\w+): shard=\d+ table_rows=(\d+) .*? waiting_time=(\d+) ms '
                    r'time_threshold=(\d+) ms')






def _streaming_job(kafka, server, topic, tmp_path, **flags):
  port = free_port()
  argv = [a for a in pipeline_argv(kafka, server, [topic], f'g-{topic}', str(tmp_path / 'dead'),
                                   table='demo.events', metrics_port=port, **flags)
          if a != '--stop_at_end']
  log = str(tmp_path / f'job-{len(os.listdir(tmp_path))}.log')
  return start_cli(argv, log_path=log), port, log, argv


def _flushes(log_path):
  with open(log_path, encoding='utf-8', errors='replace') as handle:
    return [(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))
            for m in _FLUSH.finditer(handle.read())]


def _stop(proc, signum=signal.SIGTERM, timeout_secs=60):
  proc.send_signal(signum)
  return proc.wait(timeout=timeout_secs)


def test_rows_arriving_in_many_polls_wait_for_their_batch_limits(
    kafka_cluster, make_stream_load_server, tmp_path):
  """Twenty bursts, each read in its own poll and bundle: none flushes a batch; the interval
  (60 s) and the row limit (10,000) are far away, so the rows wait until the job drains."""
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('limits')
  kafka_cluster.produce(topic, event_bytes(range(10)))
  proc, port, log, _ = _streaming_job(kafka_cluster, server, topic, tmp_path,
                                      batch_interval_secs=60, batch_rows=10_000)
  try:
    sent = 10
    wait_for(lambda: records_consumed(port, topic) == sent, 'the first records read', proc=proc)
    for burst in range(20):
      kafka_cluster.produce(topic, event_bytes(range(sent, sent + 50)))
      sent += 50
      wait_for(lambda: records_consumed(port, topic) == sent, f'burst {burst} read', proc=proc)
    assert server.loads == [], 'a batch was flushed before any of its limits'
    assert _stop(proc) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  assert [(reason, rows) for reason, rows, _, _ in _flushes(log)] == [('drain', sent)]
  assert len(server.loads) == 1
  assert_events_exactly_once(server, list(range(sent)))
  assert kafka_cluster.committed(f'g-{topic}', topic) == kafka_cluster.end_offsets(topic)


def test_time_limited_flushes_never_fire_before_the_interval(kafka_cluster, make_stream_load_server,
                                                             tmp_path):
  """A 1 s interval and records arriving while it runs: every flush is a timeout (or the drain),
  and none waited less than its interval."""
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('interval')
  kafka_cluster.produce(topic, event_bytes(range(10)))
  proc, port, log, _ = _streaming_job(kafka_cluster, server, topic, tmp_path,
                                      batch_interval_secs=1, batch_rows=10_000)
  try:
    sent = 10
    wait_for(lambda: records_consumed(port, topic) == sent, 'the first records read', proc=proc)
    while len(server.loads) < 4:  # keep rows arriving across several intervals
      kafka_cluster.produce(topic, event_bytes(range(sent, sent + 20)))
      sent += 20
      wait_for(lambda: records_consumed(port, topic) == sent, 'the records read', proc=proc)
    assert _stop(proc) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  flushes = _flushes(log)
  assert {reason for reason, _, _, _ in flushes} <= {'timeout', 'drain'}
  early = [f for f in flushes if f[0] == 'timeout' and f[2] < f[3]]
  assert not early, f'flushed before the interval: {early}'
  assert sum(rows for _, rows, _, _ in flushes) == sent
  assert_events_exactly_once(server, list(range(sent)))


def test_sigterm_drains_loads_commits_and_exits_0(kafka_cluster, make_stream_load_server,
                                                  tmp_path):
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('drain')
  kafka_cluster.produce(topic, event_bytes(range(700)))
  proc, port, log, _ = _streaming_job(kafka_cluster, server, topic, tmp_path,
                                      batch_interval_secs=120, batch_rows=500)
  try:
    wait_for(lambda: records_consumed(port, topic) == 700, 'every record read', proc=proc)
    assert _stop(proc) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  with open(log, encoding='utf-8') as handle:
    text = handle.read()
  assert 'SIGTERM: draining' in text and 'summary: drained: 700 rows loaded' in text
  assert [reason for reason, _, _, _ in _flushes(log)] == ['rows_threshold', 'drain']
  assert_events_exactly_once(server, list(range(700)))
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert kafka_cluster.committed(f'g-{topic}', topic) == kafka_cluster.end_offsets(topic)


def test_a_second_signal_exits_at_once_and_a_restart_loses_nothing(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  topic = kafka_cluster.unique_topic('second')
  kafka_cluster.produce(topic, event_bytes(range(300)))
  proc, port, _, argv = _streaming_job(kafka_cluster, server, topic, tmp_path,
                                       batch_interval_secs=120)
  try:
    wait_for(lambda: records_consumed(port, topic) == 300, 'every record read', proc=proc)
    # The drain's load is held by the server: the first SIGTERM cannot finish.
    server.inject_fault('slow', times=None, node='fe0', delay_secs=60)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any(r['path'].endswith('_stream_load') for r in server.request_log),
             'the drain\'s load sent', proc=proc)
    assert _stop(proc, signal.SIGINT, timeout_secs=10) == 128 + signal.SIGINT
  finally:
    if proc.poll() is None:
      proc.kill()
  server.clear_faults()
  assert kafka_cluster.committed(f'g-{topic}', topic) == {}  # nothing loaded, nothing committed
  result = run_cli(argv + ['--stop_at_end'], timeout_secs=180)
  assert result.returncode == 0, result.stderr[-2000:]
  assert_events_exactly_once(server, list(range(300)))


def test_memory_stays_bounded_whatever_the_backlog(kafka_cluster, make_stream_load_server,
                                                   tmp_path):
  """A backlog many times the batch limits: peak RSS within 3 x flush_workers x batch_bytes +
  300 MB (the bound the README states)."""
  server = make_stream_load_server(count_only=True)
  topics = [kafka_cluster.unique_topic('backlog') for _ in range(4)]
  n = 40_000  # 40 MB of ~1 KB events: 20x the batch byte limit
  for index, topic in enumerate(topics):
    kafka_cluster.produce(topic, event_bytes(range(index, n, len(topics)), payload_size=950))
  flush_workers, batch_bytes = 2, 2 * 1024 * 1024
  argv = pipeline_argv(kafka_cluster, server, topics, f'g-{topics[0]}', str(tmp_path / 'dead'),
                       table='demo.events', flush_workers=flush_workers, batch_bytes=batch_bytes,
                       batch_rows=100_000)
  result = run_cli(argv, timeout_secs=300)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = result.stdout.splitlines()[0]
  assert f'summary: {n} rows loaded' in summary
  peak_mb = float(summary.rsplit('peak RSS ', 1)[1].split()[0])
  bound_mb = 3 * flush_workers * batch_bytes / 2**20 + 300
  assert peak_mb <= bound_mb, f'peak RSS {peak_mb} MB over the bound of {bound_mb} MB'
