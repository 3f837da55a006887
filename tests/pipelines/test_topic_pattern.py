"""``--topic_pattern`` from the command line: which topics a run reads, how their records are
routed, topics created while a streaming job runs, and the flags' mistakes.

Against the mock Kafka (which cannot add partitions to a topic: that case is in
test_real_kafka.py) and the local Stream Load server; streaming jobs are observed through
their log and Prometheus endpoint, never through sleeps.
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import (assert_events_exactly_once, assert_users_hold, event_bytes,
                                     free_port, metric_samples, nonempty_end_offsets,
                                     records_consumed, user_bytes)




def _pattern_argv(kafka, server, pattern, group, tmp_path, **flags):
  """The harness's flags with ``--topic_pattern`` instead of ``--topics``."""
  argv = pipeline_argv(kafka, server, ['x'], group, str(tmp_path / 'dead'), **flags)
  return [a for a in argv if not a.startswith('--topics=')] + [f'--topic_pattern={pattern}']








def _log_text(path: str) -> str:
  with open(path, encoding='utf-8', errors='replace') as handle:
    return handle.read()


@pytest.mark.e2e
def test_a_bounded_run_reads_exactly_the_matching_topics_and_routes_them_by_pattern(
    kafka_cluster, make_stream_load_server, tmp_path):
  """Three topics match ``rt_<id>_.*``: two event topics (routed by the pattern
  ``rt_<id>_ev_.*``), the users topic (by its exact name) and one no key maps (dead letters).
  A topic that only starts like them, and one with the internal ``__`` prefix, are not read."""
  server = make_stream_load_server()
  uid = kafka_cluster.unique_topic('p').replace('-', '_')
  prefix = f'rt_{uid}'
  kafka_cluster.produce(f'{prefix}_ev_eu', event_bytes(range(0, 60)))
  kafka_cluster.produce(f'{prefix}_ev_us', event_bytes(range(60, 100)))
  kafka_cluster.produce(f'{prefix}_users', user_bytes(range(10)))
  kafka_cluster.produce(f'{prefix}_other', event_bytes(range(500, 503)))
  kafka_cluster.produce(f'x{prefix}_ev_eu', event_bytes(range(900, 910)))      # not matched
  kafka_cluster.produce(f'__{prefix}_ev_eu', event_bytes(range(950, 960)))     # internal
  group = f'g-{prefix}'
  argv = _pattern_argv(kafka_cluster, server, rf'(__)?{prefix}_.*', group, tmp_path,
                       topic_table_map=f'{prefix}_ev_.*=demo.events,{prefix}_users=demo.users')
  result = run_cli(argv, timeout_secs=180)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_events_exactly_once(server, list(range(100)))
  assert_users_hold(server, {i: 0 for i in range(10)})
  letters = read_dead_letters(str(tmp_path / 'dead'))
  assert sorted(letter['topic'] for letter in letters) == [f'{prefix}_other'] * 3
  assert {letter['reason'].split(':')[0] for letter in letters} == {'unmapped_topic'}
  for topic in (f'{prefix}_ev_eu', f'{prefix}_ev_us', f'{prefix}_users', f'{prefix}_other'):
    assert kafka_cluster.committed(group, topic) == nonempty_end_offsets(kafka_cluster, topic), topic
  for topic in (f'x{prefix}_ev_eu', f'__{prefix}_ev_eu'):
    assert kafka_cluster.committed(group, topic) == {}, topic


@pytest.mark.reliability
def test_a_streaming_job_loads_a_topic_created_while_it_runs_and_drains_on_sigterm(
    kafka_cluster, make_stream_load_server, tmp_path):
  """``--auto_offset_reset=latest``: the topic there at start is read from its end, but the one
  created while the job runs is read from its first record -- those produced before the job
  found it are loaded too, exactly once.  SIGTERM drains: exit 0, every offset committed."""
  server = make_stream_load_server()
  uid = kafka_cluster.unique_topic('p').replace('-', '_')
  first, late = f'st_{uid}_a', f'st_{uid}_b'
  kafka_cluster.produce(first, event_bytes(range(1000, 1020)))  # before start: skipped (latest)
  port = free_port()
  group = f'g-{uid}'
  argv = [a for a in _pattern_argv(kafka_cluster, server, rf'st_{uid}_[a-z]', group, tmp_path,
                                   table='demo.events', metrics_port=port,
                                   auto_offset_reset='latest', topic_discovery_interval_secs=1,
                                   batch_interval_secs=60)
          if a != '--stop_at_end']
  log = str(tmp_path / 'job.log')
  proc = start_cli(argv, log_path=log)
  try:
    wait_for(lambda: 'Reading 4 partitions' in _log_text(log), 'the read started', proc=proc)
    kafka_cluster.produce(first, event_bytes(range(0, 50)))
    wait_for(lambda: records_consumed(port, first) == 50, 'the first topic read', proc=proc)
    kafka_cluster.produce(late, event_bytes(range(50, 150)))   # creates the topic
    wait_for(lambda: records_consumed(port, late) == 100, 'the new topic read', proc=proc)
    lags = {s.labels['partition'] for s in metric_samples(port, 'kafka_consumer_lag_records')
            if s.labels.get('topic') == late}
    assert lags == {'0', '1', '2', '3'}, 'the new partitions are not in the lag metric'
    kafka_cluster.produce(late, event_bytes(range(150, 170)))
    wait_for(lambda: records_consumed(port, late) == 120, 'more records of the new topic', proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  text = _log_text(log)
  assert 'summary: drained: 170 rows loaded' in text, text[-3000:]
  assert len(re.findall(rf'Discovered topic {late} ', text)) == 1
  assert f'Discovered topic {first}' not in text
  assert_events_exactly_once(server, list(range(170)))
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  for topic in (first, late):
    assert kafka_cluster.committed(group, topic) == nonempty_end_offsets(kafka_cluster, topic), topic


# -- the flags' mistakes: exit 2, one line naming the flag, nothing read or loaded --------------

_BAD = {
    'bad regular expression': (dict(topic_pattern='orders_('), ['--topic_pattern', 'orders_(']),
    'topics and a pattern': (dict(topic_pattern='orders_.*', topics='orders'),
                             ['--topics', '--topic_pattern', 'not both']),
    'bad routing pattern': (dict(topic_pattern='orders_.*', topic_table_map='orders_(=demo.events'),
                            ['--topic_table_map', 'orders_(']),
    'zero discovery interval': (dict(topic_pattern='orders_.*', topic_discovery_interval_secs=0),
                                ['--topic_discovery_interval_secs']),
    'a bounded run whose pattern matches nothing': (
        dict(topic_pattern='no_such_topic_[0-9]+'),
        ['--topic_pattern=no_such_topic_[0-9]+', 'no topic', 'matches']),
}


@pytest.mark.e2e
@pytest.mark.parametrize('case', sorted(_BAD))
def test_bad_pattern_flags_fail_at_start_with_exit_code_2(kafka_cluster, stream_load_server,
                                                          tmp_path, case):
  flags, words = _BAD[case]
  flags = dict(flags)
  topics = flags.pop('topics', None)
  if 'topic_table_map' not in flags:
    flags['table'] = 'demo.events'
  argv = _pattern_argv(kafka_cluster, stream_load_server, flags.pop('topic_pattern'),
                       'g-bad-pattern', tmp_path, **flags)
  if topics:
    argv.append(f'--topics={topics}')
  result = run_cli(argv, timeout_secs=120)
  assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, result.stderr[-3000:]
  for word in words:
    assert word in errors[0], errors[0]
  assert 'Traceback' not in result.stderr
  assert stream_load_server.loads == []
  assert not any(r['path'].endswith('_stream_load') for r in stream_load_server.request_log)
  assert read_dead_letters(str(tmp_path / 'dead')) == []
