"""Debezium's schema change topic (``--ddl_topic``): tables made before their first row, and
DDL applied in the source's order, each once, with rows before and after it loading right.

The source is MySQL's ``inventory`` database behind a Debezium connector whose topic prefix is
the schema change topic's name.  Each DDL record carries its binlog position, and so do the
rows, so "before" and "after" are the source's.  The reference every test compares with is
what the source's table holds after replaying the same statements and rows in binlog order.
"""

import logging
import re
import signal

import orjson
import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, run_in_process, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import (free_port, metric_samples, nonempty_end_offsets,
                                     records_consumed)

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


def _setup(kafka, server, prefix_name):
  server.sql(f'CREATE DATABASE {DB}')
  prefix = kafka.unique_topic(prefix_name).replace('-', '_')
  return prefix


def _produce_customers(kafka, server, prefix_name):
  """The customers history and rows under a new prefix (returned)."""
  prefix = _setup(kafka, server, prefix_name)
  kafka.produce(prefix, _customers_history(), partition=0)
  _produce_rows(kafka, prefix, 'customers', _customers_rows())
  return prefix


def test_tables_are_made_before_their_rows_and_older_rows_fit_later_changes(
    kafka_cluster, stream_load_server, tmp_path, caplog):
  prefix = _produce_customers(kafka_cluster, stream_load_server, 'ddl')
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
  assert kafka_cluster.committed(group, prefix) == nonempty_end_offsets(kafka_cluster, prefix)


def _ddl_statements(server, table):
  """The DDL the cluster ran on ``table`` (``db.tbl``), in order."""
  name = table.split('.')[1]
  return [stmt for _, stmt in server.storage.load_ddl() if f'`{name}`' in stmt or
          f' {name} ' in stmt]


def _produce_the_rename(kafka, prefix, rows_topic):
  """``name`` renamed to ``full_name`` at 500, then a row in the new name at 550."""
  kafka.produce(prefix, [_ddl('customers', 'ALTER',
                              'ALTER TABLE customers RENAME COLUMN name TO full_name',
                              [ID, FULL_NAME, SCORE_INT], 500)], partition=0)
  kafka.produce(rows_topic, [_row('customers', 'c', 550,
                                  after={'id': 3, 'full_name': 'cy', 'score': 3})], partition=0)


def _batched_rows(port, table):
  """The rows of ``table`` waiting in the job's open batches (its gauge)."""
  return sum(s.value for s in metric_samples(port, 'doris_batch_current_rows')
             if s.labels.get('table') == table)


def _streaming(kafka, server, topics, group, tmp_path, **flags):
  argv = [a for a in pipeline_argv(kafka, server, topics, group, str(tmp_path / 'dead'), **flags)
          if a != '--stop_at_end']
  log = str(tmp_path / 'job.log')
  return start_cli(argv, log_path=log), log


def test_a_change_runs_after_the_earlier_rows_loaded_and_before_the_later_ones(
    kafka_cluster, stream_load_server, tmp_path):
  """Rows held in an open batch load before a rename runs (else their old column would be
  left out), and rows in the new name pass only after it."""
  prefix = _setup(kafka_cluster, stream_load_server, 'barrier')
  table = f'{DB}.customers'
  kafka_cluster.produce(prefix, _customers_history()[:1], partition=0)
  rows_topic = f'{prefix}.{DB}.customers'
  kafka_cluster.produce(rows_topic, _customers_rows()[:2], partition=0)
  port = free_port()
  proc, log = _streaming(kafka_cluster, stream_load_server, [rows_topic], f'g-{prefix}', tmp_path,
                         cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve',
                         batch_interval_secs=300, batch_rows=10000, metrics_port=port)
  try:
    # Made from the topic when its first rows came; those rows then wait in an open batch.
    wait_for(lambda: _batched_rows(port, table) == 2, 'the rows in an open batch', proc=proc)
    assert stream_load_server.query(f'SELECT count(*) FROM {table}') == [(0,)]
    _produce_the_rename(kafka_cluster, prefix, rows_topic)
    wait_for(lambda: 'full_name' in _names(stream_load_server, table), 'the rename', proc=proc)
    # The barrier loaded the held rows first: the rename carried their names over.
    assert sorted(stream_load_server.query(f'SELECT id, full_name FROM {table}')) == [
        (1, 'ann'), (2, 'bob')]
    wait_for(lambda: records_consumed(port, rows_topic) == 3, 'the later row read', proc=proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
  assert sorted(stream_load_server.query(f'SELECT id, full_name, score FROM {table}')) == [
      (1, 'ann', 1), (2, 'bob', 2), (3, 'cy', 3)]
  with open(log, encoding='utf-8') as handle:
    text = handle.read()
  assert 'flush triggered by schema_change' in text, text[-3000:]
  assert text.count('schema change ran') == 2  # the CREATE and the RENAME
  assert read_dead_letters(str(tmp_path / 'dead')) == []


def test_a_restart_runs_no_change_twice_and_loads_every_row_once(
    kafka_cluster, stream_load_server, tmp_path):
  prefix = _setup(kafka_cluster, stream_load_server, 'again')
  table = f'{DB}.customers'
  history, rows = _customers_history(), _customers_rows()
  rows_topic = f'{prefix}.{DB}.customers'
  group = f'g-{prefix}'
  flags = dict(cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve')
  kafka_cluster.produce(prefix, history[:4], partition=0)   # up to INT -> BIGINT
  _produce_rows(kafka_cluster, prefix, 'customers', rows[:4])
  run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [rows_topic], group,
                               str(tmp_path / 'dead'), **flags))
  first = _ddl_statements(stream_load_server, table)
  assert [' '.join(stmt.split()[:2] if stmt.startswith('CREATE') else stmt.split()[3:5])
          for stmt in first] == ['CREATE TABLE', 'ADD COLUMN', 'MODIFY COLUMN']
  kafka_cluster.produce(prefix, history[4:], partition=0)
  _produce_rows(kafka_cluster, prefix, 'customers', rows[4:])
  run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [rows_topic], group,
                               str(tmp_path / 'dead'), **flags))
  second = _ddl_statements(stream_load_server, table)[len(first):]
  # Only the new changes ran (the refused narrowing is not in the cluster's log).
  assert [' '.join(stmt.split()[3:5]) for stmt in second] == ['RENAME COLUMN', 'DROP COLUMN']
  assert sorted(stream_load_server.query(f'SELECT id, full_name, score FROM {table}')) == [
      (1, 'ann', 5_000_000_000), (2, 'bo', 7), (3, 'cy', 3), (4, 'dee', 4), (5, 'eve', 5)]
  assert read_dead_letters(str(tmp_path / 'dead')) == []


def test_lenient_adds_a_renamed_column_keeps_a_dropped_one_and_says_so(
    kafka_cluster, stream_load_server, tmp_path, caplog):
  prefix = _setup(kafka_cluster, stream_load_server, 'lenient')
  table = f'{DB}.customers'
  kafka_cluster.produce(prefix, _customers_history(), partition=0)
  _produce_rows(kafka_cluster, prefix, 'customers', _customers_rows())
  with caplog.at_level(logging.WARNING, logger='transforms.schema'):
    run_in_process(pipeline_argv(
        kafka_cluster, stream_load_server, [f'{prefix}.{DB}.customers'], f'g-{prefix}',
        str(tmp_path / 'dead'), cdc_format='debezium', ddl_topic=prefix,
        schema_evolution='lenient'))
  assert _columns(stream_load_server, table) == [
      ('id', 'INT'), ('name', 'VARCHAR(150)'), ('score', 'BIGINT'), ('email', 'VARCHAR(300)'),
      ('full_name', 'VARCHAR(150)')]
  # Rows keep the name they had: before the rename in name, after it in full_name.
  assert sorted(stream_load_server.query(
      f'SELECT id, name, full_name, score, email FROM {table}')) == [
          (1, 'ann', None, 5_000_000_000, None), (2, None, 'bo', 7, None),
          (3, 'cy', None, 3, 'c@x'), (4, None, 'dee', 4, 'd@x'), (5, None, 'eve', 5, None)]
  said = [r.getMessage() for r in caplog.records]
  assert any('drop column email not applied (--schema_evolution=lenient)' in m for m in said)
  assert any('modify column score BIGINT -> INT (a narrowing) not applied' in m for m in said)
  assert read_dead_letters(str(tmp_path / 'dead')) == []


def _truncate(pos):
  return orjson.dumps({'source': _source(None, pos), 'ts_ms': 1, 'databaseName': DB,
                       'schemaName': None, 'ddl': 'TRUNCATE TABLE customers',
                       'tableChanges': []})


@pytest.mark.parametrize('listed', [True, False])
def test_a_truncate_runs_only_when_listed_and_rows_before_it_stay_gone(
    kafka_cluster, stream_load_server, tmp_path, caplog, listed):
  prefix = _setup(kafka_cluster, stream_load_server, 'truncate')
  table = f'{DB}.customers'
  rows_topic = f'{prefix}.{DB}.customers'
  kafka_cluster.produce(prefix, [_customers_history()[0], _truncate(400)], partition=0)
  _produce_rows(kafka_cluster, prefix, 'customers', [
      _row('customers', 'c', 200, after={'id': 1, 'name': 'ann', 'score': 1}),
      _row('customers', 'c', 210, after={'id': 2, 'name': 'bob', 'score': 2}),
      _row('customers', 'c', 500, after={'id': 3, 'name': 'cy', 'score': 3})])
  group = f'g-{prefix}'
  types = 'create_table,add_column' + (',truncate_table' if listed else '')
  with caplog.at_level(logging.WARNING, logger='transforms.schema'):
    run_in_process(pipeline_argv(
        kafka_cluster, stream_load_server, [rows_topic], group, str(tmp_path / 'dead'),
        cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve',
        schema_change_types=types))
  ids = sorted(row[0] for row in stream_load_server.query(f'SELECT id FROM {table}'))
  assert ids == ([3] if listed else [1, 2, 3])
  said = [r.getMessage() for r in caplog.records]
  assert any('truncate table not applied' in m for m in said) == (not listed)
  # The rows the truncate removed count as done: their offsets are committed.
  assert kafka_cluster.committed(group, rows_topic) == nonempty_end_offsets(kafka_cluster, rows_topic)
  assert read_dead_letters(str(tmp_path / 'dead')) == []


def test_a_column_added_on_one_shard_reaches_the_merged_table_and_a_drop_keeps_it(
    kafka_cluster, stream_load_server, tmp_path, caplog):
  prefix = _setup(kafka_cluster, stream_load_server, 'shards')
  total, note = _col('total', 'INT'), _col('note', 'VARCHAR', 10)
  history = [_ddl(f'order_{n}', 'CREATE', f'CREATE TABLE order_{n} (...)', [ID, total], 100 + n)
             for n in range(2)]
  history += [_ddl('order_1', 'ALTER', 'ALTER TABLE order_1 ADD note VARCHAR(10)',
                   [ID, total, note], 300),
              _ddl('order_1', 'ALTER', 'ALTER TABLE order_1 DROP COLUMN note', [ID, total], 400)]
  kafka_cluster.produce(prefix, history, partition=0)
  for n in range(2):
    _produce_rows(kafka_cluster, prefix, f'order_{n}', [
        _row(f'order_{n}', 'c', 200, after={'id': 1, 'total': 10 + n}),
        _row(f'order_{n}', 'c', 350, after={'id': 2, 'total': 20 + n,
                                            **({'note': 'hi'} if n else {})})])
  tables = tmp_path / 'tables.yaml'   # a family's creation settings, by expression and defaults
  tables.write_text('defaults:\n  properties: {replication_num: "1"}\n'
                    'tables:\n  \'inventory\\.ord.*\': {buckets: 8}\n')
  with caplog.at_level(logging.WARNING, logger='transforms.schema'):
    run_in_process(pipeline_argv(
        kafka_cluster, stream_load_server, [f'{prefix}.{DB}.order_{n}' for n in range(2)],
        f'g-{prefix}', str(tmp_path / 'dead'), cdc_format='debezium', ddl_topic=prefix,
        schema_evolution='evolve', merge_tables=r'inventory\.order_\d+=inventory.orders',
        table_config=str(tables)))
  create = _ddl_statements(stream_load_server, f'{DB}.orders')[0]
  assert 'BUCKETS 8' in create and '"replication_num" = "1"' in create, create
  assert _names(stream_load_server, f'{DB}.orders') == [
      'id', '_source_db', '_source_table', 'total', 'note']
  assert stream_load_server.catalog.databases[DB]['orders'].key_columns == [
      'id', '_source_db', '_source_table']
  assert sorted(stream_load_server.query(
      f'SELECT _source_table, id, total, note FROM {DB}.orders')) == [
          ('order_0', 1, 10, None), ('order_0', 2, 20, None),
          ('order_1', 1, 11, None), ('order_1', 2, 21, 'hi')]
  said = [r.getMessage() for r in caplog.records]
  assert any('drop column note of one source not applied' in m for m in said)
  assert read_dead_letters(str(tmp_path / 'dead')) == []



def test_a_truncate_of_one_shard_deletes_only_its_rows_from_the_merged_table(
    kafka_cluster, stream_load_server, tmp_path):
  """A merged family's member truncated: ``DELETE ... WHERE _source_db/_source_table`` runs
  after its earlier rows loaded, before its later ones; the other shard's rows stay."""
  prefix = _setup(kafka_cluster, stream_load_server, 'shard_truncate')
  total = _col('total', 'INT')
  history = [_ddl(f'order_{n}', 'CREATE', f'CREATE TABLE order_{n} (...)', [ID, total], 100 + n)
             for n in range(2)]
  history.append(orjson.dumps({'source': _source('order_0', 300), 'ts_ms': 1,
                               'databaseName': DB, 'schemaName': None,
                               'ddl': 'TRUNCATE TABLE order_0', 'tableChanges': []}))
  kafka_cluster.produce(prefix, history, partition=0)
  for n in range(2):
    _produce_rows(kafka_cluster, prefix, f'order_{n}', [
        _row(f'order_{n}', 'c', 200, after={'id': 1, 'total': 10 + n}),
        _row(f'order_{n}', 'c', 400, after={'id': 2, 'total': 20 + n})])
  run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [f'{prefix}.{DB}.order_{n}' for n in range(2)],
      f'g-{prefix}', str(tmp_path / 'dead'), cdc_format='debezium', ddl_topic=prefix,
      schema_evolution='evolve', schema_change_types='create_table,truncate_table',
      merge_tables=r'inventory\.order_\d+=inventory.orders'))
  assert sorted(stream_load_server.query(
      f'SELECT _source_table, id, total FROM {DB}.orders')) == [
          ('order_0', 2, 20), ('order_1', 1, 11), ('order_1', 2, 21)]
  assert read_dead_letters(str(tmp_path / 'dead')) == []

def _restart_bounded(kafka, server, rows_topic, group, tmp_path, prefix):
  return run_cli(pipeline_argv(kafka, server, [rows_topic], group, str(tmp_path / 'dead'),
                               cdc_format='debezium', ddl_topic=prefix,
                               schema_evolution='evolve'), timeout_secs=180)


@pytest.mark.parametrize('when', ['inside the barrier', 'just after the rename'])
def test_a_kill_around_a_change_runs_it_once_and_loads_every_row_once(
    kafka_cluster, stream_load_server, tmp_path, when):
  prefix = _setup(kafka_cluster, stream_load_server, 'kill')
  table = f'{DB}.customers'
  rows_topic = f'{prefix}.{DB}.customers'
  group = f'g-{prefix}'
  kafka_cluster.produce(prefix, _customers_history()[:1], partition=0)
  kafka_cluster.produce(rows_topic, _customers_rows()[:2], partition=0)
  port = free_port()
  proc, log = _streaming(kafka_cluster, stream_load_server, [rows_topic], group, tmp_path,
                         cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve',
                         batch_interval_secs=300, batch_rows=10000, metrics_port=port)
  try:
    wait_for(lambda: _batched_rows(port, table) == 2, 'the rows in an open batch', proc=proc)
    if when == 'inside the barrier':
      stream_load_server.inject_fault('be_down', node=0)  # the barrier's load cannot finish
    _produce_the_rename(kafka_cluster, prefix, rows_topic)
    if when == 'inside the barrier':
      wait_for(lambda: 'flush triggered by schema_change' in open(log, encoding='utf-8').read(),
               'the barrier', proc=proc)
    else:
      wait_for(lambda: 'full_name' in _names(stream_load_server, table), 'the rename', proc=proc)
    proc.kill()
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  stream_load_server.clear_faults()
  result = _restart_bounded(kafka_cluster, stream_load_server, rows_topic, group, tmp_path, prefix)
  assert result.returncode == 0, result.stderr[-3000:]
  statements = [' '.join(s.split()[:2] if s.startswith('CREATE') else s.split()[3:5])
                for s in _ddl_statements(stream_load_server, table)]
  assert statements == ['CREATE TABLE', 'RENAME COLUMN'], result.stderr[-6000:]
  assert sorted(stream_load_server.query(f'SELECT id, full_name, score FROM {table}')) == [
      (1, 'ann', 1), (2, 'bob', 2), (3, 'cy', 3)]
  assert read_dead_letters(str(tmp_path / 'dead')) == []
  assert kafka_cluster.committed(group, rows_topic) == nonempty_end_offsets(kafka_cluster, rows_topic)


def test_plan_prints_the_tables_and_the_ddl_a_run_then_runs(kafka_cluster, stream_load_server,
                                                           tmp_path):
  prefix = _setup(kafka_cluster, stream_load_server, 'plan')
  kafka_cluster.produce(prefix, _customers_history(), partition=0)
  _produce_rows(kafka_cluster, prefix, 'customers', _customers_rows())
  rows_topic = f'{prefix}.{DB}.customers'
  argv = pipeline_argv(kafka_cluster, stream_load_server, [rows_topic], f'g-{prefix}',
                       str(tmp_path / 'dead'), cdc_format='debezium', ddl_topic=prefix,
                       schema_evolution='lenient', table_template='inventory.{table}')
  shown = run_cli(argv + ['--plan'], timeout_secs=120)
  assert shown.returncode == 0, shown.stderr[-3000:]
  lines = shown.stdout.splitlines()
  assert f'  {rows_topic} -> {DB}.customers (not yet)' in lines
  statements = [line.strip().rstrip(';') for line in lines
                if line.startswith('  CREATE') or line.startswith('  ALTER')]
  assert any('drop column email not applied (--schema_evolution=lenient)' in line
             for line in lines)
  assert _ddl_statements(stream_load_server, f'{DB}.customers') == []  # nothing ran
  assert kafka_cluster.committed(f'g-{prefix}', prefix) == {}
  result = run_cli(argv, timeout_secs=180)
  assert result.returncode == 0, result.stderr[-3000:]
  ran = [' '.join(stmt.split()) for _, stmt in stream_load_server.storage.load_ddl()
         if not stmt.startswith('CREATE DATABASE')]
  assert ran == statements
  again = run_cli(argv + ['--plan'], timeout_secs=120)
  assert f'  {rows_topic} -> {DB}.customers (exists)' in again.stdout.splitlines()
  assert 'statements to run (0):' in again.stdout
  # Read by a pattern, a topic whose name shows its table is excluded is never read.
  by_pattern = [a for a in argv if not a.startswith('--topics=')] + [
      f'--topic_pattern={re.escape(prefix)}\\..*', f'--exclude_tables={DB}\\.customers']
  excluded = run_cli(by_pattern + ['--plan'], timeout_secs=120)
  assert excluded.returncode == 0, excluded.stderr[-3000:]
  assert (f'  {rows_topic} -> never read (its name shows --exclude_tables leaves it out)'
          in excluded.stdout.splitlines()), excluded.stdout


def _avro_schema_change_schemas():
  """``(schema change value, customers envelope)`` as Debezium's AvroConverter registers them."""
  source = {'type': 'record', 'name': 'Source', 'namespace': 'io.debezium.connector.mysql',
            'fields': [{'name': 'connector', 'type': 'string'},
                       {'name': 'name', 'type': 'string'},
                       {'name': 'db', 'type': 'string'},
                       {'name': 'table', 'type': ['null', 'string'], 'default': None},
                       {'name': 'file', 'type': 'string'}, {'name': 'pos', 'type': 'long'},
                       {'name': 'row', 'type': ['null', 'int'], 'default': None},
                       {'name': 'ts_ms', 'type': 'long'}]}

  def optional(kind):
    return {'type': ['null', kind], 'default': None}

  column = {'type': 'record', 'name': 'Column', 'namespace': 'io.debezium.connector.schema',
            'fields': [{'name': 'name', 'type': 'string'}, {'name': 'jdbcType', 'type': 'int'},
                       dict(optional('int'), name='nativeType'),
                       {'name': 'typeName', 'type': 'string'},
                       dict(optional('string'), name='typeExpression'),
                       dict(optional('string'), name='charsetName'),
                       dict(optional('int'), name='length'), dict(optional('int'), name='scale'),
                       {'name': 'position', 'type': 'int'},
                       dict(optional('boolean'), name='optional'),
                       dict(optional('boolean'), name='autoIncremented'),
                       dict(optional('boolean'), name='generated'),
                       dict(optional('string'), name='comment'),
                       dict(optional('string'), name='defaultValueExpression'),
                       dict(optional({'type': 'array', 'items': 'string'}), name='enumValues')]}
  table = {'type': 'record', 'name': 'Table', 'namespace': 'io.debezium.connector.schema',
           'fields': [dict(optional('string'), name='defaultCharsetName'),
                      dict(optional({'type': 'array', 'items': 'string'}),
                           name='primaryKeyColumnNames'),
                      {'name': 'columns', 'type': {'type': 'array', 'items': column}},
                      dict(optional('string'), name='comment')]}
  change = {'type': 'record', 'name': 'Change', 'namespace': 'io.debezium.connector.schema',
            'fields': [{'name': 'type', 'type': 'string'}, {'name': 'id', 'type': 'string'},
                       dict(optional(table), name='table')]}
  schema_change = {
      'type': 'record', 'name': 'SchemaChangeValue', 'namespace': 'io.debezium.connector.mysql',
      'connect.name': 'io.debezium.connector.mysql.SchemaChangeValue',
      'fields': [{'name': 'source', 'type': source}, {'name': 'ts_ms', 'type': 'long'},
                 dict(optional('string'), name='databaseName'),
                 dict(optional('string'), name='schemaName'),
                 dict(optional('string'), name='ddl'),
                 {'name': 'tableChanges', 'type': {'type': 'array', 'items': change}}]}
  value = {'type': 'record', 'name': 'Value', 'namespace': 'avro.inventory.customers',
           'fields': [{'name': 'id', 'type': 'int'}, dict(optional('string'), name='name'),
                      dict(optional('int'), name='score'), dict(optional('string'), name='email')]}
  envelope = {'type': 'record', 'name': 'Envelope', 'namespace': 'avro.inventory.customers',
              'fields': [dict(optional(value), name='before'), dict(optional('Value'), name='after'),
                         {'name': 'source', 'type': 'io.debezium.connector.mysql.Source'},
                         {'name': 'op', 'type': 'string'},
                         dict(optional('long'), name='ts_ms')]}
  envelope['fields'][2]['type'] = dict(source, name='RowSource')  # its own copy: two subjects
  return schema_change, envelope


def test_an_avro_schema_change_topic_makes_and_alters_tables_like_a_json_one(
    kafka_cluster, stream_load_server, tmp_path):
  from tests.transforms.records.registry_helpers import avro_serializer, mock_url  # pylint: disable=import-outside-toplevel
  prefix = _setup(kafka_cluster, stream_load_server, 'avroddl')
  rows_topic = f'{prefix}.{DB}.customers'
  url = mock_url('ddl')
  change_schema, envelope_schema = _avro_schema_change_schemas()
  write_change = avro_serializer(url, change_schema, topic=prefix)
  write_row = avro_serializer(url, envelope_schema, topic=rows_topic)

  def source(table, pos):
    return dict(_source(table, pos), name=prefix, row=0)

  def change(record):
    record = orjson.loads(record)
    record['source'] = dict(record['source'], name=prefix, table=None)
    for item in record['tableChanges']:
      for col in item['table']['columns']:
        col.update(nativeType=None, charsetName=None, enumValues=None)
    return write_change(record)

  history = _customers_history()[:3]  # CREATE customers, CREATE notes, ADD email
  kafka_cluster.produce(prefix, [change(r) for r in history], partition=0)
  rows = [{'op': 'c', 'before': None, 'ts_ms': 1, 'source': source('customers', pos),
           'after': {'id': i, 'name': f'c{i}', 'score': i, 'email': email}}
          for i, (pos, email) in enumerate([(200, None), (201, None), (350, 'c@x')], start=1)]
  kafka_cluster.produce(rows_topic, [write_row(r) for r in rows], partition=0)
  group = f'g-{prefix}'
  dead = str(tmp_path / 'dead')
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [rows_topic], group, dead, cdc_format='debezium',
      format='avro', schema_registry_url=url, ddl_topic=prefix, schema_evolution='evolve'))

  assert _columns(stream_load_server, f'{DB}.notes') == [('id', 'BIGINT'), ('note', 'VARCHAR(60)')]
  assert _columns(stream_load_server, f'{DB}.customers') == [
      ('id', 'INT'), ('name', 'VARCHAR(150)'), ('score', 'INT'), ('email', 'VARCHAR(300)')]
  assert sorted(stream_load_server.query(f'SELECT id, name, score, email FROM {DB}.customers')) \
      == [(1, 'c1', 1, None), (2, 'c2', 2, None), (3, 'c3', 3, 'c@x')]
  assert read_dead_letters(dead) == []
  assert summary.totals['schema_changes_applied'] == 3
  assert kafka_cluster.committed(group, prefix) == nonempty_end_offsets(kafka_cluster, prefix)


def test_starrocks_gets_the_same_tables_and_changes_over_its_mysql_port(
    kafka_cluster, make_stream_load_server, tmp_path, caplog):
  server = make_stream_load_server(flavor='starrocks')
  prefix = _produce_customers(kafka_cluster, server, 'srddl')
  group = f'g-{prefix}'
  dead = str(tmp_path / 'dead')
  with caplog.at_level(logging.INFO, logger='transforms.schema'):
    summary = run_in_process(pipeline_argv(
        kafka_cluster, server, [f'{prefix}.{DB}.customers'], group, dead,
        cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve',
        target='starrocks', query_port=server.query_port))

  assert server.catalog.databases[DB]['notes'].key_columns == ['id']
  assert [name for name, _ in _columns(server, f'{DB}.customers')] == ['id', 'full_name', 'score']
  assert dict(_columns(server, f'{DB}.customers'))['score'] == 'BIGINT'
  assert sorted(server.query(f'SELECT id, full_name, score FROM {DB}.customers')) == [
      (1, 'ann', 5_000_000_000), (2, 'bo', 7), (3, 'cy', 3), (4, 'dee', 4), (5, 'eve', 5)]
  refused = [r.getMessage() for r in caplog.records if 'the FE refused' in r.getMessage()]
  assert len(refused) == 1 and 'score' in refused[0]
  assert read_dead_letters(dead) == []
  assert summary.totals['schema_changes_applied'] == 6
  # Every statement went over the MySQL port: none reached the FE's HTTP SQL API.
  assert not [entry for entry in server.request_log if '/api/query/' in entry.get('path', '')]
  assert kafka_cluster.committed(group, prefix) == nonempty_end_offsets(kafka_cluster, prefix)
