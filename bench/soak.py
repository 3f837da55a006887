"""Soak test: a streaming job for N minutes under steady input and scheduled faults, then a tally.

Everything runs on this machine, on loopback only: a local Kafka (librdkafka's mock cluster, in
this process), the local Stream Load server (2 FEs, 2 BEs, in this process) and the real pipeline
CLI (``python -m pipelines.kafka_to_doris``) in a subprocess.

While the clock runs a producer thread writes events (demo.events, DUPLICATE KEY), user upserts
(demo.users, UNIQUE KEY) and now and then a malformed record (dead letters) at ``--rate``
records/s, and one streaming job loads them.  Faults come on a schedule (fractions of the run):
the job is SIGKILLed and restarted at 10 %, the BEs answer 503 at 25 %, responses are lost after
commit at 40 %, the whole cluster is down for ``--outage_secs`` at 55 %, BEs reset connections
mid-body at 75 %, and a Kafka broker restarts at 85 % (down for ``--broker_down_secs``: its
connections close and new ones are refused, its partitions -- some of each topic's, maybe the
group's coordinator or the load journal's -- keep it as their leader, as a restarted broker's
do).  Every 10 s the job's RSS, open file descriptors and threads are sampled.

At the end production stops, the job catches up (committed lag 0), is stopped with SIGTERM (a
drain: exit 0), and the tables are compared with what was produced: every event once, every user
at its newest version, every malformed record dead-lettered.  Memory is judged on the job that
ran last (the restarted one), after its first 2 minutes (or its first third in shorter runs): the
slope of a least-squares line through its RSS samples, in MB per hour.  Last line::

  soak: <N> min, <rows> rows exact, RSS <first>/<last> MB (slope <s> MB/h), fds <a>/<b>, threads <c>/<d>

(``exact`` becomes ``NOT EXACT`` when a row is missing, doubled or stale).  Exit 1 when the rows
are not exact, the drain fails, the slope passes ``--max_slope_mb_per_hour`` (runs of 10 minutes
or more) or the job ends with more file descriptors or threads than it had in the first two
thirds after warm-up.  librdkafka's threads are judged by kind: a client keeps one thread per
broker it knows, and a broker restart makes a client drop and start its thread again (or not yet),
so their total moves by a thread or two without anything leaking; what may not grow is the
number of clients (``rdk:main``), any broker's threads past one per client, and the other threads.

``--bounded`` runs the older mode instead: bounded runs back to back, some SIGKILLed at a random
moment, random server faults every ``--fault_every_secs``.

Example::

    .venv/bin/python bench/soak.py --minutes 20 --rate 1000
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import orjson

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from devtools.local_kafka import KafkaCluster  # noqa: E402
from stream_load_emulator import StreamLoadServer  # noqa: E402

SCHEMA = os.path.join(REPO_ROOT, 'pipelines', 'samples', 'demo_schema.sql')
PASSWORD = 'soak-secret'
BAD_RECORDS = (b'{"event_id": ', b'\xff\xfe\x00', b'[1, 2]')
# (kind, kwargs); *_down faults last until the fault thread clears them.
FAULTS = (
    ('http_500', dict(times=2)),
    ('http_503', dict(times=2)),
    ('reset_mid_body', dict(times=1)),
    ('slow', dict(times=1, delay_secs=1.5)),
    ('publish_timeout', dict(times=2, delay_secs=0.5)),
    ('too_many_versions', dict(times=2)),
    ('txn_limit', dict(times=1)),
    ('be_down', dict(node=1)),
    ('fe_down', dict(node=1)),
)
MAX_RUN_SECS = 600  # one bounded run never takes this long; a hung run is killed and reported
_FD_CHURN = 4  # HTTP connections open or closed at the moment of a sample
RESTARTED_BROKER = 1  # the mock cluster's brokers are 1..3


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--minutes', type=float, default=5.0, help='how long to produce (default 5)')
  p.add_argument('--rate', type=int, default=1000, help='records per second (default 1000)')
  p.add_argument('--fault_every_secs', type=float, default=3.0,
                 help='a new server fault this often (default 3 s; 0: no faults)')
  p.add_argument('--down_secs', type=float, default=4.0,
                 help='how long a be_down/fe_down fault lasts (default 4 s)')
  p.add_argument('--kill_probability', type=float, default=0.2,
                 help='chance that a bounded run is SIGKILLed at a random moment (default 0.2)')
  p.add_argument('--bounded', action='store_true',
                 help='bounded runs back to back with random faults and kills (the older mode)')
  p.add_argument('--outage_secs', type=float, default=30.0,
                 help='how long the whole cluster is down (default 30 s, at most a tenth of '
                      'the run)')
  p.add_argument('--broker_down_secs', type=float, default=10.0,
                 help='how long a Kafka broker is down in its restart (default 10 s, at most a '
                      'twelfth of the run)')
  p.add_argument('--sample_secs', type=float, default=10.0,
                 help='RSS, fds and threads of the job are sampled this often (default 10 s)')
  p.add_argument('--max_slope_mb_per_hour', type=float, default=5.0,
                 help='RSS slope allowed for runs of 10 minutes or more (default 5 MB/h)')
  p.add_argument('--batch_rows', type=int, default=2000)
  p.add_argument('--seed', type=int, default=1)
  p.add_argument('--work_dir', default=None, help='logs, dead letters, server data (default: temp)')
  args = p.parse_args(argv)
  if args.minutes <= 0 or args.minutes > 24 * 60:
    p.error('--minutes must be in (0, 1440]')
  if args.rate < 1 or not 0 <= args.kill_probability <= 1:
    p.error('--rate must be >= 1 and --kill_probability within [0, 1]')
  return args


class Producer(threading.Thread):
  """Produces events, user upserts and a few bad records until ``stop`` is set."""

  def __init__(self, kafka, events_topic, users_topic, rate, rng, stop):
    super().__init__(daemon=True, name='soak-producer')
    self.kafka, self.events_topic, self.users_topic = kafka, events_topic, users_topic
    self.rate, self.rng, self.stop = rate, rng, stop
    self.events = 0
    self.bad = 0
    self.user_versions = {}
    self.error = None

  def run(self):
    try:
      self._run()
    except Exception as error:  # pylint: disable=broad-except
      self.error = error

  def _run(self):
    tick = 0.2
    per_tick = max(1, int(self.rate * tick))
    next_tick = time.monotonic()
    while not self.stop.is_set():
      events, users, user_keys = [], [], []
      for _ in range(per_tick):
        roll = self.rng.random()
        if roll < 0.001:
          events.append(self.rng.choice(BAD_RECORDS))
          self.bad += 1
        elif roll < 0.8:
          i = self.events
          self.events += 1
          events.append(orjson.dumps({'event_id': i, 'user_id': i % 1000, 'event_type': 'soak',
                                      'amount': f'{i % 100}.25', 'payload': f'p{i}'}))
        else:
          uid = self.rng.randrange(5000)
          version = self.user_versions.get(uid, -1) + 1
          self.user_versions[uid] = version
          users.append(orjson.dumps({'id': uid, 'name': f'u{uid}-v{version}',
                                     'age': version % 100}))
          user_keys.append(str(uid).encode())
      # Events round robin (every partition busy); users keyed, so one user's versions stay in
      # Kafka order within one partition.
      self.kafka.produce(self.events_topic, events)
      if users:
        self.kafka.produce(self.users_topic, users, keys=user_keys)
      next_tick += tick
      self.stop.wait(max(0.0, next_tick - time.monotonic()))


class Faults(threading.Thread):
  """Injects a random fault every ``every_secs`` until ``stop`` is set; counts them."""

  def __init__(self, server, every_secs, down_secs, rng, stop):
    super().__init__(daemon=True, name='soak-faults')
    self.server, self.every_secs, self.down_secs, self.rng, self.stop = (
        server, every_secs, down_secs, rng, stop)
    self.injected = {}

  def run(self):
    if not self.every_secs:
      return
    while not self.stop.wait(self.every_secs):
      kind, kwargs = self.rng.choice(FAULTS)
      self.server.inject_fault(kind, **kwargs)
      self.injected[kind] = self.injected.get(kind, 0) + 1
      if kind.endswith('_down'):
        self.stop.wait(self.down_secs)
        self.server.clear_faults()
    self.server.clear_faults()


def pipeline_cmd(kafka, server, topics, group, dead_dir, batch_rows, bounded=True):
  cmd = [sys.executable, '-m', 'pipelines.kafka_to_doris',
         f'--bootstrap_servers={kafka.bootstrap_servers}', f'--topics={",".join(topics)}',
         f'--group_id={group}', f'--fe_nodes={",".join(server.fe_urls)}', '--user=root',
         f'--topic_table_map={topics[0]}=demo.events,{topics[1]}=demo.users',
         f'--dead_letter_path={dead_dir}', f'--batch_rows={batch_rows}',
         '--batch_interval_secs=2', '--max_retries=8', '--progress_interval_secs=0']
  if bounded:
    cmd.append('--stop_at_end')
  return cmd


def start(cmd, log_path):
  env = dict(os.environ, STREAM_LOAD_PASSWORD=PASSWORD)  # not on the command line
  log = open(log_path, 'ab')
  try:
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
  finally:
    log.close()


def kill(proc):
  if proc.poll() is None:
    os.kill(proc.pid, signal.SIGKILL)
  proc.wait()


def run_bounded(cmd, log_path, rng, kill_probability, stats):
  """One bounded run, maybe SIGKILLed at a random moment; returns its exit code."""
  proc = start(cmd, log_path)
  kill_at = rng.uniform(0.5, 6.0) if rng.random() < kill_probability else None
  try:
    proc.wait(timeout=kill_at if kill_at is not None else MAX_RUN_SECS)
  except subprocess.TimeoutExpired:
    kill(proc)
    stats['killed' if kill_at is not None else 'hung'] += 1
    return None
  stats['finished' if proc.returncode == 0 else f'exit {proc.returncode}'] += 1
  return proc.returncode


def tally(server, producer):
  """(event rows, distinct events, highest event id, user rows, distinct users, users not at
  their newest version) in the tables."""
  event_rows, distinct_events, max_event = server.query(
      'SELECT count(*), count(DISTINCT event_id), max(event_id) FROM demo.events '
      'WHERE event_id >= 0')[0]
  user_rows, distinct_users = server.query(
      'SELECT count(*), count(DISTINCT id) FROM demo.users WHERE id >= 0')[0]
  stale_users = sum(
      1 for uid, name in server.query('SELECT id, name FROM demo.users WHERE id >= 0')
      if name != f'u{uid}-v{producer.user_versions.get(uid)}')
  return event_rows, distinct_events, max_event, user_rows, distinct_users, stale_users


def count_dead_letters(dead_dir):
  """(dead letters written, distinct source records among them): a record read again after a
  kill is dead-lettered again (at least once)."""
  total, records = 0, set()
  for name in glob.glob(os.path.join(dead_dir, '*.jsonl')):
    with open(name, 'rb') as handle:
      for line in handle:
        if line.strip():
          letter = orjson.loads(line)
          total += 1
          records.add((letter.get('topic'), letter.get('partition'), letter.get('offset'),
                       letter.get('stage')))
  return total, len(records)


def main(argv=None) -> int:
  args = parse_args(argv)
  return bounded_soak(args) if args.bounded else streaming_soak(args)


class Setup:
  """What both modes run against: a work dir, the local Kafka with both topics made, the local
  server (2 FEs, 2 BEs), the consumer group, and a producer ready to start."""

  def __init__(self, args, rng, stop):
    self.work_dir = args.work_dir or tempfile.mkdtemp(prefix='soak-')
    os.makedirs(self.work_dir, exist_ok=True)
    self.dead_dir = os.path.join(self.work_dir, 'dead_letters')
    self.log_path = os.path.join(self.work_dir, 'pipeline.log')
    # lz4: the mock keeps ~5 MB per partition; restartable: a broker restarts in the run
    self.kafka = KafkaCluster(compression='lz4', restartable=True)
    self.server = StreamLoadServer(schema_path=SCHEMA, user='root', password=PASSWORD, num_fes=2,
                                   num_bes=2,
                                   data_dir=os.path.join(self.work_dir, 'server')).start()
    kafka = self.kafka
    self.topics = [kafka.unique_topic('soak-events'), kafka.unique_topic('soak-users')]
    self.group = f'soak-{os.getpid()}'
    # Create both topics before the first run reads them.
    kafka.produce(self.topics[0], [orjson.dumps({'event_id': -1, 'event_type': 'start'})])
    kafka.produce(self.topics[1], [orjson.dumps({'id': -1, 'name': 'start'})], keys=[b'-1'])
    self.producer = Producer(kafka, self.topics[0], self.topics[1], args.rate, rng, stop)

  def cmd(self, batch_rows, bounded=True):
    return pipeline_cmd(self.kafka, self.server, self.topics, self.group, self.dead_dir,
                        batch_rows, bounded=bounded)


def bounded_soak(args) -> int:
  """The older mode: bounded runs back to back, random faults and kills, then a drain."""
  rng = random.Random(args.seed)
  stop = threading.Event()
  setup = Setup(args, rng, stop)
  work_dir, dead_dir, log_path = setup.work_dir, setup.dead_dir, setup.log_path
  kafka, server, topics, group = setup.kafka, setup.server, setup.topics, setup.group
  producer = setup.producer
  faults = Faults(server, args.fault_every_secs, args.down_secs, random.Random(args.seed + 1),
                  stop)
  stats = collections.Counter()
  print(f'soak: {args.minutes} min at {args.rate} records/s, faults every '
        f'{args.fault_every_secs} s, kill probability {args.kill_probability}, work dir {work_dir}',
        flush=True)
  deadline = time.monotonic() + args.minutes * 60
  producer.start()
  faults.start()
  try:
    while time.monotonic() < deadline:
      run_bounded(pipeline_cmd(kafka, server, topics, group, dead_dir, args.batch_rows),
                  log_path, rng, args.kill_probability, stats)
  finally:
    stop.set()
    producer.join(timeout=60)
    faults.join(timeout=60)
    server.clear_faults()
  # Drain: faults off, nothing new produced, no kills.
  drain = run_bounded(pipeline_cmd(kafka, server, topics, group, dead_dir, args.batch_rows),
                      log_path, rng, 0.0, stats)

  produced_events = producer.events
  event_rows, distinct_events, max_event, user_rows, distinct_users, stale_users = tally(
      server, producer)
  assert max_event is None or max_event < producer.events, 'an event id that was never produced'
  dead, dead_records = count_dead_letters(dead_dir)
  missing_events = produced_events - distinct_events
  missing_users = len(producer.user_versions) - distinct_users
  print()
  print(f'runs: {dict(stats)}; faults injected: {faults.injected}; drain exit code: {drain}')
  print(f'events (demo.events, duplicate key): produced {produced_events}, loaded '
        f'{distinct_events} distinct in {event_rows} rows, duplicated '
        f'{event_rows - distinct_events}, missing {missing_events}')
  print(f'users  (demo.users, unique key): {len(producer.user_versions)} keys produced, '
        f'{distinct_users} in table, duplicated {user_rows - distinct_users}, missing '
        f'{missing_users}, not at their newest version {stale_users}')
  print(f'dead-lettered: {dead} letters for {dead_records} distinct records (bad records '
        f'produced: {producer.bad})')
  print(f'pipeline log: {log_path}')
  if producer.error is not None:
    print(f'producer failed: {producer.error!r}')
  server.stop()
  kafka.close()
  ok = (missing_events == 0 and dead_records == producer.bad and missing_users == 0 and
        user_rows == distinct_users and stale_users == 0 and producer.error is None and
        drain == 0)
  print('soak: OK' if ok else 'soak: FAILED')
  return 0 if ok else 1


class Sampler(threading.Thread):
  """RSS (MB), open file descriptors and threads of one process every ``every_secs``, and the
  process's threads counted by name (``names``, one Counter per sample)."""

  def __init__(self, pid, every_secs, stop):
    super().__init__(daemon=True, name='soak-sampler')
    self.pid, self.every_secs, self.stop = pid, every_secs, stop
    self.samples = []  # (seconds since start, rss MB, fds, threads)
    self.names = []  # Counter of thread names, per sample

  def run(self):
    started = time.monotonic()
    while True:
      try:
        with open(f'/proc/{self.pid}/status', encoding='ascii') as status:
          fields = dict(line.split(':', 1) for line in status if ':' in line)
        rss = int(fields['VmRSS'].split()[0]) / 1024
        threads = int(fields['Threads'])
        fds = len(os.listdir(f'/proc/{self.pid}/fd'))
        names = collections.Counter(_thread_names(self.pid))
      except (OSError, KeyError, ValueError):
        return  # the process is gone
      self.names.append(names)
      self.samples.append((time.monotonic() - started, rss, fds, threads))
      if self.stop.wait(self.every_secs):
        return


def _thread_names(pid):
  names = []
  for task in os.listdir(f'/proc/{pid}/task'):
    try:
      with open(f'/proc/{pid}/task/{task}/comm', encoding='utf-8', errors='replace') as comm:
        names.append(comm.read().strip())
    except OSError:
      pass  # the thread ended meanwhile
  return names


def threads_grew(early, last) -> str:
  """What kind of thread ``last`` (a Counter of thread names) has more of than every sample of
  ``early`` had, or '' (see the module's docstring)."""
  def kafka_clients(names):
    return names.get('rdk:main', 0)

  def others(names):
    return sum(n for name, n in names.items() if not name.startswith('rdk:'))

  if kafka_clients(last) > max(kafka_clients(names) for names in early):
    return f'Kafka clients {kafka_clients(last)}'
  if others(last) > max(others(names) for names in early):
    return f'threads other than librdkafka\'s {others(last)}'
  for name, n in last.items():
    # rdk:broker-1: a client's bootstrap and group-coordinator threads, made with the client.
    if name.startswith('rdk:broker') and name != 'rdk:broker-1' and n > max(kafka_clients(last), 1):
      return f'{n} {name} threads for {kafka_clients(last)} clients'
  return ''


def slope_mb_per_hour(samples):
  """Least-squares slope of RSS over time, in MB per hour (0 with fewer than 2 samples)."""
  if len(samples) < 2:
    return 0.0
  ts = [t for t, *_ in samples]
  rs = [r for _, r, *_ in samples]
  mean_t, mean_r = sum(ts) / len(ts), sum(rs) / len(rs)
  var = sum((t - mean_t) ** 2 for t in ts)
  if not var:
    return 0.0
  return sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rs)) / var * 3600


def wait_for_lag_zero(kafka, group, topics, timeout_secs):
  """True once the group's committed offsets reach the end of every partition."""
  deadline = time.monotonic() + timeout_secs
  while time.monotonic() < deadline:
    if all(kafka.committed(group, topic) == kafka.end_offsets(topic) for topic in topics):
      return True
    time.sleep(1.0)
  return False


def streaming_soak(args) -> int:
  """One streaming job for ``args.minutes`` under steady input and scheduled faults."""
  rng = random.Random(args.seed)
  stop, sampling = threading.Event(), threading.Event()
  setup = Setup(args, rng, stop)
  work_dir, dead_dir, log_path = setup.work_dir, setup.dead_dir, setup.log_path
  kafka, server, topics, group = setup.kafka, setup.server, setup.topics, setup.group
  producer = setup.producer
  total = args.minutes * 60
  outage = min(args.outage_secs, total / 10)
  broker_down = min(args.broker_down_secs, total / 12)
  cmd = setup.cmd(args.batch_rows, bounded=False)
  print(f'soak: {args.minutes:g} min streaming at {args.rate} records/s, work dir {work_dir}',
        flush=True)
  events = []
  started = time.monotonic()

  def at(fraction):
    stop.wait(max(0.0, started + fraction * total - time.monotonic()))

  proc = start(cmd, log_path)
  producer.start()
  try:
    at(0.10)
    kill(proc)
    events.append('SIGKILL and restart')
    proc = start(cmd, log_path)
    sampler = Sampler(proc.pid, args.sample_secs, sampling)
    sampler.start()
    at(0.25)
    server.inject_fault('http_503', times=5)
    events.append('5 x 503')
    at(0.40)
    server.inject_fault('response_lost', times=2)
    events.append('2 responses lost after commit')
    at(0.55)
    server.inject_fault('fe_down', times=None)
    server.inject_fault('be_down', times=None)
    stop.wait(outage)
    server.clear_faults()
    events.append(f'cluster down {outage:.0f} s')
    at(0.75)
    server.inject_fault('reset_mid_body', times=2)
    events.append('2 resets mid-body')
    at(0.85)
    kafka.broker_down(RESTARTED_BROKER)
    stop.wait(broker_down)
    kafka.broker_up(RESTARTED_BROKER)
    events.append(f'Kafka broker {RESTARTED_BROKER} restarted (down {broker_down:.0f} s)')
    at(1.0)
  finally:
    stop.set()
    producer.join(timeout=60)
  caught_up = proc.poll() is None and wait_for_lag_zero(kafka, group, topics, 300)
  server.clear_faults()
  samples, names = list(sampler.samples), list(sampler.names)
  proc.send_signal(signal.SIGTERM)
  try:
    drain = proc.wait(timeout=180)
  except subprocess.TimeoutExpired:
    kill(proc)
    drain = None
  sampling.set()
  sampler.join(timeout=30)

  event_rows, distinct_events, _, user_rows, distinct_users, stale_users = tally(server, producer)
  _, dead_records = count_dead_letters(dead_dir)
  server.stop()
  kafka.close()
  exact = (event_rows == distinct_events == producer.events and
           user_rows == distinct_users == len(producer.user_versions) and stale_users == 0 and
           dead_records == producer.bad and caught_up and producer.error is None)
  ran = samples[-1][0] if samples else 0.0
  warm = min(120.0, ran / 3)
  judged_at = [i for i, sample in enumerate(samples) if sample[0] >= warm] or [len(samples) - 1]
  judged = [samples[i] for i in judged_at]
  judged_names = [names[i] for i in judged_at]
  first, last = judged[0], judged[-1]
  slope = slope_mb_per_hour(judged)
  print(f'faults: {"; ".join(events)}; caught up: {caught_up}; drain exit code: {drain}')
  print(f'events: produced {producer.events}, {distinct_events} distinct in {event_rows} rows; '
        f'users: {len(producer.user_versions)} keys, {distinct_users} in {user_rows} rows, '
        f'{stale_users} stale; dead letters for {dead_records} of {producer.bad} bad records')
  print(f'samples (s, RSS MB, fds, threads) after warm-up: '
        f'{[(round(t), round(r), f, n) for t, r, f, n in judged]}')
  print(f'pipeline log: {log_path}')
  rows = event_rows + user_rows
  print(f'soak: {args.minutes:g} min, {rows} rows {"exact" if exact else "NOT EXACT"}, RSS '
        f'{first[1]:.0f}/{last[1]:.0f} MB (slope {slope:.1f} MB/h), fds {first[2]}/{last[2]}, '
        f'threads {first[3]}/{last[3]}')
  flat = args.minutes < 10 or slope <= args.max_slope_mb_per_hour
  # Back to where they were: the pools fill during the first two thirds after warm-up (a flush
  # worker's thread and connection, started when the outage's backlog first needs them);
  # nothing may grow after that but the few connections that come and go with the loads.
  early = max(1, 2 * len(judged) // 3)
  fds_grew = last[2] > max(sample[2] for sample in judged[:early]) + _FD_CHURN
  grew = threads_grew(judged_names[:early], judged_names[-1])
  checks = (('rows not exact', exact), (f'drain exit code {drain}', drain == 0),
            (f'RSS slope over {args.max_slope_mb_per_hour} MB/h', flat),
            (f'fds grew to {last[2]}', not fds_grew), (f'threads grew: {grew}', not grew))
  failed = [what for what, ok in checks if not ok]
  if failed:
    print(f'soak failed: {"; ".join(failed)}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
