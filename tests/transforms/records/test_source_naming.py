"""A whole database's CDC topics: target names, selection, merged families, control records."""

import pickle

import orjson
import pytest

from tests.transforms.records.helpers import debezium
from transforms.records import RecordParser, Routing
from transforms.records.routing import (SOURCE_COLUMNS, SourceNaming, TableCollisionError,
                                        parse_merge_tables)
from transforms.kafka.topics import TopicSelector
from transforms.types import KafkaChunk, KafkaRecord

pytestmark = pytest.mark.unit


def _chunk(events, topic='dbz.shop', keys=None):
  records = [KafkaRecord(topic, 0, i, keys[i] if keys else None, orjson.dumps(event), 0)
             for i, event in enumerate(events)]
  return KafkaChunk(topic, 0, 0, len(records), records)


def _parser(**naming):
  return RecordParser(Routing(naming=SourceNaming(**naming)), cdc='debezium')


def test_the_template_names_targets_from_the_source_and_the_topic():
  naming = SourceNaming('ods.{prefix}_{db}__{table}')
  assert naming.target('shop', 'users', topic='dbz.shop.users') == ('ods.dbz_shop__users', False)
  parsed = _parser(table_template='ods.{db}__{table}').parse_chunk(
      _chunk([debezium('c', after={'id': 1}, table='users')]))
  assert list(parsed.rows_by_table) == ['ods.shop__users'] and not parsed.dead_letters


def test_include_and_exclude_match_the_whole_source_name_and_skip_without_dead_letters():
  parser = _parser(include_tables=r'shop\..*', exclude_tables=r'shop\.tmp_.*')
  parsed = parser.parse_chunk(_chunk([
      debezium('c', after={'id': 1}, table='users'),
      debezium('c', after={'id': 2}, table='tmp_users'),
      debezium('c', after={'id': 3}, db='other', table='users'),
      debezium('c', after={'id': 4}, db='shopx', table='users'),  # "shop" must match whole
  ]))
  assert list(parsed.rows_by_table) == ['shop.users']
  assert parsed.skipped == {'excluded': 3} and not parsed.dead_letters
  assert parsed.chunk_read.next_offset == 4  # skipped records are read, their offsets move on


def test_a_debezium_topic_whose_table_is_excluded_is_known_by_its_name():
  naming = SourceNaming(include_tables=r'shop\..*', exclude_tables=r'shop\.tmp_.*')
  assert naming.excludes_topic('dbz.shop.tmp_users')            # MySQL: <prefix>.<db>.<table>
  assert naming.excludes_topic('dbz.shop.dbo.tmp_users')        # SQL Server: .<db>.<schema>.<table>
  assert not naming.excludes_topic('dbz.shop.users')
  assert not naming.excludes_topic('dbz.other.users')  # include is decided by the envelope
  assert not naming.excludes_topic('shop.tmp_users')   # not Debezium's shape: rows decide
  assert not naming.excludes_topic('a.b.c.d.e')
  assert not SourceNaming(include_tables=r'shop\..*').excludes_topic('dbz.other.users')
  # A selector built with it never matches the topic (and pickles with it, for the workers).
  selector = pickle.loads(pickle.dumps(
      TopicSelector(pattern=r'dbz\..*', skip=naming.excludes_topic)))
  assert selector.select(['dbz.shop.users', 'dbz.shop.tmp_users']) == ['dbz.shop.users']


def test_a_merged_family_carries_its_source_and_the_source_joins_the_key():
  parser = _parser(merge_tables=parse_merge_tables(r'shop\.order_\d+=shop.orders'))
  keys = [orjson.dumps({'id': 1}), orjson.dumps({'id': 1}), orjson.dumps({'id': 7})]
  parsed = parser.parse_chunk(_chunk([
      debezium('c', after={'id': 1, 'total': 5}, table='order_00'),
      debezium('c', after={'id': 1, 'total': 6}, table='order_01'),  # the same id in shard 01
      debezium('c', after={'id': 7}, table='customers'),
  ], keys=keys))
  orders = parsed.rows_by_table['shop.orders']
  assert [(row.fields['id'], row.fields[SOURCE_COLUMNS[0]], row.fields[SOURCE_COLUMNS[1]])
          for row in orders] == [(1, 'shop', 'order_00'), (1, 'shop', 'order_01')]
  assert parsed.key_columns['shop.orders'] == ('id',) + SOURCE_COLUMNS
  assert parsed.key_columns['shop.customers'] == ('id',)  # not merged: no source columns
  assert SOURCE_COLUMNS[0] not in parsed.rows_by_table['shop.customers'][0].fields


def test_merge_targets_use_the_rule_groups():
  naming = SourceNaming(merge_tables=parse_merge_tables(
      r'(?P<tenant>t\d+)_db\.(\w+)_\d+=all.{tenant}_{2}'))
  assert naming.target('t7_db', 'order_03') == ('all.t7_order', True)


def test_two_sources_reaching_one_target_unmerged_stop_the_job_naming_both():
  parser = _parser(table_template='ods.{table}')
  with pytest.raises(TableCollisionError, match='shop.users and crm.users both reach ods.users'):
    parser.parse_chunk(_chunk([debezium('c', after={'id': 1}, db='shop', table='users'),
                               debezium('c', after={'id': 2}, db='crm', table='users')]))


def test_postgres_schemas_of_one_database_do_not_overwrite_each_other_by_default():
  parser = RecordParser(Routing(), cdc='debezium')
  first = debezium('c', after={'id': 1}, db='app', table='users')
  second = debezium('c', after={'id': 2}, db='app', table='users')
  first['source']['schema'], second['source']['schema'] = 'public', 'audit'
  with pytest.raises(TableCollisionError, match='app.public.users and app.audit.users'):
    parser.parse_chunk(_chunk([first, second]))


def test_debezium_control_records_are_skipped_and_counted_not_dead_lettered():
  events = [
      {'status': 'BEGIN', 'id': '571:53195829', 'ts_ms': 1, 'event_count': None,
       'data_collections': None},
      {'status': 'END', 'id': '571:53195829', 'ts_ms': 2, 'event_count': 2,
       'data_collections': [{'data_collection': 'shop.users', 'event_count': 2}]},
      {'ts_ms': 1700000000000},  # a heartbeat
      {'type': 'execute-snapshot', 'data': {'data-collections': ['shop.users']}},  # a signal
  ]
  for cdc in ('debezium', 'auto'):
    parsed = RecordParser(Routing(), cdc=cdc).parse_chunk(_chunk(events))
    assert parsed.skipped == {'control': 4} and not parsed.dead_letters, cdc


@pytest.mark.parametrize('naming, message', [
    (dict(table_template='ods.{database}'), '--table_template: unknown placeholder {database}'),
    (dict(include_tables='shop.(('), '--include_tables'),
    (dict(merge_tables=(('shop.o_\\d+', 'shop.{2}'),)), '--merge_tables: {2}'),
])
def test_bad_rules_fail_naming_their_flag(naming, message):
  with pytest.raises(ValueError, match=message.replace('{', r'\{').replace('(', r'\(')):
    SourceNaming(**naming)


def test_naming_is_for_envelope_tables_only():
  with pytest.raises(ValueError, match='--table_template'):
    Routing(table='db.t', naming=SourceNaming('ods.{table}'))
  with pytest.raises(ValueError, match='--merge_tables: bad rule'):
    parse_merge_tables('no-equals-sign')
