"""The demo: the whole pipeline on embedded defaults, end to end, on one machine.

It starts a local Kafka (librdkafka's mock cluster: the real Kafka protocol,
in this process) and the local Stream Load server (``stream_load_emulator``,
FE + BE on their own ports, rows in an embedded database), produces a sample
multi-table data set -- plain JSON events, Debezium CDC for users (inserts,
updates, deletes), orders updated in place through a sequence column, an
aggregate table, and a few bad records -- runs the pipeline on the
DirectRunner, then (with the registry extra) a second job over a Debezium
Avro topic (``demo_avro``), and prints a summary per table: rows produced to
Kafka, rows loaded, rows in the table by SQL, dead letters, loads and MB/s.

Run it with ``python -m devtools.demo`` (see the README); ``--database-sync`` runs a whole
database's Debezium topics instead (``demo_database``).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import random
import shutil
import sys
from typing import Dict, List, Tuple

import orjson

from pipelines.kafka_to_doris import run_pipeline
from devtools import demo_avro, demo_database
from devtools.local_kafka import KafkaCluster

_SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'pipelines',
                        'samples')
SCHEMA_PATH = os.path.join(_SAMPLES, 'demo_schema.sql')
TABLE_CONFIG_PATH = os.path.join(_SAMPLES, 'demo_tables.yaml')
DEMO_PASSWORD = 'demo-secret'
TOPIC_TABLES = {
    'events': 'demo.events',
    'users_cdc': 'demo.users',
    'orders': 'demo.orders',
    'page_views': 'demo.page_views',
}


def _debezium(op: str, before, after, ts_ms: int) -> bytes:
  return orjson.dumps({'before': before, 'after': after, 'op': op, 'ts_ms': ts_ms,
                       'source': {'db': 'shop', 'table': 'users', 'connector': 'mysql'}})


def make_sample_data(scale: int, seed: int = 7) -> Tuple[Dict[str, List[Tuple[bytes, bytes]]],
                                                         Dict[str, int]]:
  """The demo's records per topic, and the rows each table should end with.

  Returns:
    ({topic: [(key, value), ...]}, {table: expected row count}).
  """
  rng = random.Random(seed)
  topics: Dict[str, List[Tuple[bytes, bytes]]] = {t: [] for t in TOPIC_TABLES}
  n_events = 20 * scale
  for i in range(n_events):
    topics['events'].append((str(i).encode(), orjson.dumps({
        'event_id': i, 'user_id': rng.randrange(1000), 'event_type': rng.choice(
            ['view', 'click', 'buy', 'share']), 'amount': round(rng.random() * 100, 2),
        'ts': f'2026-11-23 {rng.randrange(24):02d}:{rng.randrange(60):02d}:00',
        'payload': 'x' * rng.randrange(100, 600)})))
  # Bad records: each ends in dead letters with its reason; the rest loads.
  topics['events'] += [(b'bad1', b'{"event_id": 1, broken json'), (b'bad2', b'\xff\xfe not utf-8'),
                       (b'bad3', b'[1, 2, 3]'),
                       (b'bad4', orjson.dumps({'event_id': 'not-a-number', 'event_type': 'view'}))]
  n_users = 2 * scale
  for uid in range(n_users):
    after = {'id': uid, 'name': f'user{uid}', 'email': f'u{uid}@example.com', 'age': 20 + uid % 50,
             'updated_at': '2026-11-23 08:00:00'}
    topics['users_cdc'].append((str(uid).encode(), _debezium('c', None, after, 1)))
  for uid in range(0, n_users, 4):
    before = {'id': uid, 'name': f'user{uid}'}
    after = {'id': uid, 'name': f'user{uid}-renamed', 'email': f'u{uid}@example.org', 'age': 99,
             'updated_at': '2026-11-23 09:00:00'}
    topics['users_cdc'].append((str(uid).encode(), _debezium('u', before, after, 2)))
  deleted = list(range(1, n_users, 10))
  for uid in deleted:
    topics['users_cdc'].append((str(uid).encode(), _debezium('d', {'id': uid}, None, 3)))
  topics['users_cdc'].append((b'nokey', orjson.dumps({'op': 'd', 'before': None, 'after': None,
                                                      'source': {'db': 'shop'}})))
  n_orders = 3 * scale
  for oid in range(n_orders):
    for status in ('created', 'paid', 'shipped'):
      topics['orders'].append((str(oid).encode(), orjson.dumps({
          'order_id': oid, 'user_id': oid % n_users, 'status': status,
          'total': round(10 + oid % 90 + 0.5, 2)})))
  pages = [f'/page/{i}' for i in range(50)]
  for _ in range(5 * scale):
    topics['page_views'].append((b'', orjson.dumps({'page': rng.choice(pages), 'day': '2026-11-23',
                                                     'views': 1,
                                                     'last_seen': '2026-11-23 10:00:00'})))
  expected = {'demo.events': n_events, 'demo.users': n_users - len(deleted),
              'demo.orders': n_orders, 'demo.page_views': len(pages)}
  return topics, expected


def _produce(kafka: KafkaCluster, topics: Dict[str, List[Tuple[bytes, bytes]]]) -> None:
  for topic, records in topics.items():
    # Keyed, so each key's changes stay in one partition, in order.
    kafka.produce(topic, [v for _, v in records], keys=[k or None for k, _ in records])


def _dead_letters_by_table(path: str) -> Dict[str, int]:
  counts: Dict[str, int] = {}
  for name in glob.glob(os.path.join(path, '*.jsonl')):
    with open(name, 'rb') as handle:
      for line in handle:
        letter = orjson.loads(line)
        if letter.get('stage') == 'rejected':
          continue
        table = letter.get('table') or TOPIC_TABLES.get(letter.get('topic'), '?')
        counts[table] = counts.get(table, 0) + 1
  return counts


def _run_avro_job(kafka: KafkaCluster, server, scale: int, work_dir: str):
  """The Avro part (``demo_avro``): ``(summary, records produced, rows expected)``, or None."""
  missing = demo_avro.available()
  if missing is not None:
    print(f'demo: skipping the Avro topic: no Schema Registry support: {missing}')
    return None
  records, expected = demo_avro.make_records(scale // 10)
  kafka.produce(demo_avro.TOPIC, [v for _, v in records], keys=[k for k, _ in records])
  print(f'demo: produced {len(records)} Debezium Avro records to {demo_avro.TOPIC} (schemas in a '
        f'Schema Registry, one column added mid-stream); running a second job with --format=avro '
        f'--create_tables --schema_evolution=add_columns')
  argv = [f'--bootstrap_servers={kafka.bootstrap_servers}', '--stop_at_end',
          f'--fe_nodes={server.fe_url}', '--user=root', f'--password={DEMO_PASSWORD}',
          *demo_avro.job_flags(os.path.join(work_dir, 'dead_letters_avro'))]
  return run_pipeline(argv), len(records), expected


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--scale', type=int, default=1000,
                      help='Size of the data set: 20 x scale events, 2 x scale users, ... '
                           '(default 1000: ~30k records).')
  parser.add_argument('--database-sync', action='store_true',
                      help='Instead: a whole MySQL database\'s Debezium topics and its schema '
                           'change topic into an empty database, with one job (tables made '
                           'before their rows, DDL mid-stream, a sharded family merged).')
  parser.add_argument('--work-dir', default='demo_data',
                      help='Where the server keeps its data and dead letters go; emptied at the '
                           'start of each run (default: ./demo_data).')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                      force=True)
  for noisy in ('transforms.batching', 'transforms.stream_load', 'apache_beam',
                'stream_load_emulator', 'devtools.local_kafka', 'transforms.kafka', 'mysql_mimic'):
    logging.getLogger(noisy).setLevel(logging.WARNING)

  from stream_load_emulator import StreamLoadServer
  work_dir = os.path.abspath(args.work_dir)
  shutil.rmtree(work_dir, ignore_errors=True)
  os.makedirs(work_dir)
  dead_letter_dir = os.path.join(work_dir, 'dead_letters')
  print(f'demo: starting a local Kafka (librdkafka mock cluster) and a local Stream Load server '
        f'(data in {work_dir})')
  kafka = KafkaCluster(compression='lz4')
  server = StreamLoadServer(schema_path=SCHEMA_PATH, data_dir=os.path.join(work_dir, 'doris'),
                            user='root', password=DEMO_PASSWORD, num_bes=3)
  server.start()
  try:
    if args.database_sync:
      ok = demo_database.run_demo(kafka, server, work_dir, DEMO_PASSWORD)
      print('demo: OK, every table holds what a replay of the source in binlog order holds' if ok
            else 'demo: MISMATCH between the source and the tables')
      return 0 if ok else 1
    topics, expected = make_sample_data(args.scale)
    _produce(kafka, topics)
    produced = {TOPIC_TABLES[t]: len(r) for t, r in topics.items()}
    print(f'demo: produced {sum(produced.values())} records to {len(topics)} topics; '
          f'running the pipeline on the DirectRunner')
    argv = [
        f'--bootstrap_servers={kafka.bootstrap_servers}',
        f'--topics={",".join(topics)}',
        '--group_id=kafka-doris-demo',
        '--stop_at_end',
        f'--fe_nodes={server.fe_url}',
        '--user=root',
        f'--password={DEMO_PASSWORD}',
        '--topic_table_map=' + ','.join(f'{t}={tbl}' for t, tbl in TOPIC_TABLES.items()),
        '--cdc_format=auto',
        f'--table_config={TABLE_CONFIG_PATH}',
        f'--dead_letter_path={dead_letter_dir}',
        '--progress_interval_secs=1',
    ]
    summary = run_pipeline(argv)
    dead = _dead_letters_by_table(dead_letter_dir)
    elapsed = max(summary.elapsed_secs, 1e-6)
    avro = _run_avro_job(kafka, server, args.scale, work_dir)
    header = (f'{"table":<16}{"in Kafka":>10}{"loaded":>10}{"in table":>10}{"expected":>10}'
              f'{"dead":>7}{"loads":>7}{"MB/s":>8}')
    print()
    print(header)
    print('-' * len(header))
    ok = True
    for table in sorted(TOPIC_TABLES.values()):
      in_table = _count_over_mysql(server, table)
      ok &= in_table == expected[table]
      mbps = summary.bytes_loaded(table) / elapsed / 1e6
      print(f'{table:<16}{produced[table]:>10}{summary.rows_loaded(table):>10}'
            f'{in_table:>10}{expected[table]:>10}{dead.get(table, 0):>7}'
            f'{summary.loads(table):>7}{mbps:>8.1f}')
    if avro is not None:
      avro_summary, produced_avro, expected_avro = avro
      in_table = server.query(f'SELECT count(*) FROM {demo_avro.TABLE}')[0][0]
      with_method = server.query(
          f'SELECT count(*) FROM {demo_avro.TABLE} WHERE method IS NOT NULL')[0][0]
      ok &= in_table == expected_avro and with_method > 0
      mbps = (avro_summary.bytes_loaded(demo_avro.TABLE)
              / max(avro_summary.elapsed_secs, 1e-6) / 1e6)
      print(f'{demo_avro.TABLE:<16}{produced_avro:>10}'
            f'{avro_summary.rows_loaded(demo_avro.TABLE):>10}{in_table:>10}{expected_avro:>10}'
            f'{0:>7}{avro_summary.loads(demo_avro.TABLE):>7}{mbps:>8.1f}')
      print(f'  ({demo_avro.TABLE}: Debezium Avro through a Schema Registry, a second job; the '
            f'job created the table and added the column `method` when the schema changed: '
            f'{with_method} rows have it)')
    print()
    for line in summary.lines()[:1]:
      print(line)
    print(f'dead letters (with reasons) are in {dead_letter_dir}')
    print(f'"in table" was counted with SQL over the server\'s MySQL port, as a MySQL client '
          f'sees it. To look at the tables yourself: python -m stream_load_emulator --schema pipelines/samples/demo_schema.sql --data-dir '
          f'{os.path.join(work_dir, "doris")} --password {DEMO_PASSWORD} --query-port 9030, then '
          f'mysql -h 127.0.0.1 -P 9030 -u root -p{DEMO_PASSWORD} -e "SELECT * FROM demo.users '
          f'LIMIT 5"  (or, in Python: pymysql.connect(host="127.0.0.1", port=9030, user="root", '
          f'password="{DEMO_PASSWORD}"))')
    print('demo: OK, every table holds what it should' if ok else
          'demo: MISMATCH between expected and loaded rows')
    return 0 if ok else 1
  finally:
    server.stop()
    kafka.close()


def _count_over_mysql(server, table: str) -> int:
  """``SELECT count(*)`` through the server's MySQL port, with a real MySQL client."""
  import pymysql  # pylint: disable=import-outside-toplevel
  connection = pymysql.connect(host='127.0.0.1', port=server.query_port, user='root',
                               password=DEMO_PASSWORD, connect_timeout=10)
  try:
    with connection.cursor() as cursor:
      cursor.execute(f'SELECT count(*) FROM {table}')
      return int(cursor.fetchone()[0])
  finally:
    connection.close()


if __name__ == '__main__':
  sys.exit(main())
