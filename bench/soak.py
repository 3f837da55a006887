"""Soak test: N minutes of continuous production with server faults on, then a tally.

Not part of CI. Everything runs on this machine, on loopback only: a local Kafka (librdkafka's
mock cluster, in this process), the local Stream Load server (2 FEs, 2 BEs, in this process) and
the real pipeline CLI (``python -m pipelines.kafka_to_doris``) in subprocesses.

While the clock runs:

* a producer thread writes events (demo.events, DUPLICATE KEY), user upserts (demo.users,
  UNIQUE KEY) and now and then a malformed record (dead letters) at ``--rate`` records/s;
* a fault thread injects a random server fault every ``--fault_every_secs`` (HTTP 500/503,
  resets mid-body, slow BEs, Publish Timeout, too many versions, too many transactions, a BE or
  an FE down for a few seconds);
* the pipeline runs back to back as bounded runs (``--stop_at_end``); with
  ``--kill_probability`` a run is SIGKILLed at a random moment and the next run restarts from the
  committed offsets.  ``--streaming`` instead runs one streaming pipeline, killed and restarted
  every ``--restart_every_secs``.

At the end production and faults stop, a last bounded run drains what is left, and the script
prints rows produced / loaded / dead-lettered / duplicated per table, and exits 1 when a row is
missing or a unique-key table holds a key twice.

Example::

    .venv/bin/python bench/soak.py --minutes 5 --rate 2000 --kill_probability 0.3
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
  p.add_argument('--streaming', action='store_true',
                 help='run one streaming pipeline (restarted every --restart_every_secs)')
  p.add_argument('--restart_every_secs', type=float, default=30.0)
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
  rng = random.Random(args.seed)
  work_dir = args.work_dir or tempfile.mkdtemp(prefix='soak-')
  os.makedirs(work_dir, exist_ok=True)
  dead_dir = os.path.join(work_dir, 'dead_letters')
  log_path = os.path.join(work_dir, 'pipeline.log')
  kafka = KafkaCluster(compression='lz4')  # lz4: the mock keeps ~5 MB per partition
  server = StreamLoadServer(schema_path=SCHEMA, user='root', password=PASSWORD, num_fes=2,
                            num_bes=2, data_dir=os.path.join(work_dir, 'server')).start()
  topics = [kafka.unique_topic('soak-events'), kafka.unique_topic('soak-users')]
  group = f'soak-{os.getpid()}'
  stop = threading.Event()
  # Create both topics before the first run reads them.
  kafka.produce(topics[0], [orjson.dumps({'event_id': -1, 'event_type': 'start'})])
  kafka.produce(topics[1], [orjson.dumps({'id': -1, 'name': 'start'})], keys=[b'-1'])
  producer = Producer(kafka, topics[0], topics[1], args.rate, rng, stop)
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
    if args.streaming:
      while time.monotonic() < deadline:
        proc = start(pipeline_cmd(kafka, server, topics, group, dead_dir, args.batch_rows,
                                  bounded=False), log_path)
        try:
          proc.wait(timeout=max(1.0, min(args.restart_every_secs, deadline - time.monotonic())))
          stats[f'exit {proc.returncode}'] += 1
        except subprocess.TimeoutExpired:
          kill(proc)
          stats['killed'] += 1
    else:
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
  event_rows, distinct_events, max_event = server.query(
      'SELECT count(*), count(DISTINCT event_id), max(event_id) FROM demo.events '
      'WHERE event_id >= 0')[0]
  assert max_event is None or max_event < producer.events, 'an event id that was never produced'
  user_rows, distinct_users = server.query(
      'SELECT count(*), count(DISTINCT id) FROM demo.users WHERE id >= 0')[0]
  stale_users = sum(
      1 for uid, name in server.query('SELECT id, name FROM demo.users WHERE id >= 0')
      if name != f'u{uid}-v{producer.user_versions.get(uid)}')
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


if __name__ == '__main__':
  sys.exit(main())
