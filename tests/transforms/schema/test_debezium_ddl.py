"""Debezium schema change events -> Doris / StarRocks schema changes (debezium_ddl, pure).

The events are written by hand after the Debezium MySQL connector's documentation ("Schema
change topic": ``inventory.customers``); the expected SQL is written by hand too.
"""

import copy
import dataclasses
import json

import pytest

from stream_load_emulator import ddl as emulator_ddl
from stream_load_emulator import schema as emulator_schema
from transforms.errors import ConfigFault, RowFault
from transforms.records.routing import SourceNaming
from transforms.schema import debezium_ddl as dd
from transforms.schema.config import TableDdlOptions

T = 'inventory.customers'
Q = '`inventory`.`customers`'


def _col(name, type_name, position, length=None, scale=None, optional=True, comment=None,
         default=None, jdbc=12):
  return {'name': name, 'jdbcType': jdbc, 'nativeType': None, 'typeName': type_name,
          'typeExpression': type_name, 'charsetName': None, 'length': length, 'scale': scale,
          'position': position, 'optional': optional, 'autoIncremented': False,
          'generated': False, 'comment': comment, 'defaultValueExpression': default,
          'enumValues': None}


ID = dict(_col('id', 'INT', 1, optional=False, jdbc=4), autoIncremented=True, generated=True)
FIRST = _col('first_name', 'VARCHAR', 2, length=255, optional=False, comment='given name')
LAST = _col('last_name', 'VARCHAR', 3, length=255, optional=False)
EMAIL = _col('email', 'VARCHAR', 4, length=255, optional=False)
CUSTOMERS = [ID, FIRST, LAST, EMAIL]


def _event(kind, ddl, columns=None, pk=('id',), table_id='"inventory"."customers"',
           envelope=False, comment=None):
  payload = {
      'source': {'version': '2.7.0.Final', 'connector': 'mysql', 'name': 'mysql',
                 'ts_ms': 1651535750218, 'snapshot': 'false', 'db': 'inventory',
                 'sequence': None, 'table': 'customers', 'server_id': 223344, 'gtid': None,
                 'file': 'mysql-bin.000003', 'pos': 570, 'row': 0, 'thread': None,
                 'query': None},
      'ts_ms': 1651535750219, 'databaseName': 'inventory', 'schemaName': None, 'ddl': ddl,
      'tableChanges': [] if kind is None else [{
          'type': kind, 'id': table_id,
          'table': None if columns is None else {
              'defaultCharsetName': 'utf8mb4', 'primaryKeyColumnNames': list(pk),
              'columns': copy.deepcopy(columns), 'comment': comment, 'attributes': []}}],
  }
  return {'schema': {'type': 'struct', 'optional': False,
                     'name': 'io.debezium.connector.mysql.SchemaChangeValue'},
          'payload': payload} if envelope else payload


def _one(value):
  changes = dd.parse_schema_change(value)
  assert len(changes) == 1
  return changes[0]


def _customers():
  return dd.TableSchema.of(_one(_event('CREATE', 'CREATE TABLE customers (...)', CUSTOMERS)))


def _alter(ddl, columns, previous=None, pk=('id',)):
  change = _one(_event('ALTER', ddl, columns, pk=pk))
  return dd.plan_changes(previous or _customers(), change)


def _sql(ops, dialect='doris'):
  return [dd.render(op, T, dialect) for op in ops]


class TestParse:
  pytestmark = pytest.mark.unit

  def test_a_create_event_reads_the_table_with_doris_types_and_its_position(self):
    change = _one(_event('CREATE', 'CREATE TABLE customers (...)', CUSTOMERS, envelope=True,
                         comment='who buys'))
    assert (change.kind, change.db, change.table, change.schema) == (
        'create', 'inventory', 'customers', None)
    assert change.columns == (
        dd.Column('id', 'INT', nullable=False, source_type='INT'),
        dd.Column('first_name', 'VARCHAR(765)', nullable=False, comment='given name',
                  source_type='VARCHAR(255)'),
        dd.Column('last_name', 'VARCHAR(765)', nullable=False, source_type='VARCHAR(255)'),
        dd.Column('email', 'VARCHAR(765)', nullable=False, source_type='VARCHAR(255)'))
    assert change.primary_key == ('id',)
    assert change.comment == 'who buys'
    assert change.position == (('file', 'mysql-bin.000003'), ('pos', 570), ('row', 0))
    assert change.ts_ms == 1651535750219
    assert change.connector == 'mysql'
    assert change.ddl == 'CREATE TABLE customers (...)'

  def test_the_payload_reads_the_same_with_or_without_the_schema_envelope(self):
    ddl = 'CREATE TABLE customers (...)'
    assert (dd.parse_schema_change(_event('CREATE', ddl, CUSTOMERS, envelope=True))
            == dd.parse_schema_change(_event('CREATE', ddl, CUSTOMERS)))

  def test_a_history_record_string_or_a_schema_history_record_reads_the_same(self):
    payload = _event('ALTER', 'ALTER TABLE customers DROP COLUMN email', [ID, FIRST, LAST])
    expected = _one(payload)
    history = {'source': {'server': 'mysql'}, 'position': {'ts_sec': 1, 'file':
               'mysql-bin.000003', 'pos': 570, 'row': 0}, 'ts_ms': 1651535750219,
               'databaseName': 'inventory', 'ddl': payload['ddl'],
               'tableChanges': payload['tableChanges']}
    assert _one(history) == dataclasses.replace(expected, connector=None)
    assert _one({'historyRecord': json.dumps(history)}) == _one(history)
    with pytest.raises(dd.BadSchemaChange, match='"historyRecord" is not JSON'):
      dd.parse_schema_change({'historyRecord': '{'})

  def test_columns_come_in_position_order_not_array_order(self):
    change = _one(_event('CREATE', 'x', [EMAIL, ID, LAST, FIRST]))
    assert [c.name for c in change.columns] == ['id', 'first_name', 'last_name', 'email']

  def test_a_truncate_without_table_changes_is_read_from_the_ddl_text(self):
    change = _one(_event(None, 'TRUNCATE TABLE /* all of it */ `customers`'))
    assert (change.kind, change.db, change.table, change.columns) == (
        'truncate', 'inventory', 'customers', ())
    change = _one(_event(None, 'truncate shop.orders'))
    assert (change.kind, change.db, change.table) == ('truncate', 'shop', 'orders')

  def test_a_drop_table_is_read_from_table_changes_or_from_the_ddl_text(self):
    change = _one(_event('DROP', 'DROP TABLE `inventory`.`customers`'))
    assert (change.kind, change.db, change.table) == ('drop', 'inventory', 'customers')
    changes = dd.parse_schema_change(
        _event(None, 'DROP TABLE IF EXISTS customers, `shop`.`orders` /* generated */'))
    assert [(c.kind, c.db, c.table) for c in changes] == [
        ('drop', 'inventory', 'customers'), ('drop', 'shop', 'orders')]

  def test_other_ddl_without_table_changes_changes_no_table(self):
    assert dd.parse_schema_change(_event(None, 'CREATE DATABASE inventory')) == []
    assert dd.parse_schema_change(_event(None, 'CREATE INDEX i ON customers (email)')) == []

  def test_a_three_part_id_names_a_schema(self):
    value = _event('CREATE', None, CUSTOMERS, table_id='"testDB"."dbo"."customers"')
    value['source']['connector'] = 'sqlserver'
    change = _one(value)
    assert (change.db, change.schema, change.table) == ('testDB', 'dbo', 'customers')
    assert change.source_values == ('testDB', 'dbo.customers')

  def test_a_table_rename_is_read_and_is_not_planned(self):
    change = _one(_event('ALTER', 'RENAME TABLE customers TO clients', CUSTOMERS,
                         table_id='"inventory"."customers","inventory"."clients"'))
    assert (change.kind, change.table, change.renamed_from) == (
        'rename', 'clients', ('inventory', 'customers'))
    with pytest.raises(dd.UnsupportedSchemaChange, match='renamed'):
      dd.plan_changes(_customers(), change)

  @pytest.mark.parametrize('value, names', [
      ([], 'must be an object'),
      ({'schema': {}, 'payload': None}, 'null "payload"'),
      ({'source': {}, 'databaseName': 'inventory'}, 'neither "ddl" nor "tableChanges"'),
      ({'ddl': 'x', 'tableChanges': {}}, '"tableChanges" must be an array'),
      ({'ddl': 7}, '"ddl" must be a string'),
      (_event('RECREATE', 'x', CUSTOMERS), '"type" must be CREATE, ALTER or DROP'),
      (_event('CREATE', 'x', CUSTOMERS, table_id=None), '"id" must be a table id'),
      (_event('CREATE', 'x', CUSTOMERS, table_id='"a"."b"."c"."d"'), 'cannot read table id'),
      (_event('CREATE', 'x', None), '"table" must be an object'),
      (_event('CREATE', 'x', []), '"columns" must be a non-empty array'),
      (_event('CREATE', 'x', [dict(ID, name=None)]), r'columns\[0\]: no "name"'),
      (_event('CREATE', 'x', [dict(ID, typeName='')]), r'columns\[0\] \(id\): no "typeName"'),
      (_event('CREATE', 'x', [dict(ID, length='11')]), '"length" must be an integer'),
      (_event('CREATE', 'x', [ID], pk=('uid',)), "primary key column 'uid' is not among"),
      (_event('CREATE', 'x', [ID, dict(FIRST, name='ID')]), 'a column name repeats'),
  ])
  def test_bad_input_is_a_row_fault_that_names_what_is_wrong(self, value, names):
    with pytest.raises(dd.BadSchemaChange, match=names) as caught:
      dd.parse_schema_change(value)
    assert isinstance(caught.value, RowFault)
    assert caught.value.code == 'bad_envelope'

  def test_a_type_without_a_doris_type_names_its_column(self):
    value = _event('CREATE', 'x', [ID, _col('spot', 'GEOMETRY', 2)])
    with pytest.raises(dd.UnsupportedSchemaChange, match="column 'spot'.*GEOMETRY"):
      dd.parse_schema_change(value)


class TestTypes:
  pytestmark = pytest.mark.unit

  @pytest.mark.parametrize('type_name, length, scale, expected', [
      ('BOOLEAN', None, None, 'BOOLEAN'), ('BOOL', None, None, 'BOOLEAN'),
      ('TINYINT', 1, None, 'BOOLEAN'), ('TINYINT', 4, None, 'TINYINT'),
      ('TINYINT UNSIGNED', 3, None, 'SMALLINT'), ('SMALLINT', None, None, 'SMALLINT'),
      ('SMALLINT UNSIGNED', None, None, 'INT'), ('MEDIUMINT', None, None, 'INT'),
      ('MEDIUMINT UNSIGNED', None, None, 'BIGINT'), ('INT', 11, None, 'INT'),
      ('INTEGER', None, None, 'INT'), ('INT UNSIGNED', 10, None, 'BIGINT'),
      ('INT UNSIGNED ZEROFILL', 10, None, 'BIGINT'), ('BIGINT', 20, None, 'BIGINT'),
      ('BIGINT UNSIGNED', 20, None, 'LARGEINT'), ('SERIAL', None, None, 'LARGEINT'),
      ('DECIMAL', 10, 2, 'DECIMAL(10, 2)'), ('DECIMAL UNSIGNED', 38, 10, 'DECIMAL(38, 10)'),
      ('NUMERIC', 65, 30, 'STRING'), ('DECIMAL', None, None, 'DECIMAL(10, 0)'),
      ('FLOAT', None, None, 'FLOAT'), ('FLOAT', 7, 4, 'FLOAT'), ('FLOAT', 53, None, 'DOUBLE'),
      ('DOUBLE', None, None, 'DOUBLE'), ('REAL', None, None, 'DOUBLE'),
      ('DOUBLE PRECISION', None, None, 'DOUBLE'),
      ('DATE', None, None, 'DATE'), ('DATETIME', None, None, 'DATETIME'),
      ('DATETIME', 3, None, 'DATETIME(3)'), ('TIMESTAMP', 6, None, 'DATETIME(6)'),
      ('DATETIME', 26, None, 'DATETIME(6)'), ('DATETIME', 19, None, 'DATETIME'),
      ('TIME', 3, None, 'STRING'), ('YEAR', None, None, 'INT'),
      ('CHAR', 36, None, 'CHAR(108)'), ('CHAR', 85, None, 'CHAR(255)'),
      ('CHAR', 86, None, 'VARCHAR(258)'), ('VARCHAR', 20, None, 'VARCHAR(60)'),
      ('VARCHAR', 21844, None, 'VARCHAR(65532)'), ('VARCHAR', 21845, None, 'STRING'),
      ('varchar(64)', None, None, 'VARCHAR(192)'),
      ('TEXT', None, None, 'STRING'), ('LONGTEXT', None, None, 'STRING'),
      ('ENUM', 1, None, 'STRING'), ('SET', 1, None, 'STRING'), ('JSON', None, None, 'JSON'),
      ('BLOB', None, None, 'STRING'), ('VARBINARY', 16, None, 'STRING'),
      ('BINARY', 16, None, 'STRING'), ('BIT', 1, None, 'BOOLEAN'), ('BIT', 8, None, 'STRING'),
  ])
  def test_mysql_types_map_as_the_doris_connector_does(self, type_name, length, scale,
                                                         expected):
    assert dd.doris_type(type_name, length, scale) == expected

  @pytest.mark.parametrize('type_name, length, scale, expected', [
      ('int2', 5, 0, 'SMALLINT'), ('int4', 10, 0, 'INT'), ('serial', 10, 0, 'INT'),
      ('int8', 19, 0, 'BIGINT'), ('bigserial', 19, 0, 'BIGINT'),
      ('numeric', 12, 3, 'DECIMAL(12, 3)'), ('numeric', None, None, 'STRING'),
      ('numeric', 131089, 0, 'STRING'), ('float4', 8, 8, 'FLOAT'), ('float8', 17, 17, 'DOUBLE'),
      ('varchar', 20, 0, 'VARCHAR(60)'), ('varchar', 2147483647, 0, 'STRING'),
      ('text', 2147483647, 0, 'STRING'), ('bpchar', 2, 0, 'CHAR(6)'),
      ('timestamptz', 35, 6, 'DATETIME(6)'), ('timestamp', 29, 3, 'DATETIME(3)'),
      ('timestamp', None, None, 'DATETIME(6)'), ('date', 13, 0, 'DATE'), ('time', 15, 6, 'STRING'),
      ('bool', 1, 0, 'BOOLEAN'), ('jsonb', None, None, 'JSON'), ('json', None, None, 'JSON'),
      ('uuid', None, None, 'VARCHAR(36)'), ('bytea', None, None, 'STRING'),
      ('bit', 1, 0, 'BOOLEAN'), ('bit', 4, 0, 'STRING'),
  ])
  def test_postgres_type_names_map_too(self, type_name, length, scale, expected):
    assert dd.doris_type(type_name, length, scale, connector='postgresql') == expected

  def test_postgres_only_names_are_known_without_the_connector(self):
    assert dd.doris_type('int8') == 'BIGINT'
    assert dd.doris_type('timestamptz', None, 6) == 'DATETIME(6)'

  def test_tinyint1_stays_tinyint_when_asked(self):
    assert dd.doris_type('TINYINT', 1, tinyint1_as_boolean=False) == 'TINYINT'
    value = _event('CREATE', 'x', [ID, _col('flag', 'TINYINT', 2, length=1)])
    assert [c.doris_type for c in _one(value).columns] == ['INT', 'BOOLEAN']
    assert [c.doris_type for c in dd.parse_schema_change(value, tinyint1_as_boolean=False)[0]
            .columns] == ['INT', 'TINYINT']

  @pytest.mark.parametrize('type_name, connector', [
      ('GEOMETRY', None), ('POINT', 'mysql'), ('sql_variant', 'sqlserver'), ('', None),
      ('VARCHAR', 'mysql')])
  def test_a_type_without_a_doris_type_raises(self, type_name, connector):
    with pytest.raises(dd.UnsupportedSchemaChange):
      dd.doris_type(type_name, connector=connector)

  def test_a_key_column_gets_a_type_doris_takes_as_a_key(self):
    code = _col('code', 'VARCHAR', 1, length=30000, optional=False)
    change = _one(_event('CREATE', 'x', [code, _col('note', 'VARCHAR', 2, length=30000)],
                         pk=('code',)))
    assert [c.doris_type for c in change.columns] == ['VARCHAR(65533)', 'STRING']

  def test_a_key_column_that_cannot_be_a_doris_key_is_refused_when_planned(self):
    change = _one(_event('CREATE', 'x', [_col('k', 'DOUBLE', 1, optional=False)], pk=('k',)))
    with pytest.raises(dd.UnsupportedSchemaChange, match="'k'.*DOUBLE"):
      dd.plan_changes(None, change)

  @pytest.mark.parametrize('old, new, widening', [
      ('TINYINT', 'SMALLINT', True), ('INT', 'BIGINT', True), ('BIGINT', 'LARGEINT', True),
      ('BIGINT', 'INT', False), ('INT', 'INT', False), ('int(11)', 'INT', False),
      ('VARCHAR(60)', 'VARCHAR(600)', True), ('varchar(600)', 'VARCHAR(60)', False),
      ('VARCHAR(60)', 'STRING', True), ('STRING', 'VARCHAR(65533)', False),
      ('CHAR(6)', 'CHAR(9)', True), ('CHAR(6)', 'VARCHAR(6)', True),
      ('CHAR(9)', 'VARCHAR(6)', False), ('CHAR(6)', 'STRING', True),
      ('DECIMAL(10, 2)', 'DECIMAL(12, 2)', True), ('DECIMALV3(10,2)', 'DECIMAL(12, 2)', True),
      ('DECIMAL(10, 2)', 'DECIMAL(12, 3)', False), ('DECIMAL(12, 2)', 'DECIMAL(10, 2)', False),
      ('FLOAT', 'DOUBLE', True), ('DOUBLE', 'FLOAT', False),
      ('DATETIME', 'DATETIME(3)', True), ('DATETIMEV2(3)', 'DATETIME(6)', True),
      ('DATETIME(6)', 'DATETIME(3)', False), ('DATETIME', 'DATETIME(0)', False),
      ('INT', 'VARCHAR(20)', False), ('BIGINT', 'DOUBLE', False), ('DATE', 'DATETIME', False),
      ('BOOLEAN', 'TINYINT', False), ('JSON', 'STRING', False),
  ])
  def test_is_widening(self, old, new, widening):
    assert dd.is_widening(old, new) is widening


class TestPlanAndRender:
  pytestmark = pytest.mark.unit

  def test_a_new_table_is_created_with_its_key_comments_and_the_loader_s_properties(self):
    change = _one(_event('CREATE', 'CREATE TABLE customers (...)', CUSTOMERS,
                         comment="the shop's customers"))
    ops = dd.plan_changes(None, change)
    assert ops == [dd.CreateTable(change.columns, ('id',), "the shop's customers")]
    assert dd.render(ops[0], T) == (
        'CREATE TABLE IF NOT EXISTS `inventory`.`customers` (\n'
        '  `id` INT NOT NULL,\n'
        "  `first_name` VARCHAR(765) NULL COMMENT 'given name',\n"
        '  `last_name` VARCHAR(765) NULL,\n'
        '  `email` VARCHAR(765) NULL\n'
        ") UNIQUE KEY(`id`) COMMENT 'the shop\\'s customers'\n"
        'DISTRIBUTED BY HASH(`id`) BUCKETS AUTO\n'
        'PROPERTIES ("light_schema_change" = "true", '
        '"enable_unique_key_merge_on_write" = "true")')
    assert dd.render(ops[0], T, 'starrocks') == (
        'CREATE TABLE IF NOT EXISTS `inventory`.`customers` (\n'
        '  `id` INT NOT NULL,\n'
        "  `first_name` VARCHAR(765) NULL COMMENT 'given name',\n"
        '  `last_name` VARCHAR(765) NULL,\n'
        '  `email` VARCHAR(765) NULL\n'
        ") PRIMARY KEY(`id`) COMMENT 'the shop\\'s customers'\n"
        'DISTRIBUTED BY HASH(`id`)')

  def test_a_table_without_primary_key_is_a_duplicate_key_table(self):
    log = [_col('at', 'DATETIME', 1, length=3), _col('line', 'TEXT', 2)]
    (op,) = dd.plan_changes(None, _one(_event('CREATE', 'x', log, pk=())))
    assert dd.render(op, 'inventory.log', options=TableDdlOptions(
        distributed_by=(), buckets=4, properties={'replication_num': '1'})) == (
            'CREATE TABLE IF NOT EXISTS `inventory`.`log` (\n'
            '  `at` DATETIME(3) NULL,\n'
            '  `line` STRING NULL\n'
            ') DUPLICATE KEY(`at`)\n'
            'DISTRIBUTED BY RANDOM BUCKETS 4\n'
            'PROPERTIES ("light_schema_change" = "true", "replication_num" = "1")')
    assert dd.render(op, 'inventory.log', 'starrocks').splitlines()[1] == '  `at` DATETIME NULL,'

  def test_a_sequence_column_and_string_keys_follow_the_loader(self):
    code = _col('code', 'VARCHAR', 1, length=30000, optional=False)
    (op,) = dd.plan_changes(None, _one(_event('CREATE', 'x', [code], pk=('code',))))
    assert dd.render(op, 'shop.codes', sequence_column='_offset').splitlines()[1:] == [
        '  `code` VARCHAR(65533) NOT NULL', ') UNIQUE KEY(`code`)',
        'DISTRIBUTED BY HASH(`code`) BUCKETS AUTO',
        'PROPERTIES ("light_schema_change" = "true", "enable_unique_key_merge_on_write" = '
        '"true", "function_column.sequence_col" = "_offset")']
    assert dd.render(op, 'shop.codes', 'starrocks').splitlines()[1] == (
        '  `code` VARCHAR(128) NOT NULL')

  def test_add_column_the_documentation_example(self):
    middle = _col('middle_name', 'VARCHAR', 3, length=255)
    ops = _alter('ALTER TABLE customers ADD middle_name varchar(255) AFTER first_name',
                 [ID, FIRST, middle, dict(LAST, position=4), dict(EMAIL, position=5)])
    assert ops == [dd.AddColumn(dd.Column('middle_name', 'VARCHAR(765)',
                                          source_type='VARCHAR(255)'))]
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` ADD COLUMN `middle_name` '
                         'VARCHAR(765) NULL']
    assert _sql(ops, 'starrocks') == _sql(ops)

  def test_an_added_column_keeps_its_comment(self):
    ops = _alter("ALTER TABLE customers ADD COLUMN vip TINYINT(1) COMMENT 'it''s true'",
                 CUSTOMERS + [_col('vip', 'TINYINT', 5, length=1, comment="it's true")])
    assert _sql(ops) == ["ALTER TABLE `inventory`.`customers` ADD COLUMN `vip` BOOLEAN NULL "
                         "COMMENT 'it\\'s true'"]

  def test_int_to_bigint_is_a_widening_modify(self):
    score = _col('score', 'INT', 5, jdbc=4)
    previous = dd.TableSchema.of(_one(_event('CREATE', 'x', CUSTOMERS + [score])))
    ops = _alter('ALTER TABLE customers MODIFY COLUMN score BIGINT',
                 CUSTOMERS + [dict(score, typeName='BIGINT')], previous)
    assert ops == [dd.ModifyColumn('score', 'INT', 'BIGINT')]
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` MODIFY COLUMN `score` BIGINT NULL']

  def test_a_key_column_is_modified_as_a_key(self):
    ops = _alter('ALTER TABLE customers MODIFY id BIGINT NOT NULL AUTO_INCREMENT',
                 [dict(ID, typeName='BIGINT'), FIRST, LAST, EMAIL])
    assert ops == [dd.ModifyColumn('id', 'INT', 'BIGINT', key=True)]
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` MODIFY COLUMN `id` BIGINT KEY '
                         'NOT NULL']

  def test_varchar_20_to_200_widens_in_utf8_bytes(self):
    code = _col('code', 'VARCHAR', 5, length=20)
    previous = dd.TableSchema.of(_one(_event('CREATE', 'x', CUSTOMERS + [code])))
    ops = _alter('ALTER TABLE `inventory`.`customers` MODIFY `code` VARCHAR(200)',
                 CUSTOMERS + [dict(code, length=200)], previous)
    assert ops == [dd.ModifyColumn('code', 'VARCHAR(60)', 'VARCHAR(600)')]
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` MODIFY COLUMN `code` VARCHAR(600) '
                         'NULL']

  def test_a_narrowing_is_marked_and_never_allowed(self):
    ops = _alter('ALTER TABLE customers MODIFY first_name VARCHAR(20) NOT NULL',
                 [ID, dict(FIRST, length=20), LAST, EMAIL])
    assert ops == [dd.ModifyColumn('first_name', 'VARCHAR(765)', 'VARCHAR(60)', narrowing=True,
                                   comment='given name')]
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` MODIFY COLUMN `first_name` '
                         "VARCHAR(60) NULL COMMENT 'given name'"]
    for policy in dd.POLICIES:
      assert not dd.policy_allows(ops[0], policy, frozenset(dd.CHANGE_TYPES))

  def test_change_column_renames_then_modifies(self):
    ops = _alter('ALTER TABLE customers CHANGE COLUMN last_name surname VARCHAR(300) NOT NULL',
                 [ID, FIRST, dict(LAST, name='surname', length=300), EMAIL])
    surname = dd.Column('surname', 'VARCHAR(900)', nullable=False, source_type='VARCHAR(300)')
    assert ops == [dd.RenameColumn('last_name', 'surname', surname),
                   dd.ModifyColumn('surname', 'VARCHAR(765)', 'VARCHAR(900)')]
    assert _sql(ops) == [
        'ALTER TABLE `inventory`.`customers` RENAME COLUMN `last_name` `surname`',
        'ALTER TABLE `inventory`.`customers` MODIFY COLUMN `surname` VARCHAR(900) NULL']
    assert _sql(ops[:1], 'starrocks') == [
        'ALTER TABLE `inventory`.`customers` RENAME COLUMN `last_name` TO `surname`']

  def test_change_without_a_new_name_and_rename_column(self):
    assert _alter('ALTER TABLE customers CHANGE email email VARCHAR(255) NULL',
                  [ID, FIRST, LAST, dict(EMAIL, optional=True)]) == []
    ops = _alter('alter table inventory.customers rename column `email` to mail',
                 [ID, FIRST, LAST, dict(EMAIL, name='mail')])
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` RENAME COLUMN `email` `mail`']

  def test_a_rename_is_never_guessed_from_positions_or_types(self):
    mail = dict(EMAIL, name='mail')
    for ddl in ('ALTER TABLE customers DROP COLUMN email, ADD COLUMN mail VARCHAR(255) NOT NULL',
                '', "ALTER TABLE customers COMMENT 'CHANGE email mail x'",
                "ALTER TABLE customers ADD mail VARCHAR(255) COMMENT 'RENAME COLUMN email TO "
                "mail'; ALTER TABLE orders RENAME COLUMN email TO mail",
                'ALTER TABLE other.customers RENAME COLUMN email TO mail'):
      ops = _alter(ddl, [ID, FIRST, LAST, mail])
      assert sorted(ops, key=repr) == [
          dd.AddColumn(dd.Column('mail', 'VARCHAR(765)', nullable=False,
                                 source_type='VARCHAR(255)')),
          dd.DropColumn('email')], ddl

  def test_drop_column(self):
    ops = _alter('ALTER TABLE customers DROP COLUMN email', [ID, FIRST, LAST])
    assert ops == [dd.DropColumn('email')]
    assert _sql(ops) == ['ALTER TABLE `inventory`.`customers` DROP COLUMN `email`']

  def test_ops_follow_the_order_of_the_ddl(self):
    ops = _alter('ALTER TABLE customers DROP COLUMN first_name, '
                 'RENAME COLUMN last_name TO first_name',
                 [ID, dict(LAST, name='first_name', position=2), dict(EMAIL, position=3)])
    assert _sql(ops) == [
        'ALTER TABLE `inventory`.`customers` DROP COLUMN `first_name`',
        'ALTER TABLE `inventory`.`customers` RENAME COLUMN `last_name` `first_name`']
    ops = _alter('ALTER TABLE customers ADD COLUMN (age INT, city VARCHAR(10)), '
                 'MODIFY COLUMN email VARCHAR(300) NOT NULL',
                 [ID, FIRST, LAST, dict(EMAIL, length=300), _col('age', 'INT', 5, jdbc=4),
                  _col('city', 'VARCHAR', 6, length=10)])
    assert _sql(ops) == [
        'ALTER TABLE `inventory`.`customers` ADD COLUMN `age` INT NULL',
        'ALTER TABLE `inventory`.`customers` ADD COLUMN `city` VARCHAR(30) NULL',
        'ALTER TABLE `inventory`.`customers` MODIFY COLUMN `email` VARCHAR(900) NULL']

  def test_index_and_key_clauses_are_no_column_changes(self):
    assert _alter('ALTER TABLE customers ADD INDEX email (email), DROP INDEX first_name, '
                  'ADD UNIQUE KEY (last_name)', CUSTOMERS) == []

  def test_a_create_of_an_existing_table_is_planned_as_an_alter(self):
    assert dd.plan_changes(_customers(), _one(_event('CREATE', 'x', CUSTOMERS))) == []
    ops = dd.plan_changes(_customers(), _one(_event('CREATE', 'x', [ID, FIRST, LAST])))
    assert ops == [dd.DropColumn('email')]

  def test_drop_table_and_truncate(self):
    (drop,) = dd.plan_changes(_customers(), _one(_event('DROP', 'DROP TABLE customers')))
    (truncate,) = dd.plan_changes(None, _one(_event(None, 'TRUNCATE customers')))
    assert (drop, truncate) == (dd.DropTable(), dd.TruncateTable())
    assert _sql([drop, truncate]) == ['DROP TABLE IF EXISTS `inventory`.`customers`',
                                      'TRUNCATE TABLE `inventory`.`customers`']

  def test_a_changed_primary_key_is_refused(self):
    change = _one(_event('ALTER', 'ALTER TABLE customers DROP PRIMARY KEY, ADD PRIMARY KEY '
                         '(id, email)', CUSTOMERS, pk=('id', 'email')))
    with pytest.raises(dd.UnsupportedSchemaChange, match=r'changed from \(id\) to \(id, email\)'):
      dd.plan_changes(_customers(), change)

  def test_target_only_columns_are_never_dropped(self):
    target = dd.TableSchema.from_columns(
        [('id', 'int'), ('first_name', 'varchar(765)'), ('last_name', 'varchar(765)'),
         ('email', 'varchar(765)'), ('_source_db', 'varchar(65533)'),
         ('_source_table', 'varchar(65533)'), ('__DORIS_DELETE_SIGN__', 'tinyint'),
         ('_offset', 'bigint')], primary_key=('id', '_source_db', '_source_table'))
    change = _one(_event('ALTER', 'ALTER TABLE customers ADD age INT',
                         CUSTOMERS + [_col('age', 'INT', 5, jdbc=4)]))
    assert dd.plan_changes(target, change, target_only=('_offset',)) == [
        dd.AddColumn(dd.Column('age', 'INT', source_type='INT'))]

  def test_a_merged_family_gets_its_source_columns_and_deletes_its_own_rows(self):
    change = _one(_event('CREATE', 'x', [ID, EMAIL]))
    (create,) = dd.plan_changes(None, change, merged=True)
    assert dd.render(create, 'inventory.all_customers').splitlines()[:7] == [
        'CREATE TABLE IF NOT EXISTS `inventory`.`all_customers` (',
        '  `id` INT NOT NULL,', '  `_source_db` VARCHAR(65533) NOT NULL,',
        '  `_source_table` VARCHAR(65533) NOT NULL,', '  `email` VARCHAR(765) NULL',
        ') UNIQUE KEY(`id`, `_source_db`, `_source_table`)',
        'DISTRIBUTED BY HASH(`id`, `_source_db`, `_source_table`) BUCKETS AUTO']
    alter = _one(_event('ALTER', 'ALTER TABLE customers ADD age INT',
                        [ID, EMAIL, _col('age', 'INT', 5, jdbc=4)]))
    assert dd.plan_changes(dd.TableSchema(create.columns, create.primary_key), alter,
                           merged=True) == [dd.AddColumn(dd.Column('age', 'INT',
                                                                   source_type='INT'))]
    (truncate,) = dd.plan_changes(None, _one(_event(None, 'TRUNCATE customers')), merged=True)
    (drop,) = dd.plan_changes(None, _one(_event('DROP', 'DROP TABLE customers')), merged=True)
    expected = ("DELETE FROM `inventory`.`all_customers` WHERE `_source_db` = 'inventory' AND "
                "`_source_table` = 'customers'")
    assert dd.render(truncate, 'inventory.all_customers') == expected
    assert dd.render(drop, 'inventory.all_customers') == expected

  def test_the_target_of_a_change_is_named_as_its_rows_are(self):
    change = _one(_event('CREATE', 'x', CUSTOMERS))
    assert dd.target_table(change, SourceNaming(), 'dbserver1') == ('inventory.customers', False)
    naming = SourceNaming(table_template='ods.{prefix}_{table}',
                          merge_tables=(('inventory\\.cust.*', 'ods.all_customers'),))
    assert dd.target_table(change, naming, 'dbserver1') == ('ods.all_customers', True)
    assert dd.target_table(change, SourceNaming(exclude_tables='inventory\\..*'), 'p') is None

  def test_render_refuses_what_it_cannot_write(self):
    with pytest.raises(ValueError, match='dialect'):
      dd.render(dd.DropColumn('a'), T, 'mysql')
    with pytest.raises(ValueError, match='db.table'):
      dd.render(dd.DropColumn('a'), 'customers')


class TestPolicy:
  pytestmark = pytest.mark.unit

  COLUMN = dd.Column('c', 'INT')
  OPS = {
      'create': dd.CreateTable((COLUMN,), ('c',)),
      'add': dd.AddColumn(COLUMN),
      'widen': dd.ModifyColumn('c', 'INT', 'BIGINT'),
      'narrow': dd.ModifyColumn('c', 'BIGINT', 'INT', narrowing=True),
      'rename': dd.RenameColumn('b', 'c', COLUMN),
      'drop': dd.DropColumn('c'),
      'truncate': dd.TruncateTable(),
      'drop_table': dd.DropTable(),
  }
  ALLOWED = {
      'none': set(),
      'add_columns': {'create', 'add'},
      'lenient': {'create', 'add', 'widen'},
      'evolve': {'create', 'add', 'widen', 'rename', 'drop'},
  }

  @pytest.mark.parametrize('policy', dd.POLICIES)
  def test_what_each_policy_applies(self, policy):
    allowed = {name for name, op in self.OPS.items() if dd.policy_allows(op, policy, None)}
    assert allowed == self.ALLOWED[policy]

  def test_truncate_and_drop_table_only_when_listed_and_a_list_limits_the_rest(self):
    listed = frozenset({'truncate_table', 'drop_table', 'add_column'})
    allowed = {name for name, op in self.OPS.items()
               if dd.policy_allows(op, 'evolve', listed)}
    assert allowed == {'add', 'truncate', 'drop_table'}
    assert not dd.policy_allows(self.OPS['truncate'], 'none', listed)
    assert not dd.policy_allows(self.OPS['drop_table'], 'add_columns', frozenset())

  def test_lenient_adds_a_renamed_column_and_ignores_drops(self):
    surname = dd.Column('surname', 'VARCHAR(900)')
    ops = [dd.RenameColumn('last_name', 'surname', surname),
           dd.ModifyColumn('surname', 'VARCHAR(765)', 'VARCHAR(900)'),
           dd.DropColumn('email'), dd.ModifyColumn('id', 'INT', 'BIGINT', key=True),
           dd.ModifyColumn('code', 'VARCHAR(60)', 'VARCHAR(6)', narrowing=True)]
    assert dd.apply_policy(ops, 'lenient') == [
        dd.AddColumn(surname), dd.ModifyColumn('id', 'INT', 'BIGINT', key=True)]
    assert dd.apply_policy(ops, 'evolve') == ops[:4]
    assert dd.apply_policy(ops, 'add_columns') == []
    assert dd.apply_policy(ops, 'lenient', frozenset({'modify_column'})) == [ops[3]]

  @pytest.mark.parametrize('policy, change_types', [
      ('all', None), ('evolve', frozenset({'drop_index'}))])
  def test_an_unknown_policy_or_change_type_is_a_config_fault(self, policy, change_types):
    with pytest.raises(ConfigFault):
      dd.policy_allows(self.OPS['add'], policy, change_types)


class TestTheLocalServerTakesTheSql:
  """The rendered statements through the local server's SQL parser and catalog (a statement it
  does not run yet is skipped)."""
  pytestmark = pytest.mark.transform

  @pytest.fixture
  def server(self, stream_load_server):
    (create,) = dd.plan_changes(None, _one(_event('CREATE', 'x', CUSTOMERS + [
        _col('score', 'INT', 5, jdbc=4)])))
    stream_load_server.sql(dd.render(create, 'demo.customers'), 'demo')
    return stream_load_server

  @staticmethod
  def _run(server, op):
    stmt = dd.render(op, 'demo.customers')
    if not emulator_ddl.is_ddl(stmt):
      pytest.skip(f'the local server does not run {stmt.split(" COLUMN")[0]!r} yet')
    return server.sql(stmt, 'demo')

  @staticmethod
  def _columns(server):
    return [(row[0], row[1]) for row in server.sql('DESC demo.customers', 'demo')[1]]

  def test_the_created_table_reads_back(self, server):
    assert self._columns(server) == [
        ('id', 'int'), ('first_name', 'varchar(765)'), ('last_name', 'varchar(765)'),
        ('email', 'varchar(765)'), ('score', 'int')]
    (create,) = dd.plan_changes(None, _one(_event('CREATE', 'x', CUSTOMERS)))
    ((_, table),) = emulator_schema.parse_ddl(dd.render(create, T))
    assert (table.keys_type, table.key_columns) == ('UNIQUE', ['id'])

  @pytest.mark.parametrize('op, expected', [
      (dd.AddColumn(dd.Column('age', 'BIGINT', comment="it's")),
       ['id', 'first_name', 'last_name', 'email', 'score', 'age']),
      (dd.DropColumn('email'), ['id', 'first_name', 'last_name', 'score']),
      (dd.RenameColumn('email', 'mail', dd.Column('mail', 'VARCHAR(765)')),
       ['id', 'first_name', 'last_name', 'mail', 'score']),
  ], ids=lambda value: type(value).__name__)
  def test_column_changes_run(self, server, op, expected):
    self._run(server, op)
    assert [name for name, _ in self._columns(server)] == expected

  def test_a_widening_runs_and_a_narrowing_is_refused(self, server):
    self._run(server, dd.ModifyColumn('score', 'INT', 'BIGINT'))
    assert self._columns(server)[-1] == ('score', 'bigint')
    with pytest.raises(emulator_ddl.DdlError):
      self._run(server, dd.ModifyColumn('email', 'VARCHAR(765)', 'VARCHAR(60)', narrowing=True))

  def test_truncate_and_drop_table_run(self, server):
    self._run(server, dd.TruncateTable())
    self._run(server, dd.DropTable())
    with pytest.raises(emulator_ddl.DdlError, match='Unknown table'):
      server.sql('DESC demo.customers', 'demo')
