"""Doris types inferred from JSON values, widening, and the DDL text (pure functions)."""

import decimal

import pytest

from transforms.schema import types

pytestmark = pytest.mark.unit


@pytest.mark.parametrize('value, expected', [
    (True, 'BOOLEAN'), (False, 'BOOLEAN'), (0, 'BIGINT'), (-2 ** 63, 'BIGINT'),
    (2 ** 63, 'LARGEINT'), (-2 ** 127, 'LARGEINT'), (2 ** 127, 'STRING'), (1.5, 'DOUBLE'),
    ('x', 'STRING'), ({'a': 1}, 'JSON'), ([1, 2], 'JSON'), (None, None),
    (decimal.Decimal('1.25'), 'DECIMAL(38, 10)'),
    (decimal.Decimal('0.' + '1' * 20), 'DECIMAL(38, 20)'),
    (decimal.Decimal('1E-40'), 'DECIMAL(38, 30)'),
])
def test_a_json_value_maps_to_its_doris_type(value, expected):
  assert types.infer_type(value) == expected


@pytest.mark.parametrize('a, b, expected', [
    (None, 'BIGINT', 'BIGINT'), ('BIGINT', None, 'BIGINT'), ('BIGINT', 'BIGINT', 'BIGINT'),
    ('BIGINT', 'LARGEINT', 'LARGEINT'), ('LARGEINT', 'BIGINT', 'LARGEINT'),
    ('BIGINT', 'DOUBLE', 'DOUBLE'), ('DECIMAL(38, 10)', 'BIGINT', 'DECIMAL(38, 10)'),
    ('DECIMAL(38, 10)', 'DECIMAL(38, 12)', 'DECIMAL(38, 12)'),
    ('DECIMAL(38, 10)', 'DOUBLE', 'DOUBLE'), ('BOOLEAN', 'BIGINT', 'STRING'),
    ('JSON', 'STRING', 'STRING'), ('BIGINT', 'JSON', 'STRING'),
])
def test_disagreeing_values_widen_to_a_type_that_holds_both(a, b, expected):
  assert types.widen(a, b) == expected


@pytest.mark.parametrize('type_name, key_ok, as_key', [
    ('BIGINT', True, 'BIGINT'), ('STRING', True, 'VARCHAR(65533)'), ('VARCHAR(20)', True,
                                                                       'VARCHAR(20)'),
    ('DOUBLE', False, None), ('FLOAT', False, None), ('JSON', False, None),
    ('DECIMAL(38, 10)', True, 'DECIMAL(38, 10)'), ('BOOLEAN', True, 'BOOLEAN'),
])
def test_key_columns_follow_doris_rules(type_name, key_ok, as_key):
  assert types.can_be_key(type_name) is key_ok
  if key_ok:
    assert types.key_type(type_name) == as_key


@pytest.mark.parametrize('name, ok', [
    ('city', True), ('_x1', True), ('A' * 256, True), ('A' * 257, False), ('1abc', False),
    ('with space', False), ('a.b', False), ('', False), (3, False),
    ('__DORIS_DELETE_SIGN__', False), ('__op', False),
])
def test_only_portable_names_become_columns(name, ok):
  assert types.is_column_name(name) is ok


def test_add_column_ddl_is_nullable_and_one_statement_for_several_columns():
  assert types.add_columns_ddl('shop.users', [('city', 'STRING')]) == (
      'ALTER TABLE `shop`.`users` ADD COLUMN `city` STRING NULL')
  assert types.add_columns_ddl('shop.users', [('a', 'BIGINT'), ('b', 'JSON')]) == (
      'ALTER TABLE `shop`.`users` ADD COLUMN (`a` BIGINT NULL, `b` JSON NULL)')
  with pytest.raises(ValueError):
    types.add_columns_ddl('shop.users', [])


def test_create_table_puts_keys_first_and_turns_a_string_key_into_varchar():
  ddl = types.create_table_ddl('shop.users', [('name', 'STRING'), ('id', 'STRING'),
                                              ('tags', 'JSON')], 'UNIQUE', ['id'],
                               properties={'replication_num': '1'})
  assert ddl == ('CREATE TABLE IF NOT EXISTS `shop`.`users` (\n'
                 '  `id` VARCHAR(65533) NOT NULL,\n'
                 '  `name` STRING NULL,\n'
                 '  `tags` JSON NULL\n'
                 ') UNIQUE KEY(`id`)\n'
                 'DISTRIBUTED BY HASH(`id`) BUCKETS AUTO\n'
                 'PROPERTIES ("replication_num" = "1")')


def test_create_table_distribution_and_buckets():
  ddl = types.create_table_ddl('db.t', [('a', 'BIGINT'), ('b', 'DOUBLE')], 'DUPLICATE', ['a'],
                               distributed_by=(), buckets=8)
  assert ') DUPLICATE KEY(`a`)\nDISTRIBUTED BY RANDOM BUCKETS 8' in ddl
  assert '`a` BIGINT NULL' in ddl
  ddl = types.create_table_ddl('db.t', [('a', 'BIGINT'), ('b', 'BIGINT')], 'DUPLICATE', ['a'],
                               distributed_by=['b'])
  assert 'DISTRIBUTED BY HASH(`b`) BUCKETS AUTO' in ddl


def test_create_table_in_starrocks_dialect_is_a_primary_key_table_starrocks_buckets():
  ddl = types.create_table_ddl('shop.users', [('name', 'STRING'), ('id', 'STRING')], 'UNIQUE',
                               ['id'], starrocks=True)
  assert ddl == ('CREATE TABLE IF NOT EXISTS `shop`.`users` (\n'
                 '  `id` VARCHAR(128) NOT NULL,\n'
                 '  `name` STRING NULL\n'
                 ') PRIMARY KEY(`id`)\n'
                 'DISTRIBUTED BY HASH(`id`)')
  ddl = types.create_table_ddl('db.t', [('a', 'STRING'), ('b', 'BIGINT')], 'DUPLICATE', ['a'],
                               buckets=4, starrocks=True)
  assert ddl.endswith(') DUPLICATE KEY(`a`)\nDISTRIBUTED BY HASH(`a`) BUCKETS 4')
  assert '`a` VARCHAR(65533) NULL' in ddl  # only a primary key is capped at 128 bytes


@pytest.mark.parametrize('columns, model, keys, message', [
    ([('a', 'DOUBLE')], 'UNIQUE', ['a'], 'cannot be a key'),
    ([('a', 'BIGINT')], 'UNIQUE', ['b'], 'not among the columns'),
    ([('a', 'BIGINT')], 'UNIQUE', [], 'no key column'),
    ([('a', 'BIGINT')], 'AGGREGATE', ['a'], 'key model'),
])
def test_create_table_refuses_what_doris_refuses(columns, model, keys, message):
  with pytest.raises(ValueError, match=message):
    types.create_table_ddl('db.t', columns, model, keys)


def test_random_distribution_needs_a_duplicate_table():
  with pytest.raises(ValueError, match='RANDOM'):
    types.create_table_ddl('db.t', [('a', 'BIGINT')], 'UNIQUE', ['a'], distributed_by=())
