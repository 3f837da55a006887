"""Benchmark: ReadKafkaChunks on the FnApiRunner vs a plain confluent-kafka loop.

Produces ``--records`` records of ``--record_bytes`` (JSON-like values) to a
librdkafka mock cluster started in this process (or to ``--bootstrap_servers``),
then reads them all back (1) with a plain ``confluent_kafka.Consumer`` loop
that touches every record's value (one consumer for all partitions: the
headline baseline; and a stricter one, a consumer per partition visited
round robin, which is how the reader itself fetches) and (2) with a pipeline
``ReadKafkaChunks(stop_at_end=True) | count records`` on the FnApiRunner, and
optionally (3) ``ReadFromKafka`` (one element per record).

The mock cluster keeps only ~5 MiB / 100k messages per partition, so the data
is spread over ``--topics`` topics (4 partitions each) and produced with lz4.

Run from the repo root: ``.venv/bin/python bench/source_bench.py``.  The last
line is ``source: <rec/s> rec/s, <ratio>x vs plain loop``.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from confluent_kafka import Consumer, Producer, TopicPartition

from transforms import kafka
from transforms.kafka.reader import DEFAULT_MAX_CHUNK_RECORDS

_LOGGER = logging.getLogger('source_bench')


def _value(i: int, size: int) -> bytes:
  head = (b'{"id": %d, "user": "user-%d", "event": "click", "amount": %d.25, '
          b'"payload": "' % (i, i % 1000, i % 97))
  return head + b'x' * max(0, size - len(head) - 2) + b'"}'


def produce(producer, topics, records, size):
  per_topic = records // len(topics)
  for t, topic in enumerate(topics):
    for i in range(per_topic):
      value = _value(t * per_topic + i, size)
      while True:
        try:
          producer.produce(topic, value=value, partition=i % 4)
          break
        except BufferError:
          producer.poll(0.05)
    producer.flush(60)
  return per_topic * len(topics)


def check_retention(servers, topics):
  """Fails if the mock cluster dropped records (retention limits)."""
  consumer = Consumer({'bootstrap.servers': servers, 'group.id': 'bench-check',
                       'logger': _LOGGER})
  try:
    for topic in topics:
      for p in range(4):
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                timeout=10)
        if low != 0:
          raise SystemExit(f'{topic}[{p}] dropped records (low watermark '
                           f'{low}): use more --topics')
  finally:
    consumer.close()


def plain_loop(servers, topics, expected):
  """The baseline: one consumer, all partitions, touch every value."""
  consumer = Consumer({'bootstrap.servers': servers,
                       'group.id': f'bench-plain-{uuid.uuid4().hex[:6]}',
                       'enable.auto.commit': False, 'logger': _LOGGER})
  consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(4)])
  started = time.perf_counter()
  n = nbytes = 0
  while n < expected:
    messages = consumer.consume(1000, 0)
    if not messages:
      first = consumer.poll(0.1)
      messages = [first] if first is not None else []
    for m in messages:
      if m.error() is not None:
        continue
      n += 1
      nbytes += len(m.value())
  elapsed = time.perf_counter() - started
  consumer.close()
  return n, elapsed


def plain_loop_per_partition(servers, topics, expected):
  """The baseline the reader's design matches: a consumer per partition.

  librdkafka fetches for every consumer in its own threads, so this is the
  fairer comparison for ReadKafkaChunks (which caches one consumer per
  partition); the loop visits the consumers round robin without waiting.
  """
  group = f'bench-plain-pp-{uuid.uuid4().hex[:6]}'
  started = time.perf_counter()  # consumers prefetch as soon as assigned
  consumers = []
  for t in topics:
    for p in range(4):
      c = Consumer({'bootstrap.servers': servers, 'group.id': group,
                    'enable.auto.commit': False, 'logger': _LOGGER})
      c.assign([TopicPartition(t, p, 0)])
      consumers.append(c)
  n = nbytes = 0
  while n < expected:
    got = 0
    for c in consumers:
      for m in c.consume(1000, 0):
        if m.error() is not None:
          continue
        got += 1
        nbytes += len(m.value())
    n += got
    if not got:
      time.sleep(0.001)
  elapsed = time.perf_counter() - started
  for c in consumers:
    c.close()
  return n, elapsed


class _CountChunks(beam.DoFn):
  """Counts records; notes the wall time (ms) of every chunk it sees."""

  def __init__(self):
    self._records = beam.metrics.Metrics.counter('bench', 'records')
    self._seen_ms = beam.metrics.Metrics.distribution('bench_time', 'seen_ms')

  def process(self, chunk):
    self._records.inc(len(chunk.records))
    self._seen_ms.update(int(time.time() * 1000))


class _CountRecords(beam.DoFn):

  def __init__(self):
    self._records = beam.metrics.Metrics.counter('bench', 'records')

  def process(self, record):
    self._records.inc()


def beam_read(servers, topics, per_record=False, **read_kwargs):
  config = {'bootstrap.servers': servers,
            'group.id': f'bench-beam-{uuid.uuid4().hex[:6]}',
            'auto.offset.reset': 'earliest'}
  pipeline = beam.Pipeline(runner=FnApiRunner())
  if per_record:
    _ = (pipeline
         | kafka.ReadFromKafka(config, topics, stop_at_end=True, **read_kwargs)
         | beam.ParDo(_CountRecords()))
  else:
    _ = (pipeline
         | kafka.ReadKafkaChunks(config, topics, stop_at_end=True,
                                 **read_kwargs)
         | beam.ParDo(_CountChunks()))
  started_ms = time.time() * 1000
  started = time.perf_counter()
  result = pipeline.run()
  result.wait_until_finish()
  elapsed = time.perf_counter() - started
  counters = result.metrics().query(
      MetricsFilter().with_namespace('bench'))['counters']
  n = sum(c.committed for c in counters)
  seen = result.metrics().query(
      MetricsFilter().with_namespace('bench_time'))['distributions']
  if seen and seen[0].committed.count > 1:
    first, last = seen[0].committed.min, seen[0].committed.max
    steady = n / max(1e-3, (last - first) / 1000)
    print(f'  first chunk {first - started_ms:.0f} ms after run(), then '
          f'{(last - first):.0f} ms for all records (~{steady:.0f} rec/s '
          f'steady state), end {started_ms + elapsed * 1000 - last:.0f} ms '
          f'after the last chunk')
  return n, elapsed


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--records', type=int, default=200000)
  parser.add_argument('--record_bytes', type=int, default=1024)
  parser.add_argument('--topics', type=int, default=4,
                      help='topics to spread the records over (4 partitions '
                      'each; mock retention is ~5 MiB per partition)')
  parser.add_argument('--bootstrap_servers', default=None,
                      help='a real cluster; default: a mock cluster')
  parser.add_argument('--max_chunk_records', type=int,
                      default=DEFAULT_MAX_CHUNK_RECORDS)
  parser.add_argument('--per_record', action='store_true',
                      help='also time ReadFromKafka (one element per record)')
  parser.add_argument('--profile', action='store_true',
                      help='cProfile the Beam read and print the top entries')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)

  keep_alive = None
  if args.bootstrap_servers:
    servers = args.bootstrap_servers
    producer = Producer({'bootstrap.servers': servers,
                         'compression.type': 'lz4', 'linger.ms': 20})
  else:
    keep_alive = producer = Producer({
        'test.mock.num.brokers': 3, 'compression.type': 'lz4',
        'linger.ms': 20, 'batch.num.messages': 10000, 'logger': _LOGGER})
    metadata = producer.list_topics(timeout=10)
    servers = ','.join(f'{b.host}:{b.port}' for b in metadata.brokers.values())
  prefix = f'bench-{uuid.uuid4().hex[:6]}'
  topics = [f'{prefix}-{i}' for i in range(args.topics)]
  started = time.perf_counter()
  total = produce(producer, topics, args.records, args.record_bytes)
  print(f'produced {total} records of {args.record_bytes} B to '
        f'{len(topics)} topics in {time.perf_counter() - started:.1f}s')
  if keep_alive is not None:
    check_retention(servers, topics)

  n, elapsed = plain_loop(servers, topics, total)
  one_rate = n / elapsed
  print(f'plain loop, one consumer: {n} records in {elapsed:.2f}s = '
        f'{one_rate:.0f} rec/s')
  n, elapsed = plain_loop_per_partition(servers, topics, total)
  pp_rate = n / elapsed
  print(f'plain loop, a consumer per partition: {n} records in '
        f'{elapsed:.2f}s = {pp_rate:.0f} rec/s')
  # The headline ratio is against the conventional loop (one consumer, all
  # partitions); the stricter per-partition ratio is printed before it.
  plain_rate = one_rate

  read_kwargs = {'max_chunk_records': args.max_chunk_records}
  if args.per_record:
    n, elapsed = beam_read(servers, topics, per_record=True, **read_kwargs)
    print(f'ReadFromKafka (per record): {n} records in {elapsed:.2f}s = '
          f'{n / elapsed:.0f} rec/s')
  if args.profile:
    profiler = cProfile.Profile()
    profiler.enable()
  n, elapsed = beam_read(servers, topics, **read_kwargs)
  if args.profile:
    profiler.disable()
    pstats.Stats(profiler).sort_stats('tottime').print_stats(25)
    if os.environ.get('BENCH_CALLERS'):
      pstats.Stats(profiler).print_callers(os.environ['BENCH_CALLERS'])
  if n != total:
    raise SystemExit(f'Beam read {n} records, expected {total}')
  rate = n / elapsed
  print(f'ReadKafkaChunks: {n} records in {elapsed:.2f}s (pipeline start '
        f'included) = {rate:.0f} rec/s')
  print(f'vs a consumer per partition: {rate / pp_rate:.2f}x')
  print(f'source: {rate:.0f} rec/s, {rate / plain_rate:.2f}x vs plain loop')


if __name__ == '__main__':
  main()
