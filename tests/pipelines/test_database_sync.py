"""A whole database's Debezium topics into one cluster: names, selection, a merged family.

The source database ``shop`` has three shards of one table (``order_00`` .. ``order_02``, whose
ids overlap), ``customers``, a scratch table the job must leave alone, and Debezium's
transaction topic. With ``--table_template``, ``--merge_tables`` and ``--exclude_tables`` the
job creates exactly the expected tables (the merged one keyed by id and source), loads every
change, skips the control records and writes no dead letter.
"""

import orjson

from devtools.demo_database import job_flags, make_database, produce, rows_as_text
from tests.harness import pipeline_argv, read_dead_letters, run_in_process
import pytest

pytestmark = pytest.mark.e2e


def _change(op, table, before=None, after=None):
  return orjson.dumps({'op': op, 'before': before, 'after': after, 'ts_ms': 1,
                       'source': {'db': 'shop', 'table': table, 'connector': 'mysql'}})


def _key(row):
  return orjson.dumps({'id': row['id']})


def test_a_database_lands_as_tables_with_a_merged_family(kafka_cluster, stream_load_server,
                                                          tmp_path):
  stream_load_server.sql('CREATE DATABASE ods')
  prefix = kafka_cluster.unique_topic('dbz').replace('-', '_')
  topics = {}
  for shard in range(3):
    table = f'order_{shard:02d}'
    changes = [(_change('c', table, after={'id': i, 'total': shard * 100 + i}), {'id': i})
               for i in range(20)]
    changes += [(_change('u', table, before={'id': i}, after={'id': i, 'total': -i}), {'id': i})
                for i in range(0, 20, 4)]
    changes += [(_change('d', table, before={'id': i, 'total': -i}), {'id': i})
                for i in range(0, 20, 8)]
    topics[f'{prefix}.shop.{table}'] = changes
  topics[f'{prefix}.shop.customers'] = [
      (_change('c', 'customers', after={'id': i, 'name': f'c{i}'}), {'id': i}) for i in range(10)]
  topics[f'{prefix}.shop.tmp_scratch'] = [
      (_change('c', 'tmp_scratch', after={'id': i}), {'id': i}) for i in range(5)]
  transactions = [
      orjson.dumps({'status': 'BEGIN', 'id': '1:1', 'ts_ms': 1, 'event_count': None,
                    'data_collections': None}),
      orjson.dumps({'status': 'END', 'id': '1:1', 'ts_ms': 2, 'event_count': 3,
                    'data_collections': [{'data_collection': 'shop.customers',
                                          'event_count': 3}]})]
  for topic, changes in topics.items():
    kafka_cluster.produce(topic, [value for value, _ in changes],
                          keys=[_key(row) for _, row in changes])
  kafka_cluster.produce(f'{prefix}.transaction', transactions)
  group = f'g-{prefix}'
  dead_dir = str(tmp_path / 'dead')
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [*topics, f'{prefix}.transaction'], group, dead_dir,
      cdc_format='debezium', create_tables='true', table_template='ods.{db}__{table}',
      merge_tables=r'shop\.order_\d+=ods.{db}__orders', exclude_tables=r'shop\.tmp_.*'))

  query = stream_load_server.query
  tables = stream_load_server.catalog.databases['ods']
  assert sorted(tables) == ['shop__customers', 'shop__orders']
  assert tables['shop__orders'].key_columns == ['id', '_source_db', '_source_table']
  assert tables['shop__customers'].key_columns == ['id']
  # Every shard's rows, keyed by id and source: the same id in three shards is three rows.
  expected = {(shard, i): (-i if i % 4 == 0 else shard * 100 + i)
              for shard in range(3) for i in range(20) if i % 8}
  got = {(int(source[-2:]), row_id): total for row_id, source, total in query(
      'SELECT id, _source_table, total FROM ods.shop__orders')}
  assert got == expected
  assert query('SELECT DISTINCT _source_db FROM ods.shop__orders') == [('shop',)]
  assert query('SELECT count(*) FROM ods.shop__customers') == [(10,)]
  assert read_dead_letters(dead_dir) == []
  assert summary.totals['skipped_excluded'] == 5 and summary.totals['skipped_control'] == 2
  for topic in list(topics) + [f'{prefix}.transaction']:
    ends = {p: end for p, end in kafka_cluster.end_offsets(topic).items() if end}
    assert kafka_cluster.committed(group, topic) == ends, topic  # skipped records too



def test_fifty_debezium_topics_land_as_the_reference_replay(kafka_cluster, stream_load_server,
                                                            tmp_path):
  """PK, composite PK and no-PK tables, DECIMAL/DATETIME/JSON, a 4-shard family, DDL mid-stream
  (a column on one shard only, INT -> BIGINT, a rename), the schema change, transaction and
  signal topics: exactly the expected tables, keyed as the source, rows as a replay in binlog
  order has them, no dead letter."""
  stream_load_server.sql('CREATE DATABASE ods')
  prefix = kafka_cluster.unique_topic('shopdb').replace('-', '_')
  db = make_database(prefix, scale=30, extra_tables=40)
  assert len(db.topics) == 50
  produce(kafka_cluster, db)
  dead = str(tmp_path / 'dead')
  argv = [a for a in pipeline_argv(kafka_cluster, stream_load_server, [], f'g-{prefix}', dead)
          if not a.startswith('--topics=')] + job_flags(prefix)
  summary = run_in_process(argv)

  tables = stream_load_server.catalog.databases['ods']
  assert sorted(f'ods.{name}' for name in tables) == sorted(db.expected)
  for target in db.expected:
    assert tuple(tables[target.split('.')[1]].key_columns) == db.keys[target], target
    got, want = rows_as_text(stream_load_server, db, target)
    assert got == want, target
  assert read_dead_letters(dead) == []
  assert summary.totals['skipped_control'] == 3      # BEGIN, END, a signal
  # tmp_scratch's topic is never read: its name shows --exclude_tables leaves it out.
  assert summary.totals.get('skipped_excluded', 0) == 0
  scratch = f'{prefix}.shop.tmp_scratch'
  assert scratch in db.topics and kafka_cluster.committed(f'g-{prefix}', scratch) == {}
  for topic in db.topics:
    if topic != scratch:
      ends = {p: end for p, end in kafka_cluster.end_offsets(topic).items() if end}
      assert kafka_cluster.committed(f'g-{prefix}', topic) == ends, topic
