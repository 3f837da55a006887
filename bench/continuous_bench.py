"""Continuous operation: batch limits while streaming, and memory against the backlog.

Two measurements of ``python -m pipelines.kafka_to_doris`` as a user runs it, against the local
Kafka (librdkafka's mock cluster) and the local Stream Load server (count-only), in one run:

  * limits: a streaming job (no ``--stop_at_end``) fed ``--rate`` records/s of 1 KB for
    ``--secs`` seconds with ``--batch_rows=10000 --batch_interval_secs=10``, then stopped with
    SIGTERM (it drains: every record read is loaded and committed, and it exits 0).  The ideal
    is one load per 10,000 rows or per 10 s of arrivals, whichever limit comes first.
  * memory: bounded runs (``--stop_at_end``, default flags) over a backlog of 1x and 3x
    ``--backlog_mb`` MB of 1 KB records; the peak RSS the job reports (its VmHWM).

Last line: ``continuous: <loads> loads (ideal <n>), median <rows> rows, RSS <a> MB at 1x, <b> MB
at 3x input``.  Run: ``.venv/bin/python bench/continuous_bench.py``.

``--matrix`` measures memory against the backlog in several shapes instead, each at 1x and 3x
``--matrix_records`` ~1 KB JSON records (default 600k: a run reaches its steady memory within its
first ~3 s, so the 1x run must last well beyond that; 8 partitions get 240k: the local Kafka keeps
~100k records a partition), default flags: partitions 8 / 48 / 256 into
a server that stores the rows (slow) and into a count-only one (fast), and 48 partitions read by a
streaming job (no ``--stop_at_end``: stopped with SIGTERM once every record is loaded), and 48
partitions of the same records in Avro (Confluent wire format, ``--format=avro``) through a real
Schema Registry (``devtools.registry``: Java 17 and Maven).  One line per shape, then
``matrix: <shapes> shapes, worst 3x/1x <r>, peak <p> MB (bound <b> MB)``.  ``--matrix_shapes``
runs the shapes whose names contain one of its comma-separated words (``avro``, ``256p``).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from devtools.local_kafka import KafkaCluster  # pylint: disable=wrong-import-position
from stream_load_emulator import StreamLoadServer  # pylint: disable=wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = 'bench'
SCHEMA = ('CREATE DATABASE bench;\n'
          'CREATE TABLE bench.events (id BIGINT, note VARCHAR(2000)) DUPLICATE KEY(id) '
          'DISTRIBUTED BY HASH(id) BUCKETS 1;\n')
TOPICS_PER_BACKLOG = 4  # a mock partition keeps ~5 MiB (compressed) or 100k records
MOCK_RECORDS_PER_PARTITION = 90_000


def record(i: int) -> bytes:
  return orjson.dumps({'id': i, 'user_id': i % 9973, 'status': ('new', 'paid', 'sent')[i % 3],
                       'ts': '2026-11-30 10:00:00', 'note': f'{i:08d}' * 110})


def _argv(kafka: KafkaCluster, server: StreamLoadServer, topics: List[str], group: str,
          work: str, *extra: str) -> List[str]:
  return [sys.executable, '-m', 'pipelines.kafka_to_doris',
          f'--bootstrap_servers={kafka.bootstrap_servers}', f'--topics={",".join(topics)}',
          f'--group_id={group}', f'--fe_nodes={server.fe_url}', '--user=root',
          f'--password={PASSWORD}', '--table=bench.events',
          f'--dead_letter_path={os.path.join(work, "dead")}', '--progress_interval_secs=10',
          *extra]


def _wait(proc: subprocess.Popen, timeout_secs: float, log_path: str) -> Tuple[int, float]:
  """(exit code, peak RSS in MB) of the job, from its summary line.

  The job reports its own high-water mark (VmHWM): the kernel's ``ru_maxrss``
  of a child would count this process's memory (the mock Kafka holds the
  backlog here), inherited through fork.
  """
  code = proc.wait(timeout=timeout_secs)
  with open(log_path, encoding='utf-8', errors='replace') as log:
    summary = [line for line in log if line.startswith('summary:')]
  rss = float(summary[-1].rsplit('peak RSS ', 1)[1].split()[0]) if summary else float('nan')
  return code, rss


def limits(kafka: KafkaCluster, server: StreamLoadServer, work: str, rate: int,
           secs: float) -> Tuple[int, int, float]:
  """(loads, ideal loads, median rows per load) of a streaming job under steady input."""
  topic = kafka.unique_topic('steady')
  kafka.produce(topic, [record(-1)])
  log_path = os.path.join(work, 'limits.log')
  log = open(log_path, 'wb')
  proc = subprocess.Popen(_argv(kafka, server, [topic], 'bench-limits', work,
                                '--batch_rows=10000', '--batch_interval_secs=10'),
                          cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  # The job is up once the starting record is loaded.
  deadline = time.monotonic() + 120
  while not server.loads:
    if proc.poll() is not None or time.monotonic() > deadline:
      raise RuntimeError('the streaming job did not start; see limits.log')
    time.sleep(0.05)
  before = len(server.loads)
  rows_before = sum(entry['loaded_rows'] for entry in server.loads)
  started = time.monotonic()
  sent = 0
  while sent < rate * secs:
    chunk = [record(sent + i) for i in range(rate // 10)]
    kafka.produce(topic, chunk)
    sent += len(chunk)
    time.sleep(max(0.0, started + sent / rate - time.monotonic()))
  proc.send_signal(signal.SIGTERM)
  code, _ = _wait(proc, 60, log_path)
  if code != 0:
    raise RuntimeError(f'the drained job exited {code}; see limits.log')
  loads = [entry['loaded_rows'] for entry in server.loads[before:] if entry['status'] == 'Success']
  # Draining stops the reads: what was read is loaded and committed, the rest waits in Kafka.
  committed = sum(kafka.committed('bench-limits', topic).values())
  if committed != sum(loads) + rows_before:
    raise RuntimeError(f'{committed} records committed, {sum(loads) + rows_before} rows loaded')
  # One load per 10,000 rows or per 10 s of arrivals, whichever comes first.
  ideal = math.ceil(committed / min(10_000, rate * 10))
  return len(loads), ideal, statistics.median(loads)


def memory(kafka: KafkaCluster, server: StreamLoadServer, work: str, backlog_mb: int) -> float:
  """Peak RSS (MB) of a bounded run over ``backlog_mb`` MB of 1 KB records."""
  n = backlog_mb * 1000
  topics = [kafka.unique_topic(f'backlog{backlog_mb}') for _ in range(TOPICS_PER_BACKLOG)]
  for index, topic in enumerate(topics):
    kafka.produce(topic, [record(i) for i in range(index, n, len(topics))])
  before = sum(entry['loaded_rows'] for entry in server.loads)
  log_path = os.path.join(work, f'memory-{backlog_mb}.log')
  log = open(log_path, 'wb')
  proc = subprocess.Popen(_argv(kafka, server, topics, f'bench-mem-{backlog_mb}', work,
                                '--stop_at_end'),
                          cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  code, rss_mb = _wait(proc, 900, log_path)
  loaded = sum(entry['loaded_rows'] for entry in server.loads) - before
  if code != 0 or loaded != n:
    raise RuntimeError(f'the bounded run exited {code} with {loaded} of {n} rows loaded')
  return rss_mb


# The README's bound at the default flags: 3 x flush_workers (4) x batch_bytes (10 MB) + 350 MB.
BOUND_MB = 3 * 4 * 10 + 350
# (name, partitions, rows stored, streaming, format)
SHAPES = (('48p slow bounded', 48, True, False, 'json'),
          ('8p slow bounded', 8, True, False, 'json'),
          ('256p slow bounded', 256, True, False, 'json'),
          ('48p fast bounded', 48, False, False, 'json'),
          ('256p fast bounded', 256, False, False, 'json'),
          ('48p slow streaming', 48, True, True, 'json'),
          ('48p slow bounded avro', 48, True, False, 'avro'))
AVRO_SCHEMA = {'type': 'record', 'name': 'MatrixRecord', 'namespace': 'bench', 'fields': [
    {'name': 'id', 'type': 'long'}, {'name': 'user_id', 'type': 'long'},
    {'name': 'status', 'type': 'string'}, {'name': 'ts', 'type': 'string'},
    {'name': 'note', 'type': 'string'}]}


def avro_encoder(registry_url: str):
  """``i -> bytes``: ``record(i)``'s fields in Avro, its schema registered at ``registry_url``."""
  import json  # pylint: disable=import-outside-toplevel
  # pylint: disable=import-outside-toplevel
  from confluent_kafka.schema_registry.avro import AvroSerializer
  from confluent_kafka.serialization import MessageField, SerializationContext
  from transforms.records.formats import registry_client
  serializer = AvroSerializer(registry_client({'url': registry_url}), json.dumps(AVRO_SCHEMA))
  context = SerializationContext('bench-matrix', MessageField.VALUE)
  return lambda i: serializer(orjson.loads(record(i)), context)


def shape_peak(kafka: KafkaCluster, server: StreamLoadServer, work: str, partitions: int,
               records: int, streaming: bool, name: str, registry_url: str = '') -> float:
  """Peak RSS (MB) of one run over ``records`` records spread over ``partitions`` partitions
  (Avro through ``registry_url`` when it is given, else JSON)."""
  encode = avro_encoder(registry_url) if registry_url else record
  topics = [kafka.unique_topic(name) for _ in range(max(1, partitions // kafka.num_partitions))]
  for index, topic in enumerate(topics):
    kafka.produce(topic, [encode(i) for i in range(index, records, len(topics))])
  before = sum(entry['loaded_rows'] for entry in server.loads)
  log_path = os.path.join(work, f'{name}.log')
  log = open(log_path, 'wb')
  extra = () if streaming else ('--stop_at_end',)
  if registry_url:
    extra += ('--format=avro', f'--schema_registry_url={registry_url}')
  proc = subprocess.Popen(_argv(kafka, server, topics, f'bench-{name}', work, *extra),
                          cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  if streaming:
    deadline = time.monotonic() + 900
    while sum(entry['loaded_rows'] for entry in server.loads) - before < records:
      if proc.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(f'the streaming job did not load every record; see {log_path}')
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
  code, rss_mb = _wait(proc, 900, log_path)
  loaded = sum(entry['loaded_rows'] for entry in server.loads) - before
  if code != 0 or loaded != records:
    raise RuntimeError(f'{name}: exit {code} with {loaded} of {records} rows loaded')
  return rss_mb


def matrix(records: int, only: str = '') -> None:
  words = [word for word in only.split(',') if word]
  shapes = [shape for shape in SHAPES if not words or any(word in shape[0] for word in words)]
  if not shapes:
    raise SystemExit(f'--matrix_shapes={only}: no shape\'s name contains any of its words '
                     f'({", ".join(shape[0] for shape in SHAPES)})')
  work = tempfile.mkdtemp(prefix='continuous-matrix-')
  registry = None
  if any(shape[4] == 'avro' for shape in shapes):
    from devtools.registry import SchemaRegistry  # pylint: disable=import-outside-toplevel
    registry = SchemaRegistry(work_dir=work).start()
  worst, peak = 0.0, 0.0
  try:
    for name, partitions, stored, streaming, fmt in shapes:
      kafka = KafkaCluster(compression='lz4')
      server = StreamLoadServer(schema_sql=SCHEMA, user='root', password=PASSWORD,
                                count_only=not stored)
      server.start()
      # A mock partition keeps ~100k records: fewer partitions get a smaller backlog.
      n = min(records, partitions * MOCK_RECORDS_PER_PARTITION // 3)
      url = registry.url if fmt == 'avro' else ''
      try:
        tag = name.replace(' ', '-')
        one = shape_peak(kafka, server, work, partitions, n, streaming, f'{tag}-1x', url)
        three = shape_peak(kafka, server, work, partitions, 3 * n, streaming, f'{tag}-3x', url)
      finally:
        server.stop()
        kafka.close()
      worst, peak = max(worst, three / one), max(peak, one, three)
      print(f'{name}: peak RSS {one:.0f} MB at {n} records, {three:.0f} MB at '
            f'{3 * n} ({three / one:.2f}x)', flush=True)
  finally:
    if registry is not None:
      registry.close()
  print(f'matrix: {len(shapes)} shapes, worst 3x/1x {worst:.2f}, peak {peak:.0f} MB '
        f'(bound {BOUND_MB} MB)')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rate', type=int, default=1000, help='records/s while streaming')
  parser.add_argument('--secs', type=float, default=30.0, help='seconds of steady input')
  parser.add_argument('--backlog_mb', type=int, default=200, help='the 1x backlog, in MB')
  parser.add_argument('--matrix', action='store_true',
                      help='memory against the backlog in several shapes (see above)')
  parser.add_argument('--matrix_records', type=int, default=600_000,
                      help='the 1x backlog of the matrix, in ~1 KB records')
  parser.add_argument('--matrix_shapes', default='',
                      help='only the shapes whose names contain one of these comma-separated '
                           'words (default: every shape)')
  args = parser.parse_args()
  if args.matrix:
    matrix(args.matrix_records, args.matrix_shapes)
    return
  work = tempfile.mkdtemp(prefix='continuous-bench-')
  kafka = KafkaCluster(compression='lz4')
  server = StreamLoadServer(schema_sql=SCHEMA, user='root', password=PASSWORD, count_only=True)
  server.start()
  try:
    loads, ideal, median = limits(kafka, server, work, args.rate, args.secs)
    print(f'limits: {loads} loads (ideal {ideal}) of median {median:.0f} rows for '
          f'{args.rate} records/s over {args.secs:.0f} s; SIGTERM drained, exit 0')
    rss_1x = memory(kafka, server, work, args.backlog_mb)
    rss_3x = memory(kafka, server, work, 3 * args.backlog_mb)
    print(f'memory: peak RSS {rss_1x:.0f} MB for {args.backlog_mb} MB of backlog, '
          f'{rss_3x:.0f} MB for {3 * args.backlog_mb} MB ({rss_3x / rss_1x:.2f}x)')
  finally:
    server.stop()
    kafka.close()
  print(f'continuous: {loads} loads (ideal {ideal}), median {median:.0f} rows, RSS {rss_1x:.0f} MB '
        f'at 1x, {rss_3x:.0f} MB at 3x input')


if __name__ == '__main__':
  main()
