"""SchemaChangeApplier with a fake FE and a fake topic: what runs, what is said, how older rows
fit, and what another reader already ran."""

import contextlib

import orjson
import pytest

from transforms.records.routing import SourceNaming, parse_merge_tables
from transforms.schema.config import SchemaChangeTopic, SchemaEvolutionConfig
from transforms.schema.ddl_apply import SchemaChangeApplier
from transforms.schema.ddl_topic import SchemaChangeRecord, SchemaTopicError
from transforms.schema.debezium_ddl import parse_schema_change
from transforms.stream_load.config import StreamLoadConfig
from transforms.types import Row

pytestmark = pytest.mark.unit


class _Cluster:
  """The FE: tables' columns; every statement it ran."""

  def __init__(self, tables=None):
    self.tables = dict(tables or {})
    self.ran = []

  def table_columns(self, table):
    return self.tables.get(table)

  def run_statement(self, table, stmt):
    self.ran.append(' '.join(stmt.split()))
    if stmt.startswith('CREATE TABLE'):
      self.tables[table] = [('id', 'INT')]


class _Topic:
  """The reader: ``elsewhere`` are the offsets another reader committed past."""

  def __init__(self, elsewhere=()):
    self.elsewhere = set(elsewhere)
    self.committed = []

  def ran_elsewhere(self, record):
    return record.done or record.offset in self.elsewhere

  def commit(self, record):
    self.committed.append(record.offset)

  def close(self):
    pass


class _Election:
  """Which process runs truncates and drops: this one, or not."""

  def __init__(self, runner=True):
    self.runner = runner

  @contextlib.contextmanager
  def running(self):
    yield self.runner


def _col(name, type_name, optional=True, length=None):
  return {'name': name, 'jdbcType': 4, 'typeName': type_name, 'typeExpression': type_name,
          'length': length, 'scale': None, 'optional': optional, 'autoIncremented': False,
          'position': 1, 'comment': None, 'defaultValueExpression': None}


def _record(offset, table, kind, ddl, columns, pos, pk=('id',), done=False):
  value = {'source': {'connector': 'mysql', 'db': 'shop', 'file': 'mysql-bin.000001',
                      'pos': pos, 'row': 0}, 'databaseName': 'shop', 'ddl': ddl,
           'tableChanges': [{'type': kind, 'id': f'"shop"."{table}"', 'table': {
               'primaryKeyColumnNames': list(pk), 'columns': columns, 'comment': None}}]}
  changes = tuple(parse_schema_change(orjson.loads(orjson.dumps(value))))
  return SchemaChangeRecord(0, offset, changes, ('binlog', 1, pos, 0), done)


def _applier(cluster, topic, mode='evolve', merge='', change_types=None, election=None,
             **kwargs):
  naming = SourceNaming(merge_tables=parse_merge_tables(merge)) if merge else SourceNaming()
  config = SchemaEvolutionConfig(
      load=StreamLoadConfig(fe_nodes=('http://fe:8030',), user='root', password=''), mode=mode,
      change_types=change_types, ddl=SchemaChangeTopic('dbz', {'group.id': 'g'}, naming=naming),
      ddl_timeout_secs=60)
  return SchemaChangeApplier(config, cluster, reader=topic, election=election or _Election(),
                             **kwargs)


def _row(fields, pos, table='shop.customers'):
  raw = orjson.dumps(fields)
  return Row(table, fields, 'upsert', 't', 0, pos, len(raw), raw, position=('binlog', 1, pos, 0))


ID, NAME, FULL = (_col('id', 'INT', optional=False), _col('name', 'VARCHAR', length=20),
                  _col('full', 'VARCHAR', length=20))


def test_a_table_no_key_can_be_made_of_is_said_and_the_job_goes_on():
  cluster, topic = _Cluster(), _Topic()
  applier = _applier(cluster, topic)
  record = _record(0, 'metrics', 'CREATE', 'CREATE TABLE metrics (...)',
                   [_col('v', 'DOUBLE'), _col('j', 'JSON')], 10, pk=())
  applier.follow(record, applier.steps(record))
  assert cluster.ran == []
  assert any('create table cannot be made' in report and 'key' in report
             for report in applier.reports), applier.reports
  assert topic.committed == [0]   # said once, never retried at every restart


def _follow_created_then_renamed(applier):
  """customers made before this start (offset 0), then ``name`` renamed to ``full`` (offset 1)."""
  create = _record(0, 'customers', 'CREATE', 'CREATE TABLE customers (...)', [ID, NAME], 10,
                   done=True)
  applier.follow(create, applier.steps(create))
  rename = _record(1, 'customers', 'ALTER', 'ALTER TABLE customers RENAME COLUMN name TO full',
                   [ID, FULL], 20)
  applier.follow(rename, applier.steps(rename))


def test_a_record_another_reader_committed_is_remembered_not_run_again():
  cluster, topic = _Cluster({'shop.customers': [('id', 'INT'), ('name', 'VARCHAR')]}), _Topic({1})
  applier = _applier(cluster, topic)
  _follow_created_then_renamed(applier)
  assert cluster.ran == [] and topic.committed == []
  # ... but older rows still fit it: the value moves to the new name.
  kept, dropped = applier.fit('shop.customers', [_row({'id': 1, 'name': 'a'}, 15),
                                                 _row({'id': 2, 'full': 'b'}, 25)])
  assert [r.fields for r in kept] == [{'id': 1, 'full': 'a'}, {'id': 2, 'full': 'b'}]
  assert kept[0].raw == orjson.dumps({'id': 1, 'full': 'a'}) and dropped == []


def test_a_shards_truncate_drops_only_its_own_older_rows():
  cluster, topic = _Cluster(), _Topic()
  applier = _applier(cluster, topic, merge=r'shop\.order_\d+=shop.orders',
                     change_types={'create_table', 'add_column', 'truncate_table'})
  for offset, shard in enumerate(('order_1', 'order_2')):
    record = _record(offset, shard, 'CREATE', f'CREATE TABLE {shard} (...)', [ID], 10 + offset)
    applier.follow(record, applier.steps(record))
  truncate = SchemaChangeRecord(0, 2, tuple(parse_schema_change(
      {'source': {'db': 'shop', 'file': 'mysql-bin.000001', 'pos': 50}, 'databaseName': 'shop',
       'ddl': 'TRUNCATE TABLE order_1'})), ('binlog', 1, 50, 0), False)
  applier.follow(truncate, applier.steps(truncate))
  assert cluster.ran[-1].startswith('DELETE FROM `shop`.`orders` WHERE `_source_db` = \'shop\'')
  rows = [_row({'id': 1, '_source_db': 'shop', '_source_table': shard}, 40, 'shop.orders')
          for shard in ('order_1', 'order_2')]
  kept, dropped = applier.fit('shop.orders', rows)
  assert [r.fields['_source_table'] for r in kept] == ['order_2']
  assert [r.fields['_source_table'] for r in dropped] == ['order_1']


class _SharedTopic(_Topic):
  """Two workers' readers of one topic: a commit is seen by both (Kafka's committed offset)."""

  def commit(self, record):
    super().commit(record)
    self.elsewhere.add(record.offset)


def _truncate_record(offset, table='customers', pos=50):
  return SchemaChangeRecord(0, offset, tuple(parse_schema_change(
      {'source': {'db': 'shop', 'file': 'mysql-bin.000001', 'pos': pos}, 'databaseName': 'shop',
       'ddl': f'TRUNCATE TABLE {table}'})), ('binlog', 1, pos, 0), False)


def test_a_truncate_runs_in_the_elected_worker_only_and_the_other_goes_on_after_its_commit():
  """Run a second time, a moment later, a truncate would remove what the first worker loaded
  after it: the other worker waits for the runner's commit and only remembers the change."""
  cluster = _Cluster({'shop.customers': [('id', 'INT')]})
  topic = _SharedTopic()
  types = {'create_table', 'add_column', 'truncate_table'}
  runner = _applier(cluster, topic, change_types=types, election=_Election(runner=True))
  waits = []
  record = _truncate_record(5)

  def sleep(secs):  # while the other waits, the runner reaches the record
    waits.append(secs)
    if len(waits) == 2:
      runner.follow(record, runner.steps(record))

  other = _applier(cluster, topic, change_types=types, election=_Election(runner=False),
                   sleep=sleep)
  other.follow(record, other.steps(record))
  assert cluster.ran == ['TRUNCATE TABLE `shop`.`customers`'] and topic.committed == [5]
  assert len(waits) == 2 and waits[1] > waits[0]  # backed off
  # The other worker knows it ran: its older rows of the table are dropped, newer ones kept.
  kept, dropped = other.fit('shop.customers', [_row({'id': 1}, 40), _row({'id': 2}, 60)])
  assert [r.fields['id'] for r in kept] == [2] and [r.fields['id'] for r in dropped] == [1]


def test_a_new_runner_does_not_run_a_truncate_the_runner_before_it_committed():
  cluster = _Cluster({'shop.customers': [('id', 'INT')]})
  topic = _SharedTopic({5})
  applier = _applier(cluster, topic, change_types={'truncate_table'})
  record = _truncate_record(5)
  applier.follow(record, applier.steps(record))
  assert cluster.ran == [] and topic.committed == []


def test_a_truncate_no_runner_reaches_fails_the_bundle_after_the_ddl_timeout():
  cluster = _Cluster({'shop.customers': [('id', 'INT')]})
  now = [0.0]

  def sleep(secs):
    now[0] += secs

  applier = _applier(cluster, _SharedTopic(), change_types={'truncate_table'},
                     election=_Election(runner=False), clock=lambda: now[0], sleep=sleep)
  record = _truncate_record(5)
  with pytest.raises(SchemaTopicError, match='not run within 60s'):
    applier.follow(record, applier.steps(record))
  assert cluster.ran == [] and 60 <= now[0] <= 62


def test_an_alter_runs_wherever_it_is_reached_without_an_election():
  cluster = _Cluster({'shop.customers': [('id', 'INT'), ('name', 'VARCHAR')]})
  topic = _SharedTopic()
  applier = _applier(cluster, topic, election=_Election(runner=False))
  _follow_created_then_renamed(applier)
  assert cluster.ran == ['ALTER TABLE `shop`.`customers` RENAME COLUMN `name` `full`']
