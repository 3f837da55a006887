"""End-to-end benchmark: the whole pipeline on the DirectRunner vs a plain-Python loop.

200,000 JSON records of ~1 KB over 4 tables are produced to the local Kafka
(librdkafka's mock cluster, lz4-compressed and spread over 8 topics because a
mock partition keeps only ~5 MiB), then loaded into the local Stream Load
server (its own process, count-only: it parses and counts, so it is not the
bottleneck) twice, in one run:

  * pipeline: ``python -m pipelines.kafka_to_doris`` as a user runs it
    (``--stop_at_end``, defaults otherwise: 10,000-row batches, 4 flush
    workers), in process on the FnApiRunner that ``--runner=DirectRunner``
    maps to;
  * plain loop: one confluent-kafka consumer, ``orjson.loads`` per record,
    rows grouped per table, a Stream Load PUT per 10,000 rows over one
    pooled session -- the least a hand-written loader does.

With ``--format=avro`` the records are Avro in the Confluent wire format
(``AvroSerializer``, confluent-kafka's in-memory ``mock://`` registry, which
both runs reach because both run in this process); the plain loop then
decodes with ``AvroDeserializer`` instead of ``orjson.loads``.

The last line reads ``e2e: <rows/s> rows/s, <ratio>x vs plain loop``.
Run: ``.venv/bin/python bench/e2e_bench.py [--records 200000] [--load_format csv|arrow]
[--group_commit sync_mode|async_mode] [--format json|avro]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List

import orjson
import requests
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.sink_bench import PASSWORD, emulator  # pylint: disable=wrong-import-position
from pipelines.kafka_to_doris import run_pipeline  # pylint: disable=wrong-import-position
from devtools.local_kafka import KafkaCluster  # pylint: disable=wrong-import-position

TABLES = ['bench.orders', 'bench.events', 'bench.users', 'bench.items']
TOPICS_PER_TABLE = 2
BATCH_ROWS = 10_000


REGISTRY_URL = 'mock://e2e-bench'
AVRO_SCHEMA = {'type': 'record', 'name': 'BenchRecord', 'namespace': 'bench', 'fields': [
    {'name': 'id', 'type': 'long'}, {'name': 'user_id', 'type': 'long'},
    {'name': 'amount', 'type': 'double'}, {'name': 'ok', 'type': 'boolean'},
    {'name': 'status', 'type': 'string'}, {'name': 'ts', 'type': 'string'},
    {'name': 'note', 'type': 'string'}]}


def record_fields(i: int) -> dict:
  return {'id': i, 'user_id': i % 9973, 'amount': (i % 1000) / 10, 'ok': i % 3 == 0,
          'status': ('new', 'paid', 'sent')[i % 3],
          'ts': '2026-11-23 10:00:00', 'note': f'{i:08d}' * 110}


def make_record(i: int) -> bytes:
  return orjson.dumps(record_fields(i))


def avro_codec():
  """``(encode, decode)`` of the Avro records, through the in-process mock registry."""
  import json
  from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
  from confluent_kafka.serialization import MessageField, SerializationContext
  from transforms.records.formats import registry_client
  client = registry_client({'url': REGISTRY_URL})
  serializer = AvroSerializer(client, json.dumps(AVRO_SCHEMA))
  ctx = SerializationContext('bench', MessageField.VALUE)
  return (lambda i: serializer(record_fields(i), ctx)), AvroDeserializer(client)


def produce(kafka: KafkaCluster, records: int, run: str, encode=make_record) -> Dict[str, str]:
  topics = {f'{run}-{t.split(".")[1]}-{k}': t for t in TABLES for k in range(TOPICS_PER_TABLE)}
  names = list(topics)
  per_topic: Dict[str, List[bytes]] = {name: [] for name in names}
  for i in range(records):
    per_topic[names[i % len(names)]].append(encode(i))
  for name, values in per_topic.items():
    kafka.produce(name, values)
  return topics


def plain_loop(kafka: KafkaCluster, topics: Dict[str, str], fe_url: str, expected: int,
               decode=orjson.loads) -> int:
  """Consume -> parse (``decode``) -> batch per table -> PUT, in one thread."""
  consumer = Consumer({'bootstrap.servers': kafka.bootstrap_servers, 'group.id': 'plain-loop',
                       'enable.auto.commit': False, 'auto.offset.reset': 'earliest'})
  assignment = [TopicPartition(t, p, 0) for t in topics for p in range(kafka.num_partitions)]
  consumer.assign(assignment)
  session = requests.Session()
  batches: Dict[str, List[dict]] = {t: [] for t in TABLES}
  loaded = seen = 0
  n = 0

  def flush(table: str) -> int:
    nonlocal n
    rows = batches[table]
    body = b'\n'.join(orjson.dumps(row) for row in rows)
    db, tbl = table.split('.')
    n += 1
    headers = {'label': f'plain-{n}-{time.time_ns()}', 'format': 'json',
               'read_json_by_line': 'true', 'Expect': '100-continue'}
    url = f'/api/{db}/{tbl}/_stream_load'
    probe = session.put(fe_url + url, data=b'', headers=headers, auth=('root', PASSWORD),
                        allow_redirects=False)
    loc = requests.utils.urlparse(probe.headers['Location'])
    result = session.put(f'{loc.scheme}://{loc.hostname}:{loc.port}{url}', data=body,
                         headers=headers, auth=('root', PASSWORD)).json()
    assert result['Status'] == 'Success', result
    batches[table] = []
    return result['NumberLoadedRows']

  try:
    while seen < expected:
      for message in consumer.consume(1000, timeout=1.0):
        if message.error():
          continue
        seen += 1
        table = topics[message.topic()]
        batches[table].append(decode(message.value()))
        if len(batches[table]) >= BATCH_ROWS:
          loaded += flush(table)
    for table in TABLES:
      if batches[table]:
        loaded += flush(table)
  finally:
    consumer.close()
    session.close()
  return loaded


SCHEMA_TABLES = ''.join(
    f'CREATE TABLE {t} (id BIGINT) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1;\n'
    for t in TABLES)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--records', type=int, default=200_000)
  parser.add_argument('--load_format', default='json', choices=['json', 'csv', 'arrow'],
                      help='the pipeline\'s body format (the plain loop always sends JSON)')
  parser.add_argument('--group_commit', default='off_mode',
                      choices=['off_mode', 'sync_mode', 'async_mode'],
                      help='Doris group commit for the pipeline (with at-least-once delivery)')
  parser.add_argument('--format', default='json', choices=['json', 'avro'],
                      help='the records\' format (avro: Confluent wire format, mock registry)')
  args = parser.parse_args()
  encode, decode = make_record, orjson.loads
  if args.format == 'avro':
    encode, decode = avro_codec()
  import bench.sink_bench as sink_bench
  sink_bench.SCHEMA = 'CREATE DATABASE bench;\n' + SCHEMA_TABLES
  kafka = KafkaCluster(compression='lz4')
  with emulator() as fe_url:
    topics = produce(kafka, args.records, 'plain', encode)
    started = time.perf_counter()
    plain_rows = plain_loop(kafka, topics, fe_url, args.records, decode)
    plain_secs = time.perf_counter() - started
    assert plain_rows == args.records, plain_rows

    topics = produce(kafka, args.records, 'beam', encode)
    argv = [f'--bootstrap_servers={kafka.bootstrap_servers}', f'--topics={",".join(topics)}',
            '--group_id=e2e-bench', '--stop_at_end', f'--fe_nodes={fe_url}', '--user=root',
            f'--password={PASSWORD}',
            '--topic_table_map=' + ','.join(f'{k}={v}' for k, v in topics.items()),
            '--dead_letter_path=/tmp/e2e-bench-dead-letters', '--progress_interval_secs=0',
            f'--load_format={args.load_format}', f'--group_commit={args.group_commit}',
            f'--format={args.format}']
    if args.format != 'json':
      argv.append(f'--schema_registry_url={REGISTRY_URL}')
    if args.group_commit != 'off_mode':
      argv.append('--delivery_guarantee=at_least_once')
    import logging
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    summary = run_pipeline(argv)
    beam_secs = time.perf_counter() - started
    assert summary.totals.get('rows_loaded') == args.records, summary.totals
  kafka.close()
  plain_rate = args.records / plain_secs
  beam_rate = args.records / beam_secs
  print(f'plain loop: {plain_rate:.0f} rows/s ({plain_secs:.1f} s)')
  print(f'pipeline (DirectRunner -> FnApiRunner, whole run incl. start-up): {beam_rate:.0f} rows/s '
        f'({beam_secs:.1f} s)')
  print(f'e2e: {beam_rate:.0f} rows/s, {beam_rate / plain_rate:.2f}x vs plain loop ({args.format})')


if __name__ == '__main__':
  main()
