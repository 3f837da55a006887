"""The command line against a real Apache Kafka (4.1.1, KRaft; ``devtools.real_kafka``).

What the librdkafka mock cluster cannot show: the exactly-once suite on a real
broker, a broker restart and a leader failover under a streaming job, many
partitions, a compacted topic (gaps of removed offsets, a committed offset
that was compacted away), transactions (aborted records never load; the
transaction markers' offsets are committed past), the committed offsets as
Kafka's own ``kafka-consumer-groups --describe`` reports them, and SASL/PLAIN
and TLS listeners.  Every test runs ``python -m pipelines.kafka_to_doris``
against the local Stream Load server and checks the tables with SQL.

Needs Java 17+ and Maven (tests/fixtures/real_kafka.py skips without them,
or fails with ``REQUIRE_INTEGRATION=1``).  One broker serves the module
(the session fixture); the three-node cluster only the failover test.
"""

from __future__ import annotations

import random
import signal
import types
from typing import Iterable, List, Sequence

import orjson
import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, start_cli
from tests.pipelines.crash import WAIT_SECS, CrashScenario, LiveFeed, wait_for
from tests.pipelines.helpers import assert_events_exactly_once, event, event_bytes

pytestmark = pytest.mark.integration

DRAIN_SECS = 120


# -- helpers ------------------------------------------------------------------------------------


def _streaming(argv: Sequence[str]) -> List[str]:
  return [a for a in argv if a != '--stop_at_end']


def _assert_committed_to_the_end(kafka, group: str, topics: Iterable[str]) -> None:
  """The group's committed offsets equal the end offsets, by confluent-kafka and by Kafka's
  own ``kafka-consumer-groups --describe`` (CURRENT-OFFSET = LOG-END-OFFSET, LAG 0)."""
  topics = list(topics)
  ends = {topic: kafka.end_offsets(topic) for topic in topics}
  for topic in topics:
    assert kafka.committed(group, topic) == ends[topic], topic
  described = {(row.topic, row.partition): row for row in kafka.describe_group(group)}
  for topic in topics:
    for partition, end in ends[topic].items():
      row = described.get((topic, partition))
      assert row is not None, f'kafka-consumer-groups lists no {topic}[{partition}] for {group}'
      assert (row.current_offset, row.log_end_offset, row.lag) == (end, end, 0), row


def _drain(proc, what: str) -> None:
  """SIGTERM a streaming run: it drains (flush, load, commit) and exits 0."""
  if proc.poll() is None:
    proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=DRAIN_SECS) == 0, f'{what}: the drained run exited {proc.returncode}'


def _stop(proc) -> None:
  if proc.poll() is None:
    proc.kill()
  proc.wait(timeout=30)


def _events_loaded(server) -> int:
  return server.query('SELECT count(*) FROM demo.events')[0][0]


# -- a: the exactly-once suite ------------------------------------------------------------------


def test_exactly_once_on_a_real_broker_bounded_then_live_kills_while_records_arrive(
    real_kafka, make_stream_load_server, tmp_path):
  """Three tables: a bounded run loads everything once; then a streaming job, records still
  arriving, is SIGKILLed twice at seeded random moments while it loads, restarted after each
  kill, then run with --stop_at_end: every event once in the duplicate-key table, the newest
  version of each key in the unique-key tables, offsets committed to the end."""
  rng = random.Random(21)
  server = make_stream_load_server(num_bes=2)
  scenario = CrashScenario(real_kafka, server, tmp_path, n_events=2000, n_users=200,
                           n_orders=100, batch_rows=300, batch_interval_secs=1)
  scenario.finish()
  assert scenario.check()['duplicated_events'] == 0

  with LiveFeed(scenario) as feed:
    scenario.kill_live(2, rng)
    assert feed.rounds > 3, 'records kept arriving while the job ran'
  scenario.finish()
  result = scenario.check()
  assert len(scenario.kills) == 2 and result['duplicated_events'] == 0
  _assert_committed_to_the_end(real_kafka, scenario.group,
                               [scenario.events_topic, scenario.users_topic,
                                scenario.orders_topic])


# -- b: a broker restart ------------------------------------------------------------------------


def test_a_streaming_job_survives_a_broker_restart(real_kafka, make_stream_load_server,
                                                   tmp_path):
  """The only broker stops (controlled shutdown) while a streaming job has loads in flight and
  starts again; the job keeps running, loads what came before and after, commits to the end."""
  server = make_stream_load_server()
  scenario = CrashScenario(real_kafka, server, tmp_path, n_events=2000, n_users=200,
                           n_orders=100, batch_rows=300, batch_interval_secs=1)
  topics = [scenario.events_topic, scenario.users_topic, scenario.orders_topic]
  # Loads wait 2 s at the BE: the broker goes down while the job is mid-way.
  server.inject_fault('slow', times=None, table='demo.events', delay_secs=2.0)
  proc = scenario.start(streaming=True)
  try:
    wait_for(lambda: len(server.loads) >= 1, 'the job loading', proc=proc)
    real_kafka.stop()
    assert proc.poll() is None
    real_kafka.start()
    server.clear_faults()
    scenario.produce(400, 40, 0)  # records that arrive after the restart

    def caught_up():
      return (_events_loaded(server) >= len(scenario.event_ids) and
              all(real_kafka.committed(scenario.group, t) == real_kafka.end_offsets(t)
                  for t in topics))

    wait_for(caught_up, 'every row loaded and committed after the restart', proc=proc,
             timeout_secs=WAIT_SECS * 2)
    _drain(proc, 'after the broker restart')
  finally:
    _stop(proc)
  result = scenario.check()
  assert result['duplicated_events'] == 0


# -- c: leader failover -------------------------------------------------------------------------


def test_a_streaming_job_survives_a_partition_leader_failover(
    real_kafka_cluster, make_stream_load_server, tmp_path):
  """Three nodes, topics replicated 3 times with min.insync.replicas=2.  The leader of
  events[0] is SIGKILLed while a streaming job reads and records arrive: the job goes on
  (reads, loads and commits after the failover); nothing is lost or loaded twice."""
  cluster = real_kafka_cluster
  server = make_stream_load_server()
  scenario = CrashScenario(cluster, server, tmp_path, n_events=1200, n_users=120, n_orders=60,
                           batch_rows=300, batch_interval_secs=1)
  topics = [scenario.events_topic, scenario.users_topic, scenario.orders_topic]
  metadata = cluster.admin().list_topics(scenario.events_topic, timeout=10)
  assert all(len(p.replicas) == 3 for p in metadata.topics[scenario.events_topic]
             .partitions.values())
  proc = scenario.start(streaming=True)
  killed = None
  try:
    with LiveFeed(scenario, events_per_round=100, users_per_round=20) as feed:
      wait_for(lambda: len(server.loads) >= 2, 'the job loading', proc=proc)
      killed = cluster.leader_of(scenario.events_topic, 0)
      committed_at_kill = cluster.committed(scenario.group, scenario.events_topic)
      loads_at_kill = len(server.loads)
      cluster.kill(killed)
      wait_for(lambda: cluster.leader_of(scenario.events_topic, 0) not in (killed, -1),
               'a new leader of events[0]')
      # The job reads, loads and commits past the failover.
      wait_for(lambda: len(server.loads) >= loads_at_kill + 3, 'loads after the failover',
               proc=proc)
      wait_for(lambda: cluster.committed(scenario.group, scenario.events_topic).get(0, 0) >
               committed_at_kill.get(0, 0), 'events[0] committed after the failover',
               proc=proc)
    assert feed.rounds > 3
    wait_for(lambda: (_events_loaded(server) >= len(scenario.event_ids) and
                      all(cluster.committed(scenario.group, t) == cluster.end_offsets(t)
                          for t in topics)),
             'every row loaded and committed', proc=proc, timeout_secs=WAIT_SECS * 2)
    _drain(proc, 'after the failover')
  finally:
    _stop(proc)
    if killed is not None:
      cluster.restart(killed)  # the module's cluster whole again
  result = scenario.check()
  assert result['duplicated_events'] == 0


# -- d: many partitions, compaction -------------------------------------------------------------


def test_a_32_partition_topic_loads_once_and_kafka_consumer_groups_shows_no_lag(
    real_kafka, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  topic = real_kafka.create_topic(real_kafka.unique_topic('p32'), partitions=32)
  ids = list(range(3200))
  real_kafka.produce(topic, event_bytes(ids))  # round robin: 100 records per partition
  assert real_kafka.end_offsets(topic) == {p: 100 for p in range(32)}
  group = f'g-{topic}'
  result = run_cli(pipeline_argv(real_kafka, server, [topic], group, str(tmp_path / 'dead'),
                                 table='demo.events', batch_rows=1000))
  assert result.returncode == 0, result.stderr[-3000:]
  assert_events_exactly_once(server, ids)
  _assert_committed_to_the_end(real_kafka, group, [topic])


def _versioned_event(i: int, version: int) -> bytes:
  # ~2 KB: one round of 450 records per partition stays under the 1 MiB segment.
  return orjson.dumps(dict(event(i), payload=f'v{version}-{i}-' + 'x' * 2000))


def test_a_compacted_topic_loads_what_the_log_holds_across_compacted_offsets(
    real_kafka, make_stream_load_server, tmp_path):
  """Keyed events on a compacted topic (1 MiB segments).  A first run loads version 0 and
  commits offset 450 of each partition.  Versions 1 and 2 of the same keys follow, then more
  than a segment of other keys, so both versions lie in closed segments: the cleaner removes
  every version 0 and 1 -- the committed offset 450 among them.  The second run starts at that
  compacted-away offset, reads across the gap, loads exactly the records the log holds past it
  (each once), and commits to the end offsets."""
  server = make_stream_load_server()
  topic = real_kafka.create_topic(real_kafka.unique_topic('compacted'), partitions=2, config={
      'cleanup.policy': 'compact', 'segment.bytes': str(1024 * 1024),
      'min.cleanable.dirty.ratio': '0.01', 'min.compaction.lag.ms': '0'})

  def produce_round(version: int, ids: range) -> None:
    for partition in (0, 1):
      keys = [i for i in ids if i % 2 == partition]
      real_kafka.produce(topic, [_versioned_event(i, version) for i in keys],
                         keys=[str(i).encode() for i in keys], partition=partition)

  group = f'g-{topic}'
  argv = pipeline_argv(real_kafka, server, [topic], group, str(tmp_path / 'dead'),
                       table='demo.events', batch_rows=500)
  produce_round(0, range(900))
  first = run_cli(argv)
  assert first.returncode == 0, first.stderr[-3000:]
  assert real_kafka.committed(group, topic) == {0: 450, 1: 450}

  produce_round(1, range(900))
  produce_round(2, range(900))
  produce_round(3, range(10000, 11100))  # other keys: > 1 MiB, closes the segments before

  def compacted():
    log = real_kafka.read_values(topic)
    return all(450 not in {offset for offset, _, _ in log[p]} for p in (0, 1))

  wait_for(compacted, 'the cleaner to remove the committed offset 450', timeout_secs=60)
  log = real_kafka.read_values(topic)
  ends = real_kafka.end_offsets(topic)
  assert all(len(log[p]) < ends[p] - 450 for p in (0, 1))  # gaps past the committed offset
  second = run_cli(argv)
  assert second.returncode == 0, second.stderr[-3000:]

  expected = [(i, f'v0-{i}-' + 'x' * 2000) for i in range(900)]
  for records in log.values():
    expected += [(orjson.loads(value)['event_id'], orjson.loads(value)['payload'])
                 for offset, _, value in records if offset >= 450]
  assert server.query('SELECT event_id, payload FROM demo.events ORDER BY event_id, payload') \
      == sorted(expected)
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  _assert_committed_to_the_end(real_kafka, group, [topic])


# -- e: transactions ----------------------------------------------------------------------------


def test_aborted_transactions_never_load_and_offsets_pass_the_transaction_markers(
    real_kafka, make_stream_load_server, tmp_path):
  """Committed and aborted transactions interleaved; every partition ends with a transaction
  marker.  A bounded run, then a streaming run over more transactions: only committed events
  load (once), and the group commits up to the end offsets, past the markers."""
  server = make_stream_load_server()
  topic = real_kafka.create_topic(real_kafka.unique_topic('txn'))
  real_kafka.produce_transaction(topic, event_bytes(range(0, 400)))
  real_kafka.produce_transaction(topic, event_bytes(range(10000, 10400)), abort=True)
  real_kafka.produce_transaction(topic, event_bytes(range(400, 800)))
  real_kafka.produce_transaction(topic, event_bytes(range(20000, 20400)), abort=True)
  # The aborted records are in the log (a read_uncommitted consumer sees them).
  uncommitted = real_kafka.read_values(topic, isolation_level='read_uncommitted')
  assert sum(len(records) for records in uncommitted.values()) == 1600
  group = f'g-{topic}'
  argv = pipeline_argv(real_kafka, server, [topic], group, str(tmp_path / 'dead'),
                       table='demo.events', batch_rows=250)
  result = run_cli(argv)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_events_exactly_once(server, range(800))
  _assert_committed_to_the_end(real_kafka, group, [topic])

  real_kafka.produce_transaction(topic, event_bytes(range(800, 1200)))
  real_kafka.produce_transaction(topic, event_bytes(range(30000, 30400)), abort=True)
  proc = start_cli(_streaming(argv) + ['--batch_interval_secs=1'],
                   log_path=str(tmp_path / 'streaming.log'))
  try:
    wait_for(lambda: (_events_loaded(server) >= 1200 and
                      real_kafka.committed(group, topic) == real_kafka.end_offsets(topic)),
             'the committed transaction loaded and the offsets past the last marker',
             proc=proc)
    _drain(proc, 'transactions')
  finally:
    _stop(proc)
  assert_events_exactly_once(server, range(1200))
  _assert_committed_to_the_end(real_kafka, group, [topic])


# -- f2: topic patterns, new topics and added partitions while a job runs -----------------------


def _add_partitions(kafka, topic: str, total: int) -> None:
  """Grows ``topic`` to ``total`` partitions (CreatePartitions) and waits for their leaders."""
  from confluent_kafka.admin import NewPartitions  # pylint: disable=import-outside-toplevel
  admin = kafka.admin()
  admin.create_partitions([NewPartitions(topic, total)])[topic].result(timeout=60)
  kafka.wait_for_leaders(topic, total, kafka.replication)


def _produce_to(kafka, topic: str, partition: int, values: Sequence[bytes]) -> None:
  """``values`` to one partition, with a fresh producer (its metadata knows the new partitions)."""
  from confluent_kafka import Producer  # pylint: disable=import-outside-toplevel
  errors = []
  producer = Producer(kafka.client_config(acks='all'))
  for value in values:
    producer.produce(topic, value, partition=partition,
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
  assert producer.flush(60) == 0 and not errors, errors


def _log_text(path: str) -> str:
  with open(path, encoding='utf-8', errors='replace') as handle:
    return handle.read()


def test_a_pattern_job_loads_a_topic_created_and_partitions_added_while_it_runs(
    real_kafka, make_stream_load_server, tmp_path):
  """``--topic_pattern`` with ``--auto_offset_reset=latest`` on a real broker: the topic there at
  start is read from where it was; a topic created while the job runs and two partitions added
  to the first topic are found within the discovery interval and read from their first record
  (records produced before they were found load too), each record once; SIGTERM drains and
  the group's offsets reach the end offsets of all of them."""
  server = make_stream_load_server()
  prefix = real_kafka.unique_topic('pat').replace('-', '_')
  first = real_kafka.create_topic(f'{prefix}_a', partitions=2)
  group = f'g-{prefix}'
  argv = [a for a in _streaming(pipeline_argv(
      real_kafka, server, ['x'], group, str(tmp_path / 'dead'), table='demo.events',
      auto_offset_reset='latest', topic_discovery_interval_secs=1, batch_interval_secs=1))
          if not a.startswith('--topics=')] + [f'--topic_pattern={prefix}_[a-z]']
  log = str(tmp_path / 'pattern.log')
  proc = start_cli(argv, log_path=log)
  try:
    wait_for(lambda: 'Reading 2 partitions' in _log_text(log), 'the read started', proc=proc)
    real_kafka.produce(first, event_bytes(range(0, 100)))
    wait_for(lambda: _events_loaded(server) == 100, 'the first topic loaded', proc=proc)
    second = real_kafka.create_topic(f'{prefix}_b', partitions=3)
    real_kafka.produce(second, event_bytes(range(100, 200)))
    wait_for(lambda: _events_loaded(server) == 200, 'the topic created while running loaded',
             proc=proc)
    _add_partitions(real_kafka, first, 4)
    _produce_to(real_kafka, first, 2, event_bytes(range(200, 230)))
    _produce_to(real_kafka, first, 3, event_bytes(range(230, 260)))
    wait_for(lambda: _events_loaded(server) == 260, 'the added partitions loaded', proc=proc)
    _drain(proc, 'topic pattern')
  finally:
    _stop(proc)
  assert_events_exactly_once(server, range(260))
  _assert_committed_to_the_end(real_kafka, group, [first, second])
  text = _log_text(log)
  assert text.count(f'Discovered topic {second} ') == 1, text[-3000:]
  assert text.count(f'Discovered 2 new partition(s) of topic {first} ') == 1, text[-3000:]
  assert read_dead_letters(str(tmp_path / 'dead')) == []


def test_a_pattern_job_keeps_loading_when_a_topic_it_reads_is_deleted(
    real_kafka, make_stream_load_server, tmp_path):
  """A topic that ``--topic_pattern`` matched is deleted while the job runs: the job keeps
  loading the other topic and says so once (at the next discovery). Re-created under the
  same name (the documented limit), its records below the old offsets are skipped with one
  warning per partition and nothing loads twice; SIGTERM drains with exit 0 and the kept topic
  is committed to its end."""
  server = make_stream_load_server()
  prefix = real_kafka.unique_topic('del').replace('-', '_')
  kept = real_kafka.create_topic(f'{prefix}_a', partitions=2)
  doomed = real_kafka.create_topic(f'{prefix}_b', partitions=2)
  group = f'g-{prefix}'
  argv = [a for a in _streaming(pipeline_argv(
      real_kafka, server, ['x'], group, str(tmp_path / 'dead'), table='demo.events',
      topic_discovery_interval_secs=1, batch_interval_secs=1))
          if not a.startswith('--topics=')] + [f'--topic_pattern={prefix}_[a-z]']
  log = str(tmp_path / 'deleted.log')
  proc = start_cli(argv, log_path=log)
  try:
    real_kafka.produce(kept, event_bytes(range(0, 50)))
    real_kafka.produce(doomed, event_bytes(range(50, 100)))
    wait_for(lambda: _events_loaded(server) == 100, 'both topics loaded', proc=proc)
    admin = real_kafka.admin()
    for future in admin.delete_topics([doomed]).values():
      future.result(30)
    for start in range(100, 400, 50):  # a while of records after the delete, in steps
      real_kafka.produce(kept, event_bytes(range(start, start + 50)))
      wait_for(lambda end=start + 50: _events_loaded(server) == end,
               f'the kept topic loaded up to {start + 50}', proc=proc)
    wait_for(lambda: f'Topic {doomed} is no longer on ' in _log_text(log),
             'the deleted topic reported', proc=proc)
    # Re-created under the same name: read on from the old offsets (25 per partition), its
    # records below them skipped with a warning per partition, none loaded twice.
    real_kafka.create_topic(doomed, partitions=2)
    _produce_to(real_kafka, doomed, 0, event_bytes(range(400, 405)))
    _produce_to(real_kafka, doomed, 1, event_bytes(range(405, 410)))
    wait_for(lambda: _log_text(log).count(f'the broker sent offset 0, below the read position '
                                          f'25 (the topic was deleted and re-created?)') == 2,
             'both partitions of the re-created topic warned', proc=proc)
    real_kafka.produce(kept, event_bytes(range(410, 420)))
    wait_for(lambda: _events_loaded(server) == 410, 'the kept topic loaded on', proc=proc)
    _drain(proc, 'deleted topic')
  finally:
    _stop(proc)
  assert_events_exactly_once(server, list(range(400)) + list(range(410, 420)))
  _assert_committed_to_the_end(real_kafka, group, [kept])
  text = _log_text(log)
  assert text.count(f'Topic {doomed} is no longer on ') == 1, text[-3000:]


def test_a_topics_job_reads_partitions_added_while_it_runs(real_kafka, make_stream_load_server,
                                                           tmp_path):
  """Plain ``--topics``: a partition added to the topic is read too (from its first record)."""
  server = make_stream_load_server()
  topic = real_kafka.create_topic(real_kafka.unique_topic('grow'), partitions=2)
  real_kafka.produce(topic, event_bytes(range(50)))
  group = f'g-{topic}'
  argv = _streaming(pipeline_argv(real_kafka, server, [topic], group, str(tmp_path / 'dead'),
                                  table='demo.events', topic_discovery_interval_secs=1,
                                  batch_interval_secs=1))
  log = str(tmp_path / 'topics.log')
  proc = start_cli(argv, log_path=log)
  try:
    wait_for(lambda: _events_loaded(server) == 50, 'the records there at start', proc=proc)
    _add_partitions(real_kafka, topic, 3)
    _produce_to(real_kafka, topic, 2, event_bytes(range(50, 80)))
    wait_for(lambda: _events_loaded(server) == 80, 'the added partition loaded', proc=proc)
    _drain(proc, 'added partition')
  finally:
    _stop(proc)
  assert_events_exactly_once(server, range(80))
  _assert_committed_to_the_end(real_kafka, group, [topic])
  assert _log_text(log).count(f'Discovered 1 new partition(s) of topic {topic} ') == 1


# -- g: SASL and TLS ----------------------------------------------------------------------------


def _listener(kafka, protocol: str):
  """(a stand-in with the listener's bootstrap servers, its --consumer_config value)."""
  if protocol == 'SASL_PLAINTEXT':
    config = kafka.sasl_config()
  else:
    config = kafka.ssl_config()
  servers = config.pop('bootstrap.servers')
  return (types.SimpleNamespace(bootstrap_servers=servers),
          ';'.join(f'{k}={v}' for k, v in config.items()))


@pytest.mark.parametrize('protocol', ['SASL_PLAINTEXT', 'SSL'])
def test_the_cli_reads_through_sasl_plain_and_tls_listeners(real_kafka, make_stream_load_server,
                                                            tmp_path, protocol):
  server = make_stream_load_server()
  topic = real_kafka.unique_topic(f'sec-{protocol.lower()}')
  ids = list(range(1000))
  real_kafka.produce(topic, event_bytes(ids))
  listener, consumer_config = _listener(real_kafka, protocol)
  group = f'g-{topic}'
  result = run_cli(pipeline_argv(listener, server, [topic], group, str(tmp_path / 'dead'),
                                 table='demo.events', consumer_config=consumer_config))
  assert result.returncode == 0, result.stderr[-3000:]
  assert_events_exactly_once(server, ids)
  assert real_kafka.committed(group, topic) == real_kafka.end_offsets(topic)


def test_a_wrong_sasl_password_fails_at_start_with_a_clear_error(
    real_kafka, make_stream_load_server, tmp_path):
  server = make_stream_load_server()
  topic = real_kafka.unique_topic('sec-wrong')
  real_kafka.produce(topic, event_bytes(range(100)))
  listener, _ = _listener(real_kafka, 'SASL_PLAINTEXT')
  consumer_config = ('security.protocol=SASL_PLAINTEXT;sasl.mechanisms=PLAIN;'
                     'sasl.username=alice;sasl.password=not-the-password')
  group = f'g-{topic}'
  result = run_cli(pipeline_argv(listener, server, [topic], group, str(tmp_path / 'dead'),
                                 table='demo.events', consumer_config=consumer_config),
                   timeout_secs=120)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert errors, result.stderr[-3000:]
  assert 'authentication' in errors[-1].lower(), errors[-1]
  assert 'not-the-password' not in result.stderr + result.stdout
  assert server.loads == [] and real_kafka.committed(group, topic) == {}
