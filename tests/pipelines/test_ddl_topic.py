"""Debezium's schema change topic (``--ddl_topic``): tables made before their first row, and
DDL applied in the source's order, each once, with rows before and after it loading right.

The source is MySQL's ``inventory`` database behind a Debezium connector whose topic prefix is
the schema change topic's name.  Each DDL record carries its binlog position, and so do the
rows, so "before" and "after" are the source's.  The reference every test compares with is
what the source's table holds after replaying the same statements and rows in binlog order.
"""

import logging
import signal

import orjson
import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_in_process, start_cli
from tests.pipelines.crash import wait_for

pytestmark = pytest.mark.e2e

DB = 'inventory'


def _col(name, type_name, length=None, optional=True, comment=None):
  return {'name': name, 'jdbcType': 12, 'typeName': type_name, 'typeExpression': type_name,
          'length': length, 'scale': None, 'optional': optional, 'autoIncremented': False,
          'generated': False, 'comment': comment, 'defaultValueExpression': None}


def _source(table, pos):
  return {'connector': 'mysql', 'name': 'dbz', 'db': DB, 'table': table,
          'file': 'mysql-bin.000003', 'pos': pos, 'row': 0, 'ts_ms': 1}


def _ddl(table, kind, ddl, columns, pos, pk=('id',)):
  """A schema change record: ``columns`` is the whole table after ``ddl``."""
  cols = [dict(col, position=i + 1, optional=col['name'] not in pk and col['optional'])
          for i, col in enumerate(columns)]
  return orjson.dumps({
      'source': _source(None, pos), 'ts_ms': 1, 'databaseName': DB, 'schemaName': None,
      'ddl': ddl,
      'tableChanges': [] if kind is None else [{
          'type': kind, 'id': f'"{DB}"."{table}"',
          'table': {'defaultCharsetName': 'utf8mb4', 'primaryKeyColumnNames': list(pk),
                    'comment': None, 'columns': cols}}]})


def _row(table, op, pos, after=None, before=None):
  return orjson.dumps({'op': op, 'before': before, 'after': after, 'ts_ms': 1,
                       'source': _source(table, pos)})


ID = _col('id', 'INT', optional=False)
NAME = _col('name', 'VARCHAR', 50)
FULL_NAME = _col('full_name', 'VARCHAR', 50)
SCORE_INT = _col('score', 'INT')
SCORE_BIG = _col('score', 'BIGINT')
EMAIL = _col('email', 'VARCHAR', 100)


def _customers_history():
  """CREATE, ADD email, INT -> BIGINT, RENAME name -> full_name, DROP email, BIGINT -> INT."""
  return [
      _ddl('customers', 'CREATE', 'CREATE TABLE customers (...)', [ID, NAME, SCORE_INT], 100),
      _ddl('notes', 'CREATE', 'CREATE TABLE notes (...)',
           [_col('id', 'BIGINT', optional=False), _col('note', 'VARCHAR', 20)], 110),
      _ddl('customers', 'ALTER', 'ALTER TABLE customers ADD COLUMN email VARCHAR(100)',
           [ID, NAME, SCORE_INT, EMAIL], 300),
      _ddl('customers', 'ALTER', 'ALTER TABLE customers MODIFY score BIGINT',
           [ID, NAME, SCORE_BIG, EMAIL], 400),
      _ddl('customers', 'ALTER', 'ALTER TABLE customers RENAME COLUMN name TO full_name',
           [ID, FULL_NAME, SCORE_BIG, EMAIL], 500),
      _ddl('customers', 'ALTER', 'ALTER TABLE customers DROP COLUMN email',
           [ID, FULL_NAME, SCORE_BIG], 600),
      _ddl('customers', 'ALTER', 'ALTER TABLE customers MODIFY score INT',
           [ID, FULL_NAME, SCORE_INT], 700),
  ]


def _customers_rows():
  return [
      _row('customers', 'c', 200, after={'id': 1, 'name': 'ann', 'score': 1}),
      _row('customers', 'c', 201, after={'id': 2, 'name': 'bob', 'score': 2}),
      _row('customers', 'c', 350, after={'id': 3, 'name': 'cy', 'score': 3, 'email': 'c@x'}),
      _row('customers', 'u', 450, before={'id': 1},
           after={'id': 1, 'name': 'ann', 'score': 5_000_000_000, 'email': None}),
      _row('customers', 'c', 550, after={'id': 4, 'full_name': 'dee', 'score': 4,
                                         'email': 'd@x'}),
      _row('customers', 'c', 650, after={'id': 5, 'full_name': 'eve', 'score': 5}),
      _row('customers', 'u', 750, before={'id': 2}, after={'id': 2, 'full_name': 'bo', 'score': 7}),
  ]


def _columns(server, table):
  return [(name, type_name.upper()) for name, type_name, *_ in server.query(f'DESC {table}')]


def _names(server, table):
  return [name for name, _ in _columns(server, table)]


def _produce_rows(kafka, prefix, table, rows):
  kafka.produce(f'{prefix}.{DB}.{table}', rows,
                keys=[orjson.dumps({'id': orjson.loads(r)['after']['id']}) for r in rows])


def _ends(kafka, topic):
  return {p: end for p, end in kafka.end_offsets(topic).items() if end}


def _setup(kafka, server, prefix_name):
  server.sql(f'CREATE DATABASE {DB}')
  prefix = kafka.unique_topic(prefix_name).replace('-', '_')
  return prefix


def test_tables_are_made_before_their_rows_and_older_rows_fit_later_changes(
    kafka_cluster, stream_load_server, tmp_path, caplog):
  prefix = _setup(kafka_cluster, stream_load_server, 'ddl')
  kafka_cluster.produce(prefix, _customers_history(), partition=0)
  _produce_rows(kafka_cluster, prefix, 'customers', _customers_rows())
  group = f'g-{prefix}'
  dead = str(tmp_path / 'dead')
  with caplog.at_level(logging.INFO, logger='transforms.schema'):
    summary = run_in_process(pipeline_argv(
        kafka_cluster, stream_load_server, [f'{prefix}.{DB}.customers'], group, dead,
        cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve'))

  # notes has no row: made from the topic alone, with its key and exact types.
  assert _columns(stream_load_server, f'{DB}.notes') == [('id', 'BIGINT'), ('note', 'VARCHAR(60)')]
  assert stream_load_server.catalog.databases[DB]['notes'].key_columns == ['id']
  # customers as the source has it: renamed, widened, email dropped, the narrowing refused.
  assert _columns(stream_load_server, f'{DB}.customers') == [
      ('id', 'INT'), ('full_name', 'VARCHAR(150)'), ('score', 'BIGINT')]
  assert sorted(stream_load_server.query(f'SELECT id, full_name, score FROM {DB}.customers')) == [
      (1, 'ann', 5_000_000_000), (2, 'bo', 7), (3, 'cy', 3), (4, 'dee', 4), (5, 'eve', 5)]
  refused = [r.getMessage() for r in caplog.records if 'the FE refused' in r.getMessage()]
  assert len(refused) == 1 and 'MODIFY COLUMN `score` INT' in refused[0]
  assert 'Can not change BIGINT to INT' in refused[0]
  assert read_dead_letters(dead) == []
  assert summary.totals['schema_changes_applied'] == 6  # 2 creates, add, widen, rename, drop
  # Each change ran once: the topic's offsets are the job's, committed past the last one.
  assert kafka_cluster.committed(group, prefix) == _ends(kafka_cluster, prefix)
